"""PettingZoo population: concurrent user sessions served by one recommender over one shared catalogue.

Fairness and the rich-get-richer loop are population effects: one user's clicks raise an item's
popularity, which changes the (observed) feedback and slate choices of every other user. The
population is ONE :class:`recgym.simulator.Simulator` with ``n_users`` slots; a PettingZoo agent is
one user's session in a slot, and all agents are stepped by one batched simulator call.
Docs: ``docs/population.md``.
"""

from __future__ import annotations

import reprlib
import sys
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from recgym.dynamics import LEAVE_REASONS, first_out_of_range
from recgym.envs.core import build_simulator, session_spaces
from recgym.metrics import gini, long_tail_share
from recgym.simulator import Simulator, StepResult
from recgym.sizes import check_count, check_memory
from recgym.world import World

ARRIVAL_STREAM = 0xA221  # mixed into the seed of the arrival generator, so it differs from the simulator's

#: Exact types of integer scalars (Python and NumPy; ``bool`` is not among them).
INTEGER_TYPES = frozenset({int} | {t for t in np.sctypeDict.values() if np.dtype(t).kind in "iu"})

#: Bytes per name in ``possible_agents`` beyond the string itself: its list slot and its slot in the
#: frozenset of known names (16-byte entries, the table as sparse as 25% full).
NAME_OVERHEAD_BYTES = 8 + 64


class PlatformMonitor:
    """Platform-level metrics of one simulator, read from its shared (I,) exposure counts step by step."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.reset()

    def reset(self) -> None:
        """Start counting from the simulator's current exposure (call after ``sim.reset``)."""
        self._last_exposure = self.sim.exposure.copy()

    def update(self) -> dict[str, float]:
        """Metrics of the step just taken.

        exposure_gini: Gini of the cumulative exposure since reset over the WHOLE catalogue;
        long_tail_share: share of this step's recommendations outside the top ``popular_fraction``
        items (by prior popularity); active_users: sessions served this step.
        """
        exposure = self.sim.exposure
        step = exposure - self._last_exposure
        self._last_exposure = exposure.copy()
        return {
            "exposure_gini": gini(exposure),
            "long_tail_share": long_tail_share(step, self.sim.popular),
            "active_users": float(step.sum() / self.sim.params.slate_size),
        }


#: The v1 population's own option defaults: its users keep their state between sessions (the single
#: env and the vector env start every session afresh by default, ``session_memory=False``, issue #19).
POPULATION_V1_DEFAULTS = {"session_memory": True}


