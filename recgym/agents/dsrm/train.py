"""Stage-I pretraining of DSRM from logged trajectories of a behaviour policy in a recgym env.

Only LOGGED data is used for training: observations, recommended items, observed feedback, the
user id and the items' logged popularity, all of which a platform knows. Two sequential
recommenders of the same architecture, from the same initial weights, read the same histories:

* encoder (raw state s~_t): ``<s~_t, e_next> + b`` regresses the next OBSERVED feedback -- what a
  sequential recommender fitted naively on biased logs learns (a lost feedback counts as 0);
* debiased teacher: regresses the DEBIASED next feedback (:meth:`Log.debiased_feedback`):
  popularity deconfounding as in PDA (Zhang et al. 2021: ``y ~ user + beta * pop``, the fitted
  ``beta * pop`` removed) and inverse-propensity weighting of the exposure-bias dropouts (a lost
  feedback is missing, not 0; the logged rows are weighted by 1 / P(logged | pop)).

The DDPM (purified state s^_t) is trained toward the teacher's unit state, conditioned on the raw
state and the history's popularity context. With the noise switched off, beta = 0 and the
propensities are flat, so the two recommenders are fitted to the same targets and the purified
state equals the raw one: the denoiser removes what the noise adds and nothing else.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from recgym.agents.checkpoints import checkpoint_meta, new_run_dir
from recgym.agents.dsrm.model import DSRM, DSRMConfig, HistoryEncoder, resolve_device
from recgym.agents.dsrm.rollouts import make_venv, rollout
from recgym.dynamics import popularity_scores
from recgym.envs.vector import RecSysVectorEnv
from recgym.world import World

#: The registered agent name of stage-I pretraining (:data:`recgym.agents.AGENTS`).
AGENT = "dsrm-pretrain"
#: Smallest propensity P(logged | popularity) used in inverse-propensity weights (caps a weight at 20).
MIN_PROPENSITY = 0.05


@dataclass(frozen=True)
class Debiasing:
    """The fitted noise model of a log: conformity slope ``beta`` (feedback per unit popularity score)
    and the exposure propensity ``P(logged | pop) = clip(intercept + slope * pop, MIN_PROPENSITY, 1)``."""

    beta: float
    propensity_intercept: float
    propensity_slope: float


@dataclass(frozen=True)
class Log:
    """Logged transitions (N rows): history item_ids (N, k) and observed feedback (N, k) before the
    step, the recommended item (N,), its observed feedback (N,), the user id (N,), and the logged
    popularity score of every item (I,) in [0, 1] at the end of logging."""

    item_ids: np.ndarray
    feedback: np.ndarray
    next_item: np.ndarray
    next_feedback: np.ndarray
    user: np.ndarray
    item_popularity: np.ndarray

    def fit_debiasing(self) -> Debiasing:
        """Fit the noise model from the log alone.

        beta: within-user least squares of the logged (non-zero) feedback on the item's popularity
        score (``y ~ user + beta * pop``, PDA's deconfounding); the propensity: least squares of the
        logged indicator on the popularity score over all rows.
        """
        pop = self.item_popularity[self.next_item]
        logged = self.next_feedback > 0
        n_users = int(self.user.max()) + 1
        counts = np.maximum(np.bincount(self.user, weights=logged, minlength=n_users), 1)
        dy = (self.next_feedback - np.bincount(self.user, self.next_feedback * logged, n_users)[self.user]
              / counts[self.user])[logged]
        dp = (pop - np.bincount(self.user, pop * logged, n_users)[self.user] / counts[self.user])[logged]
        beta = float(dy @ dp / max(dp @ dp, 1e-12))
        design = np.stack([np.ones_like(pop), pop], axis=1)
        intercept, slope = np.linalg.lstsq(design, logged.astype(np.float64), rcond=None)[0]
        return Debiasing(beta, float(intercept), float(slope))

    def debiased_feedback(self, debiasing: Debiasing) -> tuple[np.ndarray, np.ndarray]:
        """(N,) debiased next feedback ``y - beta * (pop - pop_bar)`` and (N,) inverse-propensity row
        weights: ``1 / P(logged | pop)`` on logged rows (normalised to mean 1 over them), 0 on lost ones.

        Only the popularity-DEPENDENT part of the conformity is removed (``pop_bar``: the mean score of
        the logged rows), so the feedback keeps its level and the two recommenders' targets differ by
        the noise alone.
        """
        pop = self.item_popularity[self.next_item]
        logged = self.next_feedback > 0
        pop = pop - pop[logged].mean()
        propensity = np.clip(debiasing.propensity_intercept + debiasing.propensity_slope * pop, MIN_PROPENSITY, 1.0)
        weights = np.where(logged, 1.0 / propensity, 0.0)
        weights /= weights[logged].mean()
        return (self.next_feedback - debiasing.beta * pop).astype(np.float32), weights.astype(np.float32)


def collect(
    venv: RecSysVectorEnv, timesteps: int, behaviour: str = "random", seed: int = 0, progress: bool = False
) -> Log:
    """Log ``timesteps`` transitions (rounded up to whole batches) of a behaviour policy."""
    n_steps = -(-timesteps // venv.num_envs)
    parts = []
    steps = rollout(venv, n_steps, behaviour, seed)
    for obs, actions, infos, _ in tqdm(steps, total=n_steps, desc="DSRM logging", disable=not progress):
        parts.append((obs["item_ids"], obs["feedback"], actions, infos["observed_feedback"], infos["user_id"]))
    popularity = popularity_scores(venv.sim.popularity, np.arange(venv.world.n_items))
    return Log(*(np.concatenate(column) for column in zip(*parts)), item_popularity=popularity)


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
        timesteps: logged transitions; behaviour: logging policy (:data:`~recgym.agents.dsrm.rollouts.BEHAVIOURS`).
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
    log = collect(venv, timesteps, behaviour, seed, progress)
    venv.close()
    model = DSRM(
        DSRMConfig(embed_dim=world.embed_dim, history_len=venv.params.history_len, k_steps=k_steps, **config),
        world.fingerprint, world.n_items, log.item_popularity,
    ).to(resolve_device(device))
    teacher = copy.deepcopy(model.encoder)  # same initial weights: at zero noise it learns what the encoder learns
    teacher_bias = torch.nn.Parameter(torch.zeros((), device=model.device))
    debiasing = log.fit_debiasing()
    debiased, ipw = log.debiased_feedback(debiasing)
    observed = (log.next_feedback, np.ones_like(log.next_feedback))
    writer = SummaryWriter(str(logdir)) if logdir is not None else None
    if writer is not None:
        for name, value in dataclasses.asdict(debiasing).items():
            writer.add_scalar(f"stage1/{name}", value)
    emb_padded = torch.as_tensor(np.vstack([world.item_emb, np.zeros((1, world.embed_dim), np.float32)]))
    n_rows = len(log.user)
    n_batches = -(-n_rows // batch_size) * (2 * encoder_epochs + diffusion_epochs)
    with tqdm(total=n_batches, desc="DSRM stage I", disable=not progress) as bar:
        model.train()
        for encoder, bias, (targets, weights), tag in ((model.encoder, model.feedback_bias, observed, "encoder"),
                                                       (teacher, teacher_bias, (debiased, ipw), "teacher")):
            _fit(list(encoder.parameters()) + [bias], lr, encoder_epochs, n_rows, batch_size, seed, writer,
                 f"stage1/{tag}_loss", bar,
                 lambda rows, encoder=encoder, bias=bias, targets=targets, weights=weights: _feedback_loss(
                     model, encoder, bias, log, emb_padded, targets, weights, rows))
        raw, context, clean = _states(model, teacher, log, emb_padded, batch_size)
        _fit(list(model.denoiser.parameters()), lr, diffusion_epochs, n_rows, batch_size, seed + 1, writer,
             "stage1/diffusion_loss", bar, lambda rows: model.diffusion_loss(raw[rows], context[rows], clean[rows]))
    if writer is not None:
        writer.close()
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
    """The batched observation (item_ids, embeddings, feedback) of logged ``rows``."""
    item_ids = torch.as_tensor(log.item_ids[rows.numpy()])
    return {
        "item_ids": item_ids.to(device),
        "embeddings": emb_padded[item_ids].to(device),
        "feedback": torch.as_tensor(log.feedback[rows.numpy()], device=device),
    }


def _encode(encoder: HistoryEncoder, history: dict[str, torch.Tensor]) -> torch.Tensor:
    return encoder(history["embeddings"], history["feedback"], history["item_ids"] >= 0)


def _feedback_loss(
    model: DSRM, encoder: HistoryEncoder, bias: torch.Tensor, log: Log, emb_padded: torch.Tensor,
    targets: np.ndarray, weights: np.ndarray, rows: torch.Tensor,
) -> torch.Tensor:
    """Weighted MSE of ``<encoder(history), e_next> + bias`` against the (N,) next-feedback ``targets``."""
    state = _encode(encoder, _history(log, emb_padded, rows, model.device))
    next_emb = emb_padded[torch.as_tensor(log.next_item[rows.numpy()])].to(model.device)
    error = (state * next_emb).sum(dim=1) + bias - torch.as_tensor(targets[rows.numpy()], device=model.device)
    return (torch.as_tensor(weights[rows.numpy()], device=model.device) * error**2).mean()


@torch.no_grad()
def _states(
    model: DSRM, teacher: HistoryEncoder, log: Log, emb_padded: torch.Tensor, batch_size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Of every logged row: raw states (N, D) and history contexts (N, 3D), the DDPM's condition, and
    the teacher's unit states (N, D), its clean target."""
    model.eval()
    teacher.eval()
    parts = []
    for rows in torch.arange(len(log.user)).split(4 * batch_size):
        history = _history(log, emb_padded, rows, model.device)
        clean = _encode(teacher, history)
        parts.append((model.raw_state(history), model.history_context(history),
                      clean / clean.norm(dim=1, keepdim=True).clamp(min=1e-12)))
    model.train()
    return tuple(torch.cat(column) for column in zip(*parts))


def train_cli(
    env_id: str, timesteps: int, seed: int = 0, logdir: str | Path = "runs", num_envs: int = 256,
    progress_bar: bool = False, eval_episodes: int = 0, env_options: dict[str, Any] | None = None,
) -> tuple[DSRM, Path]:
    """``recgym train --agent dsrm-pretrain``: :func:`pretrain` in a new run directory
    ``logdir/dsrm-pretrain_<env>_s<seed>_<n>/`` holding the TensorBoard events and the checkpoint
    ``dsrm.pt`` (with the ``dsrm-pretrain`` checkpoint metadata); with ``eval_episodes``, the denoising
    scores of ``eval_episodes * max_turn`` fresh transitions are logged too (``dsrm/*`` scalars).
    Returns (model, checkpoint path)."""
    from recgym.agents.dsrm.evaluate import evaluate

    venv = make_venv(env_id, 1, env_options)  # validates the id and options before any work
    run_dir = new_run_dir(logdir, AGENT, env_id, seed)
    model = pretrain(env_id, timesteps=timesteps, num_envs=num_envs, logdir=run_dir, seed=seed,
                     progress=progress_bar, env_options=env_options)
    if eval_episodes:
        scores = evaluate(model, env_id, timesteps=eval_episodes * venv.params.max_turn, num_envs=num_envs,
                          seed=seed + 1, env_options=env_options)
        with SummaryWriter(str(run_dir)) as writer:
            for name, value in scores.as_dict().items():
                writer.add_scalar(f"dsrm/{name}", value)
    return model, model.save(run_dir / "dsrm.pt", checkpoint_meta(AGENT, env_id, env_options, venv.world))


def load_model(path: str | Path, world: World | None = None) -> DSRM:
    """Load a checkpoint saved by :func:`train_cli` (the CLI's loader hook): refused for another agent's
    checkpoint or, given ``world``, another world's."""
    return DSRM.load(path, world=world, agent=AGENT)
