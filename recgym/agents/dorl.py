"""``dorl``: a DORL-style agent (Gao et al., "Alleviating Matthew Effect of Offline RL in Interactive
Recommendation", SIGIR'23): model-based reward from an ensemble world model fitted on logged feedback,
penalised by uncertainty and rewarded for entropy, then A2C (gamma 0.9, lr 1e-3, DORL's settings).

recgym's version is "model-based reward, simulator transitions": the learner steps the recgym
simulator (its leave rule and state transitions, as DORL keeps the known exit rule in its simulated
env) but never sees the simulator's reward; it trains on

    r~ = max(0, mean_e r^_e(u, a) - var_penalty * max_var(u, a) + entropy_weight * H - min_reward)

where r^_e are E reward models fitted on logs of a random behaviour policy (observed feedback only,
never the truth). Because transitions and leaving come from the simulator, this is NOT fully offline.

Differences from the paper, said plainly: ``max_var`` is the ensemble disagreement (variance of the E
predicted means), not the max of per-member Gaussian variances; ``H`` is the normalised entropy of the
items in the current history window (k slots) - DORL's entropy term rewards the state's item-spread
under the behaviour policy; our behaviour policy is uniform, so the window's own spread is used.
Each member is a user-id embedding dot item-id embedding plus biases (DSRM stage I keys users by
``infos["user_id"]`` as well).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from torch import nn

from recgym.agents.callbacks import reset_due
from recgym.agents.flat import load_model, train
from recgym.agents.rewards import RewardShaper
from recgym.agents.sb3_policy import SB3Policy
from recgym.sizes import check_optional_count
from recgym.world import World


@dataclass(frozen=True)
class DORLConfig:
    """log_fraction: logged random-policy steps as a fraction of the A2C timesteps; ensemble: E;
    dim: embedding size; epochs/lr: reward-model fit; var_penalty, entropy_weight, min_reward: r~'s terms."""

    log_fraction: float = 0.25
    ensemble: int = 5
    dim: int = 16
    epochs: int = 100
    lr: float = 0.05
    var_penalty: float = 1.0
    entropy_weight: float = 0.05
    min_reward: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < self.log_fraction <= 1:
            raise ValueError(f"log_fraction must be in (0, 1], got {self.log_fraction!r}")
        if self.ensemble < 2:
            raise ValueError(f"ensemble must be >= 2, got {self.ensemble!r}")


class RewardEnsemble(nn.Module):
    """E reward models: (N,) users, (N,) items -> (E, N) predicted observed feedback."""

    def __init__(self, n_users: int, n_items: int, ensemble: int, dim: int, prior_std: float = 0.5) -> None:
        super().__init__()
        self.user = nn.Parameter(0.05 * th.randn(ensemble, n_users, dim))
        self.item = nn.Parameter(0.05 * th.randn(ensemble, n_items, dim))
        self.user_bias = nn.Parameter(th.zeros(ensemble, n_users))
        # a wide prior on the item bias: members disagree on items the logs never showed them
        self.item_bias = nn.Parameter(prior_std * th.randn(ensemble, n_items))

    def forward(self, users: th.Tensor, items: th.Tensor) -> th.Tensor:
        return ((self.user[:, users] * self.item[:, items]).sum(-1)
                + self.user_bias[:, users] + self.item_bias[:, items])

    def mean_and_var(self, users: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N,) mean and (N,) ensemble variance of the predicted feedback."""
        with th.no_grad():
            pred = self(th.as_tensor(users, dtype=th.long), th.as_tensor(items, dtype=th.long)).numpy()
        return pred.mean(0), pred.var(0)


def log_random(env_id: str, steps: int, seed: int, num_envs: int, options: dict[str, Any],
               catalogue_reset_every: int | None = None) -> tuple[np.ndarray, ...]:
    """(users, items, observed feedback), each (N,), from a uniformly random behaviour policy; with
    ``catalogue_reset_every`` = N the catalogue's counters are cleared after each step that reaches the next
    multiple of N user-steps (:func:`~recgym.agents.callbacks.reset_due`, the rule of training's
    :class:`~recgym.agents.callbacks.CatalogueReset`)."""
    from recgym.envs.sb3 import SB3VecEnv

    venv = SB3VecEnv(env_id, num_envs=num_envs, **options)
    venv.seed(seed)
    venv.reset()
    rng = np.random.default_rng(seed)
    parts = []
    for step in range(max(1, steps // num_envs)):
        actions = rng.integers(0, venv.action_space.n, size=num_envs)
        venv.step(actions)
        parts.append((venv.last_infos["user_id"], actions, venv.last_infos["observed_feedback"]))
        if catalogue_reset_every and reset_due(step * num_envs, (step + 1) * num_envs, catalogue_reset_every):
            venv.venv.sim.clear_counters()
    return tuple(np.concatenate(column) for column in zip(*parts))


def fit_ensemble(users: np.ndarray, items: np.ndarray, feedback: np.ndarray, n_users: int, n_items: int,
                 config: DORLConfig, seed: int) -> RewardEnsemble:
    """Fit each member on its own bootstrap of the logs (MSE, Adam, full batch)."""
    th.manual_seed(seed)
    model = RewardEnsemble(n_users, n_items, config.ensemble, config.dim)
    rng = np.random.default_rng(seed)
    boot = rng.integers(0, users.size, size=(config.ensemble, users.size))
    u, i = th.as_tensor(users[boot], dtype=th.long), th.as_tensor(items[boot], dtype=th.long)
    y = th.as_tensor(feedback[boot], dtype=th.float32)
    members = th.arange(config.ensemble).unsqueeze(1)
    optimizer = th.optim.Adam(model.parameters(), lr=config.lr)
    for _ in range(config.epochs):
        pred = ((model.user[members, u] * model.item[members, i]).sum(-1)
                + model.user_bias[members, u] + model.item_bias[members, i])
        loss = ((pred - y) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model


class PenalisedModelReward(RewardShaper):
    """Replaces the env reward by DORL's r~ (see the module docstring)."""

    def __init__(self, venv: Any, model: RewardEnsemble, config: DORLConfig) -> None:
        super().__init__(venv)
        self.model, self.config = model, config

    def shape(self, reward: np.ndarray, obs: dict[str, np.ndarray], actions: np.ndarray) -> np.ndarray:
        users = self.venv.unwrapped.last_infos["user_id"]
        mean, var = self.model.mean_and_var(users, actions)
        c = self.config
        return np.maximum(0.0, mean - c.var_penalty * var + c.entropy_weight * window_entropy(obs["item_ids"])
                          - c.min_reward)


