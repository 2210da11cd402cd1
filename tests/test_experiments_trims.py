"""The runner's trims of a full v1 table's cost (issue #19): the DSRM agents of one env, setting and seed share one
stage I (stored under OUTDIR/stage1/, the same results as fitting it alone), a table reuses the cells another
table already ran with the same resolved options, method, seed and sizes, and the reference fronts run in the
same worker pool as the cells (the same table as the serial run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recgym.experiments import (
    STAGE_ONE_DIR, Cell, CellsFailed, ExperimentConfig, Size, front_file, plan_jobs, run_experiment,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZE = Size(seeds=1, timesteps=64, episodes=8, num_envs=8)


def stored(outdir: Path) -> dict[str, dict]:
    """Cell id -> the cell's stored JSON record."""
    return {path.stem: json.loads(path.read_text()) for path in sorted(outdir.glob("*.json"))}


def results(record: dict) -> dict:
    """A cell record without what names its table or measures its run time."""
    return {key: value for key, value in record.items() if key not in ("config", "wall_s", "setting", "id", "reused_from")}


def test_dsrm_twins_share_one_stage_one_with_the_results_of_fitting_it_alone(tmp_path: Path) -> None:
    config = ExperimentConfig(name="twins", methods=("dsrm-hrl", "dsrm-hrl-const"), envs=("recgym/Synthetic-v0",),
                              options={"max_turn": 10}, smoke=SIZE)
    shared, alone = tmp_path / "shared", tmp_path / "alone"
    run_experiment(config, outdir=shared, progress=False)
    run_experiment(config, outdir=alone, progress=False, methods=["dsrm-hrl-const"])  # fits its own stage I
    twin = "dsrm-hrl-const__Synthetic-v0__default__s0"
    assert stored(shared)[twin] == stored(alone)[twin]  # every metric and per-episode value, bit for bit
    assert len(list((shared / STAGE_ONE_DIR).glob("*.pt"))) == 1  # one stage I for the two agents
    provenance = json.loads(next((shared / STAGE_ONE_DIR).glob("*.json")).read_text())
    assert provenance["settings"]["transitions"] == 1_000 and len(provenance["constant_state"]) == 16
    fitted = {path.parent.parent.name.split("__")[0] for path in (shared / "tb").glob("*/*/stage1")}
    assert fitted == {"dsrm-hrl"}  # the twin read stage I: no stage-I log of its own
    assert not list((shared / STAGE_ONE_DIR).glob("*.partial"))


def test_a_dsrm_sibling_waits_for_the_cell_that_fits_its_stage_one(tmp_path: Path) -> None:
    config = ExperimentConfig(name="plan", methods=("random", "dsrm-flat", "dsrm-hrl", "dsrm-flat-const"),
                              envs=("recgym/Synthetic-v1",), settings={"a": {"max_turn": 10}, "b": {"max_turn": 12}},
                              smoke=Size(seeds=2, timesteps=64, episodes=8, num_envs=8))
    todo = [Cell(method, "recgym/Synthetic-v1", setting, seed) for method in config.methods for setting in ("b", "a")
            for seed in range(2)]
    jobs = plan_jobs(config, config.smoke, todo, tmp_path, fronts=[("recgym/Synthetic-v1", "b")])
    order = [job.id for job in jobs]
    assert [job.setting for job in jobs] == ["a"] * 8 + ["b"] * 9  # the config's settings in order, the last last
    assert order[8] == "front:Synthetic-v1__b" and all(job.needs == (order[8],) for job in jobs[9:])
    assert all(not job.needs for job in jobs[:8])  # setting a's front is stored (not asked for)
    after = {job.id: job.after for job in jobs if job.after}
    assert after == {f"{method}__Synthetic-v1__{setting}__s{seed}": (f"dsrm-flat__Synthetic-v1__{setting}__s{seed}",)
                     for method in ("dsrm-hrl", "dsrm-flat-const") for setting in "ab" for seed in range(2)}


GRID = """
methods: [random, oracle]
envs: [recgym/Synthetic-v1]
options: {max_turn: 10, popular_streak: 3, leave_window: 0}
full: {seeds: 2, timesteps: 64, episodes: 8, num_envs: 8}
"""


