"""Flat (one-level) SB3 agents on the item action space: PPO, A2C, DQN and sb3-contrib's MaskablePPO.

The Dict observation goes through :class:`HistoryExtractor`; with ``item_head=True`` (default)
the output layer scores every item as ``<W h, e_i> + b_i`` against the catalogue's embeddings
(:class:`ItemScoringHead`), so what is learnt about one item transfers to similar ones instead of
3,327 independent logits. :func:`make_model` builds a model, :func:`train` runs a logged training
and saves a checkpoint in a run directory of its own, :func:`load_model` loads one back (checking its
metadata); :class:`~recgym.agents.sb3_policy.SB3Policy` turns any SB3 model into a masked batched policy.
"""

from __future__ import annotations

import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from sb3_contrib import MaskablePPO
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from stable_baselines3 import A2C, DQN
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.logger import configure
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, create_mlp
from stable_baselines3.common.utils import get_device
from stable_baselines3.dqn.policies import DQNPolicy, QNetwork
from torch import nn

from recgym.agents.checkpoints import META_KEY, check_meta, checkpoint_meta, first_line, new_run_dir, read_sb3_meta
from recgym.agents.lean_ppo import LeanActorCriticPolicy, LeanPPO
from recgym.sizes import check_count
from recgym.world import World


class HistoryExtractor(BaseFeaturesExtractor):
    """Dict observation -> (B, features_dim): an MLP layer over the flattened history embeddings
    (k, D), their observed feedback (k,), the feedback-weighted mean embedding (D,) and the step."""

    def __init__(self, observation_space: spaces.Dict, features_dim: int = 128) -> None:
        super().__init__(observation_space, features_dim)
        k, dims = observation_space["embeddings"].shape
        self.net = nn.Sequential(nn.Linear(k * dims + k + dims + 1, features_dim), nn.ReLU())

    def forward(self, obs: dict[str, th.Tensor]) -> th.Tensor:
        emb, feedback = obs["embeddings"], obs["feedback"]
        weighted = (feedback.unsqueeze(-1) * emb).sum(1) / feedback.sum(1, keepdim=True).clamp_min(1e-6)
        return self.net(th.cat([emb.flatten(1), feedback, weighted, obs["step"]], dim=1))


class ItemScoringHead(nn.Module):
    """(B, L) latent -> (B, S * I) item scores ``<W_s h, e_i> * scale + b_i`` with fixed (I, D) item
    embeddings: one query per slate slot s (``slots`` = S, 1 for a single recommendation; the slots'
    scores concatenated, as SB3's MultiDiscrete distribution reads them), one item bias shared by all."""

    def __init__(self, latent_dim: int, item_emb: np.ndarray, scale: float = 5.0, slots: int = 1) -> None:
        super().__init__()
        self.register_buffer("item_emb", th.tensor(np.asarray(item_emb), dtype=th.float32))
        self.slots = slots
        self.query = nn.Linear(latent_dim, slots * self.item_emb.shape[1])
        self.bias = nn.Parameter(th.zeros(self.item_emb.shape[0]))
        self.scale = scale
        nn.init.orthogonal_(self.query.weight, gain=0.01)
        nn.init.zeros_(self.query.bias)

    def forward(self, latent: th.Tensor) -> th.Tensor:
        queries = self.query(latent).view(latent.shape[0] * self.slots, -1)  # (B * S, D)
        # one (B * S, I) pass: bias + (scale * queries) @ item_emb.T
        return th.addmm(self.bias, self.scale * queries, self.item_emb.T).view(latent.shape[0], -1)


class _ItemHeadMixin:
    """Actor-critic policies whose action logits come from an :class:`ItemScoringHead`."""

    def __init__(self, *args: Any, item_emb: np.ndarray, **kwargs: Any) -> None:
        self.item_emb = item_emb
        super().__init__(*args, **kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), "item_emb": self.item_emb}

    def _build(self, lr_schedule: Any) -> None:
        super()._build(lr_schedule)
        slots = len(self.action_space.nvec) if isinstance(self.action_space, spaces.MultiDiscrete) else 1
        self.action_net = ItemScoringHead(self.mlp_extractor.latent_dim_pi, self.item_emb, slots=slots)
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)


class ItemScoringPolicy(_ItemHeadMixin, LeanActorCriticPolicy):
    """PPO / A2C policy with an item-scoring action head.

    On a single-item (``Discrete``) action space, the two calls PPO and A2C make per batch skip SB3's
    distribution objects over the I logits (:class:`~recgym.agents.lean_ppo.LeanActorCriticPolicy`):
    rollouts sample by :func:`~recgym.agents.lean_ppo.sample_categorical` and updates compute
    log-probabilities and entropies by :class:`~recgym.agents.lean_ppo.CategoricalTerms`: the same PPO
    objective and gradients, with fewer passes over (B, I). ``get_distribution`` / ``predict`` are
    SB3's. Slates (``MultiDiscrete``) use SB3's path throughout.
    """


