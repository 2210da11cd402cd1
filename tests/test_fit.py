"""recgym fit (issue #20): own logs, readers and their errors, the world dir, the fit's round trip."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import scipy.stats

import recgym  # registers the ids; its folder holds the package data
from recgym.cli import main
from recgym.envs import population_v0
from recgym.envs.sb3 import SB3VecEnv
from recgym.evaluation import evaluate
from recgym.experiments import load_config, run_experiment
from recgym.fit.fidelity import fidelity_report, rate_row
from recgym.fit.log import LOG_COLUMNS, simulate_log, write_frame, write_kuairec_log
from recgym.fit.model import FitSettings, fit_world
from recgym.fit.readers import read_log
from recgym.fit.worlddir import WorldDirError, load_world, save_world_dir
from recgym.loaders import DataFileError
from recgym.params import SIGNALS, SimParams
from recgym.users import activity_levels
from recgym.worlds import resolve_world

#: The round trip's source: a small Synthetic-v1 world (fits in seconds).
SOURCE = {"n_users": 400, "n_items": 300, "n_categories": 8, "n_creators": 40, "embed_dim": 16}
SESSIONS = 20_000
#: The source runs the v1 user model with the issue #17 mechanisms this fit does not model switched off
#: (acquired taste, novelty seeking, daily and weekly cycles; those its SimParams has: they are landing
#: while this is written), so the recovery tolerances measure the fit, not a mechanism it leaves out.
SOURCE_OPTIONS = {name: 0.0 for name in ("taste_weight", "taste_valley", "novelty_weight", "daily_cycle", "weekly_cycle")
                  if name in {f.name for f in dataclasses.fields(SimParams)}}
ROUND_TRIP_POLICIES = ("random", "popular", "oracle", "debias-popular")
#: Sessions open at once while the source log is written: well below the 400 users, so that a user due
#: back rarely waits for a free slot and the logged return gaps are the drawn ones (docs/fit.md).
LOG_SLOTS = 16


@pytest.fixture(scope="module")
def source_log(tmp_path_factory):
    frame, world = simulate_log("recgym/Synthetic-v1", SESSIONS, "random", seed=0, num_envs=LOG_SLOTS,
                                world_options=SOURCE, **SOURCE_OPTIONS)
    path = write_frame(frame, tmp_path_factory.mktemp("log") / "log.csv")
    return path, frame, world


@pytest.fixture(scope="module")
def fitted(source_log, tmp_path_factory):
    path, _, _ = source_log
    log = read_log(path)
    result = fit_world(log, FitSettings(dims=16))
    world_dir = save_world_dir(tmp_path_factory.mktemp("fit") / "world", result.world, result.params,
                               result.manifest, result.extra_arrays)
    return log, result, world_dir


def test_write_log_is_the_platform_log_and_reproducible(source_log):
    _, frame, world = source_log
    assert tuple(frame.columns) == LOG_COLUMNS
    assert set(np.unique(frame["click"])) == {0, 1}
    assert (frame.loc[frame["click"] == 0, "watch_ratio"] == 0).all()
    assert frame["session_id"].nunique() == SESSIONS
    firsts = frame.groupby("session_id")["position"].agg(["min", "max", "count"])
    assert (firsts["min"] == 0).all() and (firsts["max"] == firsts["count"] - 1).all()
    # sessions start on the platform's return clock: active users come back sooner (measured Spearman
    # -0.91 between a user's mean logged gap and the source's activity; uniformly drawn days: no relation)
    starts = frame[frame["position"] == 0].sort_values(["user_id", "timestamp"])
    gaps = starts.groupby("user_id")["timestamp"].diff().groupby(starts["user_id"]).mean().dropna()
    activity = activity_levels(world)[gaps.index.to_numpy()]
    assert scipy.stats.spearmanr(gaps.to_numpy(), activity).statistic < -0.6
    with pytest.raises(ValueError, match="episode='lifetime': a log is a platform's sessions"):
        simulate_log("recgym/Synthetic-v1", 10, episode="lifetime", world_options=SOURCE)
    again, _ = simulate_log("recgym/Synthetic-v1", 50, "random", seed=3, world_options=SOURCE)
    same, _ = simulate_log("recgym/Synthetic-v1", 50, "random", seed=3, world_options=SOURCE)
    assert again.equals(same)


def test_generic_reader_reads_back_the_log(source_log):
    path, frame, _ = source_log
    log = read_log(path)
    assert (log.n_rows, log.n_sessions) == (len(frame), SESSIONS)
    assert log.signal("click").sum() == frame["click"].sum()
    assert np.array_equal(log.item_ids[log.item], frame["item_id"].to_numpy())


def test_round_trip_recovers_the_source(source_log, fitted):
    _, _, source = source_log
    log, result, _ = fitted
    world = result.world
    quality = np.corrcoef(world.item_quality, source.item_quality[log.item_ids])[0, 1]
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, world.n_users, 20_000), rng.integers(0, world.n_items, 20_000)
    fitted_sat = world.true_affinity(np.arange(world.n_users))[users, items]
    true_sat = source.true_affinity(log.user_ids)[users][:, log.item_ids][np.arange(users.size), items]
    affinity = scipy.stats.spearmanr(fitted_sat, true_sat).statistic
    # measured 0.38 and 0.43 (docs/fit.md): the item bias also holds each item's mean affinity, so quality
    # is only partly separable from taste; the leave rule (DORL window 4) is recovered exactly
    assert quality > 0.25, quality
    assert affinity > 0.3, affinity
    assert (result.params["leave_window"], result.params["leave_threshold"]) == (4, 0)
    # return gaps: each user's activity (measured Spearman 0.88 with the source's) and the retention weight
    # (source 0.3; measured 0.14: the fitted satisfaction scale is ~1.8x the source's, docs/fit.md)
    activity = scipy.stats.spearmanr(activity_levels(world), activity_levels(source)[log.user_ids]).statistic
    assert activity > 0.75, activity
    assert 0.05 < result.params["retention_weight"] < 0.3, result.params
    # post-click intercepts (measured within 0.25 of the logging model's for like/follow/comment/forward;
    # hate's -6.3 vs -7.5: its slope -2 on a log satisfaction that absorbed the familiarity inflation, docs/fit.md)
    intercepts = result.manifest["statistics"]["post_click_intercepts"]
    assert set(intercepts) == {"like", "follow", "comment", "forward", "hate"}
    assert result.params["post_click_intercepts"] == {name: entry["fitted"] for name, entry in intercepts.items()}
    for name in ("like", "follow", "comment", "forward"):
        assert abs(intercepts[name]["fitted"] - intercepts[name]["simulator"]) < 0.6, intercepts
    report = fidelity_report(log, world, result.params, result.train)
    failed = [row.name for row in report.rows if row.verdict == "FAIL"]
    assert not failed, report.markdown("round trip")


#: A source whose familiarity is what the fit measures: a creator among the session's recent impressions
#: (no followed creators; creator fatigue and boredom, which act on the same rows, off).
FAMILIARITY_SOURCE = {**SOURCE, "followed_creators": 0}
FAMILIARITY_OPTIONS = {**SOURCE_OPTIONS, "creator_fatigue": 0.0, "boredom": 0.0}


@pytest.mark.parametrize("pulls, expected", [
    ({}, {"familiarity_click": (0.6, 1.2), "familiarity_watch": (0.45, 0.9)}),  # source 1.0 / 0.7; measured 0.83 / 0.64
    ({"familiarity_click": 0.0, "familiarity_watch": 0.0}, {"familiarity_click": (0.0, 0.1),
                                                            "familiarity_watch": (0.0, 0.1)}),  # measured 0 / 0
])
def test_familiarity_pulls_are_fitted_on_random_exposure(tmp_path, pulls, expected):
    frame, _ = simulate_log("recgym/Synthetic-v1", SESSIONS, "random", seed=0, num_envs=LOG_SLOTS,
                            world_options=FAMILIARITY_SOURCE, **FAMILIARITY_OPTIONS, **pulls)
    result = fit_world(read_log(write_frame(frame, tmp_path / "log.csv")), FitSettings(dims=16))
    assert result.manifest["statistics"]["familiarity"] == "fitted"
    for name, (low, high) in expected.items():
        assert low <= result.params[name] <= high, (name, result.params[name])
    assert result.world.user_followed.shape == (result.world.n_users, 0)  # the estimate's familiarity
    if pulls:  # without random exposure the pulls are not identifiable: off, and the manifest says why
        chosen = read_log(write_frame(frame.assign(is_random=0), tmp_path / "chosen.csv"))
        off = fit_world(chosen, FitSettings(dims=4, iterations=2))
        assert off.params["familiarity_click"] == off.params["familiarity_watch"] == 0.0
        assert off.manifest["statistics"]["familiarity"].startswith("not identifiable: 0 random-exposure rows")


def test_post_click_intercepts_knob_moves_the_logged_rates():
    assert SimParams().post_click_intercepts == (-4.5, -6.5, -6.0, -6.5, -7.5)  # the v1 logging model's, unchanged
    assert SimParams(post_click_intercepts={"hate": -3}).post_click_intercepts == (-4.5, -6.5, -6.0, -6.5, -3.0)
    for bad, message in (({"hat": 1.0}, r"post_click_intercepts: unknown signal\(s\) \['hat'\]"),
                         ({"like": 200}, r"post_click_intercepts\['like'\] must be a number in \[-100, 100\], got 200"),
                         ([1.0], r"post_click_intercepts must be a dict")):
        with pytest.raises(ValueError, match=message):
            SimParams(post_click_intercepts=bad)
    with pytest.raises(ValueError, match="post_click_intercepts"):  # a v1 knob: a v0 world refuses it
        gym.make("recgym/Synthetic-v0", post_click_intercepts={"hate": -3.0}).reset(seed=0)

    def rates(**options):
        frame, _ = simulate_log("recgym/Synthetic-v1", 3000, "random", seed=0, num_envs=64, world_options=SOURCE,
                                **options)
        clicked = frame[frame["click"] == 1]
        return clicked["hate"].mean(), clicked["like"].mean()

    hate, like = rates()
    raised_hate, same_like = rates(post_click_intercepts={"hate": -3.0})
    assert raised_hate > 10 * hate and raised_hate > 0.05, (hate, raised_hate)  # measured 0.0013 -> 0.097
    assert same_like == like  # the other signals' draws are untouched


def test_rate_rows_can_fail_on_a_rare_signal():
    rng = np.random.default_rng(0)
    n = 14_000  # the round trip's held-out impressions; hate fired on 0.17% of them (24 events)
    real = (rng.random(n) < 0.0017).astype(np.float64)
    close = (rng.random(n) < 0.0015).astype(np.float64)
    wrong = (rng.random(n) < 0.0004).astype(np.float64)  # the replay before the fitted intercepts ran (docs/fit.md)
    assert rate_row("hate", real, close, binary=True).verdict == "pass"
    row = rate_row("hate", real, wrong, binary=True)
    assert row.verdict == "FAIL" and row.distance > 0.6 and row.threshold < row.distance, row
    too_few = rate_row("hate", real[:2000], wrong[:2000], binary=True)
    assert too_few.verdict == f"n/a: too few events (n={int(real[:2000].sum())})" and not too_few.passed
    common = rate_row("click", (rng.random(n) < 0.3).astype(np.float64), (rng.random(n) < 0.33).astype(np.float64),
                      binary=True)
    assert common.threshold == 0.2 and common.verdict == "pass"  # a common signal keeps the 20% tolerance


def test_fidelity_report_fails_a_badly_wrong_rare_rate(fitted):
    log, result, _ = fitted
    held_clicks = np.flatnonzero(~result.train & (log.signal("click") == 1))
    signals = log.signals.copy()
    hate = SIGNALS.index("hate")
    signals[np.random.default_rng(1).choice(held_clicks, held_clicks.size // 25, replace=False), hate] = 1.0
    report = fidelity_report(dataclasses.replace(log, signals=signals), result.world, result.params, result.train)
    row = report.row("rate:hate")
    assert row.verdict == "FAIL" and row.real > 5 * row.simulated, row
    assert "FAIL" in report.markdown("wrong hate")


def _return_gaps_h(frame: pd.DataFrame) -> np.ndarray:
    """Hours between a user's consecutive session starts in a generic-schema log."""
    starts = frame[frame["position"] == 0].sort_values(["user_id", "timestamp"])
    same = starts["user_id"].to_numpy()[1:] == starts["user_id"].to_numpy()[:-1]
    return np.diff(starts["timestamp"].to_numpy())[same] / 3600


