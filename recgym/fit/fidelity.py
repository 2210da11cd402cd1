"""The fidelity report: the fitted world replays the held-out sessions' own exposures.

Each held-out session's logged items are shown, in order, to the same user in the fitted world
(:func:`recgym.fit.core.replay`), and what the world logs is compared with what the platform
logged. Every row of the summary table has a distance and a pass/fail threshold
(:data:`THRESHOLDS`):

* ``rate:<signal>`` -- per-impression rate of each logged signal (the watch ratio: its mean per click),
  distance ``|sim - real| / real``, threshold ``max(0.2, 3 se / real)`` with ``se`` the standard error
  of the difference of the two means (binomial for a 0/1 signal: ``sqrt(p_r (1 - p_r) / n + p_s (1 -
  p_s) / n)``), so a rare signal passes only when its gap is within sampling noise, and fails when it
  is not; a signal with fewer than :data:`MIN_EVENTS` real events in the held-out sessions is "n/a:
  too few events (n=..)", neither pass nor fail;
* ``popularity_curve`` -- the Lorenz curves of clicks per item, max vertical gap;
* ``session_length`` -- Kaplan-Meier survival of session length up to the held-out sessions' 99th
  percentile, max gap (the replay is censored where the log's exposures end; it ends at ``max_turn``);
* ``return_gap`` -- two-sample KS statistic of the held-out return gaps (start to start) against the
  fitted world's: each held-out gap drawn again from the fitted return rate after the same earlier
  session (:func:`recgym.fit.model.return_rates`, the simulator's formula), plus that session's duration;
* ``click_auc`` -- AUC of the fitted click logit on the held-out clicks (distance ``1 - AUC``);
* ``watch_ndcg@10`` -- NDCG@10 of each user's held-out clicked items ranked by fitted satisfaction,
  graded by their watch ratio (distance: the shortfall against ranking by popularity, 0 if better);
* ``drift_lag_ratio`` -- the far/near ratio of the lag statistic of interest drift
  (:func:`recgym.fit.drift.drift_fidelity`) on the held-out clicks, real vs the fitted world's leave-free
  replay of the same users' rows in time order; distance ``|sim - real|``, threshold 3 standard errors of
  the difference (bootstrap over users, replay seeds); absent without enough held-out clicks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.stats

from recgym.fit.core import replay
from recgym.fit.drift import drift_fidelity
from recgym.fit.model import (
    length_cap,
    log_satisfaction,
    popularity_score,
    return_data,
    return_rates,
    session_items,
    session_table,
    survival_curves,
)
from recgym.fit.readers import Log
from recgym.metrics import gini
from recgym.params import SIGNALS
from recgym.world import World

THRESHOLDS = {"rate": 0.2, "popularity_curve": 0.1, "session_length": 0.1, "return_gap": 0.1, "click_auc": 0.4,
              "watch_ndcg@10": 0.05}
#: A rate row's threshold is at least this many standard errors of the real - simulated difference.
RATE_NOISE_Z = 3.0
#: A rate row needs this many real events (clicks for the watch ratio) to be judged; fewer: "n/a".
MIN_EVENTS = 10
#: Held-out sessions replayed (a uniform sample beyond this).
REPLAY_SESSIONS = 20_000
NDCG_DEPTH = 10


@dataclass(frozen=True)
class FidelityRow:
    """One comparison: the real and simulated statistic, their distance, its threshold and the verdict
    (``events``: the real events a rate row rests on; None for the other rows)."""

    name: str
    real: float
    simulated: float
    distance: float
    threshold: float
    events: int | None = None

    @property
    def judged(self) -> bool:
        """False for a rate row with fewer than :data:`MIN_EVENTS` real events (its verdict is "n/a")."""
        return self.events is None or self.events >= MIN_EVENTS

    @property
    def passed(self) -> bool:
        return self.judged and bool(self.distance <= self.threshold)

    @property
    def verdict(self) -> str:
        if not self.judged:
            return f"n/a: too few events (n={self.events})"
        return "pass" if self.passed else "FAIL"


@dataclass(frozen=True)
class FidelityReport:
    """The rows, the curves the plots draw (``curves``: name -> dict of arrays) and the size of the replay."""

    rows: list[FidelityRow]
    curves: dict[str, dict[str, np.ndarray]]
    sessions: int
    impressions: int

    def row(self, name: str) -> FidelityRow:
        return next(row for row in self.rows if row.name == name)

    def markdown(self, title: str) -> str:
        lines = [f"# Fidelity report: {title}", "",
                 f"{self.sessions:,} held-out sessions ({self.impressions:,} impressions) replayed in the fitted world.",
                 "", "| statistic | real | simulated | distance | threshold | pass |",
                 "|---|---|---|---|---|---|"]
        for r in self.rows:
            lines.append(f"| {r.name} | {r.real:.4g} | {r.simulated:.4g} | {r.distance:.3f} | {r.threshold:.3g} | "
                         f"{r.verdict} |")
        judged = [r for r in self.rows if r.judged]
        unjudged = len(self.rows) - len(judged)
        lines += ["", f"{sum(r.passed for r in judged)} of {len(judged)} statistics within their thresholds"
                  + (f" ({unjudged} n/a: fewer than {MIN_EVENTS} real events)." if unjudged else "."), ""]
        return "\n".join(lines)


def rate_row(name: str, real: np.ndarray, simulated: np.ndarray, binary: bool) -> FidelityRow:
    """The ``rate:<name>`` row of the real (n,) and simulated (m,) values of a signal (per impression,
    or the watch ratio per click): relative distance of the means, threshold ``max(THRESHOLDS["rate"],
    RATE_NOISE_Z * se / real)``; events: the real events (``binary``) or values."""
    real_mean = float(real.mean()) if real.size else 0.0
    sim_mean = float(simulated.mean()) if simulated.size else 0.0
    se = math.sqrt((float(real.var()) / real.size if real.size else 0.0)
                   + (float(simulated.var()) / simulated.size if simulated.size else 0.0))
    events = int(real.sum()) if binary else int(real.size)
    if real_mean > 0:
        distance, threshold = abs(sim_mean - real_mean) / real_mean, max(THRESHOLDS["rate"], RATE_NOISE_Z * se / real_mean)
    else:
        distance, threshold = (0.0 if sim_mean == 0 else math.inf), THRESHOLDS["rate"]
    return FidelityRow(f"rate:{name}", real_mean, sim_mean, distance, threshold, events)


def lorenz(counts: np.ndarray, points: int = 101) -> np.ndarray:
    """(points,) Lorenz curve of ``counts`` (share of the total held by the bottom p of items)."""
    ordered = np.sort(counts.astype(np.float64))
    cumulative = np.r_[0.0, np.cumsum(ordered)] / max(ordered.sum(), 1e-12)
    return np.interp(np.linspace(0, 1, points), np.linspace(0, 1, ordered.size + 1), cumulative)


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties averaged); NaN with one class only."""
    positives = labels.sum()
    negatives = labels.size - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = scipy.stats.rankdata(scores)
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def ndcg(users: np.ndarray, scores: np.ndarray, gains: np.ndarray, depth: int = NDCG_DEPTH) -> float:
    """Mean over users with >= 2 rows of NDCG@depth of their rows ranked by ``scores``, graded by ``gains``."""
    def dcg(key: np.ndarray) -> np.ndarray:
        order = np.lexsort((-key, users))
        rank = np.arange(order.size) - np.searchsorted(users[order], users[order])
        discount = np.where(rank < depth, 1.0 / np.log2(rank + 2.0), 0.0)
        return np.bincount(users[order], weights=gains[order] * discount, minlength=users.max() + 1)

    counts = np.bincount(users)
    ideal = dcg(gains)
    keep = (counts >= 2) & (ideal > 0)
    return float(np.mean(dcg(scores)[keep] / ideal[keep])) if keep.any() else float("nan")