class MaskableItemScoringPolicy(_ItemHeadMixin, MaskableActorCriticPolicy):
    """MaskablePPO policy with an item-scoring action head."""


class ItemQPolicy(DQNPolicy):
    """DQN policy whose Q-values are item scores (hidden MLP, then an :class:`ItemScoringHead`)."""

    def __init__(self, *args: Any, item_emb: np.ndarray, **kwargs: Any) -> None:
        self.item_emb = item_emb
        super().__init__(*args, **kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), "item_emb": self.item_emb}

    def make_q_net(self) -> QNetwork:
        q_net = super().make_q_net()
        hidden = create_mlp(q_net.features_dim, 0, q_net.net_arch, q_net.activation_fn)
        last = q_net.net_arch[-1] if q_net.net_arch else q_net.features_dim
        q_net.q_net = nn.Sequential(*hidden, ItemScoringHead(last, self.item_emb)).to(self.device)
        return q_net


@dataclass(frozen=True)
class AlgoSpec:
    """An SB3 algorithm, its policy with and without the item head, and default hyperparameters."""

    cls: type[BaseAlgorithm]
    plain_policy: str
    item_policy: type
    defaults: dict[str, Any]


ALGOS: dict[str, AlgoSpec] = {
    "ppo": AlgoSpec(LeanPPO, "MultiInputPolicy", ItemScoringPolicy,
                    dict(n_steps=32, batch_size=256, n_epochs=4, learning_rate=1e-3, gamma=0.9, ent_coef=0.01)),
    "maskable-ppo": AlgoSpec(MaskablePPO, "MultiInputPolicy", MaskableItemScoringPolicy,
                             dict(n_steps=32, batch_size=256, n_epochs=4, learning_rate=1e-3, gamma=0.9, ent_coef=0.01)),
    "a2c": AlgoSpec(A2C, "MultiInputPolicy", ItemScoringPolicy,
                    dict(n_steps=8, learning_rate=1e-3, gamma=0.9, ent_coef=0.01)),
    "dqn": AlgoSpec(DQN, "MultiInputPolicy", ItemQPolicy,
                    dict(learning_rate=1e-3, gamma=0.9, buffer_size=50_000, learning_starts=1_000, batch_size=128,
                         train_freq=1, gradient_steps=1, target_update_interval=500, exploration_fraction=0.3)),
}


def make_model(algo: str, env: Any, seed: int | None = 0, item_head: bool = True, tensorboard_log: str | None = None,
               verbose: int = 0, **hyperparams: Any) -> BaseAlgorithm:
    """A fresh SB3 model of ``algo`` (one of :data:`ALGOS`) on an ``SB3VecEnv``; ``hyperparams``
    override the defaults (``policy_kwargs`` merged); ``verbose`` is SB3's (1 prints training info).

    On a slate env (``slate_size > 1``) the actor-critic algorithms score every item once per slot
    (:class:`ItemScoringHead`); DQN needs one item per step and refuses it."""
    if algo not in ALGOS:
        raise ValueError(f"unknown SB3 algorithm {algo!r}; valid: {', '.join(ALGOS)}")
    if algo == "dqn" and not isinstance(env.action_space, spaces.Discrete):
        raise ValueError(f"dqn recommends one item per step; this env's actions are slates ({env.action_space}): "
                         f"use ppo, a2c or maskable-ppo, or slate_size=1")
    spec = ALGOS[algo]
    policy_kwargs = {"features_extractor_class": HistoryExtractor, **hyperparams.pop("policy_kwargs", {})}
    if item_head:
        policy_kwargs["item_emb"] = env.unwrapped.venv.world.item_emb
    policy = spec.item_policy if item_head else spec.plain_policy
    return spec.cls(policy, env, seed=seed, tensorboard_log=tensorboard_log, policy_kwargs=policy_kwargs,
                    verbose=verbose, **{**spec.defaults, **hyperparams})


def load_model(algo: str, path: str | Path, env: Any = None, agent: str | None = None,
               world: World | None = None, device: str = "auto") -> BaseAlgorithm:
    """Load a checkpoint saved by :func:`train` (``algo`` selects the SB3 class) onto ``device``
    (torch's name; ``"auto"``: CUDA when present).

    The checkpoint's metadata must name ``agent`` (default: ``algo``) and, with ``world`` given, have
    been trained on that world; a missing, truncated or foreign file, another agent's checkpoint or
    another world's is a one-line ``ValueError`` naming the file.
    """
    if algo not in ALGOS:
        raise ValueError(f"unknown SB3 algorithm {algo!r}; valid: {', '.join(ALGOS)}")
    check_meta(read_sb3_meta(path), path, agent or algo, world)
    device = get_device(device)  # a bad device name is torch's one-line error, not an unreadable checkpoint
    try:
        return ALGOS[algo].cls.load(str(path), env=env, device=device)
    except (RuntimeError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path}: unreadable SB3 checkpoint ({first_line(error)})") from None


