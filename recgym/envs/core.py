"""Construction shared by every view: world + params + simulator, the per-session spaces and the
registered ids' specs."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.envs.registration import EnvSpec

from recgym.fit.worlddir import load_world
from recgym.params import SIGNALS, V1_DEFAULTS, SimParams
from recgym.simulator import Simulator
from recgym.world import World
from recgym.worlds import resolve_world

#: Registered Gymnasium id -> the world it names.
ENV_IDS = {
    "recgym/KuaiRec-v0": "kuairec", "recgym/KuaiRand-v0": "kuairand", "recgym/Synthetic-v0": "synthetic",
    "recgym/KuaiRec-v1": "kuairec-v1", "recgym/KuaiRand-v1": "kuairand-v1", "recgym/Synthetic-v1": "synthetic-v1",
}

#: The id of a world fitted to a log (``recgym fit``), run with ``world_dir=WORLD_DIR``; kept out of
#: :data:`ENV_IDS` because it has no world without a folder.
FITTED_ID, FITTED_WORLD = "recgym/Fitted-v1", "fitted"

#: Upper bound of the logged log1p(popularity) and log1p(exposure) in v1 observations (e^40 counts).
LOG_COUNT_MAX = 40.0


def build_simulator(
    n_sessions: int,
    world: str | World = "kuairec",
    data_dir: str | Path | None = None,
    world_options: dict[str, Any] | None = None,
    seed: int | None = None,
    count_name: str = "n_sessions",
    world_dir: str | Path | None = None,
    v1_defaults: dict[str, Any] | None = None,
    **options: Any,
) -> Simulator:
    """Resolve the world, validate ``options`` into :class:`SimParams` and build the simulator.

    ``count_name`` is what size errors call ``n_sessions`` (the view's argument, e.g. ``num_envs``);
    sizes are checked before anything is allocated (:class:`Simulator`). On v1 worlds the options
    default to :data:`recgym.params.V1_DEFAULTS` (the observed reward; v0's additive conformity off),
    then to the view's own ``v1_defaults`` (the v1 population: ``session_memory=True``).
    ``world="fitted"`` (``recgym/Fitted-v1``) reads the world and its fitted option defaults from
    ``world_dir`` (:func:`recgym.fit.worlddir.load_world`)."""
    fitted: dict[str, Any] = {}
    if world_dir is not None or world == FITTED_WORLD:
        if world != FITTED_WORLD or data_dir is not None or world_options:
            raise ValueError(f"world_dir applies to {FITTED_ID} only, without data_dir or world_options")
        if world_dir is None:
            raise ValueError(f"{FITTED_ID} needs world_dir=WORLD_DIR (a folder written by `recgym fit`)")
        resolved, fitted = load_world(world_dir)
    else:
        resolved = resolve_world(world, data_dir, **(world_options or {}))
    v1_options = {**V1_DEFAULTS, **(v1_defaults or {}), **fitted, **options}
    params = SimParams.from_kwargs(**(v1_options if resolved.is_v1 else options))
    return Simulator(resolved, params, n_sessions, seed=seed, count_name=count_name)


def feedback_bounds(world: World, params: SimParams) -> tuple[float, float]:
    """[low, high] of the logged feedback: [0, reward_max] in v0; in v1 the observed reward's range,
    ``click * sum_s w_s * signal_s`` with the watch ratio in [0, watch_max] and the others in {0, 1}."""
    if not world.is_v1:
        return 0.0, world.reward_max
    ranges = np.array([params.watch_max if name == "watch_ratio" else 1.0 for name in SIGNALS])
    weights = np.asarray(params.reward_weights)
    return float(np.minimum(weights, 0) @ ranges), float(np.maximum(weights, 0) @ ranges)


def session_spaces(world: World, params: SimParams) -> tuple[spaces.Dict, spaces.Space]:
    """Observation and action space of ONE session (the vector views batch them)."""
    k, d = params.history_len, world.embed_dim
    low, high = feedback_bounds(world, params)
    keys = {
        "item_ids": spaces.Box(-1, world.n_items - 1, shape=(k,), dtype=np.int64),
        "embeddings": spaces.Box(-1.0, 1.0, shape=(k, d), dtype=np.float32),
        "feedback": spaces.Box(low, high, shape=(k,), dtype=np.float32),
        "step": spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32),
    }
    if world.is_v1:
        signal_high = np.ones((k, len(SIGNALS)), np.float32)
        signal_high[:, SIGNALS.index("watch_ratio")] = params.watch_max
        keys.update({
            "signals": spaces.Box(np.zeros_like(signal_high), signal_high, dtype=np.float32),
            "popularity": spaces.Box(0.0, LOG_COUNT_MAX, shape=(k,), dtype=np.float32),
            "exposure": spaces.Box(0.0, LOG_COUNT_MAX, shape=(k,), dtype=np.float32),
            "hour": spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32),
            "weekday": spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32),
            "user_id": spaces.Box(0, world.n_users - 1, shape=(1,), dtype=np.int64),
            "user_features": spaces.Box(-1.0, 1.0, shape=(world.user_features.shape[1],), dtype=np.float32),
            "position": spaces.Box(-1, params.slate_size - 1, shape=(k,), dtype=np.int64),
        })
        if params.slate_size > 1:
            keys["slate_clicks"] = spaces.Box(-1, 1, shape=(params.slate_size,), dtype=np.int8)
    observation = spaces.Dict(keys)
    if params.slate_size == 1:
        action: spaces.Space = spaces.Discrete(world.n_items)
    else:
        action = spaces.MultiDiscrete(np.full(params.slate_size, world.n_items))
    return observation, action



class RegisteredSpec:
    """Mixin for the env classes: the spec ``gym.make`` / ``gym.make_vec`` hands the env, completed and checked.

    ``max_episode_steps`` is set to the env's own limit, :func:`episode_step_limit` (``params.max_turn``;
    in lifetime mode ``lifetime_sessions * max_turn``) (the ids are registered without one: a registered
    limit would make ``gym.make`` add a ``TimeLimit`` that cuts ``max_turn=50`` at the default 30). A ``world`` option that differs from the id's world is
    refused: it would silently measure another world under the id's name.
    """

    _spec: EnvSpec | None = None
    params: SimParams

    @property
    def spec(self) -> EnvSpec | None:
        """The id's spec, with ``max_episode_steps`` equal to :func:`episode_step_limit` (``None`` outside
        ``gym.make``)."""
        return self._spec

    @spec.setter
    def spec(self, spec: EnvSpec | None) -> None:
        if spec is not None:
            world = spec.kwargs.get("world")
            if spec.id in ENV_IDS and world != ENV_IDS[spec.id]:
                shown = world if isinstance(world, str) else type(world).__name__
                raise ValueError(f"{spec.id} is the {ENV_IDS[spec.id]!r} world; world={shown!r} would measure another "
                                 f"world under its name: use that world's id, or RecSysEnv(world=...) for a custom World")
            spec = dataclasses.replace(spec, max_episode_steps=episode_step_limit(self.params))
        self._spec = spec


def episode_step_limit(params: SimParams) -> int:
    """The most steps one episode can take: ``max_turn`` (a session's cap); in lifetime mode
    ``lifetime_sessions * max_turn``, since the session count always bounds a lifetime
    (``lifetime_days`` can only end it sooner)."""
    return params.max_turn * (params.lifetime_sessions if params.episode == "lifetime" else 1)


def has_reset_option(options: dict[str, Any] | None, name: str) -> bool:
    """Whether ``options`` gives the one reset option a view takes (``name``); any other key is a
    one-line ``ValueError``."""
    if not options:
        return False
    unknown = sorted(set(options) - {name})
    if unknown:
        raise ValueError(f"unknown reset option(s) {unknown}; valid options: [{name!r}]")
    return True
