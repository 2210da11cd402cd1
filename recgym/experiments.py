"""Declarative experiment grids: methods x seeds x envs x settings under one protocol.

A config is an :class:`ExperimentConfig` loaded from YAML (:func:`load_config`: a path, or the name of a
config bundled with the package in ``recgym/configs/``, :func:`bundled_configs`). :func:`run_experiment`
runs every cell of the grid (training the trainable agents; in ``workers`` parallel processes if asked),
writes ``OUTDIR/<cell-id>.json`` per cell as soon as it finishes, with the cell's full configuration (a
cell whose JSON holds the same configuration is skipped: runs are resumable, and a grid can be completed
over several runs; one that holds another configuration is refused, never reused or overwritten),
logs the cell's summary as TensorBoard scalars, then aggregates over seeds (mean and 95% t-interval)
into ``results.md`` / ``results.csv`` and a Pareto plot (utility vs 1 - Gini) ``pareto.png``.

A cell on the env id ``recgym/Population-v0`` is a population rollout instead of an episode evaluation
(:func:`recgym.evaluation.population_rollout`): trainable methods train on the world's vector env with the
same options, then serve every present user of the population for ``platform_steps`` steps; the cell
records the platform's fairness over time (JSON, TensorBoard scalars per step, ``fairness_over_time.png``)
and the table gets :data:`POPULATION_COLUMNS`.

A v1 table (every env a v1 world, :attr:`ExperimentConfig.is_v1`; issue #19's protocol) gets
:data:`V1_COLUMNS`: each cell is also scored against the reference front of its env and setting
(:func:`cell_front`, measured once on the cells' evaluation seeds and cached in ``OUTDIR/fronts/``) and
records its wall time; the Pareto plot draws the front and each method's mean with 95% error bars. Full
runs of v1 tables store their cells in the committed :data:`V1_RESULTS`, and :func:`write_v1_section`
rebuilds ``docs/results.md``'s v1 section from whatever cells are stored (the rest marked pending).

Work computed once (:func:`run_cells`, :func:`reuse_cells`): the missing fronts and the cells share the worker
pool (a cell waits for its front), the DSRM agents of one env, setting and seed share one stage I (``OUTDIR/stage1/``)
and a cell another table already stored with the same resolved options, method, seed and sizes is taken from it.
"""

from __future__ import annotations

import csv
import dataclasses
import importlib.resources
import itertools
import json
import multiprocessing
import re
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from recgym.agents.checkpoints import writable_dir, write_json_atomically
from recgym.envs import ENV_IDS, FITTED_ID, POPULATION_ID, POPULATION_V1_ID
from recgym.evaluation import FAMILIARITY_METRICS, LIFETIME_METRICS
from recgym.metrics import path_value_at, t_ci95
from recgym.params import V1_DEFAULTS, SimParams
from recgym.plotting import agg_figure, front_figure
from recgym.threads import default_torch_threads, set_torch_threads

#: Summary columns written per cell and aggregated over seeds.
COLUMNS = ("R_cum", "R_each", "length", "gini", "exposure_gap", "coverage", "novelty")
#: Summary columns of population cells (:class:`recgym.evaluation.PopulationResult` summary).
POPULATION_COLUMNS = ("R_each", "sessions", "length", "gini", "popularity_gini", "long_tail_share")
#: Columns of the v1 tables (issue #19's protocol: agents learn from the logs, scored on the truth): true
#: R_cum (on ``episode: lifetime`` settings: the user's lifetime value), R_each, length, exposure Gini, DPFR and
#: the distance to the reference front (:mod:`recgym.pareto`), the emerging creators' exposure share and the
#: cell's wall time in seconds (training + evaluation).
V1_COLUMNS = ("R_cum", "R_each", "length", "gini", "dpfr", "front_distance", "emerging_creator_share", "wall_s")
#: Columns of v1 tables with lifetime settings (empty on their session settings), measured by the cell's one
#: evaluation (:data:`recgym.evaluation.LIFETIME_METRICS`, :class:`recgym.evaluation.LifetimeGuidance`): the mean
#: over lifetimes of the user's acquired taste at its last step minus at its first (HRL4PFG's progressive
#: guidance) and retention, the sessions a user starts per 7 days of lifetime (satisfied users come back
#: sooner). The lifetime value is R_cum there.
LIFETIME_COLUMNS = LIFETIME_METRICS
#: Columns of v1 tables with ``familiarity: true`` (issue #19's LAFB comparison), measured by the cell's one
#: evaluation (``evaluate(familiarity=True)``, :data:`recgym.evaluation.FAMILIARITY_METRICS`): the mean logged play
#: time per episode in seconds and the share of it on creators unfamiliar to the user when recommended.
FAMILIARITY_COLUMNS = FAMILIARITY_METRICS
#: The population ids: a cell on one is a population rollout (Population-v1 needs a v1 world).
POPULATION_IDS = (POPULATION_ID, POPULATION_V1_ID)
#: Keys of a config's ``population:`` mapping (:class:`recgym.envs.population.PopulationEnv` arguments).
POPULATION_KEYS = ("world", "arrival_rate")
SIZES = ("smoke", "full")


@dataclass(frozen=True)
class Size:
    """How big one run is: seeds, training timesteps, evaluation episodes, sessions stepped at once
    (the population's concurrent user slots), platform steps of a population rollout."""

    seeds: int = 3
    timesteps: int = 20_000
    episodes: int = 200
    num_envs: int = 64
    platform_steps: int = 100


@dataclass(frozen=True)
class ExperimentConfig:
    """One experiment grid.

    methods: registered agent names (:data:`recgym.agents.AGENTS`).
    envs: env ids. settings: named simulator-option sets (each a dict of SimParams fields); the grid
        is methods x seeds x envs x settings. options: simulator options shared by every setting
        (with ``recgym/Fitted-v1``, the only env then, also ``world_dir``: the fitted world's folder).
    population: ``world`` and ``arrival_rate`` of ``recgym/Population-v0`` cells.
    smoke, full: :class:`Size` per ``--size``.
    familiarity: v1 episode tables only: the cells also record :data:`FAMILIARITY_COLUMNS` (``familiarity: True``
        in their configuration too) and the table compares the familiarity post-rankers at equal total watch time
        (:func:`equal_watch_time`).
    """

    name: str
    methods: tuple[str, ...]
    envs: tuple[str, ...]
    settings: dict[str, dict[str, Any]] = field(default_factory=lambda: {"default": {}})
    options: dict[str, Any] = field(default_factory=dict)
    population: dict[str, Any] = field(default_factory=lambda: {"world": "kuairec", "arrival_rate": 1.0})
    smoke: Size = Size(seeds=2, timesteps=2_048, episodes=32, num_envs=16)
    full: Size = Size()
    description: str = ""
    familiarity: bool = False

    def size(self, name: str) -> Size:
        if name not in SIZES:
            raise ValueError(f"unknown size {name!r}; valid: {', '.join(SIZES)}")
        return getattr(self, name)

    @property
    def is_population(self) -> bool:
        return any(env in POPULATION_IDS for env in self.envs)

    @property
    def is_v1(self) -> bool:
        """A table of issue #19's protocol: every env is a registered v1 world (the population's world too).
        ``recgym/Fitted-v1`` tables keep the v0 columns: the reference front runs registered worlds only."""
        if self.is_population:
            return self.population["world"].endswith("-v1")
        return all(ENV_IDS.get(env, "").endswith("-v1") for env in self.envs)

    @property
    def has_lifetimes(self) -> bool:
        """A v1 episode table with an ``episode: lifetime`` setting: it gets :data:`LIFETIME_COLUMNS`."""
        return self.is_v1 and not self.is_population and any(
            {**self.options, **options}.get("episode") == "lifetime" for options in self.settings.values())

    @property
    def columns(self) -> tuple[str, ...]:
        if self.is_population:
            return (*POPULATION_COLUMNS, "wall_s") if self.is_v1 else POPULATION_COLUMNS
        if not self.is_v1:
            return COLUMNS
        extra = (*(LIFETIME_COLUMNS if self.has_lifetimes else ()), *(FAMILIARITY_COLUMNS if self.familiarity else ()))
        return (*V1_COLUMNS[:-1], *extra, V1_COLUMNS[-1])

    def training_env(self, env: str) -> str:
        """The Gymnasium id a cell on ``env`` trains on (the population's world's vector env)."""
        if env not in POPULATION_IDS:
            return env
        return next(env_id for env_id, world in ENV_IDS.items() if world == self.population["world"])


def _fail(source: str, key: str, problem: str) -> ValueError:
    return ValueError(f"{source}: {key}: {problem}")


def bundled_configs() -> dict[str, Path]:
    """Name -> path of the configs bundled with the package (``recgym/configs/*.yaml``)."""
    folder = Path(str(importlib.resources.files("recgym") / "configs"))
    return {path.stem: path for path in sorted(folder.glob("*.yaml"))}


def config_path(config: str | Path) -> Path:
    """The YAML file of ``config``: an existing path, else the name of a bundled config (``dorl_table``
    or ``dorl_table.yaml``); a one-line ``ValueError`` listing the bundled names otherwise."""
    path = Path(config)
    if path.is_file():
        return path
    bundled = bundled_configs()
    name = path.name.removesuffix(".yaml")
    if path.name == str(config) and name in bundled:  # a bare name, not a path into some folder
        return bundled[name]
    raise ValueError(f"experiment config {str(config)!r} not found: neither a file nor a bundled config "
                     f"({', '.join(bundled)})")


