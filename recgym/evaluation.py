"""Batched evaluation: run a policy for N episodes on the native vector env and compute every metric.

Many sessions are stepped at once; the first ``episodes`` episodes to START are recorded (chosen
before their outcome is known, so short episodes are not over-represented), while the slots that
have finished their share keep serving new users, as the rest of a platform would.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from recgym import metrics
from recgym.agents.baselines import Policy
from recgym.envs import ENV_IDS, FITTED_ID
from recgym.envs.vector import RecSysVectorEnv
from recgym.logging_model import WATCH_RATIO
from recgym.sizes import check_count

#: Summary keys, in table order. Catalogue-level ones have no per-episode CI (NaN).
METRICS = ("R_cum", "R_each", "length", "coverage", "coverage_turn", "gini", "long_tail_share",
           "exposure_gap", "mcd", "novelty", "diversity")
#: Summary keys only v1 worlds have (creator debuts), catalogue-level.
V1_METRICS = ("emerging_creator_share",)
#: Summary keys of v1 ``episode="lifetime"`` envs (:class:`LifetimeGuidance`'s, over the recorded lifetimes): the
#: users' acquired-taste gain over a lifetime and retention, the sessions a user starts per 7 days.
LIFETIME_METRICS = ("tail_affinity_gain", "sessions_per_week")
#: Summary keys of ``evaluate(familiarity=True)`` on v1 worlds (issue #19's LAFB comparison), from the logged
#: signals: watch_time, the mean logged play time per episode in seconds (watch ratio x item duration);
#: novel_watch_share, the share of that play time on items whose creator was unfamiliar to the user when
#: recommended (:func:`recgym.metrics.unfamiliar_creator`: not followed, not in the observed history).
FAMILIARITY_METRICS = ("watch_time", "novel_watch_share")


@dataclass(frozen=True)
class LifetimeGuidance:
    """Progressive guidance over users' lifetimes (v1 ``episode="lifetime"`` envs): per session index
    ``k`` (S sessions, the longest recorded lifetime), averaged over the lifetimes that reached it.

    session_value: (S,) mean true return of session k. session_tail_share: (S,) share of session k's
    recommendations outside the top group by prior popularity. session_tail_affinity: (S,) the user's mean
    acquired taste (the simulator's truth, ``Users.taste``, mean over neighbourhoods) at the start of
    session k. lifetime_value: mean true return of a lifetime; tail_affinity_gain: mean over lifetimes of
    the acquired taste at their last step minus at their first.

    Retention (how soon users come back; satisfied users return sooner): sessions_per_week: sessions a user
    starts per 7 days of lifetime, ``7 sum_l (S_l - 1) / sum_l d_l`` over lifetimes l with S_l sessions, the
    last of which started on day d_l (the first starts on day 0; a rate, because a lifetime bounded by its
    session count holds the same number of sessions under every policy); return_gap_days: mean days between
    the end of a session and the user's next one, over all returns. Both ``nan`` when no lifetime had a
    second session.
    """

    session_value: np.ndarray
    session_tail_share: np.ndarray
    session_tail_affinity: np.ndarray
    lifetime_value: float
    tail_affinity_gain: float
    n_lifetimes: int
    sessions_per_week: float
    return_gap_days: float

    def summary(self) -> dict[str, float]:
        """``recgym eval`` summary entries: lifetime value, tail-affinity gain, and first-session vs
        later-session tail share and value (``nan`` where no lifetime had a second session)."""
        later = slice(1, None)
        with np.errstate(invalid="ignore"):
            return {"lifetime_value": self.lifetime_value, "tail_affinity_gain": self.tail_affinity_gain,
                    "sessions_per_week": self.sessions_per_week, "return_gap_days": self.return_gap_days,
                    "tail_share_first_session": float(self.session_tail_share[0]),
                    "tail_share_later_sessions": float(np.mean(self.session_tail_share[later])) if len(self.session_tail_share) > 1 else float("nan"),
                    "value_first_session": float(self.session_value[0]),
                    "value_later_sessions": float(np.mean(self.session_value[later])) if len(self.session_value) > 1 else float("nan")}


@dataclass(frozen=True)
class EvaluationResult:
    """What :func:`evaluate` measured.

    episodes: per-episode (N,) arrays: ``user``, ``R_cum`` (true return), ``length``,
        ``novelty`` (mean over the episode), ``mcd`` (share of majority-category items),
        ``diversity`` (intra-session, NaN if length < 2).
    summary: metric -> value (means over episodes, pooled ratios, or catalogue-level values): the
        :data:`METRICS`, and on v1 worlds the :data:`V1_METRICS` (``emerging_creator_share``: the share of
        recommendations that went to the youngest 20% of creators by debut, :func:`metrics.emerging_creators`),
        on v1 lifetime envs also the :data:`LIFETIME_METRICS` (from ``lifetime``).
    ci95: metric -> half-width of the 95% confidence interval (NaN for catalogue-level metrics).
    exposure: (I,) how often each item was recommended in the recorded episodes.
    lifetime: on a v1 ``episode="lifetime"`` env, how the recorded lifetimes' users evolved across their
        sessions and how soon they came back (:class:`LifetimeGuidance`, from the same steps); else ``None``.
    """

    episodes: dict[str, np.ndarray]
    summary: dict[str, float]
    ci95: dict[str, float]
    exposure: np.ndarray
    lifetime: LifetimeGuidance | None = None

    def records(self) -> list[dict[str, float]]:
        """The per-episode records as a list of dicts (one per episode)."""
        keys = list(self.episodes)
        return [dict(zip(keys, (v.item() for v in row))) for row in zip(*self.episodes.values())]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: the summary values plus ``ci95`` half-widths (NaN -> None)."""
        def clean(values: dict[str, float]) -> dict[str, float | None]:
            return {key: (value if np.isfinite(value) else None) for key, value in values.items()}

        return {**clean(self.summary), "ci95": clean(self.ci95)}


class CallablePolicy(Policy):
    """Wrap a callable ``obs -> actions`` (or ``(obs, mask) -> actions``) returning (B,) item ids."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        try:
            positional = [p for p in inspect.signature(fn).parameters.values()
                          if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        except (TypeError, ValueError):
            positional = []
        self.takes_mask = len(positional) >= 2

    def act(self, obs: dict[str, np.ndarray], mask: np.ndarray) -> np.ndarray:
        return np.asarray(self.fn(obs, mask) if self.takes_mask else self.fn(obs))


def as_policy(policy: Any, deterministic: bool = True) -> Policy:
    """A :class:`Policy` from a Policy, the name of a ready-to-run registered agent (``"popular"``),
    an SB3 model (masked argmax, or masked sampling if not ``deterministic``) or a callable
    ``obs -> actions``."""
    if isinstance(policy, Policy):
        return policy
    if isinstance(policy, str):
        from recgym.agents import make_policy

        return make_policy(policy)
    from stable_baselines3.common.base_class import BaseAlgorithm

    if isinstance(policy, BaseAlgorithm):
        from recgym.agents.sb3_policy import SB3Policy

        return SB3Policy(policy, deterministic=deterministic)
    if callable(policy):
        return CallablePolicy(policy)
    raise ValueError(f"policy must be a recgym Policy, an agent name, an SB3 model or a callable obs -> action, "
                     f"got {type(policy).__name__}")


def make_eval_env(env: str | RecSysVectorEnv | Any, num_envs: int, mode: str | None = None, **options: Any) -> RecSysVectorEnv:
    """The batched env to evaluate on: an id (built with ``mode`` and ``options``; ``recgym/Fitted-v1``
    with ``world_dir=WORLD_DIR``), a :class:`RecSysVectorEnv`, or an :class:`~recgym.envs.sb3.SB3VecEnv`
    (its underlying env).

    Evaluation counts an episode's steps as they come, so the env must autoreset in the same step
    (``AutoresetMode.SAME_STEP``, what an id builds): a next-step env would add a reward-0 restart
    step to every episode but the first in each row; another mode is a ``ValueError``."""
    if isinstance(env, str):
        if env not in ENV_IDS and env != FITTED_ID:
            raise ValueError(f"unknown env id {env!r}; valid ids: {', '.join((*ENV_IDS, FITTED_ID))}")
        if mode is not None:
            options["mode"] = mode
        venv = gym.make_vec(env, num_envs=num_envs, vectorization_mode="vector_entry_point",
                            **{"autoreset_mode": AutoresetMode.SAME_STEP, **options})
    else:
        venv = getattr(env, "venv", env)
        if not isinstance(venv, RecSysVectorEnv):
            raise ValueError(f"env must be a recgym id ({', '.join(ENV_IDS)}), a RecSysVectorEnv or an SB3VecEnv, "
                             f"got {type(env).__name__}")
        if options or (mode is not None and mode != venv.params.mode):
            raise ValueError(f"mode/options only apply when the env is given by id "
                             f"(this env has mode={venv.params.mode!r})")
    if venv.metadata["autoreset_mode"] is not AutoresetMode.SAME_STEP:
        raise ValueError(f"evaluation needs a same-step autoreset env (episode lengths would count the restart step); "
                         f"this env has {venv.metadata['autoreset_mode']}: build it with "
                         f"autoreset_mode=AutoresetMode.SAME_STEP, or pass the id")
    return venv


def evaluate(
    policy: Any,
    env: str | RecSysVectorEnv | Any = "recgym/KuaiRec-v0",
    episodes: int = 100,
    mode: str | None = None,
    seed: int | None = 0,
    num_envs: int = 64,
    deterministic: bool = True,
    familiarity: bool = False,
    **options: Any,
) -> EvaluationResult:
    """Run ``policy`` for ``episodes`` episodes and return per-episode records and a summary.

    Args:
        policy: a :class:`~recgym.agents.baselines.Policy`, an SB3 model, or a callable
            ``obs -> actions`` on the batched observation dict (returns (B,) item ids).
        env: a registered id (built with ``num_envs`` sessions, ``mode`` and env ``options``) or an
            existing :class:`RecSysVectorEnv` / ``SB3VecEnv`` (reset with ``seed``).
        episodes: N, episodes recorded; ``mode``: ``"Free"``, ``"NX_0"`` (default) or ``"NX_10"``.
        seed: seeds the env and the policy's generator. Rewards are the TRUE rewards.

    On a v1 ``episode="lifetime"`` env the same rollout also follows each lifetime session by session
    (``result.lifetime``, :class:`LifetimeGuidance`; its :data:`LIFETIME_METRICS` in the summary): one rollout
    gives a table's every column. With ``familiarity`` (v1 worlds) the same rollout also measures the
    :data:`FAMILIARITY_METRICS` of the recorded episodes (watch time and novel watch-time share, with their
    95% intervals).
    """
    episodes = check_count("episodes", episodes)
    venv = make_eval_env(env, min(num_envs, episodes), mode, **options)
    if venv.params.slate_size != 1:
        raise ValueError(f"evaluate supports slate_size=1 envs, got slate_size={venv.params.slate_size}")
    if familiarity and not venv.world.is_v1:
        raise ValueError(f"familiarity needs a v1 world (logged watch time, followed creators); {venv.world.name!r} is v0")
    agent = as_policy(policy, deterministic)
    obs, _ = venv.reset(seed=seed)
    agent.bind(venv, seed)
    sim = venv.sim
    lifetimes = is_lifetime_env(venv)
    episode_id = np.arange(venv.num_envs)
    next_id = venv.num_envs
    steps: list[tuple[np.ndarray, ...]] = []
    while (episode_id < episodes).any():
        before = lifetime_state(sim) if lifetimes else ()
        actions = agent.act(obs, sim.action_mask())
        unfamiliar = (metrics.unfamiliar_creator(venv.world, obs, actions),) if familiarity else ()
        next_obs, rewards, terminated, truncated, infos = venv.step(actions)
        agent.update(obs, actions, rewards)
        watched = (infos["signals"][:, WATCH_RATIO] * venv.world.item_duration[actions],) if familiarity else ()
        steps.append((episode_id.copy(), actions, infos["true_reward"], infos["user_id"], *watched, *unfamiliar, *before))
        done = np.flatnonzero(terminated | truncated)
        episode_id[done] = next_id + np.arange(done.size)
        next_id += done.size
        obs = next_obs
    episode, items, rewards, users, *state = (np.concatenate(column) for column in zip(*steps))
    keep = episode < episodes
    result = summarize(venv.world, episode[keep], items[keep], rewards[keep], users[keep], int(episodes), sim.popular)
    if familiarity:
        (seconds, unfamiliar), state = state[:2], state[2:]
        watch = summarize_watch(episode[keep], seconds[keep], unfamiliar[keep], int(episodes))
        result = replace(result, summary={**result.summary, **{key: value for key, (value, _) in watch.items()}},
                         ci95={**result.ci95, **{key: half for key, (_, half) in watch.items()}})
    if not lifetimes:
        return result
    session, affinity, start_day, gap = (column[keep] for column in state)
    lifetime = summarize_lifetimes(episode[keep], session, rewards[keep], ~sim.popular[items[keep]], affinity,
                                   start_day, gap, int(episodes))
    return replace(result, lifetime=lifetime,
                   summary={**result.summary, **{key: getattr(lifetime, key) for key in LIFETIME_METRICS}},
                   ci95={**result.ci95, **dict.fromkeys(LIFETIME_METRICS, float("nan"))})


def summarize_watch(episode: np.ndarray, seconds: np.ndarray, unfamiliar: np.ndarray,
                    n_episodes: int) -> dict[str, tuple[float, float]]:
    """:data:`FAMILIARITY_METRICS` -> (value, 95% half-width) of T recorded steps: ``episode`` (T,) index in
    [0, N), ``seconds`` (T,) logged play time, ``unfamiliar`` (T,) bool whether the item's creator was unfamiliar."""
    watch = np.bincount(episode, weights=seconds, minlength=n_episodes)
    novel = np.bincount(episode, weights=np.where(unfamiliar, seconds, 0.0), minlength=n_episodes)
    return {"watch_time": metrics.mean_ci95(watch), "novel_watch_share": metrics.ratio_ci95(novel, watch)}


def is_lifetime_env(venv: RecSysVectorEnv) -> bool:
    """Whether ``venv`` is a v1 world whose episodes are lifetimes (``episode="lifetime"``)."""
    return venv.world.is_v1 and venv.params.episode == "lifetime"


def lifetime_state(sim: Any) -> tuple[np.ndarray, ...]:
    """What a lifetime's row is before a step, each (B,): its session index, the user's acquired taste (the
    simulator's truth ``Users.taste``, mean over neighbourhoods), the day its session started and its session's
    return gap in days (copies: the step updates them in place)."""
    return (sim.session_index.copy(), sim.users.taste[sim.user].mean(axis=1), sim.start_day.copy(),
            sim.return_gap.astype(np.float64))


def summarize(world: Any, episode: np.ndarray, items: np.ndarray, rewards: np.ndarray, users: np.ndarray,
              n_episodes: int, popular: np.ndarray) -> EvaluationResult:
    """Metrics of T recorded recommendations: ``episode`` (T,) index in [0, N), ``items`` (T,),
    true ``rewards`` (T,), ``users`` (T,); ``popular`` (I,) bool is the top group by prior popularity."""
    length = np.bincount(episode, minlength=n_episodes).astype(np.float64)
    returns = np.bincount(episode, weights=rewards, minlength=n_episodes)
    user = np.zeros(n_episodes, np.int64)
    user[episode] = users
    novelty_sum = np.bincount(episode, weights=metrics.novelty(items, world.pop_prior), minlength=n_episodes)
    majority = metrics.mcd(items, world.item_cats, metrics.majority_categories(world))
    mcd_sum = np.bincount(episode, weights=majority, minlength=n_episodes)
    diversity = metrics.session_diversity(episode, items, world.item_emb, n_episodes)
    exposure = np.bincount(items, minlength=world.n_items).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        episodes = {"user": user, "R_cum": returns, "length": length, "novelty": novelty_sum / length,
                    "mcd": mcd_sum / length, "diversity": diversity}
    intervals = {
        "R_cum": metrics.mean_ci95(returns),
        "R_each": metrics.ratio_ci95(returns, length),
        "length": metrics.mean_ci95(length),
        "mcd": metrics.ratio_ci95(mcd_sum, length),
        "novelty": metrics.ratio_ci95(novelty_sum, length),
        "diversity": metrics.mean_ci95(diversity),
    }
    catalogue = {
        "coverage": metrics.coverage(items, world.n_items),
        "coverage_turn": metrics.coverage_turn(items),
        "gini": metrics.gini(exposure),
        "long_tail_share": metrics.long_tail_share(exposure, popular),
        "exposure_gap": metrics.exposure_gap(exposure, popular),
    }
    if world.is_v1:
        catalogue["emerging_creator_share"] = metrics.emerging_creator_share(
            exposure, world.item_creator, metrics.emerging_creators(world))
    keys = (*METRICS, *V1_METRICS) if world.is_v1 else METRICS
    summary = {key: intervals[key][0] if key in intervals else catalogue[key] for key in keys}
    ci95 = {key: intervals[key][1] if key in intervals else float("nan") for key in keys}
    return EvaluationResult(episodes, summary, ci95, exposure)


#: Per-platform-step series recorded by :func:`population_rollout`, in plot order.
PLATFORM_SERIES = ("exposure_gini", "popularity_gini", "long_tail_share", "active_users")


@dataclass(frozen=True)
class PopulationResult:
    """What :func:`population_rollout` measured over T platform steps.

    series: key of :data:`PLATFORM_SERIES` -> (T,) value after each platform step (``exposure_gini``,
        ``long_tail_share``, ``active_users`` as the env's ``infos[agent]["platform"]``; ``popularity_gini``
        the Gini of the shared (I,) popularity, prior + logged clicks).
    summary: ``R_each`` mean true reward per user-step, ``user_steps``, ``sessions`` (sessions that ended
        within the run), ``length`` (their mean length), ``gini`` / ``popularity_gini`` / ``long_tail_share``
        (the series' final value; long-tail share averaged over the steps).
    """

    series: dict[str, np.ndarray]
    summary: dict[str, float]


def population_rollout(policy: Any, steps: int, seed: int = 0, n_users: int = 64, world: str = "kuairec",
                       arrival_rate: float = 1.0, deterministic: bool = True, **options: Any) -> PopulationResult:
    """Run ``policy`` as the recommender of every present user of ``recgym/Population-v0`` for ``steps``
    platform steps and record the platform's fairness over time and its utility.

    The population is driven through its PettingZoo parallel API: arrivals and departures exist only in
    :class:`~recgym.envs.population.PopulationEnv.step` (its batched core is the one simulator call per
    step). The per-agent dicts are stacked into one (B_t, ...) batch of the B_t live users, so the
    policy acts once per step on the batch; a departed user's final observation is dropped and an
    arriving user acts from the next step, as the env defines.

    Args:
        policy: as for :func:`evaluate` (bound to the population env: its ``world`` and shared ``sim``).
        steps: T platform steps; the env's horizon is ``steps + 1`` so no session is cut by it.
        seed: seeds the population (users, arrivals, noise) and the policy's generator.
        n_users, world, arrival_rate: :class:`~recgym.envs.population.PopulationEnv` arguments.
        options: ``SimParams`` fields. Rewards recorded are the TRUE rewards.
    """
    from recgym.envs import population_v0
    from recgym.metrics import gini

    steps = check_count("steps", steps)
    env = population_v0.parallel_env(world=world, n_users=n_users, max_cycles=steps + 1,
                                     arrival_rate=arrival_rate, **options)
    if env.params.slate_size != 1:
        raise ValueError(f"population_rollout supports slate_size=1, got slate_size={env.params.slate_size}")
    agent = as_policy(policy, deterministic)
    observations, infos = env.reset(seed=seed)
    agent.bind(env, seed)
    series = {key: np.zeros(int(steps)) for key in PLATFORM_SERIES}
    served = np.zeros(len(env.possible_agents), np.int64)  # steps served per agent index (user_k -> k)
    ended = np.zeros(len(env.possible_agents), bool)
    reward_sum = 0.0
    for t in range(int(steps)):
        acting = list(env.agents)
        obs = {key: np.stack([observations[name][key] for name in acting]) for key in observations[acting[0]]}
        mask = (np.stack([infos[name]["action_mask"] for name in acting]).astype(bool) if env.params.no_repeat
                else np.ones((len(acting), env.world.n_items), bool))
        actions = agent.act(obs, mask)
        observations, rewards, terminations, truncations, infos = env.step(dict(zip(acting, actions.tolist())))
        agent.update(obs, actions, np.array([rewards[name] for name in acting]))
        index = np.array([int(name[5:]) for name in acting])  # "user_<k>"
        served[index] += 1
        ended[index] = [terminations[name] or truncations[name] for name in acting]
        reward_sum += sum(infos[name]["true_reward"] for name in acting)
        platform = infos[acting[0]]["platform"]
        for key in ("exposure_gini", "long_tail_share", "active_users"):
            series[key][t] = platform[key]
        series["popularity_gini"][t] = gini(env.sim.popularity)
        if not env.agents:
            raise ValueError(f"the population emptied at step {t + 1} of {steps}; use arrival_rate > 0")
    user_steps = float(served.sum())
    summary = {"R_each": reward_sum / user_steps, "user_steps": user_steps, "sessions": float(ended.sum()),
               "length": float(served[ended].mean()) if ended.any() else float("nan"),
               "gini": float(series["exposure_gini"][-1]), "popularity_gini": float(series["popularity_gini"][-1]),
               "long_tail_share": float(series["long_tail_share"].mean())}
    return PopulationResult(series, summary)


def summarize_lifetimes(episode: np.ndarray, session: np.ndarray, reward: np.ndarray, tail: np.ndarray,
                        affinity: np.ndarray, start_day: np.ndarray, gap: np.ndarray, episodes: int) -> LifetimeGuidance:
    """:class:`LifetimeGuidance` of T recorded steps of ``episodes`` lifetimes, each (T,): ``episode`` index in
    [0, N), ``session`` index within the lifetime, true ``reward``, ``tail`` (bool: the item is outside the top
    group by prior popularity) and :func:`lifetime_state`'s ``affinity``, ``start_day`` and return ``gap`` before
    the step."""
    n_sessions = int(session.max()) + 1
    cell = episode * n_sessions + session  # one (lifetime, session) cell per step
    steps = np.bincount(cell, minlength=episodes * n_sessions).reshape(episodes, n_sessions)
    value = np.bincount(cell, reward, episodes * n_sessions).reshape(episodes, n_sessions)
    tail_steps = np.bincount(cell, tail, episodes * n_sessions).reshape(episodes, n_sessions)
    start = np.full(episodes * n_sessions, np.nan)
    start[cell[::-1]] = affinity[::-1]  # each cell's first step (reversed: the first write wins last)
    reached = steps > 0
    first = np.full(episodes, np.nan)
    last = np.full(episodes, np.nan)
    first[episode[::-1]], last[episode] = affinity[::-1], affinity
    returns = session > 0
    last_start = np.zeros(episodes)
    np.maximum.at(last_start, episode, start_day)  # the day the lifetime's last session started
    session_gap = np.zeros(episodes * n_sessions)
    session_gap[cell[returns]] = gap[returns]  # each return's gap (every step of a session holds it)
    with np.errstate(invalid="ignore", divide="ignore"):
        return LifetimeGuidance(
            session_value=np.where(reached, value, 0).sum(0) / reached.sum(0),
            session_tail_share=tail_steps.sum(0) / steps.sum(0),
            session_tail_affinity=np.nanmean(start.reshape(episodes, n_sessions), axis=0),
            lifetime_value=float(value.sum(1).mean()), tail_affinity_gain=float(np.mean(last - first)),
            n_lifetimes=int(episodes),
            sessions_per_week=float(7.0 * (reached.sum() - episodes) / last_start.sum()),
            return_gap_days=float(session_gap.sum() / (reached.sum() - episodes)))


def lifetime_guidance(policy: Any, env: str | RecSysVectorEnv | Any, episodes: int = 64, seed: int | None = 0,
                      num_envs: int = 64, **options: Any) -> LifetimeGuidance:
    """Run ``policy`` for ``episodes`` lifetimes of a v1 lifetime env (:func:`evaluate`'s rollout, whose
    ``result.lifetime`` this is) and measure how its users' tail affinity and value evolve across their
    sessions and how soon they come back (:class:`LifetimeGuidance`); another env is a one-line ``ValueError``."""
    venv = make_eval_env(env, min(num_envs, check_count("episodes", episodes)), **options)
    if not is_lifetime_env(venv):
        raise ValueError(f"lifetime_guidance needs a v1 env with episode='lifetime', got world v1={venv.world.is_v1}, "
                         f"episode={venv.params.episode!r}")
    return evaluate(policy, venv, episodes, seed=seed).lifetime
