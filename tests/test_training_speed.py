"""Flat PPO's fast path (issue #18): the item-scoring policy's own rollout and update computations
give what SB3's distribution objects give, PPO still learns with them, and ``recgym bench`` reports
the training figures. Timings themselves are not asserted."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.policies import ActorCriticPolicy

import recgym
from recgym import bench
from recgym.agents.baselines import RandomPolicy
from recgym.agents.flat import ItemScoringPolicy, make_model
from recgym.agents.lean_ppo import CategoricalTerms, sample_categorical
from recgym.envs.sb3 import SB3VecEnv

SYN = "recgym/Synthetic-v0"


def _policy_and_batch(n: int = 48, seed: int = 0) -> tuple[ItemScoringPolicy, dict[str, th.Tensor], th.Tensor]:
    """A fresh recgym PPO policy with trained-looking (non-zero) head weights, a batch of ``n`` real
    observations of the synthetic world, and ``n`` actions as PPO's update passes them ((n,) int64)."""
    env = SB3VecEnv(SYN, num_envs=n)
    env.seed(seed)
    policy = make_model("ppo", env, seed=seed, device="cpu").policy
    assert isinstance(policy, ItemScoringPolicy)
    with th.no_grad():  # the head starts near zero (gain 0.01): spread its logits so every term matters
        policy.action_net.query.weight.normal_(0, 0.5)
        policy.action_net.bias.normal_(0, 1)
    obs = env.reset()
    for actions in np.random.default_rng(seed).integers(0, env.action_space.n, (3, n)):
        obs, *_ = env.step(actions)
    tensor, _ = policy.obs_to_tensor(obs)
    actions = th.as_tensor(np.random.default_rng(seed + 1).integers(0, env.action_space.n, n))
    return policy, tensor, actions


def test_update_terms_and_their_gradients_match_sb3s_categorical():
    policy, obs, actions = _policy_and_batch()
    weights = th.randn(3, len(actions), generator=th.Generator().manual_seed(0))

    def terms_and_grads(evaluate):
        policy.zero_grad()
        values, log_prob, entropy = evaluate(policy, obs, actions)
        (weights[0] @ log_prob + weights[1] @ entropy + weights[2] @ values.flatten()).backward()
        grads = [p.grad.clone() for p in policy.parameters() if p.grad is not None]
        return [t.detach() for t in (values, log_prob, entropy)], grads

    ours, our_grads = terms_and_grads(ItemScoringPolicy.evaluate_actions)
    sb3, sb3_grads = terms_and_grads(ActorCriticPolicy.evaluate_actions)  # Categorical(logits=...) objects
    assert ours[2].std() > 0.01  # entropies differ between rows: the check is not on a flat softmax
    for a, b in zip(ours, sb3):
        assert a.shape == b.shape
        th.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert len(our_grads) == len(sb3_grads) == len(list(policy.parameters()))
    for a, b in zip(our_grads, sb3_grads):  # float32 sums over the batch, added in another order
        th.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * b.abs().max().item())


def test_categorical_terms_gradient_is_exact_in_float64():
    logits = th.randn(5, 7, dtype=th.float64, requires_grad=True, generator=th.Generator().manual_seed(1))
    actions = th.tensor([0, 6, 3, 3, 1])
    assert th.autograd.gradcheck(CategoricalTerms.apply, (logits, actions))


def test_rollout_forward_returns_the_log_probability_of_its_actions():
    policy, obs, _ = _policy_and_batch()
    with th.no_grad():
        distribution = policy.get_distribution(obs)  # SB3's own path
        th.manual_seed(0)
        actions, values, log_prob = policy(obs)
        greedy, _, greedy_log_prob = policy(obs, deterministic=True)
        reference_values = policy.predict_values(obs)
    assert actions.shape == (len(values),) and actions.dtype == th.int64
    th.testing.assert_close(log_prob, distribution.log_prob(actions), rtol=1e-5, atol=1e-5)
    th.testing.assert_close(values, reference_values)
    th.testing.assert_close(greedy, distribution.distribution.logits.argmax(1))
    th.testing.assert_close(greedy_log_prob, distribution.log_prob(greedy), rtol=1e-5, atol=1e-5)


