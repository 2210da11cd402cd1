"""The ``recgym`` command line: ``eval``, ``train``, ``compare``, ``demo`` and ``bench``.

Agents are looked up by name in :data:`recgym.agents.AGENTS`, so a newly registered agent is
available to every subcommand. Every mistake on the command line (an unknown env id, agent or mode,
a malformed number, a negative count, an unwritable directory, a bad config or checkpoint) ends with
one line ``recgym: error: ...`` naming the problem, exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import recgym
from recgym import pareto, phenomena
from recgym.agents import AGENTS, get_agent, load_agent, make_policy, train_agent
from recgym.agents.checkpoints import writable_dir
from recgym.envs import ENV_IDS, FITTED_ID
from recgym.evaluation import METRICS, V1_METRICS, EvaluationResult, evaluate, make_eval_env
from recgym.params import SimParams
from recgym.threads import set_torch_threads

if TYPE_CHECKING:
    from recgym.experiments import ExperimentConfig

DEFAULT_ENV = "recgym/KuaiRec-v0"
DEMO_POLICIES = ("random", "popular", "ucb", "debias-popular", "ppo", "oracle")
TERMINAL_WIDTH = 80  # printed tables fit a terminal of this many columns


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``recgym`` console script. Returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # The v0 ids stay registered on purpose (published tables reproduce): gymnasium's notice that a
    # newer version exists would repeat on every env the command builds.
    warnings.filterwarnings("ignore", message=r".*The environment recgym/\S+-v0 is out of date",
                            category=DeprecationWarning)
    if argv[:1] == ["bench"]:  # forwarded untouched: recgym.bench owns its own arguments
        from recgym import bench

        return bench.main(argv[1:]) or 0
    try:
        args = build_parser().parse_args(argv)
        if hasattr(args, "torch_threads"):
            set_torch_threads(args.torch_threads)
        return args.run(args) or 0
    except (UsageError, ValueError) as error:
        print(f"recgym: error: {error}", file=sys.stderr)
    except OSError as error:  # the file system refused (disk full, permissions): not a bug to trace
        print(f"recgym: error: {error.strerror or error}: {error.filename}", file=sys.stderr)
    return 2


class UsageError(Exception):
    """A command-line mistake found by argparse (reported as one line, not usage + error)."""


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors raise :class:`UsageError` instead of printing the
    usage and exiting, so :func:`main` reports every mistake the same way."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def count(minimum: int) -> Callable[[str], int]:
    """argparse type: an integer >= ``minimum`` (a one-line error naming the bound otherwise)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {value}")
        return value

    return parse


