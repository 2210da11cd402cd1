"""recgym's SB3 callbacks: the learning curve on the truth (TruthCurve) outside any training run."""

from __future__ import annotations

import pytest
from stable_baselines3.common.logger import configure
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import recgym
from recgym.agents.callbacks import TruthCurve

SYN = "recgym/Synthetic-v1"


def test_truth_curve_logs_and_keeps_one_point_per_step_count(tmp_path):
    clock = {"steps": 100}
    logger = configure(str(tmp_path / "curve"), ["tensorboard"])
    curve = TruthCurve(SYN, 16, freq=50, options={"max_turn": 10}, seed=3, num_envs=8,
                       scorer=lambda result: {"twice_gini": 2 * result.summary["gini"]},
                       policy=lambda: "oracle", steps=lambda: clock["steps"], logger=logger, at_end=False,
                       points=[{"steps": 40, "R_cum": 1.0}])  # an earlier run's point, continued
    result = curve.evaluate()
    assert result.summary == recgym.evaluate("oracle", SYN, episodes=16, seed=3, num_envs=8, max_turn=10).summary
    curve.finish()  # already evaluated at step 100: no second point there
    clock["steps"] = 130
    curve.finish()
    logger.close()
    assert [point["steps"] for point in curve.points] == [40, 100, 130]
    assert curve.points[1]["R_cum"] == result.summary["R_cum"]
    assert curve.points[1]["twice_gini"] == pytest.approx(2 * result.summary["gini"])
    events = EventAccumulator(str(tmp_path / "curve")).Reload()
    assert [event.step for event in events.Scalars("eval/R_cum")] == [100, 130]  # the earlier point is not relogged
    assert "eval/exposure" in events.Tags()["histograms"]
    for bad, message in (({"episodes": 0}, "episodes must be an integer >= 1"), ({"freq": -1}, "freq must be an integer >= 0")):
        with pytest.raises(ValueError, match=message):
            TruthCurve(SYN, **{"episodes": 16, **bad})
