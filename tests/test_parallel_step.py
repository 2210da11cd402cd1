"""The parallel step (recgym.parallel): the same trajectories for any simulator thread count, sessions of one
user in one thread, the thread settings (recgym.threads), and parallel kernels that numba caches."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import numba
import numpy as np
import pytest

from recgym import parallel
from recgym.params import V1_DEFAULTS, SimParams
from recgym.simulator import Simulator
from recgym.threads import available_cores, default_simulator_threads, set_simulator_threads, set_threads
from recgym.world import synthetic_world
from recgym.world_v1 import resolve_world_v1

two_threads = pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="numba has one thread on this machine")


@pytest.fixture
def restore_threads():
    threads = numba.get_num_threads()
    yield
    numba.set_num_threads(threads)


def trajectory_digest(v1: bool, n_sessions: int, threads: int, steps: int = 30, **options) -> str:
    """SHA-256 of ``steps`` seeded random steps on the synthetic world (v1: Synthetic-v1's, 200 users):
    every step result, both observations around the resets, every session and user array and the shared
    counts, on ``threads`` simulator threads."""
    numba.set_num_threads(threads)
    world = resolve_world_v1("synthetic-v1") if v1 else synthetic_world()
    params = SimParams.from_kwargs(**{**(V1_DEFAULTS if v1 else {}), "popular_streak": 5, **options})
    sim = Simulator(world, params, n_sessions, seed=0)
    sim.reset(seed=0)
    rng, digest = np.random.default_rng(1), hashlib.sha256()
    shape = (n_sessions,) if params.slate_size == 1 else (n_sessions, params.slate_size)
    for _ in range(steps):
        result = sim.step(rng.integers(0, world.n_items, shape))
        before, after = sim.observe_around_reset(np.flatnonzero(result.terminated | result.truncated))
        for array in (*result, *before.values(), *after.values(), *sim.sessions, *sim.users):
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


@two_threads
@pytest.mark.parametrize("v1, n_sessions, options", [
    (True, 800, dict(session_memory=True)),  # 4 sessions per user: a user's sessions step together
    (True, 800, dict(slate_size=3)),
    (True, 200, dict(episode="lifetime", lifetime_sessions=3, max_turn=5)),
    (False, 800, {}),
], ids=["v1-shared-users", "v1-slates", "v1-lifetime", "v0"])
def test_two_threads_give_one_threads_trajectory(v1, n_sessions, options, monkeypatch, restore_threads):
    monkeypatch.setattr(parallel, "MIN_SESSIONS_PER_THREAD", 16)  # split these small batches (and their restarts)
    one = trajectory_digest(v1, n_sessions, threads=1, **options)
    numba.set_num_threads(2)
    assert parallel.thread_parts(n_sessions) == 2
    assert trajectory_digest(v1, n_sessions, threads=2, **options) == one


@two_threads
def test_a_users_sessions_step_in_one_thread(monkeypatch, restore_threads):
    """v1 sessions write their user's long-term rows: the step's split (``Simulator._part_of`` after a step)
    puts every user's sessions in one part (a split by session range fails this), the parts near half each."""
    monkeypatch.setattr(parallel, "MIN_SESSIONS_PER_THREAD", 16)
    numba.set_num_threads(2)
    sim = Simulator(resolve_world_v1("synthetic-v1"), SimParams.from_kwargs(**V1_DEFAULTS), 800, seed=0)
    sim.reset(seed=0)
    sim.step(np.random.default_rng(0).integers(0, sim.world.n_items, 800))
    part_of = sim._part_of
    assert set(part_of) == {0, 1} and 200 < (part_of == 0).sum() < 600  # 4 sessions per user
    for user in np.unique(sim.user):
        assert np.unique(part_of[sim.user == user]).size == 1


def test_assign_parts_gives_each_owner_range_one_part():
    owners = np.random.default_rng(0).integers(0, 50, 1000)
    part_of = np.full(1000, -1, np.int64)
    parallel.assign_parts(owners, 50, 3, part_of)
    np.testing.assert_array_equal(part_of, owners * 3 // 50)
    assert set(owners[part_of == 0]) == set(range(0, 17)) and set(owners[part_of == 2]) == set(range(34, 50))
    assert [parallel.part_range(10, 3, part) for part in range(3)] == [(0, 3), (3, 6), (6, 10)]


def test_thread_parts_keep_small_batches_in_the_calling_thread(restore_threads):
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    per_thread = parallel.MIN_SESSIONS_PER_THREAD
    assert parallel.thread_parts(1) == parallel.thread_parts(2 * per_thread - 1) == 1
    assert parallel.thread_parts(100 * per_thread) == numba.config.NUMBA_NUM_THREADS
    numba.set_num_threads(1)
    assert parallel.thread_parts(100 * per_thread) == 1


def test_simulator_threads_default_to_the_cores_split_between_workers(restore_threads):
    cores = min(available_cores(), numba.config.NUMBA_NUM_THREADS)
    assert default_simulator_threads() == cores
    assert default_simulator_threads(workers=2) == max(1, min(available_cores() // 2, cores))
    assert default_simulator_threads(workers=10 ** 6) == 1
    assert set_simulator_threads() == numba.get_num_threads() == cores
    assert set_simulator_threads(1) == numba.get_num_threads() == 1
    torch_threads, simulator_threads = set_threads(1, workers=2)
    assert torch_threads == 1 and simulator_threads == numba.get_num_threads() == default_simulator_threads(2)


@pytest.mark.parametrize("threads, message", [
    (0, "simulator threads must be an integer >= 1, got 0"),
    (2.0, "simulator threads must be an integer >= 1"),
    (numba.config.NUMBA_NUM_THREADS + 1, f"simulator threads must be in [1, {numba.config.NUMBA_NUM_THREADS}]"),
])
def test_bad_simulator_threads_are_one_line_errors_and_change_nothing(threads, message, restore_threads):
    numba.set_num_threads(1)
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")) as error:
        set_simulator_threads(threads)
    assert "\n" not in str(error.value) and numba.get_num_threads() == 1


def test_parallel_kernels_are_cached():
    """numba refuses to cache a kernel that reads its thread count itself ("dynamic globals"), with a warning
    at each compile: a fresh process stepping every kernel (v0, v1 session and lifetime mode, split over the
    threads) must compile nothing it cannot cache."""
    code = """
import warnings
import numpy as np
from numba.core.errors import NumbaWarning
warnings.simplefilter("error", NumbaWarning)
from recgym import parallel
from recgym.envs.vector import RecSysVectorEnv
parallel.MIN_SESSIONS_PER_THREAD = 1
for options in (dict(world="synthetic"), dict(world="synthetic-v1"), dict(world="synthetic-v1", episode="lifetime")):
    env = RecSysVectorEnv(num_envs=8, autoreset_mode="SameStep", **options)
    env.reset(seed=0)
    for _ in range(3):
        env.step(np.zeros(8, np.int64))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
