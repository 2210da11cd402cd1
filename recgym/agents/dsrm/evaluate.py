"""Score DSRM states against the simulator's ground truth (which real systems never have).

States of the same observation, each a D-vector in item-embedding space (``<s, e_i>`` scores item i):

* ``constant``: one state for everyone (the mean clean target of stage I): what a non-personalised
  state knows;
* ``history``: the observed-feedback-weighted mean of the history embeddings (a heuristic);
* ``raw``: the encoder's s~_t (the naive view of the held-out profile, :mod:`recgym.agents.dsrm.train`);
* ``teacher``: the debiased view's regression on the history (the target construction's own estimate);
* ``purified``: DSRM's s^_t (mean of the DDPM's samples of the debiased view);
* ``ceiling``: the oracle-debiased ceiling, the same construction fitted on the TRUE feedback
  (history and targets), which only a simulator has.

Scores, over the visited states with at least one history item (at a session's first step there
is nothing to denoise):

* ``cosine``: cosine to the true current interest ``sim.interest`` (B, D);
* ``specific``: cosine of the USER-SPECIFIC parts, ``state - mean state`` (over the scored states)
  against ``interest - population mean interest`` (over the world's users): how much of what sets
  this user apart the state recovers. A constant state scores 0; the population mean carries most
  of the plain cosine (every user likes what the population likes), so ``specific`` is the score
  that tells personalised states apart.

:func:`main` (``recgym bench dsrm``) prints the table over seeds with 95% intervals, the noise-off
control (the logging's pulls off: the gain of s^_t over s~_t must be ~0 there) and the K sweep.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from recgym.agents.dsrm.model import DSRM
from recgym.agents.dsrm.rollouts import make_venv, rollout
from recgym.agents.dsrm.train import StageOne, encode, refit_diffusion, stage_one
from recgym.metrics import t_ci95

STATES = ("constant", "history", "raw", "teacher", "purified", "ceiling")
#: The v0 logging's noise knobs (``docs/simulator.md``) and the v1 logging model's pulls (``docs/design-v1.md``
#: 3.3): what makes the logged feedback differ from a monotone function of the true satisfaction.
V0_NOISE_KNOBS = ("popularity_noise", "exposure_bias", "observation_noise")
V1_PULL_KNOBS = ("conformity", "conformity_like", "familiarity_click", "familiarity_watch")


def noise_off_options(env_id: str, env_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """``env_options`` with every knob that feeds the logged feedback a bias or noise set to 0 (the v0
    knobs, and on v1 worlds the v1 pulls): the noise-off control's world."""
    venv = make_venv(env_id, 1, env_options)
    knobs = V0_NOISE_KNOBS + (V1_PULL_KNOBS if venv.world.is_v1 else ())
    venv.close()
    return {**(env_options or {}), **dict.fromkeys(knobs, 0.0)}


