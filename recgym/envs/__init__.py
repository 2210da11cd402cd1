"""recgym environments: the single-session Gymnasium env, the native vector env and the SB3 adapter.

Importing :mod:`recgym` registers ``recgym/KuaiRec-v0``, ``recgym/KuaiRand-v0`` and
``recgym/Synthetic-v0`` with Gymnasium, each with the native batched ``vector_entry_point``.
"""

from recgym.envs.recsys import RecSysEnv
from recgym.envs.vector import RecSysVectorEnv

ENV_IDS = {"recgym/KuaiRec-v0": "kuairec", "recgym/KuaiRand-v0": "kuairand", "recgym/Synthetic-v0": "synthetic"}


def register_envs() -> None:
    """Register every recgym id with Gymnasium (idempotent)."""
    import gymnasium as gym

    for env_id, world in ENV_IDS.items():
        if env_id not in gym.registry:
            gym.register(
                id=env_id,
                entry_point="recgym.envs.recsys:RecSysEnv",
                vector_entry_point="recgym.envs.vector:RecSysVectorEnv",
                kwargs={"world": world},
            )


__all__ = ["ENV_IDS", "RecSysEnv", "RecSysVectorEnv", "register_envs"]
