"""The user dynamics: compiled kernels that step B sessions at once.

Shapes: B sessions in the batch, I items, U users, C categories, D embedding dims, L recent-item
buffer length, S slate size, M the most categories any item has.

Every mechanism is one small scalar function of one session and one item (:func:`utility`,
:func:`expected_reward`, :func:`observed_feedback`, :func:`leave_reason`, :func:`update_session` ...),
written once. The batch kernels (:func:`step_sessions`, :func:`start_sessions`,
:func:`expected_reward_table`, :func:`leave_table`) apply them to every row in one compiled loop
(numba, ``cache=True``; the helpers are inlined), so a step costs one call whatever B is: no numpy
call per mechanism and no temporary (B, ...) array per stage. At B = 1 that is what makes a single
env fast (a numpy step was ~150 calls of ~1 us each); at B = 4,096 it avoids writing and re-reading
~20 temporaries. :class:`recgym.simulator.Simulator` owns the
arrays and the random generators; kernels draw nothing themselves: the step's random numbers are
drawn in two batched calls (sized by B, so one session's fate never shifts another's draws) and
passed in.

Arithmetic is float32 where the state is float32 and float64 for the novelty term's history mean
and the popularity score. Loops add in a fixed order (no fast-math), so a seed's trajectory does
not depend on the CPU's SIMD width (exp, cos and log1p come from the platform's libm).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit
from scipy.special import ndtri

from recgym.cache_hints import PREFETCH_AHEAD, prefetch, prefetch_row
from recgym.choice import (
    MIN_SATISFACTION, category_count_sum, click_logit, creator_familiar, examination_probability, familiarity,
    satisfaction, skip_score, slate_click_score,
)
from recgym.logging_model import (
    N_SIGNALS, SLATE_CLICK, SLATE_IMPRESSION, SLATE_UNLOGGED, UNIFORMS_PER_IMPRESSION, expected_observed_reward,
    log_clicked, log_signals, record_impression,
)
from recgym.params import SimParams
from recgym.users import creator_consumed, record_consumption

LEAVE_NONE, LEAVE_CATEGORY_WINDOW, LEAVE_POPULAR_STREAK, LEAVE_PATIENCE = 0, 1, 2, 3
LEAVE_REASONS = ("none", "category_window", "popular_streak", "patience")

#: Random numbers a step consumes per session: 3 Gaussian (reward noise, observation noise, session
#: novelty volatility), 1 uniform (exposure bias) and, with the interest walk on, D random bytes (the
#: walk's increments, uniform on 256 levels: a quarter of the random bits of float32 uniforms, which
#: made the walk's draws 80% of a step's random-number cost at B = 4,096).
NORMALS_PER_SESSION = 3


#: :class:`SimParams` as the kernels read them: a one-row record array (numba types a record array in
#: a fraction of a microsecond, a named tuple of 24 Python scalars in ~4 us, per call), float32 where
#: the value enters float32 arithmetic.
KNOBS = np.dtype([
    ("max_turn", np.int64), ("history_len", np.int64), ("reward_true", np.bool_), ("no_repeat", np.bool_),
    ("leave_window", np.int64), ("leave_threshold", np.int64), ("popular_streak", np.int64),
    ("patience", np.float32), ("patience_threshold", np.float32), ("interest_drift", np.float32),
    ("walk_scale", np.float32),  # sqrt(12) * interest_walk / 256: (byte - 127.5) * walk_scale has std ~interest_walk
    ("time_of_day", np.float32), ("hours_per_step", np.float32), ("novelty_weight", np.float32),
    ("session_novelty_volatility", np.float32), ("boredom", np.float32), ("boredom_decay", np.float32),
    ("fatigue_cap", np.float32), ("creator_fatigue", np.float32), ("reward_noise", np.float32),
    ("popularity_noise", np.float64), ("exposure_bias", np.float32), ("observation_noise", np.float32),
    ("popularity_feedback", np.float64),
    # users over time (recgym.users, issue #17)
    ("interest_memory", np.float32), ("taste_weight", np.float32), ("taste_rate", np.float32),
    ("taste_valley", np.float32),
    ("retention_weight", np.float32), ("retention_reference", np.float32),
    # v1 (``v1`` selects the v1 satisfaction and logging model: recgym.choice, recgym.logging_model)
    ("v1", np.bool_), ("conformity", np.float32), ("conformity_like", np.float32), ("familiarity_click", np.float32),
    ("familiarity_watch", np.float32), ("click_base", np.float32), ("click_slope", np.float32),
    ("watch_noise", np.float32), ("watch_max", np.float32), ("long_view_ratio", np.float32),
    ("reward_weights", np.float32, (N_SIGNALS,)), ("post_click_intercepts", np.float32, (N_SIGNALS - 3,)),
    ("cascade", np.bool_), ("position_decay", np.float32),  # v1 slates' click model (recgym.choice)
    # v1 novelty seeking and time (issue #17): novelty_time_term, update_mode, set_time_interest
    ("novelty_mode_shift", np.float32), ("daily_cycle", np.float32), ("weekly_cycle", np.float32),
])


def knobs(params: SimParams, v1: bool = False) -> np.ndarray:
    """(1,) :data:`KNOBS` record array of ``params`` (``v1``: the world is a v1 world)."""
    derived = dict(  # the knobs that are not SimParams fields of the same name
        v1=v1, reward_true=params.reward_signal == "true", no_repeat=params.no_repeat,
        cascade=params.click_model == "cascade",
        walk_scale=np.sqrt(12.0) * params.interest_walk / 256, hours_per_step=params.minutes_per_step / 60.0,
        fatigue_cap=1.0 / (1.0 - params.boredom_decay) if params.boredom_decay < 1 else params.max_turn,
    )
    return np.array([tuple(derived[name] if name in derived else getattr(params, name) for name in KNOBS.names)], KNOBS)


class Catalogue(NamedTuple):
    """The world's tables as the kernels read them (see :class:`recgym.world.World`). Kernels take it,
    and :class:`Sessions`, as plain tuples (typed ~3x faster per call) and name the fields inside."""

    item_emb: np.ndarray  # (I, D) float32 unit embeddings
    item_cats: np.ndarray  # (I, C) bool
    cat_lists: np.ndarray  # (I, M) int64 each item's categories, see category_lists
    cat_counts: np.ndarray  # (I,) int64 how many categories each item has
    item_hour: np.ndarray  # (I,) float32
    item_creator: np.ndarray  # (I,) int32
    popular: np.ndarray  # (I,) bool, the popular-streak rule's group
    pop_prior: np.ndarray  # (I,) float64
    user_interest: np.ndarray  # (U, D) float32
    user_novelty: np.ndarray  # (U,) float32
    reward_matrix: np.ndarray  # (U, I) float32 ground truth, or (0, 0) for a latent world
    reward_max: np.float32
    affinity_scale: np.float32
    affinity_bias: np.float32
    walks: bool  # the interests drift / walk (latent worlds with interest_drift or interest_walk on)
    item_qmult: np.ndarray  # (I,) float32 v1 quality multiplier exp(b q - b^2 / 2), (0,) in v0 worlds
    user_followed: np.ndarray  # (U, K) int32 v1 followed creators, (0, 0) in v0 worlds
    user_cycles: np.ndarray  # (U, 4, D) float32 v1 daily / weekly preference cycles (World.user_cycles), (0, 4, D) in v0
    mode_thresholds: np.ndarray  # (U, 3) float32 v1 session-mode draws' thresholds, see mode_thresholds(); (0, 3) in v0
    item_neighbourhood: np.ndarray  # (I,) int64 v1 neighbourhood of each item (recgym.users.item_neighbourhoods), (0,) in v0
    item_niche: np.ndarray  # (I,) float32 v1 1 for an acquired taste (recgym.users.acquired_tastes), else 0; (0,) in v0


class Sessions(NamedTuple):
    """The B sessions' state plus the SHARED catalogue counts; the kernels update it in place."""

    user: np.ndarray  # (B,) int64
    step_count: np.ndarray  # (B,) int32
    hour: np.ndarray  # (B,) float32 session clock in [0, 24)
    interest: np.ndarray  # (B, D) float32 unit latent interest (hidden)
    recent_items: np.ndarray  # (B, L) int32, oldest first, -1 empty
    recent_feedback: np.ndarray  # (B, L) float32 observed feedback on them
    recent_creators: np.ndarray  # (B, L) int32 their creators, -1 empty
    history_sum_emb: np.ndarray  # (B, D) float32 sum of the last k items' embeddings
    category_fatigue: np.ndarray  # (B, C) float32 decayed category counts
    window_counts: np.ndarray  # (B, C) int16 category counts of the last leave_window items
    novelty_offset: np.ndarray  # (B,) float32 session-level novelty propensity offset
    patience: np.ndarray  # (B,) float32 remaining patience budget
    popular_streak: np.ndarray  # (B,) int32 consecutive popular items
    seen: np.ndarray  # (B, ceil(I / 8)) uint8 bit set of the items recommended this session (NX modes), or (0, 0)
    exposure: np.ndarray  # (I,) float64 shared: times recommended
    clicks: np.ndarray  # (I,) float64 shared: weighted positive observed feedback
    highest_popularity: np.ndarray  # (1,) float64 shared: max of pop_prior + clicks (clicks only grow)
    # users over time (recgym.users.Users: the SAME per-user arrays; v1 worlds, (0, 0) in v0)
    taste: np.ndarray  # (U, N) float32 acquired taste per neighbourhood
    taste_pending: np.ndarray  # (U, N) float32 taste gained in the user's current session (consolidated at its end)
    consumed_categories: np.ndarray  # (U, C) int32 long-term history: items consumed per category
    consumed_creators: np.ndarray  # (U, ceil(n_creators / 8)) uint8 long-term history: creators ever consumed
    reward_sum: np.ndarray  # (B,) float32 v1 the session's summed true reward ((0,) in v0)
    recent_signals: np.ndarray  # (B, L, 8) float32 v1 logged signals of the recent items ((B, 0, 8) in v0)
    recent_popularity: np.ndarray  # (B, L) float32 v1 log1p(popularity) shown at each impression ((B, 0) in v0)
    recent_exposure: np.ndarray  # (B, L) float32 v1 log1p(exposure count) at each impression ((B, 0) in v0)
    weekday: np.ndarray  # (B,) int8 v1 day of the week in [0, 7), advanced when the clock passes midnight ((0,) in v0)
    recent_position: np.ndarray  # (B, L) int16 v1 slate position of each recent item, -1 empty ((B, 0) in v0)
    slate_log: np.ndarray  # (B, S) int8 v1 slates: the last slate's log per slot (logging_model.SLATE_*), else (B, 0)
    explore: np.ndarray  # (B,) bool v1 latent session mode: explore (True) or exploit ((0,) in v0)
    time_interest: np.ndarray  # (B, D) float32 v1 interest shift of the clock hour's cycles ((0, D) in v0)
    clock: np.ndarray  # (B, 4) float32 v1 observed clock: (sin, cos) of the hour, then of the weekday ((0, 4) in v0)


