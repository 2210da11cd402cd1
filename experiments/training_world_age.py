"""How far the training world ages away from the evaluation world (issue #19's protocol defect).

A v1 env in session mode keeps its users between sessions (acquired taste, long-term interest drift,
consumed history) and its catalogue's click counts (popularity feedback), so the env a learner trains on
grows "old" while :func:`recgym.evaluate` builds a fresh one whose users are at their first session.
This script rolls a policy (a ready-to-run agent, or flat ``ppo`` trained on the same env) in the
training env as ``recgym.experiments.run_cell`` builds it (``SB3VecEnv``, ``num_envs`` sessions) and
records, every ``--every`` env steps:

    sessions_R    mean TRUE return of the sessions that ended in the block (the training world)
    R_step        mean true reward per step in the block
    taste         mean acquired taste, Users.taste (U, N) averaged over users and neighbourhoods
    taste_top     the users' mean of their highest neighbourhood taste
    lived         mean sessions started per user, Users.session_count (U,)
    click_gini    Gini of the catalogue's shared click counts (popularity feedback's state)

and at the end the same policy (deterministic) on ``--sessions`` sessions of a FRESH env
(:func:`recgym.evaluate`, what a cell reports) and of a FROZEN copy of the training env (the aged users
and catalogue, no reset). ``--option KEY=VALUE`` turns mechanisms off (``taste_weight=0``,
``popularity_feedback=0``, ``interest_memory=0``) to separate them; ``session_memory=true`` brings back
the aging world (users carry their state between sessions; the default since the fix is ``false``, every
session starts from the user's initial state, and the fresh / frozen ratio is ~1).

    python experiments/training_world_age.py --policy oracle --steps 100000
    python experiments/training_world_age.py --policy ppo --steps 100000 --option taste_weight=0
"""
from __future__ import annotations

import argparse
import copy
import json
from typing import Any

import numpy as np
from stable_baselines3.common.vec_env import VecEnvWrapper

from recgym.evaluation import as_policy, evaluate
from recgym.metrics import gini

FAIRNESS_V1_MAX30 = {"popular_streak": 3, "leave_window": 0, "reward_signal": "observed", "max_turn": 30}


class AgeRecorder(VecEnvWrapper):
    """Pass-through wrapper over a recgym ``SB3VecEnv`` that records the training world's age.

    ``rows``: one dict per ``every`` env steps (env steps = vector steps x B), the keys of the module
    docstring. Per row the session returns are those of the sessions that ENDED in the block."""

    def __init__(self, venv: Any, every: int) -> None:
        super().__init__(venv)
        self.every, self.steps, self.rows = every, 0, []
        self._return = np.zeros(venv.num_envs)
        self._ended: list[np.ndarray] = []
        self._reward_sum = 0.0
        self._block_steps = 0

    def reset(self) -> Any:
        return self.venv.reset()

    def step_wait(self) -> Any:
        obs, reward, dones, infos = self.venv.step_wait()
        true = self.venv.last_infos["true_reward"]
        self._return += true
        self._reward_sum += float(true.sum())
        self._block_steps += true.size
        self._ended.append(self._return[dones].copy())
        self._return[dones] = 0.0
        self.steps += true.size
        if self.steps // self.every > (self.steps - true.size) // self.every:
            self.rows.append(self.snapshot())
        return obs, reward, dones, infos

    def snapshot(self) -> dict[str, float]:
        sim = self.venv.venv.sim
        ended = np.concatenate(self._ended)
        row = {"steps": self.steps, "sessions": int(ended.size), "sessions_R": float(ended.mean()) if ended.size else float("nan"),
               "R_step": self._reward_sum / max(self._block_steps, 1), "taste": float(sim.users.taste.mean()),
               "taste_top": float(sim.users.taste.max(axis=1).mean()),
               "lived": float(sim.users.session_count.mean()), "click_gini": gini(sim.clicks.astype(np.float64))}
        self._ended, self._reward_sum, self._block_steps = [], 0.0, 0
        return row


