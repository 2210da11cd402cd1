"""The fit's shared pieces (``docs/fit.md``): its settings, the ALS factorisation and the batched replay of
logged exposures in a world; :mod:`recgym.fit.model` and :mod:`recgym.fit.drift` build on them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse
from tqdm.auto import tqdm

from recgym.params import V1_DEFAULTS, SimParams
from recgym.simulator import Simulator
from recgym.world import World

#: Watch ratios below this are floored before the log (a zero watch on a click is a near-instant swipe).
WATCH_FLOOR = 0.01


@dataclass(frozen=True)
class FitSettings:
    """Knobs of :func:`~recgym.fit.model.fit_world` (each validated; a bad value is a one-line ``ValueError``).

    dims: embedding dimensions D; iterations: ALS sweeps; regularization: ALS ridge per observation;
    holdout: share of sessions kept out of the fit for the fidelity report; followed_creators: K per user;
    min_rows: the fewest training rows (and clicked rows) a fit accepts; leave_sessions: training
    sessions replayed per leave-rule candidate; seed: the split, ALS start and samples.
    """

    dims: int = 32
    iterations: int = 8
    regularization: float = 0.05
    holdout: float = 0.2
    followed_creators: int = 8
    min_rows: int = 200
    leave_sessions: int = 4000
    seed: int = 0

    def __post_init__(self) -> None:
        ranges = {"dims": (2, 512), "iterations": (1, 100), "regularization": (1e-6, 1e3), "holdout": (0.0, 0.9),
                  "followed_creators": (0, 1000), "min_rows": (10, 10**9), "leave_sessions": (10, 10**7),
                  "seed": (0, 2**32 - 1)}
        for f in dataclasses.fields(self):
            value, (low, high) = getattr(self, f.name), ranges[f.name]
            kind_ok = isinstance(value, int) if f.type == "int" else isinstance(value, (int, float))
            if isinstance(value, bool) or not kind_ok or not low <= value <= high:
                raise ValueError(f"fit setting {f.name} must be {'an integer' if f.type == 'int' else 'a number'} "
                                 f"in [{low}, {high}], got {value!r}")


def _solve_side(matrix: scipy.sparse.csr_matrix, residual: np.ndarray, other: np.ndarray, regularization: float
                ) -> np.ndarray:
    """Ridge solutions of every row of ``matrix`` (rows x cols, ones where observed) against the
    features ``other`` (cols, k): ``(sum f f^T + lam n I) w = sum r f`` batched; ``residual`` holds
    the targets in ``matrix.data`` order. Returns (rows, k)."""
    k = other.shape[1]
    outer = (other[:, :, None] * other[:, None, :]).reshape(other.shape[0], k * k)
    grams = (matrix @ outer).reshape(-1, k, k)
    counts = np.diff(matrix.indptr).astype(np.float64)
    grams += (regularization * np.maximum(counts, 1.0))[:, None, None] * np.eye(k)
    weighted = scipy.sparse.csr_matrix((residual, matrix.indices, matrix.indptr), shape=matrix.shape)
    return np.linalg.solve(grams, (weighted @ other)[:, :, None])[:, :, 0]


def als(users: np.ndarray, items: np.ndarray, target: np.ndarray, n_users: int, n_items: int, settings: FitSettings,
        progress: bool = False) -> tuple[float, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Explicit ALS with biases: ``target ~ mu + b_u + b_i + <x_u, y_i>`` on the observed (user, item)
    cells (repeated cells averaged). Returns (mu, x (U, D), b_u (U,), y (I, D), b_i (I,))."""
    cells = scipy.sparse.coo_matrix((target, (users, items)), shape=(n_users, n_items)).tocsr()
    counts = scipy.sparse.coo_matrix((np.ones_like(target), (users, items)), shape=(n_users, n_items)).tocsr()
    cells.sum_duplicates()
    counts.sum_duplicates()
    mean = cells.data / counts.data
    by_user = scipy.sparse.csr_matrix((np.ones_like(mean), cells.indices, cells.indptr), shape=cells.shape)
    by_item = by_user.T.tocsr()
    # where each item-side entry sits in the user-side data (to move targets between the two orders)
    order = scipy.sparse.csr_matrix((np.arange(mean.size, dtype=np.float64), cells.indices, cells.indptr),
                                    shape=cells.shape).T.tocsr().data.astype(np.int64)
    row_of = np.repeat(np.arange(n_users), np.diff(cells.indptr))
    mu = float(mean.mean())
    rng = np.random.default_rng([settings.seed, 2])
    d = settings.dims
    y, b_i = 0.1 * rng.standard_normal((n_items, d)), np.zeros(n_items)
    x, b_u = np.zeros((n_users, d)), np.zeros(n_users)
    ones_u, ones_i = np.ones((n_items, 1)), np.ones((n_users, 1))
    for _ in tqdm(range(settings.iterations), desc="ALS", unit="sweep", disable=not progress, leave=False):
        solved = _solve_side(by_user, mean - mu - b_i[cells.indices], np.hstack([y, ones_u]), settings.regularization)
        x, b_u = solved[:, :d], solved[:, d]
        solved = _solve_side(by_item, (mean - mu - b_u[row_of])[order], np.hstack([x, ones_i]), settings.regularization)
        y, b_i = solved[:, :d], solved[:, d]
    return mu, x, b_u, y, b_i


def unit_rows(x: np.ndarray) -> np.ndarray:
    """(N, D) float32: each row of ``x`` scaled to unit length (zero rows stay zero)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def sample_rows(rows: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    """``rows`` if there are at most ``limit``, else ``limit`` of them drawn without replacement, sorted."""
    return rows if rows.size <= limit else np.sort(rng.choice(rows, size=limit, replace=False))


def replay(world: World, params: dict[str, Any], table: np.ndarray, users: np.ndarray, seed: int
           ) -> tuple[np.ndarray, np.ndarray]:
    """Replay logged sessions' exposures (``table`` (S, L) items, -1 after the end) for ``users`` (S,)
    through ``world`` in one batch (Free mode: a log may repeat items). Returns ((S, L, 8) float32 the
    simulated logged signals, 0 after the end; (S,) the simulated session length: the step at which the
    user left + 1, or L + 1 if they never left within the logged exposures)."""
    n, length = table.shape
    sim = Simulator(world, SimParams.from_kwargs(**{**V1_DEFAULTS, **params, "mode": "Free", "max_turn": length + 1}),
                    n, seed=seed)
    sim.reset(seed, users)
    signals = np.zeros((n, length, 8), np.float32)
    left = np.full(n, length + 1, np.int64)
    for t in range(length):
        active = table[:, t] >= 0
        result = sim.step(np.where(active, table[:, t], 0), active=active)
        signals[:, t] = result.signals.T
        left = np.where(active & result.terminated & (left > length), t + 1, left)
    return signals, left
