"""Logging rollouts of a behaviour policy in a recgym env: what DSRM stage I fits
(:mod:`recgym.agents.dsrm.train`) and what its scoring rolls out (:mod:`recgym.agents.dsrm.evaluate`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from recgym.envs.vector import RecSysVectorEnv
from recgym.simulator import Simulator

BEHAVIOURS = ("random", "popular")


def make_venv(env_id: str, num_envs: int, env_options: dict[str, Any] | None = None) -> RecSysVectorEnv:
    """The native batched env of a recgym id (slate_size 1: DSRM logs one consumed item per step), with
    same-step autoreset: every step is a real recommendation (no idle restart steps in the log)."""
    venv = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point",
                        autoreset_mode=AutoresetMode.SAME_STEP, **(env_options or {}))
    if not isinstance(venv, RecSysVectorEnv):
        raise ValueError(f"{env_id!r} is not a recgym env id (its vector entry point is not RecSysVectorEnv)")
    if venv.params.slate_size != 1:
        raise ValueError(f"DSRM logs single recommendations; slate_size must be 1, got {venv.params.slate_size}")
    return venv


def behaviour_actions(behaviour: str, venv: RecSysVectorEnv, rng: np.random.Generator) -> np.ndarray:
    """(B,) actions of a logging policy among the allowed items.

    ``"random"``: uniform; ``"popular"``: sampled proportionally to the world's prior popularity.
    """
    if behaviour not in BEHAVIOURS:
        raise ValueError(f"behaviour must be one of {list(BEHAVIOURS)}, got {behaviour!r}")
    mask = venv.action_masks()
    gumbel = rng.gumbel(size=mask.shape)
    if behaviour == "popular":
        gumbel += np.log(venv.world.pop_prior)[None]
    return np.where(mask, gumbel, -np.inf).argmax(axis=1)


def rollout(
    venv: RecSysVectorEnv, n_steps: int, behaviour: str, seed: int,
    probe: Callable[[Simulator], Any] | None = None,
) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray, dict[str, Any], Any, np.ndarray]]:
    """Run ``n_steps`` batched steps; yield (observation, actions, infos of the step, probe(sim) before it,
    true feedback history): the last is (B, k) float32, the TRUE reward of each history slot of the
    observation (0 on empty slots), what the observed ``feedback`` would be without the logging's
    noise and pulls. Only a simulator has it (DSRM's oracle-debiased ceiling reads it)."""
    rng = np.random.default_rng(seed)
    obs, _ = venv.reset(seed=seed)
    true_feedback = np.zeros(obs["feedback"].shape, np.float32)
    for _ in range(n_steps):
        actions = behaviour_actions(behaviour, venv, rng)
        probed = probe(venv.sim) if probe is not None else None
        next_obs, _, _, _, infos = venv.step(actions)
        yield obs, actions, infos, probed, true_feedback
        # every step appends its item to the history (clicked or not); a new session starts it empty
        true_feedback = np.roll(true_feedback, -1, axis=1)
        true_feedback[:, -1] = infos["true_reward"]
        true_feedback[next_obs["item_ids"] < 0] = 0.0
        obs = next_obs
