"""Two-level recommenders trained with Stable-Baselines3, each level on a batched simulator of its own.

Each level is an ordinary SB3 model on its own goal-conditioned ``VecEnv`` view of a
:class:`~recgym.envs.vector.RecSysVectorEnv` (one per level, same id and options: each level steps its
own simulator); a :class:`Method` (one readable module per method:
``dsrm_hrl``, ``hrl4pfg``, ``novelty_hrl``) says what each level sees, does and earns::

      obs ──► Method.high_observation ──► HIGH policy ──► goal g   (every M = option_length steps)
                                                            │
      obs, g ──► Method.candidates ──► (B, L) candidates ──► Method.low_observation ──► LOW policy
                                                            │
               low action j picks the j-th candidate ──► item ──► simulator ──► reward

* :class:`LowLevelVecEnv`: one step = one recommendation. Goals come from the frozen high policy
  (random goals before the first high-level round); reward = ``Method.low_reward``.
* :class:`HighLevelVecEnv`: one step = one option: the frozen low policy recommends until the
  session's option ends (M steps, or the user leaves); sessions that finish early wait (the
  simulator's ``active`` mask), so every option starts at a session step that is a multiple of M.
  Reward = ``Method.high_reward`` of the option.
* :func:`train_hierarchy` alternates ``low.learn`` and ``high.learn`` for ``rounds`` rounds,
  logs both to TensorBoard, saves a checkpoint after every round and resumes from one.
* :class:`HierarchicalPolicy` runs both levels as a :class:`~recgym.agents.baselines.Policy` for
  :func:`recgym.evaluate`.
"""

from __future__ import annotations

import copy
import json
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium import spaces
from gymnasium.vector import AutoresetMode
from numba import njit
from scipy.stats import rankdata
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.logger import configure
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.preprocessing import preprocess_obs
from stable_baselines3.common.vec_env import VecEnv

from recgym.agents.baselines import Policy
from recgym.agents.callbacks import CatalogueReset, TruthCurve
from recgym.agents.checkpoints import check_meta, check_world, checkpoint_meta, first_line, write_json_atomically
from recgym.agents.lean_ppo import LeanActorCriticPolicy, LeanPPO
from recgym.agents.progress import TrainingProgressBar
from recgym.envs.vector import RecSysVectorEnv
from recgym.metrics import gini
from recgym.sizes import check_count, check_optional_count
from recgym.world import World

Obs = dict[str, np.ndarray]


