"""The registry's hooks for ``recgym train --agent dsrm-pretrain`` (:data:`recgym.agents.AGENTS`):
:func:`train_cli` runs stage I (:func:`recgym.agents.dsrm.train.pretrain`) in a new run directory and
can score it (:func:`recgym.agents.dsrm.evaluate.evaluate`); :func:`load_model` reads its checkpoint.
Kept apart from both so that evaluation may use training's stage I without an import cycle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter

from recgym.agents.checkpoints import checkpoint_meta, new_run_dir
from recgym.agents.dsrm.evaluate import evaluate
from recgym.agents.dsrm.model import DSRM
from recgym.agents.dsrm.rollouts import make_venv
from recgym.agents.dsrm.train import AGENT, pretrain
from recgym.sizes import check_optional_count
from recgym.world import World


def train_cli(
    env_id: str, timesteps: int, seed: int = 0, logdir: str | Path = "runs", num_envs: int = 256,
    progress_bar: bool = False, eval_episodes: int = 0, env_options: dict[str, Any] | None = None,
    catalogue_reset_every: int | None = None,
) -> tuple[DSRM, Path]:
    """``recgym train --agent dsrm-pretrain``: :func:`pretrain` in a new run directory
    ``logdir/dsrm-pretrain_<env>_s<seed>_<n>/`` holding the TensorBoard events and the checkpoint
    ``dsrm.pt`` (with the ``dsrm-pretrain`` checkpoint metadata); with ``eval_episodes``, the denoising
    scores of ``eval_episodes * max_turn`` fresh transitions are logged too (``dsrm/*`` scalars).
    ``catalogue_reset_every`` = N: the logging clears the catalogue's counters every N user-steps (the checkpoint
    records N; :func:`recgym.agents.dsrm.train.collect`). Returns (model, checkpoint path)."""
    venv = make_venv(env_id, 1, env_options)  # validates the id and options before any work
    check_optional_count("catalogue_reset_every", catalogue_reset_every)  # and N
    run_dir = new_run_dir(logdir, AGENT, env_id, seed)
    model = pretrain(env_id, timesteps=timesteps, num_envs=num_envs, logdir=run_dir, seed=seed,
                     progress=progress_bar, env_options=env_options, catalogue_reset_every=catalogue_reset_every)
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