def cosine(states: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(B,) cosine similarity of rows of (B, D) arrays (0 for a zero state)."""
    norms = np.linalg.norm(states, axis=1) * np.linalg.norm(truth, axis=1)
    return np.einsum("bd,bd->b", states, truth) / np.maximum(norms, 1e-12)


def specific_cosine(states: np.ndarray, truth: np.ndarray, population_mean: np.ndarray) -> float:
    """Mean cosine of the user-specific parts: states (B, D) minus their mean against truth (B, D)
    minus ``population_mean`` (D,); 0 for a constant state."""
    states = states.astype(np.float64)
    centred = states - states.mean(axis=0)
    residue = np.linalg.norm(centred, axis=1) <= 1e-9 * np.linalg.norm(states, axis=1)  # a constant state's rounding
    return float(cosine(np.where(residue[:, None], 0.0, centred), truth - population_mean).mean())


@dataclass(frozen=True)
class DenoisingScores:
    """Mean ``cosine`` and user-specific cosine ``specific`` ({state: value}) over ``n_states`` scored states."""

    cosine: dict[str, float]
    specific: dict[str, float]
    n_states: int

    @property
    def ratio(self) -> float:
        """cosine(purified, truth) / cosine(raw, truth); > 1: s^_t is closer to the interest than s~_t."""
        return self.cosine["purified"] / self.cosine["raw"]

    @property
    def gain(self) -> float:
        """specific(purified) - specific(raw): what DSRM adds to the user-specific part of its raw input."""
        return self.specific["purified"] - self.specific["raw"]

    def as_dict(self) -> dict[str, float]:
        return {**{f"cosine_{k}": v for k, v in self.cosine.items()},
                **{f"specific_{k}": v for k, v in self.specific.items()},
                "n_states": self.n_states, "ratio": self.ratio, "gain": self.gain}


def history_state(obs: dict[str, np.ndarray]) -> np.ndarray:
    """(B, D) observed-feedback-weighted sum of the history embeddings (direction = weighted mean)."""
    return np.einsum("bk,bkd->bd", obs["feedback"], obs["embeddings"])


def evaluate(
    model: DSRM,
    env_id: str,
    *,
    timesteps: int = 10_000,
    num_envs: int = 256,
    behaviour: str = "random",
    seed: int = 1,
    sampler: str = "ddpm",
    steps: int | None = None,
    n_samples: int = 8,
    env_options: dict[str, Any] | None = None,
    stage: StageOne | None = None,
) -> DenoisingScores:
    """Roll out ``behaviour`` in ``env_id`` and score the states against the ground truth: history,
    raw and purified; with ``stage`` (the :class:`~recgym.agents.dsrm.train.StageOne` that fitted
    ``model``) also the constant state, the teacher and (if fitted) the oracle-debiased ceiling.

    Raises ``ValueError`` if ``model`` was trained on another world.
    """
    venv = make_venv(env_id, num_envs, env_options)
    model.check_world(venv.world)
    population_mean = venv.world.user_interest.mean(axis=0)
    parts: dict[str, list[np.ndarray]] = {"truth": []}
    n_steps = -(-timesteps // num_envs)
    steps_ = rollout(venv, n_steps, behaviour, seed, lambda sim: sim.interest.copy())
    for obs, _, _, interest, true_feedback in steps_:
        scored = obs["item_ids"][:, -1] >= 0
        if not scored.any():
            continue
        with torch.no_grad():
            raw = model.raw_state(obs)
            purified = model.purify_state(raw, sampler, steps, n_samples, seed, context=model.history_context(obs))
            states = {"history": history_state(obs), "raw": raw.cpu().numpy(), "purified": purified.cpu().numpy()}
            if stage is not None:
                states["constant"] = np.broadcast_to(stage.constant, raw.shape)
                states["teacher"] = encode(stage.teacher, obs).cpu().numpy()
                if stage.oracle is not None:
                    states["ceiling"] = encode(stage.oracle, {**obs, "feedback": true_feedback}).cpu().numpy()
        for name, state in states.items():
            parts.setdefault(name, []).append(state[scored])
        parts["truth"].append(interest[scored])
    venv.close()
    if not parts["truth"]:
        raise ValueError("no state with a non-empty history was visited; raise timesteps")
    truth = np.concatenate(parts.pop("truth"))
    states = {name: np.concatenate(parts[name]) for name in STATES if name in parts}
    return DenoisingScores({name: float(cosine(state, truth).mean()) for name, state in states.items()},
                           {name: specific_cosine(state, truth, population_mean) for name, state in states.items()},
                           len(truth))


# ---------------------------------------------------------------- the table (recgym bench dsrm)
def score_seeds(
    env_id: str, seeds: list[int], timesteps: int, eval_timesteps: int, k_values: list[int],
    env_options: dict[str, Any] | None = None, device: str = "cpu", say: Any = print,
) -> dict[str, Any]:
    """Per seed: stage I (with the oracle ceiling) on ``timesteps`` logs, scored on ``eval_timesteps``
    fresh transitions (seed + 1000); the K sweep refits the DDPM only (same encoders) for each K.
    Returns {"scores": [DenoisingScores per seed], "k_sweep": {K: [DenoisingScores per seed]}}."""
    scores, sweep = [], {k: [] for k in k_values}
    for seed in seeds:
        stage = stage_one(env_id, timesteps=timesteps, logdir=None, seed=seed, progress=False,
                          env_options=env_options, device=device, oracle=True)
        evaluation = {"timesteps": eval_timesteps, "seed": seed + 1000, "env_options": env_options}
        scores.append(evaluate(stage.model, env_id, stage=stage, **evaluation))
        say(f"  seed {seed}: gain {scores[-1].gain:+.4f}, debiasing {stage.debiasing}")
        for k in k_values:
            model = stage.model if k == stage.model.config.k_steps else refit_diffusion(stage, k, seed=seed)
            sweep[k].append(evaluate(model, env_id, **evaluation))
    return {"scores": scores, "k_sweep": sweep}


def _interval(values: list[float]) -> str:
    mean, half = t_ci95(np.asarray(values))
    return f"{mean:+.3f} [{mean - half:+.3f}, {mean + half:+.3f}]"


def table(label: str, scores: list[DenoisingScores]) -> str:
    """Rows: each state's user-specific cosine and plain cosine (mean [95% interval] over seeds),
    then the gain of s^_t over s~_t."""
    lines = [f"{label} ({len(scores)} seeds, {scores[0].n_states} scored states per seed)",
             f"{'state':>10} | {'user-specific cosine':>26} | {'cosine to the interest':>26}"]
    for name in STATES:
        if all(name in s.specific for s in scores):
            lines.append(f"{name:>10} | {_interval([s.specific[name] for s in scores]):>26} | "
                         f"{_interval([s.cosine[name] for s in scores]):>26}")
    lines.append(f"{'gain':>10} | {_interval([s.gain for s in scores]):>26} | "
                 f"{_interval([s.cosine['purified'] - s.cosine['raw'] for s in scores]):>26}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``recgym bench dsrm``: DSRM's states scored against the true interest, noise-off control, K sweep.

    The user-specific cosine of each state (:data:`STATES`) at the env's default logging and in the
    noise-off control, over seeds with 95% intervals, and the K sweep (denoising steps). Prints the
    tables, then one JSON line."""
    from recgym.threads import set_torch_threads

    parser = argparse.ArgumentParser(prog="recgym bench dsrm", description=main.__doc__.splitlines()[0])
    parser.add_argument("--env", default="recgym/KuaiRec-v1")
    parser.add_argument("--timesteps", type=int, default=50_000, help="logged transitions for stage I")
    parser.add_argument("--eval-timesteps", type=int, default=10_000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--k-values", type=int, nargs="+", default=[5, 20, 100], help="the K sweep (default noise)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (tiny models: 1 is fastest)")
    parser.add_argument("--quick", action="store_true", help="small run: 20k logs, 3k scored transitions, K 5 / 20")
    args = parser.parse_args(argv)
    if args.seeds < 2:
        parser.error(f"--seeds must be >= 2 for an interval, got {args.seeds}")
    if args.quick:
        args.timesteps, args.eval_timesteps, args.k_values = 20_000, 3_000, [5, 20]
    set_torch_threads(args.threads)
    start = time.monotonic()
    seeds = list(range(args.seeds))
    worlds = {"default logging": None, "noise-off control": noise_off_options(args.env)}
    results = {}
    for label, options in worlds.items():
        print(f"{label}: {args.env} {options or ''}", flush=True)
        k_values = args.k_values if options is None else [20]
        results[label] = score_seeds(args.env, seeds, args.timesteps, args.eval_timesteps, k_values, options,
                                     args.device, say=lambda text: print(text, flush=True))
    print(f"\nDSRM on {args.env}: {args.timesteps} random-behaviour logs, K = 20, DDPM, mean of 8 chains")
    for label, result in results.items():
        print("\n" + table(label, result["scores"]))
    sweep = results["default logging"]["k_sweep"]
    print(f"\nK sweep (default logging; DDPM refitted per K on the same encoders)\n"
          f"{'K':>5} | {'specific purified':>26} | {'gain over raw':>26}")
    for k, scores in sweep.items():
        print(f"{k:>5} | {_interval([s.specific['purified'] for s in scores]):>26} | "
              f"{_interval([s.gain for s in scores]):>26}")
    seconds = round(time.monotonic() - start, 1)
    print(f"\n{seconds} s")
    print(json.dumps({"env": args.env, "timesteps": args.timesteps, "eval_timesteps": args.eval_timesteps,
                      "seeds": seeds, "seconds": seconds,
                      **{label: [s.as_dict() for s in result["scores"]] for label, result in results.items()},
                      "k_sweep": {k: [s.as_dict() for s in scores] for k, scores in sweep.items()}}))
    return 0
