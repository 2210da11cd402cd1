"""recgym: a simulation gym for interactive, reinforcement-learning recommender systems."""

from recgym.envs import ENV_IDS, register_envs
from recgym.evaluation import evaluate
from recgym.params import SimParams
from recgym.simulator import Simulator
from recgym.world import World

__version__ = "0.1.0"

register_envs()

__all__ = ["ENV_IDS", "SimParams", "Simulator", "World", "__version__", "evaluate"]