def fidelity_report(log: Log, world: World, params: dict[str, Any], train: np.ndarray, seed: int = 0) -> FidelityReport:
    """Compare the held-out rows (``~train``) of ``log`` with their replay in the fitted ``world``."""
    rng = np.random.default_rng([seed, 5])
    held = np.flatnonzero(~train)
    horizon, _ = length_cap(log, held)
    table, lengths, users = session_table(log, held, horizon)
    if lengths.size == 0:
        raise ValueError(f"{log.source}: no held-out sessions to replay (holdout 0, or no timed rows)")
    if lengths.size > REPLAY_SESSIONS:
        pick = np.sort(rng.choice(lengths.size, REPLAY_SESSIONS, replace=False))
        table, lengths, users = table[pick], lengths[pick], users[pick]
    lengths = np.minimum(lengths, horizon)
    simulated, left = replay(world, params, session_items(log, table), users, seed)
    left = np.minimum(left, int(params["max_turn"]))  # the fitted world ends a session there
    shown = table >= 0
    real = log.signals[table[shown]]
    sim = simulated[shown]
    rows: list[FidelityRow] = []
    for name in log.logged:
        j = SIGNALS.index(name)
        if name == "watch_ratio":
            rows.append(rate_row(name, real[real[:, 0] == 1, j].astype(np.float64),
                                 sim[sim[:, 0] == 1, j].astype(np.float64), binary=False))
        else:
            rows.append(rate_row(name, real[:, j].astype(np.float64), sim[:, j].astype(np.float64), binary=True))
    items = log.item[table[shown]]
    real_clicks = np.bincount(items, weights=real[:, 0], minlength=log.n_items)
    sim_clicks = np.bincount(items, weights=sim[:, 0], minlength=log.n_items)
    exposed = np.bincount(items, minlength=log.n_items) > 0
    real_curve, sim_curve = lorenz(real_clicks[exposed]), lorenz(sim_clicks[exposed])
    rows.append(FidelityRow("popularity_curve", gini(real_clicks[exposed]), gini(sim_clicks[exposed]),
                            float(np.abs(real_curve - sim_curve).max()), THRESHOLDS["popularity_curve"]))
    real_survival, sim_survival = survival_curves(lengths, left, horizon)
    rows.append(FidelityRow("session_length", float(real_survival.sum() + 1), float(sim_survival.sum() + 1),
                            float(np.abs(real_survival - sim_survival).max()), THRESHOLDS["session_length"]))
    curves = {"popularity": {"real": real_curve, "simulated": sim_curve},
              "survival": {"real": real_survival, "simulated": sim_survival}}
    returns = return_data(log, world, float(params["watch_max"]))
    held_gap = ~train[returns["later"]]
    if held_gap.sum() >= 10:
        real_gaps = returns["seconds"][held_gap]
        rates = return_rates(world, params, log.user[returns["later"][held_gap]], returns["satisfaction"][held_gap])
        sim_gaps = (rng.standard_exponential(rates.size) / rates + returns["duration_days"][held_gap]) * 86_400.0
        rows.append(FidelityRow("return_gap", float(np.median(real_gaps) / 3600), float(np.median(sim_gaps) / 3600),
                                float(scipy.stats.ks_2samp(real_gaps, sim_gaps).statistic), THRESHOLDS["return_gap"]))
        curves["return_gap_h"] = {"real": np.sort(real_gaps) / 3600, "simulated": np.sort(sim_gaps) / 3600}
    held_users, held_items = log.user[held], log.item[held]
    log_sat = log_satisfaction(world, float(params["watch_max"]), held_users, held_items)
    pop = popularity_score(world.pop_prior, held_items)
    logit = params["click_base"] + params["click_slope"] * log_sat + params["conformity"] * pop
    clicks = log.signal("click")[held] == 1
    click_auc = auc(logit, clicks)
    if np.isfinite(click_auc):
        rows.append(FidelityRow("click_auc", click_auc, click_auc, 1.0 - click_auc, THRESHOLDS["click_auc"]))
    watched = clicks & (log.signal("watch_ratio")[held] > 0)
    if watched.sum() >= 2:
        gains = log.signal("watch_ratio")[held][watched].astype(np.float64)
        model = ndcg(held_users[watched], log_sat[watched], gains)
        baseline = ndcg(held_users[watched], pop[watched], gains)
        if np.isfinite(model) and np.isfinite(baseline):
            rows.append(FidelityRow("watch_ndcg@10", baseline, model, max(baseline - model, 0.0),
                                    THRESHOLDS["watch_ndcg@10"]))
    drift = drift_fidelity(log, world, params, train, seed, RATE_NOISE_Z)
    if drift is not None:
        real_ratio, sim_ratio, threshold = drift
        rows.append(FidelityRow("drift_lag_ratio", real_ratio, sim_ratio, abs(sim_ratio - real_ratio), threshold))
    return FidelityReport(rows, curves, int(lengths.size), int(shown.sum()))


