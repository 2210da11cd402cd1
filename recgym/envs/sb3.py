"""Stable-Baselines3 ``VecEnv`` view of the batched simulator.

SB3 refuses gymnasium ``VectorEnv`` objects and ships no adapter; :class:`SB3VecEnv` lets any SB3
(or sb3-contrib) algorithm train directly on recgym's native batch, with no per-env copies.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvObs, VecEnvStepReturn

from recgym.dynamics import LEAVE_REASONS
from recgym.envs.vector import RecSysVectorEnv


class SB3VecEnv(VecEnv):
    """SB3 ``VecEnv`` over :class:`RecSysVectorEnv`: ``SB3VecEnv("recgym/KuaiRec-v0", num_envs=64, **options)``.

    Semantics are SB3's (the vector env runs with ``AutoresetMode.SAME_STEP``): a finished session is
    reset in the same step; its last observation is in ``infos[i]["terminal_observation"]`` and
    ``infos[i]["TimeLimit.truncated"]`` is True when it ended at ``max_turn`` without leaving, so SB3
    bootstraps the value there. Each ``infos[i]`` carries the step's ``true_reward``,
    ``observed_feedback``, ``leave_reason`` (its name, as in the single env) and ``user_id``; when a
    session ends, also Monitor's ``info["episode"] = {"r": return, "l": length, "t": seconds since
    the adapter was built}``, so SB3 logs ``rollout/ep_rew_mean`` / ``ep_len_mean`` and
    ``evaluate_policy`` reads episode returns (:meth:`env_is_wrapped` reports ``Monitor``: do not
    wrap the sessions in another one). In the NX modes :meth:`action_masks` returns the int8 mask
    sb3-contrib's ``MaskablePPO`` reads. The batched infos of the last step (arrays of B) are kept
    in :attr:`last_infos` for callbacks that compute metrics. ``step`` before ``reset`` raises
    ``gymnasium.error.ResetNeeded``.

    Args:
        env: a registered recgym id or an existing :class:`RecSysVectorEnv` with ``SAME_STEP`` autoreset.
        num_envs: B, sessions stepped per call (ignored when ``env`` is an instance).
        options: env options (see :class:`recgym.envs.recsys.RecSysEnv`).
    """

    def __init__(self, env: str | RecSysVectorEnv = "recgym/KuaiRec-v0", num_envs: int = 8, **options: Any) -> None:
        if isinstance(env, RecSysVectorEnv):
            if options:
                raise ValueError("options only apply when the env is given by id")
            if env.metadata["autoreset_mode"] is not AutoresetMode.SAME_STEP:
                raise ValueError(f"SB3 needs same-step autoreset; this env has {env.metadata['autoreset_mode']} "
                                 f"(build it with autoreset_mode=AutoresetMode.SAME_STEP, or pass the id)")
            self.venv = env
        else:
            self.venv = gym.make_vec(env, num_envs=num_envs, vectorization_mode="vector_entry_point",
                                     autoreset_mode=AutoresetMode.SAME_STEP, **options)
            if not isinstance(self.venv, RecSysVectorEnv):
                raise ValueError(f"{env!r} is not a recgym env id (its vector entry point is not RecSysVectorEnv)")
        self.last_infos: dict[str, Any] = {}
        self._actions: np.ndarray | None = None
        self._episode_return = np.zeros(self.venv.num_envs)
        self._episode_length = np.zeros(self.venv.num_envs, np.int64)
        self._start_time = time.time()
        super().__init__(self.venv.num_envs, self.venv.single_observation_space, self.venv.single_action_space)

    def reset(self) -> VecEnvObs:
        seed = self._seeds[0]
        observation, self.last_infos = self.venv.reset(seed=seed)
        self._episode_return[:] = 0
        self._episode_length[:] = 0
        self._reset_seeds()
        self.reset_infos = [{} for _ in range(self.num_envs)]
        return observation

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        observation, rewards, terminated, truncated, self.last_infos = self.venv.step(self._actions)
        dones = terminated | truncated
        step = self.last_infos
        infos: list[dict[str, Any]] = [
            {"true_reward": true, "observed_feedback": observed, "leave_reason": LEAVE_REASONS[reason], "user_id": user}
            for true, observed, reason, user in zip(step["true_reward"].tolist(), step["observed_feedback"].tolist(),
                                                    step["leave_reason"].tolist(), step["user_id"].tolist())
        ]
        self._episode_return += rewards
        self._episode_length += 1
        if dones.any():
            final = step["final_obs"]
            elapsed = round(time.time() - self._start_time, 6)
            rows = np.flatnonzero(dones)
            for i, cut, episode_return, length in zip(
                rows.tolist(), (truncated & ~terminated)[rows].tolist(),
                self._episode_return[rows].round(6).tolist(), self._episode_length[rows].tolist(),
            ):
                info = infos[i]
                info["terminal_observation"] = {key: value[i] for key, value in final.items()}
                info["TimeLimit.truncated"] = cut
                info["episode"] = {"r": episode_return, "l": length, "t": elapsed}
            self._episode_return[rows] = 0
            self._episode_length[rows] = 0
        return observation, rewards.astype(np.float32), dones, infos

    def action_masks(self) -> np.ndarray:
        """int8, 1 where an item may be recommended: (B, n_items), or for a slate the S per-slot masks
        concatenated, (B, S * n_items) (sb3-contrib's MultiDiscrete mask)."""
        masks = self.venv.action_masks()
        slate_size = self.venv.params.slate_size
        return masks if slate_size == 1 else np.tile(masks, (1, slate_size))

    def close(self) -> None:
        self.venv.close()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        value = getattr(self.venv, attr_name)
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        if len(list(self._get_indices(indices))) != self.num_envs:
            raise ValueError("attributes are shared by the whole batch; set them for all indices")
        setattr(self.venv, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any) -> list[Any]:
        rows = list(self._get_indices(indices))
        if method_name == "action_masks":  # per-session rows, as sb3-contrib's get_action_masks expects
            return list(self.action_masks()[rows])
        result = getattr(self.venv, method_name)(*method_args, **method_kwargs)
        return [result for _ in rows]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        """True for SB3's ``Monitor`` only: the adapter writes Monitor's ``info["episode"]`` itself."""
        return [wrapper_class is Monitor for _ in self._get_indices(indices)]

    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        """Seed the next reset: one generator drives the whole batch, so only ``seed`` itself is used."""
        if seed is not None:
            self.action_space.seed(seed)
        self._seeds = [seed] + [None] * (self.num_envs - 1)
        return self._seeds
