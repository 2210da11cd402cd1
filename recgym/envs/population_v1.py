"""PettingZoo-style module of the v1 user population (``from recgym.envs import population_v1``):
users who come back.

:class:`recgym.envs.population.PopulationEnv` on a v1 world (default ``"kuairec-v1"``): each user
keeps their state across sessions (:mod:`recgym.users`) and an empty slot receives the user whose
return time comes first. ``parallel_env``, ``raw_env`` and ``env`` as in
:mod:`recgym.envs.population_v0`. Registered as ``recgym/Population-v1`` in PettingZoo's
``"parallel"`` and ``"aec"`` registries.
"""

from __future__ import annotations

from typing import Any

from pettingzoo import AECEnv
from pettingzoo.utils import wrappers

from recgym.envs.population import PopulationEnv
from recgym.envs.population_v0 import PopulationAECEnv


class ReturningPopulationEnv(PopulationEnv):
    """:class:`PopulationEnv` on a v1 world: a one-line ``ValueError`` for a v0 world."""

    metadata = {**PopulationEnv.metadata, "name": "recgym_population_v1"}

    def __init__(self, world: Any = "kuairec-v1", **kwargs: Any) -> None:
        super().__init__(world=world, **kwargs)
        if not self.world.is_v1:
            raise ValueError(f"recgym/Population-v1 needs a v1 world (kuairec-v1, kuairand-v1, synthetic-v1), "
                             f"got {self.world.name!r}; recgym/Population-v0 runs the v0 worlds")


def parallel_env(**kwargs: Any) -> ReturningPopulationEnv:
    """The v1 population as a ``ParallelEnv`` (keyword options: see :class:`PopulationEnv`)."""
    return ReturningPopulationEnv(**kwargs)


def raw_env(**kwargs: Any) -> AECEnv:
    """The v1 population as an AEC env (each action checked on its agent's turn)."""
    return PopulationAECEnv(parallel_env(**kwargs))


def env(**kwargs: Any) -> AECEnv:
    """The AEC env wrapped in PettingZoo's ``OrderEnforcingWrapper``."""
    return wrappers.OrderEnforcingWrapper(raw_env(**kwargs))