def test_fitted_world_returns_its_users_like_the_source(source_log, fitted):
    _, frame, _ = source_log
    _, _, world_dir = fitted
    # the fitted world's own log, through the simulator's kernels (session_rate, retention_weight, activity):
    # measured KS 0.027 at 6,000 sessions (median gap 16.1 h vs the source's 17.1 h), 0.005 at 20,000
    own, _ = simulate_log("recgym/Fitted-v1", 6000, "random", seed=1, num_envs=LOG_SLOTS, world_dir=str(world_dir))
    real, simulated = _return_gaps_h(frame), _return_gaps_h(own)
    assert scipy.stats.ks_2samp(real, simulated).statistic < 0.06, (np.median(real), np.median(simulated))


def test_round_trip_keeps_the_ranking_of_baseline_policies(fitted):
    _, _, world_dir = fitted
    source = {name: evaluate(name, "recgym/Synthetic-v1", episodes=300, seed=0, world_options=SOURCE,
                             **SOURCE_OPTIONS).summary["R_cum"] for name in ROUND_TRIP_POLICIES}
    venv = gym.make_vec("recgym/Fitted-v1", num_envs=64, vectorization_mode="vector_entry_point",
                        world_dir=str(world_dir), autoreset_mode="SameStep")
    fitted_returns = {name: evaluate(name, venv, episodes=300, seed=0).summary["R_cum"] for name in ROUND_TRIP_POLICIES}
    tau = scipy.stats.kendalltau([source[n] for n in ROUND_TRIP_POLICIES],
                                 [fitted_returns[n] for n in ROUND_TRIP_POLICIES]).statistic
    assert tau >= 0.8, (source, fitted_returns)


