"""PettingZoo-style module of the user-population env (``from recgym.envs import population_v0``).

``parallel_env(**kwargs)``: the native :class:`recgym.envs.population.PopulationEnv`;
``raw_env(**kwargs)``: its AEC version through PettingZoo's ``parallel_to_aec``;
``env(**kwargs)``: ``raw_env`` with PettingZoo's ``OrderEnforcingWrapper``.
Also registered as ``recgym/Population-v0`` in PettingZoo's ``"parallel"`` and ``"aec"`` registries.
"""

from __future__ import annotations

from typing import Any

from pettingzoo import AECEnv
from pettingzoo.utils import parallel_to_aec, wrappers

from recgym.envs.population import PopulationEnv


def parallel_env(**kwargs: Any) -> PopulationEnv:
    """The population as a ``ParallelEnv`` (keyword options: see :class:`PopulationEnv`)."""
    return PopulationEnv(**kwargs)


def raw_env(**kwargs: Any) -> AECEnv:
    """The population as an AEC env, one user acting at a time (a thin conversion of the parallel env)."""
    return parallel_to_aec(parallel_env(**kwargs))


def env(**kwargs: Any) -> AECEnv:
    """The AEC env wrapped in PettingZoo's ``OrderEnforcingWrapper``."""
    return wrappers.OrderEnforcingWrapper(raw_env(**kwargs))