def test_identical_cells_of_another_table_are_reused_and_named(tmp_path: Path) -> None:
    first, second = tmp_path / "first.yaml", tmp_path / "second.yaml"
    first.write_text(GRID + "settings: {plain: {}}\n")
    second.write_text(GRID + "settings:\n  level0: {popularity_noise: 0.0, exposure_bias: 0.0}\n"
                             "  level1: {popularity_noise: 0.5, exposure_bias: 0.5}\n")
    run_experiment(first, "full", tmp_path / "first", progress=False)
    run_experiment(second, "full", tmp_path / "second", progress=False, reuse=[tmp_path / "first"])
    run_experiment(second, "full", tmp_path / "fresh", progress=False, reuse=[])
    reused, fresh, original = stored(tmp_path / "second"), stored(tmp_path / "fresh"), stored(tmp_path / "first")
    level0 = [f"{method}__Synthetic-v1__level0__s{seed}" for method in ("random", "oracle") for seed in range(2)]
    assert {cell for cell, record in reused.items() if "reused_from" in record} == set(level0)
    for cell in level0:  # v1's own noise knobs are 0: level0 resolves to the plain setting field by field
        source = reused[cell]["reused_from"]
        assert source["table"] == "first" and source["setting"] == "plain"
        assert results(reused[cell]) == results(original[source["cell"]]) == results(fresh[cell])
        assert reused[cell]["setting"] == "level0" and reused[cell]["config"] == fresh[cell]["config"]
    assert "`level0` from `first` `plain`: 4" in (tmp_path / "second" / "results.md").read_text()
    assert not (tmp_path / "second" / "tb" / level0[0]).exists()  # not run again
    fronts = {name: json.loads(front_file(tmp_path / name, "recgym/Synthetic-v1", setting).read_text())
              for name, setting in (("first", "plain"), ("second", "level0"), ("fresh", "level0"))}
    assert fronts["second"]["reused_from"] == {"table": "first", "file": "Synthetic-v1__plain.json"}
    assert fronts["second"]["points"] == fronts["first"]["points"] == fronts["fresh"]["points"]
    assert "reused_from" not in json.loads(front_file(tmp_path / "second", "recgym/Synthetic-v1", "level1").read_text())


def test_fronts_and_cells_share_two_workers_with_the_serial_runs_table(tmp_path: Path) -> None:
    grid = tmp_path / "grid.yaml"
    grid.write_text(GRID.replace("[random, oracle]", "[oracle, ppo-fair]").replace("seeds: 2", "seeds: 1")
                    + "settings: {a: {}, b: {max_turn: 8}}\n")  # ppo-fair's learning curve reads the front
    one = run_experiment(grid, "full", tmp_path / "one", progress=False, workers=1, torch_threads=1)
    two = run_experiment(grid, "full", tmp_path / "two", progress=False, workers=2, torch_threads=1)
    cells_one, cells_two = stored(tmp_path / "one"), stored(tmp_path / "two")
    assert len(cells_one) == 4 and {cell: results(record) for cell, record in cells_one.items()} == {
        cell: results(record) for cell, record in cells_two.items()}
    for setting in ("a", "b"):
        assert front_file(tmp_path / "one", "recgym/Synthetic-v1", setting).read_text() == front_file(
            tmp_path / "two", "recgym/Synthetic-v1", setting).read_text()
    assert [(row["method"], row["setting"], row["R_cum"], row["dpfr"]) for row in one] == [
        (row["method"], row["setting"], row["R_cum"], row["dpfr"]) for row in two]


def test_a_cell_whose_front_failed_is_reported_unrun_and_the_other_settings_run(tmp_path: Path) -> None:
    config = ExperimentConfig(name="bad", methods=("random",), envs=("recgym/Synthetic-v1",),
                              settings={"good": {"max_turn": 5}, "bad": {"max_turn": -1}}, smoke=SIZE)
    with pytest.raises(CellsFailed) as error:
        run_experiment(config, outdir=tmp_path, progress=False)
    failures = error.value.failures
    assert set(failures) == {"front:Synthetic-v1__bad", "random__Synthetic-v1__bad__s0"}
    assert "max_turn" in failures["front:Synthetic-v1__bad"]
    assert failures["random__Synthetic-v1__bad__s0"] == "RuntimeError: not run: front:Synthetic-v1__bad failed"
    assert set(stored(tmp_path)) == {"random__Synthetic-v1__good__s0"}
