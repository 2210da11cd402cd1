"""Flat-PPO twins of the hierarchical methods (issue #19's control "flat PPO with the same reward shaping as
each HRL method"): PPO on the item action space (:mod:`recgym.agents.flat`) trained on the reward the
hierarchical method's own shaping gives, through a :class:`~recgym.agents.rewards.RewardShaper` that asks the
method itself for its term (so a twin follows its method's changes). ``ppo-novelty`` (novelty-HRL's
diversity/novelty bonus) lives in :mod:`recgym.agents.rewards`; :data:`SHAPED_PPO` lists all three.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recgym.agents.dsrm_hrl import DSRMHRL
from recgym.agents.hrl4pfg import HRL4PFG
from recgym.agents.rewards import NoveltyBonusShaper, RewardShaper


class ExposureFairnessShaper(RewardShaper):
    """DSRM-HRL's low-level shaping with the flat ablation's fixed goal ``w_fair = weight``: reward +
    ``weight`` x the item's fairness gain (-dGini/dx of the platform's exposure), computed by the
    method itself (:meth:`recgym.agents.dsrm_hrl.DSRMHRL.fairness`), so the twin follows the method."""

    def __init__(self, venv: Any, weight: float = 1.0) -> None:
        if not np.isfinite(weight) or weight < 0:
            raise ValueError(f"weight must be a finite number >= 0, got {weight!r}")
        super().__init__(venv)
        self.method, self.weight = DSRMHRL(), weight
        self.method.bind(venv.venv)

    def shape(self, reward: np.ndarray, obs: dict[str, np.ndarray], actions: np.ndarray) -> np.ndarray:
        return reward + self.weight * self.method.fairness(actions)


class LongTailShaper(RewardShaper):
    """HRL4PFG's fairness shaping (its high level's per-item term) on every step: reward +
    ``fairness_weight`` x -log pop_i, with the method's own weight and popularity
    (:meth:`recgym.agents.hrl4pfg.HRL4PFG.popularity`: logged clicks per user)."""

    def __init__(self, venv: Any) -> None:
        super().__init__(venv)
        self.method = HRL4PFG()
        self.method.bind(venv.venv)

    def shape(self, reward: np.ndarray, obs: dict[str, np.ndarray], actions: np.ndarray) -> np.ndarray:
        return reward - self.method.fairness_weight * np.log(self.method.popularity(actions))


#: Flat-PPO twins of the hierarchical methods: agent name -> (shaping wrapper, the method whose shaping it is).
SHAPED_PPO: dict[str, tuple[type[RewardShaper], str]] = {
    "ppo-novelty": (NoveltyBonusShaper, "novelty-hrl"),
    "ppo-fair": (ExposureFairnessShaper, "dsrm-hrl"),
    "ppo-tail": (LongTailShaper, "hrl4pfg"),
}


def train_shaped_ppo(agent: str, env_id: str, timesteps: int, **options: Any) -> tuple[Any, Any]:
    """Flat PPO (:func:`recgym.agents.flat.train`, its options) trained on the reward shaping of
    :data:`SHAPED_PPO` ``[agent]``; a PPO checkpoint carrying ``agent``'s metadata."""
    from recgym.agents.flat import train

    shaper, _ = SHAPED_PPO[agent]
    return train("ppo", env_id, timesteps, agent=agent, wrap_env=shaper, **options)


def load_shaped_ppo(agent: str, path: Any, world: Any = None) -> Any:
    """Load a checkpoint of a :data:`SHAPED_PPO` agent (a plain PPO model: the shaping only mattered in
    training); refused for another agent or, given ``world``, another world."""
    from recgym.agents.flat import load_model

    return load_model("ppo", path, agent=agent, world=world)
