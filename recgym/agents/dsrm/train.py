"""Stage-I pretraining of DSRM from logged trajectories of a behaviour policy in a recgym env.

Only LOGGED data is used for training: observations, recommended items, observed feedback, the
user and session ids, the items' logged popularity and creators, all of which a platform knows.

The clean target is HELD-OUT consumption (:meth:`Log.held_out_profiles`): for each logged step, the
direction ``sum_j (y_j - y_bar) (e_j - e_bar)`` over the user's logged steps the history has not seen
(the rest of the session and the user's other sessions). One short noisy history is compatible with
many such profiles (which items were shown next, which were clicked), so the DDPM models a
distribution, not a regression. The encoders regress the feedback of held-out steps drawn at
random (:meth:`Log.held_out_draw`; in expectation the same direction), from the same initial
weights, batch order and draws, in two views:

* naive (the encoder's target; raw state s~_t): the observed feedback as logged;
* debiased (the teacher's target, and the DDPM's clean samples; purified state s^_t): the logging's
  pulls removed (:meth:`Log.debiased_feedback`: PDA's popularity deconfounding, Zhang et al. 2021,
  ``y ~ user + beta pop + beta_familiar familiar``, with creator familiarity as a second
  confounder) and, where the logging loses feedback, inverse-propensity weights.

With the pulls switched off the fitted betas are ~0 and the two views coincide: the purified state
can then differ from the raw one only by the DDPM's own sampling, which the noise-off control of
:mod:`recgym.agents.dsrm.evaluate` measures.
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

from recgym.agents.callbacks import reset_due
from recgym.agents.dsrm.model import DSRM, DSRMConfig, HistoryEncoder, resolve_device
from recgym.agents.dsrm.rollouts import make_venv, rollout
from recgym.dynamics import popularity_scores
from recgym.envs.vector import RecSysVectorEnv
from recgym.sizes import check_count, check_optional_count
from recgym.world import World

#: The registered agent name of stage-I pretraining (:data:`recgym.agents.AGENTS`).
AGENT = "dsrm-pretrain"
#: Smallest propensity P(logged | popularity) used in inverse-propensity weights (caps a weight at 20).
MIN_PROPENSITY = 0.05


@dataclass(frozen=True)
class Debiasing:
    """The fitted noise model of a log: the pulls on the feedback, ``beta`` per unit popularity score
    (conformity) and ``beta_familiar`` on an item from a familiar creator, and the exposure propensity
    ``P(logged | pop) = clip(intercept + slope * pop, MIN_PROPENSITY, 1)`` (intercept 1, slope 0 when
    the logging loses no feedback)."""

    beta: float
    beta_familiar: float
    propensity_intercept: float
    propensity_slope: float


@dataclass(frozen=True)
class Log:
    """Logged transitions (N rows, in time order within each session): history item_ids (N, k) and
    observed feedback (N, k) before the step, the recommended item (N,), its observed feedback (N,),
    the user id (N,), the session id (N,), whether the recommended item's creator is familiar (N,)
    (followed by the user or among the history's creators: what the platform's own logs say), the
    logged popularity score of every item (I,) in [0, 1] at the end of logging, and ``lossy``:
    whether the logging loses feedback (v0's ``exposure_bias``; then a 0 is missing, not a skip).

    ``true_feedback`` (N, k) and ``next_true`` (N,): the TRUE rewards of the same history and step,
    which only a simulator has; read by the oracle-debiased ceiling only, never by DSRM."""

    item_ids: np.ndarray
    feedback: np.ndarray
    next_item: np.ndarray
    next_feedback: np.ndarray
    user: np.ndarray
    session: np.ndarray
    familiar: np.ndarray
    item_popularity: np.ndarray
    lossy: bool = False
    true_feedback: np.ndarray | None = None
    next_true: np.ndarray | None = None

    def observed_rows(self) -> np.ndarray:
        """(N,) bool: rows whose feedback was logged (all rows unless the logging is lossy)."""
        return self.next_feedback > 0 if self.lossy else np.ones(len(self.user), bool)

    def fit_debiasing(self) -> Debiasing:
        """Fit the noise model from the log alone.

        The pulls: within-user least squares of the observed feedback on the item's popularity score
        and creator familiarity (``y ~ user + beta pop + beta_familiar familiar``, PDA's deconfounding
        with familiarity as a second confounder) over the observed rows; the propensity (lossy logs
        only): least squares of the logged indicator on the popularity score over all rows.
        """
        observed = self.observed_rows()
        covariates = np.stack([self.item_popularity[self.next_item], self.familiar.astype(np.float64)], axis=1)
        n_users = int(self.user.max()) + 1
        counts = np.maximum(np.bincount(self.user, weights=observed, minlength=n_users), 1)[self.user]

        def within(values: np.ndarray) -> np.ndarray:
            return values - np.bincount(self.user, values * observed, n_users)[self.user] / counts

        dx = np.stack([within(column) for column in covariates.T], axis=1)[observed]
        dy = within(self.next_feedback.astype(np.float64))[observed]
        beta, beta_familiar = np.linalg.lstsq(dx.T @ dx + 1e-9 * np.eye(2), dx.T @ dy, rcond=None)[0]
        intercept, slope = 1.0, 0.0
        if self.lossy:
            design = np.stack([np.ones(len(self.user)), covariates[:, 0]], axis=1)
            intercept, slope = np.linalg.lstsq(design, observed.astype(np.float64), rcond=None)[0]
        return Debiasing(float(beta), float(beta_familiar), float(intercept), float(slope))

    def debiased_feedback(self, debiasing: Debiasing) -> tuple[np.ndarray, np.ndarray]:
        """(N,) debiased next feedback ``y - beta (pop - pop_bar) - beta_familiar (familiar - familiar_bar)``
        and (N,) row weights: ``1 / P(logged | pop)`` on observed rows (normalised to mean 1 over
        them), 0 on lost ones (all 1 when the logging is not lossy).

        Only the pulls' variation is removed (the bars: means over the observed rows), so the feedback
        keeps its level and with the pulls off (fitted betas ~ 0) the naive and debiased views agree.
        """
        observed = self.observed_rows()
        pop = self.item_popularity[self.next_item]
        pop = pop - pop[observed].mean()
        familiar = self.familiar - self.familiar[observed].mean()
        propensity = np.clip(debiasing.propensity_intercept + debiasing.propensity_slope * pop, MIN_PROPENSITY, 1.0)
        weights = np.where(observed, 1.0 / propensity, 0.0)
        weights /= weights[observed].mean()
        debiased = self.next_feedback - debiasing.beta * pop - debiasing.beta_familiar * familiar
        return debiased.astype(np.float32), weights.astype(np.float32)

    def held_out_draw(self, rows: np.ndarray, rng: np.random.Generator, rounds: int = 8) -> np.ndarray:
        """(R,) for each of ``rows`` (R,) one logged step of the same user that the row's history has NOT
        seen, uniformly among them (the row itself, its next step, when ``rounds`` draws found none)."""
        by_user = np.argsort(self.user, kind="stable")
        counts = np.bincount(self.user)
        starts = np.cumsum(counts) - counts
        user = self.user[rows]
        drawn = rows.copy()
        pending = np.ones(len(rows), bool)
        for _ in range(rounds):
            candidate = by_user[starts[user] + (rng.random(len(rows)) * counts[user]).astype(np.int64)]
            seen = (self.session[candidate] == self.session[rows]) & (candidate < rows)  # in the row's history
            take = pending & ~seen
            drawn[take] = candidate[take]
            pending &= ~take
        return drawn

    def held_out_profiles(self, feedback: np.ndarray, weights: np.ndarray, item_emb: np.ndarray) -> np.ndarray:
        """(N, D) stage I's clean view of each row's user: the unit direction of
        ``sum_j w_j (y_j - y_bar) (e_j - e_bar)`` over the user's logged steps that the row's history has
        NOT seen (the rest of its own session from this step on, and the user's other sessions), with
        ``feedback`` y (N,) and ``weights`` w (N,) per row, ``y_bar`` their weighted mean and ``e_bar`` the
        logged items' mean embedding (without it, a user with no click would point at -e_bar).

        This is held-out consumption: many such profiles are compatible with one short history (which
        items the user happened to be shown next, which were clicked), so the target has real spread
        given the history. A zero row marks a row with nothing held out (no weight on it).
        """
        y_bar = float((weights * feedback).sum() / max(weights.sum(), 1e-12))
        embeddings = item_emb[self.next_item]
        contributions = (weights * (feedback - y_bar))[:, None] * (embeddings - embeddings.mean(axis=0))  # (N, D)
        per_user = np.zeros((int(self.user.max()) + 1, item_emb.shape[1]))
        np.add.at(per_user, self.user, contributions)
        order = np.lexsort((np.arange(len(self.session)), self.session))  # by session, in time order
        before = np.cumsum(contributions[order], axis=0) - contributions[order]  # exclusive running sums
        starts = np.r_[True, self.session[order][1:] != self.session[order][:-1]]
        first = np.maximum.accumulate(np.where(starts, np.arange(len(order)), 0))  # each row's session start
        seen = before - before[first]  # the sum over this session's earlier steps
        profiles = np.empty_like(contributions)
        profiles[order] = per_user[self.user[order]] - seen
        norms = np.linalg.norm(profiles, axis=1, keepdims=True)
        return np.where(norms > 1e-9, profiles / np.maximum(norms, 1e-12), 0.0).astype(np.float32)


def familiar_creator(world: World, item_ids: np.ndarray, item: np.ndarray, user: np.ndarray) -> np.ndarray:
    """(N,) bool: ``item``'s creator (N,) is among the creators of the history ``item_ids`` (N, k) or
    followed by ``user`` (N,) (v1 worlds): the familiarity a platform can compute from its own logs."""
    creator = world.item_creator[item][:, None]
    familiar = ((world.item_creator[np.maximum(item_ids, 0)] == creator) & (item_ids >= 0)).any(axis=1)
    if world.user_followed is not None and world.user_followed.size:
        familiar |= (world.user_followed[user] == creator).any(axis=1)
    return familiar


def collect(
    venv: RecSysVectorEnv, timesteps: int, behaviour: str = "random", seed: int = 0, progress: bool = False,
    catalogue_reset_every: int | None = None,
) -> Log:
    """Log ``timesteps`` transitions (rounded up to whole batches of ``venv.num_envs`` user-steps) of a behaviour
    policy. The log's item popularity is the simulator's at the end of logging; with ``catalogue_reset_every`` = N
    (issue #19's reset, as the agent's training runs it) the shared catalogue counters are cleared after each batched
    step whose user-step count reaches the next multiple of N (:func:`recgym.agents.callbacks.reset_due`), and the
    item popularity is the one the last cleared stretch of N user-steps ended with (read just before that clear,
    not the part-filled stretch after it): what an evaluation of N user-steps, counters from 0, ends with."""
    n_steps = -(-timesteps // venv.num_envs)
    parts = []
    sessions = np.zeros(venv.num_envs, np.int64)
    slots = np.arange(venv.num_envs)
    steps = rollout(venv, n_steps, behaviour, seed)
    ended = None  # the popularity before the last clear
    for step, (obs, actions, infos, _, true_feedback) in enumerate(tqdm(steps, total=n_steps, desc="DSRM logging",
                                                                        disable=not progress)):
        sessions += obs["item_ids"][:, -1] < 0  # an empty history starts a session
        parts.append((obs["item_ids"], obs["feedback"], actions, infos["observed_feedback"], infos["user_id"],
                      sessions * venv.num_envs + slots, true_feedback, infos["true_reward"]))
        if catalogue_reset_every and reset_due(step * venv.num_envs, (step + 1) * venv.num_envs,
                                               catalogue_reset_every):
            ended = venv.sim.popularity  # a new (I,) array
            venv.sim.clear_counters()
    item_ids, feedback, item, observed, user, session, true_feedback, next_true = (
        np.concatenate(column) for column in zip(*parts))
    popularity = popularity_scores(venv.sim.popularity if ended is None else ended, np.arange(venv.world.n_items))
    return Log(item_ids, feedback, item, observed, user, session, familiar_creator(venv.world, item_ids, item, user),
               popularity, lossy=venv.params.exposure_bias > 0, true_feedback=true_feedback.astype(np.float32),
               next_true=next_true.astype(np.float32))


@dataclass
class StageOne:
    """What stage I fits: the DSRM ``model`` (encoder + DDPM), the debiased ``teacher`` (the
    deterministic regression of the DDPM's clean target on the history, its own estimate), the
    ``oracle`` encoder (the same construction from the TRUE feedback, history and targets: a ceiling
    only a simulator can fit; ``None`` unless asked for), the fitted ``debiasing``, the ``constant``
    state (D,) (the mean clean target: what a non-personalised state knows) and the DDPM's training
    tensors ``raw`` (N, D), ``context`` (N, 3D), ``clean`` (N, D) (:func:`refit_diffusion` reuses them)."""

    model: DSRM
    teacher: HistoryEncoder
    oracle: HistoryEncoder | None
    debiasing: Debiasing
    constant: np.ndarray
    raw: torch.Tensor
    context: torch.Tensor
    clean: torch.Tensor


def pretrain(env_id: str, **kwargs: Any) -> DSRM:
    """Stage I (:func:`stage_one`), returning the trained DSRM model only (eval mode); ``.save(path)`` it."""
    return stage_one(env_id, **kwargs).model


def stage_one(
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
    oracle: bool = False,
    catalogue_reset_every: int | None = None,
    **config: Any,
) -> StageOne:
    """Stage I: log a behaviour policy in ``env_id``, fit the encoders, then the conditional DDPM.

    The encoder (raw state s~_t) regresses, through ``<s~_t, e_j> + b``, the observed feedback of a
    held-out step j of the same user drawn afresh for each row and batch (:meth:`Log.held_out_draw`:
    the rest of the session or another session); the teacher, from the same initial weights, batch
    order and draws, the DEBIASED feedback (:meth:`Log.debiased_feedback`); the DDPM learns the
    distribution of the debiased held-out profile (:meth:`Log.held_out_profiles`) given the raw state
    and the history context (its samples are the purified state s^_t). With the logging's pulls off
    the two views coincide.

    Args:
        env_id: a recgym id, e.g. ``"recgym/KuaiRec-v1"``; ``env_options`` go to ``gym.make_vec``.
        timesteps: logged transitions; behaviour: logging policy (:data:`~recgym.agents.dsrm.rollouts.BEHAVIOURS`).
        k_steps: K diffusion steps; ``config``: other :class:`DSRMConfig` fields (d_model, ...).
        logdir: TensorBoard directory (``None`` disables logging); progress: show tqdm bars.
        oracle: also fit the oracle-debiased ceiling (scoring only).
        catalogue_reset_every: N: the logging clears the simulator's shared catalogue counters every N user-steps
            (:func:`collect`), as the agent's training and the evaluation's fresh counters run; ``None``: never.
    Returns:
        the :class:`StageOne` fit; its model carries the world fingerprint and ``catalogue_reset_every``.
    """
    for name, value in (("timesteps", timesteps), ("num_envs", num_envs), ("encoder_epochs", encoder_epochs),
                        ("diffusion_epochs", diffusion_epochs), ("batch_size", batch_size)):
        check_count(name, value)
    check_optional_count("catalogue_reset_every", catalogue_reset_every)
    torch.manual_seed(seed)
    venv = make_venv(env_id, num_envs, env_options)
    world = venv.world
    log = collect(venv, timesteps, behaviour, seed, progress, catalogue_reset_every)
    venv.close()
    model = DSRM(
        DSRMConfig(embed_dim=world.embed_dim, history_len=venv.params.history_len, k_steps=k_steps, **config),
        world.fingerprint, world.n_items, log.item_popularity, catalogue_reset_every,
    ).to(resolve_device(device))
    initial = copy.deepcopy(model.encoder.state_dict())  # every encoder starts from the same weights
    debiasing = log.fit_debiasing()
    debiased, ipw = log.debiased_feedback(debiasing)
    unweighted = np.ones_like(ipw)
    views = {"encoder": (model.encoder, log.next_feedback, unweighted, log.feedback),  # (targets, weights, history)
             "teacher": (HistoryEncoder(model.config), debiased, ipw, log.feedback)}
    if oracle:
        views["oracle"] = (HistoryEncoder(model.config), log.next_true, unweighted, log.true_feedback)
    writer = SummaryWriter(str(logdir)) if logdir is not None else None
    if writer is not None:
        for name, value in dataclasses.asdict(debiasing).items():
            writer.add_scalar(f"stage1/{name}", value)
    emb_padded = torch.as_tensor(np.vstack([world.item_emb, np.zeros((1, world.embed_dim), np.float32)]))
    n_rows = len(log.user)
    n_batches = -(-n_rows // batch_size) * (len(views) * encoder_epochs + diffusion_epochs)
    with tqdm(total=n_batches, desc="DSRM stage I", disable=not progress) as bar:
        for tag, (encoder, targets, weights, history_feedback) in views.items():
            encoder.load_state_dict(initial)
            encoder.to(model.device).train()
            bias = torch.nn.Parameter(torch.zeros((), device=model.device))
            draws = np.random.default_rng(seed)  # the same held-out draws for every encoder
            _fit(list(encoder.parameters()) + [bias], lr, encoder_epochs, n_rows, batch_size, seed, writer,
                 f"stage1/{tag}_loss", bar,
                 lambda rows, encoder=encoder, bias=bias, targets=targets, weights=weights, history=history_feedback,
                 draws=draws: _feedback_loss(encoder, bias, _history(log, history, emb_padded, rows, model.device),
                                             log.held_out_draw(rows.numpy(), draws), log, emb_padded, targets, weights))
            encoder.eval()
        clean = torch.as_tensor(log.held_out_profiles(debiased, ipw, world.item_emb), device=model.device)
        constant = clean.mean(dim=0).cpu().numpy()
        raw, context = _states(model, log, emb_padded, batch_size)
        has_target = clean.norm(dim=1) > 0  # rows with held-out feedback
        raw, context, clean = raw[has_target], context[has_target], clean[has_target]
        model.train()
        _fit_diffusion(model, raw, context, clean, lr, diffusion_epochs, batch_size, seed + 1, writer, bar)
    if writer is not None:
        writer.close()
    return StageOne(model.eval(), views["teacher"][0], views["oracle"][0] if oracle else None, debiasing, constant,
                    raw, context, clean)


def refit_diffusion(stage: StageOne, k_steps: int, diffusion_epochs: int = 20, batch_size: int = 512,
                    lr: float = 1e-3, seed: int = 0) -> DSRM:
    """A copy of ``stage.model`` with K = ``k_steps`` diffusion steps: the same encoder, a new DDPM
    fitted to the same training tensors (the K sweep: the schedule is per step, so K also sets how
    much of the raw state the chain destroys before it restores a clean one)."""
    base = stage.model
    model = DSRM(dataclasses.replace(base.config, k_steps=k_steps), base.world_fingerprint, base.n_items,
                 base.item_popularity.cpu().numpy(), base.catalogue_reset_every).to(base.device)
    model.encoder.load_state_dict(base.encoder.state_dict())
    torch.manual_seed(seed)
    n_batches = -(-len(stage.raw) // batch_size) * diffusion_epochs
    with tqdm(total=n_batches, disable=True) as bar, torch.enable_grad():  # callable under no_grad too
        model.train()
        _fit_diffusion(model, stage.raw, stage.context, stage.clean, lr, diffusion_epochs, batch_size, seed + 1,
                       None, bar)
    return model.eval()


def _fit_diffusion(model: DSRM, raw: torch.Tensor, context: torch.Tensor, clean: torch.Tensor, lr: float,
                   epochs: int, batch_size: int, seed: int, writer: SummaryWriter | None, bar: tqdm) -> None:
    _fit(list(model.denoiser.parameters()), lr, epochs, len(raw), batch_size, seed, writer,
         "stage1/diffusion_loss", bar, lambda rows: model.diffusion_loss(raw[rows], context[rows], clean[rows]))


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


def _history(log: Log, feedback: np.ndarray, emb_padded: torch.Tensor, rows: torch.Tensor,
             device: torch.device) -> dict[str, torch.Tensor]:
    """The batched observation (item_ids, embeddings, feedback) of logged ``rows``, with the history
    feedback (N, k) ``feedback`` (the observed one; the true one for the oracle)."""
    item_ids = torch.as_tensor(log.item_ids[rows.numpy()])
    return {
        "item_ids": item_ids.to(device),
        "embeddings": emb_padded[item_ids].to(device),
        "feedback": torch.as_tensor(feedback[rows.numpy()], device=device),
    }


def encode(encoder: HistoryEncoder, history: dict[str, Any]) -> torch.Tensor:
    """(B, D) state of an encoder from a batched observation (numpy arrays or tensors on its device)."""
    device = next(encoder.parameters()).device
    item_ids = torch.as_tensor(history["item_ids"], device=device)
    return encoder(torch.as_tensor(history["embeddings"], dtype=torch.float32, device=device),
                   torch.as_tensor(history["feedback"], dtype=torch.float32, device=device), item_ids >= 0)


def _feedback_loss(
    encoder: HistoryEncoder, bias: torch.Tensor, history: dict[str, torch.Tensor], held_out: np.ndarray, log: Log,
    emb_padded: torch.Tensor, targets: np.ndarray, weights: np.ndarray,
) -> torch.Tensor:
    """Weighted MSE of ``<encoder(history), e_j> + bias`` against the feedback ``targets[j]`` (N,) of the
    drawn held-out steps j (B,): the state regresses what the user does outside its history."""
    device = history["feedback"].device
    held_out_emb = emb_padded[torch.as_tensor(log.next_item[held_out])].to(device)
    predicted = (encode(encoder, history) * held_out_emb).sum(dim=1) + bias
    error = predicted - torch.as_tensor(targets[held_out], device=device)
    return (torch.as_tensor(weights[held_out], device=device) * error**2).mean()


@torch.no_grad()
def _states(model: DSRM, log: Log, emb_padded: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Of every logged row: raw states (N, D) and history contexts (N, 3D), the DDPM's condition."""
    model.eval()
    parts = []
    for rows in torch.arange(len(log.user)).split(4 * batch_size):
        history = _history(log, log.feedback, emb_padded, rows, model.device)
        parts.append((model.raw_state(history), model.history_context(history)))
    return tuple(torch.cat(column) for column in zip(*parts))
