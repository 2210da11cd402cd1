"""The reference Pareto front of true R_cum vs exposure Gini, and a method's distance to it (DPFR).

The front is the lambda-penalised oracle sweep (issue #16, the phenomena reference's "controls every
results table carries"): for each lambda of a grid, :class:`ExposurePenalisedOracle` recommends

    argmax_i  E[true reward of i now] - lambda * x_i / mean_j x_j

(``x`` the platform's exposure counts so far, shared by every session: 1 = the item's flat share),
avoiding leave-triggering items first, as :class:`~recgym.agents.baselines.OracleGreedy` does. lambda = 0
is the oracle; large lambda recommends the least-exposed allowed items (flat exposure). Each lambda is
run by :func:`recgym.evaluate` (the env's protocol, batched sessions, true rewards) over ``seeds``
evaluation seeds, giving a point (exposure Gini, true R_cum) with Student-t 95% intervals; the front is
the polyline through the non-dominated points.

Distances live in the normalised plane (fairness, utility) = (1 - Gini, R_cum / R_cum(oracle)):
:meth:`Front.distance` to the nearest point of the front (0 on it), :meth:`Front.dpfr` to the front's
reference point at ``alpha`` of its arc length from the oracle end (Rampisela et al., WWW 2025).
Formulas and measured fronts: ``docs/metrics.md``, ``docs/simulator.md``.

    recgym front --env recgym/KuaiRec-v1 [--json] [--plot PATH] [--policies random,popular]
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from recgym import metrics
from recgym.agents import get_agent
from recgym.agents.baselines import Obs, OracleGreedy
from recgym.envs import ENV_IDS
from recgym.evaluation import EvaluationResult, evaluate
from recgym.sizes import check_count, check_number

#: The lambda grid of the sweep (reward units per flat share of exposure).
DEFAULT_LAMBDAS = (0.0, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)


class ExposurePenalisedOracle(OracleGreedy):
    """The oracle minus ``penalty`` (lambda >= 0) times each item's exposure relative to the catalogue
    mean (the platform's counts so far; 0 before any recommendation). Leave-triggering items rank below
    every other allowed item whatever the penalty; ``penalty=0`` scores as :class:`OracleGreedy`."""

    def __init__(self, penalty: float) -> None:
        self.penalty = check_number("penalty", penalty)

    def scores(self, obs: Obs, mask: np.ndarray) -> np.ndarray:
        sim = self.env.sim
        total = sim.exposure.sum()
        relative = sim.exposure * (sim.exposure.size / total) if total > 0 else np.zeros_like(sim.exposure)
        leave_offset = 2.0 * sim.world.reward_max + self.penalty * relative.max()
        return sim.expected_reward() - self.penalty * relative - leave_offset * sim.leave_mask()


@dataclass(frozen=True)
class Front:
    """A reference front measured by :func:`reference_front`. Arrays have one entry per lambda (L,).

    env, options, episodes, seeds, num_envs: what each sweep point was evaluated on (``seeds``
        evaluation seeds from ``seed``); a method is compared on the same env, options and episodes.
    lambdas: (L,) ascending, lambdas[0] = 0 (the oracle).
    gini, r_cum: (L,) means over the seeds; gini_ci, r_cum_ci: (L,) Student-t 95% half-widths.
    on_front: (L,) bool, the non-dominated points (lower Gini, higher R_cum).
    """

    env: str
    options: dict[str, Any]
    episodes: int
    seeds: int
    seed: int
    num_envs: int
    lambdas: np.ndarray
    gini: np.ndarray
    gini_ci: np.ndarray
    r_cum: np.ndarray
    r_cum_ci: np.ndarray
    on_front: np.ndarray

    @property
    def oracle_r_cum(self) -> float:
        """R_cum of the oracle (lambda = 0): the utility axis' unit."""
        return float(self.r_cum[0])

    def normalise(self, gini: Any, r_cum: Any) -> np.ndarray:
        """(..., 2) points (fairness, utility) = (1 - gini, r_cum / oracle R_cum) of matching ``gini``, ``r_cum``."""
        return np.stack([1.0 - np.asarray(gini, np.float64), np.asarray(r_cum, np.float64) / self.oracle_r_cum], -1)

    @property
    def vertices(self) -> np.ndarray:
        """(K, 2) the front's points in the normalised plane, from the oracle end (least fair) to the fairest."""
        order = np.argsort(self.gini[self.on_front])[::-1]
        return self.normalise(self.gini[self.on_front][order], self.r_cum[self.on_front][order])

    def distance(self, gini: float, r_cum: float) -> float:
        """Euclidean distance in the normalised plane from (``gini``, ``r_cum``) to the nearest point of
        the front's polyline: 0 on the front, > 0 off it (on either side, see :meth:`dominated`)."""
        return float(metrics.polyline_distance(self.vertices, self.normalise(gini, r_cum)[None])[0])

    def reference_point(self, alpha: float = 0.5) -> np.ndarray:
        """(2,) normalised (fairness, utility) at ``alpha`` of the front's arc length from the oracle end:
        alpha = 0 the oracle, 1 the fairest front point (DPFR's reference point)."""
        return metrics.polyline_point_at(self.vertices, alpha)

    def dpfr(self, gini: float, r_cum: float, alpha: float = 0.5) -> float:
        """DPFR: Euclidean distance in the normalised plane from (``gini``, ``r_cum``) to
        :meth:`reference_point` (``alpha``); 0 only at that point."""
        return float(np.linalg.norm(self.normalise(gini, r_cum) - self.reference_point(alpha)))

    def dominated(self, gini: float, r_cum: float) -> bool:
        """Whether some point of the front (its polyline included) is at least as fair and as useful."""
        vertices = self.vertices  # fairness ascending, utility descending
        fairness, utility = self.normalise(gini, r_cum)
        if fairness > vertices[-1, 0]:
            return False
        return bool(utility <= np.interp(max(fairness, vertices[0, 0]), vertices[:, 0], vertices[:, 1]))

    def score(self, result: EvaluationResult, alpha: float = 0.5) -> dict[str, float | bool]:
        """``{"dpfr", "front_distance", "dominated"}`` of an evaluation on the front's env and options with
        the same number of episodes (exposure Gini depends on it); a ``ValueError`` otherwise."""
        episodes = len(result.episodes["R_cum"])
        if episodes != self.episodes:
            raise ValueError(f"result has {episodes} episodes, the front {self.episodes}: evaluate with "
                             f"episodes={self.episodes} (exposure Gini depends on the number of episodes)")
        gini, r_cum = result.summary["gini"], result.summary["R_cum"]
        return {"dpfr": self.dpfr(gini, r_cum, alpha), "front_distance": self.distance(gini, r_cum),
                "dominated": self.dominated(gini, r_cum)}

    @classmethod
    def from_dict(cls, stored: dict[str, Any]) -> Front:
        """The front of its :meth:`to_dict` (the reference point is derived, not read)."""
        points = stored["points"]

        def column(key: str, dtype: Any = np.float64) -> np.ndarray:
            return np.array([point[key] for point in points], dtype)

        return cls(stored["env"], stored["options"], stored["episodes"], stored["seeds"], stored["seed"],
                   stored["num_envs"], column("lambda"), column("gini"), column("gini_ci95"), column("R_cum"),
                   column("R_cum_ci95"), column("on_front", bool))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the settings, one record per lambda, and the reference point at alpha 0.5."""
        points = [{"lambda": float(lam), "gini": float(g), "gini_ci95": float(gc), "R_cum": float(r),
                   "R_cum_ci95": float(rc), "on_front": bool(on)}
                  for lam, g, gc, r, rc, on in zip(self.lambdas, self.gini, self.gini_ci, self.r_cum, self.r_cum_ci,
                                                   self.on_front)]
        fairness, utility = self.reference_point(0.5)
        return {"env": self.env, "options": self.options, "episodes": self.episodes, "seeds": self.seeds,
                "seed": self.seed, "num_envs": self.num_envs, "points": points,
                "reference_point": {"alpha": 0.5, "gini": 1.0 - fairness, "R_cum": utility * self.oracle_r_cum}}


def check_lambdas(lambdas: Sequence[float]) -> np.ndarray:
    """(L,) sorted distinct lambdas with 0 (the oracle) included, or a one-line ``ValueError``."""
    values = list(lambdas) if not isinstance(lambdas, (str, bytes)) else [lambdas]
    if not values:
        raise ValueError("lambdas is empty: give at least one finite number >= 0")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                or not 0 <= value < math.inf:
            raise ValueError(f"lambdas must be finite numbers >= 0, got {value!r}")
    return np.unique(np.r_[0.0, np.asarray(values, np.float64)])


def reference_front(env: str = "recgym/KuaiRec-v1", lambdas: Sequence[float] = DEFAULT_LAMBDAS,
                    episodes: int = 500, seeds: int = 3, seed: int = 0, num_envs: int = 64,
                    **options: Any) -> Front:
    """Run the lambda-penalised oracle sweep on ``env`` (a registered id; ``options`` are env options, e.g.
    ``popular_streak=3``): each lambda evaluated on ``episodes`` episodes for the evaluation seeds
    ``seed .. seed + seeds - 1`` (users drawn by the env; same seed, same front). Returns the :class:`Front`."""
    grid = check_lambdas(lambdas)
    if env not in ENV_IDS:
        raise ValueError(f"unknown env id {env!r}; valid ids: {', '.join(ENV_IDS)}")
    seeds = check_count("seeds", seeds)
    runs = np.array([[(result.summary["gini"], result.summary["R_cum"])
                      for result in (evaluate(ExposurePenalisedOracle(float(lam)), env, episodes=episodes, seed=s,
                                              num_envs=num_envs, **options) for s in range(seed, seed + seeds))]
                     for lam in grid])  # (L, seeds, 2)
    (gini, r_cum), (gini_ci, r_cum_ci) = (np.moveaxis(np.asarray(stat), -1, 0)
                                          for stat in metrics.t_ci95(np.moveaxis(runs, 1, 0)))
    return Front(env, dict(options), int(episodes), int(seeds), int(seed), int(num_envs), grid, gini, gini_ci,
                 r_cum, r_cum_ci, metrics.pareto_optimal(gini, r_cum))


def plot_front(front: Front, path: Any, methods: dict[str, tuple[float, float]] | None = None) -> None:
    """Save R_cum vs exposure equity (1 - Gini): every sweep point with its intervals, labelled by lambda,
    the front's polyline, the DPFR reference point, and ``methods`` ``{name: (gini, r_cum)}``."""
    from recgym.plotting import agg_figure

    fig = agg_figure(figsize=(6, 4.5))
    ax = fig.subplots()
    ax.errorbar(1 - front.gini, front.r_cum, xerr=front.gini_ci, yerr=front.r_cum_ci, fmt="o", color="0.5",
                label="penalised oracle (lambda)")
    for lam, g, r in zip(front.lambdas, front.gini, front.r_cum):
        ax.annotate(f"{lam:g}", (1 - g, r), fontsize=7, xytext=(3, 3), textcoords="offset points")
    vertices = front.vertices
    ax.plot(vertices[:, 0], vertices[:, 1] * front.oracle_r_cum, "k-", label="reference front")
    fairness, utility = front.reference_point(0.5)
    ax.plot([fairness], [utility * front.oracle_r_cum], "k*", markersize=10, label="DPFR reference (alpha 0.5)")
    for name, (g, r) in (methods or {}).items():
        ax.scatter([1 - g], [r], label=name)
    ax.set_xlabel("exposure equity (1 - Gini)")
    ax.set_ylabel("true R_cum")
    ax.set_title(f"{front.env}: {front.episodes} episodes x {front.seeds} seeds", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def format_table(front: Front, scores: dict[str, dict[str, Any]]) -> str:
    """Markdown: one row per lambda, then one per method with its DPFR and distance to the front."""
    lines = [f"{front.env}: reference front ({front.episodes} episodes x {front.seeds} seeds, "
             "Student-t 95% intervals)",
             "| lambda | gini [95% CI] | R_cum [95% CI] | on front |", "|---|---|---|---|"]
    for lam, g, gc, r, rc, on in zip(front.lambdas, front.gini, front.gini_ci, front.r_cum, front.r_cum_ci,
                                     front.on_front):
        lines.append(f"| {lam:g} | {g:.3f} [{g - gc:.3f}, {g + gc:.3f}] | {r:.2f} [{r - rc:.2f}, {r + rc:.2f}] | "
                     f"{'yes' if on else 'no'} |")
    fairness, utility = front.reference_point(0.5)
    lines.append(f"DPFR reference point (alpha 0.5): gini {1 - fairness:.3f}, R_cum {utility * front.oracle_r_cum:.2f}")
    if scores:
        lines += ["| policy | gini | R_cum | DPFR | distance to front | dominated |", "|---|---|---|---|---|---|"]
        lines += [f"| {name} | {s['gini']:.3f} | {s['R_cum']:.2f} | {s['dpfr']:.3f} | {s['front_distance']:.3f} | "
                  f"{'yes' if s['dominated'] else 'no'} |" for name, s in scores.items()]
    return "\n".join(lines)


# ------------------------------------------------------------------ command line (``recgym front``)
def add_arguments(sub: argparse.ArgumentParser, option: Callable[[str], tuple[str, Any]], count: Callable) -> None:
    """The ``recgym front`` arguments (``option`` parses KEY=VALUE, ``count(low)`` an int >= low)."""
    sub.add_argument("--env", default="recgym/KuaiRec-v1", help=f"env id ({', '.join(ENV_IDS)})")
    sub.add_argument("--lambdas", default=",".join(f"{lam:g}" for lam in DEFAULT_LAMBDAS),
                     help="comma-separated penalties >= 0 (0, the oracle, is always run)")
    sub.add_argument("--episodes", type=count(1), default=500, help="episodes per evaluation")
    sub.add_argument("--seeds", type=count(1), default=3, help="evaluation seeds per lambda (t-intervals)")
    sub.add_argument("--seed", type=count(0), default=0, help="first evaluation seed")
    sub.add_argument("--num-envs", type=count(1), default=64, help="sessions stepped at once")
    sub.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", type=option,
                     help="env option (a SimParams field), e.g. --option popular_streak=3; repeatable")
    sub.add_argument("--policies", default="", help="comma-separated ready-to-run agents to score (DPFR), "
                                                    "evaluated on the first seed, e.g. random,popular")
    sub.add_argument("--plot", default=None, metavar="PATH", help="save the front (and the policies) as an image")
    sub.add_argument("--json", action="store_true", help="print one JSON object (the front, and the policies' scores)")
    sub.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        lambdas = [float(text) for text in args.lambdas.split(",") if text.strip()]
    except ValueError:
        raise ValueError(f"--lambdas expects comma-separated numbers >= 0, got {args.lambdas!r}") from None
    names = [name.strip() for name in args.policies.split(",") if name.strip()]
    for name in names:
        if get_agent(name).trainable:
            raise ValueError(f"--policies takes ready-to-run agents (no training), got {name!r}")
    options = dict(args.option)
    front = reference_front(args.env, lambdas, args.episodes, args.seeds, args.seed, args.num_envs, **options)
    scores = {}
    for name in names:
        result = evaluate(name, args.env, episodes=args.episodes, seed=args.seed, num_envs=args.num_envs, **options)
        scores[name] = {"gini": result.summary["gini"], "R_cum": result.summary["R_cum"], **front.score(result)}
    if args.plot:
        plot_front(front, args.plot, {name: (s["gini"], s["R_cum"]) for name, s in scores.items()})
    print(json.dumps({**front.to_dict(), "policies": scores}) if args.json else format_table(front, scores))
    return 0
