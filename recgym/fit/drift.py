"""Interest drift fitted by replay calibration (``docs/fit.md`` "Interest drift").

The statistic: on each user's clicks in time order, a factorisation with one user vector per quarter of
the user's clicks (pseudo-users ``(user, quarter)``, the fit's own :func:`~recgym.fit.core.als`; a static
factorisation's item space loses the directions users drift along) gives item directions ``e`` and
residuals ``z = log w - mu - b_(user, quarter) - b_i``; the mean of ``z_1 z_2 cos(e_1, e_2)`` over pairs of
a user's clicks ``lag`` clicks apart, pooled over the far lags :data:`FAR_LAGS` and the near lags
:data:`NEAR_LAGS`, gives the far/near ratio. Drift decorrelates far pairs, so the ratio falls with the
walk; the per-quarter vectors lower it even without drift, so it is read only through a calibration:
the same users' impressions are replayed, in time order as one leave-free sequence each, in the fitted
world at the candidate walks :data:`WALK_GRID` (:data:`REPLAY_SEEDS` seeds each), and the log's ratio
is interpolated onto that curve (a log ratio more than :data:`RESOLUTION_Z` noise units below the curve's end
is out of its range: misfit, walk 0). Its resolution is the walk whose replayed ratio lies
:data:`RESOLUTION_Z` noise units below the no-walk one (noise: a bootstrap over users of the log's
ratio and the replay seeds' spread), at least :data:`RESOLUTION_FLOOR` (model misfit); below it the
fit writes walk 0. The simulator's two drift knobs (``interest_drift`` toward consumed items,
``interest_walk``) are not separated: one combined ``interest_walk`` is fitted, ``interest_drift``
stays 0.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from recgym.fit.core import WATCH_FLOOR, FitSettings, als, replay, sample_rows, unit_rows
from recgym.fit.readers import Log
from recgym.params import SIGNALS
from recgym.world import World

#: At most this many users (those with >= :data:`MIN_DRIFT_CLICKS` clicks, drawn by the fit's seed).
DRIFT_USERS = 2000
#: Each user's first impressions (in time) kept for the statistic and the replay.
DRIFT_IMPRESSIONS = 600
MIN_DRIFT_CLICKS = 25
NEAR_LAGS = (1, 5)
FAR_LAGS = (11, 20)
QUARTERS = 4
#: The per-quarter factorisation's dimensions: at most this many (the fit's ``dims`` if fewer); its cost
#: grows with their square, and the statistic needs directions, not the full model.
DRIFT_DIMS = 16
#: Candidate walks (``interest_walk``, per impression) the replay calibrates at.
WALK_GRID = (0.0, 0.02, 0.04, 0.08)
#: Replay seeds per walk (at least 2: their spread is part of the noise).
REPLAY_SEEDS = 2
BOOTSTRAP = 200
#: Noise units between the no-walk ratio and the resolution's.
RESOLUTION_Z = 2.0
#: The resolution is never finer than this walk: unmodelled within-session mechanisms (boredom, creator
#: fatigue) shift the ratio beyond the noise, and a no-drift source read as walk 0.0095 (docs/fit.md).
RESOLUTION_FLOOR = 0.02
#: The replay runs leave-free: one sequence per user, whatever the fitted leave rule.
LEAVE_FREE = {"leave_window": 0, "patience": 0.0, "popular_streak": 0}
WATCH = SIGNALS.index("watch_ratio")


def user_sequences(log: Log, rows: np.ndarray, rng: np.random.Generator, max_users: int = DRIFT_USERS,
                   limit: int = DRIFT_IMPRESSIONS, min_clicks: int = MIN_DRIFT_CLICKS
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Each drawn user's first ``limit`` timed rows among ``rows`` in time order: ((S, L) int64 log rows,
    -1 after the end; (S,) users), S <= ``max_users`` drawn among the users with >= ``min_clicks`` clicks
    there."""
    rows = rows[log.session[rows] >= 0]
    order = rows[np.lexsort((log.position[rows], log.session[rows], log.timestamp[rows], log.user[rows]))]
    owner = log.user[order]
    rank = np.arange(order.size) - np.searchsorted(owner, owner)
    order, owner, rank = order[rank < limit], owner[rank < limit], rank[rank < limit]
    clicks = np.bincount(owner, weights=log.signal("click")[order], minlength=log.n_users)
    users = sample_rows(np.flatnonzero(clicks >= min_clicks), max_users, rng)
    index = np.full(log.n_users, -1)
    index[users] = np.arange(users.size)
    kept = index[owner] >= 0
    table = np.full((users.size, max(int(rank[kept].max(initial=0)) + 1, 1)), -1, np.int64)
    table[index[owner[kept]], rank[kept]] = order[kept]
    return table, users


