"""Every bundled v0 experiment config runs end to end at its ``smoke`` size (about 2.5 min for all five on
2 cores), so CI exercises the exact grids that produce docs/results.md at ``full`` size."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from recgym.experiments import bundled_configs, cells, code_version, load_config, run_experiment

#: The v0 grids. The v1 tables (issue #19) are 28-140 cells each even at smoke size (7 minutes each for
#: fairness_v1 and noise_v1 on a loaded 2-core machine): their shapes are covered by the fast tests of
#: tests/test_experiments_v1.py, their smoke runs on both worlds are measured in docs/experiments.md, and
#: one of them runs here on one world and three methods
#: (:func:`test_a_v1_config_runs_at_smoke_size_on_one_world_with_its_v1_columns`).
CONFIGS = [path for path in bundled_configs().values() if not load_config(path).is_v1]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_config_runs_at_smoke_size_and_tables_are_complete(path: Path, tmp_path: Path) -> None:
    config = load_config(path)
    size = config.size("smoke")
    rows = run_experiment(path, "smoke", tmp_path, progress=False)
    assert len(rows) == len(config.methods) * len(config.envs) * len(config.settings)
    for cell in cells(config, size):
        assert (tmp_path / f"{cell.id}.json").is_file(), cell.id
    for row in rows:
        assert row["seeds"] == size.seeds
        for key in config.columns:
            assert math.isfinite(row[key]), (row["method"], row["setting"], key)
            assert math.isfinite(row[f"{key}_ci"]) == (size.seeds > 1), (row["method"], key)
    for name in ("results.md", "results.csv", "pareto.png"):
        assert (tmp_path / name).stat().st_size > 0
    if config.is_population:
        assert (tmp_path / "fairness_over_time.png").stat().st_size > 0


def test_population_smoke_shows_the_popularity_loop_only_when_it_feeds_back(tmp_path: Path) -> None:
    run_experiment("population", "smoke", tmp_path, progress=False, methods=["popular"])
    feedback = json.loads((tmp_path / "popular__Population-v0__feedback__s0.json").read_text())["series"]
    frozen = json.loads((tmp_path / "popular__Population-v0__frozen__s0.json").read_text())["series"]
    # most-popular feeds the head: the logged popularity Gini rises (measured 0.7965 -> 0.7973 in 20 steps)
    assert feedback["popularity_gini"][-1] > feedback["popularity_gini"][0]
    np.testing.assert_allclose(frozen["popularity_gini"], frozen["popularity_gini"][0])
    assert feedback["exposure_gini"] == frozen["exposure_gini"]  # the same items are shown either way


def test_a_v1_config_runs_at_smoke_size_on_one_world_with_its_v1_columns(tmp_path: Path) -> None:
    """time_v1 at smoke size on KuaiRec-v1 with a floor, a ceiling and one of its bandits (both settings:
    sessions and 10-session lifetimes; ~11 s at load 4): the true R_cum orders them, the reference front's
    DPFR is every row's, the lifetime columns are the lifetime setting's, each cell names its code."""
    env, methods = "recgym/KuaiRec-v1", ["random", "oracle", "hyperbandit"]
    before = code_version()  # the checkout may change under a shared working tree while the cells run
    rows = run_experiment("time_v1", "smoke", tmp_path, progress=False, methods=methods, envs=[env])
    table = {(row["method"], row["setting"]): row for row in rows}
    assert sorted(table) == sorted((method, setting) for method in methods for setting in ("session", "lifetime"))
    for setting in ("session", "lifetime"):
        random, oracle, bandit = (table[method, setting] for method in methods)
        # measured R_cum: sessions 8.86 / 48.46 / 22.50, lifetimes 84.9 / 518.7 / 270.5
        assert random["R_cum"] < bandit["R_cum"] < oracle["R_cum"], setting
        # DPFR (alpha 0.5) against the setting's reference front: the oracle sits near the front's
        # utility end (measured 0.024 / 0.270), random far from it (0.796 / 0.984)
        assert 0 <= oracle["dpfr"] < 0.5 * random["dpfr"] <= 0.5, setting
        lifetime_columns = [math.isfinite(row[key]) for row in (random, oracle, bandit)
                            for key in ("tail_affinity_gain", "sessions_per_week")]
        assert all(lifetime_columns) == (setting == "lifetime") and any(lifetime_columns) == all(lifetime_columns)
    assert table["oracle", "lifetime"]["sessions_per_week"] > 1  # measured 4.63: users come back
    versions = {before, code_version()}
    for row in rows:
        cell = json.loads((tmp_path / f"{row['method']}__KuaiRec-v1__{row['setting']}__s0.json").read_text())
        assert cell["code"] in versions and cell["dpfr"] == row["dpfr"] and cell["config"]["size"]["episodes"] == 4
    assert len(list((tmp_path / "fronts").glob("*.json"))) == 2  # one reference front per setting
    for name in ("results.md", "results.csv", "pareto.png"):
        assert (tmp_path / name).stat().st_size > 0
