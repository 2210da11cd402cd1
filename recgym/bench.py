"""``recgym bench``: simulator and training throughput, measured in one process; the one home of
recgym's benchmarks (``benchmarks/*.py`` are thin entry points into :func:`main`). Besides the
throughput suite described here, ``recgym bench population`` (:func:`population_main`: per-user cost
of a platform step of the PettingZoo population), ``recgym bench dsrm`` (:func:`dsrm_main`: how well
DSRM's purified state recovers the true interest), ``recgym bench data`` (:func:`data_main`: cold
and cached ``data_dir`` loads of a generated KuaiRec-schema folder) and ``recgym bench --soak``
(:func:`soak`: issue #17's memory soak, resident memory over 10,000 user lifetimes of 50 sessions and
the per-user state the lifetime env keeps) share its clocks.

Everything runs on ``recgym/KuaiRec-v0`` with every user mechanism on (the defaults, plus the
popular-streak leave rule, off by default, switched on too) and uniformly random actions drawn
before the clock starts. Figures are user-steps per second unless named otherwise:

* ``single``: one ``gym.make`` env (with the wrappers ``gym.make`` adds);
* ``native_<B>``: the native batched :class:`recgym.envs.RecSysVectorEnv` with B sessions;
* ``native_v1_<B>`` (B the largest size): the native env on the v1 twin of the env (``recgym/KuaiRec-v1``:
  quality, the eight logged signals, familiarity, the logged observation), timed in alternating
  blocks with the v0 env at the same B; ``v1_vs_v0`` is their ratio;
* ``sync_<B>``: gymnasium's ``SyncVectorEnv`` of B single envs (what users would build);
* ``lean_<B>``: :func:`lean_reference`, a minimal numpy loop doing only gather-reward, interest
  update, popularity update and history observation (the practical floor). ``native_<B>`` and
  ``lean_<B>`` are timed in alternating blocks (``BenchConfig.blocks``) and each is the median of
  its blocks' rates, so a change in the machine's speed during the run slows both alike and their
  ratio compares like with like;
* ``ppo_native_fps`` / ``ppo_dummy_fps``: SB3 PPO training frames/s on :class:`recgym.envs.sb3.SB3VecEnv`
  vs on SB3's ``DummyVecEnv`` of single envs (same PPO settings);
* ``ppo_fps`` / ``ppo_reference_fps``: training frames/s of recgym's flat PPO
  (:func:`recgym.agents.flat.make_model`, what ``recgym train --agent ppo`` builds) and of plain SB3
  PPO (``MultiInputPolicy``, n_steps 32, batch 512, 4 epochs), both on ``SB3VecEnv`` with
  ``ppo_envs`` sessions, timed in alternating rounds of one rollout and its update each
  (:func:`bench_ppo_speedup`; ``ppo_speedup`` is their ratio);
* ``hrl_fps``: {agent: training frames/s} of the hierarchical agents (dsrm-hrl, hrl4pfg, novelty-hrl)
  as ``recgym train`` builds them, and ``hrl_reference_fps``, the plain SB3 PPO reference timed in
  alternating rounds with them (:func:`bench_hierarchy`); ``hrl_vs_reference`` = {agent: hrl_fps /
  hrl_reference_fps}, a ratio measured in one run, and ``hrl_speedup`` = {agent: that ratio over the
  same ratio measured before issue #18's changes} (:data:`HRL_BASELINE_VS_REFERENCE`);
* ``dsrm_us_per_state``: microseconds per state of DSRM's denoising (``purify``) forward on CPU,
  ``None`` when :mod:`recgym.agents.dsrm` is not available;
* ``rss_growth_mb``: resident memory growth of the largest native env over ``memory_user_steps``;
* ``load_average``: the machine's 1-minute load average at the start and the end of the run
  (``[start, end]``, ``None`` where the OS has none): the figures are only comparable between runs
  at similar load on a shared machine.

:func:`main` prints a table, then one JSON line with every figure and the ratios
``native_vs_sync`` (native / SyncVectorEnv at ``sync_size``) and ``native_vs_lean`` (native /
lean reference at the largest size).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

import recgym  # noqa: F401  (registers the env ids)
from recgym.sizes import check_count
from recgym.world import World

ENV_ID = "recgym/KuaiRec-v0"
# Every mechanism on: the defaults already enable all user mechanisms, patience and DORL's
# category window; the popular-streak leave rule is off by default, so switch it on as well.
ALL_MECHANISMS = {"popular_streak": 5}


@dataclass(frozen=True)
class BenchConfig:
    """What :func:`run` measures and for how long.

    sizes: batch sizes B of the native env and the lean reference; sync_size: B of the
    SyncVectorEnv baseline (the native/sync ratio uses the native figure at the same B);
    seconds: time spent timing each throughput figure; blocks: how many alternating blocks the
    native env and the lean reference of one size share their seconds in; ppo_envs / ppo_timesteps: sessions and
    frames of each PPO run (for ``ppo_fps`` / ``ppo_reference_fps``: frames of each model after its
    warm-up, in rounds of one rollout; also the sessions per level of each hierarchical agent and, in
    ``ppo_timesteps // 4096`` rounds (at least 1), how long they are timed, :func:`bench_hierarchy`); dsrm_batch: states per DSRM forward; memory_user_steps: user-steps
    of the largest native env between the two RSS readings; env_id: the env measured; timer:
    ``"wall"`` (elapsed time) or ``"cpu"`` (this process's CPU time, all its threads).
    """

    sizes: tuple[int, ...] = (256, 1024, 4096)
    sync_size: int = 1024
    seconds: float = 3.0
    blocks: int = 10
    ppo_envs: int = 64
    ppo_timesteps: int = 16_384
    dsrm_batch: int = 256
    memory_user_steps: int = 10_000_000
    env_id: str = ENV_ID
    timer: str = "wall"

    def __post_init__(self) -> None:
        if not self.sizes or any(b < 1 for b in self.sizes):
            raise ValueError(f"sizes must be positive batch sizes, got {self.sizes!r}")
        if self.sync_size not in self.sizes:
            raise ValueError(f"sync_size {self.sync_size} must be one of sizes {self.sizes}")
        check_count("blocks", self.blocks)
        if self.timer not in TIMERS:
            raise ValueError(f"timer must be one of {list(TIMERS)}, got {self.timer!r}")

    @property
    def clock(self) -> Callable[[], float]:
        return TIMERS[self.timer]


# "cpu" (this process's CPU time) makes figures comparable on a machine shared with other jobs.
TIMERS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
QUICK = BenchConfig(seconds=0.5, ppo_timesteps=2048, dsrm_batch=64, memory_user_steps=400_000)


# step(i) and the user-steps one call makes (None: step(i) returns how many it made)
Stepper = tuple[Callable[[int], Any], int | None]


def _rates(steppers: dict[str, Stepper], config: BenchConfig, seconds: float | None = None,
           blocks: int = 1) -> dict[str, float]:
    """User-steps/s of each stepper: after one warm-up call each, the steppers take turns in
    ``blocks`` rounds, each calling its ``step(i)`` for ``seconds / blocks`` per round; a stepper's
    figure is the median of its rounds' rates (a burst of load from elsewhere spoils one round, not
    the figure)."""
    seconds = config.seconds if seconds is None else seconds
    clock = config.clock
    calls, rates = dict.fromkeys(steppers, 0), {name: [] for name in steppers}
    for step, _ in steppers.values():
        step(0)
    for _ in range(blocks):
        for name, (step, n_per_call) in steppers.items():
            start, spent, made = clock(), 0.0, 0
            while spent < seconds / blocks:
                calls[name] += 1
                counted = step(calls[name])
                made += n_per_call if n_per_call is not None else counted
                spent = clock() - start
            rates[name].append(made / spent)
    return {name: float(np.median(block_rates)) for name, block_rates in rates.items()}


def _rate(step: Callable[[int], None], n_per_call: int, config: BenchConfig, seconds: float | None = None) -> float:
    """User-steps/s of one stepper timed for ``seconds`` (default ``config.seconds``)."""
    return _rates({"": (step, n_per_call)}, config, seconds)[""]


def _random_actions(n_items: int, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n_items, size=shape)


def bench_single(config: BenchConfig) -> float:
    """Steps/s of one ``gym.make`` env, resetting when a session ends."""
    env = gym.make(config.env_id, **ALL_MECHANISMS)
    env.reset(seed=0)
    actions = _random_actions(env.action_space.n, (256,)).tolist()

    def step(i: int) -> None:
        for action in actions:
            _, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                env.reset()

    rate = _rate(step, len(actions), config)
    env.close()
    return rate


def vector_stepper(config: BenchConfig, n_envs: int, mode: str = "vector_entry_point",
                   n_batches: int = 16) -> tuple[Stepper, gym.vector.VectorEnv]:
    """A vector env with ``n_envs`` sessions (autoreset inside), reset, and its stepper cycling through
    ``n_batches`` pre-drawn action batches: recgym's native batched env (``mode="vector_entry_point"``,
    same-step autoreset, as SB3 steps it) or gymnasium's ``SyncVectorEnv`` of single envs (``mode="sync"``)."""
    native = {"autoreset_mode": AutoresetMode.SAME_STEP} if mode == "vector_entry_point" else {}
    venv = gym.make_vec(config.env_id, num_envs=n_envs, vectorization_mode=mode, **native, **ALL_MECHANISMS)
    venv.reset(seed=0)
    actions = _random_actions(venv.single_action_space.n, (n_batches, n_envs))
    return (lambda i: venv.step(actions[i % n_batches]), n_envs), venv


