"""Native batched Gymnasium ``VectorEnv``: B user sessions stepped by one simulator call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from recgym.envs.core import build_simulator, session_spaces
from recgym.world import World


class RecSysVectorEnv(VectorEnv):
    """``num_envs`` concurrent sessions of :class:`recgym.envs.recsys.RecSysEnv`, stepped in one batch.

    This is the ``vector_entry_point`` of every recgym id::

        venv = gym.make_vec("recgym/KuaiRec-v0", num_envs=1024, vectorization_mode="vector_entry_point")

    All sessions share one catalogue: their consumption updates the same exposure and popularity
    counts. Spaces, rewards and options are those of the single env, batched.

    **Autoreset** (``autoreset_mode``, also in ``metadata["autoreset_mode"]``):

    * ``AutoresetMode.SAME_STEP`` (default; what SB3 expects): a user who leaves or reaches
      ``max_turn`` is replaced in the same ``step`` call by a newly drawn user; the returned
      observation is the new user's first one, and the departing user's last observation is in
      ``infos["final_obs"]`` (a dict of (B, ...) arrays, valid where ``infos["_final_obs"]``).
    * ``AutoresetMode.NEXT_STEP`` (gymnasium's default; what RLlib's env runners expect): the step
      that ends a session returns its last observation; the NEXT ``step`` ignores that row's action,
      starts a new session there and returns its first observation with reward 0 and not done.
      The ignored row is idle in the simulator, so it adds nothing to the shared counts.

    ``step(actions, active=mask)`` additionally idles the rows where ``mask`` is False (their
    sessions wait unchanged); hierarchical agents use it to let sessions finish options together.

    **Infos** (arrays of B, each with its ``_key`` mask): ``true_reward``, ``observed_feedback``,
    ``leave_reason`` (int code, see :data:`recgym.dynamics.LEAVE_REASONS`), ``user_id`` (the user
    who received the step).

    **Action masks** (NX modes): :meth:`action_masks` returns the (B, n_items) mask on demand, as
    sb3-contrib's ``MaskablePPO`` expects. Unlike the single env it is not copied into every step's
    infos: a fresh (B, n_items) array per step would cost as much as the rest of the step at 4,096
    sessions.

    ``reset(seed=s)`` seeds the whole batch with one int (one generator drives all sessions).
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(
        self,
        num_envs: int = 1,
        world: str | World = "kuairec",
        data_dir: str | Path | None = None,
        world_options: dict[str, Any] | None = None,
        render_mode: str | None = None,
        autoreset_mode: AutoresetMode | str = AutoresetMode.SAME_STEP,
        **options: Any,
    ) -> None:
        if render_mode is not None:
            raise ValueError("the vector env does not render; use the single env with render_mode='ansi'")
        modes = {mode.value: mode for mode in (AutoresetMode.SAME_STEP, AutoresetMode.NEXT_STEP)}
        mode = autoreset_mode.value if isinstance(autoreset_mode, AutoresetMode) else autoreset_mode
        if mode not in modes:
            raise ValueError(f"autoreset_mode must be one of {list(modes)}, got {autoreset_mode!r}")
        self.metadata = {**self.metadata, "autoreset_mode": modes[mode]}
        self.sim = build_simulator(num_envs, world, data_dir, world_options, **options)
        self.world, self.params = self.sim.world, self.sim.params
        self.num_envs = self.sim.n_sessions
        self.single_observation_space, self.single_action_space = session_spaces(self.world, self.params)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.render_mode = None
        self._restart = np.zeros(self.num_envs, bool)  # NEXT_STEP: rows whose session ended last step

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise ValueError(f"seed must be a single int seeding the whole batch (or None), got {seed!r}")
        if options:
            raise ValueError(f"unknown reset option(s) {sorted(options)}; the vector env takes none")
        if seed is not None:
            self.action_space.seed(int(seed))
        self.sim.reset(seed)
        self._restart[:] = False
        return self.sim.observe(), {}

    def step(
        self, actions: Any, active: np.ndarray | None = None
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        next_step = self.metadata["autoreset_mode"] is AutoresetMode.NEXT_STEP
        if next_step and self._restart.any():
            active = ~self._restart if active is None else np.asarray(active) & ~self._restart
        users = self.sim.user.copy()
        result = self.sim.step(actions, active=active)
        if next_step and self._restart.any():
            self.sim.reset_sessions(np.flatnonzero(self._restart))
        done = result.terminated | result.truncated
        infos: dict[str, Any] = {
            "true_reward": result.true_reward, "_true_reward": np.ones(self.num_envs, bool),
            "observed_feedback": result.observed_feedback, "_observed_feedback": np.ones(self.num_envs, bool),
            "leave_reason": result.leave_reason, "_leave_reason": np.ones(self.num_envs, bool),
            "user_id": users, "_user_id": np.ones(self.num_envs, bool),
        }
        if next_step:
            self._restart = done
        elif done.any():
            # final_obs: every session's observation before the resets; the returned one after them.
            infos["final_obs"], observation = self.sim.observe_around_reset(np.flatnonzero(done))
            infos["_final_obs"] = done
            return observation, result.reward, result.terminated, result.truncated, infos
        return self.sim.observe(), result.reward, result.terminated, result.truncated, infos

    def action_masks(self) -> np.ndarray:
        """(B, n_items) bool mask of the items each session may still be recommended."""
        return self.sim.action_mask()
