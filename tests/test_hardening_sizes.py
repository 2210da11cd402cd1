"""Sizes are checked before anything is allocated: an absurd request is a one-line ValueError that
says how much memory it would need, never a MemoryError, a hang or swapping; non-integer or
negative sizes are one-line errors too."""

from __future__ import annotations

import resource
import tracemalloc

import gymnasium as gym
import numpy as np
import pytest

import recgym
from recgym import sizes
from recgym.envs import population_v0
from recgym.envs.sb3 import SB3VecEnv
from recgym.envs.vector import RecSysVectorEnv
from recgym.params import SimParams
from recgym.simulator import memory_need
from recgym.world import kuairec_world, synthetic_world, synthetic_world_bytes

GIB = 2**30


@pytest.fixture
def bounded_memory():
    """Cap this process's address space at its current size + 2 GiB for the test, so a size check that
    regresses fails fast with a MemoryError instead of eating the shared machine's memory."""
    with open("/proc/self/statm") as statm:
        used = int(statm.read().split()[0]) * resource.getpagesize()
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (used + 2 * GIB, hard))
    yield
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def refused_before_allocating(build, match: str) -> str:
    """Run ``build``, which must raise a one-line ValueError matching ``match`` having allocated
    (tracemalloc: NumPy reports its buffers) under 4 MiB (a population builds its simulator, ~2 MB
    for 1,000 slots, before it counts the names); returns the message."""
    kuairec_world()  # the cached default world is built outside the measurement
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=match) as refused:
            build()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20 and "\n" not in str(refused.value)
    return str(refused.value)


def vector_env(num_envs, **options):
    return gym.make_vec("recgym/KuaiRec-v0", num_envs=num_envs, vectorization_mode="vector_entry_point", **options)


# ------------------------------------------------------------------ absurd sizes
@pytest.mark.parametrize("build, match", [
    (lambda: vector_env(10**9), r"^num_envs=1000000000 needs ~6\.\d TiB of session state and step buffers, "
                                r"more than this machine's [\d.,]+ \wiB of memory"),
    (lambda: SB3VecEnv("recgym/KuaiRec-v0", num_envs=10**9), r"^num_envs=1000000000 needs ~6\.\d TiB"),
    (lambda: vector_env(10**6, history_len=1000, leave_window=1000), r"^num_envs=1000000 needs ~\d+\.\d \wiB"),
    (lambda: vector_env(10**7, slate_size=1000), r"^num_envs=10000000 needs ~\d+\.\d \wiB"),
    (lambda: population_v0.parallel_env(world="kuairec", n_users=10**9, max_arrivals=0),
     r"^n_users=1000000000 needs ~6\.\d TiB of session state"),
    (lambda: population_v0.parallel_env(world="kuairec", n_users=1000, max_cycles=10**7),
     r"^n_users=1000 x max_cycles=10000000 with max_arrivals=None needs ~1\.\d TiB of names for its "
     r"10,000,000,000 possible_agents"),
    (lambda: population_v0.env(world="kuairec", n_users=4, max_arrivals=10**12),
     r"^n_users=4 \+ max_arrivals=1000000000000 needs ~\d+\.\d TiB of names"),
    (lambda: gym.make("recgym/Synthetic-v0", world_options={"n_items": 10**10}),
     r"^synthetic world n_users=200, n_items=10000000000, .* needs ~4\.\d TiB of memory to build"),
    (lambda: gym.make("recgym/Synthetic-v0", world_options={"n_users": 10**10}), r"needs ~5\.\d TiB of memory to build"),
    (lambda: gym.make("recgym/Synthetic-v0", world_options={"n_creators": 10**11}), r"needs ~\d+\.\d TiB"),
    (lambda: gym.make("recgym/Synthetic-v0", world_options={"embed_dim": 10**9}), r"needs ~\d+\.\d TiB"),
], ids=["num_envs", "sb3-num_envs", "history_len", "slate_size", "population-slots", "population-cycles",
        "population-arrivals", "world-items", "world-users", "world-creators", "world-embed-dim"])
def test_an_absurd_size_is_refused_before_allocating(bounded_memory, build, match):
    refused_before_allocating(build, match)


BAD_COUNTS = {  # (what, how to build with the value, message, bad values)
    "num_envs": (vector_env, "num_envs must be an integer >= 1", [-3, 0, 2.0, "4", True, None]),
    "sb3-num_envs": (lambda value: SB3VecEnv("recgym/KuaiRec-v0", num_envs=value), "num_envs must be an integer >= 1",
                     [-3, 0, 2.0, "4", True]),
    "n_users": (lambda value: population_v0.parallel_env(world="synthetic", n_users=value),
                "n_users must be an integer >= 1", [-3, 0, 2.0, "4", True, None]),
    "max_cycles": (lambda value: population_v0.parallel_env(world="synthetic", max_cycles=value),
                   "max_cycles must be an integer >= 1", [-3, 0, 2.0, "4", True, None]),
    "max_arrivals": (lambda value: population_v0.parallel_env(world="synthetic", max_arrivals=value),
                     "max_arrivals must be an integer >= 0", [-1, 1.5, "2", True]),
    "n_items": (lambda value: gym.make("recgym/Synthetic-v0", world_options={"n_items": value}),
                "synthetic world: n_items must be an integer >= 2", [1, -5, 2.5, "100", True, None]),
}


