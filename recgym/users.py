"""Users over time (issue #17): per-user state that persists across sessions, and what happens between them.

RecSim's user-model split: :mod:`recgym.dynamics` steps what happens inside a session; this module
holds what a user carries from one session to the next (:class:`Users`, U rows per array) and the
between-session dynamics (the return gap, the platform's return order, the write-back of the
session's drift), as compiled kernels over a batch of sessions. In session mode that state carries
to the user's next session only with ``session_memory=True`` (default ``False``: each session starts
from the initial state, :func:`restart_long_term`); lifetime episodes always carry it. v1 worlds only; a v0 simulator
keeps empty (0-row) arrays and never calls these kernels, so v0 stays bit-identical.

Between sessions (equations: ``docs/simulator.md``, "Users over time"):

    rate_u   = session_rate * activity_u * exp(retention_weight * (mean satisfaction - retention_reference))
    gap      ~ Exponential(rate_u)            days before the user returns (KuaiSim's return time, as a hazard)
    return_u = session start + session duration + gap
    u_lt     <- normalise((1 - interest_memory) u_lt + interest_memory u_session)   drift persists

Inside a session, acquired taste (kernels :func:`acquired_appeal`, :func:`record_consumption`, inlined
into the step): the catalogue is split into N fine neighbourhoods (k-means of the item embeddings,
:func:`item_neighbourhoods`); the world says which items are acquired tastes (:func:`acquired_tastes`,
most of the long tail: they are unpopular because few have acquired them). An acquired taste i in
neighbourhood n multiplies its satisfaction by ``1 + taste_weight * taste_u,n - taste_valley`` (below par
until the taste is acquired, the valley; it does not saturate the way a logit term does), and consuming
it raises ``taste_u,n`` by ``taste_rate * enjoyment * (1 - taste_u,n)``: liking of unfamiliar content grows
with exposure to it (acquired taste, the mere-exposure effect); other items neither gain from nor build it.

Platform order (session mode): every user is in one indexed min-heap keyed by ``next_return``; a new
session slot takes the user who returns first and the platform clock moves to that time; the user
waits behind every user not in a session until their session's end sets the satisfaction-dependent
return (so a user holds two sessions at once only when every user is in one: more slots than users).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
from numba import njit

from recgym.cache_hints import PREFETCH_AHEAD, prefetch_row
from recgym.loaders import ACTIVE_DEGREES, USER_CODES, USER_COUNTS, USER_FLAGS
from recgym.world import World

#: Columns of KuaiRand-v1's user features (:func:`recgym.loaders.read_kuairand_users`).
KUAIRAND_USER_COLUMNS = len(ACTIVE_DEGREES) + len(USER_FLAGS) + len(USER_COUNTS) + len(USER_CODES)


class Users(NamedTuple):
    """The per-user state that persists across sessions (U rows each; written in place by the kernels).

    long_term_interest: (U, D) float32 unit interest a session starts from; its end writes the
        session's drifted interest back (weight ``interest_memory``).
    taste: (U, N) float32 acquired taste per catalogue neighbourhood (:func:`item_neighbourhoods`) in
        [0, 1): grows with satisfied consumption of the neighbourhood's acquired tastes (``taste_rate``),
        multiplies their satisfaction (``taste_weight``, ``taste_valley``, :func:`acquired_appeal`).
    taste_pending: (U, N) float32 the taste gained in the user's current session: added to ``taste`` when
        the session ends (:func:`end_sessions`), so a session's satisfaction never reads its own gain.
    consumed_categories: (U, C) int32 LONG-TERM HISTORY: how many items of each category the user has
        consumed over all their sessions (a category with 0 was never consumed). Read by the novelty
        model ("novel" = unlike the user's long-term history, not only the session's).
    consumed_creators: (U, ceil(n_creators / 8)) uint8 LONG-TERM HISTORY: bit set of the creators the
        user has ever consumed an item of: creator k is bit ``k & 7`` of byte ``k >> 3`` (see
        :func:`creator_consumed`). 1 bit per creator: 814 bytes per user on KuaiRand-v1 (6,510 creators).
    next_return: (U,) float64 day (on the platform clock; in lifetime mode the user's own clock since
        the lifetime began) at which the user next opens the app; session mode: ``IN_SESSION`` + the
        platform's serial number of the session while the user is in a session.
    session_count: (U,) int32 sessions the user has started.
    session_rate: (U,) float32 the user's base sessions per day: ``session_rate`` x activity (static).
    return_queue: (U,) int64 the users as a min-heap on (next_return, user id): index 0 returns first.
    queue_position: (U,) int64 each user's index in ``return_queue``.
    platform_day: (1,) float64 the platform clock in session mode: the latest return served.
    sessions_served: (1,) int64 sessions the platform has started (session mode): orders the users in a session.
    """

    long_term_interest: np.ndarray
    taste: np.ndarray
    taste_pending: np.ndarray
    consumed_categories: np.ndarray
    consumed_creators: np.ndarray
    next_return: np.ndarray
    session_count: np.ndarray
    session_rate: np.ndarray
    return_queue: np.ndarray
    queue_position: np.ndarray
    platform_day: np.ndarray
    sessions_served: np.ndarray


def users_layout(
    n_users: int, embed_dim: int, n_categories: int, n_creators: int, n_neighbourhoods: int,
) -> dict[str, tuple[tuple[int, ...], type]]:
    """``{field: (shape, dtype)}`` of :class:`Users` for U = ``n_users`` (what the simulator allocates
    and its memory check counts)."""
    u = n_users
    return {
        "long_term_interest": ((u, embed_dim), np.float32),
        "taste": ((u, n_neighbourhoods), np.float32),
        "taste_pending": ((u, n_neighbourhoods), np.float32),
        "consumed_categories": ((u, n_categories), np.int32),
        "consumed_creators": ((u, -(-n_creators // 8)), np.uint8),
        "next_return": ((u,), np.float64),
        "session_count": ((u,), np.int32),
        "session_rate": ((u,), np.float32),
        "return_queue": ((u,), np.int64),
        "queue_position": ((u,), np.int64),
        "platform_day": ((1,), np.float64),
        "sessions_served": ((1,), np.int64),
    }


def allocate_users(n_users: int, embed_dim: int, n_categories: int, n_creators: int, n_neighbourhoods: int) -> Users:
    """Zeroed :class:`Users` of ``n_users`` rows (0 rows: the v0 placeholder the kernels never read)."""
    layout = users_layout(n_users, embed_dim, n_categories, n_creators, n_neighbourhoods)
    return Users(**{name: np.zeros(shape, dtype) for name, (shape, dtype) in layout.items()})


def bytes_per_user(embed_dim: int, n_categories: int, n_creators: int, n_neighbourhoods: int) -> int:
    """Bytes of persistent state per user (the :class:`Users` row): 4 D + 4 C + 8 N + ceil(K / 8) + 32;
    946 on KuaiRec-v1 (D 32, C 31, N 64 neighbourhoods), 1,670 on KuaiRand-v1 (C 46, K 6,510 creators:
    45.6 MB = 43.5 MiB for its 27,285 users)."""
    layout = users_layout(1, embed_dim, n_categories, n_creators, n_neighbourhoods)
    return sum(int(np.prod(shape)) * np.dtype(dtype).itemsize for name, (shape, dtype) in layout.items()
               if name not in ("platform_day", "sessions_served"))


#: Relative session rate of each KuaiRand ``user_active_degree`` (:data:`recgym.loaders.ACTIVE_DEGREES`):
#: the platform's own activity classes, fastest first; new and unknown users at the middle rate.
ACTIVE_DEGREE_RATES = {"full_active": 1.5, "high_active": 1.0, "middle_active": 0.6, "low_active": 0.3,
                       "single_low_active": 0.15, "2_14_day_new": 0.6, "day_new": 0.6, "30day_retention": 0.15,
                       "UNKNOWN": 0.6}


def activity_levels(world: World) -> np.ndarray:
    """(U,) float64 each v1 user's relative session rate. The two feature layouts the v1 worlds carry:
    KuaiRand-v1's real features (:func:`recgym.loaders.read_kuairand_users`: the active degree one-hot
    first) map the degree through :data:`ACTIVE_DEGREE_RATES`; simulated features
    (:func:`recgym.world_v1.simulated_user_features`: an activity level a in [0, 1] first) give
    ``0.25 + 1.5 a`` (mean 1)."""
    features = world.user_features.astype(np.float64)
    if features.shape[1] == KUAIRAND_USER_COLUMNS:
        return features[:, :len(ACTIVE_DEGREES)] @ np.array([ACTIVE_DEGREE_RATES[d] for d in ACTIVE_DEGREES])
    return 0.25 + 1.5 * features[:, 0]


def reset_users(users: Users, interest: np.ndarray, session_rate: np.ndarray, first_return: np.ndarray) -> None:
    """Every user back to their world state: ``interest`` (U, D), no taste, no history, no sessions;
    ``session_rate`` (U,) sessions per day; ``first_return`` (U,) days of each user's first visit.
    The platform clock restarts at 0 and the return queue is rebuilt."""
    users.long_term_interest[:] = interest
    for array in (users.taste, users.taste_pending, users.consumed_categories, users.consumed_creators, users.session_count,
                  users.platform_day, users.sessions_served):
        array[:] = 0
    users.session_rate[:] = session_rate
    users.next_return[:] = first_return
    order = np.lexsort((np.arange(first_return.shape[0]), first_return))  # a sorted array is a heap
    users.return_queue[:] = order
    users.queue_position[order] = np.arange(order.shape[0])


#: Lloyd iterations of :func:`item_neighbourhoods` (assignments are stable well before: 64 clusters of
#: KuaiRec-v1 change no item after iteration ~30).
KMEANS_ITERATIONS = 50


@functools.lru_cache(maxsize=16)
def item_neighbourhoods(world: World, n_neighbourhoods: int) -> np.ndarray:
    """(I,) int64 each item's neighbourhood in [0, n_neighbourhoods): spherical k-means of the unit item
    embeddings (cosine assignment, centres renormalised), started from ``n_neighbourhoods`` distinct items
    drawn by a fixed generator and run :data:`KMEANS_ITERATIONS` Lloyd iterations; an emptied cluster keeps
    its centre. Deterministic: a function of the embeddings alone, so every v1 world (fitted ones too) has
    it. Cached per (world, N)."""
    emb = world.item_emb.astype(np.float64)
    k = min(n_neighbourhoods, emb.shape[0])
    centres = emb[np.random.default_rng(0).choice(emb.shape[0], k, replace=False)]
    assignment = np.zeros(emb.shape[0], np.int64)
    for _ in range(KMEANS_ITERATIONS):
        assignment = (emb @ centres.T).argmax(axis=1)
        sums = np.zeros_like(centres)
        np.add.at(sums, assignment, emb)
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        centres = np.where(norms > 0, sums / np.where(norms > 0, norms, 1.0), centres)
    assignment.flags.writeable = False
    return assignment


def acquired_tastes(world: World, popular_fraction: float) -> np.ndarray:
    """(I,) bool the world's acquired tastes (:attr:`World.item_acquired`); in a world that does not
    say (a fitted one), its long tail: the items outside the top ``popular_fraction`` by prior popularity."""
    if world.item_acquired is not None:
        return world.item_acquired
    return ~world.popular_items(popular_fraction)


# ------------------------------------------------------------------ inside a session (inlined into the step)
@njit(cache=True, inline="always")
def acquired_appeal(taste_weight: np.float32, taste_valley: np.float32, taste: np.ndarray, neighbourhood: int,
                    niche: np.float32) -> np.float32:
    """Satisfaction multiplier ``1 + niche * (taste_weight * taste[neighbourhood] - taste_valley)`` of an
    item (its neighbourhood, its niche weight: 1 for an acquired taste, else 0) for a user (taste row (N,)):
    an acquired taste not yet acquired is liked less than par (the valley), then more."""
    return np.float32(1.0) + niche * (taste_weight * taste[neighbourhood] - taste_valley)


@njit(cache=True, inline="always")
def creator_consumed(consumed_creators: np.ndarray, user: int, creator: int) -> bool:
    """Whether ``user`` ever consumed an item of ``creator`` (its bit in :attr:`Users.consumed_creators`)."""
    return (consumed_creators[user, creator >> 3] >> (creator & 7)) & 1 == 1


@njit(cache=True, inline="always")
def record_consumption(
    taste_rate: np.float32, taste: np.ndarray, taste_pending: np.ndarray, consumed_categories: np.ndarray,
    consumed_creators: np.ndarray, categories: np.ndarray, n_categories: int, creator: int, neighbourhood: int,
    niche: np.float32, enjoyment: np.float32,
) -> None:
    """The user's long-term record of one consumed item: the user's rows ``taste`` and ``taste_pending``
    (N,), ``consumed_categories`` (C,) and ``consumed_creators`` (ceil(K / 8),); the item's categories
    (category-list row, first ``n_categories``), creator, neighbourhood, niche weight and the
    enjoyment in [0, 1]. The taste gained waits in ``taste_pending`` until the session ends."""
    for m in range(n_categories):
        consumed_categories[categories[m]] += 1
    held = taste[neighbourhood] + taste_pending[neighbourhood]
    taste_pending[neighbourhood] += taste_rate * niche * enjoyment * (np.float32(1.0) - held)
    consumed_creators[creator >> 3] |= np.uint8(1 << (creator & 7))


# ------------------------------------------------------------------ the return queue (an indexed min-heap)
#: Queue key offset of a user in a session: after every user who is not (returns are days, < 1e12).
IN_SESSION = 1e12


@njit(cache=True, inline="always")
def returns_before(keys: np.ndarray, a: int, b: int) -> bool:
    """Whether user ``a`` returns before user ``b`` (ties: the lower id first, so the order is total)."""
    return keys[a] < keys[b] or (keys[a] == keys[b] and a < b)


@njit(cache=True, inline="always")
def requeue(queue: np.ndarray, position: np.ndarray, keys: np.ndarray, user: int) -> None:
    """Restore the heap after ``keys[user]`` changed (sift up, then down)."""
    index = position[user]
    while index > 0:
        parent = (index - 1) >> 1
        if not returns_before(keys, user, queue[parent]):
            break
        queue[index] = queue[parent]
        position[queue[index]] = index
        index = parent
    size = queue.shape[0]
    while True:
        child = 2 * index + 1
        if child >= size:
            break
        if child + 1 < size and returns_before(keys, queue[child + 1], queue[child]):
            child += 1
        if not returns_before(keys, queue[child], user):
            break
        queue[index] = queue[child]
        position[queue[index]] = index
        index = child
    queue[index] = user
    position[user] = index


# ------------------------------------------------------------------ between sessions (batch kernels)
@njit(cache=True, _nrt=False)
def take_returning(users: tuple, chosen: np.ndarray, start_day: np.ndarray) -> None:
    """Session mode: the next ``chosen.shape[0]`` users in return order. Fills ``chosen`` (N,) int64
    and ``start_day`` (N,) float64 (the platform clock, advanced to each return). A chosen user
    starts a session (``session_count``) and waits in the queue at ``IN_SESSION`` + the platform's
    session serial number until the session's end (:func:`end_sessions`) sets the real return: with
    every user in a session (more slots than users), the one whose session began first opens a second."""
    u = Users(*users)
    for n in range(chosen.shape[0]):
        user = u.return_queue[0]
        if u.next_return[user] < IN_SESSION:
            u.platform_day[0] = max(u.platform_day[0], u.next_return[user])
        chosen[n] = user
        start_day[n] = u.platform_day[0]
        u.session_count[user] += 1
        u.sessions_served[0] += 1
        u.next_return[user] = IN_SESSION + u.sessions_served[0]
        requeue(u.return_queue, u.queue_position, u.next_return, user)


@njit(cache=True, _nrt=False)
def end_sessions(
    knobs: np.ndarray, users: tuple, slots: np.ndarray, session_user: np.ndarray, interest: np.ndarray,
    reward_sum: np.ndarray, step_count: np.ndarray, start_day: np.ndarray, unit_gaps: np.ndarray, gaps: np.ndarray,
) -> None:
    """The sessions in ``slots`` (N,) ended: per session, from the (B,) session arrays ``session_user``,
    ``interest`` (B, D), ``reward_sum`` (summed true reward), ``step_count``, ``start_day``:
    consolidate the taste gained (``taste_pending`` into ``taste``), write the drifted interest back
    (``interest_memory``), draw the return gap (``unit_gaps`` (N,)
    Exponential(1) over the satisfaction-dependent rate; written to ``gaps`` (N,) float64 days) and
    re-queue the user at session end + gap."""
    kn, u = knobs[0], Users(*users)
    memory = kn.interest_memory
    for n in range(slots.shape[0]):
        if n + PREFETCH_AHEAD < slots.shape[0]:  # the user's rows lie at random places: overlap their misses
            ahead = session_user[slots[n + PREFETCH_AHEAD]]
            prefetch_row(u.taste[ahead])
            prefetch_row(u.taste_pending[ahead])
            if memory:
                prefetch_row(u.long_term_interest[ahead])
                prefetch_row(interest[slots[n + PREFETCH_AHEAD]])
        b = slots[n]
        user = session_user[b]
        steps = max(step_count[b], 1)
        mean_satisfaction = reward_sum[b] / np.float32(steps)
        rate = u.session_rate[user] * np.exp(kn.retention_weight * (mean_satisfaction - kn.retention_reference))
        gap = unit_gaps[n] / rate
        gaps[n] = gap
        end_day = start_day[b] + step_count[b] * kn.hours_per_step / 24.0
        u.next_return[user] = end_day + gap
        requeue(u.return_queue, u.queue_position, u.next_return, user)
        for neighbourhood in range(u.taste.shape[1]):
            u.taste[user, neighbourhood] += u.taste_pending[user, neighbourhood]
            u.taste_pending[user, neighbourhood] = 0
        if memory:
            row = u.long_term_interest[user]
            norm = np.float32(0.0)
            for d in range(row.shape[0]):
                row[d] = (np.float32(1.0) - memory) * row[d] + memory * interest[b, d]
                norm += row[d] * row[d]
            inverse = np.float32(1.0) / np.sqrt(norm) if norm > 0 else np.float32(1.0)
            for d in range(row.shape[0]):
                row[d] *= inverse


@njit(cache=True, _nrt=False)
def restart_long_term(users: tuple, chosen: np.ndarray, interest: np.ndarray) -> None:
    """The users ``chosen`` (N,) back to their initial long-term state: the world's interest (rows of
    ``interest`` (U, D)), no taste (acquired or pending), no consumed categories or creators (the
    novelty model's history). Their clock, return queue entry and ``session_count`` are left as they are:
    session mode with ``session_memory=False`` calls it as each session starts (the platform keeps
    running, the user starts from scratch); :func:`restart_users` builds on it."""
    u = Users(*users)
    for n in range(chosen.shape[0]):
        if n + PREFETCH_AHEAD < chosen.shape[0]:
            ahead = chosen[n + PREFETCH_AHEAD]
            prefetch_row(interest[ahead])
            prefetch_row(u.long_term_interest[ahead])
            prefetch_row(u.taste[ahead])
            prefetch_row(u.taste_pending[ahead])
            prefetch_row(u.consumed_categories[ahead])
            prefetch_row(u.consumed_creators[ahead])
        user = chosen[n]
        for d in range(interest.shape[1]):
            u.long_term_interest[user, d] = interest[user, d]
        u.taste[user] = 0
        u.taste_pending[user] = 0
        u.consumed_categories[user] = 0
        u.consumed_creators[user] = 0


@njit(cache=True, _nrt=False)
def restart_users(users: tuple, chosen: np.ndarray, interest: np.ndarray) -> None:
    """Lifetime mode: the users ``chosen`` (N,) start a new lifetime: the world's interest (rows of
    ``interest`` (U, D)), no taste, no history (:func:`restart_long_term`), their first session begun,
    own clock at day 0."""
    restart_long_term(users, chosen, interest)
    u = Users(*users)
    for n in range(chosen.shape[0]):
        user = chosen[n]
        u.session_count[user] = 1
        u.next_return[user] = 0.0
        requeue(u.return_queue, u.queue_position, u.next_return, user)


@njit(cache=True)
def free_users(draws: np.ndarray, busy: np.ndarray) -> np.ndarray:
    """(N,) int64 distinct users not ``busy`` (U,) bool: each draw (N,) in [0, U), or the next free user
    after it (needs N free users). Marks them busy."""
    chosen = np.empty(draws.shape[0], np.int64)
    n_users = busy.shape[0]
    for n in range(draws.shape[0]):
        user = draws[n]
        while busy[user]:
            user = (user + 1) % n_users
        busy[user] = True
        chosen[n] = user
    return chosen