# ------------------------------------------------------------------ catalogue tables (numpy, once)
def category_lists(cats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sparse form of bool ``cats`` (N, C): ((N, M) int64 each item's category indices in increasing
    order, M = the most any item has, zero-padded; (N,) int64 how many each item has)."""
    counts = cats.sum(axis=1)
    lists = np.zeros((cats.shape[0], max(int(counts.max(initial=0)), 1)), np.int64)
    items, labels = np.nonzero(cats)  # row-major: each item's categories in increasing order
    slot = np.arange(items.size) - np.repeat(np.cumsum(counts) - counts, counts)
    lists[items, slot] = labels
    return lists, counts.astype(np.int64)


def mode_thresholds(propensity: np.ndarray, switch: float) -> np.ndarray:
    """(U, 3) float32 standard-normal thresholds of the v1 session mode for static propensities
    ``propensity`` (U,): a draw below column 0 starts a session in the explore mode (probability
    rho), below column 1 switches exploit -> explore (``switch * rho``), below column 2 explore ->
    exploit (``switch * (1 - rho)``); -inf: never."""
    rho = np.asarray(propensity, np.float64)
    return ndtri(np.column_stack([rho, switch * rho, switch * (1 - rho)])).astype(np.float32)


@njit(cache=True, inline="always")
def prefetch_step_rows(cat: Catalogue, s: Sessions, user: int, item: int) -> None:
    """Start loading the rows at random places that a v1 step of ``user`` shown ``item`` reads: the
    user's long-term rows (:class:`recgym.users.Users`: the item's neighbourhood's taste, the consumed
    categories, the creator's byte of the consumed set), followed creators and mode thresholds, and the
    item's embedding, categories, counts and v1 scalars. Each was a stall in the long per-session loop
    (``perf``: the taste load alone ~8% of the kernel's samples)."""
    neighbourhood = cat.item_neighbourhood[item]
    prefetch(s.taste[user], neighbourhood)
    prefetch(s.taste_pending[user], neighbourhood)
    prefetch_row(s.consumed_categories[user])
    prefetch(s.consumed_creators[user], cat.item_creator[item] >> 3)
    prefetch_row(cat.item_emb[item])
    prefetch_row(cat.cat_lists[item])
    prefetch(cat.pop_prior, item)
    prefetch(s.clicks, item)
    prefetch(s.exposure, item)
    prefetch(cat.user_followed[user], 0)
    prefetch(cat.mode_thresholds[user], 0)
    prefetch(cat.item_qmult, item)
    prefetch(cat.item_niche, item)


# ------------------------------------------------------------------ one session, one item
@njit(cache=True, inline="always")
def dot(a: np.ndarray, b: np.ndarray, zero: float) -> float:
    """Dot product of two (D,) vectors, accumulated in ``zero``'s type over four interleaved partial
    sums combined as (s0 + s1) + (s2 + s3): a fixed order (same bits on any CPU) whose four
    independent chains run in parallel; a single running sum waits ~4 cycles per element."""
    s0 = s1 = s2 = s3 = zero
    n = a.shape[0]
    head = n - n % 4
    for d in range(0, head, 4):
        s0 += a[d] * (zero + b[d])
        s1 += a[d + 1] * (zero + b[d + 1])
        s2 += a[d + 2] * (zero + b[d + 2])
        s3 += a[d + 3] * (zero + b[d + 3])
    for d in range(head, n):
        s0 += a[d] * (zero + b[d])
    return (s0 + s1) + (s2 + s3)


@njit(cache=True, inline="always")
def session_term(
    kn: np.void, emb: np.ndarray, categories: np.ndarray, n_categories: int, item_hour: np.float32,
    hour: np.float32, history_sum: np.ndarray, history_count: int, novelty_propensity: np.float32,
    fatigue: np.ndarray, creator_repeats: np.float32,
) -> np.float32:
    """Session part of the utility of one item: emb (D,), categories (M,) (its :func:`category_lists`
    row; the first n_categories entries are its categories), item_hour; the session's hour,
    history_sum (D,) the summed embeddings of its last history_count items, novelty_propensity,
    category fatigue (C,), creator_repeats.

    time of day:  time_of_day * cos(2 pi (hour - item_hour) / 24)
    novelty:      novelty_weight * (propensity - 1/2) * (1 - <e_item, mean history embedding>)
    boredom:      -boredom * mean over the item's categories of the decayed category count
    creator:      -creator_fatigue * share of the recent history by the same creator
    """
    term = np.float32(0.0)
    if kn.time_of_day:
        term += kn.time_of_day * np.cos((hour - item_hour) * np.float32(2 * np.pi / 24))
    if kn.novelty_weight and not kn.v1:  # v1: the hierarchical novelty of novelty_time_term instead
        similarity = dot(emb, history_sum, 0.0) / max(history_count, 1)
        term = np.float32(term + kn.novelty_weight * (novelty_propensity - np.float32(0.5)) * (1.0 - similarity))
    if kn.boredom and n_categories:
        term -= kn.boredom * category_count_sum(fatigue, categories, n_categories) / np.float32(n_categories)
    if kn.creator_fatigue:
        term -= kn.creator_fatigue * creator_repeats
    return term


@njit(cache=True, inline="always")
def novelty_propensity(kn: np.void, cat: Catalogue, s: Sessions, b: int) -> np.float32:
    """Session ``b``'s novelty-seeking propensity in [0, 1]: the user's static value plus the session
    offset (v0), or plus / minus ``novelty_mode_shift`` in the explore / exploit mode (v1)."""
    shift = (kn.novelty_mode_shift if s.explore[b] else -kn.novelty_mode_shift) if kn.v1 else s.novelty_offset[b]
    return min(max(cat.user_novelty[s.user[b]] + shift, np.float32(0.0)), np.float32(1.0))


@njit(cache=True, inline="always")
def item_novelty(cat: Catalogue, s: Sessions, user: int, item: int) -> np.float32:
    """n in [0, 1]: the share of ``item``'s aspects (its categories and its creator) that ``user``
    never consumed (the long-term history of :class:`recgym.users.Users`)."""
    consumed = s.consumed_categories[user]
    n_categories = cat.cat_counts[item]
    novel = np.float32(0.0) if creator_consumed(s.consumed_creators, user, cat.item_creator[item]) else np.float32(1.0)
    for m in range(n_categories):
        novel += consumed[cat.cat_lists[item, m]] == 0
    return novel / np.float32(n_categories + 1)


@njit(cache=True, inline="always")
def novelty_time_term(kn: np.void, cat: Catalogue, s: Sessions, b: int, item: int) -> np.float32:
    """v1 session terms of ``item`` for session ``b`` (``docs/simulator.md``, "Novelty and time"):

    novelty: novelty_weight * (2 rho - 1) * n_item   rho = novelty_propensity (static +- mode shift),
                                                     n_item = item_novelty (long-term history)
    time:    <e_item, time_interest>                  the user's daily and weekly cycles at the clock hour
    """
    term = np.float32(0.0)
    if kn.novelty_weight:
        rho = novelty_propensity(kn, cat, s, b)
        term += kn.novelty_weight * (np.float32(2.0) * rho - np.float32(1.0)) * item_novelty(cat, s, s.user[b], item)
    if kn.daily_cycle or kn.weekly_cycle:
        term += dot(cat.item_emb[item], s.time_interest[b], np.float32(0.0))
    return term


@njit(cache=True, inline="always")
def set_time_interest(kn: np.void, cat: Catalogue, s: Sessions, b: int) -> None:
    """Session ``b``'s ``time_interest`` (D,) at its clock hour H (constant within the hour, like
    HyperBandit's time periods): with a = 2 pi (H + 1/2) / 24 and w = 2 pi (weekday + (H + 1/2) / 24) / 7,
    ``daily_cycle (cos a X + sin a Y) + weekly_cycle (cos w Z + sin w W)``, (X, Y, Z, W) the user's
    :attr:`Catalogue.user_cycles` rows: 4 sin/cos per session per simulated hour, none per item."""
    hour = np.floor(s.hour[b]) + np.float32(0.5)
    day_angle = hour * np.float32(2 * np.pi / 24)
    week_angle = (np.float32(s.weekday[b]) + hour / np.float32(24.0)) * np.float32(2 * np.pi / 7)
    day_cos, day_sin = kn.daily_cycle * np.cos(day_angle), kn.daily_cycle * np.sin(day_angle)
    week_cos, week_sin = kn.weekly_cycle * np.cos(week_angle), kn.weekly_cycle * np.sin(week_angle)
    cycles, shift = cat.user_cycles[s.user[b]], s.time_interest[b]
    for d in range(shift.shape[0]):
        shift[d] = day_cos * cycles[0, d] + day_sin * cycles[1, d] + week_cos * cycles[2, d] + week_sin * cycles[3, d]


@njit(cache=True, inline="always")
def update_mode(cat: Catalogue, s: Sessions, b: int, draw: np.float32) -> None:
    """Session ``b``'s latent mode after a step: explore -> exploit with probability
    ``novelty_switch * (1 - rho_u)``, exploit -> explore with ``novelty_switch * rho_u`` (stationary
    P(explore) = rho_u), decided by the standard normal ``draw`` against :attr:`Catalogue.mode_thresholds`."""
    thresholds = cat.mode_thresholds[s.user[b]]
    if s.explore[b]:
        if draw < thresholds[2]:
            s.explore[b] = False
    elif draw < thresholds[1]:
        s.explore[b] = True


@njit(cache=True, inline="always")
def history_count(s: Sessions, b: int, k: int) -> int:
    """How many of session ``b``'s last k history slots hold an item: min(step count, k), except after
    a skipped v1 slate (a step that consumed nothing). One load once the k slots are full."""
    length = s.recent_items.shape[1]
    if s.recent_items[b, length - k] >= 0:
        return k
    count = 0
    for j in range(length - k + 1, length):
        count += s.recent_items[b, j] >= 0
    return count


@njit(cache=True, inline="always")
def utility(kn: np.void, cat: Catalogue, s: Sessions, b: int, item: int) -> tuple:
    """(base, session term) of recommending ``item`` to session ``b``.

    base is the affinity logit ``affinity_scale * <u, e> + affinity_bias`` (latent worlds) or the
    ground-truth matrix value (matrix worlds).
    """
    k, length = kn.history_len, s.recent_items.shape[1]
    creator = cat.item_creator[item]
    repeats = 0
    # Creators are kept beside the items (a gather of item_creator per item was ~7% of a step), and
    # unsigned indices skip numba's negative-index wraparound, which compiled this loop to gathers too.
    recent_creators = s.recent_creators[b]
    for j in range(np.uint64(length - k), np.uint64(length)):
        repeats += recent_creators[j] == creator
    term = session_term(
        kn, cat.item_emb[item], cat.cat_lists[item], cat.cat_counts[item], cat.item_hour[item], s.hour[b],
        s.history_sum_emb[b], history_count(s, b, k), novelty_propensity(kn, cat, s, b), s.category_fatigue[b],
        np.float32(repeats) / np.float32(k),
    )
    if kn.v1:
        term += novelty_time_term(kn, cat, s, b, item)
    if cat.reward_matrix.shape[0]:
        return cat.reward_matrix[s.user[b], item], term
    return dot(s.interest[b], cat.item_emb[item], np.float32(0.0)) * cat.affinity_scale + cat.affinity_bias, term


@njit(cache=True, inline="always")
def is_seen(seen: np.ndarray, b: int, item: int) -> bool:
    """Whether session ``b`` was recommended ``item`` (its bit in the (B, ceil(I / 8)) bit set)."""
    return (seen[b, item >> 3] >> (item & 7)) & 1 == 1


@njit(cache=True, inline="always")
def repeats_earlier_slot(actions: np.ndarray, b: int, j: int) -> bool:
    """Whether slot ``j`` of session ``b``'s slate repeats an item of an earlier slot: the user sees
    each distinct item once, so a repeat neither competes in the choice nor counts as exposure."""
    for earlier in range(j):
        if actions[b, earlier] == actions[b, j]:
            return True
    return False


@njit(cache=True, inline="always")
def clip(x: np.float32, high: np.float32) -> np.float32:
    return min(max(x, np.float32(0.0)), high)


@njit(cache=True, inline="always")
def expected_reward(cat: Catalogue, base: np.float32, term: np.float32) -> np.float32:
    """Noise-free true engagement in [0, reward_max]: reward_max * sigmoid(base + term) in latent
    worlds; the matrix value * exp(term) in matrix worlds (exactly the matrix with every mechanism off)."""
    if cat.reward_matrix.shape[0]:
        return clip(base * np.exp(term), cat.reward_max)
    return clip(cat.reward_max / (np.float32(1.0) + np.exp(-(base + term))), cat.reward_max)


@njit(cache=True, inline="always")
def popularity_score(popularity: float, log_max: float) -> np.float32:
    """log1p(popularity) scaled to [0, 1] by ``log_max = log1p(the catalogue's highest popularity)``."""
    return np.float32(np.log1p(popularity) / log_max)


@njit(cache=True, inline="always")
def observed_feedback(
    kn: np.void, cat: Catalogue, reward: np.float32, pop_score: np.float32, lost_draw: np.float32,
    noise_draw: np.float32,
) -> np.float32:
    """Feedback a platform logs: true reward plus conformity, thinned by exposure bias, noisy.

    observed = logged * (reward + popularity_noise * reward_max/2 * pop_score) + observation_noise * N(0, 1)
    with logged = [lost_draw >= exposure_bias * (1 - pop_score)] (lost_draw uniform in [0, 1)),
    clipped to [0, reward_max].
    """
    observed = np.float32(kn.popularity_noise * cat.reward_max / 2) * pop_score + reward
    if kn.exposure_bias and lost_draw < kn.exposure_bias * (np.float32(1.0) - pop_score):
        observed = np.float32(0.0)
    observed += kn.observation_noise * noise_draw
    return clip(observed, cat.reward_max)


@njit(cache=True, inline="always")
def leave_reason(kn: np.void, cat: Catalogue, s: Sessions, b: int, item: int, streak: int, patience: float) -> int:
    """Leave code (``LEAVE_*``) of session ``b`` after ``item`` (-1: a v1 slate the user skipped,
    nothing consumed); the first rule that fires wins. The window rule reads the window BEFORE the
    item; ``streak`` and ``patience`` are already updated."""
    if kn.leave_window and s.step_count[b] > 0 and item >= 0:
        for m in range(cat.cat_counts[item]):
            if s.window_counts[b, cat.cat_lists[item, m]] > kn.leave_threshold:
                return LEAVE_CATEGORY_WINDOW
    if kn.popular_streak and streak >= kn.popular_streak:
        return LEAVE_POPULAR_STREAK
    if kn.patience and patience <= 0:
        return LEAVE_PATIENCE
    return LEAVE_NONE


@njit(cache=True, inline="always")
def add_categories(cat: Catalogue, counts: np.ndarray, item: int, amount: int) -> None:
    """Add ``amount`` to ``counts`` (C,) at each category of ``item``."""
    for m in range(cat.cat_counts[item]):
        counts[cat.cat_lists[item, m]] += amount


@njit(cache=True, inline="always")
def update_session(
    kn: np.void, cat: Catalogue, s: Sessions, b: int, item: int, observed: np.float32, enjoyment: np.float32,
    normals: np.ndarray, walk_bytes: np.ndarray,
) -> None:
    """Session ``b``'s state after consuming ``item``: window counts, history buffers, category fatigue,
    session novelty (``normals[2]``), interest drift + walk (``walk_bytes`` (D,) uint8), clock.
    (Streak, patience, the no-repeat row and the shared counts are the caller's.)"""
    length, k, n = s.recent_items.shape[1], kn.history_len, kn.leave_window
    if n:  # DORL's window: add the new item's categories, drop those of the item leaving the window
        add_categories(cat, s.window_counts[b], item, 1)
        leaving = s.recent_items[b, length - n]
        if leaving >= 0:
            add_categories(cat, s.window_counts[b], leaving, -1)
    leaving = s.recent_items[b, length - k]
    for d in range(cat.item_emb.shape[1]):
        s.history_sum_emb[b, d] += cat.item_emb[item, d]
        if leaving >= 0:
            s.history_sum_emb[b, d] -= cat.item_emb[leaving, d]
    for j in range(length - 1):
        s.recent_items[b, j] = s.recent_items[b, j + 1]
        s.recent_feedback[b, j] = s.recent_feedback[b, j + 1]
        s.recent_creators[b, j] = s.recent_creators[b, j + 1]
    s.recent_items[b, length - 1] = item
    s.recent_feedback[b, length - 1] = observed
    s.recent_creators[b, length - 1] = cat.item_creator[item]

    boredom_signal = np.float32(0.0)  # the max familiarity over the item's categories, in [0, 1]
    if kn.boredom:
        for m in range(cat.cat_counts[item]):
            boredom_signal = max(boredom_signal, s.category_fatigue[b, cat.cat_lists[item, m]])
        boredom_signal /= kn.fatigue_cap
        for c in range(cat.item_cats.shape[1]):
            s.category_fatigue[b, c] = s.category_fatigue[b, c] * kn.boredom_decay + cat.item_cats[item, c]
    if kn.novelty_weight and kn.v1:  # the latent session mode switches
        update_mode(cat, s, b, normals[2])
    elif kn.novelty_weight:  # mean-reverting walk pushed up by boredom
        s.novelty_offset[b] = (
            np.float32(0.8) * s.novelty_offset[b] + np.float32(0.2) * boredom_signal
            + kn.session_novelty_volatility * normals[2]
        )
    if cat.walks:  # toward the consumed item by enjoyment, plus uniform increments; back to unit norm
        interest = s.interest[b]
        for d in range(cat.item_emb.shape[1]):
            u = interest[d]
            moved = u + (np.float32(walk_bytes[d]) - np.float32(127.5)) * kn.walk_scale if kn.walk_scale else u
            interest[d] = moved + (cat.item_emb[item, d] - u) * (kn.interest_drift * enjoyment)
        inverse_norm = np.float32(1.0) / np.sqrt(dot(interest, interest, np.float32(0.0)))
        for d in range(cat.item_emb.shape[1]):
            interest[d] *= inverse_norm
    advance_clock(kn, cat, s, b)


@njit(cache=True, inline="always")
def advance_clock(kn: np.void, cat: Catalogue, s: Sessions, b: int) -> None:
    """Session ``b``'s step count and clock after one step (v1: the weekday turns at midnight, and
    the user's cycles move on when the clock enters a new hour)."""
    s.step_count[b] += 1
    previous = s.hour[b]
    hour = previous + kn.hours_per_step
    turned = hour >= np.float32(24.0)
    if turned:  # testing first skips a libm fmod call per step
        hour = hour % np.float32(24.0)
        if kn.v1:
            s.weekday[b] = (s.weekday[b] + 1) % 7
    s.hour[b] = hour
    if kn.v1:
        set_clock(s, b, turned)
        if (kn.daily_cycle or kn.weekly_cycle) and np.floor(hour) != np.floor(previous):
            set_time_interest(kn, cat, s, b)


@njit(cache=True, inline="always")
def set_clock(s: Sessions, b: int, weekday_turned: bool) -> None:
    """Session ``b``'s observed clock ``s.clock[b]`` (4,): (sin, cos) of 2 pi hour / 24, and when
    ``weekday_turned`` of 2 pi weekday / 7. Kept with the clock (one sin / cos per step, the weekday's
    once a day) so that each observation of it is a copy."""
    angle = s.hour[b] * np.float32(2 * np.pi / 24)
    s.clock[b, 0], s.clock[b, 1] = np.sin(angle), np.cos(angle)
    if weekday_turned:
        day = np.float32(s.weekday[b]) * np.float32(2 * np.pi / 7)
        s.clock[b, 2], s.clock[b, 3] = np.sin(day), np.cos(day)


@njit(cache=True, inline="always")
def click_in_slate(
    kn: np.void, cat: Catalogue, s: Sessions, b: int, actions: np.ndarray, uniforms: np.ndarray, gumbels: np.ndarray,
    log_max: float,
) -> tuple:
    """(slot, base, term): the slot of session ``b``'s v1 slate ``actions[b]`` that the user clicks
    (-1: none, a skip) and its utility, by the click model (:func:`recgym.choice.slate_click_score`).
    Reads the session's ``uniforms`` (6 + S,) at ``UNIFORMS_PER_IMPRESSION + j`` (position model:
    slot j is examined when it is below theta_j; cascade: slot j is clicked when it is below its click
    probability) and ``gumbels`` (S + 1,) (position model, the last the skip's; (0,) in the cascade).
    Writes the slate's log to ``s.slate_log[b]``: SLATE_CLICK, SLATE_IMPRESSION (examined, not clicked) or SLATE_UNLOGGED
    (unexamined, or a repeat of an earlier slot: missing from the log, not negative)."""
    slate_log = s.slate_log[b]
    chosen, best = -1, skip_score(kn, gumbels[gumbels.shape[0] - 1] if gumbels.shape[0] else 0.0)
    chosen_base = chosen_term = np.float32(0.0)
    for j in range(actions.shape[1]):
        slate_log[j] = SLATE_UNLOGGED
    for j in range(actions.shape[1]):
        if kn.cascade and chosen >= 0:
            break  # the cascade stops at its click: later slots are never examined
        if repeats_earlier_slot(actions, b, j):
            continue
        uniform = uniforms[UNIFORMS_PER_IMPRESSION + j]
        if not kn.cascade and uniform >= examination_probability(kn, j):
            continue
        item = actions[b, j]
        base, term = utility(kn, cat, s, b, item)
        sat = satisfaction(kn, cat, s, b, item, base, term)
        pop_score = popularity_score(cat.pop_prior[item] + s.clicks[item], log_max)
        logit = click_logit(kn, np.log(max(sat, MIN_SATISFACTION)), pop_score, familiarity(kn, cat, s, b, item))
        slate_log[j] = SLATE_IMPRESSION
        score = slate_click_score(kn, logit, gumbels[j] if gumbels.shape[0] else 0.0, uniform)
        if score > best:
            chosen, best, chosen_base, chosen_term = j, score, base, term
    if chosen >= 0:
        slate_log[chosen] = SLATE_CLICK
    return chosen, chosen_base, chosen_term


# ------------------------------------------------------------------ batch kernels
@njit(cache=True, _nrt=False)
def step_sessions(
    knobs: np.ndarray, catalogue: tuple, sessions: tuple, actions: np.ndarray, active: np.ndarray, normals: np.ndarray,
    uniforms: np.ndarray, walk_bytes: np.ndarray, gumbels: np.ndarray, was_seen: np.ndarray, consumed: np.ndarray,
    rewards: np.ndarray, flags: np.ndarray, reason: np.ndarray, signals: np.ndarray,
) -> None:
    """Advance every active session by one recommendation, in place.

    actions: (B, S) int64 valid item ids (S = 1: the item is consumed; else the user picks the slate
    item with the highest utility + popularity_noise * popularity score + ``gumbels`` (B, S); a slot
    that repeats an earlier slot's item is ignored: the user sees the slate's distinct items);
    active: (B,) bool, idle rows keep their state and return zeros; normals (B, 3) and uniforms
    (B, 1) float32 draws, walk_bytes (B, D) uint8 ((B, 0) with the walk off), see
    ``NORMALS_PER_SESSION``; was_seen: (B, S) bool scratch (NX modes; (0, 0) in Free mode).

    Fills consumed (B,) int64; rewards (3, B) float32: the reward (``reward_true`` picks the true
    reward or the observed feedback), the true reward and the observed feedback; flags (3, B) bool:
    repeated, terminated, truncated; reason (B,) int8 leave code. The shared exposure / click counts
    are updated after all sessions moved, so every session of a step sees the same popularity.

    v1 worlds (``kn.v1``, single items): the true reward is the satisfaction (:mod:`recgym.choice`)
    plus noise, capped at ``watch_max``; the observed feedback is the observed reward of the logged
    signals (:mod:`recgym.logging_model`, uniforms (B, 6), ``normals[:, 1]`` the watch-ratio noise),
    written to ``signals`` (8, B) float32 ((8, 0) in v0) and to the session's logged history; the
    shared click count counts logged clicks.

    v1 slates (S > 1): the click model (:func:`click_in_slate`; uniforms (B, 6 + S), gumbels (B, S + 1)
    in the position model, (B, 0) in the cascade) picks the clicked slot, whose item is consumed and
    logged as above with its slot in the history; no click: consumed is -1, rewards and signals are 0,
    the history is unchanged, patience drains and the clock advances. Every distinct slot counts as
    exposure (shown), examined or not; ``Sessions.slate_log`` keeps what was logged of the slate.

    Compiled without numba's reference counting (``_nrt=False``: it allocates nothing); counting
    references of the state arrays cost ~8x the step's arithmetic.
    """
    kn, cat, s = knobs[0], Catalogue(*catalogue), Sessions(*sessions)
    n_sessions, slate_size = actions.shape
    log_max = np.log1p(s.highest_popularity[0])
    if kn.no_repeat:
        # The no-repeat bits first, in a loop of their own: each is a byte at a random place in the
        # session's row of a 1.7 MB table (B = 4,096), a cache miss. Here the misses overlap; read in
        # the long per-session loop below, each stalled it alone (13% of a step's time, measured).
        for b in range(n_sessions):
            if active[b]:
                for j in range(slate_size):
                    item = actions[b, j]
                    was_seen[b, j] = is_seen(s.seen, b, item)
                    s.seen[b, item >> 3] |= np.uint8(1 << (item & 7))
    for b in range(n_sessions):
        if kn.v1 and b + PREFETCH_AHEAD < n_sessions:  # rows at random places, a few sessions ahead
            prefetch_step_rows(cat, s, s.user[b + PREFETCH_AHEAD], actions[b + PREFETCH_AHEAD, 0])
        consumed[b] = actions[b, 0]
        rewards[:, b] = 0.0
        flags[:, b] = False
        reason[b] = LEAVE_NONE
        if not active[b]:
            continue
        item, chosen = actions[b, 0], 0
        if kn.v1 and slate_size > 1:  # the click model: the clicked slot, or -1 (nothing consumed)
            chosen, base, term = click_in_slate(kn, cat, s, b, actions, uniforms[b], gumbels[b], log_max)
            item = actions[b, chosen] if chosen >= 0 else -1
        else:
            base, term = utility(kn, cat, s, b, item)
        if slate_size > 1 and not kn.v1:  # choose: utility + conformity + Gumbel noise, the first of equal maxima
            best, chosen_base, chosen_term = -np.inf, base, term
            for j in range(slate_size):
                if repeats_earlier_slot(actions, b, j):
                    continue
                candidate = actions[b, j]
                base_j, term_j = utility(kn, cat, s, b, candidate) if j else (base, term)
                pop_score = popularity_score(cat.pop_prior[candidate] + s.clicks[candidate], log_max)
                noisy = float(base_j + term_j) + kn.popularity_noise * pop_score + gumbels[b, j]
                if noisy > best:
                    best, item, chosen, chosen_base, chosen_term = noisy, candidate, j, base_j, term_j
            base, term = chosen_base, chosen_term
        consumed[b] = item
        repeated = kn.no_repeat and chosen >= 0 and was_seen[b, chosen]
        # log1p(popularity) once: popularity_score's numerator, and what v1's logged history shows
        log_popularity = np.log1p(cat.pop_prior[item] + s.clicks[item]) if item >= 0 else 0.0
        pop_score = np.float32(log_popularity / log_max) if item >= 0 else np.float32(0.0)
        if item < 0:  # a skipped v1 slate: no reward, no signal; only patience and the clock move
            reward = feedback = np.float32(0.0)
            signals[:, b] = 0.0
        elif kn.v1:
            sat = satisfaction(kn, cat, s, b, item, base, term)
            reward = clip(sat + kn.reward_noise * normals[b, 0], kn.watch_max)
            fam = familiarity(kn, cat, s, b, item)  # before the item enters the history
            if slate_size > 1:  # the click model clicked it
                feedback = log_clicked(kn, sat, np.log(max(sat, MIN_SATISFACTION)), fam, pop_score, uniforms[b],
                                       normals[b, 1], signals, b)
            else:
                feedback = log_signals(kn, sat, fam, pop_score, uniforms[b], normals[b, 1], signals, b)
            if repeated:
                reward = feedback = np.float32(0.0)
                signals[:, b] = 0.0
                if slate_size > 1:  # logged as a single item's repeat: an impression with click 0
                    s.slate_log[b, chosen] = SLATE_IMPRESSION
        else:
            reward = clip(expected_reward(cat, base, term) + kn.reward_noise * normals[b, 0], cat.reward_max)
            if repeated:
                reward = np.float32(0.0)
            feedback = observed_feedback(kn, cat, reward, pop_score, uniforms[b, 0], normals[b, 1])
            if repeated:
                feedback = np.float32(0.0)
        streak = s.popular_streak[b] if item < 0 else s.popular_streak[b] + 1 if cat.popular[item] else 0
        patience = s.patience[b] - max(kn.patience_threshold - reward, np.float32(0.0))
        reason[b] = leave_reason(kn, cat, s, b, item, streak, patience)
        if item < 0:
            advance_clock(kn, cat, s, b)
        else:
            enjoyment = min(reward / cat.reward_max, np.float32(1.0))  # v1 rewards may exceed reward_max
            update_session(kn, cat, s, b, item, feedback, enjoyment, normals[b], walk_bytes[b])
            if kn.v1:
                record_impression(s, b, signals, np.float32(log_popularity), np.float32(np.log1p(s.exposure[item])),
                                  chosen)
        s.popular_streak[b] = streak
        s.patience[b] = patience
        if kn.v1:  # users over time (recgym.users): the session's satisfaction, the user's long-term record
            s.reward_sum[b] += reward
            if item >= 0:
                user = s.user[b]
                record_consumption(kn.taste_rate, s.taste[user], s.taste_pending[user], s.consumed_categories[user],
                                   s.consumed_creators[user],
                                   cat.cat_lists[item], cat.cat_counts[item], cat.item_creator[item],
                                   cat.item_neighbourhood[item], cat.item_niche[item],
                                   min(reward / cat.reward_max, np.float32(1.0)))
        rewards[0, b] = reward if kn.reward_true else feedback
        rewards[1, b], rewards[2, b] = reward, feedback
        flags[0, b] = repeated
        flags[1, b] = reason[b] != LEAVE_NONE
        flags[2, b] = s.step_count[b] >= kn.max_turn and not flags[1, b]

    for b in range(n_sessions):  # the SHARED counts: the rich-get-richer loop
        if active[b]:
            for j in range(slate_size):
                if not repeats_earlier_slot(actions, b, j):
                    s.exposure[actions[b, j]] += 1.0
            if kn.popularity_feedback and (signals[0, b] > 0 if kn.v1 else rewards[2, b] > 0):  # never a skip
                item = consumed[b]
                s.clicks[item] += kn.popularity_feedback
                s.highest_popularity[0] = max(s.highest_popularity[0], cat.pop_prior[item] + s.clicks[item])


@njit(cache=True, _nrt=False)
def start_sessions(
    knobs: np.ndarray, catalogue: tuple, sessions: tuple, slots: np.ndarray, users: np.ndarray, hours: np.ndarray,
    offsets: np.ndarray, weekdays: np.ndarray, user_interest: np.ndarray, mode_draws: np.ndarray,
) -> None:
    """New sessions in ``slots`` (N,) for ``users`` (N,) at ``hours`` (N,) with novelty ``offsets`` (N,),
    starting from ``user_interest`` (U, D) (the world's in v0; v1: the users' long-term interest);
    v1: on ``weekdays`` (N,) int64 in [0, 7), in the explore mode when the standard normal
    ``mode_draws`` (N,) is below ``mode_thresholds[user, 0]`` (probability rho_u) (both (0,) in v0)."""
    kn, cat, s = knobs[0], Catalogue(*catalogue), Sessions(*sessions)
    for n in range(slots.shape[0]):
        if n + PREFETCH_AHEAD < slots.shape[0]:  # the user's interest row and the no-repeat row are cache misses
            prefetch_row(user_interest[users[n + PREFETCH_AHEAD]])
            if kn.no_repeat:
                prefetch_row(s.seen[slots[n + PREFETCH_AHEAD]])
            if kn.v1 and (kn.daily_cycle or kn.weekly_cycle):  # v1: the user's cycles (set_time_interest)
                for cycle in range(cat.user_cycles.shape[1]):
                    prefetch_row(cat.user_cycles[users[n + PREFETCH_AHEAD], cycle])
            if kn.v1:  # the slot's v1 rows, cleared below
                for position in range(0, s.recent_signals.shape[1], 2):  # two (8,) float32 rows per cache line
                    prefetch_row(s.recent_signals[slots[n + PREFETCH_AHEAD], position])
                prefetch_row(s.time_interest[slots[n + PREFETCH_AHEAD]])
        b = slots[n]
        if kn.no_repeat:
            s.seen[b] = 0
        s.user[b] = users[n]
        s.step_count[b] = 0
        s.hour[b] = hours[n]
        for d in range(s.interest.shape[1]):
            s.interest[b, d] = user_interest[users[n], d]
        s.recent_items[b] = -1
        s.recent_feedback[b] = 0
        s.recent_creators[b] = -1
        s.history_sum_emb[b] = 0
        s.category_fatigue[b] = 0
        s.window_counts[b] = 0
        s.novelty_offset[b] = offsets[n]
        s.patience[b] = kn.patience
        s.popular_streak[b] = 0
        if kn.v1:
            s.weekday[b] = weekdays[n]
            set_clock(s, b, True)
            s.reward_sum[b] = 0
            s.recent_signals[b] = 0
            s.recent_popularity[b] = 0
            s.recent_exposure[b] = 0
            s.recent_position[b] = -1
            s.slate_log[b] = SLATE_UNLOGGED  # no slate shown yet
            s.explore[b] = mode_draws[n] < cat.mode_thresholds[users[n], 0]
            s.time_interest[b] = 0
            if kn.daily_cycle or kn.weekly_cycle:
                set_time_interest(kn, cat, s, b)


@njit(cache=True, _nrt=False)
def write_history(sessions: tuple, max_turn: int, items: np.ndarray, feedback: np.ndarray, step: np.ndarray) -> None:
    """Fill the B sessions' observed history: items (B, k) int64 their last k items (-1 empty),
    feedback (B, k) float32 the observed feedback on them, step (B, 1) float32 step / max_turn.
    (The items' embeddings are one numpy ``take``: a row memcpy beats a compiled element loop.)"""
    s = Sessions(*sessions)
    n_sessions, k = items.shape
    start = np.uint64(s.recent_items.shape[1] - k)  # unsigned indices: no wraparound check, no gathers
    for b in range(n_sessions):
        for j in range(np.uint64(k)):
            items[b, j] = s.recent_items[b, start + j]
            feedback[b, j] = s.recent_feedback[b, start + j]
        step[b, 0] = np.float32(s.step_count[b]) / np.float32(max_turn)


@njit(cache=True, _nrt=False)
def unseen_mask(seen: np.ndarray, mask: np.ndarray) -> None:
    """Fill ``mask`` (B, I) bool with True where the item's bit in ``seen`` (B, ceil(I / 8)) is clear."""
    for b in range(mask.shape[0]):
        for item in range(mask.shape[1]):
            mask[b, item] = not is_seen(seen, b, item)


@njit(cache=True, _nrt=False)
def first_out_of_range(items: np.ndarray, n_items: int) -> int:
    """Index of the first entry of ``items`` (N,) outside [0, n_items), or -1 (one pass, no temporaries)."""
    for n in range(items.shape[0]):
        if items[n] < 0 or items[n] >= n_items:
            return n
    return -1


@njit(cache=True, _nrt=False)
def expected_reward_table(
    knobs: np.ndarray, catalogue: tuple, sessions: tuple, table: np.ndarray,
) -> None:
    """Fill ``table`` (B, I) float32 with the noise-free true reward of recommending each item to each
    session now; 0 for items masked in the NX modes."""
    kn, cat, s = knobs[0], Catalogue(*catalogue), Sessions(*sessions)
    n_sessions, n_items = table.shape
    for b in range(n_sessions):
        for item in range(n_items):
            if not (kn.no_repeat and is_seen(s.seen, b, item)):
                base, term = utility(kn, cat, s, b, item)
                table[b, item] = satisfaction(kn, cat, s, b, item, base, term) if kn.v1 else expected_reward(cat, base, term)


@njit(cache=True, _nrt=False)
def expected_observed_table(knobs: np.ndarray, catalogue: tuple, sessions: tuple, table: np.ndarray) -> None:
    """Fill ``table`` (B, I) float32 with the expected observed reward (v1 logging model) of
    recommending each item to each session now, at the current popularity; 0 for items masked in
    the NX modes. What a learner of the logged reward converges to (the logged-greedy oracle)."""
    kn, cat, s = knobs[0], Catalogue(*catalogue), Sessions(*sessions)
    n_sessions, n_items = table.shape
    log_max = np.log1p(s.highest_popularity[0])
    for b in range(n_sessions):
        for item in range(n_items):
            if not (kn.no_repeat and is_seen(s.seen, b, item)):
                base, term = utility(kn, cat, s, b, item)
                sat = satisfaction(kn, cat, s, b, item, base, term)
                pop_score = popularity_score(cat.pop_prior[item] + s.clicks[item], log_max)
                table[b, item] = expected_observed_reward(kn, sat, familiarity(kn, cat, s, b, item), pop_score)


@njit(cache=True, _nrt=False)
def leave_table(knobs: np.ndarray, catalogue: tuple, sessions: tuple, table: np.ndarray) -> None:
    """Fill ``table`` (B, I) bool: whether recommending each item to each session now triggers a
    deterministic leave rule (category window or popular streak; patience depends on the noisy reward)."""
    kn, cat, s = knobs[0], Catalogue(*catalogue), Sessions(*sessions)
    n_sessions, n_items = table.shape
    for b in range(n_sessions):
        for item in range(n_items):
            streak = s.popular_streak[b] + 1 if cat.popular[item] else 0
            table[b, item] = leave_reason(kn, cat, s, b, item, streak, np.inf) != LEAVE_NONE


@njit(cache=True)
def novelty_propensities(knobs: np.ndarray, catalogue: tuple, sessions: tuple) -> np.ndarray:
    """(B,) float32 :func:`novelty_propensity` of every session."""
    kn, cat, s = knobs[0], Catalogue(*catalogue), Sessions(*sessions)
    propensity = np.empty(s.user.shape[0], np.float32)
    for b in range(propensity.shape[0]):
        propensity[b] = novelty_propensity(kn, cat, s, b)
    return propensity


@njit(cache=True)
def _session_terms(knobs, emb, cat_lists, cat_counts, preferred_hour, hour, history_sum, history_count, propensity,
                   fatigue, creator_repeats):
    terms = np.empty(emb.shape[0], np.float32)
    for b in range(emb.shape[0]):
        terms[b] = session_term(
            knobs[0], emb[b], cat_lists[b], cat_counts[b], preferred_hour[b], hour[b], history_sum[b],
            history_count[b], propensity[b], fatigue[b], creator_repeats[b],
        )
    return terms


def session_terms(
    params: SimParams, emb: np.ndarray, item_cats: np.ndarray, preferred_hour: np.ndarray, hour: np.ndarray,
    history_sum_emb: np.ndarray, history_count: np.ndarray, novelty_propensity: np.ndarray,
    category_fatigue: np.ndarray, creator_repeats: np.ndarray,
) -> np.ndarray:
    """(B,) :func:`session_term` of B (session, item) rows: emb (B, D), item_cats (B, C) bool,
    preferred_hour (B,), hour (B,), history_sum_emb (B, D) and history_count (B,) (the recent items'
    summed embeddings and how many), novelty_propensity (B,), category_fatigue (B, C), creator_repeats (B,)."""
    f32 = np.float32
    cat_lists, cat_counts = category_lists(np.asarray(item_cats, bool))
    return _session_terms(
        knobs(params), emb.astype(f32), cat_lists, cat_counts, preferred_hour.astype(f32), hour.astype(f32),
        history_sum_emb.astype(f32), np.asarray(history_count, np.int64), novelty_propensity.astype(f32),
        category_fatigue.astype(f32), creator_repeats.astype(f32),
    )


@njit(cache=True)
def _popularity_scores(popularity: np.ndarray, items: np.ndarray, log_max: float) -> np.ndarray:
    scores = np.empty(items.shape[0], np.float32)
    for n in range(items.shape[0]):
        scores[n] = popularity_score(popularity[items[n]], log_max)
    return scores


def popularity_scores(popularity: np.ndarray, items: np.ndarray) -> np.ndarray:
    """(N,) float32 :func:`popularity_score` of ``items`` (N,) under ``popularity`` (I,)."""
    popularity = np.asarray(popularity, np.float64)
    return _popularity_scores(popularity, np.asarray(items, np.int64).ravel(), float(np.log1p(popularity.max())))


@njit(cache=True, _nrt=False)
def familiarity_table(knobs: np.ndarray, catalogue: tuple, sessions: tuple, creator: np.ndarray, table: np.ndarray) -> None:
    """Fill ``creator`` (B, I) bool (the item's creator is followed or recent) and ``table`` (B, I)
    float32 (the familiarity f of :func:`recgym.choice.familiarity`) for every session and item now."""
    kn, cat, s = knobs[0], Catalogue(*catalogue), Sessions(*sessions)
    n_sessions, n_items = table.shape
    for b in range(n_sessions):
        for item in range(n_items):
            creator[b, item] = creator_familiar(kn, cat, s, b, item)
            table[b, item] = familiarity(kn, cat, s, b, item)
