"""The parallel step (docs/performance.md, "Parallel step"): bit-identity and speed against another commit.

    python benchmarks/bench_parallel_step.py digest [--commit REV] [--split-small]
    python benchmarks/bench_parallel_step.py old-new --commit REV   # 1 thread: new / old, process CPU time
    python benchmarks/bench_parallel_step.py threads                # this tree: 2 threads / 1, wall clock

``digest``: SHA-256 digests of seeded trajectories (below) of this tree with 1 and 2 simulator threads and,
with ``--commit``, of that commit (checked out with ``git worktree add`` into a temporary folder, removed at
the end), each in a fresh process; every line must be equal. For each setup: 200 steps of seeded uniformly
random actions through ``RecSysVectorEnv``, hashing the reset observation and every step's observations,
rewards, terminations, truncations and infos (with ``final_obs`` in same-step autoreset). ``kuairec-v1
4096`` has more sessions than KuaiRec's 1,411 users, so users hold several sessions at once;
``--split-small`` splits the 256-session setups over the threads too
(``recgym.parallel.MIN_SESSIONS_PER_THREAD = 1``).

``old-new``: that commit and this tree imported side by side in ONE process (the ``recgym`` modules swapped
in ``sys.modules`` between the two imports), the native vector env of each on KuaiRec-v1 and -v0 (4,096
sessions, same-step autoreset, ``popular_streak=5``, the same pre-drawn random actions) on one simulator
thread, in rounds of ``--steps`` steps per env in alternating order; prints the median over rounds of each
env's ms per step and of the per-round ratios. ``threads``: this tree's envs with 1 and 2 simulator threads
alternating (``numba.set_num_threads`` between blocks), wall clock.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numba
import numpy as np

N_ENVS = 4096
WORLDS = {"v1": "kuairec-v1", "v0": "kuairec"}
SETUPS = {
    "kuairec-v1 same-step": dict(world="kuairec-v1", autoreset_mode="SameStep"),
    "kuairec-v1 next-step": dict(world="kuairec-v1", autoreset_mode="NextStep"),
    "kuairec-v1 lifetime": dict(world="kuairec-v1", autoreset_mode="SameStep", episode="lifetime"),
    "kuairec-v1 slates4": dict(world="kuairec-v1", autoreset_mode="SameStep", slate_size=4),
    "kuairand-v1": dict(world="kuairand-v1", autoreset_mode="SameStep"),
    "synthetic-v1": dict(world="synthetic-v1", autoreset_mode="SameStep"),
    "kuairec-v0": dict(world="kuairec", autoreset_mode="SameStep"),
    "kuairec-v1 4096": dict(world="kuairec-v1", autoreset_mode="SameStep", num_envs=4096),
}


def feed(digest: "hashlib._Hash", value: object) -> None:
    """Add ``value`` (arrays, dicts in key order, tuples, scalars) to ``digest``."""
    if isinstance(value, dict):
        for key in sorted(value):
            digest.update(key.encode())
            feed(digest, value[key])
    elif isinstance(value, np.ndarray):
        digest.update(str(value.dtype).encode() + str(value.shape).encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, (tuple, list)):
        for item in value:
            feed(digest, item)
    else:
        digest.update(repr(value).encode())


def digest_setup(env_class: type, steps: int, num_envs: int = 256, **options: object) -> str:
    """The first 16 hex digits of the SHA-256 of ``steps`` seeded random steps of one setup."""
    env = env_class(num_envs=num_envs, popular_streak=5, **options)
    digest = hashlib.sha256()
    feed(digest, env.reset(seed=3)[0])
    rng = np.random.default_rng(7)
    for _ in range(steps):
        feed(digest, env.step(rng.integers(0, env.world.n_items, env.action_space.shape)))
    return digest.hexdigest()[:16]


NEW_ROOT = Path(__file__).resolve().parent.parent


def checkout(commit: str) -> Path:
    """A ``git worktree`` of ``commit`` in a temporary folder (:func:`remove` it)."""
    root = Path(tempfile.mkdtemp(prefix="recgym_parallel_")) / "old"
    subprocess.run(["git", "-C", str(NEW_ROOT), "worktree", "add", "--detach", "--quiet", str(root), commit],
                   check=True)
    return root


def remove(root: Path) -> None:
    subprocess.run(["git", "-C", str(NEW_ROOT), "worktree", "remove", "--force", str(root)], check=False)
    shutil.rmtree(root.parent, ignore_errors=True)


def digests(root: Path, threads: int, split_small: bool, steps: int) -> dict[str, str]:
    """{setup: digest} of the recgym at ``root`` with ``threads`` simulator threads, in a fresh process."""
    command = [sys.executable, __file__, "digest-child", str(root), str(threads), str(steps)]
    done = subprocess.run(command + (["--split-small"] if split_small else []), capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout.splitlines()[-1])


def digest_child(root: str, threads: int, steps: int, split_small: bool) -> None:
    sys.path.insert(0, root)
    from recgym.envs.vector import RecSysVectorEnv

    assert sys.modules["recgym"].__file__.startswith(root), sys.modules["recgym"].__file__
    numba.set_num_threads(threads)
    if split_small:  # this tree only (the module is new)
        sys.modules["recgym.parallel"].MIN_SESSIONS_PER_THREAD = 1
    print(json.dumps({name: digest_setup(RecSysVectorEnv, steps, **options) for name, options in SETUPS.items()}))


def import_vector_env(root: str | None) -> type:
    """``RecSysVectorEnv`` of the recgym at ``root`` (``None``: the installed one), imported afresh."""
    for name in [name for name in sys.modules if name == "recgym" or name.startswith("recgym.")]:
        del sys.modules[name]
    if root:
        sys.path.insert(0, root)
    module = importlib.import_module("recgym.envs.vector")
    if root:
        sys.path.remove(root)
        assert sys.modules["recgym"].__file__.startswith(root), sys.modules["recgym"].__file__
    return module.RecSysVectorEnv


def make(env_class: type, world: str) -> object:
    env = env_class(num_envs=N_ENVS, world=world, autoreset_mode="SameStep", popular_streak=5)
    env.reset(seed=0)
    return env


def time_rounds(envs: dict[str, tuple[object, int]], actions: np.ndarray, rounds: int, steps: int,
                clock: callable) -> dict[str, list[float]]:
    """{name: ms per step of each round}; ``envs``: {name: (env, simulator threads)}, stepped in alternating
    order (forward in even rounds, backward in odd ones) after a warm-up."""
    for env, threads in envs.values():
        numba.set_num_threads(threads)
        for i in range(30):
            env.step(actions[i % len(actions)])
    times: dict[str, list[float]] = {name: [] for name in envs}
    for r in range(rounds):
        for name in (list(envs) if r % 2 == 0 else list(envs)[::-1]):
            env, threads = envs[name]
            numba.set_num_threads(threads)
            start = clock()
            for i in range(steps):
                env.step(actions[i % len(actions)])
            times[name].append((clock() - start) / steps * 1e3)
    return times


def ratio(times: dict[str, list[float]], slow: str, fast: str) -> float:
    """Median over rounds of time[slow] / time[fast]: how many times faster ``fast`` ran."""
    return statistics.median(a / b for a, b in zip(times[slow], times[fast]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["digest", "old-new", "threads", "digest-child"])
    parser.add_argument("child", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--commit", help="the other commit (digest: optional; old-new: required)")
    parser.add_argument("--split-small", action="store_true", help="digest: split the 256-session setups too")
    parser.add_argument("--steps", type=int, default=None, help="digest: steps per setup (200); timing: per block (25)")
    parser.add_argument("--rounds", type=int, default=12, help="timing: alternating rounds")
    args = parser.parse_args(argv)
    if args.mode == "digest-child":
        root, threads, steps = args.child
        digest_child(root, int(threads), int(steps), args.split_small)
        return
    if args.mode == "old-new" and not args.commit:
        parser.error("old-new needs --commit")
    old_root = checkout(args.commit) if args.commit else None
    try:
        if args.mode == "digest":
            steps = args.steps or 200
            columns = {f"{threads} thread(s)": digests(NEW_ROOT, threads, args.split_small, steps)
                       for threads in (1, 2)}
            if old_root:
                columns[args.commit] = digests(old_root, 1, False, steps)
            for name in SETUPS:
                row = [column[name] for column in columns.values()]
                print(f"{name:24s} {'  '.join(row)}  {'equal' if len(set(row)) == 1 else 'DIFFERENT'}")
            print(f"columns: {', '.join(columns)}")
        else:
            print(json.dumps(time_modes(args.mode, old_root, args.rounds, args.steps or 25)))
    finally:
        if old_root:
            remove(old_root)


def time_modes(mode: str, old_root: Path | None, rounds: int, steps: int) -> dict[str, object]:
    load_at_start = os.getloadavg()
    envs: dict[str, tuple[object, int]] = {}
    if mode == "old-new":
        old = import_vector_env(str(old_root))
        envs.update({f"old_{v}": (make(old, world), 1) for v, world in WORLDS.items()})
    new = import_vector_env(None)
    for v, world in WORLDS.items():
        env = make(new, world)
        if mode == "old-new":
            envs[f"new_{v}"] = (env, 1)
        else:
            envs[f"{v}_1thread"], envs[f"{v}_2threads"] = (env, 1), (env, 2)
    actions = np.random.default_rng(1).integers(0, 3327, (16, N_ENVS))
    clock = time.process_time if mode == "old-new" else time.perf_counter
    times = time_rounds(envs, actions, rounds, steps, clock)
    out: dict[str, object] = {f"{name}_ms": round(statistics.median(t), 3) for name, t in times.items()}
    if mode == "old-new":
        for v in WORLDS:
            out[f"new/old {v} (speed)"] = round(ratio(times, f"old_{v}", f"new_{v}"), 3)
        for code in ("old", "new"):
            out[f"{code} v1_vs_v0"] = round(ratio(times, f"{code}_v0", f"{code}_v1"), 3)
    else:
        for v in WORLDS:
            out[f"{v} 2 threads / 1 (speed)"] = round(ratio(times, f"{v}_1thread", f"{v}_2threads"), 3)
        out["v1_vs_v0 1 thread"] = round(ratio(times, "v0_1thread", "v1_1thread"), 3)
        out["v1_vs_v0 2 threads"] = round(ratio(times, "v0_2threads", "v1_2threads"), 3)
    out["clock"] = clock.__name__
    out["load_average"] = [round(load_at_start[0], 2), round(os.getloadavg()[0], 2)]
    out["threading_layer"] = numba.threading_layer()  # set_num_threads started the pool
    return out


if __name__ == "__main__":
    main()
