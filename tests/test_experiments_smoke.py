"""Every bundled v0 experiment config runs end to end at its ``smoke`` size (about 2.5 min for all five on
2 cores), so CI exercises the exact grids that produce docs/results.md at ``full`` size."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from recgym.experiments import bundled_configs, cells, load_config, run_experiment

#: The v0 grids. The v1 tables (issue #19) are 28-140 cells each even at smoke size (7 minutes each for
#: fairness_v1 and noise_v1 on a loaded 2-core machine): their shapes are covered by the fast tests of
#: tests/test_experiments_v1.py, and their smoke runs on both worlds are measured in docs/experiments.md.
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