#: Where full runs of v1 tables store their cells: a committed directory, so a table completes over sessions.
V1_RESULTS = Path("results") / "v1"


def results_dir(config: ExperimentConfig, size: str) -> Path:
    """The default output directory of a run: ``results/v1/<config name>`` for the full size of a v1 table
    (committed: :data:`V1_RESULTS`), else ``results/<config name>/<size>`` (git-ignored)."""
    if config.is_v1 and size == "full":
        return V1_RESULTS / config.name
    return Path("results") / config.name / size


#: Top-level keys of a config and the YAML type each must have (sizes are checked on their own).
CONFIG_TYPES: dict[str, tuple[type, str]] = {
    "name": (str, "a string"), "description": (str, "a string"), "methods": (list, "a non-empty list"),
    "envs": (list, "a non-empty list"), "settings": (dict, "a non-empty mapping name -> simulator options"),
    "options": (dict, "a mapping of simulator options"), "population": (dict, "a mapping"),
    "familiarity": (bool, "true or false"),
}


def _read_yaml(path: Path) -> Any:
    """The parsed YAML of ``path``; a syntax error is a one-line ValueError naming file, line and column."""
    try:
        return yaml.safe_load(path.read_text())
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        raise ValueError(f"{where}: malformed YAML: {error.problem or error.context}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: malformed YAML: {' '.join(str(error).split())}") from None


def load_config(path: str | Path) -> ExperimentConfig:
    """Read and validate a YAML config (a path or a bundled config's name, :func:`config_path`); any
    problem is a one-line ValueError naming the file and the key (or line) and what was expected."""
    from recgym.agents import AGENTS

    path = config_path(path)
    raw = _read_yaml(path)
    raw = {} if raw is None else raw
    source = str(path)
    if not isinstance(raw, dict):
        raise _fail(source, "<top>", f"must be a mapping of keys, got {type(raw).__name__}")
    valid = {f.name for f in dataclasses.fields(ExperimentConfig)}
    for key in raw:
        if key not in valid:
            raise _fail(source, key, f"unknown key; valid: {', '.join(sorted(valid))}")
    for key, (kind, expected) in CONFIG_TYPES.items():
        if key in raw and not isinstance(raw[key], kind):
            raise _fail(source, key, f"must be {expected}, got {type(raw[key]).__name__} {raw[key]!r:.60}")
    raw.setdefault("name", path.stem)
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", raw["name"]):
        raise _fail(source, "name", f"must be letters, digits, '_', '-' or '.' (it names the results folder), "
                                    f"got {raw['name']!r}")
    for key in ("methods", "envs"):
        if not isinstance(raw.get(key), list) or not raw[key]:
            raise _fail(source, key, "must be a non-empty list")
        for item in raw[key]:
            if not isinstance(item, str):
                raise _fail(source, key, f"must list names (strings), got {type(item).__name__} {item!r}")
        raw[key] = tuple(raw[key])
    for method in raw["methods"]:
        if method not in AGENTS:
            raise _fail(source, "methods", f"unknown agent {method!r}; valid: {', '.join(AGENTS)}")
    valid_envs = (*ENV_IDS, FITTED_ID, *POPULATION_IDS)
    for env in raw["envs"]:
        if env not in valid_envs:
            raise _fail(source, "envs", f"unknown env {env!r}; valid: {', '.join(valid_envs)}")
    options = raw.get("options", {})
    if (FITTED_ID in raw["envs"]) != ("world_dir" in options) or (FITTED_ID in raw["envs"] and len(raw["envs"]) > 1):
        raise _fail(source, "envs", f"{FITTED_ID} runs alone, with options.world_dir: WORLD_DIR (a folder written "
                                    f"by `recgym fit`), and world_dir applies to it only")
    population_env = next((env for env in raw["envs"] if env in POPULATION_IDS), None)
    if population_env is not None and len(raw["envs"]) > 1:
        raise _fail(source, "envs", f"{population_env} has its own table columns; put it in a config of its own")
    default_world = "kuairec-v1" if population_env == POPULATION_V1_ID else "kuairec"
    population = {"world": default_world, "arrival_rate": 1.0, **(raw.get("population") or {})}
    if set(population) - set(POPULATION_KEYS):
        raise _fail(source, "population", f"unknown keys {sorted(set(population) - set(POPULATION_KEYS))}; "
                                          f"valid: {', '.join(POPULATION_KEYS)}")
    worlds = [world for world in ENV_IDS.values() if population_env != POPULATION_V1_ID or world.endswith("-v1")]
    if population["world"] not in worlds:
        raise _fail(source, "population.world", f"unknown world {population['world']!r}"
                                                f"{' for ' + population_env if population_env else ''}; "
                                                f"valid: {', '.join(worlds)}")
    rate = population["arrival_rate"]
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate <= 1:
        raise _fail(source, "population.arrival_rate", f"must be in (0, 1], got {rate!r}")
    raw["population"] = population
    simulator_options = {key: value for key, value in options.items() if key != "world_dir"}
    settings = raw.get("settings", {"default": {}})
    if not settings:
        raise _fail(source, "settings", "must be a non-empty mapping name -> simulator options")
    for name, opts in settings.items():
        if opts is not None and not isinstance(opts, dict):
            raise _fail(source, f"settings.{name}", f"must be a mapping of simulator options, got "
                                                    f"{type(opts).__name__} {opts!r:.60}")
        try:
            SimParams.from_kwargs(**{**simulator_options, **(opts or {})})
        except (TypeError, ValueError) as error:
            raise _fail(source, f"settings.{name}", str(error)) from None
    raw["settings"] = {str(k): dict(v or {}) for k, v in settings.items()}
    size_fields = {f.name for f in dataclasses.fields(Size)}
    for size in SIZES:
        if size in raw:
            given = raw[size]
            if not isinstance(given, dict) or set(given) - size_fields:
                raise _fail(source, size, f"must be a mapping with keys from {', '.join(sorted(size_fields))}")
            for key, value in given.items():
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise _fail(source, f"{size}.{key}", f"must be a positive integer, got {value!r}")
            raw[size] = Size(**given)
    config = ExperimentConfig(**raw)
    if config.familiarity and (not config.is_v1 or config.is_population):
        raise _fail(source, "familiarity", "needs a v1 episode table (every env a registered v1 world, no population)")
    return config


@dataclass(frozen=True)
class Cell:
    """One run of the grid."""

    method: str
    env: str
    setting: str
    seed: int

    @property
    def id(self) -> str:
        return f"{self.method}__{self.env.split('/')[-1]}__{self.setting}__s{self.seed}"


def cells(config: ExperimentConfig, size: Size) -> list[Cell]:
    """Every cell of the grid, methods x envs x settings x seeds."""
    return [Cell(*combo) for combo in itertools.product(config.methods, config.envs, config.settings, range(size.seeds))]


def cell_config(config: ExperimentConfig, size: Size, cell: Cell) -> dict[str, Any]:
    """Everything that decides a cell's result: method, env, setting, seed, the simulator options, the
    size, (population cells) the population, (trained cells of v1 tables) ``catalogue_reset_every``
    (:func:`catalogue_reset_every`) and (``familiarity`` tables) ``familiarity: True`` (the cell measured
    :data:`FAMILIARITY_COLUMNS`); stored in the cell's JSON as ``config``."""
    reset = catalogue_reset_every(config, size, cell)
    return {**dataclasses.asdict(cell), "options": {**config.options, **config.settings[cell.setting]},
            "size": dataclasses.asdict(size), "population": config.population if config.is_population else None,
            **({"catalogue_reset_every": reset} if reset is not None else {}),
            **({"familiarity": True} if config.familiarity else {})}


#: Keys :func:`cell_config` gained with a change of the training or measurement protocol: a stored cell whose
#: configuration lacks one (or holds another value) but is otherwise the expected one ran under the older protocol;
#: it is stale, read as missing (:func:`read_cell`): the run runs it again and replaces its JSON.
PROTOCOL_KEYS = ("catalogue_reset_every", "familiarity")


def catalogue_reset_every(config: ExperimentConfig, size: Size, cell: Cell) -> int | None:
    """N of issue #19's periodic catalogue reset (docs/experiments.md, "The catalogue ages too"): while a trained
    cell of a v1 table trains, its simulator's shared counters are cleared every N user-steps, N = the user-steps
    the cell's evaluation lets them grow to, its cap (deterministic and the same for every policy, where the mean
    length depends on the policy): ``episodes x max_turn`` of the resolved options on session settings,
    ``episodes x lifetime_sessions x max_turn`` on lifetime settings, ``platform_steps x n_users`` (the
    population's slots, ``num_envs``) on population tables. ``None`` for untrained cells (controls, online
    bandits), agents whose trainer takes no training options (:data:`CURVE_TRAINERS`) and v0 tables."""
    from recgym.agents import get_agent

    trainer = get_agent(cell.method).train
    if not config.is_v1 or trainer is None or trainer.partition(":")[0] not in CURVE_TRAINERS:
        return None
    if config.is_population:
        return size.platform_steps * size.num_envs
    params = resolved_params(cell.env, {**config.options, **config.settings[cell.setting]})
    sessions = params.lifetime_sessions if params.episode == "lifetime" else 1
    return size.episodes * sessions * params.max_turn


