"""DSRM stage I under issue #19's catalogue reset (docs/dsrm.md, "Stage I's data under the catalogue reset"): its
logging clears the simulator's shared counters every N user-steps when the run trains with
``catalogue_reset_every=N``, its checkpoint records N, and a stage I shared through a folder (OUTDIR/stage1 in a
table) is shared only between runs of the same N."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from recgym.agents.dsrm import DSRM
from recgym.agents.dsrm.rollouts import make_venv
from recgym.agents.dsrm.train import collect
from recgym.dynamics import popularity_scores
from recgym.simulator import Simulator

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ENV = "recgym/Synthetic-v1"


def test_stage_one_logging_clears_the_counters_at_each_multiple_of_n_user_steps(
        monkeypatch: pytest.MonkeyPatch) -> None:
    cleared = []  # (exposure mass, popularity) of the simulator at each clear
    clear = Simulator.clear_counters
    monkeypatch.setattr(Simulator, "clear_counters",
                        lambda sim: cleared.append((int(sim.exposure.sum()), sim.popularity)) or clear(sim))
    logs, ends = {}, {}
    for every in (None, 400):
        cleared.clear()
        venv = make_venv(ENV, 16)
        logs[every] = collect(venv, 1500, seed=0, catalogue_reset_every=every)
        logs[every, "cleared"], ends[every] = list(cleared), venv.sim.popularity
    plain, reset = logs[None], logs[400]
    # 94 batched steps of 16 sessions (1,504 user-steps): the env's reset clears once (at 0), the reset every 400
    # user-steps after the 25th, 50th and 75th batched steps, each time holding the 400 user-steps since the last
    assert len(reset.user) == 1504
    assert [mass for mass, _ in logs[None, "cleared"]] == [0]
    assert [mass for mass, _ in logs[400, "cleared"]] == [0, 400, 400, 400]
    assert np.array_equal(plain.user, reset.user) and np.array_equal(plain.next_item, reset.next_item)
    # the log's item popularity: without the reset the end of logging's (1,504 user-steps of counts); with it the one
    # the last cleared stretch of 400 ended with, not the 304 user-steps after that clear
    items = np.arange(venv.world.n_items)
    assert np.array_equal(plain.item_popularity, popularity_scores(ends[None], items))
    assert np.array_equal(reset.item_popularity, popularity_scores(logs[400, "cleared"][-1][1], items))
    assert not np.array_equal(reset.item_popularity, popularity_scores(ends[400], items))
    assert not np.array_equal(reset.item_popularity, plain.item_popularity)


def test_dsrm_runs_that_differ_only_in_n_fit_a_stage_one_each(tmp_path: Path) -> None:
    from recgym.agents.hrl_agents import DSRM_FILE, read_stage_one, stage_one_file, stage_one_settings, train

    shared, runs = tmp_path / "stage1", tmp_path / "runs"
    for every in (None, 200, 200):
        train("dsrm-hrl", ENV, 64, num_envs=8, logdir=runs, device="cpu", rounds=1, stage_one_dir=shared,
              catalogue_reset_every=every)
    stored = {json.loads(path.read_text())["settings"].get("catalogue_reset_every"): path
              for path in shared.glob("*.json")}
    assert sorted(stored, key=str) == [200, None]  # two stage I files, one per N
    # the first two runs fitted theirs (a stage-I log each), the third read the N = 200 one
    assert sorted(path.parent.name for path in runs.glob("*/stage1")) == [f"dsrm-hrl_Synthetic-v1_s0_{n}" for n in (1, 2)]
    # each checkpoint records its N (the run directory's copy and the shared one)
    assert [DSRM.load(runs / f"dsrm-hrl_Synthetic-v1_s0_{n}" / DSRM_FILE).catalogue_reset_every
            for n in (1, 2, 3)] == [None, 200, 200]
    assert DSRM.load(stored[200].with_suffix(".pt")).catalogue_reset_every == 200
    # without the reset the settings (and so the file name) are those of a stage I stored before the reset existed
    plain = stage_one_settings(ENV, 64, 0, {}, "cpu")
    assert "catalogue_reset_every" not in plain and stage_one_file(shared, plain) == stored[None]
    # a stored model that logged with another N than its settings say is refused with one line
    shutil.copyfile(stored[None].with_suffix(".pt"), stored[200].with_suffix(".pt"))
    with pytest.raises(ValueError, match=r"^\S+\.pt: DSRM stage I logged with catalogue_reset_every=None, this run "
                                         r"trains with 200 \(None: no reset\); fit stage I again with the run's reset$"):
        read_stage_one(shared, stage_one_settings(ENV, 64, 0, {}, "cpu", 200))
    with pytest.raises(ValueError, match=r"^catalogue_reset_every must be an integer >= 1, got 0$"):
        train("dsrm-hrl", ENV, 64, logdir=runs, device="cpu", catalogue_reset_every=0)


def test_the_runner_does_not_read_a_stage_one_fitted_without_the_cells_reset(tmp_path: Path) -> None:
    from recgym.agents.hrl_agents import stage_one_file, stage_one_settings
    from recgym.experiments import STAGE_ONE_DIR, Cell, ExperimentConfig, Size, catalogue_reset_every, plan_jobs

    config = ExperimentConfig(name="plan", methods=("dsrm-hrl", "dsrm-flat"), envs=(ENV,),
                              settings={"a": {"max_turn": 10}}, smoke=Size(seeds=1, timesteps=64, episodes=8, num_envs=8))
    todo = [Cell(method, ENV, "a", 0) for method in config.methods]
    every = catalogue_reset_every(config, config.smoke, todo[0])
    assert every == 8 * 10  # episodes x max_turn

    def waits() -> dict[str, tuple[str, ...]]:
        return {job.id: job.after for job in plan_jobs(config, config.smoke, todo, tmp_path) if job.after}

    def stored(reset: int | None) -> None:
        path = stage_one_file(tmp_path / STAGE_ONE_DIR, stage_one_settings(ENV, 64, 0, {"max_turn": 10}, "auto", reset))
        path.parent.mkdir(exist_ok=True)
        path.write_text("{}")

    sibling = {"dsrm-flat__Synthetic-v1__a__s0": ("dsrm-hrl__Synthetic-v1__a__s0",)}
    assert waits() == sibling  # nothing stored: the first DSRM cell fits stage I, its sibling waits for it
    stored(None)  # a stage I of the same cells fitted before the reset: not theirs
    assert waits() == sibling
    stored(every)  # theirs: both read it
    assert waits() == {}


def test_recgym_train_passes_the_reset_to_dsrm_pretrain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from recgym.cli import main

    cleared = []
    clear = Simulator.clear_counters
    monkeypatch.setattr(Simulator, "clear_counters", lambda sim: cleared.append(int(sim.exposure.sum())) or clear(sim))
    assert main(["train", "--agent", "dsrm-pretrain", "--env", ENV, "--timesteps", "64", "--num-envs", "8",
                 "--logdir", str(tmp_path), "--torch-threads", "1", "--catalogue-reset-every", "20", "--episodes", "1"]) == 0
    # 8 batched steps of 8 sessions logged: cleared at the env's reset (0), then after the 3rd, 5th and 8th steps
    # (24, 40 and 64 user-steps); the last 0: the denoising scores' fresh rollout (--episodes) resets its own env
    assert cleared == [0, 24, 16, 24, 0]
    model = DSRM.load(tmp_path / "dsrm-pretrain_Synthetic-v1_s0_1" / "dsrm.pt", agent="dsrm-pretrain")
    assert model.catalogue_reset_every == 20
    from recgym.agents.dsrm.cli import train_cli

    with pytest.raises(ValueError, match=r"^catalogue_reset_every must be an integer >= 1, got 0$"):
        train_cli(ENV, 64, logdir=tmp_path / "bad", catalogue_reset_every=0)
    assert not (tmp_path / "bad").exists()
