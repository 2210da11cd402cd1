"""Any Stable-Baselines3 model as a masked, batched :class:`~recgym.agents.baselines.Policy`.

Kept apart from :mod:`recgym.agents.flat` (which trains models and logs through
:mod:`recgym.evaluation`) so that :func:`recgym.evaluation.as_policy` can wrap an SB3 model without
importing the training code: dependencies point one way, training -> evaluation -> this module.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.dqn.policies import DQNPolicy

from recgym.agents.baselines import Policy
from recgym.agents.checkpoints import META_KEY, check_world


class SB3Policy(Policy):
    """Any SB3 model as a batched policy: scores are the action logits (actor-critic) or Q-values
    (DQN); ``act`` takes the masked argmax, or samples from the masked softmax if not ``deterministic``.

    A model trained by recgym carries its checkpoint metadata (:mod:`recgym.agents.checkpoints`);
    binding it to an env of another world is then refused.
    """

    def __init__(self, model: BaseAlgorithm, deterministic: bool = True) -> None:
        self.model, self.deterministic = model, deterministic

    @property
    def learning_curve(self) -> list[dict[str, float]] | None:
        """The model's evaluations on the truth while it trained (:class:`recgym.agents.callbacks.TruthCurve`
        points, kept by :func:`recgym.agents.flat.train`), ``None`` when it logged none."""
        return getattr(self.model, "learning_curve", None)

    def bind(self, env: Any, seed: int | None = None) -> None:
        meta = getattr(self.model, META_KEY, None)
        if meta is not None:
            check_world(meta, env.world, f"this {meta['agent']} model")
        super().bind(env, seed)

    def scores(self, obs: dict[str, np.ndarray], mask: np.ndarray) -> np.ndarray:
        policy = self.model.policy
        tensor, _ = policy.obs_to_tensor(obs)
        with th.no_grad():
            if isinstance(policy, DQNPolicy):
                values = policy.q_net(tensor)
            else:
                values = policy.get_distribution(tensor).distribution.logits
        scores = values.cpu().numpy().astype(np.float64)
        return scores if self.deterministic else scores + self.rng.gumbel(size=scores.shape)