def bench_sync(config: BenchConfig) -> float:
    """User-steps/s of gymnasium's ``SyncVectorEnv`` of ``config.sync_size`` single envs."""
    stepper, venv = vector_stepper(config, config.sync_size, mode="sync", n_batches=4)
    rate = _rate(*stepper, config)
    venv.close()
    return rate


def lean_reference(world: World, n_envs: int, history_len: int, seed: int = 0) -> Callable[[np.ndarray], dict]:
    """A minimal batched step (the practical floor): returns ``step(actions (B,)) -> observation``.

    Only gather-reward (sigmoid of the interest/item dot product), interest update (drift toward
    the consumed item, renormalised), popularity update (bincount) and the history observation
    (item ids, their embeddings, feedback), with preallocated state and no mechanisms, checks,
    leave rules or infos.
    """
    rng = np.random.default_rng(seed)
    emb = np.vstack([world.item_emb, np.zeros((1, world.embed_dim), np.float32)])
    interest = world.user_interest[rng.integers(0, world.n_users, n_envs)].copy()
    items = np.full((n_envs, history_len), -1, np.int64)
    feedback = np.zeros((n_envs, history_len), np.float32)
    popularity = world.pop_prior.copy()

    def step(actions: np.ndarray) -> dict[str, np.ndarray]:
        nonlocal interest
        consumed = np.take(emb, actions, axis=0)
        logit = world.affinity_scale * np.einsum("bd,bd->b", interest, consumed) + world.affinity_bias
        reward = world.reward_max / (1.0 + np.exp(-logit))
        interest += (0.05 * reward / world.reward_max)[:, None] * (consumed - interest)
        interest /= np.linalg.norm(interest, axis=1, keepdims=True)
        popularity[:] += np.bincount(actions, minlength=world.n_items)
        items[:, :-1] = items[:, 1:]
        items[:, -1] = actions
        feedback[:, :-1] = feedback[:, 1:]
        feedback[:, -1] = reward
        return {"item_ids": items.copy(), "embeddings": np.take(emb, items, axis=0), "feedback": feedback.copy()}

    return step


