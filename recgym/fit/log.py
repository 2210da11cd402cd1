"""A known recgym world's own logs, in the generic schema (the round trip's source) or KuaiRec's.

:func:`write_log` runs a policy on the native vector env (one batched step for all sessions, same-step
autoreset) and writes one row per impression: what the platform logs, never the latent truth.

Generic schema (CSV or Parquet, one row per impression; :data:`LOG_COLUMNS`)::

    user_id, item_id, timestamp (s), session_id, position (index in the session's feed),
    click, watch_ratio, long_view, like, follow, comment, forward, hate  (recgym.params.SIGNALS),
    category ("3|7": the item's category ids), creator, duration (s),
    is_random (1: the random policy's uniform exposure, 0: an agent's)

KuaiRec schema (a folder): ``big_matrix.csv`` (``user_id,video_id,play_duration,video_duration,time,
date,timestamp,watch_ratio``; a row per impression, watch ratio 0 when swiped away) and
``item_categories.csv`` (``video_id,feat`` with KuaiRec's ``"[8, 27]"`` lists).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
from gymnasium.vector import AutoresetMode

from recgym.params import SIGNALS
from recgym.sizes import check_count

#: Columns of the generic log schema, in file order.
LOG_COLUMNS = ("user_id", "item_id", "timestamp", "session_id", "position", *SIGNALS, "category", "creator", "duration",
               "is_random")

#: 2020-07-05 00:00 UTC, KuaiRec's first day: the logs' time origin.
LOG_EPOCH = 1_593_907_200.0

#: Rejection rounds of the uniform sampler before the rows still unplaced fall back to a masked argmax.
UNIFORM_TRIES = 8


def uniform_allowed(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    """(B,) int64 uniform draw per row among the True columns of the (B, I) bool ``mask`` (rows have
    one at least): integer draws re-drawn where masked, a masked argmax of uniforms for the few left
    (the distribution of :class:`~recgym.agents.baselines.RandomPolicy` at a fraction of its cost)."""
    rows, n_items = mask.shape
    actions = rng.integers(0, n_items, size=rows)
    bad = np.flatnonzero(~mask[np.arange(rows), actions])
    for _ in range(UNIFORM_TRIES):
        if not bad.size:
            return actions
        actions[bad] = rng.integers(0, n_items, size=bad.size)
        bad = bad[~mask[bad, actions[bad]]]
    if bad.size:
        actions[bad] = np.where(mask[bad], rng.random((bad.size, n_items)), -1.0).argmax(axis=1)
    return actions


def simulate_log(
    env_id: str, sessions: int, policy: str = "random", seed: int = 0, num_envs: int = 256,
    world_options: dict[str, Any] | None = None, **options: Any,
) -> tuple[pd.DataFrame, Any]:
    """Run ``policy`` on ``env_id`` (a v1 id, session episodes) for ``sessions`` sessions; return (the
    log as a DataFrame in :data:`LOG_COLUMNS`, the world it came from).

    A session starts at the platform's return clock (:attr:`recgym.simulator.Simulator.start_day`, days
    after :data:`LOG_EPOCH`: users come back after their satisfaction-dependent return gaps,
    ``docs/simulator.md`` "Users over time"), impressions ``minutes_per_step`` apart. The clock runs
    while ``num_envs`` sessions are open at once, so a user who was due back while every slot was busy
    starts later than drawn: fewer slots, gaps closer to the drawn ones. ``"random"`` draws
    uniformly among allowed items (:func:`uniform_allowed`); any other name is a registered agent
    (:func:`recgym.agents.make_policy`). Sessions still running at the end (ids >= ``sessions``) are dropped.
    The log's users keep their state between sessions (``session_memory=True`` unless ``options`` say
    otherwise, as on a real platform and ``recgym/Population-v1``; the envs' default starts every session
    afresh, issue #19), so cross-session drift and return patterns are in the log for the fit to read.
    """
    sessions = check_count("sessions", sessions)
    if options.get("episode", "session") != "session":
        raise ValueError(f"episode={options['episode']!r}: a log is a platform's sessions; use episode='session'")
    if env_id.endswith("-v1"):  # a platform's users carry their state between sessions (issue #19's fix
        options.setdefault("session_memory", True)  # starts the envs' sessions afresh; a log's users persist)
    venv = gym.make_vec(env_id, num_envs=min(check_count("num_envs", num_envs), sessions),
                        vectorization_mode="vector_entry_point", autoreset_mode=AutoresetMode.SAME_STEP,
                        **({"world_options": world_options} if world_options else {}), **options).unwrapped
    if not venv.world.is_v1:
        raise ValueError(f"{env_id} is a v0 world; logs carry the v1 logged signals: use a v1 id")
    rng = np.random.default_rng([seed, 20])
    agent = None
    if policy != "random":
        from recgym.agents import make_policy

        agent = make_policy(policy)
    obs, _ = venv.reset(seed=seed)
    if agent is not None:
        agent.bind(venv, seed)
    n = venv.num_envs
    session = np.arange(n)
    position = np.zeros(n, np.int64)
    start = LOG_EPOCH + venv.sim.start_day * 86_400.0
    seconds_per_step = venv.params.minutes_per_step * 60.0
    next_session, columns = n, []
    while (session < sessions).any():
        mask = venv.sim.action_mask()
        actions = uniform_allowed(rng, mask) if agent is None else agent.act(obs, mask)
        next_obs, rewards, terminated, truncated, infos = venv.step(actions)
        if agent is not None:
            agent.update(obs, actions, rewards)
        columns.append((infos["user_id"], actions, start + position * seconds_per_step, session.copy(),
                        position.copy(), infos["signals"]))
        done = np.flatnonzero(terminated | truncated)
        position += 1
        position[done] = 0
        session[done] = next_session + np.arange(done.size)
        next_session += done.size
        start[done] = LOG_EPOCH + venv.sim.start_day[done] * 86_400.0
        obs = next_obs
    users, items, stamps, session_ids, positions, signals = (np.concatenate(c) for c in zip(*columns))
    keep = session_ids < sessions  # the loop ends once every running session's id is >= sessions
    world = venv.world
    labels = np.array(["|".join(map(str, np.flatnonzero(row))) for row in world.item_cats], dtype=object)
    items = items[keep]
    frame = pd.DataFrame({
        "user_id": users[keep], "item_id": items, "timestamp": np.round(stamps[keep], 3),
        "session_id": session_ids[keep], "position": positions[keep],
        **{name: signals[keep, j] for j, name in enumerate(SIGNALS)},
        "category": labels[items], "creator": world.item_creator[items], "duration": world.item_duration[items],
        "is_random": np.int8(agent is None),  # the random policy's exposure is uniform, independent of taste
    })
    for name in SIGNALS:
        if name != "watch_ratio":
            frame[name] = frame[name].astype(np.int8)
    return frame.sort_values(["session_id", "position"], kind="stable").reset_index(drop=True), world


def write_frame(frame: pd.DataFrame, out: str | Path) -> Path:
    """Write ``frame`` as CSV (``.csv``, ``.csv.gz``) or Parquet (``.parquet``, needs pyarrow)."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        try:
            frame.to_parquet(path, index=False)
        except ImportError:
            raise ValueError("writing Parquet needs pyarrow (pip install pyarrow); or write a .csv") from None
    elif path.name.endswith((".csv", ".csv.gz")):
        frame.to_csv(path, index=False)
    else:
        raise ValueError(f"{path}: the log's file name must end in .csv, .csv.gz or .parquet")
    return path


