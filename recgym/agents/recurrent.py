"""Recurrent-state PPO (``ppo-gru``): flat PPO whose state is a GRU over the logged history.

The fair flat baseline for the novelty claims (issue #19): a novelty-seeking user's propensity shows in
the ORDER of what they consumed and how they reacted, which a mean embedding loses. The observation
already carries the last ``k = history_len`` impressions (raise ``history_len`` for a longer history);
:class:`GRUHistoryExtractor` runs a GRU over them, oldest first, and the PPO actor-critic (item-scoring
head, :mod:`recgym.agents.flat`) reads its final hidden state. Per slot the GRU sees:

    embedding (D,), observed feedback, a present flag (the slot holds an item)        every world
    logged signals (8,), log popularity and log exposure at the impression / 10       v1 worlds

Why a GRU feature extractor and not sb3-contrib's ``RecurrentPPO``: the history the state needs is in
every observation, so the extractor is stateless across steps and everything else stays as flat PPO
(same rollout buffer, minibatches, item-scoring head, checkpoints, the batched masked evaluation of
:class:`~recgym.agents.sb3_policy.SB3Policy`); ``RecurrentPPO`` is LSTM-only, carries hidden states
that ``recgym.evaluate`` and the population rollout would have to thread through every call, and its
policy class would need its own item-scoring head. The cost: memory is bounded by ``history_len``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

#: v1 per-slot keys with their scale (log counts are divided by 10 to sit near the GRU's range).
V1_SLOT_KEYS = (("signals", 1.0), ("popularity", 0.1), ("exposure", 0.1))


class GRUHistoryExtractor(BaseFeaturesExtractor):
    """Dict observation -> (B, features_dim): ``ReLU(Linear([h_k, step]))``, h_k the final hidden state
    (B, hidden) of a one-layer GRU over the (B, k, D + 2 [+ 10 on v1]) history slots, oldest first."""

    def __init__(self, observation_space: spaces.Dict, features_dim: int = 128, hidden: int = 64) -> None:
        if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
            raise ValueError(f"hidden must be an integer >= 1, got {hidden!r}")
        super().__init__(observation_space, features_dim)
        _, dims = observation_space["embeddings"].shape
        self.v1_keys = tuple((key, scale) for key, scale in V1_SLOT_KEYS if key in observation_space.spaces)
        slot_dims = dims + 2 + sum(int(np.prod(observation_space[key].shape[1:])) for key, _ in self.v1_keys)
        self.gru = nn.GRU(slot_dims, hidden, batch_first=True)
        self.head = nn.Sequential(nn.Linear(hidden + 1, features_dim), nn.ReLU())

    def sequence(self, obs: dict[str, th.Tensor]) -> th.Tensor:
        """(B, k, slot features) the history slots, oldest first."""
        parts = [obs["embeddings"], obs["feedback"].unsqueeze(-1), (obs["item_ids"] >= 0).float().unsqueeze(-1)]
        for key, scale in self.v1_keys:
            value = obs[key] * scale
            parts.append(value if value.dim() == 3 else value.unsqueeze(-1))
        return th.cat(parts, dim=-1)

    def forward(self, obs: dict[str, th.Tensor]) -> th.Tensor:
        _, hidden = self.gru(self.sequence(obs))
        return self.head(th.cat([hidden[-1], obs["step"]], dim=1))


def train_ppo_gru(env_id: str, timesteps: int, hidden: int = 64, **options: Any) -> tuple[Any, Path]:
    """Train ``ppo-gru``: flat PPO (:func:`recgym.agents.flat.train`, its defaults and options) with the
    :class:`GRUHistoryExtractor` state; returns (model, checkpoint path)."""
    from recgym.agents.flat import train

    return train("ppo", env_id, timesteps, agent="ppo-gru", policy_kwargs={
        "features_extractor_class": GRUHistoryExtractor, "features_extractor_kwargs": {"hidden": hidden}}, **options)


def load_ppo_gru(path: str | Path, world: Any = None) -> Any:
    """Load a ``ppo-gru`` checkpoint (refused for another agent's or, given ``world``, another world's)."""
    from recgym.agents.flat import load_model

    return load_model("ppo", path, agent="ppo-gru", world=world)
