"""The benchmark runs end to end and reports every figure (timings themselves are not asserted)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from recgym import bench
from recgym.world import synthetic_world


def test_run_reports_every_figure_for_its_sizes():
    config = bench.BenchConfig(
        sizes=(4, 16), sync_size=16, seconds=0.01, ppo_envs=4, ppo_timesteps=128, dsrm_batch=4,
        memory_user_steps=64, env_id="recgym/Synthetic-v0",
    )
    results = bench.run(config)
    figures = ["single", "native_4", "native_16", "sync_16", "lean_4", "lean_16", "ppo_native_fps", "ppo_dummy_fps",
               "rss_growth_mb", "native_vs_sync", "native_vs_lean", "native_v1_16", "v1_vs_v0"]
    assert all(results[key] > 0 for key in figures if key != "rss_growth_mb")
    assert np.isfinite(results["rss_growth_mb"])
    assert results["native_vs_sync"] == pytest.approx(results["native_16"] / results["sync_16"])
    assert results["native_vs_lean"] == pytest.approx(results["native_16"] / results["lean_16"])
    assert results["dsrm_us_per_state"] is None or results["dsrm_us_per_state"] > 0
    assert len(results["load_average"]) == 2 and all(load is None or load >= 0 for load in results["load_average"])
    assert "load average" in bench.format_table(results)
    assert json.loads(json.dumps(results)) == results  # the JSON line round-trips
    assert set(results["hrl_fps"]) == set(bench.HRL_AGENTS) == {"dsrm-hrl", "hrl4pfg", "novelty-hrl"}
    assert all(fps > 0 for fps in results["hrl_fps"].values()) and results["hrl_reference_fps"] > 0
    for agent, fps in results["hrl_fps"].items():
        assert results["hrl_vs_reference"][agent] == pytest.approx(fps / results["hrl_reference_fps"])
        assert results["hrl_speedup"][agent] == pytest.approx(
            results["hrl_vs_reference"][agent] / bench.HRL_BASELINE_VS_REFERENCE[agent])
    assert "hrl_speedup[novelty-hrl]" in bench.format_table(results)


def test_hierarchy_rounds_alternate_with_the_reference_and_count_the_simulators_recommendations(monkeypatch):
    """One call = one round of each agent's training (low then high level, one rollout each); frames are
    the recommendations the simulator made, the high level's waiting sessions not counted."""
    from recgym.agents.hierarchy import Levels

    calls, now = [], [0.0]
    monkeypatch.setitem(bench.TIMERS, "wall", lambda: now[0])

    def fake_round(self, round_index, low_steps, high_steps, callbacks=None, progress_bar=False):
        calls.append((self.method.name, low_steps, high_steps))
        self.low_env.venv.step(np.zeros(4, np.int64))  # 4 recommendations
        self.high_env.venv.step(np.zeros(4, np.int64), active=np.array([True, False, False, True]))  # 2 more
        now[0] += 1.0

    def fake_learn(self, total_timesteps, **kwargs):
        calls.append(("reference", total_timesteps))
        now[0] += 0.5

    monkeypatch.setattr(Levels, "train_round", fake_round)
    monkeypatch.setattr("stable_baselines3.PPO.learn", fake_learn)
    monkeypatch.setattr("recgym.envs.vector.RecSysVectorEnv.step", lambda self, actions, active=None: None)
    rates, reference = bench.bench_hierarchy(bench.BenchConfig(ppo_envs=4, ppo_timesteps=2 * 4096,
                                                               env_id="recgym/Synthetic-v0"))
    rollout = 64 * 4  # HierarchyConfig's n_steps x the sessions
    one_round = [(agent, rollout, rollout) for agent in ("dsrm-hrl", "hrl4pfg", "novelty-hrl")] + [("reference", 32 * 4)]
    assert calls == one_round * 3  # a warm-up, then 8,192 // 4,096 = 2 rounds
    assert rates == {agent: 6.0 for agent in bench.HRL_AGENTS}  # 6 recommendations per (fake) second
    assert reference == 256.0  # 128 frames in half a second


def test_default_config_uses_the_documented_keys():
    config = bench.BenchConfig()
    assert config.sizes == (256, 1024, 4096) and config.sync_size == 1024
    assert bench.QUICK.sizes == config.sizes and bench.QUICK.sync_size == config.sync_size


def test_steppers_take_turns_in_blocks():
    """native_<B> and lean_<B> share the run in alternating blocks, so a slower machine slows both."""
    order: list[str] = []
    steppers = {name: (lambda i, name=name: order.append(name), 5) for name in ("native", "lean")}
    rates = bench._rates(steppers, bench.BenchConfig(seconds=0.003), blocks=3)
    turns = [name for k, name in enumerate(order) if k == 0 or order[k - 1] != name]
    assert turns == ["native", "lean"] * 4  # the warm-up calls, then three rounds
    assert all(rate > 0 for rate in rates.values())


def test_stalled_rounds_do_not_set_the_figure(monkeypatch):
    """A figure is the median of its rounds: three stalled rounds of seven (bursts of load from
    elsewhere) leave it at the clean rounds' rate. On a fake clock a call takes 1 ms, or 50 ms
    for the first three (each stalls a whole 10 ms round)."""
    now = [0.0]
    monkeypatch.setitem(bench.TIMERS, "wall", lambda: now[0])

    def step(i: int) -> None:
        now[0] += 0.05 if 1 <= i <= 3 else 0.001

    rate = bench._rates({"stalled": (step, 1)}, bench.BenchConfig(seconds=0.07), blocks=7)["stalled"]
    assert rate == pytest.approx(1000.0)  # clean rounds: 10 calls in 10 ms; the mean of rounds is ~580


def test_lean_reference_observes_the_last_items_oldest_first():
    world = synthetic_world()
    step = bench.lean_reference(world, n_envs=3, history_len=2)
    step(np.array([1, 2, 3]))
    obs = step(np.array([4, 5, 6]))
    np.testing.assert_array_equal(obs["item_ids"], [[1, 4], [2, 5], [3, 6]])
    np.testing.assert_array_equal(obs["embeddings"][:, -1], world.item_emb[[4, 5, 6]])
    assert ((obs["feedback"] >= 0) & (obs["feedback"] <= world.reward_max)).all()


@pytest.mark.parametrize("argv, message", [(["--timer", "gpu"], "invalid choice"), (["--seconds", "0"], "positive")])
def test_cli_rejects_bad_options(argv, message, capsys):
    with pytest.raises(SystemExit):
        bench.main(argv)
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("field, value, message", [("blocks", 0, "blocks"), ("sizes", (), "sizes"), ("timer", "gpu", "timer")])
def test_config_rejects_bad_values(field, value, message):
    with pytest.raises(ValueError, match=message):
        bench.BenchConfig(**{field: value})


def test_population_suite_runs_through_the_bench_entry_point(capsys):
    assert bench.main(["population", "--quick", "--world", "synthetic", "--sizes", "4", "64"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [row["n_users"] for row in result["rows"]] == [4, 64]
    assert all(row["sim_calls_per_step"] == 1.0 and row["sim_us"] > 0 for row in result["rows"])  # one batched call
    assert result["per_user_speedup_small_to_large"]["sim_us"] > 1  # per-user cost falls with the batch