class Method(Protocol):
    """What a two-level method defines. Arrays have B rows (one per session)."""

    name: str
    option_length: int
    goal_space: spaces.Box
    high_observation_space: spaces.Box
    low_observation_space: spaces.Box
    low_action_space: spaces.Space
    high_policy_kwargs: dict[str, Any]  # SB3 policy_kwargs of each level (e.g. a features extractor)
    low_policy_kwargs: dict[str, Any]

    def bind(self, venv: RecSysVectorEnv) -> None:
        """Attach to the batched env (world, simulator) before use."""

    def high_observation(self, obs: Obs) -> np.ndarray:
        """(B, H) what the high level sees."""

    def candidates(self, obs: Obs, goal: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """(B, L) ids of the items the low level chooses among, given the (B, G) goals; allowed by the (B, I) mask."""

    def low_observation(self, obs: Obs, goal: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """(B, F) what the low level sees, given the (B, G) goals and the (B, L) candidates."""

    def low_reward(self, reward: np.ndarray, obs: Obs, next_obs: Obs, goal: np.ndarray, items: np.ndarray) -> np.ndarray:
        """(B,) low-level reward of one step."""

    def high_reward(self, option_reward: np.ndarray, option_items: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """(B,) high-level reward of one option: (B,) summed env reward, (B, M) items (-1 unused)."""

    # Optional: ``end_low_rollout(self) -> dict[str, float]``, called after every low-level rollout (a
    # method's own update between PPO updates, e.g. DSRM-HRL's dual ascent); returns values to log.
    # Optional: ``low_view(self, obs, goal, mask) -> (low_observation, candidates)``, both at once where
    # they share work (:func:`low_view`); it must equal ``candidates`` then ``low_observation``.


def high_action_space(goal_space: spaces.Box) -> spaces.Box:
    """The high policy's action space: ``[-1, 1]`` in every goal dimension (:func:`goal_of_action` maps it
    onto ``goal_space``), so the Gaussian's initial mean 0 is the CENTRE of the goal range, not an edge."""
    return spaces.Box(-1.0, 1.0, shape=goal_space.shape, dtype=np.float32)


def goal_of_action(goal_space: spaces.Box, action: np.ndarray) -> np.ndarray:
    """(B, G) float32 goals in ``goal_space`` from (B, G) high-level actions, clipped to [-1, 1] and
    rescaled linearly: -1 -> ``goal_space.low``, 0 -> the centre, 1 -> ``goal_space.high``."""
    unit = (np.clip(action, -1.0, 1.0) + 1.0) * 0.5
    return (goal_space.low + unit * (goal_space.high - goal_space.low)).astype(np.float32)


def session_step(obs: Obs, max_turn: int) -> np.ndarray:
    """(B,) int session step recovered from the observation's ``step`` fraction."""
    return np.rint(obs["step"][:, 0] * max_turn).astype(np.int64)


def feedback_state(obs: Obs) -> np.ndarray:
    """(B, D) raw user state: observed-feedback-weighted mean of the history embeddings, unit norm
    (zeros for an empty history). What a system without a denoiser would use."""
    state = np.einsum("bk,bkd->bd", obs["feedback"], obs["embeddings"])
    norm = np.linalg.norm(state, axis=1, keepdims=True)
    return (state / np.maximum(norm, 1e-8)).astype(np.float32)


class CatalogueScores:
    """(B, D) queries -> (B, I) float32 ``<queries_b, e_i>`` against a catalogue's (I, D) item embeddings.

    One matrix product on torch's CPU threads (:mod:`recgym.threads`): numpy's ``@`` goes to OpenBLAS,
    whose own threads spin against each other on a loaded machine (13 ms instead of 1 ms for
    64 x 3,327 at load 7 on 2 cores)."""

    def __init__(self, item_emb: np.ndarray) -> None:
        self.item_emb_t = th.tensor(np.asarray(item_emb), dtype=th.float32).T

    def __call__(self, queries: np.ndarray) -> np.ndarray:
        return (th.from_numpy(np.ascontiguousarray(queries, dtype=np.float32)) @ self.item_emb_t).numpy()


@njit(cache=True, nogil=True)
def _top_allowed(scores: np.ndarray, mask: np.ndarray, out: np.ndarray) -> None:
    """Fill (B, n) ``out`` with each row's n best allowed items of (B, I) ``scores``, best first (the
    lower id first among equal scores); a row with fewer than n allowed items ends with disallowed
    ones in id order. One pass per row keeping the best n in order (an insertion when an item beats
    the n-th best): no (B, I) temporaries."""
    n_rows, n = out.shape
    best = np.empty(n, scores.dtype)
    for b in range(n_rows):
        count = 0
        for i in range(scores.shape[1]):
            if not mask[b, i]:
                continue
            score = scores[b, i]
            if count == n and not score > best[n - 1]:
                continue
            j = count if count < n else n - 1
            while j > 0 and score > best[j - 1]:
                best[j] = best[j - 1]
                out[b, j] = out[b, j - 1]
                j -= 1
            best[j] = score
            out[b, j] = i
            count = min(count + 1, n)
        i = 0
        while count < n:  # fewer than n allowed items: pad with disallowed ones
            if not mask[b, i]:
                out[b, count] = i
                count += 1
            i += 1


def top_candidates(scores: np.ndarray, mask: np.ndarray, n: int) -> np.ndarray:
    """(B, n) int64 ids of the n best allowed items of (B, I) ``scores`` under the (B, I) bool/int8
    ``mask``, best first (one compiled pass, :func:`_top_allowed`)."""
    out = np.empty((scores.shape[0], n), np.int64)
    _top_allowed(scores, np.asarray(mask), out)
    return out


def rows_of(obs: Obs, rows: np.ndarray) -> Obs:
    """The observation of the sessions ``rows`` (int indices or a (B,) bool mask): a sub-batch."""
    return {key: value[rows] for key, value in obs.items()}


class RowCache:
    """Per-row values of observation batches (F columns), keyed by each row's history (``item_ids`` and
    ``feedback``): :meth:`get` computes only the rows whose history is not among the rows of the last
    batches it saw (at most ``4 * n_rows`` rows are remembered).

    In the hierarchy's views most rows repeat: the high level's waiting sessions, the observation the
    high level decides on and the low level then sees, the same sub-batch read by several views. A
    row is found by a 64-bit hash of its history (one vectorised pass), then compared in full, so a
    hash collision costs a recomputation, never a wrong value. ``compute`` must be row-wise: a row's
    value a function of that row's history alone.
    """

    def __init__(self, n_rows: int, width: int) -> None:
        self.capacity, self.width = 4 * n_rows, width
        self.values = np.zeros((0, width), np.float32)
        self.item_ids: np.ndarray | None = None
        self.feedback: np.ndarray | None = None
        self.keys = np.zeros(0, np.uint64)
        self.order = np.zeros(0, np.int64)  # argsort of keys

    #: odd 64-bit multipliers of the row hash (ids, then feedback bits), enough for histories of 256 slots
    MULTIPLIERS = np.random.default_rng(0).integers(1, 2**62, size=512, dtype=np.uint64) * np.uint64(2) + np.uint64(1)

    @classmethod
    def _hash(cls, item_ids: np.ndarray, feedback: np.ndarray) -> np.ndarray:
        """(N,) uint64 hash of each row's (k,) ids and (k,) feedback bits (wrapping sums of products)."""
        k = item_ids.shape[1]
        bits = feedback.view(np.uint32).astype(np.uint64)
        return ((item_ids.astype(np.uint64) * cls.MULTIPLIERS[:k]).sum(axis=1)
                + (bits * cls.MULTIPLIERS[256:256 + k]).sum(axis=1))

    def get(self, obs: Obs, compute: Callable[[Obs], np.ndarray]) -> np.ndarray:
        """(N, F) ``compute(obs)`` for a batch of any N rows, fresh array."""
        item_ids, feedback = obs["item_ids"], np.ascontiguousarray(obs["feedback"], np.float32)
        keys = self._hash(item_ids, feedback)
        values = np.empty((keys.size, self.width), np.float32)
        found = np.zeros(keys.size, bool)
        if self.keys.size and self.item_ids is not None and self.item_ids.shape[1:] == item_ids.shape[1:]:
            at = self.order[np.minimum(np.searchsorted(self.keys[self.order], keys), self.keys.size - 1)]
            found = ((self.keys[at] == keys) & (self.item_ids[at] == item_ids).all(axis=1)
                     & (self.feedback[at] == feedback).all(axis=1))
            values[found] = self.values[at[found]]
        if not found.all():
            values[~found] = compute(obs if not found.any() else rows_of(obs, ~found))
        keep = slice(max(0, self.keys.size + keys.size - self.capacity), None)  # newest rows last
        if self.item_ids is None or self.item_ids.shape[1:] != item_ids.shape[1:]:
            self.item_ids, self.feedback = item_ids[:0], feedback[:0]
        self.item_ids = np.concatenate([self.item_ids, item_ids])[keep]
        self.feedback = np.concatenate([self.feedback, feedback])[keep]
        self.values = np.concatenate([self.values, values])[keep]
        self.keys = np.concatenate([self.keys, keys])[keep]
        self.order = np.argsort(self.keys, kind="stable")
        return values


def stack_rows(obs: Obs, extra: Obs, rows: np.ndarray) -> Obs:
    """One batch of ``obs``'s B rows followed by ``extra``'s ``rows``: views computed in one call."""
    if rows.size == 0:
        return obs
    return {key: np.concatenate([value, extra[key][rows]]) for key, value in obs.items()}


def pick(candidates: np.ndarray, low_action: np.ndarray) -> np.ndarray:
    """(B,) the item each row's ``Discrete(L)`` low action chooses among its (B, L) candidates."""
    return candidates[np.arange(candidates.shape[0]), np.asarray(low_action, np.int64).reshape(-1)]


def low_view(method: Method, obs: Obs, goal: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(B, F) low observation and (B, L) candidates, ranked once per step for both uses (by the method's
    own ``low_view(obs, goal, mask)`` where it has one: both from shared intermediate results)."""
    if hasattr(method, "low_view"):
        return method.low_view(obs, goal, mask)
    candidates = method.candidates(obs, goal, mask)
    return method.low_observation(obs, goal, candidates), candidates


def exposure_ranks(exposure: np.ndarray) -> np.ndarray:
    """(I,) float ascending rank (1..I) of each item's exposure; equally exposed items share their group's
    mean rank (mid-ranks, ``scipy.stats.rankdata``'s ``"average"``), so an item's rank never depends on its id
    (e.g. the never-shown items)."""
    return rankdata(exposure, method="average")


def exposure_gini_gradient(exposure: np.ndarray) -> np.ndarray:
    """(I,) first-order change of the catalogue's exposure Gini per extra exposure of each item,
    times the total exposure: ``(2 r_i - n - 1) / n - G`` with r_i the ascending rank
    (:func:`exposure_ranks`: tied items, where the Gini has a kink, take the mean of its one-sided slopes).

    Negative for rarely exposed items (exposing them lowers the Gini), positive for the most exposed.
    Summed over a window's items, its negative is that window's fairness ``Fair(L_t)``.
    """
    n = exposure.size
    current = gini(exposure) if exposure.sum() > 0 else 0.0
    return (2 * exposure_ranks(exposure) - n - 1) / n - current


class _GoalVecEnv(VecEnv):
    """SB3 ``VecEnv`` plumbing shared by both levels: one batched env, attributes shared by all rows."""

    def __init__(self, method: Method, venv: RecSysVectorEnv, level: str) -> None:
        if venv.metadata["autoreset_mode"] is not AutoresetMode.SAME_STEP:
            raise ValueError(f"the hierarchy levels need a same-step autoreset env (they read infos['final_obs']); "
                             f"this env has {venv.metadata['autoreset_mode']}")
        # each view binds its own shallow copy: a method reads ITS env's simulator (exposure, popularity)
        method = copy.copy(method)
        self.method, self.venv = method, venv
        self.render_mode = None
        method.bind(venv)
        if level == "low":
            observation_space, action_space = method.low_observation_space, method.low_action_space
        else:
            observation_space, action_space = method.high_observation_space, high_action_space(method.goal_space)
        self.env_obs: Obs = {}
        self.goal = np.zeros((venv.num_envs, method.goal_space.shape[0]), np.float32)
        self._actions: np.ndarray | None = None
        super().__init__(venv.num_envs, observation_space, action_space)

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def close(self) -> None:
        self.venv.close()

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        return [getattr(self, attr_name) for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *args: Any, indices: Any = None, **kwargs: Any) -> list[Any]:
        result = getattr(self, method_name)(*args, **kwargs)
        return [result for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: Any = None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]

    def _reset_env(self) -> Obs:
        self.env_obs, _ = self.venv.reset(seed=self._seeds[0])
        self._reset_seeds()
        return self.env_obs


class LowLevelVecEnv(_GoalVecEnv):
    """One step = one recommendation under the current goal; goals refresh every ``option_length`` steps.

    Args:
        method: the two-level method.
        venv: the batched env.
        high_policy: (B, H) high observations -> (B, G) high actions in [-1, 1] (:func:`goal_of_action`);
            ``None`` draws goals uniformly.
    """

    def __init__(self, method: Method, venv: RecSysVectorEnv,
                 high_policy: Callable[[np.ndarray], np.ndarray] | None = None, seed: int = 0) -> None:
        super().__init__(method, venv, "low")
        self.high_policy = high_policy
        self.goal_rng = np.random.default_rng(seed)
        self.candidates = np.zeros((venv.num_envs, 0), np.int64)

    def _refresh_goals(self, rows: np.ndarray, views: Obs) -> None:
        """New goals for the sessions ``rows``, the high level reading the first B rows of ``views``."""
        if not rows.any():
            return
        if self.high_policy is None:
            space = self.method.goal_space
            fresh = self.goal_rng.uniform(space.low, space.high, size=self.goal.shape).astype(np.float32)
        else:
            action = self.high_policy(self.method.high_observation(views))[:self.num_envs]
            fresh = goal_of_action(self.method.goal_space, action)
        self.goal[rows] = fresh[rows]

    def reset(self) -> np.ndarray:
        self._reset_env()
        self._refresh_goals(np.ones(self.num_envs, bool), self.env_obs)
        observation, self.candidates = low_view(self.method, self.env_obs, self.goal, self.venv.action_masks())
        return observation

    def step_wait(self):
        method, obs = self.method, self.env_obs
        items = pick(self.candidates, self._actions)
        next_obs, reward, terminated, truncated, info = self.venv.step(items)
        done = terminated | truncated
        final_obs = info["final_obs"] if done.any() else next_obs
        rewards = method.low_reward(reward, obs, final_obs, self.goal, items)
        # One batch for every view of this step: the B next observations, then the ended sessions' last
        # ones (SB3 bootstraps truncated sessions from them) under the goals they ended with.
        n, ended = self.num_envs, np.flatnonzero(done)
        views = stack_rows(next_obs, final_obs, ended)
        ended_goals = self.goal[ended]
        self.env_obs = next_obs
        self._refresh_goals(session_step(next_obs, self.venv.params.max_turn) % method.option_length == 0, views)
        masks = self.venv.action_masks()
        observation, candidates = low_view(method, views, np.concatenate([self.goal, ended_goals]),
                                           np.concatenate([masks, masks[ended]]))
        self.candidates = candidates[:n]
        infos: list[dict[str, Any]] = [{} for _ in range(n)]
        for row, i in enumerate(ended, start=n):
            infos[i] = {"terminal_observation": observation[row],
                        "TimeLimit.truncated": bool(truncated[i] and not terminated[i])}
        return observation[:n], rewards.astype(np.float32), done, infos


class HighLevelVecEnv(_GoalVecEnv):
    """One step = one option: the frozen ``low_policy`` recommends until every session's option ends.
    ``user_steps``: the simulator's user-steps so far (the active sessions of each of its steps; an option of
    B sessions is up to B x M of them).

    Args:
        low_policy: (B, L) low observations -> (B, ...) low actions (deterministic, frozen).
    """

    def __init__(self, method: Method, venv: RecSysVectorEnv,
                 low_policy: Callable[[np.ndarray], np.ndarray]) -> None:
        super().__init__(method, venv, "high")
        self.low_policy = low_policy
        self.user_steps = 0

    def reset(self) -> np.ndarray:
        return self.method.high_observation(self._reset_env())

    def step_wait(self):
        method, m = self.method, self.method.option_length
        self.goal = goal_of_action(method.goal_space, self._actions)
        n = self.num_envs
        active = np.ones(n, bool)
        option_reward = np.zeros(n, np.float32)
        option_items = np.full((n, m), -1, np.int64)
        done = np.zeros(n, bool)
        timeout = np.zeros(n, bool)
        terminal_obs: Obs = {}
        items = np.zeros(n, np.int64)  # a waiting session's placeholder item (it is not stepped)
        for j in range(m):
            obs, rows = self.env_obs, np.flatnonzero(active)  # views of the active sessions only
            low_observation, candidates = low_view(method, rows_of(obs, rows), self.goal[rows],
                                                   self.venv.action_masks()[rows])
            items[rows] = pick(candidates, self.low_policy(low_observation))
            next_obs, reward, terminated, truncated, info = self.venv.step(items, active=active)
            self.user_steps += int(active.sum())
            option_reward += np.where(active, reward, 0.0)
            option_items[active, j] = items[active]
            ended = (terminated | truncated) & active
            if ended.any():
                if not terminal_obs:
                    terminal_obs = {key: value.copy() for key, value in info["final_obs"].items()}
                for key, value in info["final_obs"].items():
                    terminal_obs[key][ended] = value[ended]
                done |= ended
                timeout |= truncated & ~terminated & active
            self.env_obs = next_obs
            active &= ~ended & (session_step(next_obs, self.venv.params.max_turn) % m != 0)
            if not active.any():
                break
        rewards = method.high_reward(option_reward, option_items, self.goal)
        ended = np.flatnonzero(done)  # the next observations and the ended sessions' last ones, one batch
        observation = method.high_observation(stack_rows(self.env_obs, terminal_obs, ended))
        infos: list[dict[str, Any]] = [{} for _ in range(n)]
        for row, i in enumerate(ended, start=n):
            infos[i] = {"terminal_observation": observation[row], "TimeLimit.truncated": bool(timeout[i])}
        return observation[:n], rewards.astype(np.float32), done, infos


def _predictor(model: PPO | None, sample: np.random.Generator | None = None) -> Callable[[np.ndarray], np.ndarray] | None:
    """The frozen level as a function: (B, ...) observations -> (B, ...) deterministic actions, what
    ``model.predict(..., deterministic=True)`` returns (the mode: the arg-max logit of a ``Discrete``
    level, the Gaussian's mean of a ``Box`` one, clipped to the box), read off the action head
    without SB3's per-call checks and distribution objects. With ``sample``, a ``Discrete`` level
    samples its action from the softmax of its logits with that generator instead."""
    if model is None:
        return None
    policy = model.policy
    space = policy.action_space

    def act(observation: np.ndarray) -> np.ndarray:
        if policy.training:  # left in training mode by the last update
            policy.set_training_mode(False)
        with th.inference_mode():
            obs = preprocess_obs(th.as_tensor(observation, device=policy.device), policy.observation_space)
            head = policy.action_net(policy.mlp_extractor.forward_actor(policy.pi_features_extractor(obs)))
        if isinstance(space, spaces.Discrete):
            if sample is None:
                return head.argmax(dim=1).cpu().numpy()
            cumulative = th.softmax(head, dim=1).cumsum(dim=1).cpu().numpy()
            return np.minimum((cumulative < sample.random((head.shape[0], 1))).sum(axis=1), space.n - 1)
        return np.clip(head.cpu().numpy(), space.low, space.high)

    return act


class HierarchicalPolicy(Policy):
    """Both trained levels as a batched :class:`~recgym.agents.baselines.Policy` for :func:`recgym.evaluate`.

    ``meta``: its checkpoint metadata (:func:`recgym.agents.checkpoints.checkpoint_meta`); binding it to
    an env of another world is refused. A method with ``sample_low = True`` (HRL4PFG: its micro policy
    samples among the candidates) samples the low level's choice with the policy's seeded generator.
    """

    def __init__(self, method: Method, high: PPO | None, low: PPO, meta: dict[str, Any]) -> None:
        self.method, self.high, self.low, self.meta = method, high, low, meta

    @property
    def learning_curve(self) -> list[dict[str, float]] | None:
        """The run's evaluations on the truth (:class:`~recgym.agents.callbacks.TruthCurve` points), ``None`` when
        it logged none."""
        return self.meta.get("learning_curve")

    def bind(self, env: Any, seed: int | None = None) -> None:
        check_world(self.meta, env.world, f"this {self.method.name} policy")
        super().bind(env, seed)
        self.method.bind(env)
        self.goal = np.zeros((env.num_envs, self.method.goal_space.shape[0]), np.float32)
        self.max_turn = env.params.max_turn
        self.sample_low = _predictor(self.low, self.rng) if getattr(self.method, "sample_low", False) else None

    def act(self, obs: Obs, mask: np.ndarray) -> np.ndarray:
        refresh = session_step(obs, self.max_turn) % self.method.option_length == 0
        if refresh.any():
            if self.high is None:  # flat ablation: the method's fixed goal
                self.goal[refresh] = self.method.goal_space.high
            else:
                action = self.high.predict(self.method.high_observation(obs), deterministic=True)[0]
                self.goal[refresh] = goal_of_action(self.method.goal_space, action)[refresh]
        low_observation, candidates = low_view(self.method, obs, self.goal, mask)
        if self.sample_low is not None:
            return pick(candidates, self.sample_low(low_observation))
        return pick(candidates, self.low.predict(low_observation, deterministic=True)[0])


@dataclass
class HierarchyConfig:
    """Alternating two-level PPO training.

    rounds: alternations (low then high); low_steps / high_steps: timesteps per round per level
    (a high-level timestep is one option of one session); n_sessions: B sessions simulated in parallel;
    flat: train the low level only (fixed goal = ``goal_space.high``: the one-level ablation); ppo: extra
    kwargs for both SB3 PPO models; high_ppo: the high level's overrides of ``ppo``. Its default short
    rollouts (4 options per session) give the high level many updates in a small budget:
    :func:`ppo_gradient_steps` counts them.
    """

    rounds: int = 3
    low_steps: int = 8_192
    high_steps: int = 2_048
    n_sessions: int = 64
    flat: bool = False
    seed: int = 0
    device: str = "auto"
    ppo: dict[str, Any] = field(default_factory=lambda: {"n_steps": 64, "batch_size": 256, "n_epochs": 4,
                                                          "learning_rate": 3e-4, "gamma": 0.9})
    high_ppo: dict[str, Any] = field(default_factory=lambda: {"n_steps": 4, "batch_size": 64})

    def level_ppo(self, level: str) -> dict[str, Any]:
        """The SB3 PPO kwargs of ``level`` ("low" or "high")."""
        return dict(self.ppo, **self.high_ppo) if level == "high" else dict(self.ppo)

    def gradient_steps(self, level: str, steps_per_round: int) -> int:
        """Optimiser steps ``level`` takes in ``rounds`` rounds of ``steps_per_round`` timesteps each
        (:func:`ppo_gradient_steps` with this config's PPO settings)."""
        kwargs = self.level_ppo(level)
        return self.rounds * ppo_gradient_steps(steps_per_round, self.n_sessions, kwargs.get("n_steps", 2048),
                                                kwargs.get("batch_size", 64), kwargs.get("n_epochs", 10))


def ppo_gradient_steps(timesteps: int, n_envs: int, n_steps: int, batch_size: int, n_epochs: int) -> int:
    """Optimiser (minibatch) steps of one SB3 ``PPO.learn(timesteps)``: it collects whole rollouts of
    ``n_steps * n_envs`` transitions until ``timesteps`` are reached, then trains ``n_epochs`` passes of
    ``ceil(rollout / batch_size)`` minibatches on each."""
    rollout = n_steps * n_envs
    return -(-timesteps // rollout) * n_epochs * -(-rollout // batch_size)


def _fused_adam() -> dict[str, Any]:
    """SB3 ``policy_kwargs`` for Adam in torch's fused implementation where torch has it on the CPU
    (torch >= 2.4): one kernel per step instead of a loop over parameters (0.26 -> 0.08 ms per step of
    a level's MLP on CPU), the same update up to float rounding (~1e-6 after 300 steps)."""
    try:
        th.optim.Adam([th.zeros(1, requires_grad=True)], fused=True)
    except RuntimeError:
        return {}
    return {"optimizer_kwargs": {"fused": True}}


#: both levels' optimiser settings (:func:`_fused_adam`)
FUSED_ADAM = _fused_adam()

#: initial log-std of the high level's Gaussian: std 0.5 of the half-range [-1, 1] keeps ~95% of the
#: sampled goals inside the range (SB3's default std 1 clips a third of them onto its edges).
HIGH_LOG_STD_INIT = float(np.log(0.5))


def gaussian_of(policy: ActorCriticPolicy, observations: np.ndarray) -> tuple[th.Tensor, th.Tensor]:
    """((N, G) means, (G,) log-stds) of a ``Box`` level's Gaussian on the (N, H) ``observations``:
    its action head on the actor's features (what ``get_distribution`` builds a ``Normal`` from)."""
    with th.inference_mode():
        obs = preprocess_obs(th.as_tensor(observations, device=policy.device), policy.observation_space)
        mean = policy.action_net(policy.mlp_extractor.forward_actor(policy.pi_features_extractor(obs)))
        return mean, policy.log_std.detach().clone()


def gaussian_kl(now: tuple[th.Tensor, th.Tensor], before: tuple[th.Tensor, th.Tensor]) -> float:
    """``KL(now || before)`` of two diagonal Gaussians given as :func:`gaussian_of` pairs, summed over
    the G dimensions and averaged over the N rows (closed form)."""
    (mean, log_std), (mean_0, log_std_0) = now, before
    mean_0, log_std_0 = mean_0.to(mean.device), log_std_0.to(mean.device)
    ratio = th.exp(2 * (log_std - log_std_0))  # var_now / var_before
    per_dim = (log_std_0 - log_std) + 0.5 * (ratio + (mean - mean_0).square() * th.exp(-2 * log_std_0) - 1)
    return float(per_dim.sum(dim=1).mean())


def high_policy_drift(policy: ActorCriticPolicy, initial: ActorCriticPolicy, observations: np.ndarray) -> tuple[float, float]:
    """(KL, mean log-std): ``KL(policy || initial)`` of the high level's Gaussian goal distributions,
    summed over goal dimensions and averaged over the (N, H) ``observations``, and ``policy``'s mean
    log-std. 0 and the initial log-std for a policy that has not moved."""
    now = gaussian_of(policy, observations)
    return gaussian_kl(now, gaussian_of(initial, observations)), float(now[1].mean())


class LowRolloutEnd(BaseCallback):
    """Calls the low view's ``method.end_low_rollout()`` after every low-level rollout and logs what it returns."""

    def __init__(self, method: Method) -> None:
        super().__init__()
        self.method = method

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        for key, value in self.method.end_low_rollout().items():
            self.logger.record(key, value)


class HighLevelDrift(BaseCallback):
    """Logs how far the high level has moved from the policy it started the run with (a deep copy taken
    at construction): ``high/kl_to_init`` (:func:`high_policy_drift`, on the first rollout's observations,
    at most 1,024, kept fixed for the run), ``high/log_std`` and ``high/mean_outside_range`` (the share of
    the probe's (row, goal dimension) means outside [-1, 1]: there the greedy goal sits clipped on the range's
    edge, where an update that leaves the mean outside changes no greedy action; docs/hrl.md, "dsrm-hrl's
    frozen greedy policy"), after every rollout (before its update). The initial policy's Gaussian on that
    probe is computed once (the copy never changes); each rollout then costs one forward pass of the
    current actor on the probe."""

    def __init__(self, model: PPO, probe_size: int = 1024) -> None:
        super().__init__()
        self.initial = copy.deepcopy(model.policy)
        self.probe_size = probe_size
        self.probe: np.ndarray | None = None
        self.initial_gaussian: tuple[th.Tensor, th.Tensor] | None = None
        self.kl_to_init = self.mean_outside_range = 0.0
        self.log_std = float(model.policy.log_std.detach().mean())

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        if self.probe is None:
            observations = self.model.rollout_buffer.observations
            self.probe = observations.reshape(-1, *observations.shape[2:])[: self.probe_size].copy()
            self.initial_gaussian = gaussian_of(self.initial, self.probe)
        now = gaussian_of(self.model.policy, self.probe)
        self.kl_to_init, self.log_std = gaussian_kl(now, self.initial_gaussian), float(now[1].mean())
        self.mean_outside_range = float((now[0].abs() > 1).float().mean())
        self.logger.record("high/kl_to_init", self.kl_to_init)
        self.logger.record("high/log_std", self.log_std)
        self.logger.record("high/mean_outside_range", self.mean_outside_range)


@dataclass
class TrainedHierarchy:
    """Result of :func:`train_hierarchy`: the two SB3 models and where they were saved."""

    method: Method
    high: PPO | None
    low: PPO
    checkpoint: Path
    rounds_done: int
    meta: dict[str, Any]

    def policy(self) -> HierarchicalPolicy:
        return HierarchicalPolicy(self.method, self.high, self.low, self.meta)


def _fixed_goal_policy(method: Method) -> Callable[[np.ndarray], np.ndarray]:
    """The flat ablation's high level: action 1 everywhere, i.e. the goal ``goal_space.high``."""
    return lambda high_obs: np.ones((high_obs.shape[0], method.goal_space.shape[0]), np.float32)


def _level_callbacks(callbacks: Callable[[str], Any] | None, level: str, progress_bar: bool) -> list[Any]:
    """The callbacks of one level's ``learn``: ``callbacks(level)`` and, if asked, a progress bar."""
    chosen = [callbacks(level)] if callbacks else []
    return chosen + [TrainingProgressBar()] if progress_bar else chosen


@dataclass
class Levels:
    """The two levels of one training run: each SB3 PPO model on its view of its own batched env
    (``high``/``high_env`` are ``None`` for the one-level ablation, ``config.flat``)."""

    method: Method
    config: HierarchyConfig
    low_env: LowLevelVecEnv
    high_env: HighLevelVecEnv | None
    low: PPO
    high: PPO | None
    high_drift: HighLevelDrift | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def env_steps(self) -> int:
        """Stage-II env steps so far: the low level's timesteps plus M x the high level's options."""
        return self.low.num_timesteps + (self.method.option_length * self.high.num_timesteps if self.high else 0)

    def train_round(self, round_index: int, low_steps: int, high_steps: int,
                    callbacks: Callable[[str], Any] | None = None, progress_bar: bool = False) -> None:
        """One alternation: ``low.learn(low_steps)`` under the frozen high level (random goals in round
        0, the method's fixed goal when flat), then ``high.learn(high_steps)`` over the frozen low level."""
        first = round_index == 0
        low_env, high = self.low_env, self.high
        low_env.high_policy = _fixed_goal_policy(low_env.method) if self.config.flat else None if first else _predictor(high)
        own = [LowRolloutEnd(low_env.method)] if hasattr(low_env.method, "end_low_rollout") else []
        self.low.learn(low_steps, tb_log_name="low", reset_num_timesteps=first,
                       callback=own + _level_callbacks(callbacks, "low", progress_bar))
        if high is not None:  # a sampling low level (``method.sample_low``) samples here too, seeded per round
            sample = np.random.default_rng([self.config.seed, round_index]) if getattr(self.method, "sample_low", False) else None
            self.high_env.low_policy = _predictor(self.low, sample)
            high.learn(high_steps, tb_log_name="high", reset_num_timesteps=first,
                       callback=[self.high_drift, *_level_callbacks(callbacks, "high", progress_bar)])


def make_levels(method: Method, env_id: str, config: HierarchyConfig, env_options: dict[str, Any] | None = None,
                tensorboard_log: str | None = None, resume: str | Path | None = None) -> tuple[Levels, int]:
    """Both levels on two batched envs of ``env_id`` (``config.n_sessions`` sessions each, seeded from
    ``config.seed``): fresh PPO models, or the models of the checkpoint ``resume``. Returns (levels,
    rounds already done)."""
    options = dict(env_options or {})
    # Both levels read the ended session's last observation from infos["final_obs"]: same-step autoreset.
    low_venv, high_venv = (gym.make_vec(env_id, num_envs=config.n_sessions, vectorization_mode="vector_entry_point",
                                        autoreset_mode=AutoresetMode.SAME_STEP, **options) for _ in range(2))
    low_env = LowLevelVecEnv(method, low_venv, None, seed=config.seed)
    low_env.seed(config.seed)
    ppo_kwargs = dict(seed=config.seed, device=config.device, tensorboard_log=tensorboard_log)
    rounds_done = 0
    if resume is not None:
        high, low, rounds_done = load_hierarchy(method, resume, low_venv.world, low_env, config.device)
        for key, value in read_meta(method.name, resume).get("method_state", {}).items():
            setattr(low_env.method, key, value)  # e.g. DSRM-HRL's Lagrange multiplier where the run stopped
    else:
        low = LeanPPO(LeanActorCriticPolicy, low_env, policy_kwargs={**FUSED_ADAM, **method.low_policy_kwargs},
                      **config.level_ppo("low"), **ppo_kwargs)
        high = None
    high_env = None
    if not config.flat:
        high_env = HighLevelVecEnv(method, high_venv, _predictor(low))
        high_env.seed(config.seed + 1)
        if high is None:
            high = LeanPPO(LeanActorCriticPolicy, high_env,
                           policy_kwargs={"log_std_init": HIGH_LOG_STD_INIT, **FUSED_ADAM, **method.high_policy_kwargs},
                           **config.level_ppo("high"), **ppo_kwargs)
        else:
            high.set_env(high_env)
    high_drift = None if high is None else HighLevelDrift(high)
    return Levels(method, config, low_env, high_env, low, high, high_drift), rounds_done


#: a method's training state that a checkpoint keeps (``meta.json``'s ``method_state``) and a resumed run restores
METHOD_STATE = ("lagrange_multiplier",)


def train_hierarchy(
    method: Method,
    env_id: str,
    config: HierarchyConfig,
    logdir: str | Path = "runs",
    run_name: str | None = None,
    resume: str | Path | None = None,
    progress_bar: bool = False,
    env_options: dict[str, Any] | None = None,
    callbacks: Callable[[str], Any] | None = None,
    eval_episodes: int = 0,
    eval_freq: int = 0,
    eval_scorer: Callable[[Any], dict[str, Any]] | None = None,
    catalogue_reset_every: int | None = None,
) -> TrainedHierarchy:
    """Alternate low- and high-level PPO on ``env_id``; checkpoint to ``logdir/run_name/`` each round.

    ``resume``: a checkpoint directory written by this function for the same method and world;
    training continues from its models until ``config.rounds`` rounds are done. Without it, a
    ``logdir/run_name/`` that already holds a checkpoint is refused (``ValueError``), never overwritten.
    ``callbacks(level)`` may return an SB3 callback for the ``"low"`` / ``"high"`` learn calls.

    ``eval_episodes`` > 0: a learning curve on the truth (:class:`~recgym.agents.callbacks.TruthCurve`, as
    ``recgym.agents.flat.train``'s ``eval_episodes`` / ``eval_freq`` / ``eval_scorer``): both levels are
    evaluated every ``eval_freq`` stage-II env steps (0: only at the end) and at the end, on ``eval_episodes``
    episodes of ``n_sessions`` sessions with ``env_options`` and seed ``config.seed``; ``eval/*`` scalars in the run's TensorBoard folder ``eval_curve``, the points in the
    checkpoint's ``meta.json`` (``learning_curve``, continued by a resumed run) and in the returned
    ``meta`` (:attr:`HierarchicalPolicy.learning_curve`).

    ``catalogue_reset_every`` = N (as :func:`recgym.agents.flat.train`'s; ``None``: never): each level steps its
    own simulator, and each simulator's catalogue counters are cleared every N of its own user-steps
    (:class:`~recgym.agents.callbacks.CatalogueReset`: the low level's timesteps; the high level's options'
    active user-steps, :attr:`HighLevelVecEnv.user_steps`), continuing over the rounds.
    """
    for name, value in (("eval_episodes", eval_episodes), ("eval_freq", eval_freq)):
        check_count(name, value, 0)
    check_optional_count("catalogue_reset_every", catalogue_reset_every)
    run_name = run_name or f"{method.name}_seed{config.seed}"
    checkpoint = Path(logdir) / run_name
    if resume is None and (checkpoint / "meta.json").exists():
        raise ValueError(f"{checkpoint} already holds a {method.name} checkpoint; pass resume= to continue it "
                         f"or choose another run_name")
    levels, rounds_done = make_levels(method, env_id, config, env_options, str(checkpoint), resume)
    meta = checkpoint_meta(method.name, env_id, dict(env_options or {}), levels.low_env.venv.world)
    levels.meta = meta
    curve, curve_log = None, configure(str(checkpoint / "eval_curve"), ["tensorboard"]) if eval_episodes else None
    if eval_episodes:  # both levels as one policy, against the stage-II env steps (the budget's own accounting)
        curve = TruthCurve(env_id, eval_episodes, eval_freq, env_options, config.seed, config.n_sessions, eval_scorer,
                           policy=lambda: HierarchicalPolicy(copy.copy(levels.method), levels.high, levels.low, levels.meta),
                           steps=levels.env_steps, logger=curve_log, at_end=False,
                           points=read_meta(method.name, resume).get("learning_curve", []) if resume is not None else [])

    resets = {} if catalogue_reset_every is None else {
        "low": CatalogueReset(catalogue_reset_every),
        "high": CatalogueReset(catalogue_reset_every, user_steps=lambda: levels.high_env.user_steps)}

    def level_callbacks(level: str) -> Any:
        chosen = [callback for callback in (callbacks(level) if callbacks else None, resets.get(level), curve)
                  if callback is not None]
        return CallbackList(chosen) if chosen else None

    curve_meta: dict[str, Any] = {}
    for round_index in range(rounds_done, config.rounds):
        levels.train_round(round_index, config.low_steps, config.high_steps,
                           level_callbacks if callbacks or curve is not None or resets else None, progress_bar)
        rounds_done = round_index + 1
        if curve is not None and rounds_done == config.rounds:
            curve.finish()  # the end of training, as flat agents' last evaluation
        curve_meta = {"learning_curve": curve.points} if curve is not None else {}
        state = {key: getattr(levels.low_env.method, key) for key in METHOD_STATE if hasattr(levels.low_env.method, key)}
        save_hierarchy(checkpoint, {**meta, "method_state": state, **curve_meta}, levels.high, levels.low, config,
                       rounds_done)
    if curve_log is not None:
        curve_log.close()
    return TrainedHierarchy(method, levels.high, levels.low, checkpoint, rounds_done, {**meta, **curve_meta})


def save_hierarchy(path: Path, meta: dict[str, Any], high: PPO | None, low: PPO, config: HierarchyConfig,
                   rounds_done: int) -> None:
    """Write ``low.zip`` (+ ``high.zip``), then ``meta.json``: the checkpoint metadata ``meta``, the
    config and the rounds done (written last, through a temporary file, so it never describes
    models that are not on disk)."""
    path.mkdir(parents=True, exist_ok=True)
    low.save(path / "low.zip")
    if high is not None:
        high.save(path / "high.zip")
    write_json_atomically(path / "meta.json", {**meta, "rounds_done": rounds_done, "config": asdict(config)}, indent=2)


def read_meta(agent: str, path: str | Path, world: World | None = None) -> dict[str, Any]:
    """The checkpoint's ``meta.json``; a one-line ``ValueError`` naming ``path`` for a directory that is
    not a hierarchical checkpoint, an unreadable one, not ``agent``'s (a method name) or (given
    ``world``) another world's."""
    meta_path = Path(path) / "meta.json"
    if not meta_path.is_file():
        raise ValueError(f"{path}: not a recgym hierarchical checkpoint (no meta.json)")
    try:
        meta = json.loads(meta_path.read_text())
    except (ValueError, OSError) as error:
        raise ValueError(f"{meta_path}: unreadable checkpoint metadata ({first_line(error)})") from None
    return check_meta(meta, path, agent, world)


def load_hierarchy(method: Method, path: str | Path, world: World | None = None, env: VecEnv | None = None,
                   device: str = "auto") -> tuple[PPO | None, PPO, int]:
    """Load (high, low, rounds_done) from a checkpoint, refusing another method or (if given) world."""
    path = Path(path)
    meta = read_meta(method.name, path, world)
    try:
        low = LeanPPO.load(path / "low.zip", env=env, device=device)
        high = LeanPPO.load(path / "high.zip", device=device) if (path / "high.zip").is_file() else None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as error:
        raise ValueError(f"{path}: unreadable hierarchical checkpoint ({first_line(error)})") from None
    if high is not None and not (np.all(high.action_space.low == -1.0) and np.all(high.action_space.high == 1.0)):
        raise ValueError(f"{path}: its high level acts in the goal range itself, not in [-1, 1] (a checkpoint "
                         f"written before the high levels' goals were rescaled); train it again")
    return high, low, int(meta["rounds_done"])