def test_fitted_id_runs_single_and_vector(fitted):
    _, result, world_dir = fitted
    env = gym.make("recgym/Fitted-v1", world_dir=world_dir)
    obs, _ = env.reset(seed=0)
    assert env.unwrapped.params.leave_window == result.params["leave_window"]
    fitted_intercepts = result.params["post_click_intercepts"]  # the world runs its fitted intercepts
    assert env.unwrapped.params.post_click_intercepts == tuple(fitted_intercepts[name] for name in
                                                               ("like", "follow", "comment", "forward", "hate"))
    obs, *_ = env.step(env.action_space.sample())
    assert obs["signals"].shape[1] == 8
    with pytest.raises(ValueError, match="needs world_dir"):
        gym.make("recgym/Fitted-v1")
    sb3 = SB3VecEnv("recgym/Fitted-v1", num_envs=4, world_dir=str(world_dir))
    assert sb3.reset()["signals"].shape == (4, 10, 8)
    population = population_v0.parallel_env(world="fitted", world_dir=str(world_dir), n_users=4)
    observations, _ = population.reset(seed=0)
    assert len(observations) == 4 and population.world.fingerprint == result.world.fingerprint


def test_fitted_world_is_first_class_in_the_cli_and_resolve_world(fitted, tmp_path, capsys):
    _, result, world_dir = fitted
    assert resolve_world(world_dir).fingerprint == result.world.fingerprint
    assert resolve_world(f"{world_dir}/").fingerprint == result.world.fingerprint
    with pytest.raises(ValueError, match=r"missing/manifest\.json: not found"):
        resolve_world(tmp_path / "missing")
    fitted_env = ["--env", "recgym/Fitted-v1", "--world-dir", str(world_dir), "--episodes", "40"]
    assert main(["eval", *fitted_env, "--policy", "popular", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)["R_cum"]
    direct = evaluate("popular", "recgym/Fitted-v1", episodes=40, seed=0, world_dir=str(world_dir)).summary["R_cum"]
    source = evaluate("popular", "recgym/Synthetic-v1", episodes=40, seed=0, world_options=SOURCE).summary["R_cum"]
    assert printed == pytest.approx(direct) and printed != pytest.approx(source)
    assert main(["compare", *fitted_env, "--policies", "random,popular", "--logdir", str(tmp_path / "runs"),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["popular"]["R_cum"] == pytest.approx(direct)
    damaged = shutil.copytree(world_dir, tmp_path / "damaged")
    np.save(damaged / "item_emb.npy", np.zeros_like(result.world.item_emb))
    for folder, message in ((tmp_path / "missing", "manifest.json: not found"),
                            (damaged, "item_emb.npy: checksum differs")):
        assert main(["eval", "--env", "recgym/Fitted-v1", "--world-dir", str(folder), "--policy", "random"]) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and message in error, error
    assert main(["eval", "--env", "recgym/Fitted-v1", "--policy", "random"]) == 2
    assert "needs world_dir" in capsys.readouterr().err


def test_fitted_world_runs_in_compare_over_seeds_and_experiment_configs(fitted, tmp_path, capsys):
    _, _, world_dir = fitted
    assert main(["compare", "--env", "recgym/Fitted-v1", "--world-dir", str(world_dir), "--policies", "random,popular",
                 "--seeds", "2", "--episodes", "20", "--num-envs", "16", "--logdir", str(tmp_path / "runs"),
                 "--json"]) == 0
    compared = {row["method"]: row["R_cum"] for row in json.loads(capsys.readouterr().out)}
    config = tmp_path / "fitted.yaml"
    config.write_text(f"methods: [random, popular]\nenvs: [recgym/Fitted-v1]\noptions: {{world_dir: '{world_dir}'}}\n"
                      "full: {seeds: 2, episodes: 20, num_envs: 16}\n")
    rows = run_experiment(config, size="full", outdir=tmp_path / "grid", progress=False)
    assert {row["method"]: row["R_cum"] for row in rows} == pytest.approx(compared)  # same cells, same seeds
    assert compared["random"] != pytest.approx(compared["popular"])
    config.write_text("methods: [random]\nenvs: [recgym/Fitted-v1]\n")
    with pytest.raises(ValueError, match="recgym/Fitted-v1 runs alone, with options.world_dir"):
        load_config(config)


def test_world_dir_refuses_damage_and_other_versions(fitted, tmp_path):
    _, result, _ = fitted
    target = save_world_dir(tmp_path / "w", result.world, result.params, result.manifest)
    world, params = load_world(target)
    assert world.fingerprint == result.world.fingerprint and params == result.params
    manifest = json.loads((target / "manifest.json").read_text())
    assert manifest["params"]["taste_valley"] == 0.0
    del manifest["params"]["taste_valley"]  # a world fitted before the acquired tastes' valley existed
    (target / "manifest.json").write_text(json.dumps(manifest))
    assert load_world(target)[1] == result.params  # read as off, not as SimParams' default 0.65
    np.save(target / "item_quality.npy", np.zeros(result.world.n_items, np.float32))
    with pytest.raises(WorldDirError, match=r"item_quality\.npy: checksum differs"):
        load_world(target)
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["format_version"] = 99
    (target / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(WorldDirError, match="format_version 99"):
        load_world(target)
    manifest["format_version"] = 1  # the first pass's worlds: user_features[:, 0] was no activity level
    (target / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(WorldDirError, match=r"format_version 1; this recgym reads versions 2\.\.3 \(refit"):
        load_world(target)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "keep.txt").write_text("mine")
    with pytest.raises(WorldDirError, match="not a recgym world dir"):
        save_world_dir(tmp_path / "data", result.world, result.params, result.manifest)


def _set_field(text: str, line: int, column: str, value: str) -> str:
    """``text`` (a CSV) with ``column`` of file line ``line`` set to ``value``."""
    lines = text.splitlines()
    fields = lines[line - 1].split(",")
    fields[lines[0].split(",").index(column)] = value
    lines[line - 1] = ",".join(fields)
    return "\n".join(lines) + "\n"


def _fit_cli(data, out, *extra):
    return main(["fit", str(data), "--out", str(out), "--dims", "4", "--iterations", "2", *extra])


@pytest.mark.parametrize("edit, message", [
    (lambda text: text.replace("watch_ratio", "watch"), r"log\.csv: line 1: missing column\(s\) \['watch_ratio'\]"),
    (lambda text: text.splitlines()[0] + "\n", r"log\.csv: no data rows after the header"),
    (lambda text: _set_field(text, 6, "click", "7"), r"log\.csv: line 6, column 'click': expected 0 or 1, got 7"),
    (lambda text: _set_field(text, 9, "watch_ratio", "inf"), r"line 9, column 'watch_ratio': expected a finite number"),
    (lambda text: _set_field(text, 7, "category", "3|x"), r"line 7, column 'category': expected category ids in"),
    (lambda text: _set_field(text, 4, "user_id", ""), r"line 4, column 'user_id': expected an id, got an empty field"),
    (lambda text: "\n".join(text.splitlines()[:40]) + "\n", "too small to fit"),
])
def test_bad_input_is_one_line_and_writes_nothing(source_log, tmp_path, capsys, edit, message):
    path, _, _ = source_log
    bad = tmp_path / "log.csv"
    bad.write_text(edit(path.read_text()))
    assert _fit_cli(bad, tmp_path / "world") == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("recgym: error: "), error
    assert __import__("re").search(message, error), error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.csv"]


def test_parquet_log_reads_and_fits_like_its_csv(source_log, fitted, tmp_path):
    path, frame, _ = source_log
    log, result, _ = fitted
    parquet = write_frame(frame, tmp_path / "log.parquet")
    again = read_log(parquet)
    for name in ("user", "item", "session", "position", "signals", "random", "user_ids", "item_ids", "item_cats",
                 "item_creator"):
        assert np.array_equal(getattr(again, name), getattr(log, name)), name
    assert np.allclose(again.timestamp, log.timestamp, rtol=0, atol=1e-3) and again.logged == log.logged
    # a Parquet timestamp column (date-time) is read as seconds since 1970
    stamped = frame.assign(timestamp=pd.to_datetime(frame["timestamp"], unit="s").dt.tz_localize("UTC"))
    assert np.allclose(read_log(write_frame(stamped, tmp_path / "stamped.parquet")).timestamp, log.timestamp, atol=1e-3)
    refit = fit_world(again, FitSettings(dims=16))
    assert refit.params["leave_window"] == result.params["leave_window"]
    assert refit.params["click_base"] == pytest.approx(result.params["click_base"], abs=1e-6)


@pytest.mark.parametrize("edit, message", [
    (lambda frame: frame.drop(columns=["watch_ratio"]), r"log\.parquet: line 1: missing column\(s\) \['watch_ratio'\]"),
    (lambda frame: frame.assign(click=np.where(np.arange(len(frame)) == 4, 7, frame["click"])),
     r"log\.parquet: row 5, column 'click': expected 0 or 1, got 7"),
    (lambda frame: frame.assign(timestamp=np.where(np.arange(len(frame)) == 2, np.inf, frame["timestamp"])),
     r"log\.parquet: row 3, column 'timestamp': expected a finite number"),
    (lambda frame: frame.head(0), r"log\.parquet: no data rows after the header"),
])
def test_bad_parquet_is_one_line_naming_row_and_column(source_log, tmp_path, capsys, edit, message):
    _, frame, _ = source_log
    bad = write_frame(edit(frame.head(200)), tmp_path / "log.parquet")
    assert _fit_cli(bad, tmp_path / "world") == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and __import__("re").search(message, error), error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.parquet"]


def test_parquet_without_pyarrow_names_the_extra(source_log, tmp_path, monkeypatch):
    _, frame, _ = source_log
    parquet = write_frame(frame.head(50), tmp_path / "log.parquet")
    (tmp_path / "text.parquet").write_text("user_id,item_id\n1,2\n")
    with pytest.raises(DataFileError, match=r"text\.parquet: not a readable table"):
        read_log(tmp_path / "text.parquet")

    def no_pyarrow(*args, **kwargs):
        raise ImportError("Unable to find a usable engine; tried using: 'pyarrow', 'fastparquet'.")

    monkeypatch.setattr(pd, "read_parquet", no_pyarrow)
    with pytest.raises(DataFileError, match=r"log\.parquet: reading Parquet needs pyarrow: pip install "
                                            r"'recgym\[parquet\]' \(Unable to find a usable engine"):
        read_log(parquet)


def test_cli_log_then_fit_with_report(source_log, tmp_path, capsys):
    small = tmp_path / "small.csv"
    assert main(["log", "--sessions", "30", "--out", str(small), "--world-option", "n_users=50",
                 "--world-option", "n_items=60", "--world-option", "embed_dim=8"]) == 0
    assert pd.read_csv(small)["session_id"].nunique() == 30
    path, _, _ = source_log
    world_dir = tmp_path / "world"
    assert _fit_cli(path, world_dir, "--report") == 0
    assert "statistics within their thresholds" in capsys.readouterr().out
    assert {"manifest.json", "report.md", "report.png", "item_emb.npy", "return_gaps.npy"} <= {
        p.name for p in world_dir.iterdir()}
    (world_dir / "report.md").unlink()
    assert _fit_cli(path, world_dir) == 0  # a world dir is replaced whole, through a staging folder
    assert not (world_dir / "report.md").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.csv", "world"]


def test_kuairec_folder_quirks(source_log, tmp_path):
    _, frame, world = source_log
    folder = write_kuairec_log(frame.head(3000), world, tmp_path / "kuairec")
    big = (folder / "big_matrix.csv").read_text().splitlines()
    small = [big[0]] + [line.replace(line.split(",")[6], "", 1) if k % 3 == 0 else line
                        for k, line in enumerate(big[1:200])] + big[1:4]
    (folder / "small_matrix.csv").write_text("\n".join(small) + "\n")
    feats = (folder / "item_categories.csv").read_text()
    assert '"[' in feats
    log = read_log(folder, "kuairec")
    assert log.n_rows == 3000 + 202
    assert log.random.sum() == 202 and (log.session[log.random & np.isnan(log.timestamp)] == -1).all()
    assert np.isnan(log.timestamp).sum() == 67
    assert log.item_cats.sum(axis=1).min() >= 1
    (folder / "item_categories.csv").write_text('video_id,feat\n0,"[8, x]"\n')
    with pytest.raises(DataFileError, match=r"item_categories\.csv: line 2, column 'feat'"):
        read_log(folder, "kuairec")


def test_kuairand_folder_with_random_exposure(tmp_path):
    data = Path(recgym.__file__).parent / "data"
    shutil.copy(data / "kuairand_pure_items.csv", tmp_path / "video_features_basic_pure.csv")
    shutil.copy(data / "kuairand_pure_users.csv.gz", tmp_path / "user_features_pure.csv")  # read by its gzip bytes
    rng = np.random.default_rng(0)
    for name, rows in (("log_standard_4_08_to_4_21_pure.csv", 3000), ("log_random_4_22_to_5_08_pure.csv", 1000)):
        click = rng.integers(0, 2, rows)
        pd.DataFrame({
            "user_id": rng.integers(0, 50, rows), "video_id": rng.integers(0, 200, rows),
            "time_ms": 1_649_376_000_000 + np.sort(rng.integers(0, 10**9, rows)),
            "is_click": click, "is_like": click * (rng.random(rows) < 0.1), "is_follow": 0, "is_comment": 0,
            "is_forward": 0, "is_hate": 0, "long_view": click * (rng.random(rows) < 0.3),
            "play_time_ms": click * rng.integers(0, 20_000, rows), "duration_ms": rng.integers(5_000, 20_000, rows),
            "is_rand": int(name.startswith("log_random")), "tab": 1,
        }).to_csv(tmp_path / name, index=False)
    log = read_log(tmp_path, "kuairand")
    assert (log.n_rows, int(log.random.sum())) == (4000, 1000)
    assert log.user_features.shape == (log.n_users, 34) and log.item_cats.shape[0] == log.n_items
    watch = log.signal("watch_ratio")
    assert (watch[log.signal("click") == 0] == 0).all() and watch.max() < 4
    settings = FitSettings(dims=4, iterations=2, min_rows=100)
    result = fit_world(log, settings)
    assert result.manifest["statistics"]["click_model_on"] == "random exposure"
    # KuaiRand's own user features keep their activity degrees; only the base return rate is fitted
    assert result.manifest["statistics"]["return_model"] == "fitted"
    assert np.array_equal(result.world.user_features, np.clip(log.user_features, -1, 1).astype(np.float32))
    again = fit_world(log, settings)  # the seed makes a fit reproducible
    assert again.world.fingerprint == result.world.fingerprint and again.params == result.params
    frame = pd.read_csv(tmp_path / "log_random_4_22_to_5_08_pure.csv")
    frame.loc[10, "play_time_ms"] = -5
    frame.to_csv(tmp_path / "log_random_4_22_to_5_08_pure.csv", index=False)
    with pytest.raises(DataFileError, match=r"log_random_4_22_to_5_08_pure\.csv: line 12, column 'play_time_ms'"):
        read_log(tmp_path, "kuairand")


def test_a_log_without_time_fits_without_a_leave_model(source_log, tmp_path):
    _, frame, _ = source_log
    untimed = frame.drop(columns=["session_id", "position"]).assign(timestamp=np.nan)
    log = read_log(write_frame(untimed, tmp_path / "untimed.csv"))
    assert log.n_sessions == 0 and (log.session == -1).all()
    result = fit_world(log, FitSettings(dims=4, iterations=2))
    assert "leave_window" not in result.params and result.manifest["statistics"]["leave_rule_survival_distance"] is None
    assert result.extra_arrays["return_gaps"].size == 0
    # no gaps: SimParams' return model, every user at its base rate (never a negative activity)
    assert "session_rate" not in result.params and np.allclose(activity_levels(result.world), 1.0)


def test_fit_settings_are_validated():
    with pytest.raises(ValueError, match=r"fit setting holdout must be a number in \[0.0, 0.9\], got 2"):
        FitSettings(holdout=2)
    with pytest.raises(ValueError, match="fit setting dims must be an integer"):
        FitSettings(dims=3.5)


def test_source_world_is_the_one_logged(source_log):
    _, _, world = source_log
    assert world.fingerprint == resolve_world("synthetic-v1", **SOURCE).fingerprint
