"""The phenomena rows of issue #16 (definitions: ``docs/design-v1.md``, the phenomena reference),
measured on the compiled kernels of a v1 env: each row at the default settings and under its
control (the mechanism off), with 95% intervals.

Oracles read the kernels' tables: :meth:`Simulator.expected_reward` (the satisfaction),
:meth:`Simulator.expected_observed` (the expected logged reward), :meth:`Simulator.familiarity`
and :meth:`Simulator.leave_mask`. Episode rows run the fairness protocol (NX_0, popular streak 3,
no category window, max_turn 30) with popularity frozen during the episodes (one user at a time);
``loop_gini_rise`` runs a population whose popularity counts the logged clicks.

    recgym phenomena --env recgym/KuaiRec-v1 [--json] [--users N] [--seed S]
    recgym phenomena --list
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import norm

from recgym import dynamics
from recgym.envs.core import ENV_IDS
from recgym.metrics import gini, t_ci95
from recgym.params import V1_DEFAULTS, SimParams
from recgym.simulator import Simulator, StepResult
from recgym.users import acquired_tastes
from recgym.world import World
from recgym.worlds import resolve_world


@dataclass(frozen=True)
class Row:
    definition: str
    goal: str
    control: str


ROWS = {
    "long_tail_oracle_loss": Row(
        "1 - V(oracle restricted to the bottom 80% of items by popularity) / V(oracle); V = mean true return "
        "per episode, oracle = greedy on the expected true reward", ">= 0.10; control ~0",
        "popularity_quality=0 (popularity independent of quality)"),
    "logged_oracle_regret": Row(
        "1 - E[true reward of argmax E[logged reward]] / E[true reward of argmax E[true reward]] over the "
        "states the oracle visits", ">= 0.10; control <= 0.01",
        "conformity=conformity_like=familiarity_click=familiarity_watch=0"),
    "state_popularity_bias": Row(
        "E[cos(s_naive, d_pop)] - E[cos(u, d_pop)]: s_naive the logged-reward-weighted mean embedding after 10 "
        "uniform-random steps, u the true interest, d_pop = sum_i (log pop_i - mean) e_i",
        "> 0, interval excludes 0; control: interval includes 0", "conformity and familiarity pulls 0"),
    "loop_gini_rise": Row(
        "population of 64 sessions x 200 platform steps, popularity = prior + logged clicks: Gini rise under the "
        "logged-greedy oracle minus under the true-greedy oracle (t-interval over seeds)",
        "> 0, interval excludes 0", "conformity and familiarity pulls 0"),
    "familiarity_logged_bias": Row(
        "E[logged watch ratio - satisfaction | familiar creator] - E[... | unfamiliar], every item scored over "
        "the states of 10 uniform-random steps", "> 0; control 0", "familiarity_click=familiarity_watch=0"),
    "nonpersonalised_share": Row(
        "V(best fixed ranking: population-mean satisfaction or popularity) / V(oracle)", "<= 0.70 (a guard)",
        "none"),
    "novelty_ignore_regret": Row(
        "1 - V(oracle assuming the population-mean novelty propensity and no session mode) / V(oracle)",
        ">= 0.10; control 0", "novelty_weight=0 (novelty seeking off)"),
    "novelty_identifiability_30": Row(
        "corr(estimated, true static propensity): posterior mean over a 21-point propensity grid (uniform prior) "
        "of the click and watch-ratio likelihood of 30 uniform-random steps, the session mode marginalised by a "
        "forward filter; the observer knows every parameter and latent state but the propensity and the mode",
        ">= 0.5", "novelty_weight=0 (the estimate is then the same for every user: reported as 0)"),
    "time_agnostic_regret": Row(
        "1 - V(oracle that ignores the clock: no daily / weekly cycles, no item hour) / V(oracle)", ">= 0.10",
        "daily_cycle=weekly_cycle=0 (what remains is v0's item-level time_of_day)"),
}

# Users over time (issue #17, recgym.users): lifetime episodes of the fairness protocol's sessions.
#: The guided policy of ``guidance_lifetime_gain``: how many sessions it steers toward the long tail, and
#: how hard (a long-tail item's true-greedy score is multiplied by 1 + GUIDANCE).
GUIDED_SESSIONS, GUIDANCE = 8, 1.0
ROWS.update({
    "guidance_lifetime_gain": Row(
        f"lifetime V(guided: steers toward the long tail, for the first {GUIDED_SESSIONS} sessions the true-greedy "
        f"score x {1 + GUIDANCE:g} on long-tail items (outside the top popular_fraction by prior popularity); then "
        "true-greedy) / lifetime V(myopic oracle: true-greedy) - 1, 20 sessions of max_turn 10 per user",
        ">= 0.05; control <= 0", "taste_weight=0 (acquired taste off)"),
    "retention_ratio": Row(
        "sessions per user within 14 days under the myopic oracle / under uniform-random unseen items "
        "(lifetime episodes of max_turn 10 sessions)", ">= 1.3; control ~1",
        "retention_weight=0 (the return gap ignores satisfaction)"),
})

#: The lifetime rows' sessions (short, so 20 sessions x the oracle's tables stay quick).
LIFETIME_PROTOCOL = dict(max_turn=10, episode="lifetime")
#: ``retention_ratio``'s horizon in days.
RETENTION_DAYS = 14.0

#: The fairness protocol of the episode rows (popularity frozen: one user at a time).
PROTOCOL = dict(mode="NX_0", leave_window=0, popular_streak=3, max_turn=30, popularity_feedback=0.0)
PULLS_OFF = dict(conformity=0.0, conformity_like=0.0, familiarity_click=0.0, familiarity_watch=0.0)
BOOTSTRAP = 2000


# ------------------------------------------------------------------ statistics
def ratio_ci(num: np.ndarray, den: np.ndarray, seed: int = 0) -> tuple[float, float, float]:
    """(point, lo, hi) of sum(num) / sum(den), paired bootstrap over users."""
    idx = np.random.default_rng(seed).integers(0, len(num), size=(BOOTSTRAP, len(num)))
    boot = num[idx].sum(axis=1) / den[idx].sum(axis=1)
    return float(num.sum() / den.sum()), float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))


def one_minus(t: tuple[float, float, float]) -> tuple[float, float, float]:
    return 1 - t[0], 1 - t[2], 1 - t[1]


def mean_ci(x: np.ndarray) -> tuple[float, float, float]:
    """(mean, lo, hi) of the (n,) samples ``x``: the Student-t 95% interval (loop_gini_rise has 3-5 seeds)."""
    mean, half = t_ci95(x)
    return float(mean), float(mean - half), float(mean + half)


# ------------------------------------------------------------------ policies on the kernels' tables
def choose(sim: Simulator, scores: np.ndarray, avoid_leave: bool = True) -> np.ndarray:
    """Masked argmax per session: unseen items (NX_0) and, where one exists, no leave-triggering item."""
    allowed = sim.action_mask()
    masked = np.where(allowed, scores, -np.inf)
    if not avoid_leave:
        return masked.argmax(axis=1)
    safe = np.where(sim.leave_mask(), -np.inf, masked)
    pick = safe.argmax(axis=1)
    stuck = ~np.isfinite(safe[np.arange(len(pick)), pick])
    pick[stuck] = masked[stuck].argmax(axis=1)
    return pick


Policy = Callable[[Simulator], np.ndarray]


def run_episodes(world: World, params: SimParams, users: np.ndarray, seed: int, policy: Policy,
                 on_state: Callable[[Simulator, np.ndarray], None] | None = None) -> np.ndarray:
    """One episode per user (all in one batch); (U,) true returns. ``on_state(sim, alive)`` sees each state."""
    sim = Simulator(world, params, len(users), seed=seed)
    sim.reset(seed, users)
    returns = np.zeros(len(users))
    alive = np.ones(len(users), bool)
    for _ in range(params.max_turn):
        if not alive.any():
            break
        if on_state is not None:
            on_state(sim, alive)
        result = sim.step(policy(sim), active=alive)
        returns += result.true_reward
        alive &= ~(result.terminated | result.truncated)
    return returns


def oracle(sim: Simulator) -> np.ndarray:
    return choose(sim, sim.expected_reward())


def fixed(scores: np.ndarray) -> Policy:
    return lambda sim: choose(sim, np.broadcast_to(scores, (sim.n_sessions, len(scores))))


def population_mean_satisfaction(world: World, params: SimParams, block: int = 2048) -> np.ndarray:
    """(I,) mean over all users of a first session's satisfaction without session terms (base x quality x
    the acquired tastes' valley ``1 - taste_valley``, no taste acquired yet): the best fixed ranking's scores."""
    unacquired = 1 - params.taste_valley * acquired_tastes(world, params.popular_fraction)
    quality = np.exp(world.quality_weight * world.item_quality - world.quality_weight ** 2 / 2) * unacquired
    total = np.zeros(world.n_items)
    for start in range(0, world.n_users, block):
        logits = world.affinity_scale * (world.user_interest[start:start + block] @ world.item_emb.T) + world.affinity_bias
        total += (world.reward_max / (1 + np.exp(-logits))).sum(axis=0)
    return total / world.n_users * quality


# ------------------------------------------------------------------ rows
def long_tail_and_share(world: World, params: SimParams, users: np.ndarray, seed: int) -> tuple:
    """(long-tail loss, non-personalised share) at ``params``, each (point, lo, hi)."""
    v_oracle = run_episodes(world, params, users, seed, oracle)
    tail = ~world.popular_items(0.2)
    v_tail = run_episodes(world, params, users, seed, lambda sim: choose(sim, np.where(tail, sim.expected_reward(), -1.0)))
    shares = [ratio_ci(run_episodes(world, params, users, seed, fixed(scores)), v_oracle)
              for scores in (population_mean_satisfaction(world, params), world.pop_prior.astype(float))]
    return one_minus(ratio_ci(v_tail, v_oracle)), max(shares)


def logged_oracle_regret(world: World, params: SimParams, users: np.ndarray, seed: int) -> dict[str, tuple]:
    """The regret at ``params`` and under the pulls-off control, over the same oracle-visited states."""
    control_knobs = dynamics.knobs(dataclasses.replace(params, **PULLS_OFF), v1=True)
    num = {"default": np.zeros(len(users)), "control": np.zeros(len(users))}
    den = np.zeros(len(users))
    rows = np.arange(len(users))

    def visit(sim: Simulator, alive: np.ndarray) -> None:
        truth = sim.expected_reward()
        allowed = sim.action_mask() & ~sim.leave_mask()
        allowed[~allowed.any(axis=1)] = True

        def value_of_argmax(table):
            return truth[rows, np.where(allowed, table, -np.inf).argmax(axis=1)]

        best = value_of_argmax(truth)
        den[alive] += best[alive]
        control = np.zeros_like(truth)
        dynamics.expected_observed_table(control_knobs, *sim._kernel_args[1:], control)
        for key, table in (("default", sim.expected_observed()), ("control", control)):
            num[key][alive] += value_of_argmax(table)[alive]

    run_episodes(world, params, users, seed, oracle, visit)
    return {key: one_minus(ratio_ci(value, den)) for key, value in num.items()}


def random_walk(world: World, params: SimParams, users: np.ndarray, seed: int, steps: int,
                on_state: Callable[[Simulator, np.ndarray], None] | None = None,
                on_step: Callable[[Simulator, np.ndarray, StepResult], None] | None = None) -> Simulator:
    """``steps`` uniform-random unseen items per user, leave rules off."""
    walk = dataclasses.replace(params, leave_window=0, popular_streak=0, patience=0.0, max_turn=steps)
    sim = Simulator(world, walk, len(users), seed=seed)
    sim.reset(seed, users)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        if on_state is not None:
            on_state(sim, np.ones(len(users), bool))
        items = choose(sim, rng.random((len(users), world.n_items)), avoid_leave=False)
        result = sim.step(items)
        if on_step is not None:
            on_step(sim, items, result)
    return sim


def state_popularity_bias(world: World, params: SimParams, users: np.ndarray, seed: int) -> tuple:
    weighted = np.zeros((len(users), world.embed_dim))

    def record(sim, items, result):
        weighted[:] += np.maximum(result.observed_feedback, 0)[:, None] * world.item_emb[items]

    sim = random_walk(world, params, users, seed, 10, on_step=record)
    ok = np.linalg.norm(weighted, axis=1) > 0
    log_pop = np.log(world.pop_prior)
    direction = ((log_pop - log_pop.mean())[:, None] * world.item_emb).sum(axis=0)
    direction /= np.linalg.norm(direction)

    def cos(x):
        return x @ direction / np.linalg.norm(x, axis=1)

    return mean_ci(cos(weighted[ok]) - cos(sim.interest[ok].astype(np.float64)))


def familiarity_logged_bias(world: World, params: SimParams, users: np.ndarray, seed: int) -> tuple:
    n = len(users)
    sums = {key: np.zeros(n) for key in ("familiar", "n_familiar", "other", "n_other")}

    def visit(sim, alive):
        sat = sim.expected_reward().astype(np.float64)
        creator, fam = sim.familiarity()
        diff = np.minimum(sat * np.exp(params.familiarity_watch * fam), params.watch_max) - sat
        allowed = sim.action_mask()
        for key, group in (("familiar", creator & allowed), ("other", ~creator & allowed)):
            sums[key] += np.where(group, diff, 0).sum(axis=1)
            sums["n_" + key] += group.sum(axis=1)

    random_walk(world, params, users, seed, 10, on_state=visit)
    idx = np.random.default_rng(seed).integers(0, n, size=(BOOTSTRAP, n))

    def stat(i):
        return (sums["familiar"][i].sum(-1) / sums["n_familiar"][i].sum(-1)
                - sums["other"][i].sum(-1) / sums["n_other"][i].sum(-1))

    boot = stat(idx)
    return float(stat(np.arange(n))), float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))


def loop_gini_rise(world: World, params: SimParams, seed: int, slots: int = 64, platform_steps: int = 200) -> float:
    """Gini rise of popularity under logged-greedy minus under true-greedy, one population seed."""
    loop = dataclasses.replace(params, popularity_feedback=1.0)
    rises = []
    for logged in (True, False):
        sim = Simulator(world, loop, slots, seed=seed)
        sim.reset(seed)
        start = gini(sim.popularity)
        for _ in range(platform_steps):
            result = sim.step(choose(sim, sim.expected_observed() if logged else sim.expected_reward()))
            sim.reset_sessions(np.flatnonzero(result.terminated | result.truncated))
        rises.append(gini(sim.popularity) - start)
    return rises[0] - rises[1]


# ------------------------------------------------------------------ novelty and time (issue #17)
def table_under(sim: Simulator, params: SimParams, **catalogue_changes: np.ndarray) -> np.ndarray:
    """(B, I) expected true reward of ``sim``'s sessions now, computed under ``params`` and the
    catalogue fields ``catalogue_changes``: what an oracle holding those beliefs maximises."""
    table = np.zeros((sim.n_sessions, sim.world.n_items), np.float32)
    catalogue = sim.catalogue._replace(**catalogue_changes)
    dynamics.expected_reward_table(dynamics.knobs(params, v1=True), tuple(catalogue), sim._kernel_args[2], table)
    return table


def ignorance_regret(world: World, params: SimParams, users: np.ndarray, seed: int, beliefs: SimParams,
                     **catalogue_changes: np.ndarray) -> tuple:
    """1 - V(oracle greedy on ``table_under(beliefs, catalogue_changes)``) / V(oracle), (point, lo, hi)."""
    v_oracle = run_episodes(world, params, users, seed, oracle)
    v_ignorant = run_episodes(world, params, users, seed,
                              lambda sim: choose(sim, table_under(sim, beliefs, **catalogue_changes)))
    return one_minus(ratio_ci(v_ignorant, v_oracle))


def novelty_ignore_regret(world: World, params: SimParams, users: np.ndarray, seed: int) -> tuple:
    """The oracle that believes every user has the population-mean propensity and no session mode."""
    mean = np.full(world.n_users, world.user_novelty.mean(), np.float32)
    return ignorance_regret(world, params, users, seed, dataclasses.replace(params, novelty_mode_shift=0.0),
                            user_novelty=mean)


def time_agnostic_regret(world: World, params: SimParams, users: np.ndarray, seed: int) -> tuple:
    """The oracle that ignores the clock: no cycles and no item hour in its utility."""
    return ignorance_regret(world, params, users, seed,
                            dataclasses.replace(params, daily_cycle=0.0, weekly_cycle=0.0, time_of_day=0.0))


#: The propensity hypotheses of ``novelty_identifiability_30``'s observer.
PROPENSITY_GRID = np.linspace(0.0, 1.0, 21)


def novelty_identifiability(world: World, params: SimParams, users: np.ndarray, seed: int, steps: int = 30,
                            grid: np.ndarray = PROPENSITY_GRID) -> tuple:
    """corr(posterior-mean propensity, true propensity) after ``steps`` uniform-random items per user.

    Per step and hypothesis (g, mode) the consumed item's satisfaction is rebuilt from the logit without
    novelty (the kernels' table with novelty off, inverted) plus ``novelty_weight (2 rho - 1) n_item``;
    the likelihood is that of the logged click and, when clicked, of the log-normal watch ratio (capped:
    censored at ``watch_max``). A forward filter over the two modes (start P(explore) = g, switches
    ``novelty_switch * g`` and ``novelty_switch * (1 - g)``) marginalises the mode.
    """
    p = params
    rows = np.arange(len(users))
    novelty_off = dataclasses.replace(p, novelty_weight=0.0)
    shifts = np.clip(grid[:, None] + np.array([p.novelty_mode_shift, -p.novelty_mode_shift])[None, :], 0, 1)  # (G, 2)
    transition = np.empty((len(grid), 2, 2))  # [g, from, to], mode 0 explore, 1 exploit
    transition[:, 0, 1] = p.novelty_switch * (1 - grid)
    transition[:, 0, 0] = 1 - transition[:, 0, 1]
    transition[:, 1, 0] = p.novelty_switch * grid
    transition[:, 1, 1] = 1 - transition[:, 1, 0]
    log_alpha = np.log(np.stack([grid, 1 - grid], axis=1) + 1e-300)[None].repeat(len(users), axis=0)  # (U, G, 2)
    quality = np.exp(world.quality_weight * world.item_quality.astype(np.float64) - world.quality_weight ** 2 / 2)
    before: dict[str, np.ndarray] = {}

    def observe_state(sim: Simulator, alive: np.ndarray) -> None:
        before["sat0"] = table_under(sim, novelty_off)
        before["fam"] = sim.familiarity()[1]
        before["categories"] = sim.sessions.consumed_categories[sim.user].copy()
        before["creators"] = sim.sessions.consumed_creators[sim.user].copy()

    def update(sim: Simulator, items: np.ndarray, result: StepResult) -> None:
        nonlocal log_alpha
        sat0 = before["sat0"][rows, items].astype(np.float64)
        scale = world.reward_max * quality[items]
        share = np.clip(sat0 / scale, 1e-9, 1 - 1e-9)
        logit0 = np.log(share) - np.log1p(-share)
        cats = world.item_cats[items]
        unconsumed = (cats & (before["categories"] == 0)).sum(axis=1)
        creators = world.item_creator[items]
        creator_new = (before["creators"][rows, creators >> 3] >> (creators & 7)) & 1 == 0
        novelty = (unconsumed + creator_new) / (cats.sum(axis=1) + 1)
        logit = logit0[:, None, None] + p.novelty_weight * (2 * shifts[None] - 1) * novelty[:, None, None]
        sat = np.minimum(world.reward_max / (1 + np.exp(-logit)) * quality[items][:, None, None], p.watch_max)
        log_sat = np.log(np.maximum(sat, 1e-6))
        fam = before["fam"][rows, items].astype(np.float64)[:, None, None]
        popularity = sim.world.pop_prior + sim.clicks
        pop = (np.log1p(popularity[items]) / np.log1p(popularity.max()))[:, None, None]
        click = 1 / (1 + np.exp(-(p.click_base + p.click_slope * log_sat + p.conformity * pop + p.familiarity_click * fam)))
        clicked = (result.signals[0] > 0)[:, None, None]
        log_like = np.where(clicked, np.log(click + 1e-300), np.log1p(-click + 1e-12))
        s = p.watch_noise
        if s > 0:
            mu = log_sat + p.familiarity_watch * fam - s * s / 2
            watch = result.signals[1].astype(np.float64)[:, None, None]
            capped = watch >= p.watch_max * (1 - 1e-6)
            z = (np.log(np.maximum(watch, 1e-9)) - mu) / s
            log_watch = np.where(capped, norm.logsf((np.log(p.watch_max) - mu) / s), -0.5 * z * z)
            log_like = log_like + np.where(clicked, log_watch, 0.0)
        log_alpha = log_alpha + log_like
        top = log_alpha.max(axis=2, keepdims=True)
        log_alpha = np.log(np.einsum("ugf,gft->ugt", np.exp(log_alpha - top), transition) + 1e-300) + top

    random_walk(world, p, users, seed, steps, on_state=observe_state, on_step=update)
    log_post = np.logaddexp(log_alpha[:, :, 0], log_alpha[:, :, 1])
    post = np.exp(log_post - log_post.max(axis=1, keepdims=True))
    estimate = post @ grid / post.sum(axis=1)
    return corr_ci(estimate, world.user_novelty[users].astype(np.float64), seed)


def corr_ci(x: np.ndarray, y: np.ndarray, seed: int = 0) -> tuple[float, float, float]:
    """(point, lo, hi) Pearson correlation with a bootstrap over users; 0 when ``x`` is constant."""
    if np.ptp(x) < 1e-12:
        return 0.0, 0.0, 0.0
    idx = np.random.default_rng(seed).integers(0, len(x), size=(BOOTSTRAP, len(x)))
    xs, ys = x[idx] - x[idx].mean(axis=1, keepdims=True), y[idx] - y[idx].mean(axis=1, keepdims=True)
    boot = (xs * ys).sum(axis=1) / np.sqrt((xs * xs).sum(axis=1) * (ys * ys).sum(axis=1))
    return float(np.corrcoef(x, y)[0, 1]), float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))


def run_lifetimes(world: World, params: SimParams, users: np.ndarray, seed: int, policy: Policy) -> tuple:
    """One lifetime episode per user (all in one batch): ((U,) true lifetime returns, (U,) sessions)."""
    sim = Simulator(world, params, len(users), seed=seed)
    sim.reset(seed, users)
    returns = np.zeros(len(users))
    alive = np.ones(len(users), bool)
    while alive.any():
        result = sim.step(policy(sim), active=alive)
        returns += result.true_reward
        alive &= ~(result.terminated | result.truncated)
    return returns, sim.users.session_count[sim.user].astype(np.float64)


def guided(sim: Simulator) -> np.ndarray:
    """Steers toward the long tail: the true-greedy score, in the user's first ``GUIDED_SESSIONS``
    sessions multiplied by 1 + GUIDANCE on long-tail items (not in the top ``popular_fraction`` by prior
    popularity); then true-greedy."""
    scores = sim.expected_reward()
    early = sim.session_index < GUIDED_SESSIONS
    scores[early] *= 1 + GUIDANCE * ~sim.popular
    return choose(sim, scores)


def uniform_random(seed: int) -> Policy:
    """Uniform-random unseen items (a fresh generator per run, so both runs of a row see the same draws)."""
    rng = np.random.default_rng([seed, 17])
    return lambda sim: choose(sim, rng.random((sim.n_sessions, sim.world.n_items)), avoid_leave=False)


def guidance_lifetime_gain(world: World, params: SimParams, users: np.ndarray, seed: int) -> tuple:
    lifetime = dataclasses.replace(params, **LIFETIME_PROTOCOL, lifetime_sessions=20, lifetime_days=0.0)
    v_guided, _ = run_lifetimes(world, lifetime, users, seed, guided)
    v_oracle, _ = run_lifetimes(world, lifetime, users, seed, oracle)
    point, lo, hi = ratio_ci(v_guided, v_oracle, seed)
    return point - 1, lo - 1, hi - 1


def retention_ratio(world: World, params: SimParams, users: np.ndarray, seed: int) -> tuple:
    horizon = dataclasses.replace(params, **LIFETIME_PROTOCOL, lifetime_sessions=100_000, lifetime_days=RETENTION_DAYS)
    _, sessions_oracle = run_lifetimes(world, horizon, users, seed, oracle)
    _, sessions_random = run_lifetimes(world, horizon, users, seed, uniform_random(seed))
    return ratio_ci(sessions_oracle, sessions_random, seed)


# ------------------------------------------------------------------ the table
def measure(env_id: str, n_users: int = 400, seed: int = 0, loop_seeds: int = 5, state_users: int = 1411,
            world_options: dict | None = None, lifetime_users: int = 100, **options) -> dict[str, dict]:
    """Every row of :data:`ROWS` on ``env_id`` (a v1 id): ``{row: {"default", "control", "ci95",
    "control_ci95", "goal", "control_is"}}``. ``n_users`` users (drawn with ``seed``) for the episode
    rows, the first ``state_users`` users x 2 episodes for the state row, ``loop_seeds`` population
    seeds, the first ``lifetime_users`` of the episode users for the lifetime rows; ``world_options``
    are v1 world options, ``options`` env options (SimParams fields)."""
    if env_id not in ENV_IDS or not ENV_IDS[env_id].endswith("-v1"):
        v1_ids = [i for i, w in ENV_IDS.items() if w.endswith("-v1")]
        raise ValueError(f"phenomena are measured on the v1 ids ({', '.join(v1_ids)}), got {env_id!r}")
    name = ENV_IDS[env_id]
    world_options = dict(world_options or {})
    world = resolve_world(name, seed=seed, **world_options)
    params = SimParams.from_kwargs(**{**V1_DEFAULTS, **PROTOCOL, **options})
    pulls_off = dataclasses.replace(params, **PULLS_OFF)
    users = np.random.default_rng(seed).choice(world.n_users, min(n_users, world.n_users), replace=False)
    state_set = np.tile(np.arange(min(state_users, world.n_users)), 2)
    results: dict[str, tuple] = {}
    loss, share = long_tail_and_share(world, params, users, seed)
    control_world = resolve_world(name, seed=seed, **{**world_options, "popularity_quality": 0.0})
    loss_control, _ = long_tail_and_share(control_world, params, users, seed)
    results["long_tail_oracle_loss"] = (loss, loss_control)
    regret = logged_oracle_regret(world, params, users, seed)
    results["logged_oracle_regret"] = (regret["default"], regret["control"])
    results["state_popularity_bias"] = (state_popularity_bias(world, params, state_set, seed),
                                        state_popularity_bias(world, pulls_off, state_set, seed))
    results["loop_gini_rise"] = tuple(mean_ci([loop_gini_rise(world, p, s) for s in range(loop_seeds)])
                                      for p in (params, pulls_off))
    familiarity_off = dataclasses.replace(params, familiarity_click=0.0, familiarity_watch=0.0)
    results["familiarity_logged_bias"] = (familiarity_logged_bias(world, params, users, seed),
                                          familiarity_logged_bias(world, familiarity_off, users, seed))
    results["nonpersonalised_share"] = (share, None)
    lifetime_set = users[:lifetime_users]
    results["guidance_lifetime_gain"] = tuple(guidance_lifetime_gain(world, p, lifetime_set, seed) for p in (
        params, dataclasses.replace(params, taste_weight=0.0)))
    results["retention_ratio"] = tuple(retention_ratio(world, p, lifetime_set, seed) for p in (
        params, dataclasses.replace(params, retention_weight=0.0)))
    novelty_off = dataclasses.replace(params, novelty_weight=0.0)
    results["novelty_ignore_regret"] = (novelty_ignore_regret(world, params, users, seed),
                                        novelty_ignore_regret(world, novelty_off, users, seed))
    results["novelty_identifiability_30"] = (novelty_identifiability(world, params, users, seed),
                                             novelty_identifiability(world, novelty_off, users, seed))
    cycles_off = dataclasses.replace(params, daily_cycle=0.0, weekly_cycle=0.0)
    results["time_agnostic_regret"] = (time_agnostic_regret(world, params, users, seed),
                                       time_agnostic_regret(world, cycles_off, users, seed))
    return {
        row: {"default": default[0], "control": None if control is None else control[0], "ci95": [default[1], default[2]],
              "control_ci95": None if control is None else [control[1], control[2]], "goal": ROWS[row].goal,
              "control_is": ROWS[row].control}
        for row, (default, control) in ((row, results[row]) for row in ROWS)
    }


def format_table(env_id: str, rows: dict[str, dict]) -> str:
    lines = [f"{env_id}: phenomena (default and control, 95% intervals)",
             "| row | default [95% CI] | control [95% CI] | goal | control is |", "|---|---|---|---|---|"]
    for name, r in rows.items():
        control = "-" if r["control"] is None else f"{r['control']:.4f} [{r['control_ci95'][0]:.4f}, {r['control_ci95'][1]:.4f}]"
        lines.append(f"| {name} | {r['default']:.4f} [{r['ci95'][0]:.4f}, {r['ci95'][1]:.4f}] | {control} | "
                     f"{r['goal']} | {r['control_is']} |")
    return "\n".join(lines)


def format_definitions() -> str:
    return "\n".join(f"{name}\n  definition: {row.definition}\n  goal: {row.goal}\n  control: {row.control}"
                     for name, row in ROWS.items())


# ------------------------------------------------------------------ command line (``recgym phenomena``)
def add_arguments(sub: argparse.ArgumentParser, option: Callable[[str], tuple[str, Any]], count: Callable) -> None:
    """The ``recgym phenomena`` arguments (``option`` parses KEY=VALUE, ``count(low)`` an int >= low)."""
    v1_ids = [i for i, w in ENV_IDS.items() if w.endswith("-v1")]
    sub.add_argument("--env", default="recgym/KuaiRec-v1", help=f"a v1 env id ({', '.join(v1_ids)})")
    sub.add_argument("--list", action="store_true", help="print each row's definition, goal and control, then exit")
    sub.add_argument("--json", action="store_true", help='one JSON object {row: {"default", "control", "ci95", ...}}')
    sub.add_argument("--users", type=count(2), default=400, help="users (episodes) of the episode rows")
    sub.add_argument("--state-users", type=count(2), default=1411, help="first N users x 2 episodes: the state row")
    sub.add_argument("--loop-seeds", type=count(2), default=5, help="population seeds of loop_gini_rise")
    sub.add_argument("--seed", type=count(0), default=0, help="world seed and user draw")
    sub.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", type=option,
                     help="simulator option (a SimParams field), e.g. --option conformity=5; repeatable")
    sub.add_argument("--world-option", action="append", default=[], metavar="KEY=VALUE", type=option,
                     help="v1 world option, e.g. --world-option followed_creators=16; repeatable")
    sub.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.list:
        print(format_definitions())
        return 0
    world_options = {key: _number(value) for key, value in args.world_option}
    rows = measure(args.env, args.users, args.seed, args.loop_seeds, args.state_users, world_options, **dict(args.option))
    print(json.dumps(rows) if args.json else format_table(args.env, rows))
    return 0


def _number(text: Any) -> Any:
    """A world option's value: int, float or the text itself (``content_axis``)."""
    for convert in (int, float):
        try:
            return convert(text)
        except (TypeError, ValueError):
            pass
    return text
