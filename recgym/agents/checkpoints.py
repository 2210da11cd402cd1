"""Where trained agents are written, and the metadata every checkpoint carries.

Every training run gets a directory of its own, ``LOGDIR/<agent>_<env>_s<seed>_<n>/`` (:func:`new_run_dir`,
``n`` = 1, 2, ... the first number not taken), holding its TensorBoard event files beside its checkpoint,
so no run overwrites another.

Every checkpoint stores :func:`checkpoint_meta`: the agent's registered name, the env id and options it
was trained with, and the world's fingerprint and catalogue size. :func:`check_meta` refuses, with a
one-line ``ValueError`` naming the file, a file that is not a recgym checkpoint, another agent's
checkpoint, or (given the world it is about to act in) one trained on another world; :func:`check_world`
is the world check alone, run again when a loaded policy is bound to an env. Where the metadata lives
depends on the format: an SB3 ``.zip`` keeps it as the model attribute :data:`META_KEY` (SB3 saves model
attributes in the archive's ``data`` member, :func:`read_sb3_meta` reads it without loading the model),
a DSRM ``.pt`` as the key :data:`META_KEY`, a hierarchical checkpoint directory in its ``meta.json``.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from recgym.world import World

#: Tag of the metadata format (bumped if its keys change).
FORMAT = "recgym-checkpoint/1"
#: Name of the metadata in a checkpoint (SB3 model attribute, key of a torch checkpoint dict).
META_KEY = "recgym_meta"


def new_run_dir(logdir: str | Path, agent: str, env_id: str, seed: int) -> Path:
    """Create and return ``logdir/<agent>_<env>_s<seed>_<n>`` with the first free ``n`` >= 1.

    Raises ``ValueError`` (one line) if ``logdir`` cannot be created or written.
    """
    logdir = Path(logdir)
    stem = f"{agent}_{env_id.split('/')[-1]}_s{seed}"
    pattern = re.compile(re.escape(stem) + r"_(\d+)")
    try:
        logdir.mkdir(parents=True, exist_ok=True)
        taken = [int(m.group(1)) for p in logdir.iterdir() if (m := pattern.fullmatch(p.name))]
        number = max(taken, default=0) + 1
        while True:
            run_dir = logdir / f"{stem}_{number}"
            try:
                run_dir.mkdir()
                return run_dir
            except FileExistsError:  # another process took it meanwhile
                number += 1
    except OSError as error:
        raise ValueError(f"cannot create a run directory under {str(logdir)!r}: {error.strerror or error}") from None


def writable_dir(path: str | Path, what: str) -> Path:
    """Create ``path`` (with parents) and check that a file can be written in it; a one-line
    ``ValueError`` naming ``what`` (e.g. ``"--logdir"``) otherwise."""
    path = Path(path)
    probe = path / ".recgym-write-test"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe.touch()
        probe.unlink()
    except OSError as error:
        raise ValueError(f"{what} {str(path)!r} is not a writable directory: {error.strerror or error}") from None
    return path



def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Write ``path`` whole or not at all: ``write(partial)`` fills a temporary file of this process beside
    it (``<name>.<pid>.partial``: two processes never share one), then one rename puts it in place, so a
    reader never sees a half-written file."""
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    write(partial)
    os.replace(partial, path)


def write_json_atomically(path: Path, data: Any, **dumps: Any) -> None:
    """``json.dumps(data, **dumps)`` into ``path`` through :func:`write_atomically`."""
    text = json.dumps(data, **dumps)
    write_atomically(path, lambda partial: partial.write_text(text))


def checkpoint_meta(agent: str, env_id: str, env_options: dict[str, Any] | None, world: World) -> dict[str, Any]:
    """The metadata stored in a checkpoint of ``agent`` trained on ``env_id`` with ``env_options``
    in ``world`` (JSON-ready: options that are not JSON numbers, strings or booleans are stored as text)."""
    options = {key: value if isinstance(value, (bool, int, float, str)) or value is None else str(value)
               for key, value in (env_options or {}).items()}
    return {"format": FORMAT, "agent": agent, "env_id": env_id, "env_options": options,
            "world": world.fingerprint, "n_items": world.n_items}


def check_meta(meta: Any, path: str | Path, agent: str, world: World | None = None) -> dict[str, Any]:
    """Return ``meta`` if it is recgym checkpoint metadata of ``agent`` (and, given ``world``, trained
    on it); else a one-line ``ValueError`` naming ``path``."""
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not a recgym checkpoint (no {FORMAT} metadata); train one with "
                         f"`recgym train --agent {agent}`")
    if meta.get("agent") != agent:
        raise ValueError(f"{path}: checkpoint is for agent {meta.get('agent')!r}, not {agent!r}")
    if world is not None:
        check_world(meta, world, str(path))
    return meta


def check_world(meta: dict[str, Any], world: World, source: str) -> None:
    """One-line ``ValueError`` unless ``world`` is the world ``meta`` (``world`` fingerprint and
    ``n_items``) was trained on; ``source`` names the checkpoint or policy in the message."""
    if meta["world"] != world.fingerprint or meta["n_items"] != world.n_items:
        raise ValueError(f"{source} was trained on world {meta['world']!r} (catalogue of {meta['n_items']} items), "
                         f"not on this env's world {world.fingerprint!r} ({world.n_items} items)")


def first_line(error: BaseException) -> str:
    """``Type: first line of the message`` of an exception, for one-line errors."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def read_sb3_meta(path: str | Path) -> Any:
    """The :data:`META_KEY` attribute stored in an SB3 ``.zip`` checkpoint (``None`` if absent), read
    from the archive's ``data`` member without building the model; one-line ``ValueError`` naming
    ``path`` if the file is missing or not a readable SB3 archive (truncated, another format)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {str(path)!r} not found")
    try:
        with zipfile.ZipFile(path) as archive:
            data = json.loads(archive.read("data"))
    except (zipfile.BadZipFile, KeyError, EOFError, ValueError, OSError) as error:
        raise ValueError(f"{path}: not a readable SB3 checkpoint (truncated or another format: "
                         f"{first_line(error)})") from None
    return data.get(META_KEY) if isinstance(data, dict) else None
