"""recgym.agents.lean_ppo: the lean PPO update and policy equal SB3's PPO (same objective, minibatches,
gradients), for the flat agents and the hierarchy's levels."""

from __future__ import annotations

import copy
import tempfile

import numpy as np
import pytest
import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

from recgym.agents.hierarchy import gaussian_kl, gaussian_of
from recgym.agents.lean_ppo import LeanActorCriticPolicy, LeanPPO, MlpGradients


def _trained(cls, policy, env_id: str, **kwargs):
    model = cls(policy, make_vec_env(env_id, n_envs=4, seed=0), n_steps=32, batch_size=48, n_epochs=3, seed=0,
                device="cpu", **kwargs)
    model.learn(256)  # two rollouts, 2 x 3 epochs x 3 minibatches (the last one short)
    return model


def _small(env_id: str, **kwargs) -> LeanPPO:
    return LeanPPO(LeanActorCriticPolicy, make_vec_env(env_id, n_envs=2, seed=0), n_steps=8, batch_size=16, seed=0,
                   device="cpu", **kwargs)


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_the_lean_update_is_sb3s_update(env_id):
    """SB3's policy trained by LeanPPO.train ends on exactly SB3 PPO's weights and logs the same values."""
    sb3, lean = (_trained(cls, "MlpPolicy", env_id, target_kl=0.5) for cls in (PPO, LeanPPO))
    for ours, theirs in zip(lean.policy.parameters(), sb3.policy.parameters()):
        assert th.equal(ours, theirs)
    for key in ("train/entropy_loss", "train/policy_gradient_loss", "train/value_loss", "train/approx_kl",
                "train/clip_fraction", "train/loss"):
        assert lean.logger.name_to_value[key] == pytest.approx(sb3.logger.name_to_value[key], rel=1e-5, abs=1e-8), key
    assert lean._n_updates == sb3._n_updates == 6


def test_the_lean_gaussian_policy_trains_as_sb3s():
    """A Box level without distribution objects: the same normal draws in the rollout, the same
    log-densities and gradients in the update, so the run matches SB3's to float rounding."""
    sb3, lean = _trained(PPO, "MlpPolicy", "Pendulum-v1"), _trained(LeanPPO, LeanActorCriticPolicy, "Pendulum-v1")
    pairs = zip(lean.policy.state_dict().values(), sb3.policy.state_dict().values())
    delta = max(float((a - b).abs().max()) for a, b in pairs)
    assert delta < 1e-5


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_lean_terms_and_gradients_equal_sb3s_distribution(env_id):
    model = _small(env_id)
    lean = model.policy
    reference = ActorCriticPolicy(lean.observation_space, lean.action_space, lambda _: 1e-3)
    reference.load_state_dict(lean.state_dict())
    if env_id == "Pendulum-v1":
        with th.no_grad():
            for policy in (lean, reference):
                policy.log_std.fill_(-0.7)
    rng = np.random.default_rng(0)
    obs = th.as_tensor(rng.normal(size=(32, *lean.observation_space.shape)), dtype=th.float32)
    actions = th.as_tensor(np.stack([lean.action_space.sample() for _ in range(32)]))
    actions = actions.long() if env_id == "CartPole-v1" else actions.float()
    results = []
    for policy in (lean, reference):
        policy.zero_grad()
        values, log_prob, entropy = policy.evaluate_actions(obs, actions)
        (values.sum() + (log_prob * th.linspace(-1, 1, 32)).sum() + entropy.sum()).backward()
        results.append([values, log_prob, entropy, *(p.grad.clone() for p in policy.parameters())])
    for ours, theirs in zip(*results):
        th.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def test_the_gradient_clipping_is_clip_grad_norm():
    model = _small("Pendulum-v1", max_grad_norm=0.3)
    params = list(model.policy.parameters())
    copies = [th.nn.Parameter(p.detach().clone()) for p in params]
    for i, (p, q) in enumerate(zip(params, copies)):
        p.grad = th.linspace(-1, 2, p.numel()).view_as(p) * (i + 1)
        q.grad = p.grad.clone()
    assert th.nn.utils.clip_grad_norm_(copies, 0.3) > 1  # the case that clips
    model._clip_gradients(params)
    for p, q in zip(params, copies):
        th.testing.assert_close(p.grad, q.grad)


def test_the_drift_probe_kl_is_the_gaussians_kl():
    model = _small("Pendulum-v1")
    initial = copy.deepcopy(model.policy)
    with th.no_grad():
        model.policy.log_std.add_(th.tensor([0.3]))
        model.policy.action_net.bias.add_(0.5)
    probe = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
    now, before = (policy.get_distribution(th.as_tensor(probe)).distribution for policy in (model.policy, initial))
    expected = float(th.distributions.kl_divergence(now, before).sum(dim=-1).mean())
    assert expected > 0.1
    ours = gaussian_kl(gaussian_of(model.policy, probe), gaussian_of(initial, probe))
    assert ours == pytest.approx(expected, rel=1e-5)


