"""Fit the v1 user model to a :class:`~recgym.fit.readers.Log` (``docs/fit.md``).

What is fitted, on the training sessions (a ``holdout`` share of sessions is kept for the report):

1. Satisfaction. Explicit ALS with user and item biases on the clicked rows' log watch ratio
   (repeated (user, item) rows averaged): ``log w ~ mu + b_u + b_i + <x_u, y_i>``. It maps onto the
   simulator's ``sat = reward_max * sigmoid(a <u, e> + b) * exp(beta q - beta^2 / 2)`` as: ``e_i``,
   ``u_u`` the unit directions of ``y_i``, ``x_u``; quality ``q`` the z-scored item bias with
   ``beta = std(b_i)``; ``(a, b)`` least squares of ``log sigmoid(a <u, e> + b)`` on the rest of the
   ALS prediction. ``reward_max`` is the 99.5th percentile of the predicted (noise-free)
   watch ratio, ``watch_max`` the largest logged one.
2. Click model. Logistic regression of click on ``log sat`` and the popularity score ``p`` (``click_base``,
   ``click_slope``, ``conformity``), on the random-exposure rows when the log has at least
   ``min_rows`` of them (KuaiRand's log_random, KuaiRec's small matrix: exposure there is
   independent of taste, so conformity is not confounded with what the recommender chose to show),
   else on every training row. Familiarity pulls, on random exposure only (:func:`familiarity_identified`):
   ``familiarity_click`` is the click regression's coefficient on ``f`` (1 when the item's creator made
   one of the session's last ``history_len`` impressions, :func:`recent_creator`), ``familiarity_watch``
   the gap in mean ``log w - log sat`` between familiar and other clicked random-exposure rows (those
   familiar rows stay out of the factorisation); without random exposure both are off (not identifiable:
   what a recommender chose to show confounds them with taste). ``watch_noise``: the spread of ``log w -
   log sat`` (less the familiarity inflation); ``long_view_ratio``: the watch ratio above which the
   logged long-view rate is reproduced.
3. Popularity: logged clicks per item (+1); creators and categories as logged; item age from the first
   impression; followed creators: each user's most clicked creators.
4. Leave model: the (``leave_window``, ``patience``, ``patience_threshold``) of :data:`LEAVE_GRID` whose
   replay of the training sessions' exposures best matches their session-length survival curve (up to
   the 99th percentile of the logged lengths; longer sessions censored there), with ``max_turn`` the
   longest logged session (at least SimParams' default 30: sessions that end by leaving say nothing of
   a cap) or the most common length when at least :data:`PLATFORM_CAP_SHARE` of the sessions share it
   (a platform's cap).
5. Activity and return gaps, into the simulator's returning users (``docs/simulator.md`` "Users over
   time"): a gap from a session's end to the same user's next session is Exponential with rate
   ``session_rate * activity_u * exp(retention_weight * (m - retention_reference))``, ``m`` the
   session's mean fitted satisfaction. :func:`fit_return_model` maximises that likelihood on the
   training gaps (per-user rates profiled out, so ``retention_weight`` is identified by each user's
   own gaps); the per-user rates become the users' activity feature (``activity_levels``' ``0.25 +
   1.5 a``), or, with KuaiRand's own user features, their activity degrees are kept and only the
   base rate is fitted. Sessions per user and the empirical gaps are also stored as data.
6. Post-click intercepts (like, follow, comment, forward, hate): rate matching on the clicked rows with
   the logging model's slopes (:func:`fit_post_click_intercepts`), into the fitted params'
   ``post_click_intercepts`` (the simulator runs them) and the manifest's statistics.
7. Interest drift: one combined ``interest_walk`` calibrated by replay (:func:`recgym.fit.drift.fit_drift`),
   written only above its stated resolution (``statistics.drift``), else 0; ``interest_drift`` stays 0.

Mechanisms not fitted are switched off in the fitted params (:data:`UNFITTED_OFF`): interest drift toward
consumed items (the walk above stands for both), time of day, novelty, boredom, creator
fatigue, acquired taste; the users' daily and weekly cycles are zero. Their hooks are listed in the manifest.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.optimize
from tqdm.auto import tqdm

from recgym.fit.core import WATCH_FLOOR, FitSettings, als, replay, sample_rows, unit_rows
from recgym.fit.drift import fit_drift
from recgym.fit.readers import Log
from recgym.loaders import DataFileError
from recgym.logging_model import POST_CLICK_SLOPES
from recgym.params import (
    DEFAULT_POST_CLICK_INTERCEPTS,
    POST_CLICK_SIGNALS,
    SimParams,
)
from recgym.users import KUAIRAND_USER_COLUMNS, activity_levels
from recgym.world import World

#: :func:`fit_world`'s settings when none are given.
DEFAULT_SETTINGS = FitSettings()
#: Mechanisms the fit does not identify yet: off in a fitted world (each is a SimParams knob a user may turn on).
UNFITTED_OFF = {"interest_drift": 0.0, "interest_walk": 0.0, "time_of_day": 0.0, "novelty_weight": 0.0,
                "session_novelty_volatility": 0.0, "boredom": 0.0, "creator_fatigue": 0.0, "taste_weight": 0.0,
                "taste_valley": 0.0, "popular_streak": 0}
#: Leave-rule candidates (DORL window with threshold 0, patience budget, patience threshold as a share of reward_max).
LEAVE_GRID = {"leave_window": (0, 1, 2, 4), "patience": (0.0, 1.0, 3.0, 10.0), "patience_threshold": (0.05, 0.15, 0.3)}
#: The leave rule is fitted on session lengths up to this quantile (longer sessions are censored there).
SESSION_CAP_QUANTILE = 0.99
#: A session length shared by at least this share of the sessions is also tried as max_turn (a platform's cap).
PLATFORM_CAP_SHARE = 0.1
#: Rows used by the (a, b) and click-model regressions (a uniform sample beyond this).
REGRESSION_ROWS = 400_000
#: Pseudo-gaps at the population's rate that shrink the rate of a user with few gaps toward it.
RATE_PRIOR_GAPS = 1.0
#: The relative activity range a fitted world's users can hold: ``activity_levels`` maps feature a in
#: [-1, 1] to 0.25 + 1.5 a, so at most 1.75 (the most active user) and, kept positive, at least 0.01.
ACTIVITY_RANGE = (0.01, 1.75)
#: Upper bound of the fitted retention weight (SimParams allows up to 100).
RETENTION_WEIGHT_MAX = 20.0
#: The fewest training return gaps a return model is fitted on (fewer: SimParams' defaults stay).
MIN_GAPS = 20
#: Rows per block when a per-row satisfaction is computed over the whole log (bounds the memory).
ROW_BLOCK = 500_000
HOOKS = {
    "return_gaps": "session_rate, retention_weight and each user's activity (user_features[:, 0]) are fitted "
                   "to the return gaps; the empirical per-user session counts and gaps are also stored "
                   "(user_sessions.npy, return_gaps.npy)",
    "drift_novelty_time": "interest_walk is fitted as one combined walk by replay calibration above its resolution "
                          "(statistics.drift; below it 0), interest_drift stays 0; novelty seeking and time-of-day "
                          "cycles are not fitted (off, docs/fit.md)",
    "familiarity": "familiarity_click and familiarity_watch are fitted on random-exposure rows (a creator among the "
                   "session's last history_len impressions vs not; user_followed is then empty, the estimate's "
                   "familiarity); without them they are off and user_followed holds each user's most clicked "
                   "creators (statistics.familiarity says which)",
    "post_click_signals": "like/follow/comment/forward/hate intercepts are fitted (statistics.post_click_intercepts) "
                          "and run by the simulator (params.post_click_intercepts; a signal the log lacks keeps "
                          "the default)",
}


@dataclass(frozen=True)
class FitResult:
    """What :func:`fit_world` produced: the v1 ``world``, the fitted SimParams keyword defaults
    ``params``, ``train`` (N,) bool the rows fitted on (the rest are held out), manifest entries
    (``statistics``, ``fit_settings``, ``source``, ``hooks``) and the empirical ``extra_arrays``."""

    world: World
    params: dict[str, Any]
    train: np.ndarray
    manifest: dict[str, Any]
    extra_arrays: dict[str, np.ndarray]


def split_rows(log: Log, holdout: float, seed: int) -> np.ndarray:
    """(N,) bool training rows: whole sessions are held out with probability ``holdout`` (rows
    without a session, row by row)."""
    rng = np.random.default_rng([seed, 1])
    held_session = rng.random(max(log.n_sessions, 1)) < holdout
    held_row = rng.random(log.n_rows) < holdout
    return ~np.where(log.session >= 0, held_session[np.maximum(log.session, 0)], held_row)


def log_satisfaction(world: World, watch_max: float, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """(N,) log of the satisfaction of (users, items) pairs in a world run with every session mechanism
    off (a fitted world's defaults): ``log min(reward_max sigmoid(a <u, e> + b) Q_i, watch_max)``."""
    logits = world.affinity_scale * np.einsum("nd,nd->n", world.user_interest[users].astype(np.float64),
                                              world.item_emb[items].astype(np.float64)) + world.affinity_bias
    beta = world.quality_weight
    log_q = beta * world.item_quality[items].astype(np.float64) - beta * beta / 2
    sat = math.log(world.reward_max) - np.logaddexp(0.0, -logits) + log_q
    return np.minimum(sat, math.log(watch_max))


def popularity_score(pop_prior: np.ndarray, items: np.ndarray) -> np.ndarray:
    """(N,) the simulator's popularity score at the prior: log1p(pop_i) / log1p(max pop)."""
    return np.log1p(pop_prior[items]) / np.log1p(pop_prior.max())


def _fit_click_model(log_sat: np.ndarray, pop: np.ndarray, clicks: np.ndarray, familiar: np.ndarray | None = None
                     ) -> tuple[float, float, float, float]:
    """(click_base, click_slope, conformity, familiarity_click) maximising the logistic likelihood of
    ``clicks`` on [1, log sat, popularity score, familiar (N,) 0/1], within SimParams' ranges; without
    ``familiar`` the familiarity pull is not fitted (0)."""
    features = np.column_stack([np.ones_like(log_sat), log_sat, pop, np.zeros_like(log_sat) if familiar is None
                                else familiar.astype(np.float64)])

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        z = features @ theta
        value = np.sum(np.logaddexp(0.0, z) - clicks * z) / z.size
        return value, features.T @ (1.0 / (1.0 + np.exp(-z)) - clicks) / z.size

    result = scipy.optimize.minimize(loss, np.array([-2.0, 1.0, 0.0, 0.0]), jac=True, method="L-BFGS-B",
                                     bounds=[(-20.0, 20.0), (0.0, 10.0), (0.0, 20.0),
                                             (0.0, 0.0 if familiar is None else 20.0)])
    return tuple(float(v) for v in result.x)


def _top_creators(log: Log, rows: np.ndarray, n_creators: int, k: int) -> np.ndarray:
    """(U, k) int32 each user's most clicked creators (follows weigh 10 clicks), padded with the first."""
    out = np.zeros((log.n_users, k), np.int32)
    if k == 0:
        return out
    weight = log.signal("click")[rows] + 10.0 * log.signal("follow")[rows]
    key = log.user[rows] * n_creators + log.item_creator[log.item[rows]]
    keys, inverse = np.unique(key, return_inverse=True)
    totals = np.bincount(inverse, weights=weight)
    user, creator = keys // n_creators, keys % n_creators
    order = np.lexsort((-totals, user))
    user, creator = user[order], creator[order]
    rank = np.arange(user.size) - np.searchsorted(user, user)
    top = rank < k
    out[user[top], rank[top]] = creator[top]
    first = np.full(log.n_users, -1)
    first[user[rank == 0]] = creator[rank == 0]
    counts = np.bincount(user[top], minlength=log.n_users)
    pad = np.arange(k)[None, :] >= counts[:, None]
    return np.where(pad, np.maximum(first, 0)[:, None], out).astype(np.int32)


def session_table(log: Log, rows: np.ndarray, width: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sessions among ``rows``: ((S, L) int64 the log row at each position, -1 after the end, L = the
    longest session or ``width`` if shorter; (S,) length (uncut); (S,) user). The items shown are
    ``session_items(log, table)``."""
    rows = rows[log.session[rows] >= 0]
    _, index = np.unique(log.session[rows], return_inverse=True)
    lengths = np.bincount(index)
    order = np.lexsort((log.position[rows], index))
    rank = np.arange(order.size) - np.searchsorted(index[order], index[order])
    kept = rank < (width or np.inf)
    table = np.full((lengths.size, max(int(min(lengths.max(initial=1), width or np.inf)), 1)), -1, np.int64)
    table[index[order][kept], rank[kept]] = rows[order][kept]
    users = np.zeros(lengths.size, np.int64)
    users[index] = log.user[rows]
    return table, lengths, users


def length_cap(log: Log, rows: np.ndarray) -> tuple[int, np.ndarray]:
    """(the :data:`SESSION_CAP_QUANTILE` quantile of the lengths of the sessions among ``rows``, at most
    10,000; (S,) those lengths)."""
    sessions = log.session[rows]
    counts = np.bincount(sessions[sessions >= 0])
    counts = counts[counts > 0]
    return (int(min(np.quantile(counts, SESSION_CAP_QUANTILE), 10_000)) if counts.size else 1), counts


def session_items(log: Log, table: np.ndarray) -> np.ndarray:
    """(S, L) int64 the items of a :func:`session_table`, -1 after each session's end."""
    return np.where(table >= 0, log.item[np.maximum(table, 0)], -1)


def survival(lengths: np.ndarray, ended: np.ndarray, horizon: int) -> np.ndarray:
    """(horizon,) Kaplan-Meier S(t) = P(length > t), t = 1..horizon, of sessions of ``lengths`` whose end
    was observed where ``ended`` (the others are censored at their length)."""
    t = np.arange(1, horizon + 1)
    at_risk = (lengths[None, :] >= t[:, None]).sum(axis=1)
    leaving = np.bincount(lengths[ended], minlength=horizon + 1)[1:horizon + 1]
    return np.cumprod(1.0 - leaving / np.maximum(at_risk, 1))


def survival_curves(lengths: np.ndarray, left: np.ndarray, cap: int) -> tuple[np.ndarray, np.ndarray]:
    """(S_log, S_sim), (cap,) each: the survival of the logged session ``lengths`` (S,) (at most ``cap``)
    and of their replay, which left at step ``left`` (S,) (:func:`replay`). Both are censored alike: a
    replay where the log's exposures ran out, and both at the cap (a session reaching it may have been cut)."""
    simulated = np.minimum(left, lengths)
    return (survival(lengths, lengths < cap, cap),
            survival(simulated, (left <= lengths) & (simulated < cap), cap))


def leave_distance(world: World, params: dict[str, Any], table: np.ndarray, lengths: np.ndarray, users: np.ndarray,
                   cap: int, seed: int) -> float:
    """max_t |S_log(t) - S_sim(t)| of :func:`survival_curves` for the logged sessions ``table`` (S, cap)
    of ``lengths`` (S,) <= ``cap`` replayed under ``params`` (a replayed session reaching
    ``params["max_turn"]`` ends there)."""
    _, left = replay(world, params, table, users, seed)
    real, simulated = survival_curves(lengths, np.minimum(left, params["max_turn"]), cap)
    return float(np.abs(real - simulated).max())


def fit_leave_rule(log: Log, rows: np.ndarray, world: World, params: dict[str, Any], settings: FitSettings,
                   rng: np.random.Generator, progress: bool = False) -> tuple[dict[str, Any], float | None]:
    """(leave_window, leave_threshold, patience, patience_threshold, max_turn; its survival gap) of the
    candidate whose replay of the training sessions among ``rows`` best matches their session-length
    survival (module docstring, step 4). A log without timed sessions fits none: ({}, None), the
    SimParams defaults stay."""
    cap, counts = length_cap(log, rows)
    if not counts.size:
        return {}, None
    frequency = np.bincount(np.minimum(counts, cap))
    platform_cap = int(frequency.argmax())  # a length many sessions share may be the platform's own cap
    # sessions that all end by leaving say nothing of a cap: SimParams' default unless longer ones were logged
    uncapped = max(int(min(counts.max(), 10_000)), SimParams().max_turn)
    max_turns = {uncapped} | ({platform_cap} if 1 < platform_cap < cap and frequency[platform_cap] >= PLATFORM_CAP_SHARE
                              * counts.size else set())
    table, lengths, session_users = session_table(log, rows, cap)
    table = session_items(log, table)
    lengths_capped = np.minimum(lengths, cap)
    pick = sample_rows(np.arange(lengths.size), settings.leave_sessions, rng)
    grid = [dict(zip(LEAVE_GRID, values)) for values in itertools.product(*LEAVE_GRID.values())
            if values[1] > 0 or values[2] == LEAVE_GRID["patience_threshold"][0]]
    grid = [{**rule, "max_turn": max_turn} for max_turn in sorted(max_turns, reverse=True) for rule in grid]
    best: tuple[float, dict[str, Any]] | None = None
    for candidate in tqdm(grid, desc="leave model", unit="rule", disable=not progress, leave=False):
        rule = {**candidate, "patience_threshold": candidate["patience_threshold"] * world.reward_max,
                "leave_threshold": 0}
        distance = leave_distance(world, {**params, **rule}, table[pick], lengths_capped[pick],
                                  session_users[pick], cap, settings.seed)
        if best is None or distance < best[0]:
            best = (distance, rule)
    return best[1], best[0]


def fit_world(log: Log, settings: FitSettings = DEFAULT_SETTINGS, progress: bool = False) -> FitResult:
    """Fit a v1 world to ``log`` (see the module docstring). A log too small to fit is a one-line
    :class:`~recgym.loaders.DataFileError` naming the source."""
    train = split_rows(log, settings.holdout, settings.seed)
    rows = np.flatnonzero(train)
    click, watch = log.signal("click"), log.signal("watch_ratio")
    watched = rows[(click[rows] == 1) & (watch[rows] > 0)]
    if rows.size < settings.min_rows or watched.size < settings.min_rows or log.n_users < 2 or log.n_items < 2:
        raise DataFileError(f"{log.source}: too small to fit: {rows.size} training rows, {watched.size} with a click "
                            f"and a watch ratio > 0, {log.n_users} users, {log.n_items} items; need >= "
                            f"{settings.min_rows} of each kind of row and >= 2 users and items")
    rng = np.random.default_rng([settings.seed, 3])
    steps = tqdm(total=6, desc="fit", unit="step", disable=not progress)
    # the familiarity pulls are identified on random exposure (step 2); the familiar random-exposure rows
    # they are measured on stay out of the factorisation, which would otherwise absorb the pull
    random_rows = rows[log.random[rows]]
    familiar = recent_creator(log, SimParams().history_len)
    familiarity = familiarity_identified(random_rows, random_rows[(click[random_rows] == 1) & (watch[random_rows] > 0)],
                                         familiar, settings.min_rows)
    factorised = ~(familiar[watched] & log.random[watched]) if familiarity == "fitted" else np.ones(watched.size, bool)
    # 1. satisfaction
    target = np.log(np.maximum(watch[watched].astype(np.float64), WATCH_FLOOR))
    mu, x, b_u, y, b_i = als(log.user[watched[factorised]], log.item[watched[factorised]], target[factorised],
                             log.n_users, log.n_items, settings, progress)
    steps.update()
    seen_items = np.bincount(log.item[watched], minlength=log.n_items) > 0
    beta = float(b_i[seen_items].std()) if seen_items.sum() > 1 else 0.0
    quality = np.where(seen_items, (b_i - b_i[seen_items].mean()) / (beta if beta > 0 else 1.0), 0.0)
    prediction = mu + b_u[log.user[watched]] + b_i[log.item[watched]] + np.einsum(
        "nd,nd->n", x[log.user[watched]], y[log.item[watched]])
    reward_max = float(np.quantile(np.exp(prediction), 0.995))  # the noise-free ceiling, not the noise's tail
    watch_max = float(min(max(watch[watched].max(), reward_max), 1e3))
    user_dir, item_dir = unit_rows(x), unit_rows(y)
    sample = sample_rows(watched, REGRESSION_ROWS, rng)
    u, i = log.user[sample], log.item[sample]
    rest = mu + b_u[u] + np.einsum("nd,nd->n", x[u], y[i]) + b_i[seen_items].mean() + beta * beta / 2 - math.log(reward_max)
    cosine = np.einsum("nd,nd->n", user_dir[u].astype(np.float64), item_dir[i].astype(np.float64))
    fit = scipy.optimize.least_squares(lambda ab: -np.logaddexp(0.0, -(ab[0] * cosine + ab[1])) - rest,
                                       x0=np.array([4.0, -2.0]), bounds=([0.0, -100.0], [100.0, 100.0]))
    scale, bias = (float(v) for v in fit.x)
    # 3. catalogue and users (before the click model: it reads the popularity)
    pop_prior = np.bincount(log.item[rows], weights=click[rows], minlength=log.n_items) + 1.0
    timed = rows[~np.isnan(log.timestamp[rows])]
    newest = log.timestamp[timed].max() if timed.size else 0.0
    first_seen = np.full(log.n_items, np.nan)
    if timed.size:
        first_seen = np.full(log.n_items, np.inf)
        np.minimum.at(first_seen, log.item[timed], log.timestamp[timed])
        first_seen[np.isinf(first_seen)] = np.nan
    age = (newest - first_seen) / 86_400.0
    age = np.where(np.isnan(age), np.nanmedian(age) if np.isfinite(age).any() else 0.0, age)
    hours = (log.timestamp[timed] % 86_400.0) / 3_600.0
    angle = 2 * np.pi * hours / 24
    sin = np.bincount(log.item[timed], weights=np.sin(angle), minlength=log.n_items)
    cos = np.bincount(log.item[timed], weights=np.cos(angle), minlength=log.n_items)
    item_hour = np.where((sin != 0) | (cos != 0), (np.arctan2(sin, cos) * 24 / (2 * np.pi)) % 24, 12.0)
    n_creators = int(log.item_creator.max()) + 1
    debut = np.zeros(n_creators, np.float32)
    np.maximum.at(debut, log.item_creator, age.astype(np.float32))
    duration = np.where(np.isnan(log.item_duration), np.nanmedian(log.item_duration)
                        if np.isfinite(log.item_duration).any() else 60.0, log.item_duration)
    user_rows = np.bincount(log.user[rows], minlength=log.n_users)
    user_clicks = np.bincount(log.user[rows], weights=click[rows], minlength=log.n_users)
    activity = np.log1p(user_rows) / np.log1p(max(user_rows.max(), 1))
    features = (log.user_features if log.user_features is not None else
                np.column_stack([2 * activity - 1, 2 * user_clicks / np.maximum(user_rows, 1) - 1]))
    world = World(
        name=f"fitted:{log.source.rstrip('/').rsplit('/', 1)[-1]}", item_emb=item_dir,
        item_cats=log.item_cats.astype(bool), item_creator=log.item_creator.astype(np.int64),
        item_age=age.astype(np.float32), item_hour=item_hour.astype(np.float32), pop_prior=pop_prior,
        user_interest=user_dir, user_novelty=np.full(log.n_users, 0.5, np.float32), reward_max=reward_max,
        affinity_scale=scale, affinity_bias=bias, user_ids=_int_ids(log.user_ids), item_ids=_int_ids(log.item_ids),
        item_quality=quality.astype(np.float32), quality_weight=beta, item_duration=duration.astype(np.float32),
        creator_debut=debut, user_followed=_top_creators(log, rows, n_creators, settings.followed_creators),
        user_features=np.clip(features, -1, 1).astype(np.float32),
        user_cycles=np.zeros((log.n_users, 4, settings.dims), np.float32),  # time cycles not fitted: none
    )
    steps.update()
    # 2. click model, familiarity pulls (random exposure only), watch noise, long view
    click_rows = sample_rows(random_rows if random_rows.size >= settings.min_rows else rows, REGRESSION_ROWS, rng)
    log_sat = log_satisfaction(world, watch_max, log.user[click_rows], log.item[click_rows])
    click_base, click_slope, conformity, familiarity_click = _fit_click_model(
        log_sat, popularity_score(pop_prior, log.item[click_rows]), click[click_rows].astype(np.float64),
        familiar[click_rows] if familiarity == "fitted" else None)
    residual = target - log_satisfaction(world, watch_max, log.user[watched], log.item[watched])
    familiarity_watch = 0.0
    if familiarity == "fitted":  # the mean log watch ratio gap, familiar vs not, on random exposure
        on_random, seen = log.random[watched], familiar[watched]
        familiarity_watch = float(np.clip(residual[on_random & seen].mean() - residual[on_random & ~seen].mean(),
                                          0.0, 100.0))
        residual = residual - familiarity_watch * seen
        # the fitted world's familiarity is the estimate's: the session's recent creators, no followed ones
        world = dataclasses.replace(world, user_followed=np.zeros((log.n_users, 0), np.int32))
    long_view_rate = float(log.signal("long_view")[watched].mean())
    params: dict[str, Any] = {
        **UNFITTED_OFF, "click_base": click_base, "click_slope": click_slope, "conformity": conformity,
        "familiarity_click": familiarity_click, "familiarity_watch": familiarity_watch,
        "watch_noise": float(min(residual.std(), 100.0)), "watch_max": watch_max,
        "long_view_ratio": (float(np.quantile(watch[watched], 1 - long_view_rate)) if "long_view" in log.logged
                            and 0 < long_view_rate < 1 else 1.0),
    }
    steps.update()
    # 4. leave model
    rule, leave_gap = fit_leave_rule(log, rows, world, params, settings, rng, progress)
    params.update(rule)
    steps.update()
    # 5. activity and return gaps
    _, session_lengths = length_cap(log, rows)
    returns = return_data(log, world, watch_max)
    in_train = train[returns["later"]]  # a gap belongs to the split of the session it leads to
    gaps = returns["seconds"][in_train]
    kuairand_features = world.user_features.shape[1] == KUAIRAND_USER_COLUMNS
    activity = np.ones(log.n_users)  # without enough gaps: every user at SimParams' base rate
    if in_train.sum() >= MIN_GAPS:
        rate, weight, user_rates = fit_return_model(
            returns["gap_days"][in_train], log.user[returns["later"]][in_train], returns["satisfaction"][in_train],
            log.n_users, activity_levels(world) if kuairand_features else None)
        params.update(session_rate=rate, retention_weight=weight)
        activity = np.clip(user_rates / rate, *ACTIVITY_RANGE)
    if not kuairand_features:  # the activity feature activity_levels reads: 0.25 + 1.5 a
        features = world.user_features.copy()
        features[:, 0] = (activity - 0.25) / 1.5
        world = dataclasses.replace(world, user_features=features)
    sessions_per_user = np.bincount(log.user[session_starts(log, rows)], minlength=log.n_users)
    steps.update()
    # 7. interest drift
    params["interest_walk"], drift = fit_drift(log, rows, world, params, settings, progress)
    steps.update()
    steps.close()
    intercepts = fit_post_click_intercepts(log, rows[click[rows] == 1], world, params, familiar)
    params["post_click_intercepts"] = {name: entry["fitted"] for name, entry in intercepts.items()}
    statistics = {
        "rows": int(log.n_rows), "train_rows": int(rows.size), "users": log.n_users, "items": log.n_items,
        "sessions": log.n_sessions, "random_exposure_rows": int(log.random.sum()),
        "click_model_on": "random exposure" if random_rows.size >= settings.min_rows else "all training rows",
        "familiarity": familiarity,
        "click_rate": float(click[rows].mean()), "mean_watch_ratio_per_click": float(watch[watched].mean()),
        "mean_session_length": float(session_lengths.mean()) if session_lengths.size else None,
        "median_return_gap_h": float(np.median(gaps) / 3600) if gaps.size else None,
        "return_model": "fitted" if in_train.sum() >= MIN_GAPS else f"SimParams defaults (fewer than {MIN_GAPS} gaps)",
        "post_click_intercepts": intercepts, "drift": drift,
        "leave_rule_survival_distance": leave_gap, "als_rmse": float(np.sqrt(np.mean((target - prediction) ** 2))),
    }
    manifest = {"source": {"path": log.source, "logged_signals": list(log.logged)},
                "fit_settings": dataclasses.asdict(settings), "statistics": statistics, "hooks": HOOKS}
    return FitResult(world, params, train, manifest,
                     {"user_sessions": sessions_per_user, "return_gaps": gaps, "session_lengths": session_lengths})


#: The fewest clicked random-exposure training rows on each side (familiar, not) to fit the familiarity pulls.
MIN_FAMILIAR_ROWS = 30


def recent_creator(log: Log, k: int) -> np.ndarray:
    """(N,) bool: the row's creator made one of the ``k`` impressions before it in its session (the
    simulator's creator familiarity without followed creators; rows without a session: False)."""
    rows = np.flatnonzero(log.session >= 0)
    order = rows[np.lexsort((log.position[rows], log.session[rows]))]
    creator, session = log.item_creator[log.item[order]], log.session[order]
    familiar = np.zeros(order.size, bool)
    for lag in range(1, min(k, order.size - 1) + 1):
        familiar[lag:] |= (session[lag:] == session[:-lag]) & (creator[lag:] == creator[:-lag])
    out = np.zeros(log.n_rows, bool)
    out[order] = familiar
    return out


def familiarity_identified(random_rows: np.ndarray, clicked_random: np.ndarray, familiar: np.ndarray,
                           min_rows: int) -> str:
    """"fitted" when the familiarity pulls can be fitted: at least ``min_rows`` random-exposure training
    rows (``random_rows``; the click model is then fitted on them) and :data:`MIN_FAMILIAR_ROWS` clicked
    ones (``clicked_random``) on each side of ``familiar`` (N,) bool. There exposure is independent of
    taste, so a recent creator's pull on the click and the watch ratio is not the recommender's choice
    of what the user likes. Otherwise the reason it is not identifiable."""
    if random_rows.size < min_rows:
        return (f"not identifiable: {random_rows.size} random-exposure rows, need >= {min_rows} (exposure "
                "chosen by a recommender confounds the familiarity pull with taste); off")
    shares = int(familiar[clicked_random].sum()), int((~familiar[clicked_random]).sum())
    if min(shares) < MIN_FAMILIAR_ROWS:
        return (f"not identifiable: {shares[0]} familiar and {shares[1]} other clicked random-exposure rows "
                f"(need >= {MIN_FAMILIAR_ROWS} each); off")
    return "fitted"


def session_starts(log: Log, rows: np.ndarray) -> np.ndarray:
    """The rows among ``rows`` that open a session (position 0)."""
    return rows[(log.session[rows] >= 0) & (log.position[rows] == 0)]


def fit_post_click_intercepts(log: Log, clicked: np.ndarray, world: World, params: dict[str, Any],
                              familiar: np.ndarray) -> dict[str, dict[str, float]]:
    """Per post-click signal the logit intercept ``a_s`` that reproduces its logged rate on the
    ``clicked`` rows (a rate-matching logistic fit with the logging model's slope ``k_s`` on the
    fitted log satisfaction, ``conformity_like * p`` for the like and the fitted ``familiarity_click``
    times ``familiar`` (N,) bool for all but the hate): signal -> {"fitted": a_s, "simulator": the
    logging model's default a_s, "rate": the logged rate per click}. Signals the log lacks, or that
    never / always fire, are left out (the world runs the default intercept for them)."""
    log_sat = log_satisfaction(world, float(params["watch_max"]), log.user[clicked], log.item[clicked])
    like_pull = params.get("conformity_like", SimParams().conformity_like) * popularity_score(
        world.pop_prior, log.item[clicked])
    familiarity_pull = float(params.get("familiarity_click", 0.0)) * familiar[clicked]
    intercepts = {}
    for j, name in enumerate(POST_CLICK_SIGNALS):
        rate = float(log.signal(name)[clicked].mean()) if name in log.logged and clicked.size else 0.0
        if not 0.0 < rate < 1.0:
            continue
        offset = (POST_CLICK_SLOPES[j] * log_sat + (like_pull if name == "like" else 0.0)
                  + (familiarity_pull if name != "hate" else 0.0))
        intercept = scipy.optimize.brentq(_rate_excess, -60.0, 60.0, args=(offset, rate))
        intercepts[name] = {"fitted": float(intercept), "simulator": DEFAULT_POST_CLICK_INTERCEPTS[name], "rate": rate}
    return intercepts


def _rate_excess(intercept: float, offset: np.ndarray, rate: float) -> float:
    """Mean of sigmoid(intercept + offset) (N,) minus the target ``rate`` (rising in ``intercept``)."""
    return float(np.mean(1.0 / (1.0 + np.exp(-(intercept + offset))))) - rate


def return_gaps(log: Log) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """((G,) float64 seconds from each session start to the same user's previous one, (G,) int64 the
    log row that starts the later session, (G,) int64 the row that starts the earlier one) over every
    timed session of the log."""
    first_rows = session_starts(log, np.arange(log.n_rows))
    first_rows = first_rows[~np.isnan(log.timestamp[first_rows])]
    order = first_rows[np.lexsort((log.timestamp[first_rows], log.user[first_rows]))]
    same = log.user[order[1:]] == log.user[order[:-1]]
    return np.diff(log.timestamp[order])[same].astype(np.float64), order[1:][same], order[:-1][same]


def return_data(log: Log, world: World, watch_max: float) -> dict[str, np.ndarray]:
    """Per return gap of :func:`return_gaps` (G,) arrays: ``seconds`` start to start, ``later`` the
    row that starts the later session, ``gap_days`` from the earlier session's end (its start + its
    impressions x the log's median step) to the later session's start, ``duration_days`` the earlier
    session's length in time, and ``satisfaction`` the earlier session's mean satisfaction in
    ``world`` (noise-free, :func:`log_satisfaction`: what the simulator's return rate reads,
    ``recgym.users.end_sessions``)."""
    gaps, later, earlier = return_gaps(log)
    timed = np.flatnonzero(log.session >= 0)
    timed = timed[np.lexsort((log.timestamp[timed], log.session[timed]))]
    n_sessions = max(log.n_sessions, 1)
    total = np.zeros(n_sessions)
    for start in range(0, timed.size, ROW_BLOCK):
        block = timed[start:start + ROW_BLOCK]
        total += np.bincount(log.session[block], weights=np.exp(log_satisfaction(
            world, watch_max, log.user[block], log.item[block])), minlength=n_sessions)
    impressions = np.bincount(log.session[timed], minlength=n_sessions)
    steps = np.diff(log.timestamp[timed])[np.diff(log.session[timed]) == 0]
    step_days = float(np.median(steps)) / 86_400.0 if steps.size else 0.0
    session = log.session[earlier]
    duration = impressions[session] * step_days
    return {"seconds": gaps, "later": later, "gap_days": np.maximum(gaps / 86_400.0 - duration, 0.0),
            "duration_days": duration,
            "satisfaction": total[session] / np.maximum(impressions[session], 1)}


def return_rates(world: World, params: dict[str, Any], users: np.ndarray, satisfaction: np.ndarray) -> np.ndarray:
    """(G,) the simulator's return rate per day (``recgym.users.end_sessions``) after sessions of
    ``users`` (G,) with mean satisfaction ``satisfaction`` (G,), in a world run with ``params``."""
    defaults = SimParams()
    rate = params.get("session_rate", defaults.session_rate)
    weight = params.get("retention_weight", defaults.retention_weight)
    reference = params.get("retention_reference", defaults.retention_reference)
    return rate * activity_levels(world)[users] * np.exp(weight * (satisfaction - reference))


def fit_return_model(gap_days: np.ndarray, users: np.ndarray, satisfaction: np.ndarray, n_users: int,
                     activity: np.ndarray | None = None) -> tuple[float, float, np.ndarray]:
    """Maximum likelihood of ``gap_days`` (G,) ~ Exponential(r_u exp(w (m - retention_reference)))
    for the gaps' ``users`` (G,) and mean ``satisfaction`` m (G,). ``activity`` (U,) fixed relative
    rates (r_u = R activity_u: one base rate R), or None: a rate per user, shrunk toward the
    population's by :data:`RATE_PRIOR_GAPS` pseudo-gaps. The rates are profiled out for each w, so w
    is identified by each user's gaps after more and less satisfying sessions.

    Returns (``session_rate``: the largest user rate over :data:`ACTIVITY_RANGE`'s top, so that
    every rate is a feature a fitted world can hold; or R; ``retention_weight`` w; (U,) user rates)."""
    excess = satisfaction.astype(np.float64) - SimParams().retention_reference
    counts = np.bincount(users, minlength=n_users).astype(np.float64)

    def rates(weight: float) -> np.ndarray:
        exposure = gap_days * np.exp(weight * excess)
        if activity is not None:
            return activity * (gap_days.size / np.sum(activity[users] * exposure))
        summed = np.bincount(users, weights=exposure, minlength=n_users)
        population = gap_days.size / exposure.sum()
        return (counts + RATE_PRIOR_GAPS) / (summed + RATE_PRIOR_GAPS / population)

    def negative_log_likelihood(weight: float) -> float:
        rate = rates(weight)[users] * np.exp(weight * excess)
        return float(-(np.log(rate) - rate * gap_days).sum())

    weight = float(scipy.optimize.minimize_scalar(negative_log_likelihood, bounds=(0.0, RETENTION_WEIGHT_MAX),
                                                  method="bounded").x)
    user_rates = rates(weight)
    base = float(user_rates.max() / ACTIVITY_RANGE[1] if activity is None else user_rates.sum() / activity.sum())
    return base, weight, user_rates


def _int_ids(ids: np.ndarray) -> np.ndarray:
    """The file's ids as int64 when they are integers, else their dense index (text ids are not kept)."""
    array = np.asarray(ids)
    return array.astype(np.int64) if array.dtype.kind in "iu" else np.arange(array.size, dtype=np.int64)