def bench_native_and_lean(config: BenchConfig, n_envs: int) -> tuple[float, float]:
    """User-steps/s of the native env and of :func:`lean_reference` at ``n_envs``, timed in
    ``config.blocks`` alternating blocks (same world, same pre-drawn action batches)."""
    native, venv = vector_stepper(config, n_envs)
    lean = lean_reference(venv.unwrapped.world, n_envs, venv.unwrapped.params.history_len)
    actions = _random_actions(venv.single_action_space.n, (16, n_envs))
    rates = _rates({"native": native, "lean": (lambda i: lean(actions[i % 16]), n_envs)}, config,
                   blocks=config.blocks)
    venv.close()
    return rates["native"], rates["lean"]


def bench_v1_and_v0(config: BenchConfig, n_envs: int) -> tuple[float, float]:
    """User-steps/s of the native env on the v1 twin of ``config.env_id`` (``-v0`` -> ``-v1``: every
    v1 mechanism at its default, the eight logged signals and the logged observation) and on
    ``config.env_id`` itself, both with ``n_envs`` sessions, timed in alternating blocks."""
    v0, v0_env = vector_stepper(config, n_envs)
    v1, v1_env = vector_stepper(replace(config, env_id=config.env_id.replace("-v0", "-v1")), n_envs)
    rates = _rates({"v1": v1, "v0": v0}, config, blocks=config.blocks)
    v0_env.close()
    v1_env.close()
    return rates["v1"], rates["v0"]


def bench_ppo(config: BenchConfig) -> tuple[float, float]:
    """PPO training frames/s on SB3VecEnv (native batch) and on DummyVecEnv of single envs.

    Same PPO settings for both (32 steps per env per rollout, 4 epochs, one torch thread).
    """
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    from recgym.envs.sb3 import SB3VecEnv

    def fps(env: Any) -> float:
        n_steps = 32
        model = PPO(
            "MultiInputPolicy", env, n_steps=n_steps, batch_size=min(512, n_steps * config.ppo_envs), n_epochs=4,
            seed=0, device="cpu", verbose=0,
        )
        start = config.clock()
        model.learn(total_timesteps=config.ppo_timesteps)
        rate = model.num_timesteps / (config.clock() - start)
        env.close()
        return rate

    native = fps(SB3VecEnv(config.env_id, num_envs=config.ppo_envs, **ALL_MECHANISMS))
    dummy = fps(DummyVecEnv([lambda: gym.make(config.env_id, **ALL_MECHANISMS)] * config.ppo_envs))
    return native, dummy


