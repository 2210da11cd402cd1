"""recgym environments: the single-session Gymnasium env, the native vector env and the SB3 adapter.

Importing :mod:`recgym` registers ``recgym/KuaiRec-v0``, ``recgym/KuaiRand-v0`` and
``recgym/Synthetic-v0`` with Gymnasium, each with the native batched ``vector_entry_point``, and
``recgym/Fitted-v1`` (a world fitted to a log: ``gym.make("recgym/Fitted-v1", world_dir=WORLD_DIR)``,
``docs/fit.md``), the user population ``recgym/Population-v0`` with PettingZoo (``pettingzoo.make("parallel", ...)``;
module: ``recgym.envs.population_v0``).
"""

from recgym.envs.core import ENV_IDS, FITTED_ID, FITTED_WORLD
from recgym.envs.recsys import RecSysEnv
from recgym.envs.vector import RecSysVectorEnv

POPULATION_ID = "recgym/Population-v0"
#: Users who come back (recgym.users) on a v1 world: module ``recgym.envs.population_v1``.
POPULATION_V1_ID = "recgym/Population-v1"


def register_envs() -> None:
    """Register every recgym id with Gymnasium (idempotent).

    No ``max_episode_steps`` is registered: the env truncates at its own ``max_turn`` and reports
    it as ``env.spec.max_episode_steps`` (lifetime mode: ``lifetime_sessions * max_turn``; a
    registered limit would add a ``TimeLimit`` fixed at 30).
    """
    import gymnasium as gym

    for env_id, world in {**ENV_IDS, FITTED_ID: FITTED_WORLD}.items():
        if env_id not in gym.registry:
            gym.register(
                id=env_id,
                entry_point="recgym.envs.recsys:RecSysEnv",
                vector_entry_point="recgym.envs.vector:RecSysVectorEnv",
                kwargs={"world": world},
            )
    import pettingzoo

    registries = {"parallel": (pettingzoo.parallel_registry, "parallel_env"), "aec": (pettingzoo.aec_registry, "env")}
    for env_type, (registry, entry_point) in registries.items():
        for population_id, module in ((POPULATION_ID, "population_v0"), (POPULATION_V1_ID, "population_v1")):
            if population_id not in registry:
                pettingzoo.register(env_type, population_id, entry_point=f"recgym.envs.{module}:{entry_point}")


__all__ = ["ENV_IDS", "FITTED_ID", "POPULATION_ID", "RecSysEnv", "RecSysVectorEnv", "register_envs"]
