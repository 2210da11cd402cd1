"""Stable-Baselines3 ``VecEnv`` view of the batched simulator.

SB3 refuses gymnasium ``VectorEnv`` objects and ships no adapter; :class:`SB3VecEnv` lets any SB3
(or sb3-contrib) algorithm train directly on recgym's native batch, with no per-env copies.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvObs, VecEnvStepReturn

from recgym.envs.vector import RecSysVectorEnv


class SB3VecEnv(VecEnv):
    """SB3 ``VecEnv`` over :class:`RecSysVectorEnv`: ``SB3VecEnv("recgym/KuaiRec-v0", num_envs=64, **options)``.

    Semantics are SB3's: a finished session is reset in the same step; its last observation is in
    ``infos[i]["terminal_observation"]`` and ``infos[i]["TimeLimit.truncated"]`` is True when it
    ended at ``max_turn`` without leaving, so SB3 bootstraps the value there. In the NX modes
    :meth:`action_masks` returns the (B, n_items) mask sb3-contrib's ``MaskablePPO`` reads.
    The batched infos of the last step (``true_reward`` etc., arrays of B) are kept in
    :attr:`last_infos` for callbacks that compute metrics.

    Args:
        env: a registered recgym id or an existing :class:`RecSysVectorEnv`.
        num_envs: B, sessions stepped per call (ignored when ``env`` is an instance).
        options: env options (see :class:`recgym.envs.recsys.RecSysEnv`).
    """

    def __init__(self, env: str | RecSysVectorEnv = "recgym/KuaiRec-v0", num_envs: int = 8, **options: Any) -> None:
        if isinstance(env, RecSysVectorEnv):
            if options:
                raise ValueError("options only apply when the env is given by id")
            self.venv = env
        else:
            self.venv = gym.make_vec(env, num_envs=num_envs, vectorization_mode="vector_entry_point", **options)
            if not isinstance(self.venv, RecSysVectorEnv):
                raise ValueError(f"{env!r} is not a recgym env id (its vector entry point is not RecSysVectorEnv)")
        self.last_infos: dict[str, Any] = {}
        self._actions: np.ndarray | None = None
        super().__init__(self.venv.num_envs, self.venv.single_observation_space, self.venv.single_action_space)

    def reset(self) -> VecEnvObs:
        seed = self._seeds[0]
        observation, self.last_infos = self.venv.reset(seed=seed)
        self._reset_seeds()
        self.reset_infos = [{} for _ in range(self.num_envs)]
        return observation

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        observation, rewards, terminated, truncated, self.last_infos = self.venv.step(self._actions)
        dones = terminated | truncated
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        if dones.any():
            final = self.last_infos["final_obs"]
            for i in np.flatnonzero(dones):
                infos[i]["terminal_observation"] = {key: value[i] for key, value in final.items()}
                infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
        return observation, rewards.astype(np.float32), dones, infos

    def action_masks(self) -> np.ndarray:
        """(B, n_items) bool: True where an item may be recommended."""
        return self.venv.action_masks()

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
        return [False for _ in self._get_indices(indices)]

    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        """Seed the next reset: one generator drives the whole batch, so only ``seed`` itself is used."""
        if seed is not None:
            self.action_space.seed(seed)
        self._seeds = [seed] + [None] * (self.num_envs - 1)
        return self._seeds
