"""Construction shared by every view: world + params + simulator, and the per-session spaces."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces

from recgym.params import SimParams
from recgym.simulator import Simulator
from recgym.world import World, resolve_world


def build_simulator(
    n_sessions: int,
    world: str | World = "kuairec",
    data_dir: str | Path | None = None,
    world_options: dict[str, Any] | None = None,
    seed: int | None = None,
    **options: Any,
) -> Simulator:
    """Resolve the world, validate ``options`` into :class:`SimParams` and build the simulator."""
    resolved = resolve_world(world, data_dir, **(world_options or {}))
    return Simulator(resolved, SimParams.from_kwargs(**options), n_sessions, seed=seed)


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
