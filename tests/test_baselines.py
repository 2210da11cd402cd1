"""Baseline policies: hand-checked choices, learning bandits, and the oracle > PPO > random ordering."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import MECHANISMS_OFF, hand_world

import recgym
from recgym.agents import (
    UCB, EpsilonGreedy, FamiliarityDebiaser, LinUCB, MostPopular, OracleGreedy, RandomPolicy, make_policy,
)
from recgym.agents.baselines import masked_argmax
from recgym.agents.flat import make_model, train
from recgym.agents.sb3_policy import SB3Policy
from recgym.envs.sb3 import SB3VecEnv
from recgym.envs.vector import RecSysVectorEnv

SYN = "recgym/Synthetic-v0"
# CIRS's leave rule (window 1): learnable from a few thousand steps, so PPO's ranking is reliable on 2 cores.
EASY = dict(leave_window=1)


def _bound(policy, world=None, n=2, seed=0, **options):
    venv = RecSysVectorEnv(num_envs=n, world=world or "synthetic", **{**MECHANISMS_OFF, **options})
    obs, _ = venv.reset(seed=seed)
    policy.bind(venv, seed)
    return policy, venv, obs


def test_masked_argmax_never_picks_a_masked_item():
    scores = np.array([[3.0, 2.0, 1.0], [1.0, 5.0, 0.0]])
    mask = np.array([[False, True, True], [True, False, True]])
    np.testing.assert_array_equal(masked_argmax(scores, mask), [1, 0])


def test_most_popular_and_oracle_pick_the_known_best_items():
    matrix = np.array([[0.1, 0.9, 0.5, 0.0], [0.8, 0.0, 0.2, 0.3]], np.float32)
    world = hand_world([[0], [1], [2], [3]], 4, pop_prior=[1.0, 2.0, 9.0, 3.0], n_users=2, reward_matrix=matrix)
    popular, venv, obs = _bound(MostPopular(), world)
    venv.sim.reset(0, users=np.array([0, 1]))
    np.testing.assert_array_equal(popular.act(obs, venv.action_masks()), [2, 2])
    oracle, venv, obs = _bound(OracleGreedy(), world, mode="NX_0")
    venv.sim.reset(0, users=np.array([0, 1]))
    np.testing.assert_array_equal(oracle.act(obs, venv.action_masks()), [1, 0])
    venv.step(np.array([1, 0]))
    np.testing.assert_array_equal(oracle.act(venv.sim.observe(), venv.action_masks()), [2, 3])  # masked repeats


def test_oracle_avoids_items_that_make_the_user_leave():
    # user 0 prefers item 0 then item 1 (same category): the leave-aware oracle skips item 1
    matrix = np.array([[1.0, 0.9, 0.5, 0.0]], np.float32)
    world = hand_world([[0], [0], [1], [2]], 3, n_users=1, reward_matrix=matrix)
    oracle, venv, obs = _bound(OracleGreedy(), world, n=1, mode="NX_0", leave_window=2)
    venv.step(oracle.act(obs, venv.action_masks()))
    assert oracle.act(venv.sim.observe(), venv.action_masks())[0] == 2


def test_epsilon_greedy_and_ucb_learn_from_rewards():
    greedy, venv, obs = _bound(EpsilonGreedy(epsilon=0.0))
    greedy.update(obs, np.array([3, 4]), np.array([2.0, 0.0]))  # item 3 paid the maximum, item 4 nothing
    assert (greedy.act(obs, venv.action_masks()) == 3).all()
    ucb, venv, obs = _bound(UCB(c=0.0), n=3)
    first = ucb.act(obs, venv.action_masks())
    assert np.unique(first).size == 3  # untried items first, in random order
    everything = np.arange(venv.world.n_items)
    ucb.update(obs, everything, (everything == 7).astype(float))
    assert (ucb.act(obs, venv.action_masks()) == 7).all()


def test_linucb_learns_the_rewarded_direction():
    linucb, venv, obs = _bound(LinUCB(alpha=0.0), n=64, seed=1)
    rng = np.random.default_rng(0)
    for _ in range(20):  # reward = 1 exactly when the item matches the session's history
        obs = {"embeddings": venv.world.item_emb[rng.integers(0, 500, size=(64, 10))],
               "feedback": np.ones((64, 10), np.float32), "step": np.zeros((64, 1), np.float32)}
        actions = rng.integers(0, 500, size=64)
        state = linucb._state(obs)
        linucb.update(obs, actions, (state * venv.world.item_emb[actions]).sum(1))
    scores = linucb.scores(obs, np.ones((64, 500), bool))
    state = linucb._state(obs)
    true_scores = state @ venv.world.item_emb.T
    chosen = true_scores[np.arange(64), scores.argmax(1)].mean()
    assert chosen > 0.9 * true_scores.max(1).mean()  # near the best item of each session
    assert chosen > 2 * np.abs(true_scores).mean()  # far above an average item


def test_linucb_state_ignores_negative_feedback():
    """A v1 "hate" makes the observed reward negative; the state stays the mean of the liked items
    (before: -0.9 + 1.0 summed to 0.1, and the state was 10x the item embeddings)."""
    linucb, venv, _ = _bound(LinUCB(), n=2, seed=1)
    emb = venv.world.item_emb[[[1, 2], [3, 4]]]
    state = linucb._state({"embeddings": emb, "feedback": np.array([[-0.9, 1.0], [0.5, 0.5]], np.float32)})
    np.testing.assert_allclose(state[0], emb[0, 1], rtol=1e-6)
    np.testing.assert_allclose(state[1], emb[1].mean(0), rtol=1e-6)


def test_familiarity_post_ranker_hand_case():
    world = hand_world([[0], [0, 1], [1], [2]], 3, pop_prior=[9.0, 8.0, 7.0, 1.0])
    debias, venv, obs = _bound(FamiliarityDebiaser(MostPopular(), weight=2.0, candidates=3), world, n=1)
    obs["item_ids"][0, -1] = 0  # the user just consumed an item of category 0
    np.testing.assert_allclose(debias.familiarity(obs, np.array([[0, 1, 2]])), [[1.0, 0.5, 0.0]])
    # popular's top 3 are items 0, 1, 2; item 2 is the only unfamiliar one, item 3 is not a candidate
    assert debias.act(obs, np.ones((1, 4), bool))[0] == 2


def test_post_ranker_lengthens_sessions_of_its_base():
    popular = recgym.evaluate(make_policy("popular"), SYN, episodes=64, seed=0)
    debiased = recgym.evaluate(make_policy("debias-popular"), SYN, episodes=64, seed=0)
    assert debiased.summary["length"] > 2 * popular.summary["length"]
    assert debiased.summary["R_cum"] > popular.summary["R_cum"]


def test_sb3_policy_respects_the_mask():
    model = make_model("ppo", SB3VecEnv(SYN, num_envs=4), seed=0)
    policy = SB3Policy(model, deterministic=False)
    venv = RecSysVectorEnv(num_envs=4, world="synthetic")
    obs, _ = venv.reset(seed=0)
    policy.bind(venv, 0)
    mask = np.zeros((4, 500), bool)
    mask[:, [7, 11]] = True
    assert set(policy.act(obs, mask)) <= {7, 11}


@pytest.mark.parametrize("algo", ["a2c", "dqn", "maskable-ppo"])
def test_every_flat_agent_trains_and_evaluates(tmp_path, algo):
    model, path = train(algo, SYN, 256, seed=0, logdir=tmp_path, num_envs=16,
                        **({"learning_starts": 64} if algo == "dqn" else {}))
    assert path.exists()
    assert recgym.evaluate(model, SYN, episodes=8).episodes["R_cum"].shape == (8,)


def test_oracle_beats_ppo_beats_random_and_popular_concentrates_exposure(tmp_path):
    ppo, _ = train("ppo", SYN, 4096, seed=0, logdir=tmp_path, num_envs=32, env_options=EASY)
    results = {name: recgym.evaluate(policy, SYN, episodes=200, seed=1, **EASY)
               for name, policy in [("random", RandomPolicy()), ("popular", MostPopular()),
                                    ("oracle", OracleGreedy()), ("ppo", ppo)]}
    r_cum = {name: result.summary["R_cum"] for name, result in results.items()}
    assert r_cum["oracle"] > r_cum["ppo"] > 2 * r_cum["random"], r_cum
    gini = {name: result.summary["gini"] for name, result in results.items()}
    assert max(gini, key=gini.get) == "popular", gini


def test_agent_registry_errors_list_valid_names():
    with pytest.raises(ValueError, match="valid: random, popular, oracle"):
        make_policy("nope")
    with pytest.raises(ValueError, match="must be trained"):
        make_policy("ppo")


def test_a_failed_model_build_leaves_no_run_directory(tmp_path):
    logdir = tmp_path / "runs"
    with pytest.raises(AssertionError, match="batch_size"):  # SB3's PPO check
        train("ppo", SYN, 256, seed=0, logdir=logdir, num_envs=16, batch_size=1)
    assert not logdir.exists()
    _, path = train("a2c", SYN, 64, seed=0, logdir=logdir, num_envs=16)
    assert [p.name for p in logdir.iterdir()] == ["a2c_Synthetic-v0_s0_1"] and path.exists()