def existing_dir(text: str) -> Path:
    """argparse type: a path to an existing directory."""
    path = Path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is not a directory")
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="recgym", description="Simulation gym for RL recommender systems.")
    parser.add_argument("--version", action="version", version=f"recgym {recgym.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def threads(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--torch-threads", type=count(1), default=None, metavar="N",
                         help="CPU threads of torch (default: the available cores, at most 4; see docs/cli.md)")

    def workers(sub: argparse.ArgumentParser, when: str = "") -> None:
        sub.add_argument("--workers", type=count(1), default=None, metavar="N",
                         help=f"{when}cells run at once in N worker processes, torch threads split between them "
                              "(default 1; ray backend: as many as Ray's CPUs allow); see docs/experiments.md")

    def common(sub: argparse.ArgumentParser, episodes: int = 100) -> None:
        sub.add_argument("--env", default=DEFAULT_ENV, help=f"env id ({', '.join((*ENV_IDS, FITTED_ID))})")
        sub.add_argument("--episodes", type=count(1), default=episodes, help="evaluation episodes")
        sub.add_argument("--mode", default=None, help="Free, NX_0 (default) or NX_10")
        sub.add_argument("--seed", type=count(0), default=0)
        sub.add_argument("--num-envs", type=count(1), default=64, help="sessions stepped at once")
        sub.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", type=_option,
                         help="simulator option (any SimParams field), e.g. --option popular_streak=3; repeatable")
        sub.add_argument("--data-dir", type=existing_dir, default=None, metavar="PATH",
                         help="folder with KuaiRec's small_matrix.csv: DORL's matrix-backed protocol (KuaiRec-v0 only)")
        sub.add_argument("--world-dir", type=Path, default=None, metavar="WORLD_DIR",
                         help=f"a world dir written by `recgym fit` (with --env {FITTED_ID}; docs/fit.md)")
        threads(sub)

    agents_help = "; ".join(f"{name}: {spec.description}" for name, spec in AGENTS.items())
    sub = commands.add_parser("eval", help="evaluate one policy and print its metrics")
    common(sub)
    sub.add_argument("--policy", required=True, help=f"agent name ({', '.join(AGENTS)})")
    sub.add_argument("--checkpoint", type=Path, help="checkpoint of a trained agent (from `recgym train`)")
    sub.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    sub.set_defaults(run=run_eval)

    sub = commands.add_parser("train", help="train an agent with TensorBoard logging and save a checkpoint",
                              epilog=agents_help)
    common(sub)
    sub.add_argument("--agent", required=True, help="trainable agent name (ppo, a2c, dqn, maskable-ppo, ...)")
    sub.add_argument("--timesteps", type=count(1), default=20_000)
    sub.add_argument("--logdir", type=Path, default=Path("runs"))
    sub.add_argument("--catalogue-reset-every", type=count(1), default=None, metavar="N",
                     help="clear the training simulator's click/exposure counters every N user-steps (default: "
                          "never); N = an evaluation's user-steps, e.g. episodes x max_turn; see docs/cli.md")
    sub.set_defaults(run=run_train)

    sub = commands.add_parser("compare", help="evaluate several policies (training the trainable ones) in one table",
                              epilog=agents_help)
    common(sub)
    sub.add_argument("--policies", default="random,popular,oracle,ppo", help="comma-separated agent names")
    sub.add_argument("--timesteps", type=count(1), default=20_000, help="training steps for trainable agents")
    sub.add_argument("--seeds", type=count(1), default=1,
                     help="seeds 0..N-1, each trained and evaluated; N > 1 reports mean ± t-interval over seeds")
    workers(sub, "with --seeds > 1: ")
    sub.add_argument("--logdir", type=Path, default=Path("runs"))
    sub.add_argument("--json", action="store_true")
    sub.set_defaults(run=run_compare)

    sub = commands.add_parser("demo", help="train PPO briefly on KuaiRec-v0 and compare it with the baselines")
    sub.add_argument("--timesteps", type=count(1), default=60_000)
    sub.add_argument("--episodes", type=count(1), default=100)
    sub.add_argument("--seed", type=count(0), default=0)
    sub.add_argument("--logdir", type=Path, default=Path("runs"))
    threads(sub)
    sub.set_defaults(run=run_demo)

    sub = commands.add_parser("experiment", help="run an experiment grid (methods x seeds x envs) from a YAML config")
    sub.add_argument("config", help="a bundled config by name (recgym/configs/NAME.yaml: dorl_table, fairness_table, "
                                    "noise_sweep, novelty, population; the v1 tables *_v1) or the path of a YAML file")
    sub.add_argument("--size", default="smoke", help="smoke (CI) or full")
    sub.add_argument("--outdir", type=Path, default=None, help="default results/NAME/SIZE")
    sub.add_argument("--backend", default="local", help="local or ray (one Ray Tune trial per cell)")
    sub.add_argument("--address", default=None, help="Ray cluster address (ray backend)")
    sub.add_argument("--methods", default=None, help="comma-separated subset of the config's methods")
    sub.add_argument("--envs", default=None, help="comma-separated subset of the config's envs")
    workers(sub)
    threads(sub)
    sub.set_defaults(run=run_experiment)

    sub = commands.add_parser("results", help="rewrite docs/results.md's v1 section and the README's verdict block "
                                              "from the stored cells of the v1 configs' full runs (cells not yet "
                                              "run: pending, done/total)")
    sub.add_argument("--doc", type=Path, default=Path("docs/results.md"), help="the Markdown file to update")
    sub.add_argument("--readme", type=Path, default=Path("README.md"),
                     help="the file whose verdict block (one line per claim of issue 19) is rewritten")
    sub.add_argument("--root", type=Path, default=None, help="where the full runs store their cells (default results/v1)")
    sub.set_defaults(run=run_results)

    sub = commands.add_parser("phenomena", help="measure the v1 phenomena rows: default vs control, 95% intervals")
    phenomena.add_arguments(sub, _option, count)

    sub = commands.add_parser("front", help="the reference Pareto front (lambda-penalised oracle sweep) and DPFR")
    pareto.add_arguments(sub, _option, count)

    sub = commands.add_parser("log", help="write a v1 world's own log (generic schema or KuaiRec's): a fit's source")
    sub.add_argument("--env", default="recgym/Synthetic-v1", help="a v1 env id")
    sub.add_argument("--policy", default="random", help="random (uniform over allowed items) or an agent name")
    sub.add_argument("--sessions", "--users", type=count(1), default=1000,
                     help="sessions logged, each a visit of the user who comes back first on the platform's "
                          "return clock (--users is an alias)")
    sub.add_argument("--out", type=Path, required=True, help="LOG.csv / .csv.gz / .parquet, or a folder (kuairec)")
    sub.add_argument("--format", default="csv", help="csv (the generic schema; Parquet by suffix) or kuairec")
    sub.add_argument("--seed", type=count(0), default=0)
    sub.add_argument("--num-envs", type=count(1), default=256,
                     help="sessions open at once; keep it well below the users when the return gaps matter "
                          "(a user due back waits for a free slot; docs/fit.md)")
    sub.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", type=_option,
                     help="simulator option (any SimParams field); repeatable")
    sub.add_argument("--world-option", action="append", default=[], metavar="KEY=VALUE", type=_number_option,
                     help="world option, e.g. n_users=7176 on Synthetic-v1; repeatable")
    sub.set_defaults(run=run_log)

    sub = commands.add_parser("fit", help="fit a v1 world to a log: a WORLD_DIR for recgym/Fitted-v1 (docs/fit.md)")
    sub.add_argument("data", type=Path, help="the log: a CSV / Parquet file, or a KuaiRec / KuaiRand folder")
    sub.add_argument("--format", default="csv", help="csv (generic schema, also Parquet), kuairec or kuairand")
    sub.add_argument("--out", type=Path, required=True, metavar="WORLD_DIR", help="new (or earlier fitted) world dir")
    sub.add_argument("--report", action="store_true", help="add the fidelity report (report.md, report.png)")
    sub.add_argument("--dims", type=count(2), default=32, help="embedding dimensions")
    sub.add_argument("--iterations", type=count(1), default=8, help="ALS sweeps")
    sub.add_argument("--holdout", type=float, default=0.2, help="share of sessions held out for the report")
    sub.add_argument("--seed", type=count(0), default=0)
    sub.set_defaults(run=run_fit)

    commands.add_parser("bench", help="benchmark suite (arguments are forwarded to recgym.bench)", add_help=False)
    return parser


