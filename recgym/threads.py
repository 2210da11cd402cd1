"""How many CPU threads torch uses in recgym's processes, decided in one place.

torch's own default (every physical core) oversubscribes a machine when several recgym processes
share it, or when an experiment runs several workers at once: each worker's torch would use every
core. :func:`set_torch_threads` is what the command line (``--torch-threads``) and the experiment
runner's workers call. Its default leaves half the cores this process may use to the simulator, the
Python loop and the rest of the machine, splits the other half evenly between ``workers`` processes
running at once, and stops at :data:`MAX_DEFAULT_THREADS` (the networks trained here are small: more
threads add more synchronisation than speed). On a 2-core machine that is one thread: measured
under load there, flat PPO trained at 2,000-2,200 frames/s with one torch thread and 125-290 with
two (docs/performance.md).
"""

from __future__ import annotations

import os

from recgym.sizes import check_count

#: The most torch threads one process gets by default.
MAX_DEFAULT_THREADS = 4


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_torch_threads(workers: int = 1) -> int:
    """``max(1, min(available cores // (2 * workers), MAX_DEFAULT_THREADS))``: the default of one of
    ``workers`` processes that run at once."""
    workers = check_count("workers", workers)
    return max(1, min(available_cores() // (2 * workers), MAX_DEFAULT_THREADS))


def set_torch_threads(threads: int | None = None, workers: int = 1) -> int:
    """Set torch's intra-op thread count to ``threads`` (``None``: :func:`default_torch_threads` of
    ``workers``) and return it."""
    if threads is None:
        threads = default_torch_threads(workers)
    else:
        threads = check_count("torch threads", threads)
    import torch

    torch.set_num_threads(threads)
    return threads
