"""Issue #19's periodic catalogue reset in training (docs/experiments.md, "The catalogue ages too"): the training
simulator's shared counters are cleared every N user-steps (:class:`recgym.agents.callbacks.CatalogueReset`) by
the flat trainer and by both levels of the hierarchy, and the experiment runner trains every trained cell of a
v1 table with N = its evaluation's user-steps, recorded in the cell's configuration (older cells are stale)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from recgym.agents.flat import train
from recgym.agents.rewards import RewardShaper

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PPO_SMALL = {"n_steps": 16, "batch_size": 64, "n_epochs": 1}


class CounterRecorder(RewardShaper):
    """Leaves the reward as it is and records the simulator's (exposure mass, click mass) after every step,
    i.e. before the callbacks of that step run."""

    def __init__(self, venv: object) -> None:
        super().__init__(venv)
        self.sim, self.masses = venv.venv.sim, []

    def shape(self, reward: np.ndarray, obs: dict[str, np.ndarray], actions: np.ndarray) -> np.ndarray:
        self.masses.append((self.sim.exposure.sum(), self.sim.clicks.sum()))
        return reward


def since_last_reset(batched_steps: int, num_envs: int, every: int) -> np.ndarray:
    """(T,) user-steps since the last reset at the end of each batched step t = 1..T, when the counters are
    cleared after each step whose user-step count reaches the next multiple of ``every``."""
    steps = np.arange(1, batched_steps + 1)
    reset_after = (num_envs * steps) // every > (num_envs * (steps - 1)) // every
    last = np.maximum.accumulate(np.where(reset_after, steps, 0))
    return num_envs * (steps - np.concatenate([[0], last[:-1]]))


def test_flat_training_clears_the_counters_at_each_multiple_of_n_user_steps(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    recorders = []

    def recorded(venv: object) -> CounterRecorder:
        recorders.append(CounterRecorder(venv))
        return recorders[-1]

    runs = {}
    for every in (None, 100):
        model, path = train("ppo", "recgym/Synthetic-v1", 512, num_envs=8, logdir=tmp_path / str(every),
                            wrap_env=recorded, catalogue_reset_every=every, **PPO_SMALL)
        runs[every] = (np.array(recorders[-1].masses), path, recorders[-1].sim)
    plain, reset = runs[None][0], runs[100][0]
    assert len(plain) == len(reset) == 64  # 4 rollouts of 16 batched steps of 8 sessions
    # one exposure per session per step: without the reset the counters hold the whole run, with it only the
    # user-steps since the last multiple of 100 that the run reached (resets after steps 13, 25, 38, 50, 63)
    assert plain[:, 0].tolist() == (8 * np.arange(1, 65)).tolist()
    assert reset[:, 0].tolist() == since_last_reset(64, 8, 100).tolist()
    assert reset[:, 0].max() == 104 and reset[-1, 0] == 8
    pf = runs[100][2].params.popularity_feedback
    assert reset[[13, 25, 38, 50, 63], 1].max() <= 8 * pf < plain[-1, 1]  # the clicks are cleared too
    events = EventAccumulator(str(runs[100][1].parent)).Reload()
    assert [event.value for event in events.Scalars("train/catalogue_resets")] == [1, 2, 3, 5]  # at rollout ends
    assert "train/catalogue_resets" not in EventAccumulator(str(runs[None][1].parent)).Reload().Tags()["scalars"]
    with pytest.raises(ValueError, match=r"^catalogue_reset_every must be an integer >= 1, got 0$"):
        train("ppo", "recgym/Synthetic-v1", 64, num_envs=8, logdir=tmp_path / "bad", catalogue_reset_every=0)
    assert not (tmp_path / "bad").exists()


def test_each_level_of_a_hierarchy_resets_its_own_simulator_every_n_of_its_user_steps(tmp_path: Path) -> None:
    from recgym.agents.dsrm_hrl import DSRMHRL
    from recgym.agents.hierarchy import HierarchyConfig, train_hierarchy

    config = HierarchyConfig(rounds=2, low_steps=512, high_steps=128, n_sessions=16, device="cpu", ppo=PPO_SMALL)
    options = {"leave_window": 0, "popular_streak": 3, "patience": 0.0}
    sims = {}
    for every in (None, 300):
        trained = train_hierarchy(DSRMHRL(name="hrl-no-dsrm"), "recgym/Synthetic-v1", config, logdir=tmp_path,
                                  run_name=str(every), env_options=options, catalogue_reset_every=every)
        sims[every] = (trained.low.get_env(), trained.high.get_env())
    (low_plain, high_plain), (low, high) = sims[None], sims[300]
    # the levels step two simulators; each counts only its own user-steps (low: 16 per step over 2 rounds of
    # 512; high: the active sessions of each option's steps)
    assert low.venv.sim is not high.venv.sim
    assert low_plain.venv.sim.exposure.sum() == 1024 and high_plain.venv.sim.exposure.sum() == high_plain.user_steps
    assert low.venv.sim.exposure.sum() == since_last_reset(1024 // 16, 16, 300)[-1]
    option_steps = 16 * DSRMHRL().option_length  # the most user-steps one option adds
    assert high.user_steps > 300 and 0 < high.venv.sim.exposure.sum() < 300 + option_steps
    with pytest.raises(ValueError, match="catalogue_reset_every must be an integer >= 1"):
        train_hierarchy(DSRMHRL(name="hrl-no-dsrm"), "recgym/Synthetic-v1", config, logdir=tmp_path, run_name="x",
                        catalogue_reset_every=-5)


POPULATION = """
methods: [popular, ppo]
envs: [recgym/Population-v1]
population: {world: synthetic-v1, arrival_rate: 0.5}
settings:
  logs: {reward_signal: observed}