#: The type of each SimParams field (an ``--option`` value is converted to it; other keys stay text).
def _flag(text: str) -> bool:
    """``true`` / ``false`` (any case) -> bool (a bool SimParams field, e.g. ``session_memory``)."""
    if text.lower() not in ("true", "false"):
        raise ValueError(text)
    return text.lower() == "true"


OPTION_TYPES: dict[str, Any] = {f.name: {"int": int, "float": float, "bool": _flag}.get(str(f.type), str)
                                for f in dataclasses.fields(SimParams)}


def _option(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` -> (key, value) with the value converted to the SimParams field's type (int,
    float or bool: ``true`` / ``false``; text for text fields and for the other env options, e.g. ``data_dir``); SimParams
    validates names and ranges."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    kind = OPTION_TYPES.get(key, str)
    try:
        return key, kind(value)
    except ValueError:
        expects = {int: "an integer", _flag: "true or false"}.get(kind, "a number")
        raise argparse.ArgumentTypeError(f"{key} expects {expects}, got {value!r}") from None


def _number_option(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` -> (key, int or float or text), for world options."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    for kind in (int, float):
        try:
            return key, kind(value)
        except ValueError:
            pass
    return key, value


def run_log(args: argparse.Namespace) -> int:
    from recgym.fit.log import write_log

    path = write_log(args.env, args.out, args.sessions, args.policy, args.seed, args.format,
                     num_envs=args.num_envs, world_options=dict(args.world_option), **dict(args.option))
    print(f"recgym log: {args.sessions} sessions of {args.env} ({args.policy}) written to {path}")
    return 0


def run_fit(args: argparse.Namespace) -> int:
    from recgym.fit.fidelity import fidelity_report, write_report
    from recgym.fit.model import FitSettings, fit_world
    from recgym.fit.readers import read_log
    from recgym.fit.worlddir import save_world_dir

    settings = FitSettings(dims=args.dims, iterations=args.iterations, holdout=args.holdout, seed=args.seed)
    log = read_log(args.data, args.format)
    print(f"recgym fit: {log.n_rows:,} rows, {log.n_users:,} users, {log.n_items:,} items, {log.n_sessions:,} "
          "sessions read", flush=True)
    result = fit_world(log, settings, progress=True)
    report = fidelity_report(log, result.world, result.params, result.train, args.seed) if args.report else None
    write_extra = None if report is None else (lambda folder: write_report(report, folder, str(args.data)))
    save_world_dir(args.out, result.world, result.params, result.manifest, result.extra_arrays, write_extra)
    print(f"recgym fit: world written to {args.out}; "
          f'run it with gym.make("recgym/Fitted-v1", world_dir="{args.out}")')
    if report is not None:
        print(report.markdown(str(args.data)), end="")
        print(f"report: {args.out / 'report.md'}, {args.out / 'report.png'}")
    return 0


def _env_options(args: argparse.Namespace) -> dict[str, Any]:
    options = dict(args.option)
    if args.mode is not None:
        options["mode"] = args.mode
    if args.data_dir is not None:
        options["data_dir"] = str(args.data_dir)
    if args.world_dir is not None:
        options["world_dir"] = str(args.world_dir)
    return options


def run_eval(args: argparse.Namespace) -> int:
    spec = get_agent(args.policy)
    options = _env_options(args)
    if args.checkpoint is not None:
        policy = load_agent(args.policy, args.checkpoint, world=make_eval_env(args.env, 1, **options).world)
    elif spec.trainable and spec.policy is None:
        raise ValueError(f"policy {args.policy!r} needs --checkpoint (train one with `recgym train --agent {args.policy}`)")
    else:
        policy = make_policy(args.policy)
    result = evaluate(policy, args.env, episodes=args.episodes, seed=args.seed, num_envs=args.num_envs, **options)
    extra = {}
    if args.policy in ("novelty-hrl", "hrl4pfg") and args.checkpoint is not None:  # scored against the simulator's truth
        from recgym.agents.hrl_agents import method_summary

        extra = method_summary(args.policy, policy, result, args.env, args.episodes, args.seed, args.num_envs,
                               **options)
        result.summary.update(extra)
        result.ci95.update(dict.fromkeys(extra, float("nan")))
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print_table({args.policy: result}, title=f"{args.env} ({args.episodes} episodes, seed {args.seed})")
        for key, value in extra.items():
            print(f"{key}: {value:.3f}")
    return 0


def run_train(args: argparse.Namespace) -> int:
    writable_dir(args.logdir, "--logdir")
    # every trainable agent takes it (DSRM stage I's logging too); train_agent refuses the untrainable ones
    reset = {} if args.catalogue_reset_every is None else {"catalogue_reset_every": args.catalogue_reset_every}
    _, path = train_agent(args.agent, args.env, args.timesteps, seed=args.seed, logdir=args.logdir,
                          num_envs=args.num_envs, progress_bar=True, eval_episodes=args.episodes,
                          env_options=_env_options(args), **reset)
    print(f"checkpoint: {path}\nTensorBoard: tensorboard --logdir {path if path.is_dir() else path.parent}")
    return 0


def compare(names: list[str], env: str, episodes: int, timesteps: int, seed: int, logdir: Path, num_envs: int,
            env_options: dict[str, Any]) -> dict[str, EvaluationResult]:
    """Train the trainable agents among ``names``, evaluate all on the same seed, log the comparison."""
    for name in names:
        get_agent(name)  # fail on a typo before any training starts
    make_eval_env(env, 1, **env_options)  # and on a bad env id or option
    writable_dir(logdir, "--logdir")  # and on a log directory that cannot be written
    from recgym.agents.callbacks import log_comparison

    results = {}
    for name in names:
        if get_agent(name).trainable:
            policy, _ = train_agent(name, env, timesteps, seed=seed, logdir=logdir, num_envs=num_envs,
                                    progress_bar=True, eval_episodes=episodes, env_options=env_options)
        else:
            policy = make_policy(name)
        results[name] = evaluate(policy, env, episodes=episodes, seed=seed, num_envs=num_envs, **env_options)
    log_comparison(results, logdir)
    return results


def run_compare(args: argparse.Namespace) -> int:
    names = [name.strip() for name in args.policies.split(",") if name.strip()]
    if not names:
        raise ValueError(f"--policies is empty; valid: {', '.join(AGENTS)}")
    if args.seeds > 1:
        return compare_over_seeds(names, args)
    if args.workers is not None:
        raise ValueError("--workers runs the cells of --seeds N > 1 in parallel; with one seed, drop it")
    results = compare(names, args.env, args.episodes, args.timesteps, args.seed, args.logdir, args.num_envs,
                      _env_options(args))
    if args.json:
        print(json.dumps({name: result.to_dict() for name, result in results.items()}))
    else:
        print_table(results, title=f"{args.env} ({args.episodes} episodes, seed {args.seed})")
    return 0


def compare_over_seeds(names: list[str], args: argparse.Namespace) -> int:
    """``compare --seeds N``: the same comparison as an experiment grid (policies x seeds 0..N-1), aggregated
    with t-intervals over seeds; cells land in ``LOGDIR/compare/<digest of env, options and sizes>``."""
    import hashlib

    from recgym.experiments import ExperimentConfig, Size

    options = _env_options(args)
    size = Size(seeds=args.seeds, timesteps=args.timesteps, episodes=args.episodes, num_envs=args.num_envs)
    digest = hashlib.sha1(json.dumps([args.env, options, list(vars(size).values())], sort_keys=True).encode())
    outdir = args.logdir / "compare" / digest.hexdigest()[:10]
    config = ExperimentConfig(name="compare", methods=tuple(names), envs=(args.env,), options=options, full=size)
    rows = run_grid(config, outdir, size="full", workers=args.workers, torch_threads=args.torch_threads)
    if rows is None:
        return 2
    if args.json:
        print(json.dumps(rows))
    else:
        print((outdir / "results.md").read_text(), end="")
        print(f"mean ± 95% t-interval over {args.seeds} seeds; cells, tables and TensorBoard logs in {outdir}")
    return 0


def run_grid(config: ExperimentConfig, outdir: Path, **kwargs: Any) -> list[dict[str, Any]] | None:
    """:func:`recgym.experiments.run_experiment` into ``outdir``; its rows, or ``None`` after printing one
    ``recgym: error:`` line per failed cell (the other cells are stored; rerunning retries only the failed)."""
    from recgym.experiments import CellsFailed, run_experiment

    try:
        return run_experiment(config, outdir=outdir, **kwargs)
    except CellsFailed as error:
        for cell_id, reason in error.failures.items():
            print(f"recgym: error: cell {cell_id} failed: {reason} (the other cells are stored in {outdir}; "
                  "rerun to retry the failed ones)", file=sys.stderr)
        return None


def run_experiment(args: argparse.Namespace) -> int:
    from recgym.experiments import load_config, results_dir

    config = load_config(args.config)
    outdir = args.outdir or results_dir(config, args.size)
    ray_options = {"address": args.address} if args.backend == "ray" else {}
    subsets = {key: getattr(args, key).split(",") for key in ("methods", "envs") if getattr(args, key)}
    rows = run_grid(config, outdir, size=args.size, backend=args.backend, torch_threads=args.torch_threads,
                    workers=args.workers, **subsets, **ray_options)
    if rows is None:
        return 2
    print((outdir / "results.md").read_text(), end="")
    print(f"{len(rows)} rows; tables, pareto.png and TensorBoard logs in {outdir}")
    return 0


def run_results(args: argparse.Namespace) -> int:
    from recgym.experiments import V1_RESULTS, write_v1_section, write_verdicts

    section = write_v1_section(args.doc, args.root or V1_RESULTS)
    verdicts = write_verdicts(args.readme, args.root or V1_RESULTS)
    print(section, end="")
    print(verdicts)
    print(f"v1 section of {args.doc} and verdicts of {args.readme} rewritten from the cells under {args.root or V1_RESULTS}")
    return 0


def run_demo(args: argparse.Namespace) -> int:
    print(f"recgym demo: PPO trained for {args.timesteps} steps on {DEFAULT_ENV} (64 batched sessions), "
          f"then {', '.join(DEMO_POLICIES)} evaluated on {args.episodes} episodes (NX_0, true rewards).")
    results = compare(list(DEMO_POLICIES), DEFAULT_ENV, args.episodes, args.timesteps, args.seed, args.logdir, 64, {})
    print_table(results, title=f"{DEFAULT_ENV} ({args.episodes} episodes, seed {args.seed})")
    print(f"TensorBoard logs: tensorboard --logdir {args.logdir}")
    return 0


def print_table(results: dict[str, EvaluationResult], title: str, width: int = TERMINAL_WIDTH) -> None:
    """One row per policy; ``±`` is the 95% CI half-width where the metric has one.

    The metric columns are split, in order, over as many stacked tables as it takes for each to fit
    ``width`` terminal columns; every table repeats the policy column.
    """
    from rich.console import Console
    from rich.measure import Measurement
    from rich.table import Table

    # the v1-only columns (emerging_creator_share) where every result has them; v0 tables are unchanged
    keys = [*METRICS, *(key for key in V1_METRICS if all(key in result.summary for result in results.values()))]
    cells = {name: {key: f"{result.summary[key]:.3f}" + (f" ±{half:.2f}" if (half := result.ci95[key]) == half else "")
                    for key in keys} for name, result in results.items()}

    def table(keys: list[str], title: str | None) -> Table:
        table = Table(title=title)
        table.add_column("policy")
        for key in keys:
            table.add_column(key, justify="right")
        for name, row in cells.items():
            table.add_row(name, *(row[key] for key in keys))
        return table

    console = Console(width=width)
    unbounded = console.options.update_width(10 * width)
    groups: list[list[str]] = [[]]
    for key in keys:
        if groups[-1] and Measurement.get(console, unbounded, table([*groups[-1], key], None)).maximum > width:
            groups.append([])
        groups[-1].append(key)
    for index, keys in enumerate(groups):
        console.print(table(keys, title if index == 0 else None))


if __name__ == "__main__":
    raise SystemExit(main())