def window_entropy(item_ids: np.ndarray) -> np.ndarray:
    """(B,) entropy of the item distribution in each (B, k) history window (-1 = empty), divided by log k."""
    k = item_ids.shape[1]
    valid = item_ids >= 0
    same = (item_ids[:, :, None] == item_ids[:, None, :]) & valid[:, :, None] & valid[:, None, :]
    n = np.maximum(valid.sum(1, keepdims=True), 1)
    p = same.sum(2) / n  # (B, k) share of each slot's item in the window
    entropy = -np.where(valid, np.log(np.where(valid, p, 1.0)), 0.0).sum(1) / n[:, 0]
    return entropy / np.log(k)


def train_dorl(env_id: str, timesteps: int, seed: int = 0, num_envs: int = 64, config: DORLConfig | None = None,
               env_options: dict[str, Any] | None = None, catalogue_reset_every: int | None = None,
               **options: Any) -> tuple[SB3Policy, Path]:
    """Log a random policy for ``log_fraction * timesteps`` steps, fit the ensemble, then train A2C
    on r~ for ``timesteps``; checkpoint ``model.zip`` in the run directory (the A2C model with the
    ``dorl`` checkpoint metadata, world included, and the DORL settings); ``options`` as
    :func:`recgym.agents.flat.train`. ``catalogue_reset_every``: the logging and the A2C training both clear
    the catalogue's counters every that many user-steps (``None``: never). The policy refuses to act in another
    world."""
    from recgym.evaluation import make_eval_env

    config = config or DORLConfig()
    check_optional_count("catalogue_reset_every", catalogue_reset_every)
    env_options = dict(env_options or {})
    world = make_eval_env(env_id, 1, **env_options).world
    users, items, feedback = log_random(env_id, int(config.log_fraction * timesteps), seed, num_envs, env_options,
                                        catalogue_reset_every)
    ensemble = fit_ensemble(users, items, feedback, world.n_users, world.n_items, config, seed)
    model, path = train("a2c", env_id, timesteps, seed=seed, num_envs=num_envs, env_options=env_options,
                        agent="dorl", wrap_env=lambda venv: PenalisedModelReward(venv, ensemble, config),
                        catalogue_reset_every=catalogue_reset_every, **options)
    model.dorl_config = asdict(config)
    model.save(path)
    return SB3Policy(model), path


def load_dorl(path: str | Path, world: World | None = None) -> SB3Policy:
    """Load a checkpoint of :func:`train_dorl` (refused for another agent or, given ``world``, another world)."""
    return SB3Policy(load_model("a2c", path, agent="dorl", world=world))
