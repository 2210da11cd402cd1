"""The one batched simulator core: B concurrent user sessions over one shared catalogue.

Every public face (``gym.Env``, the native ``VectorEnv``, the SB3 ``VecEnv`` adapter, the
PettingZoo population) is a thin view of :class:`Simulator`; the dynamics live in
:mod:`recgym.dynamics`, whose compiled kernels step all B sessions in one call.

A step, for all B sessions at once:

1. the user consumes the recommended item (or picks one from a slate);
2. true reward = base affinity (latent dot product, or the ground-truth matrix) + session terms
   (time of day, novelty seeking, category boredom, creator fatigue); 0 for repeats in NX modes;
3. observed feedback = true reward + popularity conformity, thinned by exposure bias, plus noise;
4. leave rules (DORL category window, popular streak, patience) decide who quits;
5. state update: history buffers, category fatigue, interest drift, session novelty, the clock,
   the no-repeat mask, and the SHARED item exposure / popularity counts (rich-get-richer loop).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from recgym import dynamics
from recgym.logging_model import N_SIGNALS, SLATE_UNLOGGED, UNIFORMS_PER_IMPRESSION, write_logged_history
from recgym.params import USERS_KNOBS, V1_KNOBS, SimParams
from recgym.sizes import array_bytes, check_count, check_memory
from recgym.users import (
    acquired_tastes, activity_levels, allocate_users, end_sessions, free_users, item_neighbourhoods, reset_users,
    restart_long_term, restart_users, take_returning, users_layout,
)
from recgym.world import World

class StepResult(NamedTuple):
    """What one batched step produced (a named tuple: ~10x cheaper to build than a frozen dataclass,
    which counts at B = 1). All arrays have B rows.

    consumed: (B,) item each user consumed; reward: (B,) what ``reward_signal`` selects;
    true_reward / observed_feedback: (B,); repeated: (B,) bool repeat in an NX mode;
    terminated: (B,) user left; truncated: (B,) reached max_turn; leave_reason: (B,) int8 code;
    signals: (8, B) float32 the logged signals (:data:`recgym.params.SIGNALS`) on v1 worlds, (8, 0) in v0.
    """

    consumed: np.ndarray
    reward: np.ndarray
    true_reward: np.ndarray
    observed_feedback: np.ndarray
    repeated: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    leave_reason: np.ndarray
    signals: np.ndarray
    session_ended: np.ndarray  # (B,) bool the user's session ended (in lifetime mode the episode goes on)


class Simulator:
    """Batch of ``n_sessions`` user sessions sharing one catalogue's exposure and popularity.

    Args:
        world: the catalogue and user population.
        params: validated :class:`SimParams`.
        n_sessions: B, the number of concurrent sessions.
        seed: seeds two explicit ``np.random.Generator`` streams (``None`` draws fresh entropy):
            ``rng`` for the step dynamics (draws sized by B, so one session's fate never shifts
            another's draws) and ``session_rng`` for starting sessions (user, hour, novelty offset).
        count_name: what errors call ``n_sessions`` (the view's own argument: ``num_envs``, ``n_users``).

    Raises ``ValueError`` before allocating anything when ``n_sessions`` is not a positive integer,
    when ``slate_size`` exceeds the catalogue, or when :func:`memory_need` exceeds the machine's
    memory (:func:`recgym.sizes.memory_limit`).
    """

    def __init__(
        self, world: World, params: SimParams, n_sessions: int, seed: int | None = None, *, count_name: str = "n_sessions"
    ) -> None:
        n_sessions = check_count(count_name, n_sessions)
        if params.slate_size > world.n_items:
            raise ValueError(f"slate_size={params.slate_size} exceeds the catalogue's {world.n_items} items")
        check_version(world, params)
        if params.episode == "lifetime" and n_sessions > world.n_users:
            raise ValueError(f"{count_name}={n_sessions}: a lifetime episode holds one user per slot, and "
                             f"{world.name!r} has {world.n_users} users")
        check_memory(f"{count_name}={n_sessions}", memory_need(n_sessions, world, params),
                     "session state and step buffers")
        self.world, self.params, self.n_sessions = world, params, n_sessions
        self.reseed(seed)
        n, n_items, dims = self.n_sessions, world.n_items, world.embed_dim
        cat_lists, cat_counts = dynamics.category_lists(world.item_cats)
        self.popular = world.popular_items(params.popular_fraction)
        self.catalogue = dynamics.Catalogue(
            item_emb=np.ascontiguousarray(world.item_emb, np.float32),
            item_cats=np.ascontiguousarray(world.item_cats, bool),
            cat_lists=cat_lists, cat_counts=cat_counts,
            item_hour=world.item_hour.astype(np.float32), item_creator=world.item_creator.astype(np.int32),
            popular=self.popular, pop_prior=world.pop_prior.astype(np.float64),
            user_interest=np.ascontiguousarray(world.user_interest, np.float32),
            user_novelty=world.user_novelty.astype(np.float32),
            reward_matrix=(
                np.zeros((0, 0), np.float32) if world.reward_matrix is None
                else np.ascontiguousarray(world.reward_matrix, np.float32)
            ),
            reward_max=np.float32(world.reward_max), affinity_scale=np.float32(world.affinity_scale),
            affinity_bias=np.float32(world.affinity_bias),
            walks=world.reward_matrix is None and bool(params.interest_drift or params.interest_walk),
            item_qmult=(
                np.exp(world.quality_weight * world.item_quality.astype(np.float64) - world.quality_weight ** 2 / 2)
                .astype(np.float32) if world.is_v1 else np.zeros(0, np.float32)
            ),
            user_followed=world.user_followed.astype(np.int32) if world.is_v1 else np.zeros((0, 0), np.int32),
            user_cycles=world.user_cycles if world.is_v1 else np.zeros((0, 4, dims), np.float32),
            mode_thresholds=(dynamics.mode_thresholds(world.user_novelty, params.novelty_switch) if world.is_v1
                             else np.zeros((0, 3), np.float32)),
            item_neighbourhood=(item_neighbourhoods(world, params.taste_neighbourhoods) if world.is_v1
                                else np.zeros(0, np.int64)),
            item_niche=(acquired_tastes(world, params.popular_fraction).astype(np.float32) if world.is_v1
                        else np.zeros(0, np.float32)),
        )
        self.knobs = dynamics.knobs(params, world.is_v1)
        # Padded embeddings: index -1 (an empty history slot) reads a zero row in observations.
        self._emb_padded = np.vstack([world.item_emb, np.zeros((1, dims), np.float32)])
        no_repeat = params.no_repeat
        # Users over time (recgym.users): the per-user state that persists across sessions (0 rows in v0).
        self.users = allocate_users(world.n_users if world.is_v1 else 0, dims, world.n_categories,
                                    world.n_creators if world.is_v1 else 0, params.taste_neighbourhoods)
        self._users_args = tuple(self.users)
        self._start_interest = self.users.long_term_interest if world.is_v1 else self.catalogue.user_interest
        self.start_day = np.zeros(n, np.float64)  # (B,) day each session began (platform / lifetime clock)
        self.session_index = np.zeros(n, np.int64)  # (B,) the session's index in its user's lifetime
        self.return_gap = np.zeros(n, np.float32)  # (B,) days between the user's last session and this one
        self.sessions = dynamics.Sessions(
            **{name: np.full(shape, fill, dtype) for name, (shape, dtype, fill) in session_layout(n, world, params).items()},
            exposure=np.zeros(n_items, np.float64),
            clicks=np.zeros(n_items, np.float64),
            highest_popularity=np.array([world.pop_prior.max()], np.float64),
            taste=self.users.taste, taste_pending=self.users.taste_pending,
            consumed_categories=self.users.consumed_categories,
            consumed_creators=self.users.consumed_creators,
        )
        self._reset_users()  # a first reset without a seed finds the users ready
        self._kernel_args = (self.knobs, tuple(self.catalogue), tuple(self.sessions))
        self._all_active = np.ones(n, bool)
        self._no_gumbels = np.zeros((n, 0), np.float64)
        self._was_seen = np.zeros((n, params.slate_size) if no_repeat else (0, 0), bool)  # step_sessions' scratch
        self._walk_dims = dims if self.catalogue.walks and params.interest_walk else 0
        self._observation_layout = observation_layout(n, world, params)

    # ------------------------------------------------------------------ state
    # The per-session state arrays (B rows each) and the shared counts, updated in place by the kernels.
    user = property(lambda self: self.sessions.user, doc="(B,) int64 user of each session.")
    step_count = property(lambda self: self.sessions.step_count, doc="(B,) int32 steps taken this session.")
    hour = property(lambda self: self.sessions.hour, doc="(B,) float32 session clock in [0, 24).")
    interest = property(lambda self: self.sessions.interest, doc="(B, D) float32 current latent interests (hidden).")
    recent_items = property(lambda self: self.sessions.recent_items, doc="(B, L) int32 recent items, -1 empty.")
    recent_feedback = property(lambda self: self.sessions.recent_feedback, doc="(B, L) float32 their observed feedback.")
    category_fatigue = property(lambda self: self.sessions.category_fatigue, doc="(B, C) float32 decayed counts.")
    window_counts = property(lambda self: self.sessions.window_counts, doc="(B, C) int16 DORL window counts.")
    novelty_offset = property(lambda self: self.sessions.novelty_offset, doc="(B,) float32 session novelty offset.")
    patience = property(lambda self: self.sessions.patience, doc="(B,) float32 remaining patience.")
    popular_streak = property(lambda self: self.sessions.popular_streak, doc="(B,) int32 popular items in a row.")
    exposure = property(lambda self: self.sessions.exposure, doc="(I,) float64 SHARED times each item was recommended.")
    clicks = property(lambda self: self.sessions.clicks, doc="(I,) float64 SHARED weighted clicks on each item.")

    @property
    def seen(self) -> np.ndarray | None:
        """(B, I) bool items recommended this session (NX modes; fresh array), ``None`` in Free mode."""
        return None if not self.params.no_repeat else ~self.action_mask()

    @property
    def popularity(self) -> np.ndarray:
        """(I,) current popularity: the world's prior plus logged clicks so far."""
        return self.world.pop_prior + self.clicks

    def reseed(self, seed: int | list[int] | None) -> None:
        """Re-seed both generators from ``seed`` (an int or a list of ints: ``np.random.SeedSequence``
        entropy; ``None`` draws fresh entropy). Sessions and shared counts are left as they are."""
        step_seed, session_seed = np.random.SeedSequence(seed).spawn(2)
        self.rng = np.random.default_rng(step_seed)
        self.session_rng = np.random.default_rng(session_seed)

    def reset(self, seed: int | list[int] | None = None, users: np.ndarray | None = None) -> None:
        """Re-seed (if given), clear the shared catalogue counts and start B new sessions."""
        if seed is not None:
            self.reseed(seed)
        self.clear_counters()
        self._reset_users()
        self.reset_sessions(np.arange(self.n_sessions), users)

    def clear_counters(self) -> None:
        """Clear the shared catalogue counters (exposure, clicks: popularity back to the world's prior),
        leaving the users, the sessions and the random streams as they are."""
        self.exposure[:] = 0
        self.clicks[:] = 0
        self.sessions.highest_popularity[0] = self.world.pop_prior.max()

    def _reset_users(self) -> None:
        """v1: every user back to the world's state, first visits staggered by their session rates."""
        if self.world.is_v1:
            rates = self.params.session_rate * activity_levels(self.world)
            reset_users(self.users, self.world.user_interest, rates,
                        self.session_rng.standard_exponential(self.world.n_users) / rates)

    def reset_sessions(self, slots: np.ndarray, users: np.ndarray | None = None) -> None:
        """Start new sessions in ``slots`` (int array) for ``users``. Default users: v0 uniform draws;
        v1 session mode the users who return first (the platform clock, :func:`recgym.users.take_returning`);
        v1 lifetime mode new lifetimes of uniformly drawn users not in another slot.

        Raises ``ValueError`` (state untouched) for a slot outside [0, B) or a user outside [0, U)
        (lifetime mode: or a user already in another slot).
        """
        slots = _index_array("slots", slots, self.n_sessions)
        rng = self.session_rng
        if users is not None:
            users = _index_array("users", users, self.world.n_users)
            if users.shape != slots.shape:
                raise ValueError(f"users must match slots in shape {slots.shape}, got {users.shape}")
        if self.world.is_v1 and self.params.episode == "lifetime":
            users = self._new_lifetimes(slots, users)
        elif self.world.is_v1:
            users = self._returning_users(slots, users)
        elif users is None:
            users = rng.integers(0, self.world.n_users, size=slots.size)
        hours = rng.uniform(0, 24, size=slots.size)
        offsets = rng.normal(0, 0.1, size=slots.size)
        weekdays = rng.integers(0, 7, size=slots.size if self.world.is_v1 else 0)
        self._start_sessions(slots, users, hours, offsets, weekdays)

    def _start_sessions(self, slots: np.ndarray, users: np.ndarray, hours: np.ndarray, offsets: np.ndarray,
                        weekdays: np.ndarray) -> None:
        """The one call that starts sessions (a reset's and a lifetime's next): ``slots``, ``users``,
        ``hours``, novelty ``offsets``, ``weekdays`` (N,) each (weekdays (0,) in v0). v1: the session
        mode's first draw (standard normals) comes from the session generator here."""
        mode_draws = self.session_rng.standard_normal(slots.size if self.world.is_v1 else 0)
        dynamics.start_sessions(*self._kernel_args, slots, users, hours, offsets, weekdays, self._start_interest,
                                mode_draws)

    def _returning_users(self, slots: np.ndarray, users: np.ndarray | None) -> np.ndarray:
        """Session mode (v1): ``users`` (default: the next in return order) start sessions now; without
        ``session_memory`` their long-term state first goes back to the world's (:func:`restart_long_term`)."""
        start = np.empty(slots.size)
        if users is None:
            users = np.empty(slots.size, np.int64)
            take_returning(self._users_args, users, start)
        else:
            start[:] = self.users.platform_day[0]
            np.add.at(self.users.session_count, users, 1)
        if not self.params.session_memory:  # each session from the user's initial long-term state (issue #19)
            restart_long_term(self._users_args, users, self.world.user_interest)
        self.start_day[slots] = start
        self.session_index[slots] = self.users.session_count[users] - 1
        self.return_gap[slots] = 0
        return users

    def _new_lifetimes(self, slots: np.ndarray, users: np.ndarray | None) -> np.ndarray:
        """Lifetime mode: ``users`` (default: uniform draws among the users in no other slot) start a
        new lifetime (world state, day 0) in ``slots``."""
        others = np.ones(self.n_sessions, bool)
        others[slots] = False
        busy = np.zeros(self.world.n_users, bool)
        busy[self.user[others]] = True
        if users is None:
            users = free_users(self.session_rng.integers(0, self.world.n_users, size=slots.size), busy)
        elif busy[users].any() or np.unique(users).size != users.size:
            raise ValueError("lifetime episodes need distinct users, none of them in another slot")
        restart_users(self._users_args, users, self.world.user_interest)
        self.start_day[slots] = 0
        self.session_index[slots] = 0
        self.return_gap[slots] = 0
        return users

    def _between_sessions(self, slots: np.ndarray, flags: np.ndarray) -> None:
        """The sessions in ``slots`` ended this step (v1): write back, draw the return gaps. Lifetime
        mode: the user returns after the gap in the same slot (a new session, the episode goes on;
        ``flags`` (3, B) are rewritten: not terminated, truncated at the lifetime horizon)."""
        s, u, params = self.sessions, self.users, self.params
        gaps = np.empty(slots.size)
        end_sessions(self.knobs, self._users_args, slots, s.user, s.interest, s.reward_sum, s.step_count,
                     self.start_day, self.session_rng.standard_exponential(slots.size), gaps)
        if params.episode != "lifetime":
            return
        users = s.user[slots]
        horizon = u.session_count[users] >= params.lifetime_sessions
        if params.lifetime_days:
            horizon |= u.next_return[users] >= params.lifetime_days
        flags[1, slots] = False
        flags[2, slots] = horizon
        slots, users, gaps = slots[~horizon], users[~horizon], gaps[~horizon]
        if slots.size:
            hours_since_midnight = s.hour[slots] + 24.0 * gaps  # the user's clock when they return
            weekdays = (s.weekday[slots] + hours_since_midnight // 24).astype(np.int64) % 7
            u.session_count[users] += 1
            self.start_day[slots] = u.next_return[users]
            self.session_index[slots] = u.session_count[users] - 1
            self.return_gap[slots] = gaps
            offsets = self.session_rng.normal(0, 0.1, size=slots.size)
            seen = s.seen[slots]  # NX modes: what the user was shown stays masked for the whole lifetime
            self._start_sessions(slots, users, hours_since_midnight % 24, offsets, weekdays)
            s.seen[slots] = seen

    def novelty_propensity(self) -> np.ndarray:
        """(B,) current novelty-seeking propensity in [0, 1]: static per-user value + session offset (v0)
        or +- the latent session mode's shift (v1)."""
        return dynamics.novelty_propensities(*self._kernel_args)

    def action_mask(self) -> np.ndarray:
        """(B, I) bool, True where an item may be recommended (all True in Free mode). Fresh array."""
        if not self.params.no_repeat:
            return np.ones((self.n_sessions, self.world.n_items), bool)
        mask = np.empty((self.n_sessions, self.world.n_items), bool)
        dynamics.unseen_mask(self.sessions.seen, mask)
        return mask

    def observe(self) -> dict[str, np.ndarray]:
        """Fresh observation arrays for all B sessions (what a real platform sees).

        item_ids: (B, k) int64 last k consumed item ids, oldest first, -1 for empty slots;
        embeddings: (B, k, D) float32 their embeddings (zeros for empty slots);
        feedback: (B, k) float32 the OBSERVED feedback on them (never the true reward);
        step: (B, 1) float32 session step / max_turn.

        v1 worlds add what the platform logged: signals (B, k, 8) float32 the logged signals
        (:data:`recgym.params.SIGNALS`) of those impressions; popularity and exposure (B, k) float32
        log1p(popularity) and log1p(exposure count) as shown at each impression; hour and weekday
        (B, 2) float32 (sin, cos) of the session clock; user_id (B, 1) int64; user_features (B, F) float32;
        position (B, k) int64 the slate slot each history item was clicked in (0 for single items, -1
        empty). v1 slates add slate_clicks (B, S) int8, the log of the last slate per slot: 1 clicked,
        0 an impression with click 0 (examined, not clicked), -1 not logged (unexamined or a repeat).
        """
        observation = self._empty_observations(())
        self._write_observation(observation)
        return observation

    def observe_around_reset(self, slots: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """(before, after): fresh observations of all B sessions before and after
        :meth:`reset_sessions` of ``slots`` (int array), which this call performs.

        Both live in one (2, B, ...) allocation per key: the allocator reuses one large block step
        after step instead of faulting in fresh pages for two 5 MB arrays (~1,250 page faults per
        step at B = 4,096, measured when they were separate).
        """
        both = self._empty_observations((2,))
        before, after = ({key: value[view] for key, value in both.items()} for view in (0, 1))
        self._write_observation(before)
        self.reset_sessions(slots)
        self._write_observation(after)
        return before, after

    def _empty_observations(self, lead: tuple[int, ...]) -> dict[str, np.ndarray]:
        return {key: np.empty((*lead, *shape), dtype) for key, (shape, dtype) in self._observation_layout.items()}

    def _write_observation(self, observation: dict[str, np.ndarray]) -> None:
        items = observation["item_ids"]
        dynamics.write_history(self._kernel_args[2], self.params.max_turn, items, observation["feedback"],
                               observation["step"])
        # mode="wrap": -1 (an empty slot) reads the zero row at the end; with ``out``, the default
        # mode="raise" would gather into a temporary copy first (3x slower).
        self._emb_padded.take(items, axis=0, out=observation["embeddings"], mode="wrap")
        if self.world.is_v1:
            s = self.sessions
            write_logged_history(s.recent_signals, s.recent_popularity, s.recent_exposure, s.recent_position, s.clock,
                                 s.user, *(observation[key] for key in (
                                     "signals", "popularity", "exposure", "position", "hour", "weekday", "user_id")))
            if self.params.slate_size > 1:
                observation["slate_clicks"][...] = s.slate_log
            self.world.user_features.take(self.user, axis=0, out=observation["user_features"])
            if self.params.episode == "lifetime":
                observation["session_index"][:, 0] = self.session_index
                observation["return_gap"][:, 0] = self.return_gap

    # ------------------------------------------------------------------- step
    def validate_actions(self, actions: np.ndarray) -> np.ndarray:
        """Check shape, type and range; return int64 actions of shape (B,) or (B, slate_size).

        A slate may repeat an id: the user sees each distinct item once (the repeat is ignored), so
        every sample of the action space is a valid action."""
        actions = np.asarray(actions)
        slate = self.params.slate_size
        expected = (self.n_sessions,) if slate == 1 else (self.n_sessions, slate)
        if actions.shape != expected:
            raise ValueError(f"actions must have shape {expected}, got {actions.shape}")
        if actions.dtype.kind not in "iu":  # integer kinds only (bool is kind "b")
            raise ValueError(f"actions must be integer item ids, got dtype {actions.dtype}")
        n_items = self.world.n_items
        bad = dynamics.first_out_of_range(actions.reshape(-1), n_items)
        if bad >= 0:
            raise ValueError(f"action {actions.reshape(-1)[bad]} is out of range: item ids are in [0, {n_items - 1}]")
        return actions.astype(np.int64, copy=False)

    def validate_active(self, active: np.ndarray | None) -> np.ndarray:
        """``active`` as a (B,) bool array (all True for ``None``), or a ``ValueError``."""
        if active is None:
            return self._all_active
        active = np.asarray(active)
        if active.shape != (self.n_sessions,) or active.dtype != bool:
            raise ValueError(f"active must be a bool array of shape ({self.n_sessions},), "
                             f"got {active.dtype} of shape {active.shape}")
        return active

    def step(self, actions: np.ndarray, active: np.ndarray | None = None) -> StepResult:
        """Advance every session by one recommendation. ``actions``: (B,) or (B, slate_size) item ids.

        ``active``: optional (B,) bool; rows marked False are idle this step (an empty population
        slot, a session waiting for others, a session about to restart): their state is kept, they
        add nothing to the shared exposure/click counts, and their results are 0 / not done. Their
        actions must still be valid ids (any placeholder). Random draws are made for all B rows, so
        which rows are idle never shifts another row's draws.

        Raises ``ValueError`` (state untouched) for malformed actions or ``active``.
        """
        actions = self.validate_actions(actions)
        active = self.validate_active(active)
        n, rng = self.n_sessions, self.rng
        gumbel_columns, uniform_columns = step_draws(self.world, self.params)
        gumbels = self._no_gumbels if not gumbel_columns else rng.gumbel(size=(n, gumbel_columns))
        normals = rng.standard_normal((n, dynamics.NORMALS_PER_SESSION), dtype=np.float32)
        v1 = self.world.is_v1
        uniforms = rng.random((n, uniform_columns), dtype=np.float32)
        walk_bytes = self._random_bytes(n, self._walk_dims)
        consumed, reason = np.empty(n, np.int64), np.empty(n, np.int8)
        rewards, flags = np.empty((3, n), np.float32), np.empty((3, n), bool)
        signals = np.zeros((N_SIGNALS, n if v1 else 0), np.float32)
        dynamics.step_sessions(
            *self._kernel_args, actions.reshape(n, -1), active, normals, uniforms, walk_bytes, gumbels,
            self._was_seen, consumed, rewards, flags, reason, signals,
        )
        session_ended = flags[1] | flags[2]
        if v1 and session_ended.any():
            self._between_sessions(np.flatnonzero(session_ended), flags)
        return StepResult(consumed, rewards[0], rewards[1], rewards[2], flags[0], flags[1], flags[2], reason, signals,
                          session_ended)

    def _random_bytes(self, rows: int, columns: int) -> np.ndarray:
        """(rows, columns) uint8 uniform random bytes from the step generator's raw 64-bit output
        (~9x faster than float32 uniforms per byte, ~2x faster than ``Generator.bytes``)."""
        raw = self.rng.bit_generator.random_raw(-(-rows * columns // 8))
        return raw.view(np.uint8)[: rows * columns].reshape(rows, columns)

    def expected_reward(self) -> np.ndarray:
        """(B, I) noise-free true reward of recommending each item now (ground truth; agents must
        not read it, oracles and evaluations may). Items masked in NX modes get 0."""
        table = np.zeros((self.n_sessions, self.world.n_items), np.float32)
        dynamics.expected_reward_table(*self._kernel_args, table)
        return table

    def expected_observed(self) -> np.ndarray:
        """(B, I) expected observed reward (v1 logging model, at the current popularity) of recommending
        each item now: what a learner of the logged reward converges to. Masked items get 0. v1 worlds only."""
        if not self.world.is_v1:
            raise ValueError(f"expected_observed needs a v1 world (the v1 logging model); {self.world.name!r} is v0")
        table = np.zeros((self.n_sessions, self.world.n_items), np.float32)
        dynamics.expected_observed_table(*self._kernel_args, table)
        return table

    def familiarity(self) -> tuple[np.ndarray, np.ndarray]:
        """((B, I) bool creator familiarity, (B, I) float32 familiarity f in [0, 1]) of every item now
        (v1 logging model's habit signal: followed or recent creator, category counts). v1 worlds only."""
        if not self.world.is_v1:
            raise ValueError(f"familiarity needs a v1 world; {self.world.name!r} is v0")
        shape = (self.n_sessions, self.world.n_items)
        creator, table = np.empty(shape, bool), np.empty(shape, np.float32)
        dynamics.familiarity_table(*self._kernel_args, creator, table)
        return creator, table

    def leave_mask(self) -> np.ndarray:
        """(B, I) bool: True where recommending the item now would trigger a deterministic leave
        rule (category window or popular streak); patience depends on the noisy reward."""
        table = np.empty((self.n_sessions, self.world.n_items), bool)
        dynamics.leave_table(*self._kernel_args, table)
        return table


def session_layout(n_sessions: int, world: World, params: SimParams) -> dict[str, tuple[tuple[int, ...], type, int]]:
    """``{name: (shape, dtype, initial value)}`` of the per-session state arrays (B rows) of
    :class:`recgym.dynamics.Sessions`: what :class:`Simulator` allocates and :func:`memory_need` counts."""
    n, dims, n_cats = n_sessions, world.embed_dim, world.n_categories
    buffer_len = max(params.history_len, params.leave_window, 1)
    return {
        "user": ((n,), np.int64, 0),
        "step_count": ((n,), np.int32, 0),
        "hour": ((n,), np.float32, 0),
        "interest": ((n, dims), np.float32, 0),
        "recent_items": ((n, buffer_len), np.int32, -1),  # item ids fit; half the bytes of int64
        "recent_feedback": ((n, buffer_len), np.float32, 0),
        "recent_creators": ((n, buffer_len), np.int32, -1),
        "history_sum_emb": ((n, dims), np.float32, 0),
        "category_fatigue": ((n, n_cats), np.float32, 0),
        "window_counts": ((n, n_cats), np.int16, 0),
        "novelty_offset": ((n,), np.float32, 0),
        "patience": ((n,), np.float32, 0),
        "popular_streak": ((n,), np.int32, 0),
        "recent_signals": ((n, buffer_len if world.is_v1 else 0, N_SIGNALS), np.float32, 0),
        "recent_popularity": ((n, buffer_len if world.is_v1 else 0), np.float32, 0),
        "recent_exposure": ((n, buffer_len if world.is_v1 else 0), np.float32, 0),
        "weekday": ((n if world.is_v1 else 0,), np.int8, 0),
        "recent_position": ((n, buffer_len if world.is_v1 else 0), np.int16, -1),
        "slate_log": ((n, params.slate_size if world.is_v1 and params.slate_size > 1 else 0), np.int8, SLATE_UNLOGGED),
        "reward_sum": ((n if world.is_v1 else 0,), np.float32, 0),
        "explore": ((n if world.is_v1 else 0,), np.bool_, False),
        "time_interest": ((n if world.is_v1 else 0, dims), np.float32, 0),
        "clock": ((n if world.is_v1 else 0, 4), np.float32, 0),
        # A bit per item (416 bytes per session on KuaiRec): 1.7 MB at B = 4,096 stays in cache, a
        # bool (B, I) table (13.6 MB) did not, and a new session clears its row in one short memset.
        "seen": ((n, -(-world.n_items // 8)) if params.no_repeat else (0, 0), np.uint8, 0),
    }


def step_draws(world: World, params: SimParams) -> tuple[int, int]:
    """(Gumbel, uniform) draws per session per step: v0 S Gumbels for a slate's choice (0 for one
    item) and 1 uniform; v1 :data:`UNIFORMS_PER_IMPRESSION` uniforms, plus for a slate one per slot
    (the click model's examination / click draw) and, in the position model, S + 1 Gumbels (the
    slots' and the skip's)."""
    slate = params.slate_size
    if not world.is_v1:
        return (slate if slate > 1 else 0), 1
    if slate == 1:
        return 0, UNIFORMS_PER_IMPRESSION
    return (0 if params.click_model == "cascade" else slate + 1), UNIFORMS_PER_IMPRESSION + slate


def check_version(world: World, params: SimParams) -> None:
    """The v1 knobs act on v1 worlds only: a one-line ``ValueError`` otherwise."""
    if world.is_v1:
        return
    defaults = SimParams()
    changed = [name for name in V1_KNOBS + USERS_KNOBS if getattr(params, name) != getattr(defaults, name)]
    if changed:
        raise ValueError(f"{', '.join(changed)}: v1 knob(s), but {world.name!r} is a v0 world; use a v1 world "
                         "(recgym/KuaiRec-v1, KuaiRand-v1, Synthetic-v1)")


def observation_layout(n_sessions: int, world: World, params: SimParams) -> dict[str, tuple[tuple[int, ...], type]]:
    """``{key: (shape, dtype)}`` of one observation of all B sessions (see :meth:`Simulator.observe`)."""
    n, k = n_sessions, params.history_len
    layout = {
        "item_ids": ((n, k), np.int64),
        "embeddings": ((n, k, world.embed_dim), np.float32),
        "feedback": ((n, k), np.float32),
        "step": ((n, 1), np.float32),
    }
    if world.is_v1:
        layout.update({
            "signals": ((n, k, N_SIGNALS), np.float32),
            "popularity": ((n, k), np.float32),
            "exposure": ((n, k), np.float32),
            "position": ((n, k), np.int64),
            "hour": ((n, 2), np.float32),
            "weekday": ((n, 2), np.float32),
            "user_id": ((n, 1), np.int64),
            "user_features": ((n, world.user_features.shape[1]), np.float32),
        })
        if params.episode == "lifetime":
            layout.update({"session_index": ((n, 1), np.int64), "return_gap": ((n, 1), np.float32)})
        if params.slate_size > 1:
            layout["slate_clicks"] = ((n, params.slate_size), np.int8)
    return layout


def memory_need(n_sessions: int, world: World, params: SimParams) -> int:
    """Bytes a :class:`Simulator` of ``n_sessions`` sessions needs on ``world``, from the shapes it
    allocates: the session state (:func:`session_layout`), the shared (I,) counts and padded
    embeddings, and one step's buffers: two observations (a same-step reset returns one from before
    the resets and one from after), the (B, slate_size) actions and random draws, and a (B, n_items)
    action mask (sb3-contrib's MaskablePPO asks for one every step, in any mode). Python ints: absurd
    sizes do not overflow. The vector env's peak (its batched spaces included) measured 0.98-1.08x
    this figure at B = 20,000 on KuaiRec."""
    n, slate = n_sessions, params.slate_size
    state = sum(array_bytes(shape, dtype) for shape, dtype, _ in session_layout(n, world, params).values())
    catalogue = array_bytes((2, world.n_items), np.float64) + array_bytes((world.n_items + 1, world.embed_dim), np.float32)
    observations = 2 * sum(array_bytes(shape, dtype)
                           for shape, dtype in observation_layout(n, world, params).values())
    gumbels, uniforms = step_draws(world, params)
    step = array_bytes((n, slate), np.int64) + array_bytes((n, gumbels), np.float64) + array_bytes(
        (n, dynamics.NORMALS_PER_SESSION + uniforms + world.embed_dim), np.float32)
    mask = array_bytes((n, world.n_items), bool)
    users = 0 if not world.is_v1 else sum(  # the persistent per-user state (recgym.users) and its (B,) clocks
        array_bytes(shape, dtype) for shape, dtype in
        users_layout(world.n_users, world.embed_dim, world.n_categories, world.n_creators,
                     params.taste_neighbourhoods).values()
    ) + array_bytes((n, 3), np.float64)
    return state + catalogue + observations + step + mask + users


def _index_array(name: str, values: np.ndarray, size: int) -> np.ndarray:
    """``values`` as a 1-D int64 array of indices in [0, size), or a ``ValueError`` naming ``name``
    (the kernels index without bounds checks)."""
    array = np.asarray(values)
    if array.ndim != 1 or (array.size and array.dtype.kind not in "iu"):
        raise ValueError(f"{name} must be a 1-D array of integer indices, got {array.dtype} of shape {array.shape}")
    array = array.astype(np.int64, copy=False)
    bad = dynamics.first_out_of_range(array, size)
    if bad >= 0:
        raise ValueError(f"{name} holds {array[bad]}, outside [0, {size - 1}]")
    return array
