"""How far the training world ages away from the evaluation world (issue #19's protocol defect).

A v1 env in session mode keeps its catalogue's click and exposure counts (popularity feedback) over the
whole training, and with ``session_memory=True`` its users between sessions (acquired taste, long-term
interest drift, consumed history), so the env a learner trains on grows "old" while
:func:`recgym.evaluate` builds a fresh one (counters at 0, users at their first session).
This script rolls a policy (a ready-to-run agent, or flat ``ppo`` or one of its reward-shaped twins
``ppo-fair`` / ``ppo-tail`` / ``ppo-novelty`` trained on the same env) in the training env as
``recgym.experiments.run_cell`` builds it (``SB3VecEnv``, ``num_envs`` sessions) and records, every
``--every`` env steps:

    sessions_R    mean TRUE return of the sessions that ended in the block (the training world)
    R_step        mean true reward per step in the block
    taste         mean acquired taste, Users.taste (U, N) averaged over users and neighbourhoods
    taste_top     the users' mean of their highest neighbourhood taste
    lived         mean sessions started per user, Users.session_count (U,)
    click_gini    Gini of the catalogue's shared click counts (popularity feedback's state)

and the catalogue's shared counters (``Simulator.clicks`` / ``exposure`` (I,), never cleared by the
sessions' autoreset; a fresh env starts them at 0, popularity = the world's prior):

    obs_R_step    mean OBSERVED (logged) reward per step in the block: what the learner trains on
                  (before a shaped twin's own term)
    click_mass    total logged clicks / total prior popularity (the clicks' share of popularity's mass)
    top100        share of popularity's mass (prior + clicks) held by the 100 most popular items now
    exposure_gini Gini of the cumulative exposure counts (every item shown since the reset)
    pop_score     mean popularity score log1p(pop_i) / max_j log1p(pop_j) of the recommended items in
                  the block, before the step (the conformity pull's p_i; DSRM-HRL's state and ppo-fair's
                  shaping read the same score, ``recgym.agents.rewards.log_popularity_score``)
    log_pop       mean log1p(pop_i) of those items: the observation's ``popularity`` feature, as each
                  impression is logged into the history
    log_exposure  mean log1p(exposure_i) of those items: the observation's ``exposure`` feature

At the end the same policy (deterministic) runs ``--sessions`` sessions of a FRESH env
(:func:`recgym.evaluate`, what a cell reports; and the same fresh env's true and logged returns and
popularity score, ``fresh_*``), of a FROZEN copy of the training env (the aged users and catalogue, no
reset) and of a RESET copy (the same copy with the catalogue's counters cleared: same users, clocks and
random streams, so frozen - reset is paired and isolates the catalogue's share).
``--catalogue-reset-every N`` trains with issue #19's periodic catalogue reset (the runner's protocol:
:class:`recgym.agents.callbacks.CatalogueReset`, N = an evaluation's user-steps, 15,000 for
``fairness_v1`` max30); trained policies only.
``--option KEY=VALUE`` turns mechanisms off (``taste_weight=0``, ``popularity_feedback=0``,
``interest_memory=0``) to separate them; ``session_memory=true`` brings back
the aging world (users carry their state between sessions; the default since the fix is ``false``, every
session starts from the user's initial state, and the fresh / frozen ratio is ~1).

    python experiments/training_world_age.py --policy oracle --steps 100000
    python experiments/training_world_age.py --policy ppo --steps 100000 --option taste_weight=0
    python experiments/training_world_age.py --policy ppo --steps 200000 --every 25000 --threads 1
    python experiments/training_world_age.py --policy ppo-fair --steps 200000 --threads 1 --catalogue-reset-every 15000
"""
from __future__ import annotations

import argparse
import copy
import json
from typing import Any

import numpy as np
from stable_baselines3.common.vec_env import VecEnvWrapper