def frozen_sessions(policy: Any, venv: Any, sessions: int, seed: int) -> np.ndarray:
    """(sessions,) true returns of ``policy`` on a deep copy of the RecSysVectorEnv ``venv`` as it stands
    (its users and catalogue counts kept: no reset); the sessions running in the copy are dropped and the
    next ``sessions`` to START are recorded, as :func:`recgym.evaluate` records a fresh env's."""
    env = copy.deepcopy(venv)
    agent = as_policy(policy, deterministic=True)
    agent.bind(env, seed)
    obs = env.sim.observe()
    episode = np.full(env.num_envs, -1)  # -1: a session that began before the copy (not recorded)
    returns = np.zeros(sessions)
    next_id = 0
    while next_id < sessions or (episode >= 0).any():
        actions = agent.act(obs, env.sim.action_mask())
        next_obs, rewards, terminated, truncated, infos = env.step(actions)
        agent.update(obs, actions, rewards)
        live = episode >= 0
        np.add.at(returns, episode[live], infos["true_reward"][live])
        for row in np.flatnonzero(terminated | truncated):
            episode[row] = next_id if next_id < sessions else -1
            next_id += 1
        obs = next_obs
    return returns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="recgym/KuaiRec-v1")
    parser.add_argument("--policy", default="oracle", help="a ready-to-run agent (random, nonpersonalised, oracle) or ppo")
    parser.add_argument("--steps", type=int, default=100_000, help="training-env steps (vector steps x num_envs)")
    parser.add_argument("--every", type=int, default=10_000)
    parser.add_argument("--num-envs", type=int, default=64)
    parser.add_argument("--sessions", type=int, default=256, help="sessions of each end evaluation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--logdir", default="runs", help="ppo's run directory (TensorBoard and model.zip)")
    parser.add_argument("--option", action="append", default=[], help="KEY=VALUE env option over fairness_v1 max30")
    args = parser.parse_args()
    options = dict(FAIRNESS_V1_MAX30)
    for item in args.option:
        key, value = item.split("=", 1)
        parsed = value[:1].isdigit() or value[:1] == "-" or value in ("true", "false")
        options[key] = json.loads(value) if parsed else value
    if args.policy == "ppo":
        from recgym.agents.flat import train

        recorders: list[AgeRecorder] = []

        def record(venv: Any) -> AgeRecorder:
            recorders.append(AgeRecorder(venv, args.every))
            return recorders[0]

        policy, _ = train("ppo", args.env, args.steps, seed=args.seed, logdir=args.logdir, num_envs=args.num_envs,
                          env_options=options, wrap_env=record)
        recorder = recorders[0]
    else:
        from recgym.agents import make_policy
        from recgym.envs.sb3 import SB3VecEnv

        policy = make_policy(args.policy)
        recorder = AgeRecorder(SB3VecEnv(args.env, num_envs=args.num_envs, **options), args.every)
        recorder.venv.seed(args.seed)
        obs = recorder.reset()
        policy.bind(recorder.venv.venv, args.seed)
        while recorder.steps < args.steps:
            actions = policy.act(obs, recorder.venv.venv.sim.action_mask())
            next_obs, reward, _, _ = recorder.step(actions)
            policy.update(obs, actions, reward)
            obs = next_obs
    fresh = evaluate(policy, args.env, episodes=args.sessions, seed=1000 + args.seed, num_envs=args.num_envs, **options)
    frozen = frozen_sessions(policy, recorder.venv.venv, args.sessions, 1000 + args.seed)
    for row in recorder.rows:
        print(json.dumps({key: round(value, 4) if isinstance(value, float) else value for key, value in row.items()}))
    print(json.dumps({"policy": args.policy, "options": options,
                      "fresh_R": round(fresh.summary["R_cum"], 3), "fresh_ci": round(fresh.ci95["R_cum"], 3),
                      "frozen_R": round(float(frozen.mean()), 3),
                      "frozen_ci": round(1.96 * float(frozen.std(ddof=1)) / np.sqrt(frozen.size), 3)}))


if __name__ == "__main__":
    main()
