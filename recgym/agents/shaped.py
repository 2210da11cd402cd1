"""Flat-PPO twins of the hierarchical methods (issue #19's control "flat PPO with the same reward shaping as
each HRL method"): PPO on the item action space (:mod:`recgym.agents.flat`) trained on the reward the
hierarchical method's own shaping gives, through a :class:`~recgym.agents.rewards.RewardShaper` that asks the
method itself for its term (so a twin follows its method's changes). :data:`SHAPED_PPO` lists all three
(``ppo-novelty``: novelty-HRL's diversity/novelty bonus, :class:`~recgym.agents.rewards.NoveltyBonusShaper`).
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from recgym.agents.dsrm_hrl import DSRMHRL
from recgym.agents.flat import ALGOS, load_model, train
from recgym.agents.hrl4pfg import HRL4PFG
from recgym.agents.rewards import NoveltyBonusShaper, RewardShaper
from recgym.sizes import check_count


class ExposureFairnessShaper(RewardShaper):
    """DSRM-HRL's low-level reward at its one-level ablation's fixed goal (``goal_space.high``, as ``dsrm-flat``):
    the method's own Lagrangian ``r + lambda (c - b)`` (:meth:`recgym.agents.dsrm_hrl.DSRMHRL.low_reward`: ``c``
    the item's exposure level, ``b`` the goal's fairness budget), with ``lambda`` updated by the method's dual
    ascent (:meth:`~recgym.agents.dsrm_hrl.DSRMHRL.end_low_rollout`) once per ``rollout_steps`` batched steps
    (flat PPO's ``n_steps``: one rollout, as the hierarchy does after each low-level rollout)."""

    def __init__(self, venv: Any, rollout_steps: int = ALGOS["ppo"].defaults["n_steps"]) -> None:
        check_count("rollout_steps", rollout_steps)
        super().__init__(venv)
        self.method = DSRMHRL()
        self.method.bind(venv.venv)
        self.goal = np.broadcast_to(self.method.goal_space.high, (venv.num_envs, self.method.goal_space.shape[0]))
        self.rollout_steps, self.steps = rollout_steps, 0

    def shape(self, reward: np.ndarray, obs: dict[str, np.ndarray], actions: np.ndarray) -> np.ndarray:
        shaped = self.method.low_reward(reward, obs, obs, self.goal, actions)
        self.steps += 1
        if self.steps % self.rollout_steps == 0:
            self.method.end_low_rollout()
        return shaped


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


#: Flat-PPO twins of the hierarchical methods: agent name -> its shaping wrapper (the method whose shaping
#: it is: ``recgym.agents.AGENTS``' description).
SHAPED_PPO: dict[str, type[RewardShaper]] = {
    "ppo-novelty": NoveltyBonusShaper,
    "ppo-fair": ExposureFairnessShaper,
    "ppo-tail": LongTailShaper,
}


def train_shaped_ppo(agent: str, env_id: str, timesteps: int, **options: Any) -> tuple[Any, Any]:
    """Flat PPO (:func:`recgym.agents.flat.train`, its options) trained on the reward shaping of
    :data:`SHAPED_PPO` ``[agent]``; options named like the shaper's own keyword arguments (e.g.
    ``ppo-novelty``'s ``diversity_weight``, ``novelty_weight``) go to the shaper. A PPO checkpoint carrying
    ``agent``'s metadata."""
    shaper = SHAPED_PPO[agent]
    knobs = {name: options.pop(name) for name in inspect.signature(shaper).parameters if name in options and
             name != "venv"}
    return train("ppo", env_id, timesteps, agent=agent, wrap_env=lambda venv: shaper(venv, **knobs), **options)


def load_shaped_ppo(agent: str, path: Any, world: Any = None) -> Any:
    """Load a checkpoint of a :data:`SHAPED_PPO` agent (a plain PPO model: the shaping only mattered in
    training); refused for another agent or, given ``world``, another world."""
    return load_model("ppo", path, agent=agent, world=world)