from recgym.agents.rewards import log_popularity_score
from recgym.evaluation import as_policy, evaluate, make_eval_env
from recgym.metrics import gini, mean_ci95

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
        self._reward_sum = self._observed_sum = 0.0
        self._block_steps = 0
        self._shown = np.zeros(3)  # block sums of the recommended items' pop_score, log_pop, log_exposure

    def reset(self) -> Any:
        return self.venv.reset()

    def step_async(self, actions: np.ndarray) -> None:
        sim = self.venv.unwrapped.venv.sim  # the counters as the step will read them (it updates them at its end)
        items = np.asarray(actions).ravel()
        popularity = sim.popularity
        self._shown += (log_popularity_score(popularity)[items].sum(), np.log1p(popularity[items]).sum(),
                        np.log1p(sim.exposure[items]).sum())
        self.venv.step_async(actions)

    def step_wait(self) -> Any:
        obs, reward, dones, infos = self.venv.step_wait()
        true, observed = (self.venv.unwrapped.last_infos[key] for key in ("true_reward", "observed_feedback"))
        self._return += true
        self._reward_sum += float(true.sum())
        self._observed_sum += float(observed.sum())
        self._block_steps += true.size
        self._ended.append(self._return[dones].copy())
        self._return[dones] = 0.0
        self.steps += true.size
        if self.steps // self.every > (self.steps - true.size) // self.every:
            self.rows.append(self.snapshot())
        return obs, reward, dones, infos

    def snapshot(self) -> dict[str, float]:
        sim = self.venv.unwrapped.venv.sim
        ended = np.concatenate(self._ended)
        row = {"steps": self.steps, "sessions": int(ended.size), "sessions_R": float(ended.mean()) if ended.size else float("nan"),
               "R_step": self._reward_sum / max(self._block_steps, 1), "taste": float(sim.users.taste.mean()),
               "taste_top": float(sim.users.taste.max(axis=1).mean()),
               "lived": float(sim.users.session_count.mean()), "click_gini": gini(sim.clicks.astype(np.float64)),
               "obs_R_step": self._observed_sum / max(self._block_steps, 1), **catalogue_age(sim),
               **dict(zip(("pop_score", "log_pop", "log_exposure"), (self._shown / max(self._block_steps, 1)).tolist()))}
        self._ended, self._reward_sum, self._observed_sum, self._block_steps = [], 0.0, 0.0, 0
        self._shown[:] = 0
        return row


def catalogue_age(sim: Any) -> dict[str, float]:
    """The state of ``sim``'s shared catalogue counters: click_mass, top100 and exposure_gini (module docstring)."""
    popularity = sim.popularity
    return {"click_mass": float(sim.clicks.sum() / sim.world.pop_prior.sum()),
            "top100": float(np.sort(popularity)[-100:].sum() / popularity.sum()),
            "exposure_gini": gini(sim.exposure)}