def test_flat_ppo_trains_as_sb3s_ppo_on_the_item_policy():
    """recgym's flat PPO (Dict observations, item-scoring head) through LeanPPO.train: the same weights
    as SB3's PPO.train on the same policy and rollouts."""
    from recgym.agents.flat import make_model
    from recgym.envs.sb3 import SB3VecEnv

    weights = []
    for cls in (LeanPPO, PPO):
        env = SB3VecEnv("recgym/Synthetic-v0", num_envs=8)
        env.seed(0)
        model = make_model("ppo", env, seed=0, device="cpu", n_steps=16, batch_size=48)
        assert isinstance(model, LeanPPO)
        model.__class__ = cls  # the same policy and rollouts, SB3's update loop for the reference
        model.learn(256)
        weights.append(th.nn.utils.parameters_to_vector(model.policy.parameters()).detach())
    assert th.equal(weights[0], weights[1]) and weights[0].abs().sum() > 0


class _TinyExtractor(BaseFeaturesExtractor):
    """A features extractor with parameters (as HRL4PFG's attention): it keeps autograd."""

    def __init__(self, observation_space, features_dim: int = 16) -> None:
        super().__init__(observation_space, features_dim)
        self.layer = th.nn.Sequential(th.nn.Linear(observation_space.shape[0], features_dim), th.nn.LayerNorm(features_dim))

    def forward(self, observations: th.Tensor) -> th.Tensor:
        return th.relu(self.layer(observations))


@pytest.mark.parametrize(("env_id", "extractor"), [("CartPole-v1", None), ("Pendulum-v1", None),
                                                   ("Pendulum-v1", _TinyExtractor)])
def test_the_written_out_gradients_train_as_autograd(env_id, extractor):
    """MlpGradients + FlatParameters (no autograd graph for the MLPs, one fused Adam kernel on one
    buffer) end on autograd's weights to float rounding, with the ratio clipped on some rows, the
    gradient norm clipped and an entropy bonus, and log the same statistics; an extractor with
    parameters gets its gradient through autograd from the written-out one on its output."""
    models = []
    for written in (False, True):
        kwargs = {"features_extractor_class": extractor, "net_arch": [32]} if extractor else {}
        model = LeanPPO(LeanActorCriticPolicy, make_vec_env(env_id, n_envs=4, seed=0), n_steps=32, batch_size=48,
                        n_epochs=6, learning_rate=3e-3, ent_coef=0.01, max_grad_norm=0.3, seed=0, device="cpu",
                        policy_kwargs={"optimizer_kwargs": {"fused": True}, **kwargs})
        assert MlpGradients.of(model.policy) is not None
        model.written_gradients = written
        model.learn(256)
        models.append(model)
    autograd, written = models
    assert written.logger.name_to_value["train/clip_fraction"] > 0.01  # the clipped branch is exercised (0.027 on CartPole)
    weights = [th.nn.utils.parameters_to_vector(model.policy.parameters()).detach() for model in models]
    assert float((weights[0] - weights[1]).abs().max()) < 1e-5
    initial = LeanPPO(LeanActorCriticPolicy, make_vec_env(env_id, n_envs=4, seed=0), seed=0, device="cpu",
                      policy_kwargs=autograd.policy_kwargs).policy
    assert float((weights[0] - th.nn.utils.parameters_to_vector(initial.parameters())).abs().max()) > 0.01  # it learned
    for key in ("train/entropy_loss", "train/policy_gradient_loss", "train/value_loss", "train/approx_kl",
                "train/clip_fraction", "train/loss"):
        assert written.logger.name_to_value[key] == pytest.approx(autograd.logger.name_to_value[key], rel=1e-3, abs=1e-6), key


def test_flat_parameters_step_as_the_fused_adam_and_save():
    """FlatParameters' Adam step is optimizer.step() to float rounding (the fused kernel's vector
    lanes fall differently on one buffer: ~1 ulp in the second moment); the views are the optimizer's
    state, so a saved and reloaded model carries on as the one that never stopped."""
    from recgym.agents.lean_ppo import FlatParameters

    models = [_small("Pendulum-v1", policy_kwargs={"optimizer_kwargs": {"fused": True}}) for _ in range(2)]
    for step in range(3):
        grads = [th.linspace(-1, 1, p.numel()).view_as(p) * (step + i + 1) for i, p in enumerate(models[0].policy.parameters())]
        for p, g in zip(models[0].policy.parameters(), grads):
            p.grad = g.clone()
        models[0].policy.optimizer.step()
        flat = FlatParameters.of(models[1].policy.optimizer)
        flat.grad.copy_(th.cat([g.reshape(-1) for g in grads]))
        flat.adam_step()
    assert float(models[0].policy.log_std.detach().abs().max()) > 5e-4  # it moved (3 Adam steps of 3e-4)
    for ours, theirs in zip(models[1].policy.parameters(), models[0].policy.parameters()):
        th.testing.assert_close(ours, theirs, rtol=1e-6, atol=0)
        state, reference = models[1].policy.optimizer.state[ours], models[0].policy.optimizer.state[theirs]
        for key in ("exp_avg", "exp_avg_sq", "step"):
            th.testing.assert_close(state[key], reference[key], rtol=1e-6, atol=0)
    with tempfile.TemporaryDirectory() as folder:  # the views are saved and loaded as the optimizer's own state
        models[1].save(f"{folder}/model.zip")
        loaded = LeanPPO.load(f"{folder}/model.zip", device="cpu")
    for model in (loaded, models[1]):
        flat = FlatParameters.of(model.policy.optimizer)
        flat.grad.fill_(0.5)
        flat.adam_step()
    assert th.equal(th.nn.utils.parameters_to_vector(loaded.policy.parameters()),
                    th.nn.utils.parameters_to_vector(models[1].policy.parameters()))
