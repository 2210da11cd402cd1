"""Stage-I pretraining of DSRM from logged trajectories of a behaviour policy in a recgym env.

Only LOGGED data is used for training: observations, recommended items, observed feedback and the
user id a platform knows. The two targets:

* encoder (raw state): ``<s~_t, e_next> + b`` regresses the next OBSERVED feedback -- what a
  sequential recommender fitted naively on biased logs learns;
* DDPM (purified state): the user's CLEAN profile, pooled over every session of that user in the
  log: ``unit(sum_j (y_j - y_bar) e_j)`` over the logged (non-zero) feedback y_j, with y_bar the
  log's mean logged feedback. Pooling many sessions averages away conformity noise, exposure
  dropouts and observation noise that a k-item history carries; dropped feedback (0) is treated as
  missing, not as dislike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from recgym.agents.dsrm.model import DSRM, DSRMConfig, resolve_device
from recgym.envs.vector import RecSysVectorEnv
from recgym.simulator import Simulator

BEHAVIOURS = ("random", "popular")


def make_venv(env_id: str, num_envs: int, env_options: dict[str, Any] | None = None) -> RecSysVectorEnv:
    """The native batched env of a recgym id (slate_size 1: DSRM logs one consumed item per step)."""
    venv = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point", **(env_options or {}))
    if not isinstance(venv, RecSysVectorEnv):
        raise ValueError(f"{env_id!r} is not a recgym env id (its vector entry point is not RecSysVectorEnv)")
    if venv.params.slate_size != 1:
        raise ValueError(f"DSRM logs single recommendations; slate_size must be 1, got {venv.params.slate_size}")
    return venv


def behaviour_actions(behaviour: str, venv: RecSysVectorEnv, rng: np.random.Generator) -> np.ndarray:
    """(B,) actions of a logging policy among the allowed items.

    ``"random"``: uniform; ``"popular"``: sampled proportionally to the world's prior popularity.
    """
    if behaviour not in BEHAVIOURS:
        raise ValueError(f"behaviour must be one of {list(BEHAVIOURS)}, got {behaviour!r}")
    mask = venv.action_masks()
    gumbel = rng.gumbel(size=mask.shape)
    if behaviour == "popular":
        gumbel += np.log(venv.world.pop_prior)[None]
    return np.where(mask, gumbel, -np.inf).argmax(axis=1)


def rollout(
    venv: RecSysVectorEnv, n_steps: int, behaviour: str, seed: int,
    probe: Callable[[Simulator], Any] | None = None,
) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray, dict[str, Any], Any]]:
    """Run ``n_steps`` batched steps; yield (observation, actions, infos of the step, probe(sim) before it)."""
    rng = np.random.default_rng(seed)
    obs, _ = venv.reset(seed=seed)
    for _ in range(n_steps):
        actions = behaviour_actions(behaviour, venv, rng)
        probed = probe(venv.sim) if probe is not None else None
        next_obs, _, _, _, infos = venv.step(actions)
        yield obs, actions, infos, probed
        obs = next_obs


@dataclass(frozen=True)
class Log:
    """Logged transitions (N rows): history item_ids (N, k) and observed feedback (N, k) before the
    step, the recommended item (N,), its observed feedback (N,), and the user id (N,)."""

    item_ids: np.ndarray
    feedback: np.ndarray
    next_item: np.ndarray
    next_feedback: np.ndarray
    user: np.ndarray

    def clean_targets(self, item_emb: np.ndarray, n_users: int) -> tuple[np.ndarray, np.ndarray]:
        """(N, D) unit clean profile of each row's user and (N,) bool rows whose user has one."""
        logged = self.next_feedback > 0
        weights = np.where(logged, self.next_feedback - self.next_feedback[logged].mean(), 0.0)
        profiles = np.zeros((n_users, item_emb.shape[1]))
        np.add.at(profiles, self.user, weights[:, None] * item_emb[self.next_item])
        norms = np.linalg.norm(profiles, axis=1, keepdims=True)
        unit = (profiles / np.maximum(norms, 1e-12)).astype(np.float32)
        return unit[self.user], norms[self.user, 0] > 0


