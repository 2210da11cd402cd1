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
* the high level sees the platform's exposure state it regulates: the catalogue's exposure Gini, the
  long tail's share of all exposure and how exposed the session's history items are;
* the constraint is a constraint: ``w_fair`` is the fairness budget ``b_t`` of the window, the
  constraint value ``c_t`` is the recommended item's exposure level (:meth:`DSRMHRL.exposure_level`: the
  share of the catalogue more exposed than it plus half the share exposed as much, ~1 for the least
  exposed; equally exposed items have the same level), and the low level
  maximises the Lagrangian ``r_t + lambda (c_t - b_t)`` with one multiplier ``lambda`` in
  ``[0, lagrange_max]`` updated by projected dual ascent after every low-level rollout:
  ``lambda <- clip(lambda - dual_lr * mean(c_t - b_t), 0, lagrange_max)`` (:meth:`DSRMHRL.end_low_rollout`).

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
    CatalogueScores, Obs, RowCache, exposure_gini_gradient, exposure_ranks, feedback_state, top_candidates,
)
from recgym.agents.rewards import log_popularity_score
from recgym.metrics import gini, long_tail_share

StateFn = Callable[[Obs], np.ndarray]


@dataclass
class DSRMHRL:
    """The DSRM-HRL method (see module docstring). ``state_fn``: (B, ...) obs -> (B, D) user state.

    ``lagrange_init`` / ``lagrange_max``: the constraint multiplier's start and cap (0 <= init <= max);
    ``dual_lr`` (> 0): its dual-ascent step. ``lagrange_multiplier`` is the current multiplier.
    """

    state_fn: StateFn = feedback_state
    name: str = "dsrm-hrl"
    option_length: int = 3
    fairness_weight: float = 0.5
    n_candidates: int = 20
    lagrange_init: float = 0.5
    lagrange_max: float = 2.0
    dual_lr: float = 0.5
    high_policy_kwargs: dict[str, Any] = field(default_factory=dict)
    low_policy_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not (np.isfinite(self.lagrange_max) and self.lagrange_max > 0):
            raise ValueError(f"lagrange_max must be a finite number > 0, got {self.lagrange_max!r}")
        if not (np.isfinite(self.lagrange_init) and 0 <= self.lagrange_init <= self.lagrange_max):
            raise ValueError(f"lagrange_init must be in [0, lagrange_max={self.lagrange_max}], got {self.lagrange_init!r}")
        if not (np.isfinite(self.dual_lr) and self.dual_lr > 0):
            raise ValueError(f"dual_lr must be a finite number > 0, got {self.dual_lr!r}")
        self.lagrange_multiplier = float(self.lagrange_init)
        self._gap_sum, self._gap_count = 0.0, 0

    def bind(self, venv: Any) -> None:
        self.sim, self.item_emb = venv.sim, venv.world.item_emb
        self.popular = venv.world.popular_items(0.2)
        self.item_scores = CatalogueScores(self.item_emb)
        dim = self.item_emb.shape[1]
        self.goal_space = spaces.Box(0.0, 1.0, shape=(2,), dtype=np.float32)
        self.high_observation_space = spaces.Box(-np.inf, np.inf, shape=(dim + 6,), dtype=np.float32)
        n_cand = self.n_candidates
        self.low_observation_space = spaces.Box(-np.inf, np.inf, shape=(dim + 2 + 3 * n_cand,), dtype=np.float32)
        self.low_action_space = spaces.Discrete(n_cand)
        self._rows = RowCache(venv.num_envs, dim)

    def state(self, obs: Obs) -> np.ndarray:
        """(N, D) unit state of ``obs`` (any N rows). DSRM sampling is the costly part, so only the rows
        whose history is not among the recently computed ones are sampled, in one call
        (:class:`~recgym.agents.hierarchy.RowCache`)."""
        return self._rows.get(obs, self._unit_state)

    def _unit_state(self, obs: Obs) -> np.ndarray:
        state = np.asarray(self.state_fn(obs), np.float32)
        return state / np.maximum(np.linalg.norm(state, axis=1, keepdims=True), 1e-8)

    def popularity_score(self) -> np.ndarray:
        """(I,) float32 log(1 + logged popularity) scaled to [0, 1] (:func:`log_popularity_score`)."""
        return log_popularity_score(self.sim.popularity).astype(np.float32)

    def high_observation(self, obs: Obs) -> np.ndarray:
        """(B, D + 6): the state, [session step, mean feedback, the history's mean popularity score], and
        the platform's exposure state: [exposure Gini, long-tail exposure share (catalogue-wide, the same
        for every row), the history items' mean exposure level (:meth:`exposure_level`)]."""
        valid = obs["item_ids"] >= 0
        n_valid = np.maximum(valid.sum(axis=1), 1)
        history_pop = np.where(valid, self.popularity_score()[obs["item_ids"]], 0.0).sum(axis=1) / n_valid
        history_level = np.where(valid, self.exposure_level(obs["item_ids"]), 0.0).sum(axis=1) / n_valid
        mean_feedback = obs["feedback"].sum(axis=1) / n_valid
        exposure = self.sim.exposure
        platform = np.broadcast_to([gini(exposure), long_tail_share(exposure, self.popular)], (n_valid.size, 2))
        extra = np.column_stack([obs["step"][:, 0], mean_feedback, history_pop, platform, history_level])
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

    def exposure_level(self, items: np.ndarray) -> np.ndarray:
        """Items' exposure level in (0, 1) (any shape of ids; -1 padding reads the last item, mask it):
        ``1 - (r_i - 1/2) / I`` with ``r_i`` the ascending exposure mid-rank (:func:`exposure_ranks`), i.e.
        the share of the catalogue more exposed than the item plus half the share exposed as much (for
        distinct exposures: the share at least as exposed, less 1/2I); equally exposed items, such as the
        never-shown ones, have the same level. It is ``(fair_i - G + 1) / 2`` (:meth:`fairness`) rescaled
        to the budget's range [0, 1]."""
        n = self.item_emb.shape[0]
        return 1.0 - (exposure_ranks(self.sim.exposure)[items] - 0.5) / n

    def low_reward(self, reward: np.ndarray, obs: Obs, next_obs: Obs, goal: np.ndarray, items: np.ndarray) -> np.ndarray:
        """(B,) the Lagrangian ``r_t + lambda (c_t - b_t)``: constraint value ``c_t`` the item's exposure
        level, budget ``b_t = w_fair``; the gaps are accumulated for :meth:`end_low_rollout`."""
        gap = self.exposure_level(items) - goal[:, 1]
        self._gap_sum += float(gap.sum())
        self._gap_count += gap.size
        return reward + self.lagrange_multiplier * gap

    def end_low_rollout(self) -> dict[str, float]:
        """Projected dual ascent on the constraint, once per low-level rollout: ``lambda <- clip(lambda -
        dual_lr * mean(c_t - b_t), 0, lagrange_max)`` over the rollout's steps. Returns what to log."""
        gap = self._gap_sum / max(self._gap_count, 1)
        self.lagrange_multiplier = float(np.clip(self.lagrange_multiplier - self.dual_lr * gap, 0.0, self.lagrange_max))
        self._gap_sum, self._gap_count = 0.0, 0
        return {"low/lagrange_multiplier": self.lagrange_multiplier, "low/constraint_gap": gap}

    def high_reward(self, option_reward: np.ndarray, option_items: np.ndarray, goal: np.ndarray) -> np.ndarray:
        return option_reward + self.fairness_weight * self.fairness(option_items).sum(axis=1)
