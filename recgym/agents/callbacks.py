"""TensorBoard logging of recgym's metrics: SB3 callbacks and a policy-comparison writer.

:class:`RecMetricsCallback` logs, through SB3's own logger (so the scalars land in the run's event
file next to SB3's losses): every metric of :data:`recgym.evaluation.METRICS` over the episodes
completed during training (``rollout/*``), the run's hyperparameters (TensorBoard's hparams plugin) and a
histogram of item exposure. :class:`TruthCurve` is the learning curve on the truth (``eval/*``): the policy
being trained evaluated every N steps, its points kept, for flat and two-level training alike.
:class:`PlatformMetricsCallback` logs a user population's platform metrics (``population/*``).
:class:`CatalogueReset` clears the training simulator's shared catalogue counters every N user-steps, so a
learner trains on the counter range an evaluation of that length shows (issue #19's protocol).
:func:`log_comparison` writes a utility-vs-exposure-equity scatter of several evaluated policies.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Figure, HParam, Logger

from recgym.envs.population import PlatformMonitor
from recgym.evaluation import METRICS, EvaluationResult, evaluate, summarize
from recgym.simulator import Simulator
from recgym.sizes import check_count

TB_ONLY = ("stdout", "log", "json", "csv")


class TruthCurve(BaseCallback):
    """A learning curve on the truth (SB3's ``EvalCallback`` for recgym): the policy being trained, evaluated by
    :func:`recgym.evaluate` (true rewards, every summary metric) on ``episodes`` episodes of ``env`` with
    ``options``, ``seed`` and ``num_envs`` sessions, every ``freq`` steps (checked at each rollout's end; 0: only
    at the end), logged as ``eval/<metric>`` scalars (with ``scorer``'s extra ones, e.g. a reference front's
    ``eval/dpfr``) and an ``eval/exposure`` histogram against the step count, and kept in ``points``: one
    JSON-ready dict per evaluation, ``steps`` and every finite value.

    One instance may serve several ``learn`` calls (a two-level run passes it to both levels' every round).
    ``policy``: () -> what to evaluate now (default: the model being trained; a two-level run gives both levels
    as one policy); ``steps``: () -> the curve's step count (default: the model's timesteps; a two-level run
    gives its stage-II env steps). ``logger``: the SB3 logger the scalars go to (default: the trained model's,
    so they share its event file). ``at_end``: also evaluate when a ``learn`` call ends (a run of several
    ``learn`` calls calls :meth:`finish` after the last instead). ``points``: an earlier run's points, continued.
    """

    def __init__(self, env: Any, episodes: int, freq: int = 0, options: dict[str, Any] | None = None,
                 seed: int | None = 0, num_envs: int = 64,
                 scorer: Callable[[EvaluationResult], dict[str, Any]] | None = None,
                 policy: Callable[[], Any] | None = None, steps: Callable[[], int] | None = None,
                 logger: Logger | None = None, at_end: bool = True,
                 points: list[dict[str, float]] | None = None) -> None:
        super().__init__()
        self.env, self.episodes, self.freq = env, check_count("episodes", episodes), check_count("freq", freq, 0)
        self.options, self.seed, self.num_envs, self.scorer = dict(options or {}), seed, num_envs, scorer
        self._policy, self._steps, self._logger, self.at_end = policy, steps, logger, at_end
        self.points = list(points or [])
        self.last_steps = int(self.points[-1]["steps"]) if self.points else 0
        self.last_eval: EvaluationResult | None = None

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        if self.freq and self.steps_now() - self.last_steps >= self.freq:
            self.evaluate()

    def _on_training_end(self) -> None:
        if self.at_end:
            self.finish()

    def steps_now(self) -> int:
        """The curve's step count now (``steps()``, or the trained model's timesteps)."""
        return self._steps() if self._steps is not None else self.model.num_timesteps

    def finish(self) -> None:
        """Evaluate at the current step count unless the last point is already there (the end of training)."""
        if not self.points or self.last_steps != self.steps_now():
            self.evaluate()

    def evaluate(self) -> EvaluationResult:
        """Evaluate the policy now, log the point at the current step count and keep it; returns the result."""
        steps = self.steps_now()
        result = evaluate(self._policy() if self._policy is not None else self.model, self.env,
                          episodes=self.episodes, seed=self.seed, num_envs=self.num_envs, **self.options)
        scores = {**result.summary, **(self.scorer(result) if self.scorer is not None else {})}
        point = {"steps": int(steps), **{key: float(value) for key, value in scores.items()
                                          if isinstance(value, (int, float, np.number)) and np.isfinite(value)}}
        logger = self._logger or self.logger
        for key, value in point.items():
            if key != "steps":
                logger.record(f"eval/{key}", value)
        logger.record("eval/exposure", th.as_tensor(result.exposure), exclude=TB_ONLY)
        logger.dump(steps)
        self.points.append(point)
        self.last_steps, self.last_eval = int(steps), result
        return result


class RecMetricsCallback(BaseCallback):
    """Log recgym metrics during SB3 training (the env must be an ``SB3VecEnv``, possibly wrapped).

    The ``rollout/*`` metrics read one recommended item per step: on a slate env (``slate_size > 1``)
    they are not logged (SB3's own ``rollout/ep_rew_mean`` is), and evaluation refuses slates.

    Args:
        hparams: hyperparameters to show in TensorBoard's HPARAMS tab (scalars and strings).
        min_episodes: training episodes to collect before a ``rollout/*`` summary is logged
            (checked at each rollout end; off-policy algorithms end a rollout every few steps).
        evaluated: the run also has a :class:`TruthCurve`: its ``eval/*`` metrics join the HPARAMS tab's.
    """

    def __init__(self, hparams: dict[str, Any] | None = None, min_episodes: int = 64, evaluated: bool = False,
                 verbose: int = 0) -> None:
        super().__init__(verbose)
        self.hparams = {key: value if isinstance(value, (int, float, str, bool)) else str(value)
                        for key, value in (hparams or {}).items()}
        self.min_episodes = min_episodes
        self.evaluated = evaluated

    def _on_training_start(self) -> None:
        self.recgym_env = self._find_recgym_env()
        self._per_item = self.recgym_env.venv.params.slate_size == 1  # the metrics read one item per step
        n = self.recgym_env.num_envs
        self._episode = np.arange(n)
        self._next_episode = n
        self._steps: list[tuple[np.ndarray, ...]] = []
        prefixes = ("rollout", "eval") if self.evaluated else ("rollout",)
        metrics = {f"{prefix}/{key}": 0.0 for prefix in prefixes for key in METRICS}
        self.logger.record("hparams", HParam(self.hparams, metrics), exclude=TB_ONLY)

    def _find_recgym_env(self) -> Any:
        env = self.training_env.unwrapped  # below any VecEnvWrapper (e.g. a RewardShaper)
        if not hasattr(env, "last_infos"):
            raise ValueError("RecMetricsCallback needs a recgym SB3VecEnv as the training env")
        return env

    def _on_step(self) -> bool:
        infos = self.recgym_env.last_infos
        if self._per_item:
            actions = np.asarray(self.locals["actions"]).reshape(-1)
            self._steps.append((self._episode.copy(), actions, infos["true_reward"], infos["user_id"]))
        shaped = getattr(self.training_env, "last_shaped_reward", None)  # set by a RewardShaper wrapper
        if shaped is not None:
            self.logger.record_mean("rollout/shaped_reward", float(np.mean(shaped)))
            self.logger.record_mean("rollout/env_reward", float(np.mean(self.training_env.last_env_reward)))
        done = np.flatnonzero(self.locals["dones"])
        self._episode[done] = self._next_episode + np.arange(done.size)
        self._next_episode += done.size
        return True

    def _on_rollout_end(self) -> None:
        if self._steps:
            episode, items, rewards, users = (np.concatenate(column) for column in zip(*self._steps))
            finished = ~np.isin(episode, self._episode)
            ids, index = np.unique(episode[finished], return_inverse=True)
            if ids.size >= self.min_episodes:
                world, popular = self.recgym_env.venv.world, self.recgym_env.venv.sim.popular
                self._record("rollout", summarize(world, index, items[finished], rewards[finished],
                                                  users[finished], ids.size, popular))
                self.logger.dump(self.num_timesteps)  # algorithms dump every log_interval rollouts only
                keep = ~finished
                self._steps = [(episode[keep], items[keep], rewards[keep], users[keep])]

    def _on_training_end(self) -> None:
        self.logger.dump(self.num_timesteps)

    def _record(self, prefix: str, result: EvaluationResult) -> None:
        for key, value in result.summary.items():
            if np.isfinite(value):
                self.logger.record(f"{prefix}/{key}", float(value))
        self.logger.record(f"{prefix}/exposure", th.as_tensor(result.exposure), exclude=TB_ONLY)


def training_simulator(training_env: Any) -> Simulator | None:
    """The :class:`~recgym.simulator.Simulator` an SB3 training env steps, below its wrappers: recgym's
    ``SB3VecEnv`` (possibly inside ``VecEnvWrapper`` s, e.g. a :class:`~recgym.agents.rewards.RewardShaper`) or a
    hierarchy level's view (:mod:`recgym.agents.hierarchy`), each holding the batched env as ``venv``; ``None``
    for any other env (e.g. a SuperSuit population vec env)."""
    sim = getattr(getattr(training_env.unwrapped, "venv", None), "sim", None)
    return sim if isinstance(sim, Simulator) else None


def reset_due(before: int, after: int, every: int) -> bool:
    """Whether a count of user-steps going from ``before`` to ``after`` reaches or passes a multiple of ``every``:
    issue #19's catalogue reset rule, shared by :class:`CatalogueReset` (SB3 training) and the logging loops that are
    not an SB3 ``learn`` call (DORL's random logs, DSRM stage I's)."""
    return after // every > before // every


class CatalogueReset(BaseCallback):
    """Clear the training env's shared catalogue counters (:meth:`recgym.simulator.Simulator.clear_counters`:
    exposure, clicks and the logged popularity built from them) every ``every`` user-steps of its simulator,
    so that a learner trains on the counter range an evaluation of ``every`` user-steps shows (issue #19's
    protocol: ``recgym.evaluate`` starts the counters at 0; docs/experiments.md, "The catalogue ages too").

    Reads: the simulator below the training env's wrappers (:func:`training_simulator`) and the user-steps
    taken so far, ``user_steps()`` (default: the model's ``num_timesteps``, which counts one per session per
    batched step, i.e. user-steps, for a flat agent; a hierarchy's high level passes its view's own count, an
    option being several user-steps). Checked after every step (between two steps, never inside one): the
    counters are cleared once each time the count reaches or passes the next multiple of ``every``, so they
    never hold more than ``every + num_envs - 1`` user-steps' worth (``num_envs``, or an option's user-steps,
    being the count's increment). One instance may serve several ``learn`` calls (a hierarchy's rounds): the
    multiples continue from the count at each call's start. Logs ``train/catalogue_resets`` (resets so far)
    at each rollout's end; ``resets`` holds the count.
    """

    def __init__(self, every: int, user_steps: Callable[[], int] | None = None) -> None:
        super().__init__()
        self.every = check_count("catalogue_reset_every", every)
        self._user_steps = user_steps
        self.resets = 0
        self._count = 0
        self._sim: Simulator | None = None

    def user_steps(self) -> int:
        """User-steps of the training simulator so far (``user_steps()``, or the model's timesteps)."""
        return self._user_steps() if self._user_steps is not None else self.model.num_timesteps

    def _on_training_start(self) -> None:
        self._sim = training_simulator(self.training_env)
        if self._sim is None:
            raise ValueError("CatalogueReset needs recgym's SB3VecEnv (possibly wrapped) or a hierarchy level's view "
                             "as the training env")
        self._count = self.user_steps()

    def _on_step(self) -> bool:
        steps = self.user_steps()
        if reset_due(self._count, steps, self.every):
            self._sim.clear_counters()
            self.resets += 1
        self._count = steps
        return True

    def _on_rollout_end(self) -> None:
        self.logger.record("train/catalogue_resets", self.resets)


class PlatformMetricsCallback(BaseCallback):
    """Log the population's platform metrics to SB3's logger (TensorBoard when the model has ``tensorboard_log``).

    Keys ``population/exposure_gini`` (latest), ``population/long_tail_share`` and
    ``population/active_users`` (means over the logging interval), averaged over independent
    populations. Source: the ``infos[i]["platform"]`` dicts of :class:`recgym.envs.population.PopulationEnv`
    (the SuperSuit path), else a :class:`recgym.envs.population.PlatformMonitor` on the simulator of
    recgym's ``SB3VecEnv``.
    """

    def _on_training_start(self) -> None:
        sim = training_simulator(self.training_env)
        self._monitor = PlatformMonitor(sim) if sim is not None else None

    def _on_step(self) -> bool:
        if self._monitor is not None:
            found = [self._monitor.update()]
        else:
            shared = {id(info["platform"]): info["platform"] for info in self.locals["infos"] if "platform" in info}
            found = list(shared.values())
        if not found:
            raise ValueError("PlatformMetricsCallback needs recgym's SB3VecEnv or a PopulationEnv-based vec env")
        means = {key: float(np.mean([metrics[key] for metrics in found])) for key in found[0]}
        self.logger.record("population/exposure_gini", means["exposure_gini"])
        self.logger.record_mean("population/long_tail_share", means["long_tail_share"])
        self.logger.record_mean("population/active_users", means["active_users"])
        return True


def comparison_figure(results: dict[str, EvaluationResult]) -> Any:
    """Matplotlib scatter: utility (R_cum, with 95% CI) vs exposure equity (1 - Gini), one point per policy
    (a figure of its own with an Agg canvas: the user's matplotlib backend is left as it is)."""
    from recgym.plotting import agg_figure

    figure = agg_figure(figsize=(5, 4))
    axes = figure.subplots()
    for name, result in results.items():
        equity, utility = 1.0 - result.summary["gini"], result.summary["R_cum"]
        axes.errorbar(equity, utility, yerr=np.nan_to_num(result.ci95["R_cum"]), fmt="o", capsize=3)
        axes.annotate(name, (equity, utility), textcoords="offset points", xytext=(5, 5))
    axes.set_xlabel("exposure equity (1 - Gini)")
    axes.set_ylabel("R_cum (true return per episode)")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def log_comparison(results: dict[str, EvaluationResult], logdir: str | Path, step: int = 0) -> Path:
    """Write ``compare/<policy>/<metric>`` scalars and the utility-vs-equity scatter to an event
    file under ``logdir/compare``; returns that directory."""
    from stable_baselines3.common.logger import configure

    directory = Path(logdir) / "compare"
    logger = configure(str(directory), ["tensorboard"])
    for name, result in results.items():
        for key, value in result.summary.items():
            if np.isfinite(value):
                logger.record(f"compare/{name}/{key}", float(value))
        logger.record(f"compare/{name}/exposure", th.as_tensor(result.exposure))
    logger.record("compare/utility_vs_equity", Figure(comparison_figure(results), close=False))  # not a pyplot figure
    logger.dump(step)
    logger.close()
    return directory
