"""recgym fit (issue #20): interest drift fitted as one walk by replay calibration, with its resolution."""

from __future__ import annotations

import numpy as np
import pytest
from test_fit import (  # tests/ is on sys.path (pytest prepend mode)
    LOG_SLOTS,
    SESSIONS,
    SOURCE,
    SOURCE_OPTIONS,
)

from recgym.fit.drift import RESOLUTION_FLOOR, WALK_GRID, bootstrap_se, ratio, read_walk
from recgym.fit.fidelity import fidelity_report
from recgym.fit.log import simulate_log, write_frame
from recgym.fit.model import FitSettings, fit_world
from recgym.fit.readers import read_log

#: The round trip's source with 150 users (~130 sessions, ~350 impressions each): enough clicks per user
#: for the lags 11-20 in a held-out half.
DRIFT_SOURCE = {**SOURCE, "n_users": 150}
SOURCES = {
    "no drift": {"interest_drift": 0.0, "interest_walk": 0.0},
    # familiarity off, as in docs/fit.md's probes: the walk is then the only slow change in the log
    "walk 0.06": {"interest_walk": 0.06, "familiarity_click": 0.0, "familiarity_watch": 0.0},
}


@pytest.fixture(scope="module")
def drift_logs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("drift")
    return {name: read_log(write_frame(simulate_log("recgym/Synthetic-v1", SESSIONS, "random", seed=0,
                                                    num_envs=LOG_SLOTS, world_options=DRIFT_SOURCE,
                                                    **SOURCE_OPTIONS, **options)[0], folder / f"{name[:4]}.csv"))
            for name, options in SOURCES.items()}


def test_a_strong_walk_is_fitted_and_no_drift_reads_below_the_resolution(drift_logs):
    walked = fit_world(drift_logs["walk 0.06"], FitSettings(dims=16))
    drift = walked.manifest["statistics"]["drift"]
    # measured: the log's far/near ratio 0.136 reads at the grid's end (0.08; source walk 0.06 plus drift 0.05)
    assert drift["identifiable"] and walked.params["interest_walk"] == drift["walk"] >= 0.04, drift
    assert drift["resolution"] >= RESOLUTION_FLOOR and walked.params["interest_drift"] == 0.0
    curve = [np.mean(drift["calibration"][str(w)]) for w in WALK_GRID]
    # the replayed ratio falls with the walk (measured 0.34 / 0.30 / 0.20 / 0.18), the log's lies below it
    assert curve[0] - curve[-1] > 0.1 and drift["log_ratio"] < curve[-1], (curve, drift["log_ratio"])
    still = fit_world(drift_logs["no drift"], FitSettings(dims=16))
    drift = still.manifest["statistics"]["drift"]
    # measured: reads as walk 0.0095 (misfit: boredom, creator fatigue), under the floor 0.02
    assert not drift["identifiable"] and still.params["interest_walk"] == 0.0, drift
    assert drift["estimate"] <= drift["resolution"] and drift["reason"].startswith("below the resolution")


def test_drift_fidelity_row_passes_the_fitted_walk_and_fails_walk_zero(drift_logs):
    result = fit_world(drift_logs["walk 0.06"], FitSettings(dims=16, holdout=0.5))  # a held-out half: lags 11-20
    walk = result.params["interest_walk"]
    assert walk >= 0.03, result.manifest["statistics"]["drift"]  # measured 0.040 on half the log
    fitted = fidelity_report(drift_logs["walk 0.06"], result.world, result.params, result.train).row("drift_lag_ratio")
    static = fidelity_report(drift_logs["walk 0.06"], result.world, {**result.params, "interest_walk": 0.0},
                             result.train).row("drift_lag_ratio")
    # measured: real -0.02, replayed 0.12 (fitted walk, threshold 0.18) and 0.42 (walk 0, threshold 0.18)
    assert fitted.passed and not static.passed, (fitted, static)
    assert static.simulated > fitted.simulated > fitted.real


def test_lag_ratio_and_its_bootstrap():
    sums = np.array([[2.0, 4.0, 1.0, 4.0], [2.0, 4.0, 1.0, 4.0]])  # near mean 0.5, far mean 0.25
    assert ratio(sums) == pytest.approx(0.5)
    assert bootstrap_se(sums, 0) == 0.0  # identical users: no spread
    assert np.isnan(ratio(np.array([[1.0, 2.0, 0.0, 0.0]])))  # no far pairs
    spread = np.array([[2.0, 4.0, 2.0, 4.0], [2.0, 4.0, 0.0, 4.0]] * 20)
    assert 0.05 < bootstrap_se(spread, 0) < 0.25  # per-user ratios 1 and 0, 40 users: se ~ 0.5/sqrt(40) = 0.08


#: Calibration curves measured in docs/fit.md ((walk, seed) replayed ratios at walks 0 / 0.02 / 0.04 / 0.08).
STEEP = np.array([[0.438, 0.404], [0.259, 0.216], [0.168, 0.081], [0.055, 0.033]])  # 400 users, no drift
FLAT = np.array([[0.645, 0.638], [0.641, 0.634], [0.639, 0.633], [0.636, 0.634]])  # 2,000 users, issue #17 on


@pytest.mark.parametrize("curve, log_ratio, log_se, walk, reason", [
    (STEEP, 0.406, 0.023, 0.0, "below the resolution"),  # reads 0.002
    (STEEP, 0.15, 0.023, pytest.approx(0.0355, abs=0.001), "fitted"),  # 0.02 + 0.02 (0.2375 - 0.15) / 0.113
    (STEEP, 0.0, 0.023, 0.08, "fitted at the grid's end"),  # within the noise of the curve's end
    (FLAT, 0.512, 0.006, 0.0, "out of the calibrated range"),  # the 2,000-user source: misfit, not a walk
    (FLAT, 0.637, 0.006, 0.0, "below the resolution"),  # a curve that barely falls resolves nothing
])
def test_read_walk_on_measured_curves(curve, log_ratio, log_se, walk, reason):
    reading = read_walk(curve, log_ratio, log_se)
    assert reading["walk"] == walk and reading["reason"].startswith(reason), reading
    assert reading["identifiable"] == (reading["walk"] > 0) == (reason.startswith("fitted"))
    assert reading["resolution"] >= RESOLUTION_FLOOR
    if curve is FLAT:  # drop 0.008 < 2 noise units: the resolution is the grid's end
        assert reading["resolution"] == WALK_GRID[-1]