def train(algo: str, env_id: str, timesteps: int, seed: int = 0, logdir: str | Path = "runs", num_envs: int = 64,
          progress_bar: bool = False, eval_episodes: int = 0, env_options: dict[str, Any] | None = None,
          wrap_env: Callable[[Any], Any] | None = None, agent: str | None = None, eval_freq: int = 0,
          eval_scorer: Callable[[Any], dict[str, Any]] | None = None, catalogue_reset_every: int | None = None,
          **hyperparams: Any) -> tuple[BaseAlgorithm, Path]:
    """Train ``algo`` on ``env_id`` for ``timesteps`` in a new run directory
    ``logdir/<agent>_<env>_s<seed>_<n>/`` (:func:`recgym.agents.checkpoints.new_run_dir`): TensorBoard
    event files and the checkpoint ``model.zip`` side by side. The model carries the checkpoint
    metadata of ``agent`` (registered agent name, default ``algo``), the env and the world.
    Returns (model, checkpoint path).

    ``wrap_env`` turns the ``SB3VecEnv`` into the env the learner trains on, e.g. a
    :class:`recgym.agents.rewards.RewardShaper` that rewrites the reward; the metric callback still
    reports the simulator's true reward (and the shaped reward separately as ``rollout/shaped_reward``).

    ``eval_episodes`` > 0: the run is evaluated on the truth (:class:`~recgym.agents.callbacks.TruthCurve`:
    :func:`recgym.evaluate` on ``eval_episodes`` episodes of ``num_envs`` sessions, ``eval/*`` scalars) at the end
    and, with ``eval_freq`` > 0, every ``eval_freq`` timesteps (a learning curve); ``eval_scorer`` adds scalars
    computed from each evaluation. The points are the model's ``learning_curve`` (saved with it).

    ``catalogue_reset_every`` = N: the training simulator's shared catalogue counters (clicks, exposure, the
    logged popularity) are cleared every N user-steps (:class:`~recgym.agents.callbacks.CatalogueReset`,
    ``train/catalogue_resets``), so the learner trains on the counter range an evaluation of N user-steps shows;
    ``None`` (default): never, the counters grow over the whole run."""
    from recgym.agents.callbacks import CatalogueReset, RecMetricsCallback, TruthCurve
    from recgym.agents.progress import TrainingProgressBar
    from recgym.envs.sb3 import SB3VecEnv
    from recgym.evaluation import make_eval_env

    timesteps = check_count("timesteps", timesteps)
    resets = [CatalogueReset(catalogue_reset_every)] if catalogue_reset_every is not None else []
    options = dict(env_options or {})
    agent = agent or algo
    world = make_eval_env(env_id, 1, **options).world  # validates the id and options with one-line errors
    venv = SB3VecEnv(env_id, num_envs=num_envs, **options)
    venv.seed(seed)
    train_env = wrap_env(venv) if wrap_env is not None else venv
    model = make_model(algo, train_env, seed=seed, **hyperparams)
    run_dir = new_run_dir(logdir, agent, env_id, seed)  # only once the model is built: a bad knob leaves no folder
    model.set_logger(configure(str(run_dir), ["stdout", "tensorboard"] if model.verbose >= 1 else ["tensorboard"]))
    setattr(model, META_KEY, checkpoint_meta(agent, env_id, options, world))
    hparams = {"agent": agent, "algo": algo, "env": env_id, "seed": seed, "timesteps": timesteps,
               "num_envs": num_envs, "catalogue_reset_every": catalogue_reset_every or 0, **ALGOS[algo].defaults,
               **hyperparams, **options}
    if eval_episodes and venv.venv.params.slate_size > 1:
        warnings.warn(f"no evaluation of {eval_episodes} episodes: recgym's evaluation and item metrics need "
                      f"slate_size=1; on slates the run logs SB3's rollout/ep_rew_mean and ep_len_mean", stacklevel=2)
        eval_episodes = 0
    curve = TruthCurve(env_id, eval_episodes, eval_freq, options, seed, num_envs, eval_scorer) if eval_episodes else None
    callbacks = [RecMetricsCallback(hparams=hparams, evaluated=curve is not None), *resets, *([curve] if curve else []),
                 *([TrainingProgressBar()] if progress_bar else [])]
    model.learn(total_timesteps=timesteps, callback=callbacks)
    if curve is not None:
        model.learning_curve = curve.points  # saved with the model, as its checkpoint metadata
    path = run_dir / "model.zip"
    model.save(path)
    return model, path
