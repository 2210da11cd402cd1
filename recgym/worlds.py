"""Worlds by name: the one place that resolves a world name (v0 or v1), a world dir written by
``recgym fit`` or a :class:`World` to a World.

It sits above :mod:`recgym.world` (the v0 builders and the World type) and :mod:`recgym.world_v1`
(the v1 builders, which extend v0 worlds), so neither of those imports the other's caller.
"""

from __future__ import annotations

from pathlib import Path

from recgym.fit.worlddir import load_world
from recgym.world import WORLDS, World, kuairec_matrix_world
from recgym.world_v1 import V1_WORLDS, resolve_world_v1


def resolve_world(world: str | Path | World, data_dir: str | Path | None = None, **world_kwargs) -> World:
    """A World from a name in :data:`WORLDS` or :data:`V1_WORLDS`, a world dir written by ``recgym fit``
    (a :class:`~pathlib.Path`, or a text with a ``/`` in it such as ``./world``, so that a folder never
    shadows a world name; its fitted option defaults come from :func:`recgym.fit.worlddir.load_world`),
    or a World itself; ``data_dir`` selects real data. A missing or damaged world dir is a one-line
    ``ValueError`` naming the file."""
    if isinstance(world, World):
        if data_dir is not None or world_kwargs:
            raise ValueError("data_dir and world options only apply when the world is given by name")
        return world
    if isinstance(world, Path) or "/" in world:
        if data_dir is not None or world_kwargs:
            raise ValueError(f"world dir {str(world)!r}: data_dir and world options do not apply to a fitted world")
        return load_world(world)[0]
    if world in V1_WORLDS:
        if data_dir is not None:
            raise ValueError("data_dir is supported for world='kuairec' (KuaiRec small_matrix.csv) only")
        return resolve_world_v1(world, **world_kwargs)
    if world not in WORLDS:
        raise ValueError(f"unknown world {world!r}; valid worlds: {', '.join((*WORLDS, *V1_WORLDS))}, "
                         "or a world dir written by `recgym fit`")
    if data_dir is not None:
        if world != "kuairec" or world_kwargs:
            raise ValueError("data_dir is supported for world='kuairec' (KuaiRec small_matrix.csv) only")
        return kuairec_matrix_world(data_dir)
    if world != "synthetic" and set(world_kwargs) - {"seed"}:
        raise ValueError(f"world {world!r} takes only 'seed' as world option, got {sorted(world_kwargs)}")
    try:
        return WORLDS[world](**world_kwargs)
    except TypeError as error:
        raise ValueError(f"world {world!r}: {error}") from None
