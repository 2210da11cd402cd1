"""The experiment runner's worker processes (``--workers``): the same results as one process, finished cells
kept and skipped on the next run, a failing cell reported by name while the others are stored."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from recgym.cli import main
from recgym.experiments import CellsFailed, ExperimentConfig, Size, run_experiment

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZE = Size(seeds=2, timesteps=64, episodes=8, num_envs=8)


def grid(settings: dict[str, dict[str, int]], methods: tuple[str, ...] = ("random",)) -> ExperimentConfig:
    """A tiny grid on the synthetic world (``smoke`` size :data:`SIZE`)."""
    return ExperimentConfig(name="workers", methods=methods, envs=("recgym/Synthetic-v0",), settings=settings,
                            options={"max_turn": 10}, smoke=SIZE)


def stored(outdir: Path) -> dict[str, dict]:
    """Cell id -> the cell's stored JSON record."""
    return {path.stem: json.loads(path.read_text()) for path in sorted(outdir.glob("*.json"))}


def event_pids(outdir: Path) -> set[int]:
    """The process ids that wrote the cells' evaluation TensorBoard files (``events.out.tfevents.T.HOST.PID.N``)."""
    return {int(path.name.split(".")[-2]) for path in outdir.glob("tb/*/eval/events.out.tfevents.*")}


def test_two_workers_give_bit_identical_cells_to_one(tmp_path: Path) -> None:
    config = grid({"default": {}}, methods=("random", "ppo"))  # ppo trains: SB3 learning in each worker
    one = run_experiment(config, outdir=tmp_path / "one", progress=False, workers=1, torch_threads=1)
    two = run_experiment(config, outdir=tmp_path / "two", progress=False, workers=2, torch_threads=1)
    assert event_pids(tmp_path / "one") == {os.getpid()}
    assert event_pids(tmp_path / "two") and os.getpid() not in event_pids(tmp_path / "two")  # really elsewhere
    cells_one, cells_two = stored(tmp_path / "one"), stored(tmp_path / "two")
    assert len(cells_one) == 4 and cells_one == cells_two  # every metric and per-episode value, bit for bit
    assert one == two


def test_failing_cell_is_named_others_are_stored_and_a_rerun_completes_the_grid(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(CellsFailed) as error:
        run_experiment(grid({"good": {}, "bad": {"max_turn": -1}}), outdir=out, progress=False, workers=2)
    bad = {"random__Synthetic-v0__bad__s0", "random__Synthetic-v0__bad__s1"}
    assert set(error.value.failures) == bad
    assert all("max_turn" in reason and "\n" not in reason for reason in error.value.failures.values())
    good = stored(out)
    assert set(good) == {"random__Synthetic-v0__good__s0", "random__Synthetic-v0__good__s1"}
    stamps = {cell: (out / f"{cell}.json").stat().st_mtime_ns for cell in good}
    # the next run, with the failed setting fixed, runs only the missing cells and completes the table
    rows = run_experiment(grid({"good": {}, "bad": {"max_turn": 5}}), outdir=out, progress=False, workers=2)
    assert {cell: (out / f"{cell}.json").stat().st_mtime_ns for cell in good} == stamps
    assert set(stored(out)) == set(good) | bad and {row["setting"] for row in rows} == {"good", "bad"}


def test_cli_reports_each_failed_cell_on_one_line_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["compare", "--env", "recgym/Synthetic-v0", "--policies", "random", "--seeds", "2", "--workers", "2",
            "--episodes", "8", "--num-envs", "8", "--option", "max_turn=-1", "--logdir", str(tmp_path)]
    assert main(argv) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("recgym: error:")]  # not tqdm's
    assert sorted(line.split(" failed:")[0] for line in lines) == [
        f"recgym: error: cell random__Synthetic-v0__default__s{seed}" for seed in (0, 1)]
    assert all("max_turn" in line for line in lines)
    assert main(argv[:5] + ["--seeds", "1", "--workers", "2"]) == 2  # --workers needs cells to run at once
    assert "--workers" in capsys.readouterr().err
