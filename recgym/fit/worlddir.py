"""The ``WORLD_DIR`` format: a fitted world as a versioned manifest plus ``.npy`` arrays.

Layout (``docs/fit.md``)::

    WORLD_DIR/
      manifest.json      format, format_version, name, source, fit_settings, world scalars,
                         params (the fitted SimParams defaults), statistics, hooks, and per array
                         its file, shape, dtype and sha256
      item_emb.npy ...   the World's arrays (and the empirical activity / return-gap tables)

:func:`save_world_dir` writes everything into a temporary folder beside ``WORLD_DIR`` and renames
it into place at the end, so a failed fit never leaves a half-written world. :func:`load_world`
checks the format version, every checksum and every shape, and returns the :class:`World` and its
fitted :class:`~recgym.params.SimParams` defaults. numpy and the standard library only: the env
layer imports this module (``recgym/Fitted-v1``) and must not pull in torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from recgym.fit.model import UNFITTED_OFF
from recgym.world import World

FORMAT = "recgym-world"
#: Bump when the layout or the meaning of an array changes; older readers refuse newer worlds.
#: 2: ``user_features[:, 0]`` is the users' fitted activity (the return model's; params carry
#: ``session_rate`` and ``retention_weight``). 3: params carry ``post_click_intercepts`` (the simulator
#: runs them) and, fitted on random exposure, ``familiarity_click`` / ``familiarity_watch`` with
#: ``user_followed`` of shape (U, 0). A version-2 world is read as it was written (its params run the
#: default intercepts and no familiarity).
FORMAT_VERSION = 3
#: The oldest version read: in version 1 ``user_features[:, 0]`` was a log-rows share in [-1, 1], which
#: the returning users (:func:`recgym.users.activity_levels`) would read as a negative activity.
OLDEST_FORMAT_VERSION = 2
MANIFEST = "manifest.json"

#: The World's array fields stored in a world dir (all of them are required on load).
WORLD_ARRAYS = ("item_emb", "item_cats", "item_creator", "item_age", "item_hour", "pop_prior", "user_interest",
                "user_novelty", "user_ids", "item_ids", "item_quality", "item_duration", "creator_debut",
                "user_followed", "user_features", "user_cycles")
#: The World's scalar fields stored in the manifest.
WORLD_SCALARS = ("reward_max", "positive_threshold", "affinity_scale", "affinity_bias", "quality_weight")


class WorldDirError(ValueError):
    """A world dir is missing, of another format or version, or damaged; the message names the file."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def save_world_dir(
    world_dir: str | Path, world: World, params: dict[str, Any], manifest: dict[str, Any],
    extra_arrays: dict[str, np.ndarray] | None = None, write_extra: Callable[[Path], Any] | None = None,
) -> Path:
    """Write ``world`` (a v1 World), its fitted ``params`` (SimParams keyword defaults) and
    ``manifest`` entries (source, fit_settings, statistics, hooks) to ``world_dir``, atomically;
    ``write_extra(folder)`` adds files of its own (the fidelity report) before the rename.

    An existing ``world_dir`` is replaced only if it is itself a world dir (holds a manifest) or empty;
    any other folder is refused (a one-line error), so a typo never deletes a user's data."""
    target = Path(world_dir)
    if target.exists() and (not target.is_dir() or (any(target.iterdir()) and not (target / MANIFEST).is_file())):
        raise WorldDirError(f"{target}: exists and is not a recgym world dir; choose a new or empty folder")
    if not world.is_v1:
        raise WorldDirError(f"world {world.name!r} is not a v1 world; only v1 worlds are written to a world dir")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        arrays = {name: getattr(world, name) for name in WORLD_ARRAYS}
        arrays.update(extra_arrays or {})
        entries = {}
        for name, array in arrays.items():
            path = staging / f"{name}.npy"
            np.save(path, np.ascontiguousarray(array), allow_pickle=False)
            entries[name] = {"file": path.name, "shape": list(array.shape), "dtype": str(array.dtype),
                             "sha256": _sha256(path)}
        content = {"format": FORMAT, "format_version": FORMAT_VERSION, "name": world.name, **manifest,
                   "world": {name: float(getattr(world, name)) for name in WORLD_SCALARS},
                   "params": params, "arrays": entries}
        (staging / MANIFEST).write_text(json.dumps(content, indent=2, sort_keys=False) + "\n")
        if write_extra is not None:
            write_extra(staging)
        if target.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            os.replace(target, retired / "world")
            os.replace(staging, target)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def read_manifest(world_dir: str | Path) -> dict[str, Any]:
    """The manifest of ``world_dir``, its format and version checked."""
    path = Path(world_dir) / MANIFEST
    if not path.is_file():
        raise WorldDirError(f"{path}: not found; world_dir must be a folder written by `recgym fit`")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise WorldDirError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise WorldDirError(f"{path}: not a {FORMAT!r} manifest")
    version = manifest.get("format_version")
    if not isinstance(version, int) or not OLDEST_FORMAT_VERSION <= version <= FORMAT_VERSION:
        raise WorldDirError(f"{path}: format_version {version!r}; this recgym reads versions "
                            f"{OLDEST_FORMAT_VERSION}..{FORMAT_VERSION} (refit the log with `recgym fit`)")
    return manifest


def read_arrays(world_dir: str | Path, manifest: dict[str, Any]) -> dict[str, np.ndarray]:
    """Every array the manifest lists, each checked against its sha256, shape and dtype."""
    folder = Path(world_dir)
    arrays = {}
    for name, entry in manifest["arrays"].items():
        path = folder / entry["file"]
        if not path.is_file():
            raise WorldDirError(f"{path}: listed in {MANIFEST} but missing")
        if _sha256(path) != entry["sha256"]:
            raise WorldDirError(f"{path}: checksum differs from {MANIFEST} (the file was changed or damaged)")
        array = np.load(path, allow_pickle=False)
        if list(array.shape) != entry["shape"] or str(array.dtype) != entry["dtype"]:
            raise WorldDirError(f"{path}: {array.dtype} {array.shape}, {MANIFEST} says {entry['dtype']} {entry['shape']}")
        arrays[name] = array
    missing = sorted(set(WORLD_ARRAYS) - set(arrays))
    if missing:
        raise WorldDirError(f"{folder / MANIFEST}: arrays {missing} missing")
    return arrays


def load_world(world_dir: str | Path) -> tuple[World, dict[str, Any]]:
    """(World, fitted SimParams keyword defaults) of a world dir written by :func:`save_world_dir`.

    A mechanism the fit switches off (:data:`recgym.fit.model.UNFITTED_OFF`) that the manifest's params do
    not name is read as off: the world was fitted before the knob existed (e.g. ``taste_valley``), so it
    must not take the knob's default, which would change the world it describes."""
    manifest = read_manifest(world_dir)
    arrays = read_arrays(world_dir, manifest)
    try:
        world = World(name=manifest["name"], **{name: arrays[name] for name in WORLD_ARRAYS},
                      **{name: float(manifest["world"][name]) for name in WORLD_SCALARS})
    except (KeyError, TypeError, ValueError) as error:
        raise WorldDirError(f"{Path(world_dir) / MANIFEST}: not a valid world ({error})") from None
    return world, {**UNFITTED_OFF, **manifest.get("params", {})}
