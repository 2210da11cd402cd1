"""RLlib integration (new API stack): every recgym env registered with ``tune.register_env``, and a PPO config.

::

    from recgym.integrations.rllib import ppo_config, register_rllib_envs

    register_rllib_envs()                       # once per process (workers re-register themselves)
    algo = ppo_config("recgym/KuaiRec-v0", num_envs_per_env_runner=64).build_algo()
    print(algo.train()["env_runners"]["episode_return_mean"])

**Single-session ids** (``recgym/KuaiRec-v0``, ``recgym/KuaiRand-v0``, ``recgym/Synthetic-v0``).
RLlib's ``SingleAgentEnvRunner`` builds its env with ``gym.make_vec(name, num_envs=N,
vectorization_mode=config.gym_env_vectorize_mode)``; :func:`ppo_config` sets
``"vector_entry_point"``, so each env runner holds ONE :class:`RecSysVectorEnv`: N sessions stepped
by one batched simulator call, no per-env copies. RLlib's episode bookkeeping assumes gymnasium's
``NEXT_STEP`` autoreset (after a done step, the next ``step`` returns the new episode's first
observation with reward 0, ignoring that env's action), so the creator builds it with
``autoreset_mode=AutoresetMode.NEXT_STEP`` (also the native default; stated so a change of default
cannot reach RLlib).

**Population** (``recgym/Population-v0``): the PettingZoo ``ParallelEnv`` through RLlib's
``ParallelPettingZooEnv`` (:class:`RLlibPopulationEnv`); every user session is an agent and all are
mapped to one shared policy (``"recommender"``), i.e. one recommender serving the population.

Observations are ``Dict``s: :func:`ppo_config` adds RLlib's ``FlattenObservations`` connector and
drops ``item_ids`` (raw ids are categorical; ``embeddings`` carry the item content).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from gymnasium import spaces
from gymnasium.vector import AutoresetMode

from recgym.envs import ENV_IDS, POPULATION_ID
from recgym.envs.recsys import RecSysEnv
from recgym.envs.vector import RecSysVectorEnv
from recgym.integrations import import_optional

tune = import_optional("ray.tune", "ray")
_ppo = import_optional("ray.rllib.algorithms.ppo", "ray")
_connectors = import_optional("ray.rllib.connectors.env_to_module", "ray")
_env = import_optional("ray.rllib.env", "ray")
_pettingzoo_env = import_optional("ray.rllib.env.wrappers.pettingzoo_env", "ray")

#: Every id :func:`register_rllib_envs` registers.
RLLIB_ENV_IDS = (*ENV_IDS, POPULATION_ID)
#: The module id every population agent is mapped to.
SHARED_POLICY = "recommender"


class RLlibPopulationEnv(_pettingzoo_env.ParallelPettingZooEnv):
    """RLlib's ``ParallelPettingZooEnv`` over :class:`recgym.envs.population.PopulationEnv`.

    Users arrive and leave during an episode, so ``agents``/``possible_agents`` follow the
    PettingZoo env and the (shared) spaces are declared for every possible agent, not only the
    users present at the first reset.
    """

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        self.possible_agents = list(env.possible_agents)
        observation, action = env.observation_space(env.possible_agents[0]), env.action_space(env.possible_agents[0])
        self.observation_spaces = dict.fromkeys(self.possible_agents, observation)
        self.action_spaces = dict.fromkeys(self.possible_agents, action)
        self.observation_space = spaces.Dict(self.observation_spaces)
        self.action_space = spaces.Dict(self.action_spaces)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict, dict]:
        observations, infos = super().reset(seed=seed, options=options)
        self.agents = list(self.par_env.agents)
        return observations, infos

    def step(self, action_dict: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        """The population's step. The episode is over (``"__all__"``) when no user is left: truncated
        if it reached ``max_cycles`` (some user was truncated), else terminated.

        RLlib also ends a multi-agent episode when every agent it has seen is done
        (``MultiAgentEpisode.add_env_step``), even if new agents arrive in that step. So when all
        the users who acted leave at once, the episode is truncated there: the arrivals are
        dropped from the returned dicts and RLlib resets the population.
        """
        results = self.par_env.step(action_dict)
        observations, rewards, terminateds, truncateds, infos = results
        self.agents = list(self.par_env.agents)
        turnover = bool(action_dict) and all(terminateds[a] or truncateds[a] for a in action_dict)
        if turnover and self.agents:
            for arrival in self.agents:
                for values in results:
                    del values[arrival]
            self.agents = []
            truncateds["__all__"], terminateds["__all__"] = True, False
        else:
            over = not self.agents
            truncateds["__all__"] = over and any(truncateds.values())
            terminateds["__all__"] = over and not truncateds["__all__"]
        return observations, rewards, terminateds, truncateds, infos


def make_env(world: str, config: dict[str, Any]) -> RecSysEnv | RecSysVectorEnv:
    """RLlib env creator of a single-session id: with ``num_envs`` in ``config`` (RLlib's
    ``vector_entry_point`` call) one ``NEXT_STEP``-autoreset :class:`RecSysVectorEnv`, else one
    :class:`RecSysEnv`. Every other key of ``config`` (RLlib's ``env_config``) is an env option."""
    options = dict(config)
    num_envs = options.pop("num_envs", None)
    if num_envs is None:
        return RecSysEnv(world=world, **options)
    return RecSysVectorEnv(num_envs, world=world, autoreset_mode=AutoresetMode.NEXT_STEP, **options)


def make_population_env(config: dict[str, Any]) -> RLlibPopulationEnv:
    """RLlib env creator of ``recgym/Population-v0``; ``config`` holds :class:`PopulationEnv` options."""
    from recgym.envs import population_v0

    return RLlibPopulationEnv(population_v0.parallel_env(**dict(config)))


def register_rllib_envs() -> tuple[str, ...]:
    """Register every recgym id (:data:`RLLIB_ENV_IDS`) with ``ray.tune.register_env``; returns the ids."""
    for env_id, world in ENV_IDS.items():
        tune.register_env(env_id, _creator(world))
    tune.register_env(POPULATION_ID, make_population_env)
    return RLLIB_ENV_IDS


def _creator(world: str) -> Callable[[dict[str, Any]], Any]:
    return lambda config: make_env(world, config)


def ppo_config(
    env: str = "recgym/KuaiRec-v0",
    *,
    env_config: dict[str, Any] | None = None,
    num_env_runners: int = 0,
    num_envs_per_env_runner: int = 16,
    rollout_fragment_length: int = 32,
    minibatch_size: int = 128,
    num_epochs: int = 4,
    lr: float = 3e-4,
    hidden: tuple[int, ...] = (128, 128),
    seed: int | None = 0,
) -> Any:
    """A documented PPO (new API stack, torch) ``PPOConfig`` for a recgym id; call ``.build_algo()``.

    Args:
        env: one of :data:`RLLIB_ENV_IDS` (registered here if needed).
        env_config: env options (every ``SimParams`` field, ``world_options``; for the population
            also ``n_users``, ``max_cycles``, ``arrival_rate``...).
        num_env_runners: remote sampling actors (0 samples in the driver); each holds one batched
            env of ``num_envs_per_env_runner`` sessions (the population: that many populations).
        rollout_fragment_length: steps per session per sample; the train batch is
            ``max(1, num_env_runners) * num_envs_per_env_runner * rollout_fragment_length`` env steps.
        minibatch_size, num_epochs, lr: PPO's SGD settings; hidden: MLP sizes of the policy/value nets.
        seed: seeds RLlib (env resets per runner and torch).
    """
    if env not in RLLIB_ENV_IDS:
        raise ValueError(f"unknown env id {env!r}; valid ids: {', '.join(RLLIB_ENV_IDS)}")
    register_rllib_envs()
    population = env == POPULATION_ID
    train_batch = max(1, num_env_runners) * num_envs_per_env_runner * rollout_fragment_length
    config = (
        _ppo.PPOConfig()
        .environment(env, env_config=dict(env_config or {}))
        .env_runners(
            num_env_runners=num_env_runners,
            num_envs_per_env_runner=num_envs_per_env_runner,
            rollout_fragment_length=rollout_fragment_length,
            gym_env_vectorize_mode="sync" if population else "vector_entry_point",
            env_to_module_connector=functools.partial(_flatten_observations, multi_agent=population),
        )
        .training(train_batch_size_per_learner=train_batch, minibatch_size=min(minibatch_size, train_batch),
                  num_epochs=num_epochs, lr=lr)
        .rl_module(model_config={"fcnet_hiddens": list(hidden), "vf_share_layers": False})
        .debugging(seed=seed)
    )
    if population:
        config = config.multi_agent(policies={SHARED_POLICY}, policy_mapping_fn=_to_shared_policy)
    return config


def _flatten_observations(env: Any, spaces: Any = None, device: Any = None, *, multi_agent: bool = False) -> Any:
    """RLlib's ``FlattenObservations`` without ``item_ids``, for the env runner's (vector) ``env`` or,
    on a runner without env (the driver when ``num_env_runners > 0``), its ``spaces``."""
    if env is not None:
        observation, action = env.single_observation_space, env.single_action_space
    else:
        observation, action = spaces[_env.INPUT_ENV_SINGLE_SPACES]
    return _connectors.FlattenObservations(observation, action, multi_agent=multi_agent, keys_to_remove=["item_ids"])


def _to_shared_policy(agent_id: str, episode: Any, **kwargs: Any) -> str:
    return SHARED_POLICY
