"""How the compiled kernels split a batch of sessions over numba's threads.

A kernel whose per-session work touches only its session's rows (:mod:`recgym.dynamics`' step and
observation writers, :mod:`recgym.logging_model`'s, :mod:`recgym.users`' restarts) runs its row loop
in :func:`thread_parts` parts, one per thread (numba ``prange``); each part is a serial, compiled call
of the same row function, so the arithmetic and its order per session are those of one thread, and
the results are bit-identical for any thread count. Parts are contiguous row ranges (:func:`part_range`),
or, where rows share an owner's rows, owner ranges (:func:`assign_parts`). Below
:data:`MIN_SESSIONS_PER_THREAD` sessions per thread (a single env, small batches) a kernel runs in the
calling thread: a parallel launch costs microseconds, and much more on a busy machine, where the other
threads wait for a core.

The thread count is numba's (``numba.set_num_threads``), set in one place: :mod:`recgym.threads`.

numba's threading layer is its own ``workqueue`` (always installed) unless ``NUMBA_THREADING_LAYER`` names
another: with GNU OpenMP, the layer numba picks where torch's libgomp is installed, the 2-thread step ran
6x slower than one thread on a loaded 2-core machine (its workers wait for a core at every launch; the
workqueue's cost 1.0-1.4x less than one thread there), and a process forked after a GNU OpenMP launch
cannot launch one again. The workqueue's own limit: two Python threads must not step large batches at
the same moment (numba stops the process); such a program sets ``NUMBA_THREADING_LAYER=omp``.
"""

from __future__ import annotations

import os

import numba
import numpy as np
from numba import njit

if "NUMBA_THREADING_LAYER" not in os.environ:  # chosen before any parallel kernel runs; see the docstring
    numba.config.THREADING_LAYER = "workqueue"

#: The kernels' ``parallel=`` option: only explicit ``prange`` loops run in parallel; numba's other
#: parallel rewrites (array expressions, reductions, fusion) stay off, so the compiled arithmetic is
#: that of the serial kernel.
PRANGE_ONLY = {
    "prange": True, "comprehension": False, "reduction": False, "inplace_binop": False, "setitem": False,
    "numpy": False, "stencil": False, "fusion": False,
}

#: The fewest sessions a thread takes: with fewer per thread a kernel runs in the calling thread. A session
#: costs ~0.1-1 us in a kernel; a parallel launch 3-30 us on a quiet machine (measured: numba 0.68, 2 cores).
MIN_SESSIONS_PER_THREAD = 512


def thread_parts(n_rows: int) -> int:
    """How many parts (threads) a kernel splits ``n_rows`` rows into: numba's thread count, at most one part
    per :data:`MIN_SESSIONS_PER_THREAD` rows, at least 1. Called by the kernels' callers (a kernel that
    reads numba's thread count itself cannot be cached: numba treats the count's address as a dynamic global)."""
    if n_rows < 2 * MIN_SESSIONS_PER_THREAD:  # the common small case without a call into numba
        return 1
    return max(min(numba.get_num_threads(), n_rows // MIN_SESSIONS_PER_THREAD), 1)


@njit(cache=True, inline="always")
def part_range(n_rows: int, n_parts: int, part: int) -> tuple:
    """(start, stop) of part ``part`` of ``n_rows`` rows split into ``n_parts`` contiguous, nearly equal parts."""
    return n_rows * part // n_parts, n_rows * (part + 1) // n_parts


@njit(cache=True, inline="always")
def assign_parts(owners: np.ndarray, n_owners: int, n_parts: int, part_of: np.ndarray) -> None:
    """``part_of[row]``: the part (thread) of each row, the p-th of ``n_parts`` contiguous owner ranges
    (:func:`part_range`) holding its owner (``owners`` (N,), in [0, n_owners)). Rows with the same owner fall
    in one part; each thread walks every row in increasing order and takes its own (see the row kernels'
    ``part``), so a kernel whose rows write their owner's rows (a user's long-term state, a session slot
    started twice) runs each owner's rows in one thread, in the order one thread would, indexing the rows
    directly (a row index read from memory instead cost the step 3-4% on one thread)."""
    for row in range(owners.shape[0]):
        part_of[row] = owners[row] * n_parts // n_owners