def write_kuairec_log(frame: pd.DataFrame, world: Any, folder: str | Path) -> Path:
    """Write a generic-schema log in KuaiRec's schema: ``folder/big_matrix.csv`` and ``item_categories.csv``."""
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    stamps = pd.to_datetime(np.round(frame["timestamp"].to_numpy() * 1000).astype(np.int64), unit="ms")
    duration_ms = np.round(frame["duration"].to_numpy() * 1000).astype(np.int64)
    pd.DataFrame({
        "user_id": frame["user_id"], "video_id": frame["item_id"],
        "play_duration": np.round(frame["watch_ratio"].to_numpy() * duration_ms).astype(np.int64),
        "video_duration": duration_ms, "time": stamps,
        "date": stamps.year * 10_000 + stamps.month * 100 + stamps.day,
        "timestamp": frame["timestamp"], "watch_ratio": frame["watch_ratio"],
    }).to_csv(path / "big_matrix.csv", index=False, date_format="%Y-%m-%d %H:%M:%S.%f")
    feats = ["[" + ", ".join(map(str, np.flatnonzero(row))) + "]" for row in world.item_cats]
    pd.DataFrame({"video_id": np.arange(world.n_items), "feat": feats}).to_csv(path / "item_categories.csv", index=False)
    return path


def write_log(
    env_id: str, out: str | Path, sessions: int, policy: str = "random", seed: int = 0, log_format: str = "csv",
    **kwargs: Any,
) -> Path:
    """Simulate ``sessions`` sessions (:func:`simulate_log`; ``kwargs`` are its options) and write them:
    ``log_format="csv"`` writes the generic schema to ``out`` (.csv / .csv.gz / .parquet),
    ``"kuairec"`` writes KuaiRec's schema into the folder ``out``. Returns the path written."""
    if log_format not in ("csv", "kuairec"):
        raise ValueError(f"log format must be 'csv' (generic schema, also Parquet) or 'kuairec', got {log_format!r}")
    frame, world = simulate_log(env_id, sessions, policy, seed, **kwargs)
    return write_frame(frame, out) if log_format == "csv" else write_kuairec_log(frame, world, out)