full: {seeds: 1, timesteps: 64, num_envs: 4, platform_steps: 5}
"""


def test_the_runner_trains_each_trained_cell_with_its_evaluations_user_steps_and_reruns_older_cells(
        tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from recgym.experiments import Cell, catalogue_reset_every, load_config, run_experiment, v1_table

    path = tmp_path / "grid.yaml"
    path.write_text(POPULATION)
    config = load_config(path)
    out = tmp_path / "v1" / config.name
    run_experiment(config, "full", out, progress=False)
    trained, control = (out / f"{method}__Population-v1__logs__s0.json" for method in ("ppo", "popular"))
    # N = platform_steps x n_users for a population's trained cell; none for a control (it does not train)
    assert json.loads(trained.read_text())["config"]["catalogue_reset_every"] == 20
    assert "catalogue_reset_every" not in json.loads(control.read_text())["config"]
    events = EventAccumulator(str(next((out / "tb").rglob("ppo_Synthetic-v1_s0_1")))).Reload()
    assert events.Scalars("train/catalogue_resets")[-1].value == 6  # one rollout of 32 x 4 user-steps
    # a trained cell stored before the protocol (no N) is stale: pending in the table, then run again
    old = json.loads(trained.read_text())
    del old["config"]["catalogue_reset_every"]
    trained.write_text(json.dumps({**old, "code": "0ld"}))
    stamp = control.stat().st_mtime_ns
    table = v1_table(config, tmp_path / "v1")
    assert "**1/2 cells done**" in table and "1 stored cells ran under an older protocol" in table
    run_experiment(config, "full", out, progress=False)
    rerun = json.loads(trained.read_text())
    assert rerun["code"] != "0ld" and rerun["config"]["catalogue_reset_every"] == 20
    assert control.stat().st_mtime_ns == stamp  # the control's cell is still valid: not run again
    # the N rule on session and lifetime settings: the evaluation's cap, episodes x (lifetime sessions x) max_turn
    fairness = load_config("fairness_v1")
    assert [catalogue_reset_every(fairness, fairness.full, Cell("ppo-fair", "recgym/KuaiRec-v1", setting, 0))
            for setting in ("max30", "max50", "lifetime")] == [500 * 30, 500 * 50, 500 * 10 * 30]
    assert catalogue_reset_every(fairness, fairness.full, Cell("oracle", "recgym/KuaiRec-v1", "max30", 0)) is None


def test_dorls_logging_phase_clears_the_counters_too(monkeypatch: pytest.MonkeyPatch) -> None:
    from recgym.agents.dorl import log_random, train_dorl
    from recgym.simulator import Simulator

    cleared = []
    clear = Simulator.clear_counters
    monkeypatch.setattr(Simulator, "clear_counters", lambda sim: cleared.append(sim.exposure.sum()) or clear(sim))
    logs = {}
    for every in (None, 400):
        cleared.clear()
        logs[every] = log_random("recgym/Synthetic-v1", 1600, 0, 16, {}, every)
        logs[every, "cleared"] = list(cleared)
    # the env's reset clears them once (at 0); the reset every 400 user-steps after the 25th, 50th, 75th and 100th
    # batched steps of 16, each time holding the 400 user-steps since the last
    assert logs[None, "cleared"] == [0] and logs[400, "cleared"] == [0, 400, 400, 400, 400]
    assert all(np.array_equal(a, b) for a, b in zip(logs[None][:2], logs[400][:2]))  # the same users and items
    with pytest.raises(ValueError, match="catalogue_reset_every must be an integer >= 1"):
        train_dorl("recgym/Synthetic-v1", 64, catalogue_reset_every=0)


def test_recgym_train_takes_the_reset_for_agents_that_train_in_a_simulator(tmp_path: Path, capsys) -> None:
    from recgym.cli import main

    base = ["train", "--env", "recgym/Synthetic-v1", "--timesteps", "64", "--num-envs", "8", "--episodes", "2",
            "--logdir", str(tmp_path), "--torch-threads", "1"]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert main([*base, "--agent", "ppo", "--catalogue-reset-every", "100"]) == 0
    events = EventAccumulator(str(tmp_path / "ppo_Synthetic-v1_s0_1")).Reload()
    assert events.Scalars("train/catalogue_resets")[-1].value == 2  # one rollout of 32 x 8 user-steps
    assert main([*base, "--agent", "popular", "--catalogue-reset-every", "100"]) == 2
    assert "agent 'popular' is not trainable" in capsys.readouterr().err
    assert main([*base, "--agent", "ppo", "--catalogue-reset-every", "0"]) == 2
    assert "--catalogue-reset-every: must be an integer >= 1, got 0" in capsys.readouterr().err
