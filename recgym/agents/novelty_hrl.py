"""Novelty-seeking HRL: the high level infers the user's novelty-seeking propensity, the low level serves it.

As published (``docs/hrl.md``): the high level models a user's static novelty-seeking
preference plus a dynamic session propensity and emits it as a goal; the low level recommends
conditioned on it; the reward adds diversity and novelty terms.

recgym's concrete choices (``docs/hrl.md``):

* high-level observation: the raw history state plus novelty-response statistics of the session
  (how the observed feedback varies with each item's novelty relative to what came before);
* goal ``nu`` in [0, 1]: the inferred propensity. The simulator's own propensity
  (``Simulator.novelty_propensity()``: static + session) is the ground truth it is scored against;
* low level: items are scored ``<s, e_i> + novelty_gain * (nu - 1/2) * (1 - <e_i, h>)`` with ``s``
  the raw history state and ``h`` the mean history embedding (mirroring how simulated users value
  novelty); the low level's ``Discrete(L)`` action picks one of the L best, seeing each one's
  similarity, novelty and popularity;
* the low level's reward adds EasyRL4Rec's intrinsic terms: ``lambda_div * mean(1 - sim(history, a)) +
  lambda_nov * (-log pop_a)`` (log-popularity scaled to [0, 1]).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from gymnasium import spaces
from scipy import stats

from recgym.agents.hierarchy import CatalogueScores, Obs, feedback_state, session_step, top_candidates
from recgym.agents.rewards import diversity_novelty_bonus, log_popularity_score


def history_novelty(obs: Obs) -> np.ndarray:
    """(B, k) novelty of each history item w.r.t. the items before it: 1 - <e_j, mean(e_<j)>; NaN if none."""
    emb = obs["embeddings"]
    valid = (obs["item_ids"] >= 0).astype(np.float32)
    before_sum = np.cumsum(emb, axis=1) - emb
    before_n = np.cumsum(valid, axis=1) - valid
    mean_before = before_sum / np.maximum(before_n, 1)[..., None]
    novelty = 1.0 - np.einsum("bkd,bkd->bk", emb, mean_before)
    return np.where((valid > 0) & (before_n > 0), novelty, np.nan)


@dataclass
class NoveltyHRL:
    """The novelty-seeking HRL method (see module docstring)."""

    name: str = "novelty-hrl"
    option_length: int = 3
    novelty_gain: float = 1.0
    diversity_weight: float = 0.2
    novelty_weight: float = 0.1
    n_candidates: int = 20
    high_policy_kwargs: dict[str, Any] = field(default_factory=dict)
    low_policy_kwargs: dict[str, Any] = field(default_factory=dict)

    def bind(self, venv: Any) -> None:
        self.sim, self.item_emb = venv.sim, venv.world.item_emb
        self.item_scores = CatalogueScores(self.item_emb)
        dim = self.item_emb.shape[1]
        self.goal_space = spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
        self.high_observation_space = spaces.Box(-np.inf, np.inf, shape=(dim + 4,), dtype=np.float32)
        n_cand = self.n_candidates
        self.low_observation_space = spaces.Box(-np.inf, np.inf, shape=(dim + 1 + 3 * n_cand,), dtype=np.float32)
        self.low_action_space = spaces.Discrete(n_cand)

    def novelty_response(self, obs: Obs) -> np.ndarray:
        """(B, 3): [slope of observed feedback on item novelty, mean novelty, mean feedback] of the session.

        A novelty seeker gives more feedback to novel items (positive slope); 0 where undefined.
        """
        novelty = history_novelty(obs)
        has = np.isfinite(novelty)
        count = np.maximum(has.sum(axis=1), 1)
        nov = np.where(has, novelty, 0.0)
        feedback = np.where(has, obs["feedback"], 0.0)
        mean_nov, mean_fb = nov.sum(axis=1) / count, feedback.sum(axis=1) / count
        centred = np.where(has, nov - mean_nov[:, None], 0.0)
        covariance = (centred * (feedback - mean_fb[:, None])).sum(axis=1)
        variance = (centred**2).sum(axis=1)
        slope = np.where(variance > 1e-6, covariance / np.maximum(variance, 1e-6), 0.0)
        return np.stack([np.clip(slope, -5, 5), mean_nov, mean_fb], axis=1)

    def high_observation(self, obs: Obs) -> np.ndarray:
        parts = [feedback_state(obs), self.novelty_response(obs), obs["step"]]
        return np.concatenate(parts, axis=1).astype(np.float32)

    def candidates(self, obs: Obs, goal: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """(B, L) the allowed items with the best novelty-conditioned score, best first.

        The score ``<s, e_i> + g (1 - <h, e_i>)``, ``g = novelty_gain * (nu - 1/2)``, is ``<s - g h, e_i>``
        plus a per-row constant: one (B, D) x (D, I) product ranks the catalogue."""
        gain = self.novelty_gain * (goal - 0.5)
        return top_candidates(self.item_scores(feedback_state(obs) - gain * self.history_mean(obs)),
                              mask, self.n_candidates)

    def low_observation(self, obs: Obs, goal: np.ndarray, cands: np.ndarray) -> np.ndarray:
        state = feedback_state(obs)
        cand_emb = self.item_emb[cands]
        similarity = np.einsum("bd,bld->bl", state, cand_emb)
        novelty = 1.0 - np.einsum("bd,bld->bl", self.history_mean(obs), cand_emb)
        log_pop = np.log1p(self.sim.popularity)
        parts = [state, goal, similarity, novelty, log_pop[cands] / log_pop.max()]
        return np.concatenate(parts, axis=1).astype(np.float32)

    @staticmethod
    def history_mean(obs: Obs) -> np.ndarray:
        """(B, D) h, the mean history embedding (zeros for an empty history): an item's novelty is
        ``1 - <e_i, h>``."""
        valid = (obs["item_ids"] >= 0).astype(np.float32)
        return obs["embeddings"].sum(axis=1) / np.maximum(valid.sum(axis=1), 1)[:, None]


    def intrinsic(self, obs: Obs, items: np.ndarray) -> np.ndarray:
        """(B,) EasyRL4Rec's bonus for recommending ``items`` (B,) after ``obs``'s history:
        diversity_weight * mean(1 - sim(history, a)) + novelty_weight * (1 - log-popularity score)."""
        return diversity_novelty_bonus(obs["embeddings"], obs["item_ids"] >= 0, self.item_emb[items],
                                       log_popularity_score(self.sim.popularity)[items],
                                       self.diversity_weight, self.novelty_weight)

    def low_reward(self, reward: np.ndarray, obs: Obs, next_obs: Obs, goal: np.ndarray, items: np.ndarray) -> np.ndarray:
        return reward + self.intrinsic(obs, items)

    def high_reward(self, option_reward: np.ndarray, option_items: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """The option's engagement: the high level is judged on serving the user's true appetite for novelty."""
        return option_reward


@dataclass(frozen=True)
class PropensityAgreement:
    """How well a trained high level's goal ``nu`` tracks the simulator's TRUE novelty propensity.

    Scored at every high-level decision after the session's first option (the history is empty before):
    Pearson (``r_``) and Spearman (``rho_``) correlations of ``nu`` with the true propensity (static +
    session), with the static part alone (the world's ``user_novelty``) and with the session part (the
    rest: v0's session offset, v1's latent session mode), and, as a reference for how much the
    observation reveals, Pearson of the high level's input feature ``slope`` (feedback-on-novelty slope,
    :meth:`NoveltyHRL.novelty_response`) with the truth. A correlation is 0 where either side is constant.
    """

    r_inferred_total: float
    r_inferred_static: float
    r_inferred_session: float
    rho_inferred_total: float
    rho_inferred_static: float
    rho_inferred_session: float
    r_slope_total: float
    mean_inferred: float
    std_inferred: float
    mean_true: float
    n_decisions: int

    def summary(self) -> dict[str, float]:
        """The scores as ``recgym eval`` summary entries: ``propensity_<field>``."""
        return {f"propensity_{key}": float(value) for key, value in asdict(self).items()}


def _correlation(x: np.ndarray, y: np.ndarray, rank: bool = False) -> float:
    """Pearson (Spearman if ``rank``) correlation of two (N,) arrays; 0 where either is constant."""
    if x.std() < 1e-9 or y.std() < 1e-9:
        return 0.0
    return float(stats.spearmanr(x, y)[0] if rank else stats.pearsonr(x, y)[0])


def propensity_agreement(policy: Any, env: str, episodes: int = 200, seed: int = 0, num_envs: int = 64,
                         **options: Any) -> PropensityAgreement:
    """Roll a trained novelty-HRL ``HierarchicalPolicy`` out for ``episodes`` sessions of ``env`` and
    compare its inferred propensity with the simulator's ground truth (which the agent never reads)."""
    from recgym.evaluation import make_eval_env

    if not isinstance(getattr(policy, "method", None), NoveltyHRL):
        raise ValueError(f"propensity_agreement needs a trained novelty-hrl policy, got {type(policy).__name__}")
    venv = make_eval_env(env, min(num_envs, episodes), **options)
    obs, _ = venv.reset(seed=seed)
    policy.bind(venv, seed)
    method, sim = policy.method, venv.sim
    started = 0
    inferred, total, static, slope = [], [], [], []
    while started < episodes:
        decide = session_step(obs, venv.params.max_turn)
        decide = (decide % method.option_length == 0) & (decide > 0)
        truth = sim.novelty_propensity()
        response = method.novelty_response(obs)
        actions = policy.act(obs, venv.action_masks())
        inferred.append(policy.goal[decide, 0].copy())
        total.append(truth[decide])
        static.append(venv.world.user_novelty[sim.user[decide]])
        slope.append(response[decide, 0])
        obs, _, terminated, truncated, _ = venv.step(actions)
        started += int((terminated | truncated).sum())
    nu, truth_total, truth_static, slopes = (np.concatenate(x).astype(np.float64) for x in (inferred, total, static, slope))
    if nu.size < 2:
        raise ValueError("too few high-level decisions after a session's first option; raise episodes")
    truth_session = truth_total - truth_static
    return PropensityAgreement(
        **{f"{prefix}_inferred_{part}": _correlation(nu, truth, rank=prefix == "rho") for prefix in ("r", "rho")
           for part, truth in (("total", truth_total), ("static", truth_static), ("session", truth_session))},
        r_slope_total=_correlation(slopes, truth_total), mean_inferred=float(nu.mean()), std_inferred=float(nu.std()),
        mean_true=float(truth_total.mean()), n_decisions=int(nu.size))
