"""Recommendation metrics, vectorised over episodes and the catalogue (formulas: ``docs/metrics.md``).

Shapes: N episodes, T recommendations in total (all episodes concatenated), I items, C categories,
D embedding dims. Every function is a pure array computation; :func:`recgym.evaluate` and the
TensorBoard callback compose them from the recommendations an evaluation made.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from recgym.world import World


def gini(exposure: np.ndarray) -> float:
    """Gini coefficient of an (I,) non-negative exposure vector over the WHOLE catalogue (Lorenz form).

    ``G = sum_i (2i - I - 1) x_(i) / (I * sum x)`` with ``x`` sorted ascending and ``i = 1..I``;
    never-exposed items count as zeros. 0 = equal exposure, ``1 - 1/I`` = one item gets everything.
    """
    x = np.sort(np.asarray(exposure, np.float64))
    n, total = x.size, x.sum()
    if n == 0 or total <= 0:
        return 0.0
    ranks = np.arange(1, n + 1)
    return float(((2 * ranks - n - 1) * x).sum() / (n * total))


def coverage(items: np.ndarray, n_items: int) -> float:
    """CV: distinct recommended items / catalogue size. ``items``: (T,) recommended item ids."""
    return float(np.unique(items).size / n_items)


def coverage_turn(items: np.ndarray) -> float:
    """CV_turn: distinct recommended items / number of recommendations."""
    return float(np.unique(items).size / max(np.asarray(items).size, 1))


def long_tail_share(exposure: np.ndarray, popular: np.ndarray) -> float:
    """Share of all exposure that went to the long tail (items not in the (I,) bool ``popular`` group)."""
    total = exposure.sum()
    return float(exposure[~popular].sum() / total) if total > 0 else 0.0


def exposure_gap(exposure: np.ndarray, popular: np.ndarray) -> float:
    """Popular / long-tail exposure gap: the popular group's exposure share minus its catalogue share.

    ``gap = E(popular) / E(all) - |popular| / I``, in ``[-|popular|/I, 1 - |popular|/I]``. It is 0
    when an item of either group is exposed as often as an item of the other on average, positive
    when popular items are over-exposed (equivalently: the long tail's catalogue share minus its
    exposure share).
    """
    return (1.0 - long_tail_share(exposure, popular)) - float(popular.mean()) if exposure.sum() > 0 else 0.0


def novelty(items: np.ndarray, popularity: np.ndarray) -> np.ndarray:
    """(T,) novelty ``-log(pop_i / sum_j pop_j)`` of each recommended item (higher = less popular)."""
    share = np.asarray(popularity, np.float64) / np.sum(popularity)
    return -np.log(share[items])


@functools.lru_cache(maxsize=8)
def majority_categories(world: World, share: float = 0.8, user_chunk: int = 2048) -> np.ndarray:
    """(C,) bool: the categories that dominate the world's logged positives (MCD's reference set).

    In recgym the "logged positives" are all (user, item) pairs whose noise-free base reward
    (:meth:`World.true_affinity`: the matrix, or the latent affinity) is at least
    ``world.positive_threshold``. Categories are ranked by how many positives carry them; the
    leading ones are kept while their cumulative share is <= ``share`` (at least one).
    """
    counts = np.zeros(world.n_categories, np.float64)
    cats = world.item_cats.astype(np.float32)
    for start in range(0, world.n_users, user_chunk):  # chunks bound memory on the large worlds
        positives = world.true_affinity(np.arange(start, min(start + user_chunk, world.n_users)))
        counts += (positives >= world.positive_threshold).astype(np.float32).sum(axis=0) @ cats
    order = np.argsort(-counts, kind="stable")
    cumulative = np.cumsum(counts[order]) / max(counts.sum(), 1.0)
    n_keep = max(1, int(np.searchsorted(cumulative, share, side="right")))
    mask = np.zeros(world.n_categories, bool)
    mask[order[:n_keep]] = True
    return mask


@functools.lru_cache(maxsize=8)
def emerging_creators(world: World, fraction: float = 0.2) -> np.ndarray:
    """(n_creators,) bool: the youngest ``fraction`` of the creators who have items, by debut
    (``world.creator_debut``, days since the creator's first upload; ties in creator order).

    v1 worlds only (v0 worlds have no debuts). Creators without items are never emerging.
    """
    if world.creator_debut is None:
        raise ValueError(f"emerging creators need a v1 world (creator debuts); {world.name!r} is v0")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    active = np.flatnonzero(np.bincount(world.item_creator, minlength=world.n_creators) > 0)
    youngest = active[np.argsort(world.creator_debut[active], kind="stable")]
    mask = np.zeros(world.n_creators, bool)
    mask[youngest[: max(1, int(round(fraction * active.size)))]] = True
    return mask


def emerging_creator_share(exposure: np.ndarray, item_creator: np.ndarray, emerging: np.ndarray) -> float:
    """Share of the (I,) ``exposure`` that went to items of the (n_creators,) bool ``emerging`` creators."""
    total = exposure.sum()
    return float(exposure[emerging[item_creator]].sum() / total) if total > 0 else 0.0


def known_creators(world: World, obs: dict[str, np.ndarray]) -> np.ndarray:
    """(B, k + F) creators each session's user knows: those of the observed history (-1 for empty
    slots) and the F the user follows (``world.user_followed``; v1 worlds)."""
    history = np.where(obs["item_ids"] >= 0, world.item_creator[obs["item_ids"]], -1)
    return np.concatenate([history, world.user_followed[obs["user_id"][:, 0]]], axis=1)


def unfamiliar_creator(world: World, obs: dict[str, np.ndarray], items: np.ndarray) -> np.ndarray:
    """(B,) bool: whether the creator of each session's recommended item (``items`` (B,)) is unknown to its
    user when recommended (:func:`known_creators`: neither followed nor in the observed history)."""
    return ~(known_creators(world, obs) == world.item_creator[items][:, None]).any(axis=1)


def mcd(items: np.ndarray, item_cats: np.ndarray, majority: np.ndarray) -> np.ndarray:
    """(T,) bool: whether each recommended item carries a majority category (MCD = its mean; lower is better)."""
    return (item_cats[items] & majority).any(axis=1)


def session_diversity(episode: np.ndarray, items: np.ndarray, item_emb: np.ndarray, n_episodes: int) -> np.ndarray:
    """(N,) intra-session diversity: mean pairwise cosine distance ``1 - <e_a, e_b>`` within each episode.

    ``episode``: (T,) episode index of each recommendation, ``items``: (T,) item ids, ``item_emb``:
    (I, D) unit rows. Uses ``sum_{a != b} <e_a, e_b> = ||sum e||^2 - L`` for an episode of length
    L, so no pairwise matrix is built. NaN for episodes with fewer than 2 recommendations.
    """
    dims = item_emb.shape[1]
    sums = np.zeros((n_episodes, dims), np.float64)
    np.add.at(sums, episode, item_emb[items])
    length = np.bincount(episode, minlength=n_episodes).astype(np.float64)
    pairs = length * (length - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_similarity = ((sums**2).sum(axis=1) - length) / pairs
    return np.where(pairs > 0, 1.0 - mean_similarity, np.nan)


def denoising_error(estimate: np.ndarray, interest: np.ndarray) -> np.ndarray:
    """(B,) ``1 - cos(estimate_b, interest_b)`` between (B, D) state estimates and true interests.

    0 = the estimate points exactly at the user's latent interest (``Simulator.interest``), 1 =
    orthogonal, 2 = opposite. Only the direction matters, so estimates need not be unit-norm.
    """
    estimate, interest = np.asarray(estimate, np.float64), np.asarray(interest, np.float64)
    if estimate.shape != interest.shape or estimate.ndim != 2:
        raise ValueError(f"estimate and interest must both have shape (B, D), got {estimate.shape} and {interest.shape}")
    norms = np.linalg.norm(estimate, axis=1) * np.linalg.norm(interest, axis=1)
    return 1.0 - np.einsum("bd,bd->b", estimate, interest) / np.maximum(norms, 1e-12)


def pareto_optimal(cost: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """(L,) bool: the points not dominated by another (lower or equal ``cost``, higher or equal
    ``gain``, one of them strictly), of (L,) ``cost`` (e.g. exposure Gini) and ``gain`` (e.g. R_cum)."""
    cost, gain = np.asarray(cost, np.float64), np.asarray(gain, np.float64)
    no_worse = (cost[None, :] <= cost[:, None]) & (gain[None, :] >= gain[:, None])
    better = (cost[None, :] < cost[:, None]) | (gain[None, :] > gain[:, None])
    return ~(no_worse & better).any(axis=1)


def polyline_distance(vertices: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(P,) Euclidean distance from each of (P, 2) ``points`` to the nearest point of the polyline
    through (K, 2) ``vertices`` (K >= 1; one vertex: the distance to it)."""
    vertices, points = np.asarray(vertices, np.float64), np.asarray(points, np.float64)
    start = vertices[:-1] if len(vertices) > 1 else vertices
    step = np.diff(vertices, axis=0) if len(vertices) > 1 else np.zeros((1, 2))
    offset = points[:, None, :] - start[None, :, :]  # (P, K-1, 2)
    length2 = (step ** 2).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.clip(np.where(length2 > 0, (offset * step).sum(axis=2) / length2, 0.0), 0.0, 1.0)
    return np.linalg.norm(offset - t[..., None] * step, axis=2).min(axis=1)


