"""DORL-style agent: ensemble uncertainty on unlogged items, penalised reward, training, world-bound checkpoint."""

import numpy as np
import pytest
import torch

from recgym.agents import load_agent, train_agent
from recgym.agents.dorl import DORLConfig, fit_ensemble, log_random, window_entropy
from recgym.evaluation import evaluate, make_eval_env

torch.set_num_threads(1)


def test_ensemble_variance_is_higher_on_unlogged_items():
    world = make_eval_env("recgym/KuaiRec-v0", 1).world
    users, items, feedback = log_random("recgym/KuaiRec-v0", 4096, seed=0, num_envs=64, options={})
    assert np.isin(feedback, [0.0]).mean() < 1.0  # the logs carry real feedback
    model = fit_ensemble(users, items, feedback, world.n_users, world.n_items, DORLConfig(), seed=0)
    logged = np.unique(items)
    unlogged = np.setdiff1d(np.arange(world.n_items), logged)
    probe_users = np.repeat(np.unique(users)[:50], 20)
    rng = np.random.default_rng(1)
    _, var_logged = model.mean_and_var(probe_users, rng.choice(logged, probe_users.size))
    _, var_unlogged = model.mean_and_var(probe_users, rng.choice(unlogged, probe_users.size))
    assert var_unlogged.mean() > 1.3 * var_logged.mean()  # measured: 0.231 vs 0.154


def test_window_entropy_by_hand():
    ids = np.array([[1, 2, 3, 4], [5, 5, 5, 5], [7, 7, 8, 8], [-1, -1, -1, -1]])
    np.testing.assert_allclose(window_entropy(ids), [1.0, 0.0, np.log(2) / np.log(4), 0.0], atol=1e-12)


def test_dorl_trains_evaluates_and_refuses_another_world(tmp_path):
    _, path = train_agent("dorl", "recgym/KuaiRec-v0", 1024, seed=0, logdir=str(tmp_path), num_envs=32)
    result = evaluate(load_agent("dorl", path), "recgym/KuaiRec-v0", episodes=10, seed=0)
    assert result.summary["length"] >= 1 and np.isfinite(result.summary["R_cum"])
    with pytest.raises(ValueError, match="trained on world"):
        evaluate(load_agent("dorl", path), "recgym/KuaiRand-v0", episodes=2, seed=0)


def test_dorl_config_rejects_bad_values():
    with pytest.raises(ValueError, match="log_fraction"):
        DORLConfig(log_fraction=0.0)