def write_report(report: FidelityReport, out_dir: str | Path, title: str) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.png`` (rates, popularity curve, session survival, return gaps)
    into ``out_dir``, each through a temporary file renamed into place."""
    from recgym.plotting import agg_figure

    folder = Path(out_dir)
    markdown = folder / "report.md"
    temporary = folder / ".report.md.tmp"
    temporary.write_text(report.markdown(title) + "\n![fidelity plots](report.png)\n")
    temporary.replace(markdown)
    figure = agg_figure(figsize=(11, 8), layout="constrained")
    axes = figure.subplots(2, 2)
    rates = [r for r in report.rows if r.name.startswith("rate:")]
    positions = np.arange(len(rates))
    axes[0, 0].bar(positions - 0.2, [r.real for r in rates], 0.4, label="real (held out)")
    axes[0, 0].bar(positions + 0.2, [r.simulated for r in rates], 0.4, label="fitted world")
    axes[0, 0].set_xticks(positions, [r.name[5:] for r in rates], rotation=45)
    axes[0, 0].set_yscale("log")
    axes[0, 0].set_title("signal rates (watch ratio: mean per click)")
    for ax, key, title_, x_label in ((axes[0, 1], "popularity", "Lorenz curve of clicks per item", "share of items"),
                                     (axes[1, 0], "survival", "session length survival P(length > t)", "t")):
        curves = report.curves[key]
        x = np.linspace(0, 1, curves["real"].size) if key == "popularity" else np.arange(1, curves["real"].size + 1)
        ax.plot(x, curves["real"], label="real (held out)")
        ax.plot(x, curves["simulated"], label="fitted world", linestyle="--")
        ax.set_title(title_)
        ax.set_xlabel(x_label)
    gaps = report.curves.get("return_gap_h")
    if gaps is not None:
        for label, values, style in (("held out", gaps["real"], "-"), ("fitted world", gaps["simulated"], "--")):
            axes[1, 1].plot(values, np.linspace(0, 1, values.size), style, label=label)
        axes[1, 1].set_xscale("log")
        axes[1, 1].set_title("return gap CDF (hours)")
    else:
        axes[1, 1].set_title("return gaps: none in this log")
    for ax in axes.flat:
        ax.legend(fontsize=8)
    png = folder / "report.png"
    temporary_png = folder / ".report.png.tmp"
    figure.savefig(temporary_png, format="png", dpi=90)
    temporary_png.replace(png)
    return markdown, png