def read_cell(config: ExperimentConfig, size: Size, cell: Cell, outdir: Path) -> dict[str, Any] | None:
    """The stored record of ``cell`` in ``outdir``, or ``None`` when there is none yet. A record that
    cannot be read, or that was produced by another configuration of the cell (another size, other
    options, ...), is a one-line ``ValueError``: it is neither reused nor overwritten."""
    path = outdir / f"{cell.id}.json"
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
    except (ValueError, OSError) as error:
        raise ValueError(f"{path}: unreadable cell result ({error}); delete it to rerun the cell") from None
    expected = cell_config(config, size, cell)
    stored = record.get("config") if isinstance(record, dict) else None
    if isinstance(stored, dict) and stored != expected and \
            {**stored, **{key: expected[key] for key in PROTOCOL_KEYS if key in expected}} == expected:
        return None  # stale: run under an older training protocol (PROTOCOL_KEYS), run again
    if stored != expected:
        differing = sorted(key for key in expected if not isinstance(stored, dict) or stored.get(key) != expected[key])
        raise ValueError(f"{path}: this cell was run with another configuration (differs in: "
                         f"{', '.join(differing)}); use another output directory, or delete it to rerun the cell")
    return record


def write_cell(cell: Cell, record: dict[str, Any], outdir: Path) -> None:
    """Write ``outdir/<cell-id>.json`` whole or not at all (through a temporary file)."""
    write_json_atomically(outdir / f"{cell.id}.json", record)


def code_version() -> str:
    """The code a cell ran: ``git describe --always --dirty`` of the package's checkout (``-dirty``: with
    uncommitted changes), or ``recgym <version>`` outside a git checkout."""
    import subprocess

    from recgym import __version__

    try:
        described = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=Path(__file__).parent,
                                   capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        described = None
    if described is None or described.returncode != 0:
        return f"recgym {__version__}"
    return described.stdout.strip()


#: A cell of seed s is evaluated with seed ``EVAL_SEED + s``; the reference fronts on the same seeds (paired).
EVAL_SEED = 10_000


def front_file(outdir: Path, env: str, setting: str) -> Path:
    """Where the reference front of ``env`` under ``setting`` is cached: ``OUTDIR/fronts/<env>__<setting>.json``."""
    return outdir / "fronts" / f"{env.split('/')[-1]}__{setting}.json"


def front_settings(config: ExperimentConfig, size: Size, env: str, setting: str) -> dict[str, Any]:
    """What a cell's reference front is measured on: the cells' env, options, episodes, evaluation seeds and
    batch (exposure Gini depends on the number of episodes, so the front is per size)."""
    return {"env": env, "options": {**config.options, **config.settings[setting]}, "episodes": size.episodes,
            "seeds": size.seeds, "seed": EVAL_SEED, "num_envs": size.num_envs}


def stored_front(config: ExperimentConfig, size: Size, env: str, setting: str, outdir: Path) -> Any:
    """The cached reference front of the cells on ``env`` under ``setting`` (:func:`front_file`), or ``None`` when
    it is not measured yet; a cached front of other settings (another size or options) is a one-line
    ``ValueError``, as a cell's."""
    from recgym.pareto import Front

    path = front_file(outdir, env, setting)
    if not path.exists():
        return None
    expected = front_settings(config, size, env, setting)
    stored = json.loads(path.read_text())
    if {key: stored.get(key) for key in expected} != expected:
        raise ValueError(f"{path}: this reference front was measured with other settings; use another output "
                         f"directory, or delete it to measure it again")
    return Front.from_dict(stored)


def cell_front(config: ExperimentConfig, size: Size, env: str, setting: str, outdir: Path) -> Any:
    """The reference front (:func:`recgym.pareto.reference_front`, its default lambdas) of the cells on ``env``
    under ``setting``: :func:`stored_front`, else measured once and cached in :func:`front_file`."""
    from recgym.pareto import reference_front

    cached = stored_front(config, size, env, setting, outdir)
    if cached is not None:
        return cached
    expected = front_settings(config, size, env, setting)
    path = front_file(outdir, env, setting)
    front = reference_front(**{key: value for key, value in expected.items() if key != "options"},
                            **expected["options"])
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomically(path, front.to_dict())
    return front


#: Evaluations on the truth during a v1 training run (its learning curve in TensorBoard and the cell JSON).
CURVE_POINTS = 5
#: Modules whose registered train functions take :func:`recgym.agents.flat.train`'s ``eval_freq`` /
#: ``eval_scorer`` (one :class:`~recgym.agents.callbacks.TruthCurve` for all) and ``catalogue_reset_every``
#: (:class:`~recgym.agents.callbacks.CatalogueReset`): flat, reward-shaped and recurrent SB3 agents and DORL
#: (through it) and the hierarchical agents (:func:`recgym.agents.hierarchy.train_hierarchy`).
CURVE_TRAINERS = ("recgym.agents.flat", "recgym.agents.shaped", "recgym.agents.recurrent", "recgym.agents.dorl",
                  "recgym.agents.hrl_agents")