def lag_sums(clicks: np.ndarray, watch: np.ndarray, items: np.ndarray, scored: np.ndarray, settings: FitSettings
             ) -> np.ndarray:
    """Per-sequence sums of the lag statistic: (S, 4) = (near sum, near pairs, far sum, far pairs).

    ``clicks``, ``watch``, ``items``, ``scored`` (S, L): a sequence's impressions in time order (items -1
    after the end). Every click with a watch ratio > 0 enters the per-quarter factorisation; pairs are
    formed among the ``scored`` ones, the lag counted in scored clicks."""
    n_seq = clicks.shape[0]
    kept = (clicks > 0) & (watch > 0) & (items >= 0)
    owner, position = np.nonzero(kept)  # owner-major, in time order
    item = items[owner, position]
    target = np.log(np.maximum(watch[owner, position].astype(np.float64), WATCH_FLOOR))
    counts = np.bincount(owner, minlength=n_seq)
    rank = np.arange(owner.size) - np.searchsorted(owner, owner)
    pseudo = owner * QUARTERS + (QUARTERS * rank) // np.maximum(counts[owner], 1)
    mu, _, b_u, y, b_i = als(pseudo, item, target, n_seq * QUARTERS, int(items.max(initial=0)) + 1,
                             dataclasses.replace(settings, dims=min(settings.dims, DRIFT_DIMS)))
    z = target - mu - b_u[pseudo] - b_i[item]
    direction = unit_rows(y).astype(np.float64)
    pick = scored[owner, position]
    owner, z, direction = owner[pick], z[pick], direction[item[pick]]
    sums = np.zeros((n_seq, 4))
    for column, (low, high) in ((0, NEAR_LAGS), (2, FAR_LAGS)):
        for lag in range(low, high + 1):
            same = np.flatnonzero(owner[:-lag] == owner[lag:])
            value = z[same] * z[same + lag] * np.einsum("nd,nd->n", direction[same], direction[same + lag])
            sums[:, column] += np.bincount(owner[same], weights=value, minlength=n_seq)
            sums[:, column + 1] += np.bincount(owner[same], minlength=n_seq)
    return sums


def ratio(sums: np.ndarray) -> float:
    """Far/near ratio of pooled :func:`lag_sums` (S, 4) (nan without pairs or a near mean <= 0)."""
    near_n, far_n = sums[:, 1].sum(), sums[:, 3].sum()
    if near_n == 0 or far_n == 0 or sums[:, 0].sum() <= 0:
        return float("nan")
    return float((sums[:, 2].sum() / far_n) / (sums[:, 0].sum() / near_n))


def bootstrap_se(sums: np.ndarray, seed: int) -> float:
    """Standard error of :func:`ratio` over users (:data:`BOOTSTRAP` resamples, all at once)."""
    weights = np.random.default_rng([seed, 8]).multinomial(sums.shape[0], np.full(sums.shape[0], 1 / sums.shape[0]),
                                                           size=BOOTSTRAP)
    pooled = weights @ sums
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = (pooled[:, 2] / pooled[:, 3]) / (pooled[:, 0] / pooled[:, 1])
    return float(np.nanstd(ratios))


def log_lag_sums(log: Log, table: np.ndarray, scored: np.ndarray, settings: FitSettings) -> np.ndarray:
    """:func:`lag_sums` of the log's own sequences ``table`` (S, L) of log rows."""
    shown = table >= 0
    at = np.maximum(table, 0)
    return lag_sums(np.where(shown, log.signal("click")[at], 0), np.where(shown, log.signal("watch_ratio")[at], 0),
                    np.where(shown, log.item[at], -1), scored & shown, settings)


def replay_lag_sums(world: World, params: dict[str, Any], items: np.ndarray, users: np.ndarray, scored: np.ndarray,
                    walk: float, seed: int, settings: FitSettings) -> np.ndarray:
    """:func:`lag_sums` of the leave-free replay of the sequences ``items`` (S, L) for ``users`` (S,) in
    ``world`` at ``interest_walk=walk``."""
    signals, _ = replay(world, {**params, **LEAVE_FREE, "interest_drift": 0.0, "interest_walk": walk}, items, users,
                        seed)
    return lag_sums(signals[:, :, 0], signals[:, :, WATCH], items, scored & (items >= 0), settings)


def fit_drift(log: Log, rows: np.ndarray, world: World, params: dict[str, Any], settings: FitSettings,
              progress: bool = False) -> tuple[float, dict[str, Any]]:
    """(fitted ``interest_walk``, ``statistics.drift``) from the training ``rows`` (module docstring)."""
    table, users = user_sequences(log, rows, np.random.default_rng([settings.seed, 7]))
    base = {"users": int(users.size), "fitted": "interest_walk: one combined walk (interest_drift toward consumed "
                                                "items is not separated from it and stays 0)"}
    if users.size < 2:
        return 0.0, {**base, "identifiable": False, "walk": 0.0,
                     "reason": f"not identifiable: {users.size} users with >= {MIN_DRIFT_CLICKS} timed clicks"}
    shown = table >= 0
    real = log_lag_sums(log, table, shown, settings)
    log_ratio, log_se = ratio(real), bootstrap_se(real, settings.seed)
    items = np.where(shown, log.item[np.maximum(table, 0)], -1)
    curve = np.zeros((len(WALK_GRID), REPLAY_SEEDS))
    runs = [(w, s) for w in range(len(WALK_GRID)) for s in range(REPLAY_SEEDS)]
    for w, s in tqdm(runs, desc="drift", unit="replay", disable=not progress, leave=False):
        curve[w, s] = ratio(replay_lag_sums(world, params, items, users, shown, WALK_GRID[w], settings.seed + s,
                                            settings))
    reading = read_walk(curve, log_ratio, log_se)
    return reading["walk"], {**base, **reading, "log_ratio": log_ratio, "log_ratio_se": log_se,
                             "near_pairs": int(real[:, 1].sum()),
                             "lags": {"near": list(NEAR_LAGS), "far": list(FAR_LAGS)},
                             "calibration": {str(w): [float(v) for v in curve[i]] for i, w in enumerate(WALK_GRID)}}


