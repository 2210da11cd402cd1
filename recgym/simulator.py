"""The one batched simulator core: B concurrent user sessions over one shared catalogue.

Every public face (``gym.Env``, the native ``VectorEnv``, the SB3 ``VecEnv`` adapter, the
PettingZoo population) is a thin view of :class:`Simulator`; the dynamics live in
:mod:`recgym.dynamics` and are composed here, once.

A step, for all B sessions at once (one array operation per stage, no loop over users):

1. the user consumes the recommended item (or picks one from a slate);
2. true reward = base affinity (latent dot product, or the ground-truth matrix) + session terms
   (time of day, novelty seeking, category boredom, creator fatigue); 0 for repeats in NX modes;
3. observed feedback = true reward + popularity conformity, thinned by exposure bias, plus noise;
4. leave rules (DORL category window, popular streak, patience) decide who quits;
5. state update: history buffers, category fatigue, interest drift, session novelty, the clock,
   the no-repeat mask, and the SHARED item exposure / popularity counts (rich-get-richer loop).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recgym import dynamics
from recgym.params import SimParams
from recgym.world import World

#: Per-session state arrays (B rows each): what a new session resets and an idle row keeps.
SESSION_STATE = (
    "user", "step_count", "hour", "interest", "recent_items", "recent_feedback", "history_sum_emb",
    "category_fatigue", "window_counts", "novelty_offset", "patience", "popular_streak", "seen",
    "recommended_log",
)

#: At most this many items (steps x slate size) of a session are logged for clearing its no-repeat row.
RECOMMENDED_LOG_ITEMS = 256
#: Resets touching fewer mask bytes than this clear whole rows (a memset beats the log's ~10 calls).
ROW_CLEAR_BYTES = 1 << 18


@dataclass(frozen=True)
class StepResult:
    """What one batched step produced. All arrays have B rows.

    consumed: (B,) item each user consumed; reward: (B,) what ``reward_signal`` selects;
    true_reward / observed_feedback: (B,); repeated: (B,) bool repeat in an NX mode;
    terminated: (B,) user left; truncated: (B,) reached max_turn; leave_reason: (B,) int8 code.
    """

    consumed: np.ndarray
    reward: np.ndarray
    true_reward: np.ndarray
    observed_feedback: np.ndarray
    repeated: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    leave_reason: np.ndarray


class Simulator:
    """Batch of ``n_sessions`` user sessions sharing one catalogue's exposure and popularity.

    Args:
        world: the catalogue and user population.
        params: validated :class:`SimParams`.
        n_sessions: B, the number of concurrent sessions.
        seed: seeds two explicit ``np.random.Generator`` streams (``None`` draws fresh entropy):
            ``rng`` for the step dynamics (draws sized by B, so one session's fate never shifts
            another's draws) and ``session_rng`` for starting sessions (user, hour, novelty offset).
    """

    def __init__(self, world: World, params: SimParams, n_sessions: int, seed: int | None = None) -> None:
        if isinstance(n_sessions, bool) or not isinstance(n_sessions, (int, np.integer)) or n_sessions < 1:
            raise ValueError(f"n_sessions must be a positive integer, got {n_sessions!r}")
        self.world, self.params, self.n_sessions = world, params, int(n_sessions)
        self._seed_generators(seed)
        # Padded tables: index -1 (an empty history slot) reads a zero embedding / no category.
        self._emb_padded = np.vstack([world.item_emb, np.zeros((1, world.embed_dim), np.float32)])
        self._cats_padded = np.vstack([world.item_cats, np.zeros((1, world.n_categories), bool)])
        self._creator_padded = np.append(world.item_creator, -1).astype(np.int32)  # int32: half the gather
        self._cats_f32 = world.item_cats.astype(np.float32)
        self._cat_shares = dynamics.category_shares(world.item_cats)
        self._cat_lists, self._has_category = dynamics.category_lists(world.item_cats)
        self._category_row_start = np.arange(self.n_sessions, dtype=np.int64)[:, None] * world.n_categories
        self.popular = world.popular_items(params.popular_fraction)
        self.buffer_len = max(params.history_len, params.leave_window, 1)
        shape = (self.n_sessions,)
        self.user = np.zeros(shape, np.int64)
        self.step_count = np.zeros(shape, np.int32)
        self.hour = np.zeros(shape, np.float32)
        self.interest = np.zeros((self.n_sessions, world.embed_dim), np.float32)
        self._spare_interest = np.zeros_like(self.interest)  # receives the next step's interests
        self.recent_items = np.full((self.n_sessions, self.buffer_len), -1, np.int64)
        self.recent_feedback = np.zeros((self.n_sessions, self.buffer_len), np.float32)
        self.history_sum_emb = np.zeros((self.n_sessions, world.embed_dim), np.float32)
        self.category_fatigue = np.zeros((self.n_sessions, world.n_categories), np.float32)
        self.window_counts = np.zeros((self.n_sessions, world.n_categories), np.int16)
        self.novelty_offset = np.zeros(shape, np.float32)
        self.patience = np.zeros(shape, np.float32)
        self.popular_streak = np.zeros(shape, np.int32)
        self.seen = np.zeros((self.n_sessions, world.n_items), bool) if params.no_repeat else None
        # The items each session was recommended, by step (B, log_steps, slate_size): a new session
        # clears only these entries of its ``seen`` row (a few cache lines) instead of all I bytes;
        # sessions longer than log_steps clear the whole row. Small batches always clear whole rows
        # (see ROW_CLEAR_BYTES) and keep no log.
        self.log_steps = min(params.max_turn, max(1, RECOMMENDED_LOG_ITEMS // params.slate_size))
        logged = params.no_repeat and self.n_sessions * world.n_items > ROW_CLEAR_BYTES
        self.recommended_log = (
            np.zeros((self.n_sessions, self.log_steps, params.slate_size), np.int32) if logged else None
        )
        self._rows = np.arange(self.n_sessions)
        self._seen_row_start = self._rows * world.n_items
        self.exposure = np.zeros(world.n_items, np.float64)
        self.clicks = np.zeros(world.n_items, np.float64)

    # ------------------------------------------------------------------ state
    @property
    def popularity(self) -> np.ndarray:
        """(I,) current popularity: the world's prior plus logged clicks so far."""
        return self.world.pop_prior + self.clicks

    def _seed_generators(self, seed: int | None) -> None:
        step_seed, session_seed = np.random.SeedSequence(seed).spawn(2)
        self.rng = np.random.default_rng(step_seed)
        self.session_rng = np.random.default_rng(session_seed)

    def reset(self, seed: int | None = None, users: np.ndarray | None = None) -> None:
        """Re-seed (if given), clear the shared catalogue counts and start B new sessions."""
        if seed is not None:
            self._seed_generators(seed)
        self.exposure[:] = 0
        self.clicks[:] = 0
        self.reset_sessions(np.arange(self.n_sessions), users)

    def reset_sessions(self, slots: np.ndarray, users: np.ndarray | None = None) -> None:
        """Start new sessions in ``slots`` (int array) for ``users`` (default: uniform draws)."""
        if self.seen is not None:
            self._clear_seen(slots)
        if users is None:
            users = self.session_rng.integers(0, self.world.n_users, size=slots.size)
        self.user[slots] = users
        self.step_count[slots] = 0
        self.hour[slots] = self.session_rng.uniform(0, 24, size=slots.size)
        self.interest[slots] = self.world.user_interest.take(users, axis=0)
        self.recent_items[slots] = -1
        self.recent_feedback[slots] = 0
        self.history_sum_emb[slots] = 0
        self.category_fatigue[slots] = 0
        self.window_counts[slots] = 0
        self.novelty_offset[slots] = self.session_rng.normal(0, 0.1, size=slots.size)
        self.patience[slots] = self.params.patience
        self.popular_streak[slots] = 0

    def _clear_seen(self, slots: np.ndarray) -> None:
        """Clear the no-repeat rows of ``slots`` (int array): the logged items of sessions that fit
        the log (every True entry of such a row is one), the whole (I,) row of longer ones."""
        if self.recommended_log is None or slots.size * self.world.n_items <= ROW_CLEAR_BYTES:
            self.seen[slots] = False
            return
        steps = self.step_count.take(slots)
        per_row = np.minimum(steps, self.log_steps) * self.params.slate_size  # logged entries per slot
        first = np.cumsum(per_row) - per_row  # where each slot's entries start in the compacted list
        log_index = np.arange(per_row.sum()) + np.repeat(slots * self.recommended_log[0].size - first, per_row)
        items = self.recommended_log.reshape(-1).take(log_index)
        self.seen.reshape(-1)[items + np.repeat(self._seen_row_start.take(slots), per_row)] = False
        self.seen[slots[steps > self.log_steps]] = False

    def novelty_propensity(self) -> np.ndarray:
        """(B,) current novelty-seeking propensity: static per-user value + session offset, in [0, 1]."""
        propensity = self.world.user_novelty.take(self.user)
        propensity += self.novelty_offset
        np.maximum(propensity, 0.0, out=propensity)
        return np.minimum(propensity, 1.0, out=propensity)

    def action_mask(self) -> np.ndarray:
        """(B, I) bool, True where an item may be recommended (all True in Free mode). Fresh array."""
        if self.seen is None:
            return np.ones((self.n_sessions, self.world.n_items), bool)
        return ~self.seen

    def observe(self) -> dict[str, np.ndarray]:
        """Fresh observation arrays for all B sessions (what a real platform sees).

        item_ids: (B, k) int64 last k consumed item ids, oldest first, -1 for empty slots;
        embeddings: (B, k, D) float32 their embeddings (zeros for empty slots);
        feedback: (B, k) float32 the OBSERVED feedback on them (never the true reward);
        step: (B, 1) float32 session step / max_turn.
        """
        k = self.params.history_len
        return self._observation(self.recent_items[:, -k:].copy(), self.recent_feedback[:, -k:].copy(), self.step_count)

    def observe_around_reset(self, slots: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """(before, after): fresh observations of all B sessions before and after
        :meth:`reset_sessions` of ``slots`` (int array), which this call performs.

        Both are built by one gather into one (2, B, ...) allocation per key: a vector env's
        ``final_obs`` and returned observation cost one embedding gather, and the allocator reuses
        one large block step after step instead of faulting in fresh pages for two 5 MB arrays
        (~1,250 page faults per step at B = 4,096).
        """
        k, n = self.params.history_len, self.n_sessions
        items, feedback = np.empty((2, n, k), np.int64), np.empty((2, n, k), np.float32)
        step_count = np.empty((2, n), np.int32)

        def record(view: int) -> None:
            items[view], feedback[view] = self.recent_items[:, -k:], self.recent_feedback[:, -k:]
            step_count[view] = self.step_count

        record(0)
        self.reset_sessions(slots)
        record(1)
        both = self._observation(items, feedback, step_count)
        before, after = ({key: value[view] for key, value in both.items()} for view in (0, 1))
        return before, after

    def _observation(self, items: np.ndarray, feedback: np.ndarray, step_count: np.ndarray) -> dict[str, np.ndarray]:
        """The observation dict of (..., k) item ids and feedback and (...,) step counts (fresh arrays, owned)."""
        step = step_count[..., None].astype(np.float32)
        step /= np.float32(self.params.max_turn)
        return {"item_ids": items, "embeddings": self._emb_padded.take(items, axis=0), "feedback": feedback, "step": step}

    # ------------------------------------------------------------------- step
    def validate_actions(self, actions: np.ndarray) -> np.ndarray:
        """Check shape, type and range; return int64 actions of shape (B,) or (B, slate_size)."""
        actions = np.asarray(actions)
        slate = self.params.slate_size
        expected = (self.n_sessions,) if slate == 1 else (self.n_sessions, slate)
        if actions.shape != expected:
            raise ValueError(f"actions must have shape {expected}, got {actions.shape}")
        if actions.dtype.kind not in "iu":  # integer kinds only (bool is kind "b")
            raise ValueError(f"actions must be integer item ids, got dtype {actions.dtype}")
        n_items = self.world.n_items
        if actions.size and (actions.min() < 0 or actions.max() >= n_items):
            bad = actions[(actions < 0) | (actions >= n_items)].ravel()[0]
            raise ValueError(f"action {bad} is out of range: item ids are in [0, {n_items - 1}]")
        if slate > 1:
            ordered = np.sort(actions, axis=1)
            if (ordered[:, 1:] == ordered[:, :-1]).any():
                raise ValueError("a slate must not recommend the same item twice")
        return actions.astype(np.int64, copy=False)

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
        if active is not None:
            active = np.asarray(active)
            if active.shape != (self.n_sessions,) or active.dtype != bool:
                raise ValueError(f"active must be a bool array of shape ({self.n_sessions},), "
                                 f"got {active.dtype} of shape {active.shape}")
            if active.all():
                active = None
        idle = None if active is None else ~active
        kept = None if idle is None else self._session_rows(idle)
        p, world, rng = self.params, self.world, self.rng
        rows = self._rows
        popularity = self.popularity
        log_max_popularity = np.log1p(popularity.max())

        if p.slate_size == 1:
            recommended = actions[:, None]
            consumed = actions
            base, terms, consumed_emb = self._utility_parts(consumed, slice(None))
        else:
            recommended = actions
            flat_rows = np.repeat(rows, p.slate_size)
            base_all, terms_all, emb_all = self._utility_parts(actions.ravel(), flat_rows)
            slate_pop = dynamics.popularity_score(popularity, actions.ravel(), log_max_popularity)
            choice = dynamics.choose_from_slate(
                (base_all + terms_all).reshape(actions.shape), slate_pop.reshape(actions.shape), p, rng
            )
            consumed = actions[rows, choice]
            pick = rows * p.slate_size + choice
            base, terms, consumed_emb = base_all[pick], terms_all[pick], emb_all[pick]

        reward = dynamics.true_reward(base, terms, world.reward_matrix is not None, p, world.reward_max, rng)
        repeated = (
            self.seen.reshape(-1).take(self._seen_row_start + consumed) if self.seen is not None
            else np.zeros(self.n_sessions, bool)
        )
        reward[repeated] = 0.0
        pop_score = dynamics.popularity_score(popularity, consumed, log_max_popularity)
        observed = dynamics.observed_feedback(p, reward, pop_score, world.reward_max, rng)
        observed[repeated] = 0.0

        # Leave rules see the window BEFORE the new item, and the streak/patience after it.
        new_cats = world.item_cats.take(consumed, axis=0)
        streak = np.where(self.popular.take(consumed), self.popular_streak + 1, 0).astype(np.int32, copy=False)
        patience = self.patience - np.maximum(np.float32(p.patience_threshold) - reward, np.float32(0.0))
        # Flat (B, M) indices of the new items' categories into the (B, C) per-session arrays.
        new_cat_index = self._category_row_start + self._cat_lists.take(consumed, axis=0)
        has_category = self._has_category.take(consumed)
        reason = dynamics.leave_reason(
            p, self.window_counts.reshape(-1).take(new_cat_index), has_category, self.step_count, streak, patience
        )

        counted = (recommended, consumed, observed) if active is None else (
            recommended[active], consumed[active], observed[active])
        self._update_state(
            consumed, consumed_emb, recommended, observed, reward, new_cats, new_cat_index, has_category, streak,
            patience, rows,
        )
        self._count_shared(*counted)
        if idle is not None:
            self._restore_session_rows(idle, kept)
            for array in (reward, observed, reason):
                array[idle] = 0
            repeated = repeated & active
        terminated = reason != dynamics.LEAVE_NONE
        truncated = (self.step_count >= p.max_turn) & ~terminated
        if idle is not None:
            truncated &= active
        given = reward if p.reward_signal == "true" else observed
        return StepResult(consumed, given.copy(), reward, observed, repeated, terminated, truncated, reason)

    def _session_rows(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Copies of the per-session state at ``rows`` (bool mask)."""
        return {name: getattr(self, name)[rows] for name in SESSION_STATE if getattr(self, name) is not None}

    def _restore_session_rows(self, rows: np.ndarray, kept: dict[str, np.ndarray]) -> None:
        for name, values in kept.items():
            getattr(self, name)[rows] = values

    def _count_shared(self, recommended: np.ndarray, consumed: np.ndarray, observed: np.ndarray) -> None:
        """Add one step's recommendations and clicks to the SHARED catalogue counts."""
        n_items = self.world.n_items
        self.exposure += np.bincount(recommended.ravel(), minlength=n_items)
        if self.params.popularity_feedback:
            clicks = np.bincount(consumed, weights=observed > 0, minlength=n_items)
            self.clicks += self.params.popularity_feedback * clicks

    def _utility_parts(
        self, items: np.ndarray, rows: np.ndarray | slice
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(base (N,), session terms (N,), item embeddings (N, D)) of consuming ``items`` (N,) for the
        sessions ``rows`` (N,), or for every session in order when ``rows`` is ``slice(None)``."""
        p, world = self.params, self.world
        emb = world.item_emb.take(items, axis=0)
        # float64 mean, as float32 sums / int counts always gave; casting the counts first skips
        # numpy's slower mixed int/float loop (same values).
        history_mean = self.history_sum_emb[rows] / np.maximum(self._history_length()[rows], 1).astype(np.float64)[:, None]
        creators = self._creator_padded.take(self.recent_items[rows, -p.history_len:])
        same_creator = creators == self._creator_padded.take(items)[:, None]
        creator_repeats = dynamics.reduce_rows(np.add, same_creator, dtype=np.float32)
        creator_repeats /= np.float32(p.history_len)
        terms = dynamics.session_terms(
            p, emb, self._cat_shares.take(items, axis=0), world.item_hour.take(items), self.hour[rows],
            history_mean, self.novelty_propensity()[rows], self.category_fatigue[rows], creator_repeats,
        )
        if world.reward_matrix is not None:
            return world.reward_matrix[self.user[rows], items], terms, emb
        affinity = np.einsum("bd,bd->b", self.interest[rows], emb)
        affinity *= np.float32(world.affinity_scale)
        affinity += np.float32(world.affinity_bias)
        return affinity, terms, emb

    def expected_reward(self) -> np.ndarray:
        """(B, I) noise-free true reward of recommending each item now (ground truth; agents must
        not read it, oracles and evaluations may). Items masked in NX modes get 0."""
        n, n_items = self.n_sessions, self.world.n_items
        rows = np.repeat(np.arange(n), n_items)
        base, terms, _ = self._utility_parts(np.tile(np.arange(n_items), n), rows)
        world = self.world
        reward = dynamics.expected_reward(base, terms, world.reward_matrix is not None, world.reward_max)
        return reward.reshape(n, n_items) * self.action_mask()

    def leave_mask(self) -> np.ndarray:
        """(B, I) bool: True where recommending the item now would trigger a deterministic leave
        rule (category window or popular streak); patience depends on the noisy reward."""
        p = self.params
        leaves = np.zeros((self.n_sessions, self.world.n_items), bool)
        if p.leave_window:
            over = (self.window_counts > p.leave_threshold).astype(np.float32)  # (B, C)
            leaves |= ((over @ self._cats_f32.T) > 0) & (self.step_count > 0)[:, None]
        if p.popular_streak:
            leaves |= (self.popular_streak + 1 >= p.popular_streak)[:, None] & self.popular[None, :]
        return leaves

    def _history_length(self) -> np.ndarray:
        return np.minimum(self.step_count, self.params.history_len)

    def _update_state(
        self, consumed, consumed_emb, recommended, observed, reward, new_cats, new_cat_index, has_category, streak,
        patience, rows,
    ) -> None:
        p, world = self.params, self.world
        k, n = p.history_len, p.leave_window
        # Window category counts for DORL's rule: add the new item, drop the one leaving the window.
        if n:
            self.window_counts += new_cats
            self.window_counts -= self._cats_padded.take(self.recent_items[:, -n], axis=0)
        # Mean-history embedding for novelty: add the new item, drop the one leaving the k-window.
        self.history_sum_emb += consumed_emb
        self.history_sum_emb -= self._emb_padded.take(self.recent_items[:, -k], axis=0)
        for buffer, new in ((self.recent_items, consumed), (self.recent_feedback, observed)):
            flat = buffer.reshape(-1)  # one contiguous shift left; each row's last slot is then overwritten
            flat[:-1] = flat[1:]
            buffer[:, -1] = new

        boredom_signal = np.zeros(self.n_sessions, np.float32)
        if p.boredom:
            fatigue_cap = 1.0 / (1.0 - p.boredom_decay) if p.boredom_decay < 1 else float(p.max_turn)
            cats_f = new_cats.astype(np.float32)
            # max of the fatigue over the item's categories (0 without any), as max over C of cats * fatigue
            boredom_signal = dynamics.reduce_rows(np.maximum, self.category_fatigue.reshape(-1).take(new_cat_index))
            boredom_signal *= has_category
            boredom_signal /= np.float32(fatigue_cap)
            self.category_fatigue *= np.float32(p.boredom_decay)
            self.category_fatigue += cats_f
        if p.novelty_weight:
            self.novelty_offset = dynamics.session_novelty_offset(p, self.novelty_offset, boredom_signal, self.rng)
        if world.reward_matrix is None and (p.interest_drift or p.interest_walk):
            # Double buffer: the new interests go into the spare array, the old one becomes the spare.
            self.interest, self._spare_interest = dynamics.drift_interest(
                p, self.interest, consumed_emb, reward / np.float32(world.reward_max), self.rng, out=self._spare_interest
            ), self.interest
        if self.seen is not None:
            self.seen.reshape(-1)[self._seen_row_start[:, None] + recommended] = True
        if self.recommended_log is not None:
            log_slot = np.minimum(self.step_count, self.log_steps - 1)  # longer sessions clear their whole row
            self.recommended_log[rows, log_slot] = recommended
        self.popular_streak = streak
        self.patience = patience.astype(np.float32, copy=False)
        self.step_count += 1
        self.hour += np.float32(p.minutes_per_step / 60.0)
        self.hour %= 24
