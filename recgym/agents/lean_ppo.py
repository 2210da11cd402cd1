"""PPO's rollout and update without SB3's per-batch machinery: one routine for the flat agents
(:mod:`recgym.agents.flat`) and the hierarchy's two levels (:mod:`recgym.agents.hierarchy`).

* :class:`LeanActorCriticPolicy`: an SB3 ``ActorCriticPolicy`` whose two per-batch calls, :meth:`forward`
  (rollout) and :meth:`evaluate_actions` (update), skip SB3's distribution objects on ``Discrete``
  actions (:class:`CategoricalTerms`, :func:`sample_categorical`) and ``Box`` actions (a diagonal
  Gaussian with a state-independent log-std, SB3's default: :func:`gaussian_terms`). Other action
  spaces (slates' ``MultiDiscrete``) keep SB3's path. ``get_distribution`` / ``predict`` are SB3's.
* :class:`LeanPPO`: SB3's ``PPO`` with :meth:`LeanPPO.train` written for small networks, where
  SB3's per-minibatch Python work costs as much as the learning: the rollout buffer becomes tensors
  once per update (not six ``torch.tensor`` copies per minibatch), the logged statistics stay tensors
  until the end (no ``.item()`` per minibatch), the gradient norm is clipped with torch's ``foreach``
  kernels on a parameter list taken once (``clip_grad_norm_`` walks ``parameters()`` and loops over
  them per minibatch on the CPU). The same objective, minibatches (the same ``np.random.permutation``
  draws), number of gradient steps, early stop on ``target_kl`` and logged keys as SB3's ``train``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.utils import explained_variance

#: log(sqrt(2 pi)): the Gaussian log-density's constant
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


class CategoricalTerms(th.autograd.Function):
    """(B, I) logits, (B,) int64 actions -> ((B,) log-probabilities of the actions, (B,) entropies)
    of ``Categorical(logits=logits)``, with the gradient written out: d log p_a / dz = onehot(a) - p,
    dH / dz = -p (log p + H). The same values and gradients as ``Categorical.log_prob`` and
    ``.entropy`` (to float rounding) in fewer passes over the (B, I) logits: forward ``log_softmax``,
    one ``exp`` and one product-sum; backward two passes and a scatter (no normalised-logits copy,
    no argument checks, no clamped copy, no autograd graph of (B, I) intermediates)."""

    @staticmethod
    def forward(ctx: Any, logits: th.Tensor, actions: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        log_p = th.log_softmax(logits, dim=1)
        p = log_p.exp()
        entropy = -(p * log_p).sum(dim=1)
        ctx.save_for_backward(p, log_p, entropy, actions)
        return log_p.gather(1, actions[:, None]).squeeze(1), entropy

    @staticmethod
    def backward(ctx: Any, grad_log_prob: th.Tensor, grad_entropy: th.Tensor) -> tuple[th.Tensor, None]:
        p, log_p, entropy, actions = ctx.saved_tensors
        # g_lp * (onehot - p) - g_H * p * (log p + H) = p * (-g_H * log p - (g_H * H + g_lp)) + g_lp * onehot
        grad = (log_p * -grad_entropy[:, None]).sub_((grad_entropy * entropy + grad_log_prob)[:, None]).mul_(p)
        return grad.scatter_add_(1, actions[:, None], grad_log_prob[:, None]), None


def sample_categorical(log_p: th.Tensor) -> th.Tensor:
    """(B, I) log-probabilities -> (B,) int64 actions drawn from them by inverting each row's CDF
    with one uniform number per row (``torch.multinomial`` draws I exponentials per row: ~10 ms for
    64 x 3,327 on one core)."""
    cdf = log_p.exp().cumsum_(dim=1)
    u = th.rand((log_p.shape[0], 1), device=log_p.device, dtype=cdf.dtype) * cdf[:, -1:]
    return th.searchsorted(cdf, u, right=True).squeeze(1).clamp_(max=log_p.shape[1] - 1)


def gaussian_terms(mean: th.Tensor, log_std: th.Tensor, actions: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
    """(B, A) means, (A,) log-stds, (B, A) actions -> ((B,) log-densities of the actions, (B,)
    entropies) of the diagonal Gaussian ``N(mean, exp(log_std)^2)``, summed over the A dimensions:
    what SB3's ``DiagGaussianDistribution.log_prob`` / ``.entropy`` return (to float rounding),
    without building a ``Normal`` and its broadcast (B, A) scale."""
    z = (actions - mean) * th.exp(-log_std)
    log_prob = (-0.5 * z.square() - log_std).sum(dim=1) - _LOG_SQRT_2PI * mean.shape[1]
    entropy = (log_std.sum() + (0.5 + _LOG_SQRT_2PI) * mean.shape[1]).expand(mean.shape[0])
    return log_prob, entropy


class LeanActorCriticPolicy(ActorCriticPolicy):
    """SB3's actor-critic policy (any features extractor and ``net_arch``; ``"MlpPolicy"`` is this
    class's parent) without distribution objects in its per-batch calls on ``Discrete`` and ``Box``
    action spaces: the same actions' distribution, log-probabilities, entropies and gradients.
    ``Discrete`` rollouts sample by :func:`sample_categorical` (one uniform per row, a different
    random stream than SB3's ``torch.multinomial``); ``Box`` rollouts draw ``mean + std * N(0, 1)``
    from the same normal stream SB3's ``Normal.rsample`` reads."""

    def _head_and_values(self, obs: Any) -> tuple[th.Tensor, th.Tensor]:
        """Observation batch -> ((B, A) action head output: logits or Gaussian means, (B, 1) values),
        one extractor pass."""
        features = self.extract_features(obs)
        if self.share_features_extractor:
            latent_pi, latent_vf = self.mlp_extractor(features)
        else:
            latent_pi = self.mlp_extractor.forward_actor(features[0])
            latent_vf = self.mlp_extractor.forward_critic(features[1])
        return self.action_net(latent_pi), self.value_net(latent_vf)

    def _lean(self) -> bool:
        """Whether this policy's action space has the lean path (else SB3's is used)."""
        return isinstance(self.action_space, spaces.Discrete) or (
            isinstance(self.action_space, spaces.Box) and not self.use_sde and not self.squash_output)

    def forward(self, obs: Any, deterministic: bool = False) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """-> ((B,) or (B, A) actions, (B, 1) values, (B,) log-probabilities of the actions)."""
        if not self._lean():
            return super().forward(obs, deterministic)
        head, values = self._head_and_values(obs)
        if isinstance(self.action_space, spaces.Discrete):
            log_p = th.log_softmax(head, dim=1)
            actions = log_p.argmax(dim=1) if deterministic else sample_categorical(log_p)
            return actions, values, log_p.gather(1, actions[:, None]).squeeze(1)
        actions = head if deterministic else head + th.randn_like(head) * th.exp(self.log_std)
        return actions, values, gaussian_terms(head, self.log_std, actions)[0]

    def evaluate_actions(self, obs: Any, actions: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """Actions ((B,) int64 for ``Discrete``, as PPO passes them; (B, A) for ``Box``) -> ((B, 1)
        values, (B,) log-probabilities, (B,) entropies), differentiable."""
        if not self._lean():
            return super().evaluate_actions(obs, actions)
        head, values = self._head_and_values(obs)
        if isinstance(self.action_space, spaces.Discrete):
            log_prob, entropy = CategoricalTerms.apply(head, actions)
        else:
            log_prob, entropy = gaussian_terms(head, self.log_std, actions)
        return values, log_prob, entropy


def _flattened(buffer: RolloutBuffer) -> None:
    """Flatten the filled buffer's (n_steps, n_envs, ...) arrays to (n_steps * n_envs, ...) in place,
    once, as SB3's ``RolloutBuffer.get`` does before its first minibatch."""
    if buffer.generator_ready:
        return
    observations = buffer.observations
    buffer.observations = ({key: buffer.swap_and_flatten(value) for key, value in observations.items()}
                           if isinstance(observations, dict) else buffer.swap_and_flatten(observations))
    for name in ("actions", "values", "log_probs", "advantages", "returns"):
        setattr(buffer, name, buffer.swap_and_flatten(getattr(buffer, name)))
    buffer.generator_ready = True


class LeanPPO(PPO):
    """SB3's ``PPO`` with the lean update of :meth:`train` (see the module docstring). Saved and
    loaded as any SB3 model; a checkpoint of a plain ``PPO`` loads into it and trains on."""

    def train(self) -> None:
        """One update on the filled rollout buffer: ``n_epochs`` passes of minibatches of
        ``batch_size``, as SB3's ``PPO.train``."""
        policy, buffer = self.policy, self.rollout_buffer
        policy.set_training_mode(True)
        self._update_learning_rate(policy.optimizer)
        clip_range = self.clip_range(self._current_progress_remaining)
        clip_range_vf = None if self.clip_range_vf is None else self.clip_range_vf(self._current_progress_remaining)
        assert buffer.full, "the rollout buffer must be full before an update"
        _flattened(buffer)

        def tensor(array: np.ndarray) -> th.Tensor:
            return th.as_tensor(array, device=self.device)

        observations = ({key: tensor(value) for key, value in buffer.observations.items()}
                        if isinstance(buffer.observations, dict) else tensor(buffer.observations))
        actions = tensor(buffer.actions.astype(np.float32, copy=False))
        if isinstance(self.action_space, spaces.Discrete):
            actions = actions.long().flatten()
        old_values, old_log_prob, advantages_all, returns = (
            tensor(getattr(buffer, name).reshape(-1)) for name in ("values", "log_probs", "advantages", "returns"))
        params = [p for p in policy.parameters() if p.requires_grad]
        size = buffer.buffer_size * buffer.n_envs
        # per minibatch: policy loss, clip fraction, value loss, entropy loss, approx. KL (logged at the end)
        stats: list[th.Tensor] = []
        last_epoch_start = 0
        continue_training = True
        loss = th.zeros(())
        for epoch in range(self.n_epochs):
            last_epoch_start = len(stats)
            order = th.as_tensor(np.random.permutation(size), device=self.device)  # SB3's draw per epoch
            for start in range(0, size, self.batch_size):
                rows = order[start:start + self.batch_size]
                obs = ({key: value[rows] for key, value in observations.items()}
                       if isinstance(observations, dict) else observations[rows])
                values, log_prob, entropy = policy.evaluate_actions(obs, actions[rows])
                values = values.flatten()
                advantages = advantages_all[rows]
                if self.normalize_advantage and len(advantages) > 1:
                    advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
                log_ratio = log_prob - old_log_prob[rows]
                ratio = th.exp(log_ratio)
                clipped = th.clamp(ratio, 1 - clip_range, 1 + clip_range)
                policy_loss = -th.min(advantages * ratio, advantages * clipped).mean()
                values_pred = values if clip_range_vf is None else old_values[rows] + th.clamp(
                    values - old_values[rows], -clip_range_vf, clip_range_vf)
                value_loss = th.nn.functional.mse_loss(returns[rows], values_pred)
                entropy_loss = -th.mean(-log_prob) if entropy is None else -th.mean(entropy)
                loss = policy_loss + self.ent_coef * entropy_loss + self.vf_coef * value_loss
                with th.no_grad():
                    approx_kl = th.mean((ratio - 1) - log_ratio)
                    stats.append(th.stack([policy_loss, ((ratio - 1).abs() > clip_range).float().mean(), value_loss,
                                           entropy_loss, approx_kl]))
                if self.target_kl is not None and float(approx_kl) > 1.5 * self.target_kl:
                    continue_training = False
                    if self.verbose >= 1:
                        print(f"Early stopping at step {epoch} due to reaching max kl: {float(approx_kl):.2f}")
                    break
                policy.optimizer.zero_grad()
                loss.backward()
                self._clip_gradients(params)
                policy.optimizer.step()
            self._n_updates += 1
            if not continue_training:
                break
        table = th.stack(stats).double().cpu().numpy()
        explained_var = explained_variance(buffer.values.flatten(), buffer.returns.flatten())
        self.logger.record("train/entropy_loss", float(table[:, 3].mean()))
        self.logger.record("train/policy_gradient_loss", float(table[:, 0].mean()))
        self.logger.record("train/value_loss", float(table[:, 2].mean()))
        self.logger.record("train/approx_kl", float(table[last_epoch_start:, 4].mean()))
        self.logger.record("train/clip_fraction", float(table[:, 1].mean()))
        self.logger.record("train/loss", loss.item())
        self.logger.record("train/explained_variance", explained_var)
        if hasattr(policy, "log_std"):
            self.logger.record("train/std", th.exp(policy.log_std).mean().item())
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/clip_range", clip_range)
        if clip_range_vf is not None:
            self.logger.record("train/clip_range_vf", clip_range_vf)

    def _clip_gradients(self, params: list[th.Tensor]) -> None:
        """``clip_grad_norm_(params, max_grad_norm)`` with torch's ``foreach`` kernels: the same
        scaling (the norm of the per-parameter norms; factor ``max / (norm + 1e-6)`` capped at 1)."""
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        norm = th.linalg.vector_norm(th.stack(th._foreach_norm(grads)))
        th._foreach_mul_(grads, th.clamp(self.max_grad_norm / (norm + 1e-6), max=1.0))
