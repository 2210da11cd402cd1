"""Construction shared by every view: world + params + simulator, the per-session spaces and the
registered ids' specs."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.envs.registration import EnvSpec

from recgym.params import SimParams
from recgym.simulator import Simulator
from recgym.world import World, resolve_world

#: Registered Gymnasium id -> the world it names.
ENV_IDS = {"recgym/KuaiRec-v0": "kuairec", "recgym/KuaiRand-v0": "kuairand", "recgym/Synthetic-v0": "synthetic"}


def build_simulator(
    n_sessions: int,
    world: str | World = "kuairec",
    data_dir: str | Path | None = None,
    world_options: dict[str, Any] | None = None,
    seed: int | None = None,
    count_name: str = "n_sessions",
    **options: Any,
) -> Simulator:
    """Resolve the world, validate ``options`` into :class:`SimParams` and build the simulator.

    ``count_name`` is what size errors call ``n_sessions`` (the view's argument, e.g. ``num_envs``);
    sizes are checked before anything is allocated (:class:`Simulator`)."""
    resolved = resolve_world(world, data_dir, **(world_options or {}))
    return Simulator(resolved, SimParams.from_kwargs(**options), n_sessions, seed=seed, count_name=count_name)


def session_spaces(world: World, params: SimParams) -> tuple[spaces.Dict, spaces.Space]:
    """Observation and action space of ONE session (the vector views batch them)."""
    k, d = params.history_len, world.embed_dim
    observation = spaces.Dict(
        {
            "item_ids": spaces.Box(-1, world.n_items - 1, shape=(k,), dtype=np.int64),
            "embeddings": spaces.Box(-1.0, 1.0, shape=(k, d), dtype=np.float32),
            "feedback": spaces.Box(0.0, world.reward_max, shape=(k,), dtype=np.float32),
            "step": spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32),
        }
    )
    if params.slate_size == 1:
        action: spaces.Space = spaces.Discrete(world.n_items)
    else:
        action = spaces.MultiDiscrete(np.full(params.slate_size, world.n_items))
    return observation, action



class RegisteredSpec:
    """Mixin for the env classes: the spec ``gym.make`` / ``gym.make_vec`` hands the env, completed and checked.

    ``max_episode_steps`` is set to the env's own limit, ``params.max_turn`` (the ids are registered
    without one: a registered limit would make ``gym.make`` add a ``TimeLimit`` that cuts
    ``max_turn=50`` at the default 30). A ``world`` option that differs from the id's world is
    refused: it would silently measure another world under the id's name.
    """

    _spec: EnvSpec | None = None
    params: SimParams

    @property
    def spec(self) -> EnvSpec | None:
        """The id's spec, with ``max_episode_steps`` equal to ``max_turn`` (``None`` outside ``gym.make``)."""
        return self._spec

    @spec.setter
    def spec(self, spec: EnvSpec | None) -> None:
        if spec is not None:
            world = spec.kwargs.get("world")
            if spec.id in ENV_IDS and world != ENV_IDS[spec.id]:
                shown = world if isinstance(world, str) else type(world).__name__
                raise ValueError(f"{spec.id} is the {ENV_IDS[spec.id]!r} world; world={shown!r} would measure another "
                                 f"world under its name: use that world's id, or RecSysEnv(world=...) for a custom World")
            spec = dataclasses.replace(spec, max_episode_steps=self.params.max_turn)
        self._spec = spec
