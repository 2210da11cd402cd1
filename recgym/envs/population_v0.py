"""PettingZoo-style module of the user-population env (``from recgym.envs import population_v0``).

``parallel_env(**kwargs)``: the native :class:`recgym.envs.population.PopulationEnv`;
``raw_env(**kwargs)``: its AEC version, PettingZoo's ``parallel_to_aec`` conversion checking each
action on its agent's own turn (:class:`PopulationAECEnv`);
``env(**kwargs)``: ``raw_env`` with PettingZoo's ``OrderEnforcingWrapper``.
Also registered as ``recgym/Population-v0`` in PettingZoo's ``"parallel"`` and ``"aec"`` registries.
"""

from __future__ import annotations

from typing import Any

from pettingzoo import AECEnv
from pettingzoo.utils import wrappers
from pettingzoo.utils.conversions import parallel_to_aec_wrapper

from recgym.envs.population import PopulationEnv


class PopulationAECEnv(parallel_to_aec_wrapper):
    """PettingZoo's parallel-to-AEC conversion of :class:`PopulationEnv` that checks each action on
    the acting agent's own ``step``.

    The plain conversion stores every action until the cycle's last agent steps and only then steps
    the parallel env, so one agent's bad action failed on another agent's turn, every later try
    failed again, and the env was wedged. Here a bad action (a bool, a float, a wrong shape, an item
    id outside [0, n_items)) is a one-line ``ValueError`` on its own agent's turn, and nothing
    changes: the same agent may step again with a valid action. A done agent's step takes ``None``.
    """

    def step(self, action: Any) -> None:
        agent = self.agent_selection
        if self.terminations[agent] or self.truncations[agent]:
            if action is not None:
                raise ValueError(f"{agent!r} is done (terminated or truncated): its step takes None, got {action!r}")
        else:
            self.env.check_action(agent, action)
        super().step(action)


def parallel_env(**kwargs: Any) -> PopulationEnv:
    """The population as a ``ParallelEnv`` (keyword options: see :class:`PopulationEnv`)."""
    return PopulationEnv(**kwargs)


def raw_env(**kwargs: Any) -> AECEnv:
    """The population as an AEC env, one user acting at a time (a thin conversion of the parallel env)."""
    return PopulationAECEnv(parallel_env(**kwargs))


def env(**kwargs: Any) -> AECEnv:
    """The AEC env wrapped in PettingZoo's ``OrderEnforcingWrapper``."""
    return wrappers.OrderEnforcingWrapper(raw_env(**kwargs))