def polyline_point_at(vertices: np.ndarray, alpha: float) -> np.ndarray:
    """(2,) the point at fraction ``alpha`` in [0, 1] of the arc length of the polyline through (K, 2)
    ``vertices``, measured from the first vertex (linear between vertices)."""
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    vertices = np.asarray(vertices, np.float64)
    arc = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(vertices, axis=0), axis=1))]
    target = alpha * arc[-1]
    return np.array([np.interp(target, arc, vertices[:, 0]), np.interp(target, arc, vertices[:, 1])])


def path_value_at(x: np.ndarray, y: np.ndarray, target: float) -> float:
    """``y`` at ``x = target`` along the piecewise-linear path through the (P,) points ``(x, y)`` in their
    given order (a sweep's knob order, so ``x`` need not be monotone): linear interpolation on the first
    segment that reaches ``target``. A ``target`` outside ``[min x, max x]`` is a one-line ``ValueError``."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if not x.min() <= target <= x.max():
        raise ValueError(f"target must be in the path's range [{x.min():.6g}, {x.max():.6g}], got {target!r}")
    if x[0] == target:
        return float(y[0])
    start, end = x[:-1], x[1:]  # a continuous path from min to max x passes target: some segment holds it
    i = np.flatnonzero((np.minimum(start, end) <= target) & (target <= np.maximum(start, end)))[0]
    return float(y[i] + (y[i + 1] - y[i]) * (target - x[i]) / (x[i + 1] - x[i]))


def mean_ci95(values: np.ndarray) -> tuple[float, float]:
    """(mean, half-width of the normal-approximation 95% confidence interval) over finite values."""
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    half = 1.96 * values.std(ddof=1) / np.sqrt(values.size) if values.size > 1 else float("nan")
    return float(values.mean()), float(half)


def t_ci95(values: np.ndarray) -> tuple[Any, Any]:
    """(mean, half-width of the Student-t 95% interval) over the first axis of ``values``: S seeds
    or samples, (S,) -> floats, (S, T) -> (T,) arrays; NaN half-width for one sample. Use it wherever
    S is small (3 seeds: t(2) = 4.30, not the normal 1.96)."""
    from scipy import stats

    values = np.asarray(values, np.float64)
    n, mean = values.shape[0], values.mean(axis=0)
    if n < 2:
        return mean, np.full_like(mean, np.nan)
    return mean, stats.t.ppf(0.975, n - 1) * values.std(axis=0, ddof=1) / np.sqrt(n)


def ratio_ci95(numerators: np.ndarray, denominators: np.ndarray) -> tuple[float, float]:
    """(sum num / sum den, 95% half-width) for a pooled ratio over episodes (delta method).

    E.g. R_each = total reward / total steps, with per-episode returns and lengths: the variance
    comes from the per-episode residuals ``num_e - ratio * den_e``.
    """
    num, den = np.asarray(numerators, np.float64), np.asarray(denominators, np.float64)
    total = den.sum()
    if total <= 0:
        return float("nan"), float("nan")
    ratio = num.sum() / total
    if num.size < 2:
        return float(ratio), float("nan")
    residual = num - ratio * den
    return float(ratio), float(1.96 * residual.std(ddof=1) / (np.sqrt(num.size) * den.mean()))
