"""Command-line hardening: every mistake is ONE line ``recgym: error: ...`` with exit status 2 (never a
traceback); ``--data-dir``; ``--torch-threads``; bundled configs by name; runs that never overwrite or
reuse each other; plots that leave the user's matplotlib backend alone."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import pytest
import torch

import recgym
from recgym import cli
from recgym.agents.callbacks import log_comparison
from recgym.experiments import fairness_over_time_plot, load_config, pareto_plot

SYN = "recgym/Synthetic-v0"
GRID = """\
methods: [random, popular]
envs: [recgym/Synthetic-v0]
smoke: {seeds: 1, timesteps: 64, episodes: 4, num_envs: 4}
"""


def one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Run the CLI, check it failed with exactly one ``recgym: error:`` line; return that line."""
    capsys.readouterr()  # what earlier calls printed (progress bars) is not part of this one's output
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("recgym: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.fixture
def blocked(tmp_path: Path) -> Path:
    """A directory path that cannot be created, even by root: its parent is a regular file."""
    (tmp_path / "a_file").write_text("x")
    return tmp_path / "a_file" / "runs"


@pytest.fixture
def restore_torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("argv, expected", [
    (["eval", "--env", SYN, "--policy", "random", "--seed", "-1"], "argument --seed: must be an integer >= 0, got -1"),
    (["eval", "--env", SYN, "--policy", "random", "--episodes", "-5"], "argument --episodes: must be an integer >= 1"),
    (["eval", "--env", SYN, "--policy", "random", "--episodes", "ten"], "argument --episodes: expected an integer >= 1, got 'ten'"),
    (["eval", "--env", SYN, "--policy", "random", "--num-envs", "0"], "argument --num-envs: must be an integer >= 1"),
    (["train", "--env", SYN, "--agent", "a2c", "--timesteps", "-100"], "argument --timesteps: must be an integer >= 1"),
    (["compare", "--env", SYN, "--policies", "random", "--seed", "-3"], "argument --seed: must be an integer >= 0"),
    (["demo", "--episodes", "0"], "argument --episodes: must be an integer >= 1"),
    (["eval", "--env", SYN], "the following arguments are required: --policy"),
    (["eval", "--env", SYN, "--policy", "random", "--option", "max_turn=abc"], "max_turn expects an integer, got 'abc'"),
    (["eval", "--env", SYN, "--policy", "random", "--data-dir", "/no/such/folder"], "'/no/such/folder' is not a directory"),
    (["eval", "--env", SYN, "--policy", "ppo", "--checkpoint", "/no/such/model.zip"], "'/no/such/model.zip' not found"),
    (["train", "--env", SYN, "--agent", "a2c", "--torch-threads", "0"], "argument --torch-threads: must be an integer >= 1"),
    (["nonsense"], "invalid choice: 'nonsense'"),
])
def test_every_cli_mistake_is_one_line_and_exit_2(capsys, argv, expected):
    assert expected in one_line_error(capsys, argv)


def test_unwritable_logdir_and_outdir_are_one_line_errors_before_any_work(capsys, blocked, tmp_path):
    err = one_line_error(capsys, ["train", "--env", SYN, "--agent", "a2c", "--timesteps", "64", "--logdir", str(blocked)])
    assert f"--logdir {str(blocked)!r} is not a writable directory" in err
    err = one_line_error(capsys, ["compare", "--env", SYN, "--policies", "random", "--episodes", "2",
                                  "--logdir", str(blocked)])
    assert "--logdir" in err and "not a writable directory" in err
    config = tmp_path / "grid.yaml"
    config.write_text(GRID)
    err = one_line_error(capsys, ["experiment", str(config), "--outdir", str(blocked)])
    assert f"output directory {str(blocked)!r} is not a writable directory" in err


@pytest.mark.parametrize("text, expected", [
    (GRID.replace("[random, popular]", "[random, popular"), "grid.yaml:2:"),  # unclosed list: line and column
    ("methods: [random]\n  envs: x: y\n", "grid.yaml:2:"),
    (GRID + "options: 5\n", "grid.yaml: options: must be a mapping of simulator options, got int"),
    (GRID + "settings: {a: 5}\n", "grid.yaml: settings.a: must be a mapping of simulator options, got int"),
    (GRID + "population: [kuairec]\n", "grid.yaml: population: must be a mapping, got list"),
    (GRID + "name: 7\n", "grid.yaml: name: must be a string, got int"),
    (GRID + "description: [a]\n", "grid.yaml: description: must be a string, got list"),
    (GRID.replace("[random, popular]", "[random, 3]"), "grid.yaml: methods: must list names (strings), got int 3"),
    ("- a\n- b\n", "grid.yaml: <top>: must be a mapping of keys, got list"),
])
def test_bad_yaml_is_one_line_naming_file_and_line_or_field(capsys, tmp_path, text, expected):
    config = tmp_path / "grid.yaml"
    config.write_text(text)
    assert expected in one_line_error(capsys, ["experiment", str(config), "--outdir", str(tmp_path / "out")])


def kuairec_folder(path: Path) -> Path:
    """A KuaiRec ``data/`` folder in the real schema: 2 users x 3 videos, watch ratios known."""
    path.mkdir(parents=True)
    rows = ["user_id,video_id,play_duration,video_duration,time,date,timestamp,watch_ratio"]
    for user, ratios in ((14, (0.5, 1.5, 3.0)), (21, (2.0, 0.1, 0.9))):
        rows += [f"{user},{video},1,1,t,20200705,0,{ratio}" for video, ratio in zip((100, 205, 310), ratios)]
    (path / "small_matrix.csv").write_text("\n".join(rows) + "\n")
    (path / "item_categories.csv").write_text('video_id,feat\n100,"[1]"\n205,"[2, 3]"\n310,"[1]"\n')
    return path


def test_data_dir_flag_and_a_data_folder_named_by_a_number(capsys, tmp_path, monkeypatch):
    kuairec_folder(tmp_path / "123")
    monkeypatch.chdir(tmp_path)
    base = ["eval", "--env", "recgym/KuaiRec-v0", "--policy", "oracle", "--episodes", "4", "--num-envs", "2", "--json"]
    assert cli.main([*base, "--data-dir", "123"]) == 0
    by_flag = json.loads(capsys.readouterr().out)
    assert cli.main([*base, "--option", "data_dir=123"]) == 0  # was converted to the int 123 and crashed
    assert json.loads(capsys.readouterr().out) == by_flag
    assert by_flag["coverage"] == pytest.approx(1.0)  # the 3-video matrix world, not the 3,327-item default
    assert cli._option("data_dir=123") == ("data_dir", "123")
    assert cli._option("max_turn=7") == ("max_turn", 7) and cli._option("boredom=0.5") == ("boredom", 0.5)


def test_torch_threads_flag_sets_torch_and_the_default_is_capped(capsys, tmp_path, restore_torch_threads, monkeypatch):
    from recgym import threads

    argv = ["compare", "--env", SYN, "--policies", "random", "--episodes", "2", "--num-envs", "2",
            "--logdir", str(tmp_path), "--json"]
    torch.set_num_threads(2)
    assert cli.main([*argv, "--torch-threads", "1"]) == 0
    assert torch.get_num_threads() == 1
    assert cli.main(argv) == 0  # no flag: the default, half the available cores capped at 4
    assert torch.get_num_threads() == max(1, min(threads.available_cores() // 2, 4))
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    assert [threads.default_torch_threads(w) for w in (1, 2)] == [1, 1]
    monkeypatch.setattr(threads, "available_cores", lambda: 16)
    assert [threads.default_torch_threads(w) for w in (1, 2, 4, 8, 32)] == [4, 4, 2, 1, 1]
    with pytest.raises(ValueError, match="workers must be an integer >= 1"):
        threads.default_torch_threads(0)
    with pytest.raises(ValueError, match="torch threads must be an integer >= 1, got True"):
        threads.set_torch_threads(True)


def test_bundled_config_runs_by_name_and_a_path_still_works(capsys, tmp_path):
    from recgym.experiments import config_path

    packaged = Path(recgym.__file__).parent / "configs" / "population.yaml"
    assert config_path("population") == config_path("population.yaml") == packaged
    assert load_config("dorl_table").name == "dorl_table"
    local = tmp_path / "grid.yaml"
    local.write_text(GRID)
    assert config_path(local) == local
    err = one_line_error(capsys, ["experiment", "no_such_grid"])
    assert "'no_such_grid' not found: neither a file nor a bundled config (dorl_table, dorl_v1, fairness_table" in err
    assert cli.main(["experiment", "population", "--methods", "random", "--outdir", str(tmp_path / "out")]) == 0
    assert "| random | Population-v0 | feedback | 2 |" in capsys.readouterr().out  # smoke: 2 seeds


def test_two_trainings_never_share_a_directory_or_return_an_old_checkpoint(capsys, tmp_path):
    base = ["train", "--env", SYN, "--agent", "a2c", "--episodes", "2", "--num-envs", "16", "--logdir", str(tmp_path)]
    assert cli.main([*base, "--timesteps", "128"]) == 0
    first = tmp_path / "a2c_Synthetic-v0_s0_1" / "model.zip"
    stamp = first.stat().st_mtime_ns
    assert cli.main([*base, "--timesteps", "256", "--option", "max_turn=10"]) == 0
    out = capsys.readouterr().out
    second = tmp_path / "a2c_Synthetic-v0_s0_2" / "model.zip"
    assert f"checkpoint: {second}" in out and first.stat().st_mtime_ns == stamp
    for path, steps, options in ((first, 128, {}), (second, 256, {"max_turn": 10})):
        model = recgym.agents.load_agent("a2c", path)
        assert model.num_timesteps == steps and model.recgym_meta["env_options"] == options
        assert list(path.parent.glob("events.out.tfevents.*"))  # the run's events beside its checkpoint


def test_experiment_refuses_cells_of_another_configuration(capsys, tmp_path):
    config, out = tmp_path / "grid.yaml", tmp_path / "out"
    config.write_text(GRID)
    assert cli.main(["experiment", str(config), "--outdir", str(out)]) == 0
    cell = out / "random__Synthetic-v0__default__s0.json"
    stamp = cell.stat().st_mtime_ns
    assert cli.main(["experiment", str(config), "--outdir", str(out)]) == 0  # same config: resumed, nothing redone
    assert cell.stat().st_mtime_ns == stamp
    config.write_text(GRID.replace("episodes: 4", "episodes: 8"))
    err = one_line_error(capsys, ["experiment", str(config), "--outdir", str(out)])
    assert f"{cell}: this cell was run with another configuration (differs in: size)" in err
    config.write_text(GRID + "options: {max_turn: 10}\n")
    assert "(differs in: options)" in one_line_error(capsys, ["experiment", str(config), "--outdir", str(out)])
    assert cell.stat().st_mtime_ns == stamp  # refused, not overwritten


def test_plotting_leaves_the_matplotlib_backend_alone(tmp_path):
    before = matplotlib.get_backend()
    matplotlib.use("svg")  # a backend other than Agg, as a notebook's inline backend is
    try:
        pareto_plot([{"method": m, "gini": g, "R_cum": r} for m, g, r in (("a", 0.5, 1.0), ("b", 0.2, 2.0))],
                    tmp_path / "pareto.png")
        series = {"exposure_gini": [0.5, 0.6], "popularity_gini": [0.7, 0.7]}
        fairness_over_time_plot([{"method": "a", "setting": "s", "series": series}] * 2, tmp_path / "time.png")
        results = {name: recgym.evaluate(name, SYN, episodes=4, num_envs=4) for name in ("random", "popular")}
        log_comparison(results, tmp_path)
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(before)
    assert (tmp_path / "pareto.png").stat().st_size > 1000 and (tmp_path / "time.png").stat().st_size > 1000
    assert list((tmp_path / "compare").glob("events.out.tfevents.*"))
    assert (tmp_path / "pareto.png").read_bytes()[:4] == b"\x89PNG"
