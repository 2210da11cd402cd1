"""DSRM benchmark: does the diffusion-purified state recover the TRUE interest better than the raw one?

Pretrains DSRM on a random behaviour policy's logs (observed data only) and scores, against the
simulator's ground truth, the feedback-weighted history mean, the encoder's raw state s~_t and the
purified state s^_t. Three experiments:

1. headline at the env's default observation noise (noise level 1);
2. noise curve: noise level L scales the three observation-noise knobs of SimParams
   (popularity_noise = 0.5 L, exposure_bias = min(0.5 L, 0.95), observation_noise = 0.05 L;
   L = 0 switches them off, L = 1 is the default);
3. K sweep at ``--sweep-level`` (default 2, where the denoising gain is clearly above the seed
   noise): number of diffusion steps (the linear schedule is per step, so a larger K noises the raw
   state more before restoring it), plus the DDIM fast sampler.

Prints tables, then one JSON line. ``python benchmarks/bench_dsrm.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

import recgym  # noqa: F401  (registers the env ids)
from recgym.agents.dsrm import DenoisingScores, evaluate, pretrain


def noise_options(level: float) -> dict[str, float]:
    """SimParams observation-noise knobs at ``level`` times their defaults (0 = off)."""
    return {"popularity_noise": 0.5 * level, "exposure_bias": min(0.5 * level, 0.95), "observation_noise": 0.05 * level}


def run(args: argparse.Namespace, level: float, k_steps: int, **eval_kwargs) -> tuple[DenoisingScores, object]:
    options = noise_options(level)
    model = pretrain(args.env, timesteps=args.timesteps, k_steps=k_steps, logdir=None, seed=args.seed,
                     progress=False, env_options=options, device=args.device)
    scores = evaluate(model, args.env, timesteps=args.eval_timesteps, seed=args.seed + 1000, env_options=options,
                      **eval_kwargs)
    return scores, model


def row(label: str, scores: DenoisingScores) -> str:
    return (f"{label:>14} | {scores.cosine_history:8.3f} {scores.cosine_raw:8.3f} {scores.cosine_purified:8.3f} | "
            f"{scores.ndcg_history:8.3f} {scores.ndcg_raw:8.3f} {scores.ndcg_purified:8.3f} | {scores.ratio:6.3f}")


HEADER = (f"{'':>14} | {'cos hist':>8} {'cos raw':>8} {'cos pur':>8} | "
          f"{'ndcg hist':>8} {'ndcg raw':>8} {'ndcg pur':>8} | {'ratio':>6}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="recgym/KuaiRec-v0")
    parser.add_argument("--timesteps", type=int, default=50_000, help="logged transitions for stage I")
    parser.add_argument("--eval-timesteps", type=int, default=10_000)
    parser.add_argument("--levels", type=float, nargs="+", default=[0.0, 0.5, 1.0, 2.0, 3.0])
    parser.add_argument("--k-values", type=int, nargs="+", default=[5, 10, 20, 30, 100, 300])
    parser.add_argument("--sweep-level", type=float, default=2.0, help="noise level of the K sweep")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (tiny models: 1 is fastest)")
    parser.add_argument("--quick", action="store_true", help="small run: fewer logs, levels and K values")
    args = parser.parse_args()
    if args.quick:
        args.timesteps, args.eval_timesteps, args.levels, args.k_values = 15_000, 3_000, [0.0, 2.0], [10, 300]
    torch.set_num_threads(args.threads)
    start = time.perf_counter()

    print(f"DSRM on {args.env}: {args.timesteps} logged transitions (random behaviour), seed {args.seed}")
    print("\nNoise curve (K = 20, DDPM sampler, mean of 8 chains):\n" + HEADER)
    curve, by_level = [], {}
    for level in sorted(set(args.levels) | {1.0, args.sweep_level}):
        by_level[level] = run(args, level, 20)
        curve.append({"level": level, **noise_options(level), **by_level[level][0].as_dict()})
        print(row(f"level {level:g}", by_level[level][0]))
    headline = by_level[1.0][0]

    print(f"\nK sweep (noise level {args.sweep_level:g}):\n" + HEADER)
    sweep = []
    for k_steps in sorted(set(args.k_values) | {20}):
        scores = by_level[args.sweep_level][0] if k_steps == 20 else run(args, args.sweep_level, k_steps)[0]
        sweep.append({"k_steps": k_steps, **scores.as_dict()})
        print(row(f"K={k_steps} ddpm", scores))
    ddim = evaluate(by_level[args.sweep_level][1], args.env, timesteps=args.eval_timesteps, seed=args.seed + 1000,
                    env_options=noise_options(args.sweep_level), sampler="ddim", steps=5)
    print(row("K=20 ddim/5", ddim))

    result = {
        "env": args.env, "timesteps": args.timesteps, "eval_timesteps": args.eval_timesteps, "seed": args.seed,
        "denoising_ratio": headline.ratio, "headline": headline.as_dict(), "noise_curve": curve,
        "sweep_level": args.sweep_level, "k_sweep": sweep, "ddim_5_steps": ddim.as_dict(), "seconds": round(time.perf_counter() - start, 1),
    }
    print(json.dumps(result, default=float))


if __name__ == "__main__":
    main()