def test_sampling_draws_each_action_with_its_probability():
    probs = th.tensor([[0.5, 0.0, 0.2, 0.3], [0.05, 0.05, 0.0, 0.9]])
    n = 40_000
    th.manual_seed(0)
    draws = sample_categorical(probs.log().repeat_interleave(n, dim=0)).view(2, n)
    frequencies = th.stack([th.bincount(row, minlength=4) for row in draws]).double() / n
    # binomial standard error <= 0.0025; a CDF off by one item moves whole probabilities
    th.testing.assert_close(frequencies, probs.double(), rtol=0, atol=0.01)
    assert not (frequencies[probs == 0]).any()


def test_ppo_with_the_fast_path_still_learns():
    """A short run (4,096 steps, 32 sessions, seed 0) on a 100-item synthetic world under the
    1-category leave window: on the same 200 episodes random's R_cum is 3.19 and PPO's 13.14 (4.1x)."""
    options = {"leave_window": 1, "world_options": {"n_items": 100}}
    env = SB3VecEnv(SYN, num_envs=32, **options)
    env.seed(0)
    model = make_model("ppo", env, seed=0, device="cpu")
    model.learn(4096)
    ppo = recgym.evaluate(model, SYN, episodes=200, seed=1, **options).summary["R_cum"]
    random = recgym.evaluate(RandomPolicy(), SYN, episodes=200, seed=1, **options).summary["R_cum"]
    assert ppo > 2 * random, (ppo, random)


def test_slates_keep_sb3s_path():
    env = SB3VecEnv(SYN, num_envs=4, slate_size=3)
    env.seed(0)
    model = make_model("ppo", env, seed=0, device="cpu", n_steps=8, batch_size=32)
    model.learn(64)
    assert model.num_timesteps == 64


def test_bench_reports_the_training_figures_and_their_ratio():
    config = bench.BenchConfig(sizes=(4,), sync_size=4, seconds=0.01, ppo_envs=4, ppo_timesteps=256, dsrm_batch=4,
                               memory_user_steps=16, env_id=SYN)
    results = bench.run(config)
    assert results["ppo_fps"] > 0 and results["ppo_reference_fps"] > 0
    assert results["ppo_speedup"] == pytest.approx(results["ppo_fps"] / results["ppo_reference_fps"])
    assert "ppo_speedup" in bench.format_table(results)
    assert json.loads(json.dumps(results)) == results


def test_bench_alternates_the_two_ppo_models_one_rollout_each(monkeypatch):
    calls = []
    monkeypatch.setattr("stable_baselines3.PPO.learn",
                        lambda self, total_timesteps, **kwargs: calls.append((type(self.policy), total_timesteps)))
    bench.bench_ppo_speedup(bench.BenchConfig(ppo_envs=4, ppo_timesteps=3 * 128, env_id=SYN))
    ours, reference = calls[0][0], calls[1][0]
    assert ours is ItemScoringPolicy and reference is not ItemScoringPolicy
    assert calls == [(ours, 128), (reference, 128)] * 4  # a warm-up, then 3 alternating rounds


def test_auto_device_trains_where_sb3_puts_the_policy():
    """``device="auto"`` (the default): the policy, its fixed item embeddings and the rollout's
    tensors live on CUDA when present, else on the CPU; the simulator stays on the CPU."""
    from stable_baselines3.common.utils import get_device

    env = SB3VecEnv(SYN, num_envs=4)
    env.seed(0)
    model = make_model("ppo", env, seed=0, device="auto", n_steps=8, batch_size=32)
    model.learn(64)
    assert model.device == get_device("auto")
    assert model.policy.action_net.item_emb.device.type == model.device.type
    assert model.num_timesteps == 64
