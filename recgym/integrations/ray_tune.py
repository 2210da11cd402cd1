"""Run a list of independent trials as Ray Tune trials, on this machine or on a Ray cluster.

This is the ``--backend ray`` of an experiment grid: a trial is one config dict (e.g. one method x
seed x env), ``trial_fn(config) -> metrics`` runs it, and :func:`run_trials_on_ray` returns the
metrics in trial order, exactly what ``[trial_fn(t) for t in trials]`` returns locally. Each trial
is a Ray Tune function trainable with its own directory under ``logdir`` holding Tune's
``result.json``/``progress.csv`` and a TensorBoard event file (``tensorboard --logdir <logdir>``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from recgym.integrations import import_optional

ray = import_optional("ray", "ray")
tune = import_optional("ray.tune", "ray")


def run_trials_on_ray(
    trials: Sequence[dict[str, Any]],
    trial_fn: Callable[[dict[str, Any]], dict[str, Any]],
    logdir: str | Path,
    address: str | None = None,
    *,
    name: str = "recgym",
    cpus_per_trial: float = 1.0,
    max_concurrent_trials: int | None = None,
) -> list[dict[str, Any]]:
    """Run ``trial_fn`` on every trial config as one Ray Tune trial each; return their metrics in trial order.

    Args:
        trials: N config dicts (picklable), one per trial.
        trial_fn: ``config -> metrics`` (a flat dict of numbers, e.g. an evaluation summary). It is
            pickled to the Ray workers: define it in an importable module (installed on every node)
            or register its module with ``ray.cloudpickle.register_pickle_by_value``.
        logdir: Tune's storage path, a local directory or a URI (``s3://...``; on a multi-node cluster
            it must be storage every node reaches); each trial writes to ``logdir/name/<trial dir>``,
            TensorBoard events included.
        address: Ray cluster to connect to when Ray is not initialised yet (``"auto"``,
            ``"ray://head:10001"``, ...); ``None`` starts a local Ray. An already initialised Ray
            (``ray.init`` done by the caller) is used as is and left running.
        name: experiment name (sub-directory of ``logdir``).
        cpus_per_trial: CPUs Ray reserves per trial (so ``num_cpus / cpus_per_trial`` trials run at once).
        max_concurrent_trials: optional cap on trials running at once.

    Returns:
        N metrics dicts, ``result[i]`` being what ``trial_fn(trials[i])`` returned.

    Raises:
        ValueError: ``trials`` is empty or not a list of dicts, or ``cpus_per_trial <= 0``.
        RuntimeError: a trial failed (names the trial and its error).
    """
    trials = list(trials)
    if not trials or not all(isinstance(trial, dict) for trial in trials):
        raise ValueError(f"trials must be a non-empty list of config dicts, got {trials!r:.200}")
    if not cpus_per_trial > 0:
        raise ValueError(f"cpus_per_trial must be > 0, got {cpus_per_trial!r}")
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False)
    try:
        trainable = tune.with_resources(_function_trainable(trials, trial_fn), {"cpu": cpus_per_trial})
        tuner = tune.Tuner(
            trainable,
            param_space={"trial_index": tune.grid_search(list(range(len(trials))))},
            tune_config=tune.TuneConfig(max_concurrent_trials=max_concurrent_trials),
            run_config=tune.RunConfig(storage_path=_storage_path(logdir), name=name, verbose=0),
        )
        grid = tuner.fit()
        failed = [result for result in grid if result.error is not None]
        if failed:
            first = failed[0]
            which = trials[first.config["trial_index"]] if first.config else first.path
            raise RuntimeError(f"{len(failed)} trial(s) failed; first: {which!r}: {first.error}")
        metrics = {result.config["trial_index"]: result.metrics["recgym"] for result in grid}
        return [metrics[index] for index in range(len(trials))]
    finally:
        if started:
            ray.shutdown()


def _storage_path(logdir: str | Path) -> str:
    """Tune's ``storage_path``: URIs as given, local directories made absolute (Tune requires it)."""
    return str(logdir) if "://" in str(logdir) else str(Path(logdir).resolve())


def _function_trainable(
    trials: list[dict[str, Any]], trial_fn: Callable[[dict[str, Any]], dict[str, Any]]
) -> Callable[[dict[str, Any]], None]:
    """Tune function trainable running ``trial_fn(trials[config["trial_index"]])`` and reporting its metrics
    once, under ``recgym`` (so TensorBoard shows them as ``ray/tune/recgym/<metric>``)."""

    def recgym_trial(config: dict[str, Any]) -> None:
        metrics = trial_fn(trials[config["trial_index"]])
        if not isinstance(metrics, dict):
            raise ValueError(f"trial_fn must return a dict of metrics, got {type(metrics).__name__}")
        tune.report({"recgym": metrics})

    return recgym_trial