def frozen_sessions(policy: Any, venv: Any, sessions: int, seed: int, counters: bool = True) -> dict[str, Any]:
    """``policy`` on a deep copy of the RecSysVectorEnv ``venv`` as it stands (its users and catalogue counts
    kept: no reset; ``counters=False`` clears the copy's catalogue counters, ``Simulator.clear_counters``); the
    sessions running in the copy are dropped and the next ``sessions`` to START are recorded, as
    :func:`recgym.evaluate` records a fresh env's. Returns per recorded session (sessions,) arrays ``true`` and
    ``observed`` (returns) and ``pop_score`` (the mean popularity score of its recommended items, before each
    step), and ``gini``: the Gini of the copy's exposure added while it ran (all its sessions)."""
    env = copy.deepcopy(venv)
    if not counters:
        env.sim.clear_counters()
    start_exposure = env.sim.exposure.copy()
    agent = as_policy(policy, deterministic=True)
    agent.bind(env, seed)
    obs = env.sim.observe()
    episode = np.full(env.num_envs, -1)  # -1: a session that began before the copy (not recorded)
    sums = np.zeros((4, sessions))  # true return, observed return, popularity score, steps
    next_id = 0
    while next_id < sessions or (episode >= 0).any():
        actions = agent.act(obs, env.sim.action_mask())
        pop_score = log_popularity_score(env.sim.popularity)[actions]
        next_obs, rewards, terminated, truncated, infos = env.step(actions)
        agent.update(obs, actions, rewards)
        live = episode >= 0
        for row, value in enumerate((infos["true_reward"], infos["observed_feedback"], pop_score, 1.0)):
            np.add.at(sums[row], episode[live], np.broadcast_to(value, live.shape)[live])
        for row in np.flatnonzero(terminated | truncated):
            episode[row] = next_id if next_id < sessions else -1
            next_id += 1
        obs = next_obs
    return {"true": sums[0], "observed": sums[1], "pop_score": sums[2] / sums[3],
            "gini": gini(env.sim.exposure - start_exposure)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="recgym/KuaiRec-v1")
    parser.add_argument("--policy", default="oracle",
                        help="a ready-to-run agent (random, nonpersonalised, oracle), ppo or a shaped twin (ppo-fair, ...)")
    parser.add_argument("--steps", type=int, default=100_000, help="training-env steps (vector steps x num_envs)")
    parser.add_argument("--every", type=int, default=10_000)
    parser.add_argument("--num-envs", type=int, default=64)
    parser.add_argument("--sessions", type=int, default=256, help="sessions of each end evaluation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--logdir", default="runs", help="ppo's run directory (TensorBoard and model.zip)")
    parser.add_argument("--option", action="append", default=[], help="KEY=VALUE env option over fairness_v1 max30")
    parser.add_argument("--threads", type=int, default=0, help="torch threads for ppo (0: torch's default)")
    parser.add_argument("--catalogue-reset-every", type=int, default=None, metavar="N",
                        help="train with the catalogue's counters cleared every N user-steps (trained policies)")
    args = parser.parse_args()
    if args.threads < 0:
        parser.error(f"--threads must be >= 0, got {args.threads}")
    from recgym.agents.shaped import SHAPED_PPO

    trained_policy = args.policy == "ppo" or args.policy in SHAPED_PPO
    if args.catalogue_reset_every is not None and not trained_policy:
        parser.error(f"--catalogue-reset-every needs a trained policy (ppo, {', '.join(SHAPED_PPO)}), got {args.policy}")
    options = dict(FAIRNESS_V1_MAX30)
    for item in args.option:
        key, value = item.split("=", 1)
        parsed = value[:1].isdigit() or value[:1] == "-" or value in ("true", "false")
        options[key] = json.loads(value) if parsed else value
    if trained_policy:
        import torch

        from recgym.agents.flat import train

        if args.threads:
            torch.set_num_threads(args.threads)

        recorders: list[AgeRecorder] = []

        def record(venv: Any) -> AgeRecorder:  # over the twin's shaping: it records the env's own rewards
            recorders.append(AgeRecorder(SHAPED_PPO[args.policy](venv) if args.policy in SHAPED_PPO else venv,
                                         args.every))
            return recorders[0]

        policy, _ = train("ppo", args.env, args.steps, seed=args.seed, logdir=args.logdir, num_envs=args.num_envs,
                          env_options=options, wrap_env=record, agent=args.policy,
                          catalogue_reset_every=args.catalogue_reset_every)
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
    fresh_env = make_eval_env(args.env, args.num_envs, **options)
    fresh_env.reset(seed=1000 + args.seed)
    fresh_logged = frozen_sessions(policy, fresh_env, args.sessions, 1000 + args.seed)  # its counters start at 0
    trained = recorder.venv.unwrapped.venv
    aged = catalogue_age(trained.sim)
    frozen = frozen_sessions(policy, trained, args.sessions, 1000 + args.seed)
    cleared = frozen_sessions(policy, trained, args.sessions, 1000 + args.seed, counters=False)
    for row in recorder.rows:
        print(json.dumps({key: round(value, 4) if isinstance(value, float) else value for key, value in row.items()}))

    def mean_ci(values: np.ndarray) -> list[float]:
        return [round(value, 3) for value in mean_ci95(values)]

    print(json.dumps({"policy": args.policy, "options": options, "seed": args.seed, "steps": args.steps,
                      "catalogue_reset_every": args.catalogue_reset_every,
                      "catalogue_at_end": {key: round(value, 4) for key, value in aged.items()},
                      "fresh_R": round(fresh.summary["R_cum"], 3), "fresh_ci": round(fresh.ci95["R_cum"], 3),
                      "fresh_gini": round(fresh.summary["gini"], 4),
                      **{f"{name}_{key}": mean_ci(run[key])
                         for name, run in (("fresh", fresh_logged), ("frozen", frozen), ("reset", cleared))
                         for key in ("true", "observed", "pop_score")},
                      **{f"frozen_minus_reset_{key}": mean_ci(frozen[key] - cleared[key]) for key in ("true", "observed")},
                      "frozen_gini": round(frozen["gini"], 4), "reset_gini": round(cleared["gini"], 4)}))


if __name__ == "__main__":
    main()
