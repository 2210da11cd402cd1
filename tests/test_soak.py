"""Issue #17's soak as a command (``recgym bench --soak``, :func:`recgym.bench.soak`): memory stays flat over
many lifetimes, the per-user state is read off the simulator's own arrays, and the policy never repeats an item."""

from __future__ import annotations

import json
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

from recgym import bench
from recgym.users import bytes_per_user

#: 500 users x 5 sessions: 100 rows, the first 100 lifetimes the warm-up, then ~400 measured (~0.2 s).
SMALL = bench.SoakConfig(env_id="recgym/Synthetic-v1", rows=100, lifetimes=500, sessions=5,
                         world_options={"n_users": 500})
#: The issue's budget (50 MB over the full soak's ~9,000 measured lifetimes, ~5.7 kB a lifetime) scaled to
#: SMALL's ~400 measured lifetimes.
SMALL_BOUND_MB = 50 * 400 / 9_000


def soak_in_a_fresh_process(setup: str = "") -> dict:
    """:func:`recgym.bench.soak` of SMALL in a new interpreter (after ``setup``, Python source): RSS only
    shows growth in pages the process never had, and memory this test process freed earlier (another
    test's) would absorb a leak."""
    code = f"import json\nfrom recgym import bench\n{setup}\nprint(json.dumps(bench.soak(bench.{SMALL!r})))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_small_soak_keeps_memory_flat_and_counts_every_lifetimes_sessions():
    result = soak_in_a_fresh_process()
    assert SMALL.lifetimes <= result["lifetimes"] < SMALL.lifetimes + SMALL.rows
    assert SMALL.rows <= result["warmup_lifetimes"] < result["lifetimes"] - 300
    # every ended lifetime had exactly 5 sessions; the rows' lifetimes in progress add fewer than 5 each
    assert 5 * result["lifetimes"] <= result["sessions"] < 5 * (result["lifetimes"] + SMALL.rows)
    assert result["user_steps"] % SMALL.rows == 0 and result["user_steps"] >= result["sessions"]
    assert 300 <= result["distinct_users"] <= 500 == result["n_users"]  # uniform draws: ~1 - e^-1 of them
    assert result["rss_growth_mb"] == pytest.approx(result["rss_end_mb"] - result["rss_start_mb"])
    assert result["rss_growth_mb"] < SMALL_BOUND_MB  # measured 0.0-0.04 MB


def test_a_leak_per_step_shows_in_the_growth():
    """Control: a wrapper that keeps every step's observation (what a logging bug would do) breaks the bound."""
    keep_observations = """
from recgym.envs.vector import RecSysVectorEnv
kept, step = [], RecSysVectorEnv.step
def keeping(self, actions, active=None):
    result = step(self, actions, active=active)
    kept.append(result[0])
    return result
RecSysVectorEnv.step = keeping"""
    assert soak_in_a_fresh_process(keep_observations)["rss_growth_mb"] > 2 * SMALL_BOUND_MB  # measured 14.1 MB


def test_the_per_user_state_is_the_users_arrays_nbytes_per_user_and_a_seed_repeats_the_run():
    result = bench.soak(SMALL)
    counts = ("lifetimes", "sessions", "user_steps", "distinct_users", "warmup_lifetimes", "warmup_sessions")
    again, other_seed = bench.soak(SMALL), bench.soak(bench.SoakConfig(**{**vars(SMALL), "seed": 1}))
    assert [again[key] for key in counts] == [result[key] for key in counts]
    assert [other_seed[key] for key in counts] != [result[key] for key in counts]
    venv = gym.make_vec(SMALL.env_id, num_envs=1, vectorization_mode="vector_entry_point",
                        world_options=SMALL.world_options)
    sim = venv.unwrapped.sim
    total = sum(array.nbytes for array in sim.users)
    assert result["user_state_bytes_per_user"] == pytest.approx(total / 500)
    assert result["user_state_mb"] == pytest.approx(total / 2**20)
    assert result["user_state_bytes_per_field"]["taste"] == sim.users.taste.nbytes / 500
    world = sim.world  # the rows of Users (661 B here) plus the platform's (1,) clock and counter
    row = bytes_per_user(world.embed_dim, world.n_categories, world.n_creators, sim.params.taste_neighbourhoods)
    assert total == 500 * row + 16 and row == 661


def test_the_policy_recommends_only_allowed_items():
    """NX_0 masks a lifetime's recommended items; each row walks a permutation, so it never meets one."""
    venv = gym.make_vec("recgym/Synthetic-v1", num_envs=50, vectorization_mode="vector_entry_point",
                        autoreset_mode="SameStep", episode="lifetime", lifetime_sessions=5)
    venv.reset(seed=1)
    items = bench.unrepeated_items(venv.single_action_space.n, 50, seed=1)
    rows, masked = np.arange(50), 0
    for t in range(300):  # ~2 lifetimes per row (autoreset keeps the walk going)
        mask = venv.action_masks()
        assert mask[rows, items(t)].all()
        masked += 50 * mask.shape[1] - int(mask.sum())
        venv.step(items(t))
    assert masked > 50 * 300  # the masks really exclude items: on average more than one per row
    assert len(np.unique(items(0))) > 30  # rows start at different places of the walk


@pytest.mark.parametrize("field, value, message", [
    ("rows", 0, "rows must be an integer >= 1, got 0"),
    ("lifetimes", 100, "lifetimes must exceed rows=100"),
    ("sessions", 0, "sessions must be an integer >= 1"),
    ("seed", -1, "seed must be an integer >= 0"),
    ("timer", "gpu", "timer must be one of"),
])
def test_config_rejects_bad_values(field, value, message):
    with pytest.raises(ValueError, match=message):
        bench.SoakConfig(**{**vars(SMALL), field: value})


def test_a_lifetime_longer_than_the_catalogue_is_refused():
    with pytest.raises(ValueError, match=r"sessions \* max_turn = 1500 exceeds recgym/Synthetic-v1's 500 items"):
        bench.soak(bench.SoakConfig(env_id="recgym/Synthetic-v1", rows=10, lifetimes=20, sessions=50))


def test_recgym_bench_soak_prints_a_table_and_one_json_line(monkeypatch, capsys):
    monkeypatch.setattr(bench, "QUICK_SOAK", SMALL)
    assert bench.main(["--soak", "--quick", "--timer", "cpu"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads(lines[-1])
    assert result["benchmark"] == "soak" and result["timer"] == "cpu" and result["env_id"] == SMALL.env_id
    assert result["options"] == {"popular_streak": 5, "episode": "lifetime", "lifetime_sessions": 5, "max_turn": 30}
    table = "\n".join(lines[:-1])
    assert "RSS growth" in table and "661.0 B per user" in table and "load average" in table
    assert "platform_day, sessions_served: 16 B shared" in table


def test_recgym_bench_soak_refuses_seconds(capsys):
    with pytest.raises(SystemExit):
        bench.main(["--soak", "--seconds", "1"])
    assert "--seconds times the throughput suite" in capsys.readouterr().err
