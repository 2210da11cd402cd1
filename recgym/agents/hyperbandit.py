"""HyperBandit: a time-aware bandit whose parameters are a function of the time period, low rank.

After Shi et al., "HyperBandit: Contextual Bandit with Hypernetwork for Time-Varying User Preferences
in Streaming Recommendation" (CIKM 2023), without the LLM warm start of HyperBandit+. A user's
preference at time period ``tau`` is the time-agnostic LinUCB part plus an update that a hypernetwork
computes from ``tau`` and that lives in a rank-R subspace of the item embeddings:

    r^(b, i) = theta_0 . [s_b * e_i, z_i]                          time-agnostic (LinUCB's features)
             + tau_b' (G + H_u) P_i                                 time-period update, rank R
    tau_b = (sin, cos) of the hour and of the weekday               (4,) from the v1 observation
    P_i   = V' e_i                                                  (R,) item coordinates in the
                                                                    top-R principal directions V (D, R)

The hypernetwork is the linear map ``tau -> (G + H_u)' tau`` (4 -> R) with a shared head G (the
population's cycles) and a per-user head H_u (the user's own daily/weekly cycles, shrunk to 0 by its
ridge): it turns the time period into a rank-R update of the user's preference vector, ``V (G + H_u)' tau``
in embedding space, so its parameters are 4 R + 4 R per user instead of 4 D. H_u reads the user's
deviation ``tau - mean_u tau`` from their mean period so far. A linear hypernetwork keeps the score
linear in every parameter, so each part has an exact ridge posterior: LinUCB's ``A`` over
``phi_0 = [s * e_i, z_i]``, G's and each H_u's over ``vec(tau P_i')``, fitted as a cascade (LinUCB on
the reward, G on LinUCB's residual, H_u on what is left; a joint backfitting of G and H_u on the same
features diverged online). Exploration as the paper: UCB ``mean + alpha sqrt(sum of the three
phi' A^-1 phi)`` (bonus on each session's ``candidates`` best items by mean, as
:class:`~recgym.agents.baselines.LinUCB`), or Thompson sampling (one posterior draw of every part per
session and step, scale ``alpha``).

Everything is batched over the B sessions of the vector env: one matrix product per step for the means,
one batched solve for the B users' heads, ``np.add.at`` for the per-user updates. Learns online from the
reward the env returns (the logged, observed reward on v1 ids). v1 worlds only (v0 observes no clock).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from recgym.agents.baselines import LinUCB, Obs
from recgym.agents.ridge import GroupRidge
from recgym.sizes import check_count, check_number

#: Time-period features: (sin, cos) of the hour and of the weekday.
N_TIME = 4
EXPLORATIONS = ("ucb", "thompson")


@dataclass(frozen=True)
class HyperBanditParams:
    """HyperBandit's knobs (each checked: a bad one is a one-line ValueError naming it and its range).

    rank: R, dimensions of the time-period update (1 .. the world's embedding dimension).
    alpha: exploration scale (UCB bonus weight, or the Thompson posterior's scale), >= 0.
    ridge: prior precision of the shared parameters, > 0. user_ridge: of each user's time head, > 0
        (larger: the user's cycles are trusted later).
    exploration: ``"ucb"`` or ``"thompson"``. candidates: UCB bonus computed for this many best items, >= 1.
    """

    rank: int = 8
    alpha: float = 0.5
    ridge: float = 1.0
    user_ridge: float = 4.0
    exploration: str = "ucb"
    candidates: int = 50

    def __post_init__(self) -> None:
        check_count("rank", self.rank)
        for name, strict in (("alpha", False), ("ridge", True), ("user_ridge", True)):
            check_number(name, getattr(self, name), strict=strict)
        if self.exploration not in EXPLORATIONS:
            raise ValueError(f"exploration must be one of {', '.join(EXPLORATIONS)}, got {self.exploration!r}")
        check_count("candidates", self.candidates)


def time_features(obs: Obs) -> np.ndarray:
    """(B, 4) float64 time period ``tau``: the observation's (sin, cos) hour and (sin, cos) weekday."""
    return np.concatenate([obs["hour"], obs["weekday"]], axis=1).astype(np.float64)


def principal_directions(item_emb: np.ndarray, rank: int) -> np.ndarray:
    """(D, rank) the top-``rank`` principal directions of the (I, D) item embeddings, scaled so the
    items' coordinates ``item_emb @ V`` have unit mean square per direction."""
    centred = item_emb - item_emb.mean(axis=0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    return (vt[:rank].T * np.sqrt(item_emb.shape[0]) / np.maximum(singular[:rank], 1e-12)).astype(np.float64)


def thompson_draw(rng: np.random.Generator, means: np.ndarray, precisions: np.ndarray, scale: float) -> np.ndarray:
    """(B, F) one draw per row from N(means, scale^2 precision^-1): ``means`` (B, F), ``precisions`` (F, F)
    shared or (B, F, F) per row; ``mean + scale L^-T z`` for precision = L L' (no inverse formed)."""
    lower = np.linalg.cholesky(precisions)
    draws = rng.standard_normal((*means.shape, 1))
    return means + scale * np.linalg.solve(np.swapaxes(lower, -1, -2), draws)[..., 0]


class HyperBandit(LinUCB):
    """Time-aware hypernetwork bandit (module docstring). Shapes, with B sessions, I items, D dims, U users:

    ``A`` (D + 1, D + 1) / ``b`` (D + 1,) LinUCB's ridge over ``phi_0 = [s * e_i, z_i]``;
    ``shared_head`` G and ``heads`` H_u: :class:`GroupRidge` (1 and U groups) over the 4R features
    ``vec(tau P_i')``; ``item_coords`` (I, R) = ``P``; ``user_time_sum`` (U, 4) / ``user_time_count`` (U,)
    each user's periods so far.

    The three parts are fitted as a cascade (each on the residual of the ones before it, never the other
    way, so the online fit is stable): LinUCB on the logged reward, G on LinUCB's residual with the
    period ``tau``, H_u on what is left with the user's deviation ``tau - mean_u tau`` (0 for a user only
    ever seen at this period: H_u models how the user's preference varies with time, not a per-user
    level that the time-agnostic part and the logged bias would confound).
    """

    def __init__(self, rank: int = 8, alpha: float = 0.5, ridge: float = 1.0, user_ridge: float = 4.0,
                 exploration: str = "ucb", candidates: int = 50) -> None:
        self.params = HyperBanditParams(rank, alpha, ridge, user_ridge, exploration, candidates)
        super().__init__(alpha=alpha, ridge=ridge, candidates=candidates)

    def bind(self, env: Any, seed: int | None = None) -> None:
        world = env.world
        if not world.is_v1:
            raise ValueError(f"hyperbandit needs a v1 world (it reads the hour/weekday observation); "
                             f"{world.name!r} is v0")
        if self.params.rank > world.embed_dim:
            raise ValueError(f"rank must be in [1, {world.embed_dim}] (the embedding dimension), got {self.params.rank}")
        super().bind(env, seed)
        n_time = N_TIME * self.params.rank
        self.item_coords = world.item_emb.astype(np.float64) @ principal_directions(world.item_emb, self.params.rank)
        self.shared_head = GroupRidge(1, n_time, self.params.ridge)
        self.heads = GroupRidge(world.n_users, n_time, self.params.user_ridge)
        self.user_time_sum, self.user_time_count = np.zeros((world.n_users, N_TIME)), np.zeros(world.n_users)

    def _state(self, obs: Obs) -> np.ndarray:
        """(B, D) LinUCB's feedback-weighted history embedding over the non-negative feedback: v1's observed
        feedback is negative after a hate (weight -3), and a weight sum near 0 would blow the state up
        (LinUCB's own state reached |s| ~ 1e6 on KuaiRec-v1, its ridge matrix lost definiteness)."""
        return super()._state({**obs, "feedback": np.maximum(obs["feedback"], 0.0)})

    def _periods(self, obs: Obs) -> tuple[np.ndarray, np.ndarray]:
        """(B, 4) each session's period ``tau`` and (B, 4) its deviation from the user's mean period so far."""
        users = obs["user_id"][:, 0]
        tau, count = time_features(obs), self.user_time_count[users][:, None]
        return tau, np.where(count > 0, tau - self.user_time_sum[users] / np.maximum(count, 1.0), 0.0)

    def _time_block(self, tau: np.ndarray, items: np.ndarray) -> np.ndarray:
        """(B, K, 4R) ``vec(tau_b P_i')`` for the (B, K) ``items``."""
        coords = self.item_coords[items]  # (B, K, R)
        return (tau[:, None, :, None] * coords[:, :, None, :]).reshape(*items.shape, -1)

    def _parameters(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(B, D + 1) LinUCB's, (B, 4R) G's and (B, 4R) H_u's parameters per session: the posterior
        means, or one Thompson draw per session."""
        shared = np.broadcast_to(np.linalg.solve(self.A, self.b), (users.size, self.A.shape[0]))
        group = np.zeros(users.size, np.int64)
        period, own = self.shared_head.mean(group), self.heads.mean(users)
        if self.params.exploration == "thompson":
            scale = self.params.alpha
            shared = thompson_draw(self.rng, shared, self.A, scale)
            period = thompson_draw(self.rng, period, self.shared_head.A[0], scale)
            own = thompson_draw(self.rng, own, self.heads.A[users], scale)
        return shared, period, own

    def scores(self, obs: Obs, mask: np.ndarray) -> np.ndarray:
        dims, rank = self.world.embed_dim, self.params.rank
        users = obs["user_id"][:, 0]
        shared, period, own = self._parameters(users)
        state, (tau, deviation) = self._state(obs), self._periods(obs)
        update = (np.einsum("bt,btr->br", tau, period.reshape(-1, N_TIME, rank))
                  + np.einsum("bt,btr->br", deviation, own.reshape(-1, N_TIME, rank)))  # (B, R): V' of the update
        mean = ((state * shared[:, :dims]) @ self.world.item_emb.T + shared[:, dims:] * self.z_pop
                + update @ self.item_coords.T)
        mean = mean + 1e-6 * self.rng.random(mask.shape)  # random tie-break (all-equal scores at step 0)
        if self.params.exploration == "thompson" or self.params.alpha == 0:
            return mean
        k = min(self.params.candidates, mask.shape[1])
        top = np.argpartition(np.where(mask, -mean, np.inf), k - 1, axis=1)[:, :k]
        phi = LinUCB._features(self, state, obs, top)
        phi_period, phi_own = self._time_block(tau, top), self._time_block(deviation, top)
        variance = (((phi @ np.linalg.inv(self.A)) * phi).sum(axis=-1)
                    + ((phi_period @ np.linalg.inv(self.shared_head.A[0])) * phi_period).sum(axis=-1)
                    + ((phi_own @ self.heads.covariance(users)) * phi_own).sum(axis=-1))
        rows = np.arange(mask.shape[0])[:, None]
        mean[rows, top] += self.params.alpha * np.sqrt(variance)
        return mean

    def update(self, obs: Obs, actions: np.ndarray, rewards: np.ndarray) -> None:
        """One cascade step (class docstring) on the served items, then the users' period statistics."""
        users = obs["user_id"][:, 0]
        rewards = np.asarray(rewards, np.float64)
        tau, deviation = self._periods(obs)
        phi = LinUCB._features(self, self._state(obs), obs, actions[:, None])[:, 0]
        phi_period, phi_own = (self._time_block(t, actions[:, None])[:, 0] for t in (tau, deviation))
        group = np.zeros(users.size, np.int64)
        residual = rewards - phi @ np.linalg.solve(self.A, self.b)
        self.shared_head.add(group, phi_period, residual)
        self.heads.add(users, phi_own, residual - np.einsum("bf,bf->b", phi_period, self.shared_head.mean(group)))
        super().update(obs, actions, rewards)
        np.add.at(self.user_time_sum, users, tau)
        np.add.at(self.user_time_count, users, 1.0)