def bench_ppo_speedup(config: BenchConfig) -> tuple[float, float]:
    """Training frames/s of recgym's flat PPO and of the plain SB3 reference, in one process.

    recgym's is :func:`recgym.agents.flat.make_model` ``("ppo", ...)`` (item-scoring head, history
    extractor, batch 256, 4 epochs: 32 gradient updates per 2,048-frame rollout), the reference
    ``PPO("MultiInputPolicy", ..., n_steps=32, batch_size=512, n_epochs=4)`` (16 updates per rollout),
    each on its own ``SB3VecEnv`` of ``ppo_envs`` sessions, on CPU. After one warm-up rollout each,
    the two take turns: ``ppo_timesteps // (32 * ppo_envs)`` rounds (at least 2) in which each
    collects one rollout and trains on it; each figure is the median of its rounds' rates.
    """
    from stable_baselines3 import PPO

    from recgym.agents.flat import make_model
    from recgym.envs.sb3 import SB3VecEnv

    n_steps = 32
    rollout = n_steps * config.ppo_envs
    envs = [SB3VecEnv(config.env_id, num_envs=config.ppo_envs, **ALL_MECHANISMS) for _ in range(2)]
    ours = make_model("ppo", envs[0], seed=0, device="cpu", batch_size=min(256, rollout))
    reference = PPO("MultiInputPolicy", envs[1], n_steps=n_steps, batch_size=min(512, rollout), n_epochs=4, seed=0,
                    device="cpu", verbose=0)
    steppers = {name: (lambda i, model=model: model.learn(rollout, reset_num_timesteps=False), rollout)
                for name, model in (("ours", ours), ("reference", reference))}
    rounds = max(2, config.ppo_timesteps // rollout)
    # a round's time budget of ~0 makes each round exactly one learn() call per model
    rates = _rates(steppers, config, seconds=rounds * 1e-9, blocks=rounds)
    for env in envs:
        env.close()
    return rates["ours"], rates["reference"]


#: The hierarchical agents of :func:`bench_hierarchy` (``hrl_fps``).
HRL_AGENTS = ("dsrm-hrl", "hrl4pfg", "novelty-hrl")
#: ``hrl_fps / hrl_reference_fps`` of each agent before issue #18's changes (the code of commit 2d57216),
#: measured as :func:`bench_hierarchy` measures it, OMP_NUM_THREADS=1, load 7-9, medians of three runs
#: (docs/performance.md, "Hierarchical agents"): ``hrl_speedup`` divides today's ratio by it. The ratio moves
#: with the machine's load (0.7x-1.3x of these values in single runs at load 8-10);
#: ``benchmarks/bench_hrl_baseline.py`` re-measures it from git history (its ``old/ref`` column) beside the
#: new code's, in alternating subprocesses.
HRL_BASELINE_VS_REFERENCE = {"dsrm-hrl": 1.71, "hrl4pfg": 2.92, "novelty-hrl": 3.41}


def bench_hierarchy(config: BenchConfig) -> tuple[dict[str, float], float]:
    """Training frames/s of each of :data:`HRL_AGENTS` and of the plain SB3 PPO reference, in one process.

    Each agent is built as ``recgym train --agent NAME`` builds it (:class:`~recgym.agents.hierarchy.HierarchyConfig`
    defaults but ``ppo_envs`` sessions per level (64, as ``recgym train``): the low level PPO n_steps 64, batch 256,
    4 epochs, the high level since issue #19 n_steps 4, batch 64, i.e. four times the gradient steps per round) on ``config.env_id``
    with :data:`ALL_MECHANISMS`, on CPU; dsrm-hrl's DSRM is an untrained default-size model (the same
    computation as a pretrained one; stage I is not timed). One call is one round of that training at
    the defaults of ``recgym train``: ``low.learn`` of one rollout, then ``high.learn`` of one rollout
    of options. A frame is one recommendation the simulator made for either level (a high-level step
    makes up to ``option_length`` per session; sessions waiting for the others make none). The
    reference is :func:`bench_ppo_speedup`'s (plain SB3 PPO, one 2,048-frame rollout and its update
    per call). After one warm-up call each, the agents and the reference take turns for
    ``ppo_timesteps // 4096`` rounds (at least 1: full 4, ``--quick`` 1); each figure is the median of
    its rounds. Returns ({agent: frames/s}, reference frames/s).
    """
    from stable_baselines3 import PPO

    from recgym.agents.dsrm import DSRM, DSRMConfig
    from recgym.agents.hierarchy import HierarchyConfig, make_levels
    from recgym.agents.hrl_agents import HRL_AGENTS as USES_DSRM, build_method
    from recgym.envs.sb3 import SB3VecEnv

    hierarchy = HierarchyConfig(n_sessions=config.ppo_envs, seed=0, device="cpu")
    rollout = hierarchy.ppo["n_steps"] * hierarchy.n_sessions
    steppers: dict[str, Stepper] = {}
    closing = []
    env = gym.make(config.env_id).unwrapped
    for agent in HRL_AGENTS:
        dsrm = None
        if USES_DSRM[agent][0]:
            dsrm = DSRM(DSRMConfig(embed_dim=env.world.embed_dim, history_len=env.params.history_len),
                        env.world.fingerprint, env.world.n_items).eval()
        levels, _ = make_levels(build_method(agent, dsrm), config.env_id, hierarchy, ALL_MECHANISMS)
        made = [0]
        for venv in (levels.low_env.venv, levels.high_env.venv):
            closing.append(venv)
            venv.step = _counting_step(venv.step, venv.num_envs, made)

        def train_round(i: int, levels: Any = levels, made: list[int] = made) -> int:
            before = made[0]
            levels.train_round(i, rollout, rollout)
            return made[0] - before

        steppers[agent] = (train_round, None)
    n_steps = 32
    reference_env = SB3VecEnv(config.env_id, num_envs=config.ppo_envs, **ALL_MECHANISMS)
    closing.append(reference_env)
    reference = PPO("MultiInputPolicy", reference_env, n_steps=n_steps, batch_size=min(512, n_steps * config.ppo_envs),
                    n_epochs=4, seed=0, device="cpu", verbose=0)
    steppers["reference"] = (lambda i: reference.learn(n_steps * config.ppo_envs, reset_num_timesteps=False),
                             n_steps * config.ppo_envs)
    # a round's time budget of ~0 makes each round exactly one call per stepper
    rounds = max(1, config.ppo_timesteps // 4096)
    rates = _rates(steppers, config, seconds=rounds * 1e-9, blocks=rounds)
    for env in closing:
        env.close()
    reference_fps = rates.pop("reference")
    return rates, reference_fps


def _counting_step(step: Callable[..., Any], n_envs: int, made: list[int]) -> Callable[..., Any]:
    """``venv.step`` that adds the recommendations it makes (the active rows) to ``made[0]``."""

    def counted(actions: Any, active: np.ndarray | None = None) -> Any:
        made[0] += n_envs if active is None else int(np.count_nonzero(active))
        return step(actions, active=active)

    return counted


def bench_dsrm(config: BenchConfig) -> float | None:
    """Microseconds per state of DSRM's default denoising forward (``purify``) on CPU, or None."""
    try:
        import torch

        from recgym.agents.dsrm import DSRM, DSRMConfig
    except ImportError:
        return None
    venv = gym.make_vec(config.env_id, num_envs=config.dsrm_batch, vectorization_mode="vector_entry_point")
    venv.reset(seed=0)
    for actions in _random_actions(venv.single_action_space.n, (5, config.dsrm_batch)):
        obs, *_ = venv.step(actions)
    world, params = venv.world, venv.params
    venv.close()
    model = DSRM(DSRMConfig(embed_dim=world.embed_dim, history_len=params.history_len), world.fingerprint, world.n_items)
    model.eval()
    with torch.no_grad():
        seconds = _rate(lambda i: model.purify(obs), 1, config, config.seconds / 2) ** -1
    return 1e6 * seconds / config.dsrm_batch


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("VmRSS not found in /proc/self/status")


def bench_memory(config: BenchConfig) -> float:
    """RSS growth (MB) of the largest native env over ``memory_user_steps`` user-steps (after warm-up)."""
    n_envs = max(config.sizes)
    (step, _), venv = vector_stepper(config, n_envs)
    for i in range(50):
        step(i)
    gc.collect()
    before = _rss_mb()
    for i in range(-(-config.memory_user_steps // n_envs)):  # ceil: at least memory_user_steps
        step(i)
    gc.collect()
    growth = _rss_mb() - before
    venv.close()
    return growth


def run(config: BenchConfig = BenchConfig(), progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Measure every figure; returns the flat dict :func:`main` prints as JSON.

    Torch runs on one thread meanwhile (two threads on two shared cores were several times slower).
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _measure(config, progress or (lambda message: None))
    finally:
        torch.set_num_threads(threads)


def _load_average() -> float | None:
    """The 1-minute load average, or None where ``os.getloadavg`` is unavailable."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def _measure(config: BenchConfig, say: Callable[[str], None]) -> dict[str, Any]:
    results: dict[str, Any] = {"env_id": config.env_id, "options": ALL_MECHANISMS, "timer": config.timer}
    load_at_start = _load_average()
    say("single env")
    results["single"] = bench_single(config)
    lean: dict[str, float] = {}
    for n_envs in config.sizes:
        say(f"native vector env and lean reference, {n_envs} users, alternating")
        results[f"native_{n_envs}"], lean[f"lean_{n_envs}"] = bench_native_and_lean(config, n_envs)
    largest = max(config.sizes)
    say(f"native vector env on v1 and v0, {largest} users, alternating")
    results[f"native_v1_{largest}"], v0_alongside_v1 = bench_v1_and_v0(config, largest)
    say(f"SyncVectorEnv, {config.sync_size} users")
    results[f"sync_{config.sync_size}"] = bench_sync(config)
    results.update(lean)
    say("PPO on SB3VecEnv and DummyVecEnv")
    results["ppo_native_fps"], results["ppo_dummy_fps"] = bench_ppo(config)
    say("recgym's flat PPO and the SB3 reference, alternating")
    results["ppo_fps"], results["ppo_reference_fps"] = bench_ppo_speedup(config)
    say(f"hierarchical agents ({', '.join(HRL_AGENTS)}) and the SB3 reference, alternating")
    results["hrl_fps"], results["hrl_reference_fps"] = bench_hierarchy(config)
    say("DSRM forward")
    results["dsrm_us_per_state"] = bench_dsrm(config)
    say(f"memory over {config.memory_user_steps:,} user-steps")
    results["rss_growth_mb"] = bench_memory(config)
    results["native_vs_sync"] = results[f"native_{config.sync_size}"] / results[f"sync_{config.sync_size}"]
    results["native_vs_lean"] = results[f"native_{largest}"] / results[f"lean_{largest}"]
    results["ppo_speedup"] = results["ppo_fps"] / results["ppo_reference_fps"]
    results["v1_vs_v0"] = results[f"native_v1_{largest}"] / v0_alongside_v1
    results["hrl_vs_reference"] = {agent: fps / results["hrl_reference_fps"] for agent, fps in results["hrl_fps"].items()}
    results["hrl_speedup"] = {agent: ratio / HRL_BASELINE_VS_REFERENCE[agent]
                              for agent, ratio in results["hrl_vs_reference"].items()}
    results["load_average"] = [load_at_start, _load_average()]
    return results


def format_table(results: dict[str, Any]) -> str:
    """Human-readable table of :func:`run`'s figures."""
    units = {"ppo_native_fps": "frames/s", "ppo_dummy_fps": "frames/s", "ppo_fps": "frames/s",
             "ppo_reference_fps": "frames/s", "dsrm_us_per_state": "us/state", "rss_growth_mb": "MB",
             "native_vs_sync": "x", "native_vs_lean": "x", "ppo_speedup": "x", "v1_vs_v0": "x",
             "hrl_fps": "frames/s", "hrl_reference_fps": "frames/s", "hrl_vs_reference": "x", "hrl_speedup": "x"}
    loads = ", ".join("n/a" if load is None else f"{load:.2f}" for load in results["load_average"])
    lines = [
        f"recgym bench on {results['env_id']} (options {results['options']}, {results['timer']} clock)",
        f"1-minute load average at start, end: {loads} on {os.cpu_count()} CPUs",
        f"{'figure':<30} {'value':>14}  unit",
    ]
    rows = []
    for key, value in results.items():
        if key in ("env_id", "options", "timer", "load_average"):
            continue
        # per-agent figures (hrl_*) one row each: hrl_fps[dsrm-hrl]
        rows += [(f"{key}[{agent}]", key, v) for agent, v in value.items()] if isinstance(value, dict) else [(key, key, value)]
    for label, key, value in rows:
        text = "n/a" if value is None else f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
        lines.append(f"{label:<30} {text:>14}  {units.get(key, 'user-steps/s')}")
    return "\n".join(lines)


# ---------------------------------------------------------------- population: per-user cost of a platform step
POPULATION_WARMUP = 3  # untimed platform steps first (allocations, caches)
WORLD_IDS = {"kuairec": "recgym/KuaiRec-v0", "kuairand": "recgym/KuaiRand-v0", "synthetic": "recgym/Synthetic-v0"}


def bench_population(world: str, n_users: int, steps: int, clock: Callable[[], float] = TIMERS["wall"]) -> dict[str, float]:
    """Microseconds per user of ``steps`` platform steps of a fixed-size PettingZoo population with
    uniformly random items: the simulator call inside ``PopulationEnv.step`` (``sim_us``), the whole
    ``PopulationEnv.step`` with its per-agent dicts (``env_us``), and how many simulator calls a
    platform step made (``sim_calls_per_step``)."""
    from recgym.envs.population import PopulationEnv

    env = PopulationEnv(world=world, n_users=n_users, max_cycles=steps + POPULATION_WARMUP + 1, mode="Free")
    env.reset(seed=0)
    rng = np.random.default_rng(0)

    def random_actions() -> dict[str, int]:
        return dict(zip(env.agents, rng.integers(0, env.world.n_items, size=len(env.agents)).tolist()))

    for _ in range(POPULATION_WARMUP):
        env.step(random_actions())
    sim_step, sim_seconds, calls = env.sim.step, [], []

    def timed_step(*args: Any, **kwargs: Any) -> Any:
        start = clock()
        result = sim_step(*args, **kwargs)
        sim_seconds.append(clock() - start)
        return result

    env.sim.step = timed_step
    env_seconds = 0.0
    for _ in range(steps):
        actions = random_actions()
        before = len(sim_seconds)
        start = clock()
        env.step(actions)
        env_seconds += clock() - start
        calls.append(len(sim_seconds) - before)
    per_user = 1e6 / (steps * n_users)
    return {"sim_us": sum(sim_seconds) * per_user, "env_us": env_seconds * per_user,
            "sim_calls_per_step": float(np.mean(calls))}


def bench_population_sb3(world: str, n_users: int, steps: int, clock: Callable[[], float] = TIMERS["wall"]) -> float:
    """Microseconds per user of ``SB3VecEnv.step`` on the same world (immediate replacement, no dicts)."""
    from recgym.envs.sb3 import SB3VecEnv

    venv = SB3VecEnv(WORLD_IDS[world], num_envs=n_users, mode="Free")
    venv.seed(0)
    venv.reset()
    actions = _random_actions(venv.venv.world.n_items, (steps + POPULATION_WARMUP, n_users))
    for row in actions[:POPULATION_WARMUP]:
        venv.step(row)
    start = clock()
    for row in actions[POPULATION_WARMUP:]:
        venv.step(row)
    return (clock() - start) * 1e6 / (steps * n_users)


def population_main(argv: list[str] | None = None) -> int:
    """``recgym bench population`` (``benchmarks/bench_population.py``): per-user cost of stepping the
    user population at each size; a table, then one JSON line."""
    parser = argparse.ArgumentParser(prog="recgym bench population",
                                     description="Per-user cost of a platform step: 10 vs 1,000 concurrent users.")
    parser.add_argument("--quick", action="store_true", help="few steps (a smoke run)")
    parser.add_argument("--world", default="kuairec", choices=list(WORLD_IDS))
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 1000])
    args = parser.parse_args(argv)
    if any(size < 1 for size in args.sizes):
        parser.error(f"--sizes must be positive, got {args.sizes}")
    steps = 10 if args.quick else 60
    rows = [{"n_users": n, **bench_population(args.world, n, steps), "sb3_us": bench_population_sb3(args.world, n, steps)}
            for n in args.sizes]
    print(f"world={args.world} steps={steps} (microseconds per user per step)")
    print(f"{'users':>7} {'sim.step':>10} {'Parallel':>10} {'SB3VecEnv':>10} {'sim calls/step':>15}")
    for row in rows:
        print(f"{row['n_users']:>7} {row['sim_us']:>10.1f} {row['env_us']:>10.1f} {row['sb3_us']:>10.1f} "
              f"{row['sim_calls_per_step']:>15.0f}")
    small, large = rows[0], rows[-1]
    print(json.dumps({"benchmark": "population", "world": args.world, "steps": steps, "rows": rows,
                      "per_user_speedup_small_to_large": {key: small[key] / large[key]
                                                          for key in ("sim_us", "env_us", "sb3_us")}}))
    return 0


# ------------------------------------------------- dsrm: does the purified state recover the TRUE interest?
def dsrm_main(argv: list[str] | None = None) -> int:
    """``recgym bench dsrm`` (``benchmarks/bench_dsrm.py``): DSRM's states scored against the
    simulator's true interest, with the noise-off control and the K sweep
    (:func:`recgym.agents.dsrm.evaluate.main`, ``docs/dsrm.md``)."""
    from recgym.agents.dsrm.evaluate import main as dsrm_eval_main

    return dsrm_eval_main(argv)


# ------------------------------------------------- data: loading a KuaiRec folder, cold and cached
def bench_data_load(data_dir: str, cached_rounds: int) -> dict[str, Any]:
    """Seconds of ``gym.make(ENV_ID, data_dir=data_dir)``: once with an empty cache (``cold``: parse,
    SVD, cache write), then ``cached_rounds`` times reading the cache (``cached``: their median).
    Runs with ``RECGYM_CACHE`` pointed at a temporary folder (the user's cache is untouched) and
    checks the cached worlds equal the cold one bit for bit."""
    import tempfile

    previous = os.environ.get("RECGYM_CACHE")
    with tempfile.TemporaryDirectory(prefix="recgym-bench-cache-") as cache:
        os.environ["RECGYM_CACHE"] = cache
        try:
            loads = []
            for _ in range(1 + cached_rounds):
                wall, cpu = time.perf_counter(), time.process_time()
                world = gym.make(ENV_ID, data_dir=data_dir).unwrapped.world
                loads.append((time.perf_counter() - wall, time.process_time() - cpu, world))
            entries = sorted(os.listdir(cache))
        finally:
            if previous is None:
                os.environ.pop("RECGYM_CACHE")
            else:
                os.environ["RECGYM_CACHE"] = previous
    cold = loads[0][2]
    arrays = ("item_emb", "item_cats", "pop_prior", "user_interest", "user_novelty", "reward_matrix", "user_ids",
              "item_ids")
    identical = all(getattr(cold, name).tobytes() == getattr(world, name).tobytes()
                    for _, _, world in loads[1:] for name in arrays)
    return {"users": cold.n_users, "items": cold.n_items, "cold_s": loads[0][0], "cold_cpu_s": loads[0][1],
            "cached_s": float(np.median([wall for wall, _, _ in loads[1:]])),
            "cached_cpu_s": float(np.median([cpu for _, cpu, _ in loads[1:]])),
            "cache_entries": entries, "cached_identical": identical}


def data_main(argv: list[str] | None = None) -> int:
    """``recgym bench data`` (``benchmarks/bench_data.py``): cold and cached loads of a KuaiRec-schema
    folder written by :func:`recgym.loaders.write_synthetic_kuairec` (KuaiRec's 1,411 x 3,327 = 4.7 M
    rows by default) into a temporary folder, or into ``--data-dir`` (reused when it already holds
    ``small_matrix.csv``); a table, then one JSON line."""
    import tempfile

    from recgym.loaders import SMALL_MATRIX, write_synthetic_kuairec

    parser = argparse.ArgumentParser(prog="recgym bench data",
                                     description="Cold and cached data_dir loads of a generated KuaiRec-schema folder.")
    parser.add_argument("--data-dir", help="folder to generate into (or reuse); default: a temporary folder")
    parser.add_argument("--users", type=int, default=1411)
    parser.add_argument("--items", type=int, default=3327)
    parser.add_argument("--cached-rounds", type=int, default=3, help="cached loads timed (their median is reported)")
    args = parser.parse_args(argv)
    for name in ("users", "items", "cached_rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    with tempfile.TemporaryDirectory(prefix="recgym-bench-data-") as scratch:
        data_dir = args.data_dir or scratch
        start = time.perf_counter()
        generated = not os.path.isfile(os.path.join(data_dir, SMALL_MATRIX))
        if generated:
            write_synthetic_kuairec(data_dir, n_users=args.users, n_items=args.items)
        generate_s = time.perf_counter() - start
        size_mb = os.path.getsize(os.path.join(data_dir, SMALL_MATRIX)) / 2**20
        load_start = _load_average()
        result = bench_data_load(data_dir, args.cached_rounds)
    result = {"benchmark": "data", "small_matrix_mb": round(size_mb, 1), "generated": generated,
              "generate_s": round(generate_s, 1), **result, "load_average": [load_start, _load_average()]}
    print(f"{result['users']} users x {result['items']} items, small_matrix.csv {size_mb:.1f} MiB")
    print(f"{'load':>8} {'wall s':>8} {'cpu s':>8}")
    print(f"{'cold':>8} {result['cold_s']:>8.2f} {result['cold_cpu_s']:>8.2f}")
    print(f"{'cached':>8} {result['cached_s']:>8.2f} {result['cached_cpu_s']:>8.2f}")
    print(json.dumps(result))
    return 0 if result["cached_identical"] else 1


# ------------------------------------------------- soak: memory over many lifetimes (issue #17)
@dataclass(frozen=True)
class SoakConfig:
    """What :func:`soak` runs: ``lifetimes`` user lifetimes of ``sessions`` sessions each through the
    lifetime vector env of ``env_id`` (a v1 id; :data:`ALL_MECHANISMS` on, ``max_turn`` steps per
    session at most) with ``rows`` lifetimes at once (the env's rows, at most the world's users); the
    first ``rows`` lifetimes to end are the warm-up before the first RSS reading. ``world_options``:
    passed to ``gym.make_vec`` (e.g. a small Synthetic-v1 world's ``n_users``); ``seed``: the env's and
    the policy's; ``timer``: as :class:`BenchConfig`'s.
    """

    env_id: str = "recgym/KuaiRand-v1"
    rows: int = 1_000
    lifetimes: int = 10_000
    sessions: int = 50
    max_turn: int = 30
    seed: int = 0
    world_options: dict[str, Any] | None = None
    timer: str = "wall"

    def __post_init__(self) -> None:
        for name in ("rows", "lifetimes", "sessions", "max_turn"):
            check_count(name, getattr(self, name))
        check_count("seed", self.seed, low=0)
        if self.lifetimes <= self.rows:
            raise ValueError(f"lifetimes must exceed rows={self.rows} (the first rows lifetimes are the warm-up), "
                             f"got {self.lifetimes}")
        if self.timer not in TIMERS:
            raise ValueError(f"timer must be one of {list(TIMERS)}, got {self.timer!r}")

    @property
    def clock(self) -> Callable[[], float]:
        return TIMERS[self.timer]


#: ``recgym bench --soak --quick``: a smoke run of the soak (KuaiRand-v1's load dominates it).
QUICK_SOAK = SoakConfig(rows=500, lifetimes=1_500, sessions=10)


def unrepeated_items(n_items: int, rows: int, seed: int) -> Callable[[int], np.ndarray]:
    """The soak's policy, batched: ``items(t)`` -> (rows,) int64 the item ids of the batch's t-th step.
    Row b walks one random permutation of the catalogue from its own random start, one item per step:
    each step's items are uniform over the catalogue, and a row repeats no item within ``n_items``
    steps, so in NX modes every item is allowed while a lifetime has at most ``n_items`` steps."""
    rng = np.random.default_rng(seed)
    order, starts = rng.permutation(n_items), rng.integers(0, n_items, size=rows)
    return lambda t: order[(starts + t) % n_items]


def soak(config: SoakConfig = SoakConfig()) -> dict[str, Any]:
    """Resident memory over ``config.lifetimes`` lifetimes (issue #17's soak): the vector env (same-step
    autoreset: an ended lifetime restarts as a uniformly drawn user in no other row) steps
    :func:`unrepeated_items` until that many lifetimes ended; RSS (``/proc/self/status`` VmRSS,
    ``gc.collect()`` first) is read once the first ``rows`` lifetimes ended and at the end.

    The per-user state the env must keep is measured on the simulator's own arrays
    (:class:`recgym.users.Users`, ``Simulator.users``: every user's row exists from the start):
    ``user_state_bytes_per_field`` {field: nbytes / n_users}, their sum ``user_state_bytes_per_user``.
    MB are 2**20 bytes throughout (as the RSS readings). ``lifetimes``: lifetimes ended;
    ``distinct_users``: users who lived one (the rows' lifetimes in progress included). RSS is the
    process's: run it in a fresh process (as ``recgym bench --soak`` does), since memory the process
    freed earlier can absorb growth unseen. Returns the flat dict :func:`soak_main` prints.
    Raises ``ValueError`` when a lifetime could outlast the catalogue (``sessions * max_turn > n_items``:
    the policy would repeat items).
    """
    options = {**ALL_MECHANISMS, "episode": "lifetime", "lifetime_sessions": config.sessions,
               "max_turn": config.max_turn}
    venv = gym.make_vec(config.env_id, num_envs=config.rows, vectorization_mode="vector_entry_point",
                        autoreset_mode=AutoresetMode.SAME_STEP, world_options=config.world_options, **options)
    sim = venv.unwrapped.sim
    n_items, n_users = sim.world.n_items, sim.world.n_users
    if config.sessions * config.max_turn > n_items:
        venv.close()
        raise ValueError(f"sessions * max_turn = {config.sessions * config.max_turn} exceeds {config.env_id}'s "
                         f"{n_items} items: a lifetime would repeat items; lower sessions or max_turn")
    items = unrepeated_items(n_items, config.rows, config.seed)
    lived = np.zeros(n_users, bool)  # users who lived a lifetime (ended or in progress)
    load_at_start = _load_average()
    venv.reset(seed=config.seed)
    clock = config.clock
    start, steps, lifetimes, sessions, warmup = clock(), 0, 0, 0, None  # warmup: set at the first RSS reading
    while lifetimes < config.lifetimes:
        _, _, terminated, truncated, infos = venv.step(items(steps))
        steps += 1
        lifetimes += int(np.count_nonzero(terminated | truncated))
        sessions += int(np.count_nonzero(infos["session_ended"]))
        lived[infos["user_id"]] = True
        if warmup is None and lifetimes >= config.rows:
            gc.collect()
            warmup = {"warmup_lifetimes": lifetimes, "warmup_sessions": sessions, "rss_start_mb": _rss_mb()}
    gc.collect()
    rss_end = _rss_mb()
    seconds = clock() - start
    state_bytes = {name: array.nbytes for name, array in sim.users._asdict().items()}
    venv.close()
    return {"benchmark": "soak", "env_id": config.env_id, "options": options, "world_options": config.world_options,
            "rows": config.rows, "seed": config.seed, "timer": config.timer, "lifetimes": lifetimes,
            "sessions": sessions, "user_steps": steps * config.rows, "seconds": seconds,
            "distinct_users": int(np.count_nonzero(lived)), "n_users": n_users, **warmup, "rss_end_mb": rss_end,
            "rss_growth_mb": rss_end - warmup["rss_start_mb"],
            "user_state_mb": sum(state_bytes.values()) / 2**20,
            "user_state_bytes_per_user": sum(state_bytes.values()) / n_users,
            "user_state_bytes_per_field": {name: nbytes / n_users for name, nbytes in state_bytes.items()},
            "load_average": [load_at_start, _load_average()]}


def format_soak(result: dict[str, Any]) -> str:
    """Human-readable table of :func:`soak`'s result."""
    loads = ", ".join("n/a" if load is None else f"{load:.2f}" for load in result["load_average"])
    per_field = result["user_state_bytes_per_field"]
    fields = ", ".join(f"{name} {size:,.0f}" for name, size in per_field.items() if size >= 1)
    shared = [name for name, size in per_field.items() if size < 1]  # the (1,) platform clock and counter
    fields += f"; {', '.join(shared)}: {sum(per_field[name] for name in shared) * result['n_users']:,.0f} B shared"
    after = result["lifetimes"] - result["warmup_lifetimes"]
    return "\n".join([
        f"recgym bench --soak on {result['env_id']}: {result['rows']:,} rows, options {result['options']}, "
        f"seed {result['seed']}",
        f"1-minute load average at start, end: {loads} on {os.cpu_count()} CPUs",
        f"{'lifetimes ended':<34} {result['lifetimes']:>12,}",
        f"{'distinct users':<34} {result['distinct_users']:>12,}  of {result['n_users']:,} (the rows' lifetimes "
        f"in progress included)",
        f"{'sessions':<34} {result['sessions']:>12,}",
        f"{'user-steps':<34} {result['user_steps']:>12,}  in {result['seconds']:.1f} s ({result['timer']} clock)",
        f"{'RSS after the warm-up lifetimes':<34} {result['rss_start_mb']:>12,.1f}  MB "
        f"({result['warmup_lifetimes']:,} lifetimes)",
        f"{'RSS at the end':<34} {result['rss_end_mb']:>12,.1f}  MB",
        f"{'RSS growth':<34} {result['rss_growth_mb']:>12,.2f}  MB over the last {after:,} lifetimes",
        f"{'per-user state (recgym.users.Users)':<34} {result['user_state_mb']:>12,.1f}  MB = "
        f"{result['user_state_bytes_per_user']:,.1f} B per user",
        f"  bytes per user: {fields}",
    ])


def soak_main(config: SoakConfig) -> int:
    """``recgym bench --soak [--quick]`` (``benchmarks/bench_soak.py``): :func:`soak`'s table, then one JSON line."""
    result = soak(config)
    print(format_soak(result))
    print(json.dumps(result))
    return 0


#: ``recgym bench SUITE ...``: the suites besides the default throughput one.
SUITES: dict[str, Callable[[list[str] | None], int]] = {"population": population_main, "dsrm": dsrm_main,
                                                         "data": data_main}


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``recgym bench [--quick]`` (``benchmarks/bench_env.py``): the throughput suite;
    ``recgym bench --soak [--quick]`` the memory soak (:func:`soak_main`); ``recgym bench
    population|dsrm|data ...`` runs that suite of :data:`SUITES` (``--help`` each)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] and argv[0] in SUITES:
        return SUITES[argv[0]](argv[1:])
    parser = argparse.ArgumentParser(prog="recgym bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter timings and training runs (same keys; ~3 min at load 7)")
    parser.add_argument("--seconds", type=float, default=None, help="time spent on each throughput figure")
    parser.add_argument("--timer", choices=list(TIMERS), default="wall",
                        help="wall clock, or this process's CPU time (for a machine shared with other jobs)")
    parser.add_argument("--soak", action="store_true",
                        help="the memory soak instead: 10,000 lifetimes x 50 sessions on KuaiRand-v1, ~45 s at load 5 "
                             "(--quick: 1,500 x 10, ~20 s, mostly loading the world)")
    args = parser.parse_args(argv)
    if args.soak:
        if args.seconds is not None:
            parser.error("--seconds times the throughput suite; the soak runs a fixed number of lifetimes")
        return soak_main(replace(QUICK_SOAK if args.quick else SoakConfig(), timer=args.timer))
    config = replace(QUICK if args.quick else BenchConfig(), timer=args.timer)
    if args.seconds is not None:
        if args.seconds <= 0:
            parser.error(f"--seconds must be positive, got {args.seconds}")
        config = replace(config, seconds=args.seconds)
    results = run(config, progress=lambda message: print(f"... {message}", flush=True))
    print(format_table(results))
    print(json.dumps(results))
    return 0