@pytest.mark.parametrize("build, match, value", [
    (build, match, value) for build, match, values in BAD_COUNTS.values() for value in values
], ids=[f"{name}={value!r}" for name, (_, _, values) in BAD_COUNTS.items() for value in values])
def test_a_non_integer_or_negative_size_is_a_one_line_error(build, match, value):
    with pytest.raises(ValueError, match=match) as refused:
        build(value)
    assert "\n" not in str(refused.value)


def test_a_slate_larger_than_the_catalogue_is_refused():
    with pytest.raises(ValueError, match="slate_size=20 exceeds the catalogue's 10 items"):
        gym.make("recgym/Synthetic-v0", world_options={"n_items": 10}, slate_size=20)


# ------------------------------------------------------------------ the estimate and the limit
@pytest.mark.parametrize("mode", ["Free", "NX_0"])
def test_the_estimate_matches_what_the_vector_env_allocates(mode):
    num_envs = 4096
    env = RecSysVectorEnv(num_envs, mode=mode)  # warm-up: compiled kernels, cached world
    env.reset(seed=0)
    env.step(env.action_space.sample())
    del env
    tracemalloc.start()
    env = RecSysVectorEnv(num_envs, mode=mode)
    env.reset(seed=0)
    for _ in range(3):
        env.step(env.action_space.sample())
        env.action_masks()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    need = memory_need(num_envs, env.world, env.params)
    assert 0.8 < peak / need < 1.25, (peak, need)


def test_the_synthetic_world_estimate_matches_its_build():
    options = dict(n_users=20_000, n_items=20_000, n_categories=40, n_creators=2_000, embed_dim=32, seed=11)
    synthetic_world.cache_clear()
    tracemalloc.start()
    synthetic_world(**options)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    options.pop("seed")
    assert 0.6 < peak / synthetic_world_bytes(**options) <= 1.0


def test_the_limit_is_exact_and_the_error_says_the_need(monkeypatch):
    world, params = kuairec_world(), SimParams()
    need = memory_need(1000, world, params)
    # Per KuaiRec session (D=32, C=31, NX_0, k=10): state 1,006 bytes (416 of them the no-repeat bits),
    # two observations 2 x 1,404, the step's actions and draws 152 (an int64 action, no Gumbel for one
    # item, 3 normals + 1 uniform + D walk draws counted as float32), the action mask 3,327; plus the
    # catalogue's two (I,) float64 counts and (I + 1, D) float32 padded embeddings.
    assert need == 1000 * (1006 + 2 * 1404 + 152 + 3327) + (2 * 3327 * 8 + 3328 * 32 * 4)
    monkeypatch.setattr(sizes, "memory_limit", lambda: need)
    assert RecSysVectorEnv(1000).num_envs == 1000  # exactly at the limit: allowed
    with pytest.raises(ValueError) as refused:
        RecSysVectorEnv(1001)
    expected_need = sizes.format_bytes(memory_need(1001, world, params))
    assert str(refused.value) == (f"num_envs=1001 needs ~{expected_need} of session state and step buffers, "
                                  f"more than this machine's {sizes.format_bytes(need)} of memory; ask for less")
    assert expected_need == "7.4 MiB"


def test_memory_limit_is_physical_memory_or_a_lower_cgroup_limit(monkeypatch, tmp_path):
    import os

    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    unlimited, limited = tmp_path / "unlimited", tmp_path / "limited"
    unlimited.write_text("max\n")
    limited.write_text(f"{3 * GIB}\n")
    monkeypatch.setattr(sizes, "CGROUP_LIMIT_FILES", (str(unlimited), str(tmp_path / "absent")))
    assert sizes.memory_limit() == physical
    monkeypatch.setattr(sizes, "CGROUP_LIMIT_FILES", (str(unlimited), str(limited)))
    assert sizes.memory_limit() == min(physical, 3 * GIB)
    with pytest.raises(ValueError, match=r"more than this machine's 3\.0 GiB of memory"):
        sizes.check_memory("request", 3 * GIB + 1, "things")


def test_format_bytes_picks_a_readable_unit():
    assert [sizes.format_bytes(n) for n in (512, 1536, 7 * GIB + GIB // 2, 5 * 2**40)] == [
        "512 bytes", "1.5 KiB", "7.5 GiB", "5.0 TiB"]


def test_a_numpy_integer_size_is_accepted():
    env = RecSysVectorEnv(np.int64(3))
    assert env.num_envs == 3 and type(env.num_envs) is int
    assert synthetic_world(n_items=np.int64(30)).n_items == 30
    assert recgym.Simulator(kuairec_world(), SimParams(), np.int32(2)).n_sessions == 2


@pytest.mark.parametrize("value", [True, "1", None, float("nan"), float("inf"), -0.5])
def test_check_number_refuses_what_is_not_a_finite_number_in_range(value):
    with pytest.raises(ValueError, match=r"^knob must be a finite number >= 0, got .*$"):
        sizes.check_number("knob", value)


def test_check_number_bounds_and_the_optional_count():
    assert sizes.check_number("knob", 0) == 0.0 and isinstance(sizes.check_number("knob", 3), float)
    with pytest.raises(ValueError, match="knob must be a finite number > 0, got 0"):
        sizes.check_number("knob", 0, strict=True)
    assert sizes.check_number("knob", 0.25, strict=True) == 0.25
    assert sizes.check_optional_count("n", None) is None and sizes.check_optional_count("n", 5) == 5
    with pytest.raises(ValueError, match="n must be an integer >= 1, got 0"):
        sizes.check_optional_count("n", 0)
