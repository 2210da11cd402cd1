"""Hierarchical agents' training throughput, the code before issue #18 against this tree's, re-measured.

    python benchmarks/bench_hrl_baseline.py                     # 3 old/new pairs: ~4-6 min quiet (estimated)
                                                                # 6-7 min per pair at load 9
    OMP_NUM_THREADS=1 python benchmarks/bench_hrl_baseline.py   # numpy's BLAS on one thread (docs/performance.md)
    python benchmarks/bench_hrl_baseline.py --pairs 1 --agents novelty-hrl   # a quick look

The old code is never copied into the repository: the script checks the commit before issue #18's
changes (``--commit``, default ``2d57216``) out with ``git worktree add --detach`` into a temporary
directory, and removes the worktree when it ends. Every measurement runs in a fresh subprocess that
imports ``recgym`` either from that worktree (``old``) or from the tree this script lives in
(``new``); the two alternate (old, new, then new, old, ...) so both see the same machine moment.

One subprocess times, for each agent (dsrm-hrl, hrl4pfg, novelty-hrl as ``recgym train --agent NAME``
builds them: :func:`recgym.agents.hrl_agents.build_method`, :func:`recgym.agents.hierarchy.train_hierarchy`
with ``HierarchyConfig`` defaults but 4,096 low-level steps and 4,096 high-level options per round, 64
sessions per level, CPU, one torch thread, ``recgym/KuaiRec-v0`` with ``popular_streak=5``; dsrm-hrl on
an untrained default-size DSRM, stage I not timed), ``--rounds`` rounds after a warm-up round: from the
start of ``low.learn`` to the end of ``high.learn`` (the checkpoint written between rounds is not
timed). A frame is one recommendation the simulator made for either level. The same subprocess times
the plain SB3 PPO reference of ``recgym bench`` (``MultiInputPolicy`` on ``SB3VecEnv`` of 64 sessions,
n_steps 32, batch 512, 4 epochs: one 2,048-frame rollout and its update per round) before and after
the agents. Printed per agent: old and new frames/s (medians over the subprocesses), the ratio new /
old (median of the pairs' ratios), each side's frames/s over its own subprocess's reference
(``old / ref`` is what ``recgym.bench.HRL_BASELINE_VS_REFERENCE`` holds), and the load averages.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

AGENTS = ("dsrm-hrl", "hrl4pfg", "novelty-hrl")
BEFORE_ISSUE_18 = "2d57216"
ENV_ID = "recgym/KuaiRec-v0"
ROLLOUT = 4_096  # low-level steps and high-level options per round (64 sessions x PPO n_steps 64)
REFERENCE_ROLLOUT = 2_048  # the SB3 reference: 64 sessions x n_steps 32


def child(agents: list[str], rounds: int, torch_threads: int, same_updates: bool) -> dict[str, object]:
    """Time ``rounds`` rounds of each agent and the SB3 reference with the ``recgym`` on ``sys.path``;
    ``same_updates``: the high level with the low level's PPO settings (as before issue #19's
    ``HierarchyConfig.high_ppo``), where the config has that field."""
    import dataclasses

    import gymnasium as gym
    import numpy as np
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback

    import recgym
    from recgym.agents.dsrm import DSRM, DSRMConfig
    from recgym.agents.hierarchy import HierarchyConfig, train_hierarchy
    from recgym.agents.hrl_agents import HRL_AGENTS, build_method
    from recgym.bench import ALL_MECHANISMS
    from recgym.envs.sb3 import SB3VecEnv
    from recgym.envs.vector import RecSysVectorEnv

    torch.set_num_threads(torch_threads)
    made = [0]
    step = RecSysVectorEnv.step

    def counted(self, actions, active=None):  # the recommendations made: the active rows
        made[0] += self.num_envs if active is None else int(np.count_nonzero(active))
        return step(self, actions, active=active)

    RecSysVectorEnv.step = counted
    reference = PPO("MultiInputPolicy", SB3VecEnv(ENV_ID, num_envs=64, **ALL_MECHANISMS), n_steps=32,
                    batch_size=512, n_epochs=4, seed=0, device="cpu", verbose=0)
    reference_rates: list[float] = []

    def time_reference(n: int) -> None:
        for _ in range(n):
            start = time.perf_counter()
            reference.learn(REFERENCE_ROLLOUT, reset_num_timesteps=False)
            reference_rates.append(REFERENCE_ROLLOUT / (time.perf_counter() - start))

    time_reference(1)
    reference_rates.clear()  # the warm-up round
    time_reference(rounds)
    world_env = gym.make(ENV_ID).unwrapped
    rates: dict[str, float] = {}
    for agent in agents:
        dsrm = None
        if HRL_AGENTS[agent][0]:
            torch.manual_seed(0)
            dsrm = DSRM(DSRMConfig(embed_dim=world_env.world.embed_dim, history_len=world_env.params.history_len),
                        world_env.world.fingerprint, world_env.world.n_items).eval()
        marks: list[tuple[float, int]] = []

        class RoundClock(BaseCallback):
            """Marks (time, frames made) when the low level's learn starts and the high level's ends."""

            def __init__(self, level: str) -> None:
                super().__init__()
                self.level = level

            def _on_training_start(self) -> None:
                if self.level == "low":
                    marks.append((time.perf_counter(), made[0]))

            def _on_training_end(self) -> None:
                if self.level == "high":
                    marks.append((time.perf_counter(), made[0]))

            def _on_step(self) -> bool:
                return True

        has_high_ppo = "high_ppo" in {f.name for f in dataclasses.fields(HierarchyConfig)}
        settings = {"high_ppo": {}} if same_updates and has_high_ppo else {}
        config = HierarchyConfig(rounds=1 + rounds, low_steps=ROLLOUT, high_steps=ROLLOUT, n_sessions=64, seed=0,
                                 device="cpu", **settings)
        with tempfile.TemporaryDirectory() as logdir:
            train_hierarchy(build_method(agent, dsrm), ENV_ID, config, logdir=logdir, env_options=ALL_MECHANISMS,
                            callbacks=RoundClock)
        per_round = [(marks[i + 1][1] - marks[i][1]) / (marks[i + 1][0] - marks[i][0])
                     for i in range(2, len(marks), 2)]  # marks[0:2] is the warm-up round
        rates[agent] = statistics.median(per_round)
    time_reference(rounds)
    return {"recgym": str(Path(recgym.__file__).parent), "fps": rates,
            "reference_fps": statistics.median(reference_rates), "load": os.getloadavg()[0]}


def run_child(code_root: Path, args: argparse.Namespace) -> dict[str, object]:
    """One measuring subprocess importing ``recgym`` from ``code_root``."""
    env = dict(os.environ, PYTHONPATH=str(code_root), PYTHONWARNINGS="ignore")
    command = [sys.executable, str(Path(__file__).resolve()), "--child", "--rounds", str(args.rounds),
               "--torch-threads", str(args.torch_threads), "--agents", *args.agents]
    command += ["--same-updates"] * args.same_updates
    with tempfile.TemporaryDirectory() as cwd:
        done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"measuring subprocess failed for {code_root}:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if Path(result["recgym"]).resolve() != (code_root / "recgym").resolve():
        raise SystemExit(f"the subprocess imported recgym from {result['recgym']}, not from {code_root}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commit", default=BEFORE_ISSUE_18, help="the old code's commit (default: %(default)s)")
    parser.add_argument("--pairs", type=int, default=3, help="old/new subprocess pairs (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="timed rounds per agent per subprocess (default: %(default)s)")
    parser.add_argument("--agents", nargs="+", choices=AGENTS, default=list(AGENTS))
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="torch threads (default: %(default)s, as recgym bench)")
    parser.add_argument("--same-updates", action="store_true",
                        help="the new code's high level with the low level's PPO settings (n_steps 64, batch 256), "
                             "the gradient steps per round of the old code")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.pairs, args.rounds, args.torch_threads) < 1:
        parser.error("--pairs, --rounds and --torch-threads must be positive integers")
    if args.child:
        print(json.dumps(child(args.agents, args.rounds, args.torch_threads, args.same_updates)))
        return 0
    new_root = Path(__file__).resolve().parent.parent
    started, load_start = time.time(), os.getloadavg()[0]
    scratch = Path(tempfile.mkdtemp(prefix="recgym_hrl_baseline_"))
    old_root = scratch / "old"
    subprocess.run(["git", "-C", str(new_root), "worktree", "add", "--detach", "--quiet", str(old_root), args.commit],
                   check=True)
    runs: dict[str, list[dict[str, object]]] = {"old": [], "new": []}
    try:
        for pair in range(args.pairs):
            for side in ("old", "new") if pair % 2 == 0 else ("new", "old"):
                result = run_child(old_root if side == "old" else new_root, args)
                runs[side].append(result)
                fps = ", ".join(f"{agent} {rate:,.0f}" for agent, rate in result["fps"].items())
                print(f"pair {pair + 1} {side}: {fps}, reference {result['reference_fps']:,.0f} frames/s, "
                      f"load {result['load']:.2f}", flush=True)
    finally:
        subprocess.run(["git", "-C", str(new_root), "worktree", "remove", "--force", str(old_root)], check=False)
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"\nold = {args.commit} (git worktree), new = {new_root}; OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')}, {args.torch_threads} torch thread(s), {args.pairs} pairs x "
          f"{args.rounds} round(s){', new high level with the old PPO settings' if args.same_updates else ''}; "
          f"load average {load_start:.2f} -> {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs, "
          f"{time.time() - started:.0f} s")
    print(f"{'agent':<12} {'old fps':>9} {'new fps':>9} {'new/old':>8} {'old/ref':>8} {'new/ref':>8}")
    summary = {}
    for agent in args.agents:
        old = [run["fps"][agent] for run in runs["old"]]
        new = [run["fps"][agent] for run in runs["new"]]
        row = {"old_fps": statistics.median(old), "new_fps": statistics.median(new),
               "speedup": statistics.median(n / o for n, o in zip(new, old)),
               "old_vs_reference": statistics.median(run["fps"][agent] / run["reference_fps"] for run in runs["old"]),
               "new_vs_reference": statistics.median(run["fps"][agent] / run["reference_fps"] for run in runs["new"])}
        summary[agent] = row
        print(f"{agent:<12} {row['old_fps']:>9,.0f} {row['new_fps']:>9,.0f} {row['speedup']:>7.2f}x "
              f"{row['old_vs_reference']:>8.2f} {row['new_vs_reference']:>8.2f}")
    reference = {side: statistics.median(run["reference_fps"] for run in side_runs) for side, side_runs in runs.items()}
    print(f"SB3 reference: {reference['old']:,.0f} frames/s beside the old code, "
          f"{reference['new']:,.0f} beside the new")
    print(json.dumps({"commit": args.commit, "agents": summary, "reference_fps": reference,
                      "load_average": [load_start, os.getloadavg()[0]],
                      "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "same_updates": args.same_updates}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