def collect(
    venv: RecSysVectorEnv, timesteps: int, behaviour: str = "random", seed: int = 0, progress: bool = False
) -> Log:
    """Log ``timesteps`` transitions (rounded up to whole batches) of a behaviour policy."""
    n_steps = -(-timesteps // venv.num_envs)
    parts = []
    steps = rollout(venv, n_steps, behaviour, seed)
    for obs, actions, infos, _ in tqdm(steps, total=n_steps, desc="DSRM logging", disable=not progress):
        parts.append((obs["item_ids"], obs["feedback"], actions, infos["observed_feedback"], infos["user_id"]))
    return Log(*(np.concatenate(column) for column in zip(*parts)))


def pretrain(
    env_id: str,
    *,
    timesteps: int = 100_000,
    num_envs: int = 256,
    behaviour: str = "random",
    k_steps: int = 20,
    encoder_epochs: int = 3,
    diffusion_epochs: int = 20,
    batch_size: int = 512,
    lr: float = 1e-3,
    logdir: str | Path | None = "runs/",
    seed: int = 0,
    device: str = "auto",
    progress: bool = True,
    env_options: dict[str, Any] | None = None,
    **config: Any,
) -> DSRM:
    """Stage I: log a behaviour policy in ``env_id``, fit the encoder, then the conditional DDPM.

    Args:
        env_id: a recgym id, e.g. ``"recgym/KuaiRec-v0"``; ``env_options`` go to ``gym.make_vec``.
        timesteps: logged transitions; behaviour: logging policy (:data:`BEHAVIOURS`).
        k_steps: K diffusion steps; ``config``: other :class:`DSRMConfig` fields (d_model, ...).
        logdir: TensorBoard directory (``None`` disables logging); progress: show tqdm bars.
    Returns:
        the trained model (eval mode), carrying the world fingerprint; ``.save(path)`` it.
    """
    for name, value in (("timesteps", timesteps), ("num_envs", num_envs), ("encoder_epochs", encoder_epochs),
                        ("diffusion_epochs", diffusion_epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    torch.manual_seed(seed)
    venv = make_venv(env_id, num_envs, env_options)
    world = venv.world
    model = DSRM(
        DSRMConfig(embed_dim=world.embed_dim, history_len=venv.params.history_len, k_steps=k_steps, **config),
        world.fingerprint, world.n_items,
    ).to(resolve_device(device))
    log = collect(venv, timesteps, behaviour, seed, progress)
    targets, has_target = log.clean_targets(world.item_emb, world.n_users)
    writer = SummaryWriter(str(logdir)) if logdir is not None else None
    emb_padded = torch.as_tensor(np.vstack([world.item_emb, np.zeros((1, world.embed_dim), np.float32)]))
    n_rows = len(log.user)
    n_batches = -(-n_rows // batch_size) * encoder_epochs + -(-int(has_target.sum()) // batch_size) * diffusion_epochs
    with tqdm(total=n_batches, desc="DSRM stage I", disable=not progress) as bar:
        model.train()
        params = list(model.encoder.parameters()) + [model.feedback_bias]
        _fit(params, lr, encoder_epochs, n_rows, batch_size, seed, writer, "stage1/encoder_loss", bar,
             lambda rows: _encoder_loss(model, log, emb_padded, rows))
        raw = _raw_states(model, log, emb_padded, batch_size)
        condition, target = raw[has_target], torch.as_tensor(targets[has_target], device=model.device)
        _fit(list(model.denoiser.parameters()), lr, diffusion_epochs, len(target), batch_size, seed + 1, writer,
             "stage1/diffusion_loss", bar, lambda rows: model.diffusion_loss(condition[rows], target[rows]))
    if writer is not None:
        writer.close()
    venv.close()
    return model.eval()


def _fit(
    params: list[torch.nn.Parameter], lr: float, epochs: int, n_rows: int, batch_size: int, seed: int,
    writer: SummaryWriter | None, tag: str, bar: tqdm, loss_fn: Callable[[torch.Tensor], torch.Tensor],
) -> None:
    """Adam over shuffled mini-batches of row indices; logs the mean loss per epoch to TensorBoard."""
    optimizer = torch.optim.Adam(params, lr=lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * -(-n_rows // batch_size))
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        total = 0.0
        for rows in torch.randperm(n_rows, generator=generator).split(batch_size):
            loss = loss_fn(rows)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += loss.item() * len(rows)
            bar.update()
            bar.set_postfix({tag.split("/")[-1]: f"{loss.item():.4f}"})
        if writer is not None:
            writer.add_scalar(tag, total / n_rows, epoch)


def _history(log: Log, emb_padded: torch.Tensor, rows: torch.Tensor, device: torch.device) -> dict[str, torch.Tensor]:
    item_ids = torch.as_tensor(log.item_ids[rows.numpy()])
    return {
        "item_ids": item_ids.to(device),
        "embeddings": emb_padded[item_ids].to(device),
        "feedback": torch.as_tensor(log.feedback[rows.numpy()], device=device),
    }


def _encoder_loss(model: DSRM, log: Log, emb_padded: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    raw = model.raw_state(_history(log, emb_padded, rows, model.device))
    next_emb = emb_padded[torch.as_tensor(log.next_item[rows.numpy()])].to(model.device)
    predicted = (raw * next_emb).sum(dim=1) + model.feedback_bias
    return ((predicted - torch.as_tensor(log.next_feedback[rows.numpy()], device=model.device)) ** 2).mean()


@torch.no_grad()
def _raw_states(model: DSRM, log: Log, emb_padded: torch.Tensor, batch_size: int) -> torch.Tensor:
    """(N, D) encoder states of every logged row (the frozen condition of the DDPM)."""
    model.eval()
    states = [model.raw_state(_history(log, emb_padded, rows, model.device))
              for rows in torch.arange(len(log.user)).split(4 * batch_size)]
    model.train()
    return torch.cat(states)


def train_cli(
    env_id: str, timesteps: int, seed: int = 0, logdir: str | Path = "runs", num_envs: int = 256,
    progress_bar: bool = False, eval_episodes: int = 0, env_options: dict[str, Any] | None = None,
) -> tuple[DSRM, Path]:
    """``recgym train --agent dsrm-pretrain``: :func:`pretrain` with TensorBoard run ``logdir/dsrm_s{seed}``,
    checkpoint ``logdir/dsrm_s{seed}.pt``; with ``eval_episodes``, the denoising scores of
    ``eval_episodes * max_turn`` fresh transitions are logged too (``dsrm/*`` scalars).
    Returns (model, checkpoint path)."""
    from recgym.agents.dsrm.evaluate import evaluate

    run_dir = Path(logdir) / f"dsrm_s{seed}"
    model = pretrain(env_id, timesteps=timesteps, num_envs=num_envs, logdir=run_dir, seed=seed,
                     progress=progress_bar, env_options=env_options)
    if eval_episodes:
        max_turn = make_venv(env_id, 1, env_options).params.max_turn
        scores = evaluate(model, env_id, timesteps=eval_episodes * max_turn, num_envs=num_envs, seed=seed + 1,
                          env_options=env_options)
        with SummaryWriter(str(run_dir)) as writer:
            for name, value in scores.as_dict().items():
                writer.add_scalar(f"dsrm/{name}", value)
    return model, model.save(Path(logdir) / f"dsrm_s{seed}.pt")


def load_model(path: str | Path) -> DSRM:
    """Load a checkpoint saved by :func:`train_cli` (the CLI's loader hook)."""
    return DSRM.load(path)
