"""DSRM-HRL: a DSRM-purified user state feeding a high-level fairness policy and a low-level engagement policy.

As published (``docs/hrl.md``): the high level acts every M steps and outputs
``z_t = [w_acc, w_fair]``; its reward is ``sum r_t + lambda * Fair(L_t)`` with Fair the negative
exposure Gini over the window. The low level scores candidates
``Psi_i = w_acc * Sim(s^_t, e_i) - w_fair * log pop_i`` on the purified state and optimises engagement
under the high level's constraint. Stage I pretrains DSRM (:mod:`recgym.agents.dsrm`); stage II
freezes it and trains both levels with PPO (:func:`recgym.agents.hierarchy.train_hierarchy`).

recgym's concrete choices (documented in ``docs/hrl.md``):

* ``Psi`` ranks the allowed items (``Sim`` = dot product of the unit state with unit item
  embeddings; ``log pop_i`` scaled to [0, 1] by the catalogue's largest ``log(1 + pop)``, so both
  terms share a scale); the low level's action picks one of the ``n_candidates`` best (a
  ``Discrete(L)`` policy that sees each candidate's Sim, popularity and fairness gain), so it can
  trade a little Psi for engagement;
* Fair(L_t) is the first-order change of the catalogue's exposure Gini caused by the window's items
  (:func:`recgym.agents.hierarchy.exposure_gini_gradient`), so each session gets its own share;
* the constraint is relaxed Lagrangian-style: the low-level reward is ``r_t + w_fair * fair_t``.

Ablations: ``dsrm-flat`` (DSRM state, one level: fixed goal ``[1, 1]``) and ``hrl-no-dsrm`` (both levels
on the raw feedback-weighted history state, :func:`recgym.agents.hierarchy.feedback_state`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from gymnasium import spaces

from recgym.agents.hierarchy import (
    CatalogueScores, Obs, RowCache, exposure_gini_gradient, feedback_state, top_candidates,
)
from recgym.agents.rewards import log_popularity_score

StateFn = Callable[[Obs], np.ndarray]


@dataclass
class DSRMHRL:
    """The DSRM-HRL method (see module docstring). ``state_fn``: (B, ...) obs -> (B, D) user state."""

    state_fn: StateFn = feedback_state
    name: str = "dsrm-hrl"
    option_length: int = 3
    fairness_weight: float = 0.5
    n_candidates: int = 20
    high_policy_kwargs: dict[str, Any] = field(default_factory=dict)
    low_policy_kwargs: dict[str, Any] = field(default_factory=dict)

    def bind(self, venv: Any) -> None:
        self.sim, self.item_emb = venv.sim, venv.world.item_emb
        self.item_scores = CatalogueScores(self.item_emb)
        dim = self.item_emb.shape[1]
        self.goal_space = spaces.Box(0.0, 1.0, shape=(2,), dtype=np.float32)
        self.high_observation_space = spaces.Box(-np.inf, np.inf, shape=(dim + 3,), dtype=np.float32)
        n_cand = self.n_candidates
        self.low_observation_space = spaces.Box(-np.inf, np.inf, shape=(dim + 2 + 3 * n_cand,), dtype=np.float32)
        self.low_action_space = spaces.Discrete(n_cand)
        self._rows = RowCache(venv.num_envs, dim)

    def state(self, obs: Obs) -> np.ndarray:
        """(B, D) unit state of ``obs``. DSRM sampling is the costly part, so on a batch of the bound
        env's B sessions only the rows whose history changed since the last call are computed
        (:class:`~recgym.agents.hierarchy.RowCache`); other batches are computed whole."""
        return self._rows.get(obs, self._unit_state)

    def _unit_state(self, obs: Obs) -> np.ndarray:
        state = np.asarray(self.state_fn(obs), np.float32)
        return state / np.maximum(np.linalg.norm(state, axis=1, keepdims=True), 1e-8)

    def popularity_score(self) -> np.ndarray:
        """(I,) float32 log(1 + logged popularity) scaled to [0, 1] (:func:`log_popularity_score`)."""
        return log_popularity_score(self.sim.popularity).astype(np.float32)

    def high_observation(self, obs: Obs) -> np.ndarray:
        valid = obs["item_ids"] >= 0
        n_valid = np.maximum(valid.sum(axis=1), 1)
        history_pop = np.where(valid, self.popularity_score()[obs["item_ids"]], 0.0).sum(axis=1) / n_valid
        mean_feedback = obs["feedback"].sum(axis=1) / n_valid
        extra = np.stack([obs["step"][:, 0], mean_feedback, history_pop], axis=1)
        return np.concatenate([self.state(obs), extra], axis=1).astype(np.float32)

    def candidates(self, obs: Obs, goal: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """(B, L) the allowed items with the highest Psi = w_acc Sim(s^, e_i) - w_fair log pop_i, best first."""
        psi = self.item_scores(self.state(obs))
        psi *= goal[:, :1]
        psi -= goal[:, 1:] * self.popularity_score()[None, :]
        return top_candidates(psi, mask, self.n_candidates)

    def low_observation(self, obs: Obs, goal: np.ndarray, cands: np.ndarray) -> np.ndarray:
        state = self.state(obs)
        similarity = np.einsum("bd,bld->bl", state, self.item_emb[cands])
        parts = [state, goal, similarity, self.popularity_score()[cands], self.fairness(cands)]
        return np.concatenate(parts, axis=1).astype(np.float32)

    def fairness(self, items: np.ndarray) -> np.ndarray:
        """(B,) or (B, M): -dGini/dx of each item (0 for -1 padding): > 0 for under-exposed items."""
        gain = -exposure_gini_gradient(self.sim.exposure)
        return np.where(items >= 0, gain[items], 0.0)

    def low_reward(self, reward: np.ndarray, obs: Obs, next_obs: Obs, goal: np.ndarray, items: np.ndarray) -> np.ndarray:
        return reward + goal[:, 1] * self.fairness(items)

    def high_reward(self, option_reward: np.ndarray, option_items: np.ndarray, goal: np.ndarray) -> np.ndarray:
        return option_reward + self.fairness_weight * self.fairness(option_items).sum(axis=1)