def read_walk(curve: np.ndarray, log_ratio: float, log_se: float) -> dict[str, Any]:
    """The walk a log's far/near ratio reads as on the calibration ``curve`` ((W, seeds) replayed ratios at
    :data:`WALK_GRID`): ``walk`` (written: the estimate when identifiable, else 0), ``estimate``,
    ``resolution``, ``identifiable``, ``reason``, ``replay_seed_se`` (module docstring)."""
    mean = np.minimum.accumulate(curve.mean(axis=1))  # the ratio falls with the walk
    seed_se = float(np.sqrt(np.mean(curve.var(axis=1, ddof=1)) / curve.shape[1]))  # of a walk's mean ratio
    noise = float(np.hypot(log_se, seed_se))
    grid = np.asarray(WALK_GRID)
    ties = 1e-12 * np.arange(grid.size)  # np.interp needs increasing abscissae
    drop = mean[0] - mean
    resolution = max(float(np.interp(RESOLUTION_Z * noise, drop + ties, grid))
                     if drop[-1] >= RESOLUTION_Z * noise else float(grid[-1]), RESOLUTION_FLOOR)
    estimate = float(np.interp(-log_ratio, -mean + ties, grid)) if np.isfinite(log_ratio) else 0.0
    # a log that decorrelates more than the replay at any candidate walk is misfit, not a walk reading
    out_of_range = bool(log_ratio < mean[-1] - RESOLUTION_Z * noise)
    identifiable = bool(np.isfinite(log_ratio) and np.isfinite(mean).all() and estimate > resolution
                        and not out_of_range)
    if out_of_range:
        reason = (f"out of the calibrated range: the log's far/near ratio {log_ratio:.3f} lies more than "
                  f"{RESOLUTION_Z:g} noise units ({noise:.3f}) below the replay's at walk {grid[-1]:g} "
                  f"({mean[-1]:.3f}): no candidate walk reproduces it (a mechanism the fit leaves out); walk 0 written")
    elif identifiable:
        reason = ("fitted" if estimate < grid[-1] else
                  f"fitted at the grid's end: the log's ratio is at or below the replay's at walk {grid[-1]:g}")
    else:
        reason = (f"below the resolution: the log's far/near ratio {log_ratio:.3f} reads as walk {estimate:.3f}, "
                  f"not told from none at walk <= {resolution:.3f}; walk 0 written")
    return {"walk": estimate if identifiable else 0.0, "estimate": estimate, "resolution": resolution,
            "identifiable": identifiable, "reason": reason, "replay_seed_se": seed_se}


def drift_fidelity(log: Log, world: World, params: dict[str, Any], train: np.ndarray, seed: int, z: float
                   ) -> tuple[float, float, float] | None:
    """The fidelity row of the lag statistic: (real far/near ratio, replayed ratio, threshold)
    on the held-out clicks (``~train``), or None without enough of them.

    The drawn users' rows, training and held-out, are replayed in time order as one leave-free sequence
    each in ``world`` under ``params`` (its fitted walk; :data:`REPLAY_SEEDS` seeds), so that drift runs
    over the training impressions between held-out ones as it did in the log; pairs are formed among the
    held-out clicks only, on both sides. Threshold: ``z`` standard errors of the difference (bootstrap
    over users on both sides, the replay's seed spread)."""
    timed = np.flatnonzero(log.session >= 0)
    table, users = user_sequences(log, timed, np.random.default_rng([seed, 9]))
    if users.size < 2:
        return None
    shown = table >= 0
    held = shown & ~train[np.maximum(table, 0)]
    settings = FitSettings(dims=int(world.item_emb.shape[1]), seed=seed)
    real = log_lag_sums(log, table, held, settings)
    items = np.where(shown, log.item[np.maximum(table, 0)], -1)
    replays = [replay_lag_sums(world, params, items, users, held, float(params.get("interest_walk", 0.0)), seed + s,
                               settings) for s in range(REPLAY_SEEDS)]
    ratios = np.array([ratio(sums) for sums in replays])
    real_ratio = ratio(real)
    if not np.isfinite(real_ratio) or not np.isfinite(ratios).all():
        return None
    seed_se = float(ratios.std(ddof=1) / np.sqrt(ratios.size))
    sim_se = float(np.hypot(bootstrap_se(sum(replays), seed), seed_se))
    threshold = z * float(np.hypot(bootstrap_se(real, seed), sim_se))
    return real_ratio, float(ratios.mean()), threshold
