"""Size checks made before anything is allocated: counts must be integers in range, and a request
must fit in this machine's memory.

A request too large for the machine is refused with one line that says how much memory it would
need, instead of a ``MemoryError`` deep inside NumPy after minutes of swapping (or the OOM killer).
The limit is :func:`memory_limit`: the machine's physical memory, or its cgroup's memory limit when
lower (a container). A request above it can never run; one below it can still fail when other
processes hold the memory: the check catches absurd sizes, it reserves nothing.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

#: Limit on platforms without ``os.sysconf`` (Windows), where physical memory cannot be read.
FALLBACK_MEMORY_LIMIT = 64 * 2**30

#: cgroup v2 and v1 files holding a container's memory limit (absent, or "max", when unlimited).
CGROUP_LIMIT_FILES = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def check_count(name: str, value: Any, low: int = 1) -> int:
    """``value`` as an ``int`` if it is an integer (Python or NumPy, not bool) >= ``low``; else a
    one-line ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def check_number(name: str, value: Any, low: float = 0.0, *, strict: bool = False) -> float:
    """``value`` as a ``float`` if it is a finite real number (``int`` or ``float``, not bool) >= ``low`` (> ``low``
    with ``strict``); else a one-line ``ValueError`` naming ``name`` and the valid range."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < low \
            or (strict and value == low):
        raise ValueError(f"{name} must be a finite number {'>' if strict else '>='} {low:g}, got {value!r}")
    return float(value)


def check_optional_count(name: str, value: Any, low: int = 1) -> int | None:
    """``None`` for ``None`` (the option is off), else :func:`check_count`'s ``int``."""
    return None if value is None else check_count(name, value, low)


def array_bytes(shape: tuple[int, ...], dtype: Any) -> int:
    """Bytes of an array of ``shape`` and ``dtype``, in Python ints (no overflow for absurd shapes)."""
    return math.prod(int(size) for size in shape) * np.dtype(dtype).itemsize


def memory_limit() -> int:
    """Bytes this process may ask for: physical memory, or the cgroup's memory limit when lower."""
    try:
        limit = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return FALLBACK_MEMORY_LIMIT
    for path in CGROUP_LIMIT_FILES:
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            limit = min(limit, int(text))
    return limit


def check_memory(request: str, nbytes: int, what: str) -> None:
    """A one-line ``ValueError`` if ``nbytes`` (what ``request`` would allocate, as ``what``) exceeds
    :func:`memory_limit`."""
    limit = memory_limit()
    if nbytes > limit:
        raise ValueError(f"{request} needs ~{format_bytes(nbytes)} of {what}, more than this machine's "
                         f"{format_bytes(limit)} of memory; ask for less")


def format_bytes(nbytes: int) -> str:
    """``nbytes`` in the largest binary unit that keeps the figure >= 1 (e.g. ``'7.5 GiB'``)."""
    value, unit = float(nbytes), "bytes"
    for larger in ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if value < 1024:
            break
        value, unit = value / 1024, larger
    return f"{value:,.1f} {unit}" if unit != "bytes" else f"{nbytes} bytes"
