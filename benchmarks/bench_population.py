"""Per-user cost of stepping the user population: 10 vs 1,000 concurrent users.

A platform step of the PettingZoo population is ONE batched ``Simulator.step`` call however many
users are live; the per-agent Python dicts exist only at the PettingZoo boundary. This prints, per
population size, the microseconds per user of: the simulator call inside ``PopulationEnv.step``,
the whole ``PopulationEnv.step`` (dict boundary included) and recgym's batched SB3 view
(``SB3VecEnv``, no dicts), plus how many simulator calls a platform step made. Last line: JSON.

    python benchmarks/bench_population.py [--quick] [--world kuairec] [--sizes 10 1000]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from recgym.envs.population import PopulationEnv
from recgym.envs.sb3 import SB3VecEnv

WARMUP = 3  # untimed steps first (allocations, caches)


def bench_population(world: str, n_users: int, steps: int) -> dict[str, float]:
    """Time ``steps`` platform steps (fixed-size population) with uniformly random items."""
    env = PopulationEnv(world=world, n_users=n_users, max_cycles=steps + WARMUP + 1, mode="Free")
    env.reset(seed=0)
    rng = np.random.default_rng(0)

    def random_actions() -> dict[str, int]:
        return dict(zip(env.agents, rng.integers(0, env.world.n_items, size=len(env.agents)).tolist()))

    for _ in range(WARMUP):
        env.step(random_actions())
    sim_step, sim_seconds, calls = env.sim.step, [], []

    def timed_step(actions: np.ndarray):
        start = time.perf_counter()
        result = sim_step(actions)
        sim_seconds.append(time.perf_counter() - start)
        return result

    env.sim.step = timed_step
    env_seconds = 0.0
    for _ in range(steps):
        actions = random_actions()
        before = len(sim_seconds)
        start = time.perf_counter()
        env.step(actions)
        env_seconds += time.perf_counter() - start
        calls.append(len(sim_seconds) - before)
    per_user = 1e6 / (steps * n_users)
    return {"sim_us": sum(sim_seconds) * per_user, "env_us": env_seconds * per_user,
            "sim_calls_per_step": float(np.mean(calls))}


def bench_sb3(world: str, n_users: int, steps: int) -> float:
    """Microseconds per user of ``SB3VecEnv.step`` (the same simulator, immediate replacement)."""
    venv = SB3VecEnv(f"recgym/{world_id(world)}-v0", num_envs=n_users, mode="Free")
    venv.seed(0)
    venv.reset()
    rng = np.random.default_rng(0)
    actions = rng.integers(0, venv.venv.world.n_items, size=(steps + WARMUP, n_users))
    for row in actions[:WARMUP]:
        venv.step(row)
    start = time.perf_counter()
    for row in actions[WARMUP:]:
        venv.step(row)
    return (time.perf_counter() - start) * 1e6 / (steps * n_users)


def world_id(world: str) -> str:
    return {"kuairec": "KuaiRec", "kuairand": "KuaiRand", "synthetic": "Synthetic"}[world]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few steps (a smoke run)")
    parser.add_argument("--world", default="kuairec", choices=["kuairec", "kuairand", "synthetic"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 1000])
    args = parser.parse_args()
    steps = 10 if args.quick else 60
    rows = []
    for n_users in args.sizes:
        row = {"n_users": n_users, **bench_population(args.world, n_users, steps),
               "sb3_us": bench_sb3(args.world, n_users, steps)}
        rows.append(row)
    print(f"world={args.world} steps={steps} (microseconds per user per step)")
    print(f"{'users':>7} {'sim.step':>10} {'Parallel':>10} {'SB3VecEnv':>10} {'sim calls/step':>15}")
    for row in rows:
        print(f"{row['n_users']:>7} {row['sim_us']:>10.1f} {row['env_us']:>10.1f} {row['sb3_us']:>10.1f} "
              f"{row['sim_calls_per_step']:>15.0f}")
    small, large = rows[0], rows[-1]
    summary = {key: small[key] / large[key] for key in ("sim_us", "env_us", "sb3_us")}
    print(json.dumps({"benchmark": "population", "world": args.world, "steps": steps, "rows": rows,
                      "per_user_speedup_small_to_large": summary}))


if __name__ == "__main__":
    main()