class PopulationEnv(ParallelEnv):
    """``ParallelEnv`` whose agents are concurrent user sessions (``population_v0.parallel_env(...)``).

    **Agents.** ``n_users`` slots of one simulator. Agents are named ``user_0, user_1, ...`` in order of
    arrival; ``user_0 .. user_{n_users-1}`` start in the slots at ``reset``. A user leaves when a
    leave rule fires (``terminated``) or the session reaches ``max_turn`` (``truncated``), and then
    disappears from ``env.agents``. Each empty slot receives the next new user with probability
    ``arrival_rate`` per step, at most ``max_arrivals`` arrivals per episode; a new user appears in the
    returned dicts of the step it arrives in (first observation, reward 0, not done) and in
    ``env.agents``, and acts from the next step. ``arrival_rate=1`` replaces a departed user at once
    (a fixed-size population); ``arrival_rate=0`` gives a closed cohort. While arrivals remain, the
    platform is never empty (if every slot is empty, one user arrives). ``possible_agents`` has
    ``n_users + max_arrivals`` names; ``max_arrivals=None`` means ``n_users * (max_cycles - 1)``,
    every arrival that can happen within ``max_cycles``, so the budget never binds by default
    (0 when ``arrival_rate=0``).
    The episode ends after ``max_cycles`` platform steps (all live users ``truncated``) or when
    no user is left.

    **Returning users** (v1 worlds, ``recgym/Population-v1``): users persist across sessions
    (:mod:`recgym.users`: drifted interest, acquired taste, long-term history; ``session_memory`` defaults
    to ``True`` here, :data:`POPULATION_V1_DEFAULTS`; ``session_memory=False`` starts each session from
    the user's initial state, the single and vector envs' default), and an arriving agent
    is the user whose return time comes first on the platform clock (a session's end sets its user's
    return: sooner after a satisfying session), so the same user comes back as a new agent (its
    ``user_id`` and ``session_index``, the user's count of sessions, in the arrival info). v0 worlds draw
    arriving users uniformly. Lifetime episodes (``episode="lifetime"``) are single-user episodes:
    refused here.

    **Spaces** per agent are those of :class:`recgym.envs.recsys.RecSysEnv` (one shared object).

    **Coupling.** All users share the simulator's item ``exposure``/``clicks``/``popularity``;
    ``popularity_feedback=0`` freezes popularity, so one user's actions cannot change another's
    rewards (per-step random draws are by batch shape, not by content; new sessions draw from the
    simulator's separate ``session_rng``). Empty slots are idle rows of the batched step.

    **Actions** are checked before anything changes: a bool, a float, a wrong shape or an item id
    outside [0, n_items) is a one-line ``ValueError`` naming the agent (:meth:`check_action`).

    **Sizes** are checked before anything is allocated: the ``n_users`` slots of the simulator and
    the ``n_users + max_arrivals`` names of ``possible_agents`` must fit in this machine's memory,
    else a one-line ``ValueError`` says how much they would need.

    **Infos** per agent: ``user_id`` (v1: and ``session_index`` on arrival), and after acting ``item``, ``true_reward``,
    ``observed_feedback``, ``repeated``, ``leave_reason``; ``action_mask`` (n_items,) int8 in the NX
    modes (1 = may be recommended; the dtype gymnasium's ``Discrete.sample(mask=...)`` takes);
    and, from ``step`` only, ``platform`` (one dict shared by all agents of the step):
    ``exposure_gini``, ``long_tail_share``, ``active_users`` (see :class:`PlatformMonitor`), ``arrivals``, ``departures``.

    Args:
        world, data_dir, world_options, options: as for the single env (every ``SimParams`` field).
        n_users: concurrent slots (B of the simulator).
        max_cycles: platform steps per episode.
        arrival_rate: per-step probability that an empty slot receives a new user, in [0, 1].
        max_arrivals: users that may arrive after the initial ``n_users`` (``None``: see above).
    """

    metadata = {"name": "recgym_population_v0", "render_modes": [], "is_parallelizable": True}

    def __init__(
        self,
        world: str | World = "kuairec",
        n_users: int = 64,
        max_cycles: int = 100,
        arrival_rate: float = 1.0,
        max_arrivals: int | None = None,
        data_dir: str | Path | None = None,
        world_options: dict[str, Any] | None = None,
        render_mode: str | None = None,
        **options: Any,
    ) -> None:
        if render_mode is not None:
            raise ValueError("the population env does not render; valid render_mode: None")
        n_users, max_cycles = check_count("n_users", n_users), check_count("max_cycles", max_cycles)
        if isinstance(arrival_rate, bool) or not isinstance(arrival_rate, (int, float)) or not 0 <= arrival_rate <= 1:
            raise ValueError(f"arrival_rate must be a probability in [0, 1], got {arrival_rate!r}")
        if max_arrivals is None:
            request = f"n_users={n_users} x max_cycles={max_cycles} with max_arrivals=None"
            max_arrivals = n_users * (max_cycles - 1) if arrival_rate > 0 else 0
        else:
            max_arrivals = check_count("max_arrivals", max_arrivals, 0)
            request = f"n_users={n_users} + max_arrivals={max_arrivals}"
        self.sim = build_simulator(n_users, world, data_dir, world_options, count_name="n_users",
                                   v1_defaults=POPULATION_V1_DEFAULTS, **options)
        if self.sim.params.episode != "session":
            raise ValueError(f"episode={self.sim.params.episode!r}: the population's agents are sessions "
                             "(episode='session'); lifetime episodes are single-user (RecSysEnv, the vector env)")
        n_names = n_users + max_arrivals  # checked before the names are made
        check_memory(request, n_names * (sys.getsizeof(f"user_{n_names - 1}") + NAME_OVERHEAD_BYTES),
                     f"names for its {n_names:,} possible_agents")
        self.world, self.params = self.sim.world, self.sim.params
        self._observation_space, self._action_space = session_spaces(self.world, self.params)
        self.n_users, self.max_cycles, self.arrival_rate = n_users, max_cycles, float(arrival_rate)
        self.max_arrivals = max_arrivals
        self.possible_agents = [f"user_{i}" for i in range(n_users + self.max_arrivals)]
        self._known_agents = frozenset(self.possible_agents)
        self.render_mode = None
        self.monitor = PlatformMonitor(self.sim)
        self.agents: list[str] = []
        self._slot_agent = np.full(n_users, -1, np.int64)  # agent index per slot, -1 = empty
        self._next_agent = n_users
        self._cycle = 0
        self._arrival_rng = np.random.default_rng()
        slate = self.params.slate_size
        self._idle_action = np.zeros(n_users, np.int64) if slate == 1 else np.tile(np.arange(slate), (n_users, 1))

    @property
    def live_slots(self) -> np.ndarray:
        """(len(agents),) int64 simulator rows of the live users, in the order of ``agents``: the rows of the
        shared simulator's (n_users, ...) tables (``sim.expected_reward()``, ``sim.leave_mask()``) that a
        policy acting for ``agents`` reads; the other rows are empty slots."""
        return np.flatnonzero(self._slot_agent >= 0)

    def observation_space(self, agent: str) -> spaces.Dict:
        self._check_agent(agent)
        return self._observation_space

    def action_space(self, agent: str) -> spaces.Space:
        self._check_agent(agent)
        return self._action_space

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, dict[str, Any]]]:
        """Start a new population (clears the shared counts). ``options`` are ignored: there are none."""
        if seed is not None:
            if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
                raise ValueError(f"seed must be an int (or None), got {seed!r}")
            self._arrival_rng = np.random.default_rng([int(seed), ARRIVAL_STREAM])
        self.sim.reset(seed)
        self.monitor.reset()
        self._slot_agent[:] = np.arange(self.n_users)
        self._next_agent, self._cycle = self.n_users, 0
        self.agents = self.possible_agents[: self.n_users]
        slots = np.arange(self.n_users)
        observations = self._observations(self.sim.observe(), slots)
        infos = self._arrival_infos(slots)
        return dict(zip(self.agents, observations)), dict(zip(self.agents, infos))

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        """One platform step: every live user gets its recommendation in ONE batched simulator call."""
        if not self.agents:
            raise ValueError("no live users: the population episode is over; call reset()")
        live = self._slot_agent >= 0
        slots = np.flatnonzero(live)
        acting = [self.possible_agents[i] for i in self._slot_agent[slots]]
        batch = self._batch_actions(actions, acting, slots)
        result = self.sim.step(batch, active=live)
        self._cycle += 1
        platform = self.monitor.update()
        observation = self.sim.observe()
        masks = self._action_masks(slots)

        horizon = self._cycle >= self.max_cycles
        terminated = result.terminated[slots]
        truncated = (result.truncated[slots] | horizon) & ~terminated
        self._slot_agent[slots[terminated | truncated]] = -1
        arriving = self._arrive(horizon)
        platform.update(arrivals=float(arriving.size), departures=float((terminated | truncated).sum()))

        names = acting + [self.possible_agents[i] for i in self._slot_agent[arriving]]
        observations = self._observations(observation, slots)
        infos = self._step_infos(result, slots, masks, platform)
        if arriving.size:
            observations += self._observations(self.sim.observe(), arriving)
            infos += self._arrival_infos(arriving, platform=platform)
        n_new = arriving.size
        rewards = result.reward[slots].tolist() + [0.0] * n_new
        terminations = terminated.tolist() + [False] * n_new
        truncations = truncated.tolist() + [False] * n_new
        self.agents = [self.possible_agents[i] for i in self._slot_agent[self._slot_agent >= 0]]
        return (
            dict(zip(names, observations)), dict(zip(names, rewards)), dict(zip(names, terminations)),
            dict(zip(names, truncations)), dict(zip(names, infos)),
        )

    def check_action(self, agent: str, action: Any) -> np.ndarray:
        """``action`` as int64 item id(s) if it is a valid action of ``agent``: an integer item id in
        [0, n_items) (``Discrete``), or ``slate_size`` of them (``MultiDiscrete``); a bool or a float
        is not an item id. Otherwise a one-line ``ValueError`` naming the agent; nothing changes."""
        self._check_agent(agent)
        n_items, shape = self.world.n_items, self._action_space.shape
        wanted = "an integer item id" if not shape else f"{shape[0]} integer item ids"
        shown = f"{' '.join(reprlib.repr(action).split())} ({type(action).__name__})"
        try:
            array = np.asarray(action)
        except (ValueError, TypeError):  # a ragged nesting, an object NumPy cannot convert
            array = None
        elements = action if isinstance(action, (list, tuple)) else ()
        if (array is None or array.dtype.kind not in "iu"
                or any(isinstance(element, (bool, np.bool_)) for element in elements)):
            raise ValueError(f"action of {agent!r} must be {wanted} in [0, {n_items - 1}], got {shown}")
        if array.shape != shape:
            raise ValueError(f"action of {agent!r} must be {wanted} (shape {shape}), got shape {array.shape}: {shown}")
        outside = array[(array < 0) | (array >= n_items)]
        if outside.size:
            raise ValueError(f"action of {agent!r}: item id {outside.flat[0]} is outside [0, {n_items - 1}]")
        return array.astype(np.int64)

    # ----------------------------------------------------------------- helpers
    def _check_agent(self, agent: str) -> None:
        if agent not in self._known_agents:
            raise ValueError(f"unknown agent {agent!r}; agents are 'user_0' .. {self.possible_agents[-1]!r}")

    def _batch_actions(self, actions: dict[str, Any], acting: list[str], slots: np.ndarray) -> np.ndarray:
        """(B,) or (B, slate_size) simulator actions: the live agents' in their slots, a placeholder in
        empty slots (idle in the simulator step). The batch is checked as a whole; only when it fails
        is each action checked (:meth:`check_action`) to name the agent at fault."""
        missing = [agent for agent in acting if agent not in actions]
        extra = sorted(set(actions) - set(acting))
        if missing or extra:
            raise ValueError(f"actions must be given for exactly the live agents (env.agents); "
                             f"missing {missing[:5]}, not live {extra[:5]}")
        given = [actions[agent] for agent in acting]
        stacked = _stack_integers(given)
        if (stacked is None or stacked.shape != (len(acting),) + self._action_space.shape
                or first_out_of_range(stacked.reshape(-1), self.world.n_items) >= 0):
            stacked = np.array([self.check_action(agent, action) for agent, action in zip(acting, given)])
        batch = self._idle_action.copy()
        batch[slots] = stacked
        return batch

    def _arrive(self, horizon: bool) -> np.ndarray:
        """Slots (int array) that receive a new user now; starts their sessions and names their agents."""
        draws = self._arrival_rng.random(self.n_users)  # fixed-shape draws: reproducible per seed
        users = self._arrival_rng.integers(0, self.world.n_users, size=self.n_users)
        remaining = self.max_arrivals - (self._next_agent - self.n_users)
        empty = self._slot_agent < 0
        if horizon or remaining <= 0 or not empty.any():
            return np.zeros(0, np.int64)
        arriving = empty & (draws < self.arrival_rate)
        if self.arrival_rate > 0 and empty.all() and not arriving.any():
            arriving[0] = True
        slots = np.flatnonzero(arriving)[:remaining]
        self.sim.reset_sessions(slots, None if self.world.is_v1 else users[slots])  # v1: in return order
        self._slot_agent[slots] = self._next_agent + np.arange(slots.size)
        self._next_agent += slots.size
        return slots

    @staticmethod
    def _observations(observation: dict[str, np.ndarray], slots: np.ndarray) -> list[dict[str, np.ndarray]]:
        return [{key: value[slot] for key, value in observation.items()} for slot in slots]

    def _step_infos(
        self, result: StepResult, slots: np.ndarray, masks: np.ndarray | None, platform: dict[str, float]
    ) -> list[dict[str, Any]]:
        columns = zip(
            self.sim.user[slots].tolist(), result.consumed[slots].tolist(), result.true_reward[slots].tolist(),
            result.observed_feedback[slots].tolist(), result.repeated[slots].tolist(),
            [LEAVE_REASONS[code] for code in result.leave_reason[slots]],
        )
        keys = ("user_id", "item", "true_reward", "observed_feedback", "repeated", "leave_reason")
        infos = [dict(zip(keys, values), platform=platform) for values in columns]
        if masks is not None:
            for info, mask in zip(infos, masks):
                info["action_mask"] = mask
        return infos

    def _arrival_infos(self, slots: np.ndarray, **extra: Any) -> list[dict[str, Any]]:
        infos = [{"user_id": user, **extra} for user in self.sim.user[slots].tolist()]
        if self.world.is_v1:
            for info, index in zip(infos, self.sim.session_index[slots].tolist()):
                info["session_index"] = index
        masks = self._action_masks(slots)
        if masks is not None:
            for info, mask in zip(infos, masks):
                info["action_mask"] = mask
        return infos

    def _action_masks(self, slots: np.ndarray) -> np.ndarray | None:
        """(len(slots), n_items) int8 masks (gymnasium's ``Discrete.sample(mask=...)`` dtype) in NX modes."""
        return self.sim.action_mask()[slots].astype(np.int8) if self.params.no_repeat else None


def _stack_integers(actions: list[Any]) -> np.ndarray | None:
    """``actions`` as one int64 array when each is an integer scalar or an integer array (the common
    case, recognised by type without converting each action); ``None`` otherwise (bools included)."""
    types = set(map(type, actions))
    if not types <= INTEGER_TYPES and (types != {np.ndarray} or any(a.dtype.kind not in "iu" for a in actions)):
        return None
    try:
        stacked = np.asarray(actions)
    except ValueError:  # arrays of different shapes
        return None
    return stacked.astype(np.int64, copy=False) if stacked.dtype.kind in "iu" else None
