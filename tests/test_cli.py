"""The ``recgym`` command line: tables, JSON, training, comparison, bench forwarding and one-line errors."""

from __future__ import annotations

import json
import sys
import types

import pytest

import recgym
from recgym import cli

SYN = "recgym/Synthetic-v0"
JSON_KEYS = {"R_cum", "R_each", "length", "coverage", "gini", "long_tail_share", "mcd", "novelty", "diversity"}


def test_eval_json_has_the_documented_keys(capsys):
    assert cli.main(["eval", "--env", SYN, "--policy", "random", "--episodes", "20", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert JSON_KEYS <= set(result)
    assert 1 <= result["length"] <= 30 and 0 < result["gini"] < 1
    # same numbers as the Python API with the same seed
    assert result["R_cum"] == pytest.approx(recgym.evaluate(recgym.agents.make_policy("random"), SYN,
                                                            episodes=20, num_envs=64).summary["R_cum"])


def test_eval_table_lists_every_metric(capsys):
    assert cli.main(["eval", "--env", SYN, "--policy", "popular", "--episodes", "10", "--mode", "Free"]) == 0
    out = capsys.readouterr().out
    assert "popular" in out and all(key in out for key in JSON_KEYS)


def test_eval_table_shows_the_v1_column_only_on_v1(capsys):
    assert cli.main(["eval", "--env", "recgym/Synthetic-v1", "--policy", "popular", "--episodes", "5"]) == 0
    v1 = capsys.readouterr().out
    assert "emerging_creator_share" in v1 and all(key in v1 for key in JSON_KEYS)
    assert cli.main(["eval", "--env", SYN, "--policy", "popular", "--episodes", "5"]) == 0
    assert "emerging_creator_share" not in capsys.readouterr().out


@pytest.mark.parametrize("argv, expected", [
    (["eval", "--env", "recgym/Nope-v0", "--policy", "random"], "valid ids: recgym/KuaiRec-v0, recgym/KuaiRand-v0"),
    (["eval", "--env", SYN, "--policy", "nope"], "valid: random, popular, oracle"),
    (["eval", "--env", SYN, "--policy", "random", "--mode", "NX_5"], "mode must be one of ['Free', 'NX_0', 'NX_10']"),
    (["eval", "--env", SYN, "--policy", "ppo"], "needs --checkpoint"),
    (["train", "--env", SYN, "--agent", "oracle"], "trainable agents: ppo, a2c, dqn"),
    (["train", "--env", SYN, "--agent", "ppo", "--timesteps", "0"], "argument --timesteps: must be an integer >= 1"),
    (["compare", "--env", SYN, "--policies", "random,nope"], "valid: random, popular"),
])
def test_bad_input_is_a_one_line_error_listing_valid_choices(capsys, argv, expected):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("recgym: error:") and expected in err


def test_train_then_eval_the_checkpoint(tmp_path, capsys):
    argv = ["train", "--env", SYN, "--agent", "a2c", "--timesteps", "512", "--logdir", str(tmp_path),
            "--episodes", "10", "--num-envs", "16"]
    assert cli.main(argv) == 0
    checkpoint = tmp_path / "a2c_Synthetic-v0_s0_1" / "model.zip"
    assert checkpoint.exists() and list(checkpoint.parent.glob("events.out.tfevents.*"))
    capsys.readouterr()
    assert cli.main(["eval", "--env", SYN, "--policy", "a2c", "--checkpoint", str(checkpoint),
                     "--episodes", "10", "--json"]) == 0
    assert JSON_KEYS <= set(json.loads(capsys.readouterr().out))


def test_compare_prints_one_table_and_logs_the_scatter(tmp_path, capsys):
    argv = ["compare", "--env", SYN, "--policies", "random,popular,ucb", "--episodes", "20",
            "--logdir", str(tmp_path), "--json"]
    assert cli.main(argv) == 0
    results = json.loads(capsys.readouterr().out)
    assert list(results) == ["random", "popular", "ucb"]
    assert results["popular"]["gini"] > results["random"]["gini"]
    assert list((tmp_path / "compare").glob("events.out.tfevents.*"))


def test_bench_forwards_its_arguments(monkeypatch):
    calls = []
    fake = types.SimpleNamespace(main=lambda argv: calls.append(argv) or 0)
    monkeypatch.setitem(sys.modules, "recgym.bench", fake)
    monkeypatch.setattr(recgym, "bench", fake, raising=False)
    assert cli.main(["bench", "--suite", "quick", "--help"]) == 0
    assert calls == [["--suite", "quick", "--help"]]


def test_option_flag_sets_simulator_options_and_rejects_unknown_ones(capsys):
    from recgym.cli import main

    assert main(["eval", "--env", "recgym/Synthetic-v0", "--policy", "popular", "--episodes", "10",
                 "--option", "popular_streak=2", "--option", "leave_window=0", "--option", "patience=0", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["length"] == 2.0  # two popular items in a row end every session
    assert main(["eval", "--policy", "random", "--option", "popular_streek=2"]) == 2
    assert "unknown option(s) ['popular_streek']" in capsys.readouterr().err


def test_compare_with_a_mode_trains_and_evaluates_in_that_mode(tmp_path, capsys):
    from recgym.cli import main

    assert main(["compare", "--env", "recgym/Synthetic-v0", "--policies", "random,ppo", "--episodes", "5",
                 "--timesteps", "256", "--mode", "Free", "--logdir", str(tmp_path), "--json"]) == 0
    assert set(json.loads(capsys.readouterr().out.strip().splitlines()[-1])) == {"random", "ppo"}


def test_compare_over_seeds_reports_t_intervals_over_seeds(tmp_path, capsys):
    argv = ["compare", "--env", "recgym/Synthetic-v0", "--policies", "random,popular", "--episodes", "30",
            "--num-envs", "16", "--seeds", "3", "--logdir", str(tmp_path), "--json"]
    assert cli.main(argv) == 0
    rows = {row["method"]: row for row in json.loads(capsys.readouterr().out)}
    assert set(rows) == {"random", "popular"} and rows["random"]["seeds"] == 3
    assert 0 < rows["random"]["R_cum_ci"] < rows["random"]["R_cum"]  # a real interval over 3 seeds
    assert rows["popular"]["gini"] > rows["random"]["gini"] + 0.05  # concentrated exposure: measured 0.994 vs 0.878
    assert len(list((tmp_path / "compare").glob("*/random__Synthetic-v0__default__s2.json"))) == 1
    assert cli.main(argv[:-1]) == 0 and "t-interval over 3 seeds" in capsys.readouterr().out  # resumed, not redone
    assert cli.main(["compare", "--policies", "random", "--seeds", "0"]) == 2
    assert "argument --seeds: must be an integer >= 1, got 0" in capsys.readouterr().err
