"""Native batched Gymnasium ``VectorEnv``: B user sessions stepped by one simulator call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from gymnasium.error import ResetNeeded
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from recgym.envs.core import RegisteredSpec, build_simulator, episode_step_limit, has_reset_option
from recgym.envs.recsys import episode_spaces
from recgym.world import World

#: The per-step infos, arrays of B (each with its ``_key`` mask); SAME_STEP repeats them in ``final_info``.
STEP_INFOS = ("true_reward", "observed_feedback", "leave_reason", "user_id")


class RecSysVectorEnv(RegisteredSpec, VectorEnv):
    """``num_envs`` concurrent sessions of :class:`recgym.envs.recsys.RecSysEnv`, stepped in one batch.

    This is the ``vector_entry_point`` of every recgym id::

        venv = gym.make_vec("recgym/KuaiRec-v0", num_envs=1024, vectorization_mode="vector_entry_point")

    All sessions share one catalogue: their consumption updates the same exposure and popularity
    counts. Spaces, rewards and options are those of the single env, batched. Gymnasium's vector
    wrappers (``gymnasium.wrappers.vector``: ``FlattenObservation``, ``FilterObservation``,
    ``RecordEpisodeStatistics``, ``NormalizeReward``, ...) work on it with the default autoreset.

    **Autoreset** (``autoreset_mode``, also in ``metadata["autoreset_mode"]``), as Gymnasium defines it:

    * ``AutoresetMode.NEXT_STEP`` (default, Gymnasium's default; what RLlib and gymnasium's vector
      wrappers expect): the step that ends a session returns its last observation; the NEXT ``step``
      ignores that row's action, starts a new session there and returns its first observation with
      reward 0 and not done. The ignored row is idle in the simulator, so it adds nothing to the
      shared counts.
    * ``AutoresetMode.SAME_STEP`` (what SB3 expects; :class:`recgym.envs.sb3.SB3VecEnv` and
      :func:`recgym.evaluate` ask for it): a user who leaves or reaches ``max_turn`` is replaced in the
      same ``step`` call by a newly drawn user; the returned observation is the new user's first one.
      The departing user's last observation is in ``infos["final_obs"]`` (a dict of (B, ...) arrays)
      and its step infos in ``infos["final_info"]``, both valid where ``infos["_final_obs"]`` /
      ``infos["_final_info"]``. (The step infos stay in ``infos`` too: every row's info is that of the
      step it took.)
    * ``AutoresetMode.DISABLED``: an ended session stays ended until ``reset(options={"reset_mask": m})``
      restarts it; stepping an ended row raises ``gymnasium.error.ResetNeeded`` (pass it as inactive
      with ``active=`` to step the others).

    ``step`` before the first ``reset`` raises ``gymnasium.error.ResetNeeded``.

    ``step(actions, active=mask)`` additionally idles the rows where ``mask`` is False (their
    sessions wait unchanged); hierarchical agents use it to let sessions finish options together.

    **Infos** (arrays of B, each with its ``_key`` mask): ``true_reward``, ``observed_feedback``,
    ``leave_reason`` (int code, see :data:`recgym.dynamics.LEAVE_REASONS`), ``user_id`` (the user
    who received the step); v1 ids add ``signals`` (B, 8), the logged signals (:data:`recgym.params.SIGNALS`);
    ``episode="lifetime"`` adds ``session_ended`` (B,) bool.

    **Episodes** (v1 ids): ``episode="session"`` (default): each row is one session, and a new session
    takes the user who returns first on the platform clock (:mod:`recgym.users`). ``episode="lifetime"``:
    each row is one user's lifetime of sessions (see :class:`recgym.envs.recsys.RecSysEnv`); an ended
    lifetime restarts as a new user's (autoreset), never a user held by another row, so
    ``num_envs`` may not exceed the world's users.

    **Action masks** (NX modes): :meth:`action_masks` returns the (B, n_items) int8 mask on demand
    (1 = may be recommended), so ``venv.action_space.sample(mask=tuple(venv.action_masks()))`` samples
    allowed items (slate_size 1). Unlike the single env it is not copied into every step's infos: a
    fresh (B, n_items) array per step would cost as much as the rest of the step at 4,096 sessions.

    **Reset**: ``reset(seed=s)`` seeds the whole batch with one int: one generator drives all
    sessions. ``reset(seed=[s_0, ..., s_{B-1}])`` (Gymnasium's per-env list) seeds that generator
    from ``numpy.random.SeedSequence([s_0, ..., s_{B-1}])``, the whole list (with B = 1, ``[s]`` is the
    same as ``s``); a list of ``None`` is no seed. A full reset clears the shared catalogue counts
    and starts B new sessions. ``reset(options={"reset_mask": m})`` ((B,) bool) starts new sessions
    only in the rows where ``m`` is True, keeping the others and the shared counts (with ``seed``,
    the generator is re-seeded first).

    ``env.spec.max_episode_steps`` (set by ``gym.make_vec``) is ``max_turn`` (lifetime mode:
    ``lifetime_sessions * max_turn``).
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(
        self,
        num_envs: int = 1,
        world: str | World = "kuairec",
        data_dir: str | Path | None = None,
        world_options: dict[str, Any] | None = None,
        render_mode: str | None = None,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        max_episode_steps: int | None = None,
        **options: Any,
    ) -> None:
        if render_mode is not None:
            raise ValueError("the vector env does not render; use the single env with render_mode='ansi'")
        modes = {mode.value: mode for mode in AutoresetMode}
        mode = autoreset_mode.value if isinstance(autoreset_mode, AutoresetMode) else autoreset_mode
        if mode not in modes:
            raise ValueError(f"autoreset_mode must be one of {list(modes)}, got {autoreset_mode!r}")
        self.metadata = {**self.metadata, "autoreset_mode": modes[mode]}
        self.sim = build_simulator(num_envs, world, data_dir, world_options, count_name="num_envs", **options)
        self.world, self.params = self.sim.world, self.sim.params
        if max_episode_steps is not None and max_episode_steps != episode_step_limit(self.params):
            limit = ("lifetime_sessions * max_turn" if self.params.episode == "lifetime" else "max_turn")
            raise ValueError(f"max_episode_steps={max_episode_steps!r} differs from {limit}="
                             f"{episode_step_limit(self.params)}: episodes end there; set the limit with max_turn")
        self.num_envs = self.sim.n_sessions
        self.single_observation_space, self.single_action_space = episode_spaces(self.world, self.params)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.render_mode = None
        self._started = False  # step before the first reset is refused
        self._ended = np.zeros(self.num_envs, bool)  # NEXT_STEP: restart next step; DISABLED: wait for reset_mask

    def reset(
        self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        entropy = _batch_seed(seed, self.num_envs)
        reset_mask = _reset_mask(options, self.num_envs)
        if reset_mask is not None and not self._started:
            raise ResetNeeded("reset the whole batch (reset() without reset_mask) before resetting some of its rows")
        if entropy is not None:
            self.action_space.seed(entropy if isinstance(entropy, int) else
                                   int(np.random.SeedSequence(entropy).generate_state(1)[0]))
        if reset_mask is None:
            self.sim.reset(entropy)
            self._ended[:] = False
        else:
            if entropy is not None:
                self.sim.reseed(entropy)
            self.sim.reset_sessions(np.flatnonzero(reset_mask))
            self._ended[reset_mask] = False
        self._started = True
        return self.sim.observe(), {}

    def step(
        self, actions: Any, active: np.ndarray | None = None
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if not self._started:
            raise ResetNeeded("call reset() before step()")
        autoreset = self.metadata["autoreset_mode"]
        ended = self._ended
        restart = autoreset is AutoresetMode.NEXT_STEP and ended.any()
        if autoreset is AutoresetMode.DISABLED and ended.any():
            stepped = ended & self.sim.validate_active(active)
            if stepped.any():
                raise ResetNeeded(f"rows {np.flatnonzero(stepped).tolist()} ended (AutoresetMode.DISABLED); restart "
                                  f"them with reset(options={{'reset_mask': mask}}) or pass them as inactive")
        if restart:
            active = ~ended if active is None else self.sim.validate_active(active) & ~ended
        users = self.sim.user.copy()
        result = self.sim.step(actions, active=active)
        if restart:
            self.sim.reset_sessions(np.flatnonzero(ended))
        done = result.terminated | result.truncated
        every_row = np.ones(self.num_envs, bool)
        infos: dict[str, Any] = {
            "true_reward": result.true_reward, "observed_feedback": result.observed_feedback,
            "leave_reason": result.leave_reason, "user_id": users,
        }
        for key in STEP_INFOS:
            infos[f"_{key}"] = every_row
        if self.world.is_v1:  # (B, 8) the logged signals, columns in recgym.params.SIGNALS order
            infos["signals"], infos["_signals"] = result.signals.T, every_row
        if self.params.episode == "lifetime":  # (B,) a user's session ended (the lifetime goes on)
            infos["session_ended"], infos["_session_ended"] = result.session_ended, every_row
        if autoreset is AutoresetMode.NEXT_STEP:
            self._ended = done
        elif autoreset is AutoresetMode.DISABLED:
            self._ended = ended | done
        elif done.any():
            # final_obs: every session's observation before the resets; the returned one after them.
            infos["final_obs"], observation = self.sim.observe_around_reset(np.flatnonzero(done))
            infos["_final_obs"] = done
            infos["final_info"] = {**{key: infos[key] for key in STEP_INFOS}, **{f"_{key}": done for key in STEP_INFOS}}
            infos["_final_info"] = done
            return observation, result.reward, result.terminated, result.truncated, infos
        return self.sim.observe(), result.reward, result.terminated, result.truncated, infos

    def action_masks(self) -> np.ndarray:
        """(B, n_items) int8 mask, 1 where an item may still be recommended to the session."""
        return self.sim.action_mask().view(np.int8)


def _batch_seed(seed: Any, num_envs: int) -> int | list[int] | None:
    """``reset``'s seed as SeedSequence entropy: an int, a list of B ints, or ``None``."""
    def valid(value: Any) -> bool:
        return not isinstance(value, bool) and isinstance(value, (int, np.integer)) and value >= 0

    if seed is None or valid(seed):
        return None if seed is None else int(seed)
    if isinstance(seed, (list, tuple, np.ndarray)) and len(seed) == num_envs:
        if all(value is None for value in seed):
            return None
        if all(valid(value) for value in seed):
            return [int(value) for value in seed]
    raise ValueError(f"seed must be a non-negative int, or a list of {num_envs} such ints (one per env; one generator "
                     f"drives the batch, seeded from the whole list), or None; got {seed!r}")


def _reset_mask(options: dict[str, Any] | None, num_envs: int) -> np.ndarray | None:
    """The ``reset_mask`` option as a (B,) bool array with a True, or ``None``."""
    if not has_reset_option(options, "reset_mask"):
        return None
    mask = options["reset_mask"]
    if not isinstance(mask, np.ndarray) or mask.dtype != bool or mask.shape != (num_envs,) or not mask.any():
        shown = f"{mask.dtype} array of shape {mask.shape}" if isinstance(mask, np.ndarray) else repr(mask)
        raise ValueError(f"reset option reset_mask must be a bool array of shape ({num_envs},) with at least one "
                         f"True, got {shown}")
    return mask
