"""Reward shaping for flat SB3 agents: EasyRL4Rec's diversity/novelty bonus (one shared function) and
:class:`RewardShaper`, an SB3 ``VecEnvWrapper`` that rewrites the reward the learner sees while the
simulator's true reward stays in ``last_infos["true_reward"]`` (what the metric callbacks and
:func:`recgym.evaluate` use), so shaped and unshaped runs are reported on the same reward.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from stable_baselines3.common.vec_env import VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvStepReturn

DIVERSITY_WEIGHT = 0.2
NOVELTY_WEIGHT = 0.1


def diversity_novelty_bonus(history_emb: np.ndarray, history_valid: np.ndarray, item_emb: np.ndarray,
                            log_popularity_score: np.ndarray, diversity_weight: float = DIVERSITY_WEIGHT,
                            novelty_weight: float = NOVELTY_WEIGHT) -> np.ndarray:
    """(B,) EasyRL4Rec's intrinsic bonus for recommending one item per row after a history.

    ``diversity_weight * mean_k(1 - <history_emb_k, item_emb>) + novelty_weight * (1 - log_popularity_score)``
    with the mean over valid history slots only (0 diversity for an empty history).

    history_emb: (B, k, D) embeddings of the last k recommended items; history_valid: (B, k) bool;
    item_emb: (B, D) embedding of the recommended item; log_popularity_score: (B,) ``log1p(pop) / max log1p(pop)``
    of the recommended item, in [0, 1] (EasyRL4Rec's ``-log pop_a`` rescaled so the bonus is >= 0).
    Defaults (0.2, 0.1) are NoveltyHRL's (DNaIR's own weights were not consulted): the bonus is at most
    0.3, so it never outweighs engagement (reward in [0, 1]).
    """
    similarity = np.einsum("bkd,bd->bk", history_emb, item_emb)
    diversity = np.where(history_valid, 1.0 - similarity, 0.0).sum(axis=1) / np.maximum(history_valid.sum(axis=1), 1)
    return diversity_weight * diversity + novelty_weight * (1.0 - log_popularity_score)


def log_popularity_score(popularity: np.ndarray) -> np.ndarray:
    """(I,) ``log1p(popularity) / max log1p(popularity)`` in [0, 1]."""
    log_pop = np.log1p(np.asarray(popularity, dtype=np.float64))
    return log_pop / max(log_pop.max(), 1e-12)


class RewardShaper(VecEnvWrapper):
    """Base wrapper over a recgym ``SB3VecEnv``: the learner gets ``shape(reward, obs, actions)`` (B,),
    computed from the observation BEFORE the step and the actions taken. The environment's own reward
    and the shaped one are kept per step in ``last_env_reward`` / ``last_shaped_reward`` (B,) for logging;
    the truth for metrics stays in the wrapped env's ``last_infos``."""

    def reset(self) -> Any:
        self._obs = self.venv.reset()
        return self._obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions).reshape(-1)
        self.venv.step_async(actions)

    def step_wait(self) -> VecEnvStepReturn:
        obs, reward, dones, infos = self.venv.step_wait()
        shaped = self.shape(reward.astype(np.float64), self._obs, self._actions)
        self.last_env_reward, self.last_shaped_reward = reward.copy(), shaped.astype(np.float32)
        self._obs = obs
        return obs, self.last_shaped_reward, dones, infos

    def shape(self, reward: np.ndarray, obs: dict[str, np.ndarray], actions: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class NoveltyBonusShaper(RewardShaper):
    """DNaIR-style shaping: reward + :func:`diversity_novelty_bonus` of the recommended item."""

    def __init__(self, venv: Any, diversity_weight: float = DIVERSITY_WEIGHT, novelty_weight: float = NOVELTY_WEIGHT) -> None:
        for name, value in (("diversity_weight", diversity_weight), ("novelty_weight", novelty_weight)):
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        super().__init__(venv)
        self.item_emb = venv.venv.world.item_emb
        self.pop_score = log_popularity_score(venv.venv.sim.popularity)
        self.diversity_weight, self.novelty_weight = diversity_weight, novelty_weight

    def shape(self, reward: np.ndarray, obs: dict[str, np.ndarray], actions: np.ndarray) -> np.ndarray:
        return reward + diversity_novelty_bonus(obs["embeddings"], obs["item_ids"] >= 0, self.item_emb[actions],
                                                self.pop_score[actions], self.diversity_weight, self.novelty_weight)
