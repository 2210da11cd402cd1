"""HRL4PFG: proactive fairness guiding toward long-tail items with a virtual goal item.

As published (``docs/hrl.md``): the macro policy reads the last N interactions with
self-attention and outputs a Gaussian "virtual long-tail item" ``g_t``, held for M = 3 steps and
constrained to the catalogue's embedding ball ``||g_t - v_center|| <= max_i ||v_i - v_center||``;
macro reward ``accuracy + lambda_f * (-log pop_j)`` with ``pop_j = N_j / |U|``. The micro policy
concatenates an attention-pooled preference ``p_t`` with ``g_t``, takes the L items nearest ``g_t``
as candidates and samples among them; micro reward ``r^a + lambda_g [d(p_t, g_t) - d(p_{t+1}, g_t)]``
with ``lambda_g = 0.1``. Both actor-critic (SB3 PPO here).

recgym's concrete choices (``docs/hrl.md``): the macro action is an offset from an anchor, the
long-tail item nearest the user's preference ``p_t`` (:meth:`HRL4PFG.anchor`), so the untrained macro
policy (mean offset 0) already points each user at a long-tail item of their own taste instead of at
the catalogue centre (where the candidates are the same mainstream items for everybody); the offset is
held for the option, the anchor follows ``p_t``. The macro policy's features extractor is
:class:`HistoryAttention` (one multi-head self-attention layer over (embedding, feedback) tokens);
``p_t`` pools the history with softmax weights on the observed feedback (temperature 0.5); the micro
observation adds each candidate's similarity to ``p_t`` and its popularity, so the micro policy can
choose among them; N_j is the platform's logged popularity and |U| the world's number of users.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from recgym.agents.hierarchy import CatalogueScores, Obs, top_candidates


class HistoryAttention(BaseFeaturesExtractor):
    """Self-attention over history tokens: (B, k, D + 2) [embedding, feedback, valid] -> (B, features_dim)."""

    def __init__(self, observation_space: spaces.Box, features_dim: int = 64, n_heads: int = 2) -> None:
        super().__init__(observation_space, features_dim)
        token_dim = observation_space.shape[1]
        self.embed = nn.Linear(token_dim - 1, features_dim)
        self.attention = nn.MultiheadAttention(features_dim, n_heads, batch_first=True)
        self.out = nn.Sequential(nn.LayerNorm(features_dim), nn.ReLU())

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        tokens, valid = observations[..., :-1], observations[..., -1] > 0.5
        empty = ~valid.any(dim=1)
        valid = valid | empty[:, None]  # an empty history attends to its padding instead of to nothing
        hidden = self.embed(tokens)
        attended, _ = self.attention(hidden, hidden, hidden, key_padding_mask=~valid)
        weights = valid.float()[..., None]
        return self.out((attended * weights).sum(dim=1) / weights.sum(dim=1))


@dataclass
class HRL4PFG:
    """The HRL4PFG method (see module docstring). ``sample_low``: the micro policy samples among its
    candidates (as published) when it acts frozen (high-level training, evaluation) instead of taking
    its arg-max: deterministic identical sessions would otherwise stay identical (the same first items for
    every user, hence the same anchors: measured on KuaiRec-v1, one anchor and 3 items for 64 users)."""

    name: str = "hrl4pfg"
    sample_low: bool = True
    option_length: int = 3
    n_candidates: int = 20
    fairness_weight: float = 0.05
    guide_weight: float = 0.1
    pooling_temperature: float = 0.5
    high_policy_kwargs: dict[str, Any] = field(
        default_factory=lambda: {"features_extractor_class": HistoryAttention, "net_arch": [64]})
    low_policy_kwargs: dict[str, Any] = field(default_factory=dict)

    def bind(self, venv: Any) -> None:
        world = venv.world
        self.sim, self.item_emb, self.n_users = venv.sim, world.item_emb, world.n_users
        self.item_scores = CatalogueScores(self.item_emb)
        self.center = world.item_emb.mean(axis=0)
        self.radius = float(np.linalg.norm(world.item_emb - self.center, axis=1).max())
        self.tail_items = np.flatnonzero(~world.popular_items(0.2))
        self.tail_scores = CatalogueScores(self.item_emb[self.tail_items])
        k, dim, n_cand = venv.params.history_len, world.embed_dim, self.n_candidates
        self.goal_space = spaces.Box(-1.0, 1.0, shape=(dim,), dtype=np.float32)
        self.high_observation_space = spaces.Box(-np.inf, np.inf, shape=(k, dim + 2), dtype=np.float32)
        self.low_observation_space = spaces.Box(-np.inf, np.inf, shape=(2 * dim + 2 * n_cand,), dtype=np.float32)
        self.low_action_space = spaces.Discrete(n_cand)

    def anchor(self, obs: Obs, preference: np.ndarray | None = None) -> np.ndarray:
        """(B, D) embedding of the long-tail item (outside the top 20% by prior popularity) nearest the
        user's preference ``p_t`` (largest dot product; the catalogue centre stands for an empty history);
        ``preference``: ``p_t`` if already computed (:meth:`preference` of ``obs``)."""
        preference = self.preference(obs) if preference is None else preference
        query = np.where((obs["item_ids"] >= 0).any(axis=1, keepdims=True), preference, self.center)
        return self.item_emb[self.tail_items[self.tail_scores(query).argmax(axis=1)]]

    def virtual_item(self, goal: np.ndarray, obs: Obs, preference: np.ndarray | None = None) -> np.ndarray:
        """(B, D) g_t: the anchor (:meth:`anchor`) plus the (B, D) goal in [-1, 1] scaled by
        ``radius / sqrt(D)`` (a goal of +-1 in every dimension moves a whole radius), projected into the
        catalogue's embedding ball ``||g_t - v_center|| <= radius``."""
        offset = self.anchor(obs, preference) - self.center + self.radius * goal / np.sqrt(goal.shape[1])
        norm = np.linalg.norm(offset, axis=1, keepdims=True)
        return self.center + offset * np.minimum(1.0, self.radius / np.maximum(norm, 1e-8))

    def preference(self, obs: Obs) -> np.ndarray:
        """(B, D) p_t: history embeddings pooled with softmax weights on their observed feedback."""
        logits = np.where(obs["item_ids"] >= 0, obs["feedback"] / self.pooling_temperature, -np.inf)
        logits = np.where(np.isfinite(logits).any(axis=1, keepdims=True), logits, 0.0)
        weights = np.exp(logits - logits.max(axis=1, keepdims=True))
        weights /= weights.sum(axis=1, keepdims=True)
        return np.einsum("bk,bkd->bd", weights, obs["embeddings"]).astype(np.float32)

    def popularity(self, items: np.ndarray) -> np.ndarray:
        """pop_j = N_j / |U| for item ids (any shape)."""
        return self.sim.popularity[items] / self.n_users

    def candidates(self, obs: Obs, goal: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """(B, L) the allowed items nearest g_t, nearest first (unit embeddings: largest dot product)."""
        return top_candidates(self.item_scores(self.virtual_item(goal, obs)), mask, self.n_candidates)

    def high_observation(self, obs: Obs) -> np.ndarray:
        valid = (obs["item_ids"] >= 0).astype(np.float32)
        return np.concatenate([obs["embeddings"], obs["feedback"][..., None], valid[..., None]], axis=2)

    def low_observation(self, obs: Obs, goal: np.ndarray, cands: np.ndarray) -> np.ndarray:
        preference = self.preference(obs)
        return self._low_observation(preference, self.virtual_item(goal, obs, preference), cands)

    def low_view(self, obs: Obs, goal: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, F) :meth:`low_observation` and (B, L) :meth:`candidates` with ``p_t`` and ``g_t`` computed
        once for both (:func:`~recgym.agents.hierarchy.low_view` calls it)."""
        preference = self.preference(obs)
        target = self.virtual_item(goal, obs, preference)
        cands = top_candidates(self.item_scores(target), mask, self.n_candidates)
        return self._low_observation(preference, target, cands), cands

    def _low_observation(self, preference: np.ndarray, target: np.ndarray, cands: np.ndarray) -> np.ndarray:
        """(B, F) [p_t, g_t, each candidate's <p_t, e_j>, log pop_j] from (B, D) p_t and g_t."""
        similarity = np.einsum("bd,bld->bl", preference, self.item_emb[cands])
        log_pop = np.log(self.popularity(cands))
        return np.concatenate([preference, target, similarity, log_pop], axis=1).astype(np.float32)


    def low_reward(self, reward: np.ndarray, obs: Obs, next_obs: Obs, goal: np.ndarray, items: np.ndarray) -> np.ndarray:
        target = self.virtual_item(goal, obs)
        before = np.linalg.norm(self.preference(obs) - target, axis=1)
        after = np.linalg.norm(self.preference(next_obs) - target, axis=1)
        return reward + self.guide_weight * (before - after)

    def high_reward(self, option_reward: np.ndarray, option_items: np.ndarray, goal: np.ndarray) -> np.ndarray:
        used = option_items >= 0
        long_tail = np.where(used, -np.log(self.popularity(np.maximum(option_items, 0))), 0.0).sum(axis=1)
        return option_reward + self.fairness_weight * long_tail
