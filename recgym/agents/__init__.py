"""Agents: batched baseline policies (:mod:`recgym.agents.baselines`), flat SB3 agents
(:mod:`recgym.agents.flat`) and the registry the command line looks agents up in.

Add an agent by adding an :class:`AgentSpec` to :data:`AGENTS` (or :func:`register_agent` at
import time of a module that is imported here). Targets are ``"module:attribute"`` strings,
imported only when the agent is used, so listing agents never imports torch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recgym.agents.baselines import (
    UCB, EpsilonGreedy, FamiliarityDebiaser, LinUCB, MostPopular, OracleGreedy, Policy, RandomPolicy,
)
from recgym.world import World


@dataclass(frozen=True)
class AgentSpec:
    """How the command line builds an agent.

    description: one line for ``--help`` and errors.
    policy: ``"module:callable"`` returning a ready :class:`Policy` (called with ``args``/``kwargs``;
        a string ``base`` kwarg names another registered agent, built first). For untrained agents.
    train: ``"module:callable"`` for trainable agents, called as ``train(*args, env_id, timesteps,
        seed=, logdir=, num_envs=, progress_bar=, eval_episodes=, env_options=)`` and returning
        ``(model_or_policy, checkpoint_path)``, the checkpoint in a run directory of its own under
        ``logdir`` (:func:`recgym.agents.checkpoints.new_run_dir`).
    load: ``"module:callable"`` called as ``load(*args, path, world=)`` returning a model or policy; it
        refuses (one-line ``ValueError`` naming the file) a file that is not this agent's checkpoint or,
        with a ``world`` given, was trained on another world (:mod:`recgym.agents.checkpoints`).
    """

    description: str
    policy: str | None = None
    train: str | None = None
    load: str | None = None
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def trainable(self) -> bool:
        return self.train is not None


def _sb3(algo: str, description: str) -> AgentSpec:
    return AgentSpec(description, train="recgym.agents.flat:train", load="recgym.agents.flat:load_model", args=(algo,))


_BASELINES = "recgym.agents.baselines"
#: Multiples of the familiarity post-rankers' default strength registered as ``<name>-x<multiple>`` (``debias-linucb``'s
#: weight, ``lafb``'s strength): with the agent itself (1x) and their base (0x, ``linucb``) the strength sweep of
#: ``familiarity_v1``'s equal-watch-time comparison (:func:`recgym.experiments.equal_watch_time`).
STRENGTH_MULTIPLES = (0.5, 2.0)
AGENTS: dict[str, AgentSpec] = {
    "random": AgentSpec("uniformly random allowed item", f"{_BASELINES}:RandomPolicy"),
    "popular": AgentSpec("most popular item by logged popularity", f"{_BASELINES}:MostPopular"),
    "oracle": AgentSpec("leave-aware greedy on the TRUE expected reward (upper reference)", f"{_BASELINES}:OracleGreedy"),
    "oracle-tail": AgentSpec("control: the oracle restricted to the long tail (no top-20% item while a tail item "
                             "is allowed)", f"{_BASELINES}:LongTailOracle"),
    "nonpersonalised": AgentSpec("control: one ranking for everyone, the population's mean satisfaction, leave-aware "
                                 "(v1 worlds)", f"{_BASELINES}:PopulationMeanRanking"),
    "egreedy": AgentSpec("epsilon-greedy bandit over items (epsilon=0.1)", f"{_BASELINES}:EpsilonGreedy"),
    "ucb": AgentSpec("UCB1 bandit over items", f"{_BASELINES}:UCB"),
    "linucb": AgentSpec("contextual LinUCB on history x item features", f"{_BASELINES}:LinUCB"),
    "time-linucb": AgentSpec("time-aware LinUCB (recency-weighted state, step-dependent popularity weight)",
                             f"{_BASELINES}:LinUCB", kwargs={"recency": 0.7, "time_aware": True}),
    "hyperbandit": AgentSpec("HyperBandit: time-period hypernetwork -> rank-8 update of LinUCB's preference, "
                             "shared + per-user heads, UCB (v1 worlds; recgym/agents/hyperbandit.py)",
                             "recgym.agents.hyperbandit:HyperBandit"),
    "debias-popular": AgentSpec("familiarity-debiasing post-ranker over most-popular's top 50",
                                f"{_BASELINES}:FamiliarityDebiaser", kwargs={"base": "popular"}),
    "debias-linucb": AgentSpec("familiarity-debiasing post-ranker over LinUCB's top 50",
                               f"{_BASELINES}:FamiliarityDebiaser", kwargs={"base": "linucb"}),
    "lafb": AgentSpec("LAFB: learned per-user familiarity debiasing factors (logged-reward regression), "
                      "post-ranker over LinUCB's top 50 (v1 worlds; recgym/agents/lafb.py)",
                      "recgym.agents.lafb:LAFB", kwargs={"base": "linucb"}),
    **{f"{name}-x{multiple:g}": AgentSpec(f"{name} at {multiple:g}x its default debiasing strength "
                                          f"(familiarity_v1's equal-watch-time sweep)", target,
                                          kwargs={"base": "linucb", knob: default * multiple})
       for name, target, knob, default in (("debias-linucb", f"{_BASELINES}:FamiliarityDebiaser", "weight", 2.0),
                                           ("lafb", "recgym.agents.lafb:LAFB", "strength", 1.0))
       for multiple in STRENGTH_MULTIPLES},
    "ppo": _sb3("ppo", "flat SB3 PPO on the item action space (item-scoring head)"),
    "a2c": _sb3("a2c", "flat SB3 A2C on the item action space (item-scoring head)"),
    "dqn": _sb3("dqn", "flat SB3 DQN on the item action space (item-scoring Q head)"),
    "ppo-gru": AgentSpec("recurrent-state PPO: a GRU over the observation's logged history as the state "
                         "(fair flat baseline for novelty; recgym/agents/recurrent.py)",
                         train="recgym.agents.recurrent:train_ppo_gru", load="recgym.agents.recurrent:load_ppo_gru"),
    **{name: AgentSpec(description, train="recgym.agents.shaped:train_shaped_ppo",
                       load="recgym.agents.shaped:load_shaped_ppo", args=(name,))
       for name, description in (
           ("ppo-novelty", "DNaIR-style PPO trained on reward + EasyRL4Rec diversity/novelty bonus"),
           *((name, f"flat PPO with {method}'s reward shaping (its flat control; recgym/agents/shaped.py)")
             for name, method in (("ppo-fair", "dsrm-hrl"), ("ppo-tail", "hrl4pfg"))))},
    "dorl": AgentSpec("DORL-style A2C on an uncertainty-penalised ensemble reward model (simulator transitions)",
                      train="recgym.agents.dorl:train_dorl", load="recgym.agents.dorl:load_dorl"),
    "maskable-ppo": _sb3("maskable-ppo", "sb3-contrib MaskablePPO (trains with the NX no-repeat mask)"),
    "dsrm-pretrain": AgentSpec("DSRM stage I: diffusion denoiser of the user state (random behaviour logs)",
                               train="recgym.agents.dsrm.cli:train_cli", load="recgym.agents.dsrm.cli:load_model"),
    **{name: AgentSpec(description, train="recgym.agents.hrl_agents:train", load="recgym.agents.hrl_agents:load",
                       args=(name,))
       for name, description in (
           ("dsrm-hrl", "DSRM-HRL: DSRM-purified state, high-level fairness goal, low-level engagement (PPO x2)"),
           ("dsrm-flat", "DSRM-HRL ablation FLAT: DSRM state, one-level PPO (fixed goal)"),
           ("dsrm-hrl-const", "control: DSRM-HRL with a constant state (stage I's mean purified state for everyone)"),
           ("dsrm-flat-const", "control: dsrm-flat with a constant state (stage I's mean purified state for everyone)"),
           ("hrl-no-dsrm", "DSRM-HRL ablation: both levels on the raw history state, no DSRM"),
           ("hrl4pfg", "HRL4PFG: macro virtual long-tail goal item, micro choice among its nearest items"),
           ("novelty-hrl", "novelty-seeking HRL: inferred novelty propensity as the low level's goal"),
       )},
}


def register_agent(name: str, spec: AgentSpec) -> None:
    """Add an agent to :data:`AGENTS` (a name already taken is a ValueError)."""
    if name in AGENTS:
        raise ValueError(f"agent {name!r} is already registered")
    AGENTS[name] = spec


def get_agent(name: str) -> AgentSpec:
    """The spec of a registered agent, or a one-line ValueError listing the valid names."""
    if name not in AGENTS:
        raise ValueError(f"unknown agent/policy {name!r}; valid: {', '.join(AGENTS)}")
    return AGENTS[name]


def _resolve(target: str) -> Any:
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


def make_policy(name: str) -> Policy:
    """A fresh instance of an untrained registered agent (trainable ones need :func:`train_agent`)."""
    spec = get_agent(name)
    if spec.policy is None:
        raise ValueError(f"agent {name!r} must be trained (or loaded from a checkpoint) first; "
                         f"ready-to-run agents: {', '.join(k for k, v in AGENTS.items() if v.policy)}")
    kwargs = dict(spec.kwargs)
    if isinstance(kwargs.get("base"), str):
        kwargs["base"] = make_policy(kwargs["base"])
    return _resolve(spec.policy)(*spec.args, **kwargs)


def train_agent(name: str, env_id: str, timesteps: int, **options: Any) -> tuple[Any, Path]:
    """Train a trainable registered agent; ``options`` as documented on :class:`AgentSpec`."""
    spec = get_agent(name)
    if not spec.trainable:
        raise ValueError(f"agent {name!r} is not trainable; trainable agents: "
                         f"{', '.join(k for k, v in AGENTS.items() if v.trainable)}")
    return _resolve(spec.train)(*spec.args, env_id, timesteps, **options)


def load_agent(name: str, path: str | Path, world: World | None = None) -> Any:
    """Load a trained registered agent from a checkpoint; with ``world`` given, a checkpoint trained on
    another world is refused here (else when the policy is bound to an env)."""
    spec = get_agent(name)
    if spec.load is None:
        raise ValueError(f"agent {name!r} has no checkpoint loader; loadable agents: "
                         f"{', '.join(k for k, v in AGENTS.items() if v.load)}")
    if not Path(path).exists():
        raise ValueError(f"checkpoint {str(path)!r} not found")
    return _resolve(spec.load)(*spec.args, path, world=world)


__all__ = ["AGENTS", "UCB", "AgentSpec", "EpsilonGreedy", "FamiliarityDebiaser", "LinUCB", "MostPopular",
           "OracleGreedy", "Policy", "RandomPolicy", "get_agent", "load_agent", "make_policy", "register_agent",
           "train_agent"]
