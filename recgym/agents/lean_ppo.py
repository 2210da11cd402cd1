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
* :class:`MlpGradients` and :class:`FlatParameters` (``LeanPPO.written_gradients``): for an MLP policy
  (the hierarchy's MLP levels) the minibatch's loss gradient is written out (no autograd graph) and
  the fused Adam step runs once on flat buffers: ~2x fewer seconds per update (docs/performance.md,
  "Step 4"), equal to autograd's update to float rounding.
"""

from __future__ import annotations

import itertools
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
        log_prob, entropy, p, log_p = categorical_terms(logits, actions)
        ctx.save_for_backward(p, log_p, entropy, actions)
        return log_prob, entropy

    @staticmethod
    def backward(ctx: Any, grad_log_prob: th.Tensor, grad_entropy: th.Tensor) -> tuple[th.Tensor, None]:
        return categorical_logit_grad(*ctx.saved_tensors, grad_log_prob, grad_entropy[:, None]), None


def categorical_terms(logits: th.Tensor, actions: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor, th.Tensor]:
    """(B, I) logits, (B,) int64 actions -> ((B,) log-probabilities of the actions, (B,) entropies, (B, I)
    probabilities, (B, I) log-probabilities): :class:`CategoricalTerms`' forward pass, no graph."""
    log_p = th.log_softmax(logits, dim=1)
    p = log_p.exp()
    entropy = -(p * log_p).sum(dim=1)
    return log_p.gather(1, actions[:, None]).squeeze(1), entropy, p, log_p


def categorical_logit_grad(p: th.Tensor, log_p: th.Tensor, entropy: th.Tensor, actions: th.Tensor,
                           grad_log_prob: th.Tensor, grad_entropy: th.Tensor | float) -> th.Tensor:
    """(B, I) gradient of a loss on the logits, from its (B,) gradient on the actions' log-probabilities
    and its (B, 1) (or scalar) gradient on the entropies: d log p_a / dz = onehot(a) - p,
    dH / dz = -p (log p + H); the other arguments as :func:`categorical_terms` returns them."""
    # g_lp * (onehot - p) - g_H * p * (log p + H) = p * (-g_H * log p - (g_H * H + g_lp)) + g_lp * onehot
    grad = (log_p * -grad_entropy).sub_((grad_entropy * entropy[:, None]).add_(grad_log_prob[:, None])).mul_(p)
    return grad.scatter_add_(1, actions[:, None], grad_log_prob[:, None])


def ppo_statistics(policy_loss: th.Tensor, value_loss: th.Tensor, entropy_loss: th.Tensor, ratio: th.Tensor,
                   log_ratio: th.Tensor, clip_range: float) -> th.Tensor:
    """(5,) what :meth:`LeanPPO.train` logs of one minibatch: policy loss, clip fraction, value loss,
    entropy loss and SB3's approximate KL ``mean((r - 1) - log r)``, from the (B,) ratios ``r``."""
    return th.stack([policy_loss, ((ratio - 1).abs() > clip_range).float().mean(), value_loss, entropy_loss,
                     th.mean((ratio - 1) - log_ratio)])


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


#: the MLP activations :class:`MlpGradients` writes out: ((B, H) gradient on the output, (B, H) output)
#: -> (B, H) gradient on the input, one kernel (autograd's own backward functions)
_ACTIVATION_GRADS = {th.nn.Tanh: th.ops.aten.tanh_backward.default,
                     th.nn.ReLU: lambda grad, output: th.ops.aten.threshold_backward.default(grad, output, 0)}


def _linear_layers(net: th.nn.Sequential) -> tuple[list[th.nn.Linear], Any] | None:
    """SB3's MLP (``Linear``, activation, ``Linear``, activation, ...) -> (its linear layers, the
    activation's module class), or ``None`` for any other network (or mixed activations)."""
    modules = list(net)
    linears, activations = modules[0::2], {type(module) for module in modules[1::2]}
    if len(modules) % 2 or not all(type(module) is th.nn.Linear for module in linears) or len(activations) > 1:
        return None
    activation = activations.pop() if activations else th.nn.Tanh
    return (linears, activation) if activation in _ACTIVATION_GRADS else None


class MlpGradients:
    """PPO's loss on a minibatch and its gradient written out for an MLP policy (SB3's ``MlpPolicy``
    layout: separate actor and critic MLPs of ``Linear`` + ``Tanh``/``ReLU``, a linear action head and
    value head; ``Discrete`` logits or a state-independent Gaussian), with no autograd graph: the forward
    pass is one ``addmm`` and one activation per layer, the backward pass two products and a sum per
    layer, written in place into the parameters' ``.grad`` (the views of :class:`FlatParameters`' one
    buffer where the optimizer allows it). A shared features extractor other than ``FlattenExtractor``
    (HRL4PFG's attention) keeps autograd: its output's gradient is written out and passed to its
    ``backward``. A small network's gradient step on the CPU costs torch's per-operator dispatch, not
    arithmetic: ~410 aten calls (nested ones included) instead of autograd's ~640 for novelty-hrl's low
    level, half the time (docs/performance.md, "Step 4").
    The same loss and gradients as :meth:`LeanActorCriticPolicy.evaluate_actions` + ``backward`` in
    :meth:`LeanPPO.train` (to float rounding; tested), including ``torch.min``'s split gradient at ties."""

    def __init__(self, policy: LeanActorCriticPolicy, actor: list[th.nn.Linear], critic: list[th.nn.Linear],
                 activation: Any) -> None:
        self.policy, self.activation = policy, activation()
        self.activation_grad = _ACTIVATION_GRADS[activation]
        self.discrete = isinstance(policy.action_space, spaces.Discrete)
        self.actor = [*actor, policy.action_net]  # the last layer of each has no activation
        self.critic = [*critic, policy.value_net]
        for p in policy.parameters():  # written in place (FlatParameters' views where it is used)
            if p.grad is None:
                p.grad = th.zeros_like(p)
        # an extractor with parameters: autograd accumulates into their .grad, zeroed per minibatch
        self.extractor_grads = [p.grad for p in policy.features_extractor.parameters()]

    @classmethod
    def of(cls, policy: ActorCriticPolicy) -> MlpGradients | None:
        """The written-out gradients of ``policy``, or ``None`` where its layout is not the one above
        (separate actor and critic extractors, another network than SB3's MLP, gSDE)."""
        if not (isinstance(policy, LeanActorCriticPolicy) and policy._lean() and policy.share_features_extractor):
            return None
        actor, critic = (_linear_layers(net) for net in (policy.mlp_extractor.policy_net, policy.mlp_extractor.value_net))
        heads_linear = type(policy.action_net) is th.nn.Linear and type(policy.value_net) is th.nn.Linear
        if actor is None or critic is None or actor[1] is not critic[1] or not heads_linear:
            return None
        written = [*actor[0], *critic[0], policy.action_net, policy.value_net, policy.features_extractor]
        expected = {id(p) for layer in written for p in layer.parameters()}
        if isinstance(policy.action_space, spaces.Box):
            expected.add(id(policy.log_std))
        if {id(p) for p in policy.parameters() if p.requires_grad} != expected:
            return None  # a parameter this class does not write the gradient of
        return cls(policy, actor[0], critic[0], actor[1])

    def _forward(self, layers: list[th.nn.Linear], x: th.Tensor) -> list[th.Tensor]:
        """(B, D) input -> each layer's input and the last layer's output (no activation on it)."""
        outputs = [x]
        for i, layer in enumerate(layers):
            x = th.addmm(layer.bias, x, layer.weight.t())
            outputs.append(x if i == len(layers) - 1 else self.activation(x))
            x = outputs[-1]
        return outputs

    def _backward(self, layers: list[th.nn.Linear], outputs: list[th.Tensor], grad: th.Tensor,
                  input_grad: bool) -> th.Tensor | None:
        """Write each layer's weight and bias gradient from the (B, out) gradient of the last output;
        return the (B, D) gradient on the input if ``input_grad``."""
        for i in range(len(layers) - 1, -1, -1):
            layer = layers[i]
            th.mm(grad.t(), outputs[i], out=layer.weight.grad)
            th.sum(grad, dim=0, out=layer.bias.grad)
            if i:
                grad = self.activation_grad(grad @ layer.weight, outputs[i])
        return grad @ layers[0].weight if input_grad else None

    @th.no_grad()
    def minibatch(self, obs: th.Tensor, actions: th.Tensor, old_log_prob: th.Tensor, advantages: th.Tensor,
                  returns: th.Tensor, clip_range: float, ent_coef: float, vf_coef: float) -> tuple[th.Tensor, th.Tensor]:
        """One minibatch of B rows (actions (B,) int64 or (B, A); the rest (B,)) -> ((5,) policy loss,
        clip fraction, value loss, entropy loss, approx. KL; the scalar loss), the loss's gradient
        written into the parameters' ``.grad``."""
        n = obs.shape[0]
        features = None
        if self.extractor_grads:
            with th.enable_grad():
                features = self.policy.extract_features(obs)
            x = features.detach()
        else:
            x = self.policy.extract_features(obs)
        actor, critic = self._forward(self.actor, x), self._forward(self.critic, x)
        head, values = actor[-1], critic[-1].flatten()
        if self.discrete:
            log_prob, entropy, p, log_p = categorical_terms(head, actions)
        else:
            log_std = self.policy.log_std
            log_prob, entropy = gaussian_terms(head, log_std, actions)
        log_ratio = log_prob - old_log_prob
        ratio = th.exp(log_ratio)
        surrogate, clipped = advantages * ratio, advantages * th.clamp(ratio, 1 - clip_range, 1 + clip_range)
        policy_loss = -th.min(surrogate, clipped).mean()
        value_error = values - returns
        value_loss = value_error.square().mean()
        entropy_loss = -entropy.mean()
        loss = policy_loss + ent_coef * entropy_loss + vf_coef * value_loss
        row = ppo_statistics(policy_loss, value_loss, entropy_loss, ratio, log_ratio, clip_range)
        # d policy_loss / d log_prob = -A r / B where the unclipped term is the minimum (or inside the
        # clip range: a tie, half through each term), else 0
        grad_log_prob = th.where(surrogate <= clipped, surrogate, 0.0).mul_(-1.0 / n)
        if self.discrete:
            grad_head = categorical_logit_grad(p, log_p, entropy, actions, grad_log_prob, -ent_coef / n)
        else:
            inv_std = th.exp(-log_std)
            z = (actions - head) * inv_std
            grad_head = (z * grad_log_prob[:, None]).mul_(inv_std)
            # d/d log_std: sum_rows g_lp (z^2 - 1) + ent_coef * d(-H)/d log_std
            th.sub((z.square_().sub_(1)).mul_(grad_log_prob[:, None]).sum(dim=0), ent_coef, out=log_std.grad)
        grad_features = self._backward(self.actor, actor, grad_head, features is not None)
        grad_value = value_error.mul_(2.0 * vf_coef / n)[:, None]
        if features is None:
            self._backward(self.critic, critic, grad_value, False)
        else:
            grad_features.add_(self._backward(self.critic, critic, grad_value, True))
            th._foreach_zero_(self.extractor_grads)
            features.backward(grad_features)
        return row, loss


class FlatParameters:
    """A level's parameters, their gradients and their Adam state as views of four flat buffers (the
    parameters, optimizer and checkpoints are the same objects and values), so that zeroing, clipping
    and an Adam step are one or two kernels on one tensor. torch's fused CPU Adam loops over its
    tensors with per-tensor conversions (~36 operators per step for an MLP's 13 tensors) and its
    optimizer wrapper costs ~0.3 ms per step; here the step is ``steps.add_(1)`` and one
    ``_fused_adam_`` on one tensor: the same update, element by element, as ``optimizer.step()``
    (to float rounding: the kernel's vector lanes fall differently on one buffer; tested)."""

    def __init__(self, optimizer: th.optim.Adam) -> None:
        self.group = optimizer.param_groups[0]
        params = self.group["params"]
        offsets = np.cumsum([0] + [p.numel() for p in params]).tolist()
        spans = list(itertools.pairwise(offsets))
        states = [optimizer.state[p] for p in params]

        def flat(tensors: list[th.Tensor]) -> th.Tensor:
            return th.cat([t.detach().reshape(-1) for t in tensors])

        self.values = flat(params)
        self.grad = flat([th.zeros_like(p) if p.grad is None else p.grad for p in params])
        fresh = not states[0]
        self.exp_avg, self.exp_avg_sq = (flat([th.zeros_like(p) if fresh else state[key] for p, state in zip(params, states)])
                                         for key in ("exp_avg", "exp_avg_sq"))
        self.steps = (th.zeros(len(params), device=self.values.device) if fresh
                      else th.stack([state["step"] for state in states]).float())
        for i, (p, state, (start, end)) in enumerate(zip(params, states, spans)):
            p.data = self.values[start:end].view_as(p)
            p.grad = self.grad[start:end].view_as(p)
            state.update(exp_avg=self.exp_avg[start:end].view_as(p), exp_avg_sq=self.exp_avg_sq[start:end].view_as(p),
                         step=self.steps[i])
        self.step0 = self.steps[0]

    @classmethod
    def of(cls, optimizer: th.optim.Optimizer) -> FlatParameters | None:
        """The flat buffers of ``optimizer``'s parameters, or ``None`` unless it is torch's fused Adam
        with one parameter group (no AMSGrad, ``maximize`` or decoupled weight decay) whose parameters'
        state is all there or all absent, at one step count."""
        group = optimizer.param_groups[0]
        if not (type(optimizer) is th.optim.Adam and len(optimizer.param_groups) == 1 and group.get("fused")
                and not group["amsgrad"] and not group["maximize"] and not group.get("decoupled_weight_decay")):
            return None
        states = [optimizer.state.get(p) for p in group["params"]]
        if any(bool(state) != bool(states[0]) for state in states):
            return None
        if states[0] and len({float(state["step"]) for state in states}) > 1:
            return None
        return cls(optimizer)

    def clip(self, max_norm: float) -> None:
        """Scale the gradient to norm at most ``max_norm``: ``clip_grad_norm_``'s factor
        ``max / (norm + 1e-6)`` capped at 1, the norm taken over the one buffer."""
        norm = th.linalg.vector_norm(self.grad)
        self.grad.mul_(th.clamp(max_norm / (norm + 1e-6), max=1.0))

    def adam_step(self) -> None:
        """``optimizer.step()`` on the buffers (the group's current learning rate)."""
        group = self.group
        self.steps.add_(1)
        th._fused_adam_([self.values], [self.grad], [self.exp_avg], [self.exp_avg_sq], [], [self.step0],
                        amsgrad=False, lr=group["lr"], beta1=group["betas"][0], beta2=group["betas"][1],
                        weight_decay=group["weight_decay"], eps=group["eps"], maximize=False)


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
    loaded as any SB3 model; a checkpoint of a plain ``PPO`` loads into it and trains on.

    ``written_gradients`` (default ``True``; set it on a model to change it): a
    :class:`LeanActorCriticPolicy` of SB3's MLP layout (with any shared features extractor) trains by
    :class:`MlpGradients` (the MLPs' gradient written out, no autograd graph for them), and a fused Adam
    optimizer steps on :class:`FlatParameters`;
    ``False`` (or another policy / optimizer) takes autograd's ``backward`` and ``optimizer.step()``."""

    written_gradients = True

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
        flat = FlatParameters.of(policy.optimizer) if self.written_gradients else None
        written = MlpGradients.of(policy) if self.written_gradients and clip_range_vf is None else None
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
                advantages = advantages_all[rows]
                if self.normalize_advantage and len(advantages) > 1:
                    advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
                if written is not None:
                    row, loss = written.minibatch(obs, actions[rows], old_log_prob[rows], advantages, returns[rows],
                                                  clip_range, self.ent_coef, self.vf_coef)
                else:
                    row, loss = self._losses(obs, actions[rows], old_log_prob[rows], advantages, returns[rows],
                                             old_values[rows], clip_range, clip_range_vf)
                stats.append(row)
                if self.target_kl is not None and float(row[4]) > 1.5 * self.target_kl:
                    continue_training = False
                    if self.verbose >= 1:
                        print(f"Early stopping at step {epoch} due to reaching max kl: {float(row[4]):.2f}")
                    break
                if written is None:
                    if flat is not None:
                        flat.grad.zero_()
                    else:
                        policy.optimizer.zero_grad()
                    loss.backward()  # into the flat buffer's views where there is one (accumulated in place)
                if flat is not None:
                    flat.clip(self.max_grad_norm)
                    flat.adam_step()
                else:
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

    def _losses(self, obs: Any, actions: th.Tensor, old_log_prob: th.Tensor, advantages: th.Tensor,
                returns: th.Tensor, old_values: th.Tensor, clip_range: float,
                clip_range_vf: float | None) -> tuple[th.Tensor, th.Tensor]:
        """SB3's PPO loss on one minibatch through the policy's autograd graph -> ((5,) policy loss,
        clip fraction, value loss, entropy loss, approx. KL, detached; the differentiable scalar loss)."""
        values, log_prob, entropy = self.policy.evaluate_actions(obs, actions)
        values = values.flatten()
        log_ratio = log_prob - old_log_prob
        ratio = th.exp(log_ratio)
        clipped = th.clamp(ratio, 1 - clip_range, 1 + clip_range)
        policy_loss = -th.min(advantages * ratio, advantages * clipped).mean()
        values_pred = values if clip_range_vf is None else old_values + th.clamp(
            values - old_values, -clip_range_vf, clip_range_vf)
        value_loss = th.nn.functional.mse_loss(returns, values_pred)
        entropy_loss = -th.mean(-log_prob) if entropy is None else -th.mean(entropy)
        loss = policy_loss + self.ent_coef * entropy_loss + self.vf_coef * value_loss
        with th.no_grad():
            row = ppo_statistics(policy_loss, value_loss, entropy_loss, ratio, log_ratio, clip_range)
        return row, loss

    def _clip_gradients(self, params: list[th.Tensor]) -> None:
        """``clip_grad_norm_(params, max_grad_norm)`` with torch's ``foreach`` kernels: the same
        scaling (the norm of the per-parameter norms; factor ``max / (norm + 1e-6)`` capped at 1)."""
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        norm = th.linalg.vector_norm(th.stack(th._foreach_norm(grads)))
        th._foreach_mul_(grads, th.clamp(self.max_grad_norm / (norm + 1e-6), max=1.0))