def learning_curve_options(config: ExperimentConfig, size: Size, cell: Cell, outdir: Path) -> dict[str, Any]:
    """Training options that make a v1 cell's agent log its learning curve on the truth through
    :class:`recgym.agents.callbacks.TruthCurve`: ``eval/*`` scalars (true R_cum, Gini, ...) every
    ``timesteps / CURVE_POINTS`` steps on the cell's number of episodes, with ``eval/dpfr`` and
    ``eval/front_distance`` against the cell's reference front; the points go to the cell's JSON
    (``learning_curve``). Agents of :data:`CURVE_TRAINERS` only; ``{}`` for others and for population cells."""
    from recgym.agents import get_agent

    if config.is_population or get_agent(cell.method).train.partition(":")[0] not in CURVE_TRAINERS:
        return {}
    front = cell_front(config, size, cell.env, cell.setting, outdir)

    def scorer(result: Any) -> dict[str, float]:
        return {key: value for key, value in front.score(result).items() if key != "dominated"}

    return {"eval_episodes": size.episodes, "eval_freq": max(1, size.timesteps // CURVE_POINTS), "eval_scorer": scorer}


#: Where a run's DSRM agents share stage I (:func:`recgym.agents.hrl_agents.store_stage_one`), under its OUTDIR.
STAGE_ONE_DIR = "stage1"


def dsrm_agents() -> set[str]:
    """The registered agents that fit DSRM's stage I (``dsrm-hrl``, ``dsrm-flat`` and their constant-state twins):
    the same stage I for one env, options, seed and budget, fitted once per run folder."""
    from recgym.agents.hrl_agents import HRL_AGENTS

    return {name for name, (uses_dsrm, _, _) in HRL_AGENTS.items() if uses_dsrm}


def resolved_params(env: str, options: dict[str, Any]) -> SimParams | None:
    """The :class:`SimParams` a cell on ``env`` runs with (a v1 world's options over
    :data:`recgym.params.V1_DEFAULTS`, as its env resolves them), or ``None`` where the options do not decide the
    simulator alone (a fitted world's folder, a population) or do not resolve."""
    world = ENV_IDS.get(env)
    if world is None:
        return None
    try:
        return SimParams.from_kwargs(**({**V1_DEFAULTS, **options} if world.endswith("-v1") else options))
    except (TypeError, ValueError):
        return None


def cell_key(stored: dict[str, Any]) -> str | None:
    """What decides a cell's result, from its stored configuration (:func:`cell_config`): method, env, seed, sizes
    and the resolved simulator options compared field by field (:func:`resolved_params`), whatever the table and
    setting names; ``None`` for cells that are never shared (population and fitted-world cells)."""
    if stored.get("population") is not None or not isinstance(stored.get("options"), dict):
        return None
    params = resolved_params(stored.get("env", ""), stored["options"])
    if params is None:
        return None
    return json.dumps({"method": stored.get("method"), "env": stored["env"], "seed": stored.get("seed"),
                       "size": stored.get("size"), "params": dataclasses.asdict(params),
                       **{key: stored.get(key) for key in PROTOCOL_KEYS}}, sort_keys=True, default=str)


def reuse_cells(config: ExperimentConfig, size: Size, todo: list[Cell], outdir: Path, tables: Sequence[Path]) -> list[Cell]:
    """Store, as cells of ``outdir``, the cells of ``todo`` that another table in ``tables`` (folders of cell JSONs)
    already ran with an equal :func:`cell_key`: the record is copied with this cell's names and configuration and
    ``reused_from`` (table, setting, cell id of the original); the cell is not run again. Copies are not reused
    in turn. Returns the cells so stored."""
    keys = {cell_key(cell_config(config, size, cell)): cell for cell in todo}
    keys.pop(None, None)
    reused = []
    for table in tables:
        for path in sorted(Path(table).glob("*.json")) if keys and Path(table).resolve() != outdir.resolve() else ():
            try:
                source = json.loads(path.read_text())
            except (ValueError, OSError):
                continue
            if not isinstance(source, dict) or "reused_from" in source or not isinstance(source.get("config"), dict):
                continue
            cell = keys.pop(cell_key(source["config"]), None)
            if cell is None:
                continue
            record = {key: None for key in config.columns} | source | dataclasses.asdict(cell) | {
                "id": cell.id, "config": cell_config(config, size, cell),
                "reused_from": {"table": Path(table).name, "setting": source["setting"], "cell": source["id"]}}
            write_cell(cell, record, outdir)
            reused.append(cell)
    return reused


def reuse_fronts(config: ExperimentConfig, size: Size, missing: list[tuple[str, str]], outdir: Path,
                 tables: Sequence[Path]) -> list[tuple[str, str]]:
    """Store, as fronts of ``outdir``, the ``missing`` (env, setting) fronts that another table in ``tables`` already
    measured on the same env, episodes, seeds and batch with options that resolve to the same :class:`SimParams`
    (:func:`resolved_params`): copied with this table's options and ``reused_from`` (table, file). Returns those."""
    reused = []
    for env, setting in missing:
        expected = front_settings(config, size, env, setting)
        params = resolved_params(env, expected["options"])
        sources = (path for table in tables if Path(table).resolve() != outdir.resolve()
                   for path in sorted((Path(table) / "fronts").glob(f"{env.split('/')[-1]}__*.json")))
        for path in sources if params is not None else ():
            stored = json.loads(path.read_text())
            if any(stored.get(key) != value for key, value in expected.items() if key != "options") or \
                    resolved_params(env, stored.get("options") or {}) != params:
                continue
            target = front_file(outdir, env, setting)
            target.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomically(target, {**stored, "options": expected["options"],
                                           "reused_from": {"table": Path(path).parent.parent.name, "file": path.name}})
            reused.append((env, setting))
            break
    return reused


def reused_note(records: list[dict[str, Any] | None]) -> str:
    """One Markdown line naming where the table's reused cells (:func:`reuse_cells`) came from, per setting and
    source table; empty when every cell ran here."""
    counts: dict[tuple[str, str, str], int] = {}
    for record in records:
        if record is not None and record.get("reused_from"):
            source = record["reused_from"]
            key = (record["setting"], source["table"], source["setting"])
            counts[key] = counts.get(key, 0) + 1
    if not counts:
        return ""
    return ("Cells taken from another table (the same method, env, seed, sizes and simulator options field by field; "
            "not run again): " + "; ".join(f"`{setting}` from `{table}` `{origin}`: {count}"
                                           for (setting, table, origin), count in counts.items()) + ".")


def run_cell(config: ExperimentConfig, size: Size, cell: Cell, outdir: Path) -> dict[str, Any]:
    """Train (if trainable) and evaluate one cell; returns the JSON-ready record written to disk
    (with the cell's configuration, :func:`cell_config`). Population cells also record ``series``
    (platform metric -> per-step list) and log it per step. v1 cells also record ``dpfr``,
    ``front_distance`` and ``dominated`` against :func:`cell_front` (already cached by
    :func:`run_experiment`) and ``wall_s``. The DSRM agents share stage I through ``outdir/stage1/``
    (:func:`dsrm_agents`)."""
    from torch.utils.tensorboard import SummaryWriter

    from recgym.agents import get_agent, make_policy, train_agent
    from recgym.evaluation import evaluate, population_rollout

    start = time.monotonic()
    options = {**config.options, **config.settings[cell.setting]}
    logdir = outdir / "tb" / cell.id
    if get_agent(cell.method).trainable:
        curve = learning_curve_options(config, size, cell, outdir) if config.is_v1 else {}
        shared = {"stage_one_dir": outdir / STAGE_ONE_DIR} if cell.method in dsrm_agents() else {}
        reset = catalogue_reset_every(config, size, cell)
        policy, _ = train_agent(cell.method, config.training_env(cell.env), size.timesteps, seed=cell.seed,
                                logdir=logdir, num_envs=size.num_envs, env_options=options, **curve, **shared,
                                **({"catalogue_reset_every": reset} if reset is not None else {}))
    else:
        policy = make_policy(cell.method)
    if config.is_population:
        rollout = population_rollout(policy, size.platform_steps, seed=EVAL_SEED + cell.seed, n_users=size.num_envs,
                                     **config.population, **options)
        summary = rollout.summary
        record = {**dataclasses.asdict(cell), "id": cell.id, **summary,
                  "series": {key: [float(v) for v in values] for key, values in rollout.series.items()}}
    else:
        result = evaluate(policy, cell.env, episodes=size.episodes, seed=EVAL_SEED + cell.seed,
                          num_envs=size.num_envs, familiarity=config.familiarity, **options)
        scores = cell_front(config, size, cell.env, cell.setting, outdir).score(result) if config.is_v1 else {}
        if config.has_lifetimes:  # measured by the same evaluation on lifetime settings; None on session settings
            scores.update({key: result.summary.get(key) for key in LIFETIME_COLUMNS})
        summary = {**result.summary, **scores}
        record = {**dataclasses.asdict(cell), "id": cell.id, **result.to_dict(), **scores,
                  "episodes": {key: [float(v) for v in result.episodes[key]] for key in ("R_cum", "length")}}
        if getattr(policy, "learning_curve", None) is not None:  # the agent's evaluations on the truth while training
            record["learning_curve"] = policy.learning_curve
    if config.is_v1:
        summary["wall_s"] = record["wall_s"] = time.monotonic() - start
        record["code"] = code_version()
    record["config"] = cell_config(config, size, cell)
    with SummaryWriter(str(logdir / "eval")) as writer:
        for key in config.columns:
            if summary[key] is not None:
                writer.add_scalar(f"eval/{key}", summary[key], 0)
        for key, values in record.get("series", {}).items():
            for step, value in enumerate(values, start=1):
                writer.add_scalar(f"population/{key}", value, step)
    return record


def run_and_write_cell(config: ExperimentConfig, size: Size, cell: Cell, outdir: Path) -> dict[str, Any]:
    """:func:`run_cell`, then :func:`write_cell`: the cell's result is stored as soon as it exists."""
    record = run_cell(config, size, cell, outdir)
    write_cell(cell, record, outdir)
    return record


class CellsFailed(RuntimeError):
    """Cells of a grid raised; every other cell ran and its result is stored (rerun to retry the failed
    ones). ``failures``: cell id -> one-line reason; ``str()`` is one line per failed cell."""

    def __init__(self, failures: dict[str, str]) -> None:
        self.failures = failures
        super().__init__("\n".join(f"cell {cell_id} failed: {reason}" for cell_id, reason in failures.items()))


def _one_line(error: BaseException, limit: int = 300) -> str:
    """``Type: message`` on one line, at most ``limit`` characters."""
    text = f"{type(error).__name__}: {' '.join(str(error).split())}"
    return text if len(text) <= limit else text[:limit - 3] + "..."


@dataclass(frozen=True)
class Job:
    """One unit of a local run (:func:`run_cells`): a ``cell``, or (``cell`` ``None``) the reference front of ``env``
    under ``setting``. It starts once the jobs in ``needs`` succeeded (a cell's front: it fails unrun when one
    failed) and those in ``after`` finished (the DSRM cell that fits the stage I it shares)."""

    id: str
    cell: Cell | None = None
    env: str = ""
    setting: str = ""
    needs: tuple[str, ...] = ()
    after: tuple[str, ...] = ()


def plan_jobs(config: ExperimentConfig, size: Size, todo: list[Cell], outdir: Path,
              fronts: Sequence[tuple[str, str]] = ()) -> list[Job]:
    """The jobs of a run in the order they start: setting by setting (the config's order: its last setting
    runs last), the setting's missing reference fronts (``fronts``: (env, setting) pairs), then its cells in grid
    order. A cell waits for its missing front; of the DSRM cells (:func:`dsrm_agents`) that share a stage I not stored
    yet (one stage I file: env, setting, seed and the training's catalogue reset, :func:`catalogue_reset_every`), the
    first fits it and the others wait for it, then read it."""
    from recgym.agents.hrl_agents import stage_one_file, stage_one_settings

    fitters: dict[Path, str] = {}
    dsrm = dsrm_agents() & set(config.methods)
    jobs = []
    for setting in config.settings:
        front_ids = {env: f"front:{env.split('/')[-1]}__{setting}" for env, named in fronts if named == setting}
        jobs += [Job(job_id, env=env, setting=setting) for env, job_id in front_ids.items()]
        for cell in (cell for cell in todo if cell.setting == setting):
            after: tuple[str, ...] = ()
            if cell.method in dsrm:
                options = {**config.options, **config.settings[setting]}
                stage = stage_one_file(outdir / STAGE_ONE_DIR, stage_one_settings(
                    config.training_env(cell.env), size.timesteps, cell.seed, options, "auto",
                    catalogue_reset_every(config, size, cell)))
                if not stage.exists():
                    fitter = fitters.setdefault(stage, cell.id)
                    after = () if fitter == cell.id else (fitter,)
            needs = (front_ids[cell.env],) if cell.env in front_ids else ()
            jobs.append(Job(cell.id, cell, cell.env, setting, needs, after))
    return jobs


def run_job(config: ExperimentConfig, size: Size, job: Job, outdir: Path) -> None:
    """Run one :class:`Job`: measure and cache its front (:func:`cell_front`), or run and store its cell."""
    if job.cell is None:
        cell_front(config, size, job.env, job.setting, outdir)
    else:
        run_and_write_cell(config, size, job.cell, outdir)


def run_cells(config: ExperimentConfig, size: Size, todo: list[Cell], outdir: Path, progress: bool = True,
              workers: int = 1, torch_threads: int | None = None, fronts: Sequence[tuple[str, str]] = ()) -> None:
    """Run the cells without a JSON result yet and the missing reference fronts (``fronts``: (env, setting)
    pairs) locally, in :func:`plan_jobs`'s order, with a progress bar over them; each cell's JSON is written
    when that cell finishes, each front when it is measured.

    ``workers`` == 1: in this process, one job after the other, setting its torch threads to ``torch_threads``
    when given. ``workers`` > 1: the jobs share that many worker processes (started with ``spawn``: a child forked
    after torch's thread pool started can hang), each setting its torch threads once at start (``torch_threads``,
    default :func:`recgym.threads.default_torch_threads` of ``workers``, which splits the cores between them); a
    job is handed to a worker when one is free and the jobs it waits for (:class:`Job`) are done, so fronts and
    cells run side by side. A cell seeds itself, so its result does not depend on the worker count (at equal torch
    threads). A job that raises does not stop the others (a cell whose front failed is not run);
    :class:`CellsFailed` names the failed ones at the end, chained to the first failure.
    """
    from tqdm import tqdm

    jobs = plan_jobs(config, size, todo, outdir, fronts)
    errors: dict[str, BaseException] = {}

    def unmet(job: Job) -> BaseException | None:
        failed = next((need for need in job.needs if need in errors), None)
        return None if failed is None else RuntimeError(f"not run: {failed} failed")

    with tqdm(total=len(jobs), desc=config.name, disable=not progress) as bar:
        if workers == 1:
            if torch_threads is not None:
                set_torch_threads(torch_threads)
            for job in jobs:  # plan order: what a job waits for comes before it
                try:
                    error = unmet(job)
                    if error is None:
                        run_job(config, size, job, outdir)
                except Exception as raised:  # reported with its job below; the other jobs still run
                    error = raised
                if error is not None:
                    errors[job.id] = error
                bar.update()
        elif jobs:
            pending, running, finished = list(jobs), {}, set()
            with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=multiprocessing.get_context("spawn"),
                                     initializer=set_torch_threads, initargs=(torch_threads, workers)) as pool:
                while pending or running:
                    for job in [job for job in pending if finished.issuperset(job.needs + job.after)]:
                        if len(running) == workers:
                            break
                        pending.remove(job)
                        error = unmet(job)
                        if error is None:
                            try:
                                running[pool.submit(run_job, config, size, job, outdir)] = job
                                continue
                            except BrokenProcessPool as broken:  # a worker died: no job can start any more
                                error = broken
                        errors[job.id] = error
                        finished.add(job.id)
                        bar.update()
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        job = running.pop(future)
                        if future.exception() is not None:
                            errors[job.id] = future.exception()
                        finished.add(job.id)
                        bar.update()
    if errors:
        failed = CellsFailed({job_id: _one_line(error) for job_id, error in errors.items()})
        raise failed from next(iter(errors.values()))


def aggregate(records: list[dict[str, Any]], columns: tuple[str, ...] = COLUMNS) -> list[dict[str, Any]]:
    """Rows method/env/setting with ``<metric>`` mean and ``<metric>_ci`` t-interval half-width over seeds."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault((record["method"], record["env"], record["setting"]), []).append(record)
    rows = []
    for (method, env, setting), group in groups.items():
        row: dict[str, Any] = {"method": method, "env": env, "setting": setting, "seeds": len(group)}
        for key in columns:
            mean, half = t_ci95(np.array([g[key] for g in group], np.float64))
            row[key], row[f"{key}_ci"] = float(mean), float(half)
        rows.append(row)
    return rows


def write_tables(rows: list[dict[str, Any]], outdir: Path, columns: tuple[str, ...] = COLUMNS) -> str:
    """Write ``results.csv`` and ``results.md``; returns the Markdown table."""
    header = ["method", "env", "setting", "seeds", *(c for key in columns for c in (key, f"{key}_ci"))]
    with open(outdir / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| method | env | setting | seeds | " + " | ".join(columns) + " |",
             "|" + "---|" * (4 + len(columns))]
    for row in rows:
        cells_ = [f"{row[k]:.3f} ± {row[k + '_ci']:.3f}" for k in columns]
        lines.append(f"| {row['method']} | {row['env'].split('/')[-1]} | {row['setting']} | {row['seeds']} | "
                     + " | ".join(cells_) + " |")
    table = "\n".join(lines) + "\n"
    (outdir / "results.md").write_text(table)
    return table


def pareto_plot(records: list[dict[str, Any]], path: Path, utility: str = "R_cum") -> None:
    """Utility (``utility``, R_cum by default) vs exposure equity (1 - Gini), one point per method and seed."""
    fig = agg_figure(figsize=(6, 4.5))
    ax = fig.subplots()
    for method in dict.fromkeys(r["method"] for r in records):
        points = np.array([(1 - r["gini"], r[utility]) for r in records if r["method"] == method])
        ax.scatter(points[:, 0], points[:, 1], label=method, alpha=0.8)
    ax.set_xlabel("exposure equity (1 - Gini)")
    ax.set_ylabel(utility)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def front_plot(records: list[dict[str, Any]], fronts: dict[tuple[str, str], Any], path: Path) -> None:
    """v1 tables: one panel per (env, setting) with its reference front (the penalised-oracle sweep's
    non-dominated points), DPFR's reference point and each method's mean (1 - Gini, true R_cum) over seeds with
    Student-t 95% error bars (:func:`recgym.plotting.front_figure`)."""
    panels = []
    for (env, setting), front in fronts.items():
        methods = {}
        for method in dict.fromkeys(r["method"] for r in records):
            runs = [r for r in records if (r["method"], r["env"], r["setting"]) == (method, env, setting)]
            if runs:
                (equity, equity_ci), (utility, utility_ci) = (
                    t_ci95(np.array([value(r) for r in runs])) for value in (lambda r: 1 - r["gini"], lambda r: r["R_cum"]))
                methods[method] = (equity, equity_ci, utility, utility_ci)
        fairness, utility = front.reference_point(0.5)
        panels.append({"title": f"{env.split('/')[-1]}, {setting}: {front.episodes} episodes x {front.seeds} "
                                f"seed{'s' * (front.seeds > 1)}, mean and 95% interval over seeds",
                       "front": front.vertices * [1.0, front.oracle_r_cum],
                       "reference": (fairness, utility * front.oracle_r_cum), "methods": methods})
    front_figure(panels).savefig(path, dpi=120)


def fronts_table(fronts: dict[tuple[str, str], Any]) -> str:
    """Markdown: each reference front's ends (the oracle, lambda 0, and the fairest front point) and its DPFR
    reference point (alpha 0.5), the rows every v1 table carries beside its methods."""
    lines = ["| reference front | env | setting | oracle R_cum | oracle Gini | fairest R_cum | fairest Gini | "
             "DPFR point R_cum | DPFR point Gini |", "|---" * 9 + "|"]
    for (env, setting), front in fronts.items():
        fairest = np.flatnonzero(front.on_front)[np.argmin(front.gini[front.on_front])]
        fairness, utility = front.reference_point(0.5)
        lines.append(f"| penalised oracle ({front.seeds} seed{'s' * (front.seeds > 1)}) | {env.split('/')[-1]} | {setting} | "
                     f"{front.r_cum[0]:.2f} ± {front.r_cum_ci[0]:.2f} | {front.gini[0]:.3f} ± {front.gini_ci[0]:.3f} | "
                     f"{front.r_cum[fairest]:.2f} ± {front.r_cum_ci[fairest]:.2f} | "
                     f"{front.gini[fairest]:.3f} ± {front.gini_ci[fairest]:.3f} | "
                     f"{utility * front.oracle_r_cum:.2f} | {1 - fairness:.3f} |")
    return "\n".join(lines) + "\n"


def fairness_over_time_plot(records: list[dict[str, Any]], path: Path,
                            keys: tuple[str, ...] = ("exposure_gini", "popularity_gini")) -> None:
    """Population cells: each of ``keys`` (rows) vs platform step per setting (columns), one line per
    method, the mean over seeds with its shaded 95% t-interval (none for one seed)."""
    settings = list(dict.fromkeys(r["setting"] for r in records))
    methods = list(dict.fromkeys(r["method"] for r in records))
    fig = agg_figure(figsize=(4.5 * len(settings), 3.2 * len(keys)))
    axes = fig.subplots(len(keys), len(settings), squeeze=False, sharex=True)
    for col, setting in enumerate(settings):
        for row, key in enumerate(keys):
            ax = axes[row, col]
            for method in methods:
                runs = np.array([r["series"][key] for r in records if r["method"] == method and r["setting"] == setting])
                steps = np.arange(1, runs.shape[1] + 1)
                mean, half = t_ci95(runs)
                (line,) = ax.plot(steps, mean, label=method)
                if len(runs) > 1:
                    ax.fill_between(steps, mean - half, mean + half, color=line.get_color(), alpha=0.2)
            ax.set_title(f"{setting}: {key}", fontsize=9)
            ax.set_xlabel("platform step")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


#: Where a v1 table's learning-curve plot is drawn (:func:`learning_curve_plot`), beside its cells.
LEARNING_CURVES = "learning_curves.png"


def learning_curve_plot(records: list[dict[str, Any]], path: Path, key: str = "R_cum") -> bool:
    """Cells that kept a learning curve on the truth (``learning_curve``: :class:`recgym.agents.callbacks.TruthCurve`
    points): true ``key`` vs training steps, one panel per env (row) and setting (column), one line per method, the
    mean over its stored seeds at the steps they share (a method's seeds evaluate at the same steps) with the 95%
    t-band (none for one seed). Draws ``path`` and returns ``True`` when some record has a curve; ``False`` (no
    file) otherwise."""
    from matplotlib import colormaps

    curves = [record for record in records if record.get("learning_curve")]
    if not curves:
        return False
    envs, settings = (list(dict.fromkeys(record[name] for record in curves)) for name in ("env", "setting"))
    methods = list(dict.fromkeys(record["method"] for record in curves))
    fig = agg_figure(figsize=(5.5 * len(settings), 4 * len(envs)))
    axes = fig.subplots(len(envs), len(settings), squeeze=False)
    for (row, env), (col, setting) in itertools.product(enumerate(envs), enumerate(settings)):
        ax = axes[row, col]
        for index, method in enumerate(methods):
            runs = [{point["steps"]: point[key] for point in record["learning_curve"] if key in point} for record in curves
                    if (record["method"], record["env"], record["setting"]) == (method, env, setting)]
            steps = sorted(set.intersection(*map(set, runs))) if runs else []
            if not steps:
                continue
            mean, half = t_ci95(np.array([[run[step] for step in steps] for run in runs]))
            colour = colormaps["tab20"](2 * index % 20 + index // 10 % 2)  # 11 trained methods: 10 strong, then light
            ax.plot(steps, mean, marker=".", color=colour, label=f"{method} ({len(runs)} seed{'s' * (len(runs) > 1)})")
            if len(runs) > 1:
                ax.fill_between(steps, mean - half, mean + half, color=colour, alpha=0.2)
        ax.set_title(f"{env.split('/')[-1]}, {setting}: true {key} while training", fontsize=9)
        ax.set_xlabel("training env steps")
        ax.set_ylabel(f"true {key}")
        ax.grid(alpha=0.3)
        if ax.lines:  # a panel without a stored curve stays empty
            ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return True


#: familiarity_v1's equal-watch-time comparison (issue #19's LAFB bullet): the familiarity post-rankers, their common
#: base (each one's strength 0: a post-ranker at strength 0 serves its base's order) and the metrics compared.
FAMILIARITY_BASE, FAMILIARITY_RANKERS = "linucb", ("debias-linucb", "lafb")
EQUAL_WATCH_METRICS = ("novel_watch_share", "emerging_creator_share")
#: Where a familiarity table's equal-watch-time plot is drawn (:func:`equal_watch_plot`), beside its cells.
EQUAL_WATCH_PLOT = "equal_watch_time.png"


def strength_sweep(config: ExperimentConfig, ranker: str) -> list[tuple[float, str]]:
    """(multiple of its default strength, method) of ``ranker``'s strength sweep in ``config``, by multiple: the
    common base at 0, the registered ``<ranker>-x<multiple>`` variants (:data:`recgym.agents.STRENGTH_MULTIPLES`)
    and ``ranker`` itself at 1, those that ``config.methods`` holds."""
    from recgym.agents import STRENGTH_MULTIPLES

    points = [(0.0, FAMILIARITY_BASE), (1.0, ranker), *((m, f"{ranker}-x{m:g}") for m in STRENGTH_MULTIPLES)]
    return sorted(point for point in points if point[1] in config.methods)


def equal_watch_time(paths: dict[str, list[dict[str, Any]]],
                     keys: tuple[str, ...] = EQUAL_WATCH_METRICS) -> dict[str, Any]:
    """One seed's comparison at equal total watch time. ``paths``: ranker -> the records (``watch_time`` and ``keys``)
    of its strength sweep in strength order, each starting at the common base's record. Each path is
    piecewise linear in that order, so it reaches every watch time between its smallest and largest; the common
    watch time ``W`` is the end of the range both reach that lies farthest from the base's watch time (the largest
    watch-time change both make; the base's own when they move it in opposite directions). Returns ``watch_time``:
    ``W``, ``base_watch_time`` and, per ranker, each of ``keys`` at ``W`` on the first segment reaching it
    (:func:`recgym.metrics.path_value_at`)."""
    times = {ranker: np.array([record["watch_time"] for record in path], np.float64) for ranker, path in paths.items()}
    base = next(iter(paths.values()))[0]["watch_time"]
    low, high = max(t.min() for t in times.values()), min(t.max() for t in times.values())
    target = high if high - base >= base - low else low
    return {"watch_time": target, "base_watch_time": base,
            **{ranker: {key: path_value_at(times[ranker], [record[key] for record in path], target) for key in keys}
               for ranker, path in paths.items()}}


def equal_watch_seeds(config: ExperimentConfig, env: str, outdir: Path,
                      rankers: tuple[str, ...] = FAMILIARITY_RANKERS) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """:func:`equal_watch_time` of ``rankers``' strength sweeps (:func:`strength_sweep`) on ``env`` per seed, from the
    full-size cells stored in ``outdir`` (setting ``default``): (one result per seed once every cell of the sweeps is
    stored, else ``[]``; the stored records; the number of cells needed)."""
    size = config.full
    methods = list(dict.fromkeys(method for ranker in rankers for _, method in strength_sweep(config, ranker)))
    records = {(method, seed): read_cell(config, size, Cell(method, env, "default", seed), outdir)
               for method in methods for seed in range(size.seeds)}
    found = [record for record in records.values() if record is not None]
    if len(found) < len(records):
        return [], found, len(records)
    return [equal_watch_time({ranker: [records[method, seed] for _, method in strength_sweep(config, ranker)]
                              for ranker in rankers}) for seed in range(size.seeds)], found, len(records)


def equal_watch_table(sweeps: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]], int]]) -> str:
    """Markdown: per env of ``sweeps`` (env -> :func:`equal_watch_seeds`), the common watch time
    (:func:`equal_watch_time`, per seed) and each familiarity post-ranker's :data:`EQUAL_WATCH_METRICS` at it, then
    their seed-paired difference (mean ± Student-t 95% half-width over seeds); empty until every cell of the sweeps
    is stored."""
    lines = ["| env | ranker | common watch time (s) | base watch time (s) | "
             + " | ".join(f"{key} at it" for key in EQUAL_WATCH_METRICS) + " |", "|---" * (4 + len(EQUAL_WATCH_METRICS)) + "|"]
    first, second = FAMILIARITY_RANKERS
    for env, (seeds, _, _) in sweeps.items():
        if not seeds:
            return ""
        watch, base = (t_ci95(np.array([seed[key] for seed in seeds])) for key in ("watch_time", "base_watch_time"))
        values = {ranker: [np.array([seed[ranker][key] for seed in seeds]) for key in EQUAL_WATCH_METRICS]
                  for ranker in FAMILIARITY_RANKERS}
        rows = [(ranker, values[ranker], "") for ranker in FAMILIARITY_RANKERS]
        rows.append((f"{second} − {first} (paired)", [b - a for a, b in zip(values[first], values[second])], "+"))
        for ranker, columns, sign in rows:
            lines.append(f"| {env.split('/')[-1]} | {ranker} | {watch[0]:.0f} ± {watch[1]:.0f} | {base[0]:.0f} ± {base[1]:.0f} | "
                         + " | ".join(f"{mean:{sign}.3f} ± {half:.3f}" for mean, half in map(t_ci95, columns)) + " |")
    return "\n".join(lines) + "\n"


def equal_watch_plot(config: ExperimentConfig, sweeps: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]], int]],
                     path: Path) -> bool:
    """The familiarity post-rankers' strength sweeps (:func:`strength_sweep`) per env of ``sweeps`` (env ->
    :func:`equal_watch_seeds`; columns): each of
    :data:`EQUAL_WATCH_METRICS` (rows) vs watch time, the mean over the stored seeds of each strength (error bars:
    Student-t 95% half-widths), joined in strength order from the common base, with the mean common watch time
    (:func:`equal_watch_time`) as a dashed line. Draws ``path`` and returns ``True`` once every cell is stored."""
    from matplotlib import colormaps

    if not all(seeds for seeds, _, _ in sweeps.values()):
        return False
    fig = agg_figure(figsize=(5.5 * len(sweeps), 3.6 * len(EQUAL_WATCH_METRICS)))
    axes = fig.subplots(len(EQUAL_WATCH_METRICS), len(sweeps), squeeze=False)
    for col, (env, (seeds, records, _)) in enumerate(sweeps.items()):
        for row, key in enumerate(EQUAL_WATCH_METRICS):
            ax = axes[row, col]
            for index, ranker in enumerate(FAMILIARITY_RANKERS):
                sweep = strength_sweep(config, ranker)
                points = [[(r["watch_time"], r[key]) for r in records if (r["method"], r["env"]) == (method, env)]
                          for _, method in sweep]
                (x, x_err), (y, y_err) = (t_ci95(np.array([[p[i] for p in runs] for runs in points]).T) for i in (0, 1))
                ax.errorbar(x, y, xerr=x_err, yerr=y_err, marker="o", capsize=3, color=colormaps["tab10"](index),
                            label=f"{ranker} (x {', '.join(f'{m:g}' for m, _ in sweep)} of its strength)")
            ax.axvline(np.mean([seed["watch_time"] for seed in seeds]), color="k", linestyle="--", linewidth=1,
                       label="common watch time (mean over seeds)")
            ax.set_title(f"{env.split('/')[-1]}: {key} vs watch time", fontsize=9)
            ax.set_xlabel("logged watch time per episode (s)")
            ax.set_ylabel(key)
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


#: The markers of ``docs/results.md``'s v1 section (:func:`write_v1_section` replaces what lies between them).
V1_BEGIN, V1_END = "<!-- v1 tables: begin (written by `recgym results`) -->", "<!-- v1 tables: end -->"


def v1_configs() -> list[ExperimentConfig]:
    """The bundled configs of issue #19's protocol (:attr:`ExperimentConfig.is_v1`), by name."""
    return [config for config in map(load_config, bundled_configs().values()) if config.is_v1]


def v1_table(config: ExperimentConfig, root: Path = V1_RESULTS) -> str:
    """Markdown of one v1 table from the full-size cells stored in ``root/<name>`` (:func:`results_dir`): a
    row per method, env and setting with every column's mean ± 95% t-interval once all its seeds are
    stored, else ``pending (k/S seeds)``; the reference fronts once measured; the count of cells done; the
    stored cells' learning curves, drawn into ``root/<name>/`` :data:`LEARNING_CURVES` (:func:`learning_curve_plot`)."""
    size = config.full
    outdir = root / config.name
    grid = cells(config, size)
    stored = {cell: read_cell(config, size, cell, outdir) for cell in grid}
    done = [record for record in stored.values() if record is not None]
    hours = sum(record.get("wall_s", 0.0) for record in done if not record.get("reused_from")) / 3600
    from recgym.agents import get_agent

    resets = sorted({reset for cell in grid if (reset := catalogue_reset_every(config, size, cell)) is not None})
    budget = (f"{size.timesteps:,} training steps per trained agent" if any(get_agent(m).trainable for m in config.methods)
              else "no trained agent: online learners learn during evaluation")
    if resets:
        budget += (f" with the catalogue's counters cleared every {' / '.join(f'{n:,}' for n in resets)} user-steps "
                   f"(an evaluation's)")
    lines = [f"### {config.name}: {config.description}", "",
             f"`recgym experiment {config.name} --size full` ({size.seeds} seeds, {budget}, "
             f"{size.episodes if not config.is_population else size.platform_steps} "
             f"{'episodes' if not config.is_population else 'platform steps'} per cell): "
             f"**{len(done)}/{len(grid)} cells done** ({hours:.2f} h of cell wall time stored).", "",
             "| method | env | setting | seeds | " + " | ".join(config.columns) + " |",
             "|" + "---|" * (4 + len(config.columns))]
    groups: dict[tuple[str, str, str], list[dict[str, Any] | None]] = {}
    for cell, record in stored.items():
        groups.setdefault((cell.method, cell.env, cell.setting), []).append(record)
    for (method, env, setting), records in groups.items():
        finished = [record for record in records if record is not None]
        head = f"| {method} | {env.split('/')[-1]} | {setting} | {len(finished)}/{len(records)} | "
        if len(finished) < len(records):
            lines.append(head + "pending" + " |" * len(config.columns))
        else:
            row = aggregate(finished, config.columns)[0]
            lines.append(head + " | ".join(f"{row[k]:.3f} ± {row[k + '_ci']:.3f}" if np.isfinite(row[k]) else "—"
                                           for k in config.columns) + " |")
    from recgym.pareto import Front

    fronts = {(env, setting): Front.from_dict(json.loads(front_file(outdir, env, setting).read_text()))
              for env in config.envs for setting in config.settings if front_file(outdir, env, setting).exists()}
    versions: dict[str, int] = {}
    for record in done:
        versions[record.get("code", "unknown")] = versions.get(record.get("code", "unknown"), 0) + 1
    note = reused_note(done)
    if note:
        lines += ["", note]
    stale = [cell for cell, record in stored.items() if record is None and (outdir / f"{cell.id}.json").exists()]
    if stale:
        lines += ["", f"{len(stale)} stored cells ran under an older protocol ({', '.join(PROTOCOL_KEYS)}: "
                      f"docs/experiments.md) and count as pending; `recgym experiment {config.name} --size full` "
                      f"runs them again."]
    if versions:
        lines += ["", "Code of the stored cells (`git describe`: cells): "
                  + ", ".join(f"`{version}`: {count}" for version, count in versions.items())
                  + (" (**mixed: rerun the older cells before citing the table**)" if len(versions) > 1 else "")]
    if fronts:
        lines += ["", fronts_table(fronts).rstrip("\n")]
    if (outdir / "pareto.png").exists() and len(done) == len(grid):
        lines += ["", f"![{config.name}: true R_cum vs exposure equity with the reference front]"
                      f"(../{(outdir / 'pareto.png').as_posix()})"]
    if learning_curve_plot(done, outdir / LEARNING_CURVES):
        lines += ["", (f"Learning curves on the truth of the stored cells (mean and 95% band over their seeds): "
                       f"![{config.name}: learning curves](../{(outdir / LEARNING_CURVES).as_posix()})")]
    sweeps = {env: equal_watch_seeds(config, env, outdir) for env in config.envs} if config.familiarity else {}
    equal = equal_watch_table(sweeps) if sweeps else ""
    if equal and equal_watch_plot(config, sweeps, outdir / EQUAL_WATCH_PLOT):
        lines += ["", (f"At equal total watch time ({', '.join(FAMILIARITY_RANKERS)} swept over multiples "
                       f"{', '.join(f'{m:g}' for m, _ in strength_sweep(config, FAMILIARITY_RANKERS[1]))} of their default "
                       f"strength, 0 being their common base `{FAMILIARITY_BASE}`; per seed, the common watch time is the "
                       f"end of the watch-time range both sweeps reach farthest from the base's, each sweep interpolated "
                       f"linearly in strength order, `recgym.experiments.equal_watch_time`):"), "", equal.rstrip("\n"), "",
                  f"![{config.name}: the post-rankers' strength sweeps vs watch time](../{(outdir / EQUAL_WATCH_PLOT).as_posix()})"]
    return "\n".join(lines) + "\n"


def write_v1_section(doc: str | Path = "docs/results.md", root: str | Path = V1_RESULTS) -> str:
    """(Re)write the v1 section of ``doc`` (between :data:`V1_BEGIN` and :data:`V1_END`, appended when absent)
    from the cells stored under ``root``: one :func:`v1_table` per bundled v1 config. Returns the section."""
    section = "\n".join([V1_BEGIN, *(v1_table(config, Path(root)) for config in v1_configs()), V1_END])
    replace_between(Path(doc), V1_BEGIN, V1_END, section)
    return section


@dataclass(frozen=True)
class Claim:
    """One claim of issue #19 a v1 table decides: ``method`` beats ``baseline`` on ``metric`` (``higher`` or
    lower is better) on every env of each config in ``configs``, under ``setting`` (``baseline_setting``: the
    baseline's, default the same), by the paired difference over seeds (cell seed s of both is evaluated on the
    same users) and its Student-t 95% interval. ``equal_watch_time``: both are familiarity post-rankers of a
    ``familiarity`` table, compared per seed at their common watch time (:func:`equal_watch_seeds`) instead of cell
    by cell."""

    text: str
    configs: tuple[str, ...]
    setting: str
    method: str
    baseline: str
    metric: str
    higher: bool = True
    baseline_setting: str | None = None
    equal_watch_time: bool = False


#: The claims the README's verdict block decides (:func:`write_verdicts`), one line each.
CLAIMS = (
    Claim("PPO trained on the logs for 1e6 steps beats the best non-personalised ranking on true R_cum",
          ("fairness_v1",), "max30", "ppo", "nonpersonalised", "R_cum"),
    Claim("DSRM-HRL is nearer the reference front than flat PPO with its reward shaping (DPFR)",
          ("fairness_v1",), "max30", "dsrm-hrl", "ppo-fair", "dpfr", higher=False),
    Claim("DSRM-HRL's purified state beats its constant-state twin on true R_cum",
          ("fairness_v1",), "max30", "dsrm-hrl", "dsrm-hrl-const", "R_cum"),
    Claim("HRL4PFG raises its users' long-tail taste over a lifetime more than flat PPO with its shaping",
          ("fairness_v1",), "lifetime", "hrl4pfg", "ppo-tail", "tail_affinity_gain"),
    Claim("HRL4PFG's users come back more often than flat PPO-with-its-shaping's (sessions per week)",
          ("fairness_v1",), "lifetime", "hrl4pfg", "ppo-tail", "sessions_per_week"),
    Claim("novelty-seeking HRL beats the recurrent-state PPO (a GRU over the history) on true R_cum",
          ("novelty_v1",), "session", "novelty-hrl", "ppo-gru", "R_cum"),
    Claim("DORL's penalised world-model reward beats plain A2C under DORL's leave rule (true R_cum)",
          ("dorl_v1",), "default", "dorl", "a2c", "R_cum"),
    Claim("DSRM-HRL beats HRL without DSRM at the highest observation noise (true R_cum)",
          ("noise_v1",), "level2", "dsrm-hrl", "hrl-no-dsrm", "R_cum"),
    Claim("HyperBandit beats time-aware LinUCB over users' lifetimes (true R_cum; equal oracle, so lower regret)",
          ("time_v1",), "lifetime", "hyperbandit", "time-linucb", "R_cum"),
    *(Claim(f"At equal total watch time LAFB gives {text} than the hand-set familiarity debiaser",
            ("familiarity_v1",), "default", "lafb", "debias-linucb", metric, equal_watch_time=True)
      for text, metric in (("emerging creators more exposure", "emerging_creator_share"),
                           ("unfamiliar creators a larger share of watch time", "novel_watch_share"))),
    Claim("PPO trained on the logs concentrates popularity more than PPO trained on the truth (popularity Gini)",
          ("population_v1", "population_kuairand_v1"), "logs", "ppo", "ppo", "popularity_gini",
          baseline_setting="truth"),
)


def claim_verdict(claim: Claim, root: Path = V1_RESULTS) -> str:
    """One Markdown line: the claim and, per env of its configs, its verdict from the full-size cells stored under
    ``root`` (:func:`read_cell`): **yes** when the paired difference's 95% interval lies on the claimed side of 0,
    **no** on the other side, **not shown** when it holds 0; until every cell it needs is stored, ``not yet run: N
    of M cells``."""
    verdicts, needed, stored = [], 0, 0
    versions: set[str] = set()
    for config in map(load_config, claim.configs):
        size, outdir = config.full, root / config.name
        for env in config.envs:
            if claim.equal_watch_time:
                seeds, found, cells_needed = equal_watch_seeds(config, env, outdir, (claim.baseline, claim.method))
                differences = [seed[claim.method][claim.metric] - seed[claim.baseline][claim.metric] for seed in seeds]
            else:
                sides = [[read_cell(config, size, Cell(method, env, setting, seed), outdir) for seed in range(size.seeds)]
                         for method, setting in ((claim.method, claim.setting),
                                                 (claim.baseline, claim.baseline_setting or claim.setting))]
                found, cells_needed = [record for side in sides for record in side if record is not None], 2 * size.seeds
                differences = (a[claim.metric] - b[claim.metric] for a, b in zip(*sides))  # read once all are stored
            needed, stored = needed + cells_needed, stored + len(found)
            versions.update(record.get("code", "unknown") for record in found)
            if len(found) < cells_needed:
                continue
            mean, half = t_ci95(np.array(list(differences), np.float64))
            better = mean if claim.higher else -mean
            verdict = "**yes**" if better - half > 0 else "**no**" if better + half < 0 else "not shown"
            verdicts.append(f"{env.split('/')[-1]}: {verdict} ({mean:+.3g} [{mean - half:+.3g}, {mean + half:+.3g}])")
    where = f"{', '.join(claim.configs)}, {claim.setting}{'/' + claim.baseline_setting if claim.baseline_setting else ''}"
    head = (f"- {claim.text} (`{claim.method}` vs `{claim.baseline}`, {claim.metric}"
            f"{' at their common watch time over their strength sweeps' if claim.equal_watch_time else ''}, "
            f"{'higher' if claim.higher else 'lower'} is better; {where}): ")
    if stored < needed:
        return head + f"not yet run: {stored} of {needed} cells"
    return head + "; ".join(verdicts) + (" (**mixed code versions**)" if len(versions) > 1 else "")


#: The markers of the README's verdict block (:func:`write_verdicts` replaces what lies between them).
VERDICTS_BEGIN = "<!-- verdicts v1: begin (written by `recgym results`) -->"
VERDICTS_END = "<!-- verdicts v1: end -->"


def replace_between(path: Path, begin: str, end: str, block: str) -> None:
    """Put ``block`` (which starts with ``begin`` and ends with ``end``) in place of ``path``'s text from ``begin``
    to ``end``, or append it when the markers are absent."""
    text = path.read_text() if path.exists() else ""
    if begin in text and end in text:
        before, rest = text.split(begin, 1)
        text = before + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + block + "\n"
    path.write_text(text)


def write_verdicts(readme: str | Path = "README.md", root: str | Path = V1_RESULTS) -> str:
    """(Re)write the README's verdict block (between :data:`VERDICTS_BEGIN` and :data:`VERDICTS_END`, appended when
    absent): one :func:`claim_verdict` line per :data:`CLAIMS`, from the cells stored under ``root``. Returns it."""
    block = "\n".join([VERDICTS_BEGIN, *(claim_verdict(claim, Path(root)) for claim in CLAIMS), VERDICTS_END])
    replace_between(Path(readme), VERDICTS_BEGIN, VERDICTS_END, block)
    return block


def ray_trial(trial: dict[str, Any]) -> dict[str, float]:
    """One Ray Tune trial: run the cell described by ``trial`` (plain dicts) with ``trial["torch_threads"]``
    torch threads, write its JSON, return its summary."""
    set_torch_threads(trial["torch_threads"])
    raw = dict(trial["config"])
    raw.update(smoke=Size(**raw["smoke"]), full=Size(**raw["full"]), methods=tuple(raw["methods"]), envs=tuple(raw["envs"]))
    config = ExperimentConfig(**raw)
    record = run_and_write_cell(config, Size(**trial["size"]), Cell(**trial["cell"]), Path(trial["outdir"]))
    return {key: record[key] for key in config.columns}


def run_experiment(config: ExperimentConfig | str | Path, size: str = "smoke", outdir: str | Path | None = None,
                   backend: str = "local", progress: bool = True, methods: list[str] | None = None,
                   envs: list[str] | None = None, torch_threads: int | None = None, workers: int | None = None,
                   reuse: Sequence[str | Path] | None = None, **ray_options: Any) -> list[dict[str, Any]]:
    """Run the grid (resumable), aggregate and write tables and the Pareto plot; returns the table rows.

    ``config``: an :class:`ExperimentConfig`, a YAML path or a bundled config's name. ``outdir``:
    default :func:`results_dir`. ``methods`` / ``envs`` restrict the grid to a subset of the config's.
    ``workers``: cells run at once. Local backend: worker processes (:func:`run_cells`; ``None`` or 1:
    one after the other in this process). Ray: ``max_concurrent_trials``, each trial reserving
    ``cpus_per_trial`` CPUs (default its torch threads); ``None``: as many trials as Ray's CPUs allow at
    ``cpus_per_trial`` (1 unless given in ``ray_options``).
    ``torch_threads``: torch threads of each worker (default :func:`recgym.threads.default_torch_threads`
    of ``workers``, except that the local backend with one worker leaves this process's setting and a Ray
    trial with ``workers=None`` takes the CPUs Ray reserves for it).
    ``reuse``: folders of other tables whose stored cells and fronts stand in for this grid's identical ones
    (:func:`reuse_cells`, :func:`reuse_fronts`); default: the other v1 tables' folders in :data:`V1_RESULTS` when this is a full v1
    table written to its own folder there, else none.
    The local backend measures the missing reference fronts of a v1 table in the same workers as the cells
    (:func:`run_cells`); Ray's trials start after this process measured them, one after the other.
    Raises :class:`CellsFailed` when cells raised (after every other cell ran and was stored).
    """
    if not isinstance(config, ExperimentConfig):
        config = load_config(config)
    for key, subset in (("methods", methods), ("envs", envs)):
        if subset:
            unknown = [x for x in subset if x not in getattr(config, key)]
            if unknown:
                raise ValueError(f"{key} {unknown} not in config {config.name!r}; valid: {', '.join(getattr(config, key))}")
            config = dataclasses.replace(config, **{key: tuple(subset)})
    if backend not in ("local", "ray"):
        raise ValueError(f"unknown backend {backend!r}; valid: local, ray")
    if workers is not None:
        default_torch_threads(workers)  # a one-line ValueError for a non-positive count, before any cell runs
    chosen = config.size(size)
    out = writable_dir(outdir or results_dir(config, size), "output directory")
    grid = cells(config, chosen)
    todo = [cell for cell in grid if read_cell(config, chosen, cell, out) is None]
    if reuse is None:
        own = results_dir(config, size)
        reuse = [table for table in sorted(V1_RESULTS.glob("*")) if table.is_dir() and table.name != config.name] \
            if config.is_v1 and size == "full" and out.resolve() == own.resolve() else []
    tables = [Path(table) for table in reuse]
    reused = set(reuse_cells(config, chosen, todo, out, tables))
    todo = [cell for cell in todo if cell not in reused]
    front_keys = [(env, setting) for env in config.envs for setting in config.settings] \
        if config.is_v1 and not config.is_population else []
    missing = [key for key in front_keys if stored_front(config, chosen, *key, out) is None]  # a stale one refused here
    reused_fronts = reuse_fronts(config, chosen, missing, out, tables)
    missing = [key for key in missing if key not in reused_fronts]
    if backend == "ray":
        for key in missing:  # once, before the trials read them
            cell_front(config, chosen, *key, out)
        from recgym.integrations.ray_tune import run_trials_on_ray

        if todo:
            if workers is not None:
                ray_options.setdefault("max_concurrent_trials", workers)
                ray_options.setdefault("cpus_per_trial", torch_threads or default_torch_threads(workers))
            cpus = ray_options.get("cpus_per_trial", 1.0)
            threads = torch_threads or max(1, int(cpus))  # a trial's threads fit the CPUs Ray reserves for it
            trials = [{"config": dataclasses.asdict(config), "size": dataclasses.asdict(chosen),
                       "cell": dataclasses.asdict(cell), "outdir": str(out.resolve()), "torch_threads": threads}
                      for cell in todo]
            try:
                run_trials_on_ray(trials, ray_trial, str((out / "ray").resolve()), **ray_options)
            except RuntimeError as error:  # failed trials; each finished trial wrote its cell
                unfinished = [cell for cell in todo if not (out / f"{cell.id}.json").exists()]
                if not unfinished:
                    raise
                raise CellsFailed({cell.id: f"Ray trial failed ({_one_line(error, 200)})" for cell in unfinished}) from error
    else:
        run_cells(config, chosen, todo, out, progress=progress, workers=workers or 1, torch_threads=torch_threads,
                  fronts=missing)
    records = [read_cell(config, chosen, cell, out) for cell in grid]
    rows = aggregate(records, config.columns)
    table = write_tables(rows, out, config.columns)
    note = reused_note(records)
    fronts = {key: stored_front(config, chosen, *key, out) for key in front_keys}
    if note or fronts:  # results.md again, once, with the reused cells' sources and the fronts' table
        (out / "results.md").write_text(table + (f"\n{note}\n" if note else "")
                                        + (f"\n{fronts_table(fronts)}" if fronts else ""))
    if fronts:
        front_plot(records, fronts, out / "pareto.png")
        learning_curve_plot(records, out / LEARNING_CURVES)
    else:
        pareto_plot(records, out / "pareto.png", config.columns[0])
    if config.is_population:
        fairness_over_time_plot(records, out / "fairness_over_time.png")
    return rows
