"""Command-line entry points of the hierarchical agents (registered in :data:`recgym.agents.AGENTS`).

``recgym train --agent dsrm-hrl|hrl4pfg|novelty-hrl|dsrm-flat|hrl-no-dsrm``. Each run gets a new run
directory (:func:`recgym.agents.checkpoints.new_run_dir`), which is the checkpoint. The DSRM agents run
stage I (:func:`recgym.agents.dsrm.pretrain`, saved as ``dsrm.pt`` in the run directory) before
stage II (:func:`recgym.agents.hierarchy.train_hierarchy`, DSRM frozen). Each DSRM agent has a
constant-state twin (``dsrm-hrl-const``, ``dsrm-flat-const``, a control of issue #19): the same stage I
and stage II, with the DSRM state replaced by one (D,) state for everyone, the mean purified state over
logged histories of stage I (:func:`mean_purified_state`, saved as ``constant_state.npy``). Those four
runs of one env, options, seed, budget and catalogue reset fit the same stage I: given a shared folder (``stage_one_dir``) the
first stores it there (:func:`store_stage_one`) and the others read it instead of fitting it again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from recgym.agents.checkpoints import first_line, new_run_dir, write_atomically, write_json_atomically
from recgym.agents.dsrm_hrl import DSRMHRL
from recgym.agents.hierarchy import (
    HierarchicalPolicy, HierarchyConfig, Method, Obs, load_hierarchy, read_meta, train_hierarchy,
)
from recgym.agents.hrl4pfg import HRL4PFG
from recgym.agents.novelty_hrl import NoveltyHRL, propensity_agreement
from recgym.sizes import check_count, check_optional_count
from recgym.world import World

if TYPE_CHECKING:
    from recgym.evaluation import EvaluationResult

#: agent name -> (uses DSRM, one level only, constant state: the DSRM agent's constant-state twin)
HRL_AGENTS = {
    "dsrm-hrl": (True, False, False),
    "dsrm-flat": (True, True, False),
    "dsrm-hrl-const": (True, False, True),
    "dsrm-flat-const": (True, True, True),
    "hrl-no-dsrm": (False, False, False),
    "hrl4pfg": (False, False, False),
    "novelty-hrl": (False, False, False),
}
DSRM_FILE = "dsrm.pt"
#: the constant-state twins' (D,) float32 state, next to ``dsrm.pt`` in the run directory
CONSTANT_FILE = "constant_state.npy"
#: logged histories of stage I averaged into a twin's constant state (drawn with the run's seed)
CONSTANT_ROWS = 4_096
#: the DSRM agents' reverse chain: DDIM, 5 jumps, 2 chains starting from the same two noises for every
#: row (a row's state is a function of its own history)
PURIFY = {"sampler": "ddim", "steps": 5, "n_samples": 2, "shared_noise": True}
#: DSRM stage I's fit, the same for every DSRM agent (:func:`recgym.agents.dsrm.stage_one` arguments)
STAGE_ONE = {"num_envs": 64, "encoder_epochs": 2, "diffusion_epochs": 10}


def dsrm_state(model: Any) -> Any:
    """(B, ...) obs -> (B, D) DSRM-purified state (:data:`PURIFY`)."""

    def state(obs: Obs) -> np.ndarray:
        return model.purify(obs, **PURIFY).cpu().numpy()

    return state


def constant_state(state: np.ndarray) -> Any:
    """(B, ...) obs -> (B, D): the same (D,) ``state`` for every row, whatever its history."""
    state = np.asarray(state, np.float32)
    return lambda obs: np.broadcast_to(state, (obs["item_ids"].shape[0], state.size))


def mean_purified_state(stage: Any, seed: int, rows: int = CONSTANT_ROWS) -> np.ndarray:
    """(D,) float32 mean of the unit purified states (:data:`PURIFY`, what a DSRM agent's high and low
    levels read) of ``rows`` logged histories of ``stage`` (a :class:`recgym.agents.dsrm.train.StageOne`:
    its (N, D) raw states and (N, 3D) history contexts), drawn without replacement with ``seed``."""
    import torch

    chosen = np.sort(np.random.default_rng(seed).permutation(len(stage.raw))[:rows])
    index = torch.as_tensor(chosen, device=stage.raw.device)
    with torch.inference_mode():
        states = stage.model.purify_state(stage.raw[index], context=stage.context[index], **PURIFY).cpu().numpy()
    return (states / np.maximum(np.linalg.norm(states, axis=1, keepdims=True), 1e-8)).mean(axis=0).astype(np.float32)


def build_method(agent: str, dsrm_model: Any = None, constant: np.ndarray | None = None) -> Method:
    """The :class:`Method` behind a registered hierarchical agent name (``constant``: a twin's (D,) state)."""
    if agent not in HRL_AGENTS:
        raise ValueError(f"unknown hierarchical agent {agent!r}; valid: {', '.join(HRL_AGENTS)}")
    if agent == "hrl4pfg":
        return HRL4PFG()
    if agent == "novelty-hrl":
        return NoveltyHRL()
    if HRL_AGENTS[agent][2]:
        if constant is None:
            raise ValueError(f"{agent} is a constant-state twin: build_method needs its (D,) constant state")
        return DSRMHRL(state_fn=constant_state(constant), name=agent)
    if HRL_AGENTS[agent][0]:
        return DSRMHRL(state_fn=dsrm_state(dsrm_model), name=agent)
    return DSRMHRL(name=agent)


def train(
    agent: str, env_id: str, timesteps: int, *, seed: int = 0, logdir: str | Path = "runs", num_envs: int = 64,
    progress_bar: bool = False, eval_episodes: int = 0, env_options: dict[str, Any] | None = None,
    device: str = "auto", rounds: int = 3, eval_freq: int = 0,
    eval_scorer: Callable[[Any], dict[str, Any]] | None = None, stage_one_dir: str | Path | None = None,
    catalogue_reset_every: int | None = None,
) -> tuple[HierarchicalPolicy, Path]:
    """Train ``agent`` for about ``timesteps`` simulator steps in a new run directory
    ``logdir/<agent>_<env>_s<seed>_<n>/``; returns (policy, checkpoint directory = run directory).

    Budget split: DSRM stage I logs ``timesteps // 2`` transitions (DSRM agents only); stage II
    (:func:`stage_two_config`) gives 60% of ``timesteps`` to the low level and 40% to the high level.

    ``eval_episodes`` > 0: stage II's learning curve on the truth, as :func:`recgym.agents.flat.train`'s:
    evaluated every ``eval_freq`` stage-II env steps (0: only at the end) and at the end, ``eval_scorer``
    adding scalars (:func:`recgym.agents.hierarchy.train_hierarchy`; ``policy.learning_curve``).

    ``stage_one_dir``: a folder DSRM runs share stage I through: read from it when a run of the same env, options,
    seed, budget, device and catalogue reset stored it there (:func:`stage_one_settings`), else fitted and stored
    there.

    ``catalogue_reset_every``: stage I's logging (:func:`recgym.agents.dsrm.train.collect`) and stage II's simulators
    (:func:`recgym.agents.hierarchy.train_hierarchy`) clear their catalogue counters every that many user-steps
    (``None``: never).
    """
    timesteps = check_count("timesteps", timesteps)
    check_optional_count("catalogue_reset_every", catalogue_reset_every)  # before stage I, not after it
    if agent not in HRL_AGENTS:
        raise ValueError(f"unknown hierarchical agent {agent!r}; valid: {', '.join(HRL_AGENTS)}")
    from recgym.evaluation import make_eval_env

    uses_dsrm, flat, constant_twin = HRL_AGENTS[agent]
    make_eval_env(env_id, 1, **(env_options or {}))  # a bad id or option fails before the run directory exists
    run_dir = new_run_dir(logdir, agent, env_id, seed)
    dsrm_model, constant = None, None
    if uses_dsrm:
        settings = stage_one_settings(env_id, timesteps, seed, env_options, device, catalogue_reset_every)
        dsrm_model, constant = _stage_one(settings, run_dir, progress_bar, constant_twin,
                                          None if stage_one_dir is None else Path(stage_one_dir))
    method = build_method(agent, dsrm_model, constant)
    config = stage_two_config(timesteps, method.option_length, rounds=rounds, num_envs=num_envs, flat=flat,
                              seed=seed, device=device)
    trained = train_hierarchy(method, env_id, config, logdir=run_dir.parent, run_name=run_dir.name,
                              progress_bar=progress_bar, env_options=env_options, eval_episodes=eval_episodes,
                              eval_freq=eval_freq, eval_scorer=eval_scorer, catalogue_reset_every=catalogue_reset_every)
    return trained.policy(), trained.checkpoint


def stage_two_config(timesteps: int, option_length: int, *, rounds: int = 3, num_envs: int = 64, flat: bool = False,
                     seed: int = 0, device: str = "auto") -> HierarchyConfig:
    """The two levels' training config for a budget of ``timesteps`` simulator steps: per round, the low
    level gets 60% / rounds steps and the high level 40% / rounds env steps, i.e. that many options / M
    (an option lasts up to ``option_length`` = M steps), with the default PPO settings of
    :class:`HierarchyConfig`. The same for every method: equal env steps and gradient steps.

    At ``recgym train``'s default 20,000 steps (64 sessions, 3 rounds): the low level takes 3 rollouts of
    4,096 steps x 4 epochs x 16 minibatches = 192 gradient steps, the high level 12 rollouts of 256
    options x 4 epochs x 4 minibatches = 192 (:meth:`HierarchyConfig.gradient_steps`)."""
    return HierarchyConfig(rounds=rounds, low_steps=max(1, int(0.6 * timesteps / rounds)),
                           high_steps=max(1, int(0.4 * timesteps / rounds / option_length)), n_sessions=num_envs,
                           flat=flat, seed=seed, device=device)


def stage_one_settings(env_id: str, timesteps: int, seed: int, env_options: dict[str, Any] | None,
                       device: str, catalogue_reset_every: int | None = None) -> dict[str, Any]:
    """Everything DSRM stage I of a run depends on (the same for the four DSRM agents): env, options, seed,
    logged transitions (``timesteps // 2``, at least 1,000), :data:`STAGE_ONE`, device and, when its logging clears
    the catalogue's counters, ``catalogue_reset_every`` (absent without the reset: a stage I stored before the reset
    existed keeps its file name, :func:`stage_one_file`, and one of another N has another)."""
    reset = {} if catalogue_reset_every is None else {"catalogue_reset_every": catalogue_reset_every}
    return {"env": env_id, "options": dict(sorted((env_options or {}).items())), "seed": seed,
            "transitions": max(1_000, timesteps // 2), **STAGE_ONE, "device": device, **reset}


def stage_one_file(folder: Path, settings: dict[str, Any]) -> Path:
    """``folder/<env>__s<seed>__<digest of settings>.json``: the provenance of a stored stage I (its settings and
    the twins' constant state); the model is the ``.pt`` beside it. The JSON is written last: no JSON, no stage I."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return folder / f"{settings['env'].split('/')[-1]}__s{settings['seed']}__{digest}.json"


def read_stage_one(folder: Path, settings: dict[str, Any]) -> tuple[Any, np.ndarray] | None:
    """The stored stage I of ``settings`` in ``folder`` (model, (D,) constant state), or ``None`` when none is stored;
    a stored one of other settings, or whose model logged with another catalogue reset than the settings'
    (:meth:`recgym.agents.dsrm.DSRM.check_catalogue_reset`), is a one-line ``ValueError`` naming the file."""
    from recgym.agents.dsrm import DSRM

    provenance = stage_one_file(folder, settings)
    if not provenance.exists():
        return None
    stored = json.loads(provenance.read_text())
    if stored.get("settings") != json.loads(json.dumps(settings, default=str)):
        raise ValueError(f"{provenance}: a DSRM stage I of other settings; delete it (and its .pt) to fit it again")
    model = DSRM.load(provenance.with_suffix(".pt"), device=settings["device"])
    model.check_catalogue_reset(settings.get("catalogue_reset_every"), str(provenance.with_suffix(".pt")))
    return model, np.asarray(stored["constant_state"], np.float32)


def store_stage_one(folder: Path, settings: dict[str, Any], model: Any, constant: np.ndarray) -> None:
    """Store a fitted stage I for :func:`read_stage_one`: the model (``.pt``), then the JSON, each written whole
    or not at all (:func:`recgym.agents.checkpoints.write_atomically`), so a half-written stage I is never read."""
    provenance = stage_one_file(folder, settings)
    write_atomically(provenance.with_suffix(".pt"), model.save)
    write_json_atomically(provenance, {"settings": settings, "constant_state": constant.tolist()}, default=str)


def _stage_one(settings: dict[str, Any], run_dir: Path, progress: bool, constant_twin: bool,
               shared: Path | None) -> tuple[Any, np.ndarray | None]:
    """DSRM stage I of ``settings`` (:func:`stage_one_settings`), read from ``shared`` when stored there, else fitted
    (and stored there when given), then saved in ``run_dir``: (model, the twin's constant state or ``None``)."""
    from recgym.agents.dsrm import stage_one

    stored = read_stage_one(shared, settings) if shared is not None else None
    if stored is not None:
        model, constant = stored
    else:
        stage = stage_one(settings["env"], timesteps=settings["transitions"], logdir=run_dir / "stage1",
                          seed=settings["seed"], device=settings["device"], progress=progress,
                          env_options=settings["options"], catalogue_reset_every=settings.get("catalogue_reset_every"),
                          **STAGE_ONE)
        model = stage.model
        constant = mean_purified_state(stage, settings["seed"]) if constant_twin or shared is not None else None
        if shared is not None:
            store_stage_one(shared, settings, model, constant)
    model.save(run_dir / DSRM_FILE)
    if not constant_twin:
        return model, None
    np.save(run_dir / CONSTANT_FILE, constant)
    return model, constant


def load_constant(path: Path, world: World | None = None) -> np.ndarray:
    """A twin's (D,) constant state from its run directory; a one-line ``ValueError`` naming the file when it
    is missing, unreadable, not a finite (D,) vector or (given ``world``) of another embedding size."""
    file = path / CONSTANT_FILE
    try:
        constant = np.load(file, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ValueError(f"{file}: no readable constant state ({first_line(error)})") from None
    dims = world.embed_dim if world is not None else constant.size
    if constant.shape != (dims,) or not np.isfinite(constant).all():
        raise ValueError(f"{file}: the constant state must be a finite ({dims},) vector, got shape {constant.shape}")
    return constant.astype(np.float32)


def method_summary(agent: str, policy: HierarchicalPolicy, result: EvaluationResult, env: str, episodes: int,
                   seed: int, num_envs: int, **options: Any) -> dict[str, float]:
    """What ``recgym eval`` adds to a hierarchical agent's summary (``result``: its :func:`recgym.evaluation.evaluate`
    of ``env``), scored against the simulator's truth where the env has it: novelty-hrl on v1 envs, its inferred
    propensity against the true static and session propensities
    (:func:`recgym.agents.novelty_hrl.propensity_agreement`, ``propensity_*``, a rollout of its own); hrl4pfg on
    v1 lifetime envs, progressive guidance across sessions, read from ``result``'s own rollout
    (``result.lifetime``, :class:`recgym.evaluation.LifetimeGuidance`, ``guidance_*``). Empty otherwise."""
    if agent == "hrl4pfg" and result.lifetime is not None:
        return {f"guidance_{key}": value for key, value in result.lifetime.summary().items()}
    if agent == "novelty-hrl":
        from recgym.evaluation import make_eval_env

        if make_eval_env(env, 1, **options).world.is_v1:
            return propensity_agreement(policy, env, episodes, seed, num_envs, **options).summary()
    return {}


def load(agent: str, path: str | Path, world: World | None = None) -> HierarchicalPolicy:
    """Load a checkpoint directory written by :func:`train`: refused (one-line ``ValueError`` naming
    it) for another agent's or, given ``world``, another world's; else the world is checked when the
    policy is bound to an env."""
    path = Path(path)
    if not path.is_dir():
        raise ValueError(f"{path}: a {agent} checkpoint is a run directory (holding meta.json), not a file")
    meta = read_meta(agent, path, world)
    dsrm_model, constant = None, None
    if HRL_AGENTS[agent][2]:  # a twin reads its constant state, not DSRM
        constant = load_constant(path, world)
    elif HRL_AGENTS[agent][0]:
        from recgym.agents.dsrm import DSRM

        dsrm_model = DSRM.load(path / DSRM_FILE, world=world)
    method = build_method(agent, dsrm_model, constant)
    high, low, _ = load_hierarchy(method, path, world)
    return HierarchicalPolicy(method, high, low, meta)
