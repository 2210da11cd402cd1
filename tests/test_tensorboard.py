"""TensorBoard logging: read the written event files back and check what is in them."""

from __future__ import annotations

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import recgym
from recgym.agents import MostPopular, RandomPolicy
from recgym.agents.callbacks import log_comparison
from recgym.agents.flat import train
from recgym.evaluation import METRICS

SYN = "recgym/Synthetic-v0"


def _events(directory):
    files = list(directory.rglob("events.out.tfevents.*"))
    assert files, f"no event file under {directory}"
    accumulator = EventAccumulator(str(files[0].parent), size_guidance={"scalars": 0, "histograms": 0})
    return accumulator.Reload()


def test_training_logs_metrics_hparams_and_exposure(tmp_path):
    train("ppo", SYN, 2048, seed=0, logdir=tmp_path, num_envs=32, eval_episodes=20, n_steps=16)
    events = _events(tmp_path / "ppo_Synthetic-v0_s0_1")
    tags = events.Tags()
    for key in METRICS:
        assert f"eval/{key}" in tags["scalars"], key
    for key in ("R_cum", "length", "gini", "mcd"):  # rollout summaries from the training episodes
        assert f"rollout/{key}" in tags["scalars"], key
    assert "train/policy_gradient_loss" in tags["scalars"]  # SB3's own scalars share the event file
    r_cum = events.Scalars("eval/R_cum")[-1]
    assert r_cum.step == 2048 and r_cum.value > 0
    rollout_steps = [event.step for event in events.Scalars("rollout/R_cum")]
    assert len(rollout_steps) >= 2 and rollout_steps == sorted(rollout_steps)
    assert "eval/exposure" in tags["histograms"]
    assert sum(events.Histograms("eval/exposure")[-1].histogram_value.bucket) == 500  # one count per item
    hparams = events.SummaryMetadata("_hparams_/session_start_info").plugin_data
    assert hparams.plugin_name == "hparams" and b"learning_rate" in hparams.content


def test_comparison_scatter_and_scalars(tmp_path):
    results = {name: recgym.evaluate(policy, SYN, episodes=20) for name, policy in
               [("random", RandomPolicy()), ("popular", MostPopular())]}
    events = _events(log_comparison(results, tmp_path))
    tags = events.Tags()
    assert "compare/utility_vs_equity" in tags["images"]
    assert events.Scalars("compare/popular/gini")[0].value == pytest.approx(results["popular"].summary["gini"])
    assert "compare/random/exposure" in tags["histograms"]
