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
in embedding space, so its parameters are 4 R + 4 R per user instead of 4 D. A linear hypernetwork keeps
the score linear in every parameter, so the confidence bonus is exact: theta_0 and G share one ridge
posterior ``A_0`` (features ``phi_0 = [s * e_i, z_i, vec(tau P_i')]``), each user's head its own ``A_u``
fitted to the residual of the shared model (backfitting). Exploration as the paper: UCB
``mean + alpha sqrt(phi_0' A_0^-1 phi_0 + phi_1' A_u^-1 phi_1)`` (bonus on each session's ``candidates``
best items by mean, as :class:`~recgym.agents.baselines.LinUCB`), or Thompson sampling (one posterior
draw of both parameter sets per session and step, scale ``alpha``).

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
        if isinstance(self.rank, bool) or not isinstance(self.rank, (int, np.integer)) or self.rank < 1:
            raise ValueError(f"rank must be an integer >= 1, got {self.rank!r}")
        for name, low, closed in (("alpha", 0.0, True), ("ridge", 0.0, False), ("user_ridge", 0.0, False)):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not np.isfinite(value) or value < low or (value == low and not closed):
                raise ValueError(f"{name} must be a finite number {'>=' if closed else '>'} {low:g}, got {value!r}")
        if self.exploration not in EXPLORATIONS:
            raise ValueError(f"exploration must be one of {', '.join(EXPLORATIONS)}, got {self.exploration!r}")
        if isinstance(self.candidates, bool) or not isinstance(self.candidates, (int, np.integer)) or self.candidates < 1:
            raise ValueError(f"candidates must be an integer >= 1, got {self.candidates!r}")


def time_features(obs: Obs) -> np.ndarray:
    """(B, 4) float64 time period ``tau``: the observation's (sin, cos) hour and (sin, cos) weekday."""
    return np.concatenate([obs["hour"], obs["weekday"]], axis=1).astype(np.float64)


def principal_directions(item_emb: np.ndarray, rank: int) -> np.ndarray:
    """(D, rank) the top-``rank`` principal directions of the (I, D) item embeddings, scaled so the
    items' coordinates ``item_emb @ V`` have unit mean square per direction."""
    centred = item_emb - item_emb.mean(axis=0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    return (vt[:rank].T * np.sqrt(item_emb.shape[0]) / np.maximum(singular[:rank], 1e-12)).astype(np.float64)


class HyperBandit(LinUCB):
    """Time-aware hypernetwork bandit (module docstring). Shapes, with B sessions, I items, D dims, U users:

    ``A`` (F0, F0) / ``b`` (F0,) the shared ridge over ``phi_0`` (F0 = D + 1 + 4 R);
    ``heads`` the users' time heads H_u (a :class:`GroupRidge` over U users, 4R features); ``item_coords`` (I, R) = ``P``.
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
        rank, dims = self.params.rank, world.embed_dim
        self.item_coords = world.item_emb.astype(np.float64) @ principal_directions(world.item_emb, rank)  # (I, R)
        n_shared = dims + 1 + N_TIME * rank
        self.A, self.b = self.params.ridge * np.eye(n_shared), np.zeros(n_shared)
        self.heads = GroupRidge(world.n_users, N_TIME * rank, self.params.user_ridge)

    def _time_block(self, tau: np.ndarray, items: np.ndarray) -> np.ndarray:
        """(B, K, 4R) ``vec(tau_b P_i')`` for the (B, K) ``items``."""
        coords = self.item_coords[items]  # (B, K, R)
        return (tau[:, None, :, None] * coords[:, :, None, :]).reshape(*items.shape, -1)

    def _features(self, state: np.ndarray, obs: Obs, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, K, F0) shared features ``phi_0`` and (B, K, 4R) user-head features ``phi_1`` of (B, K) ``items``."""
        emb = self.world.item_emb[items]
        time_block = self._time_block(time_features(obs), items)
        shared = np.concatenate([state[:, None, :] * emb, self.z_pop[items][..., None], time_block], axis=-1)
        return shared, time_block

    def _parameters(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, F0) shared and (B, 4R) user-head parameters per session: the posterior means, or one
        Thompson draw per session."""
        n = users.size
        theta = np.linalg.solve(self.A, self.b)
        heads = self.heads.mean(users)
        theta = np.broadcast_to(theta, (n, theta.size))
        if self.params.exploration == "thompson":
            scale = self.params.alpha
            shared_chol = np.linalg.cholesky(np.linalg.inv(self.A))
            theta = theta + scale * self.rng.standard_normal((n, theta.shape[1])) @ shared_chol.T
            user_chol = np.linalg.cholesky(self.heads.covariance(users))
            heads = heads + scale * np.einsum("bfg,bg->bf", user_chol, self.rng.standard_normal(heads.shape))
        return theta, heads

    def scores(self, obs: Obs, mask: np.ndarray) -> np.ndarray:
        dims, rank = self.world.embed_dim, self.params.rank
        users = obs["user_id"][:, 0]
        theta, heads = self._parameters(users)
        state, tau = self._state(obs), time_features(obs)
        time_weights = theta[:, dims + 1:] + heads  # (B, 4R): G + H_u, flattened (time, rank)
        update = np.einsum("bt,btr->br", tau, time_weights.reshape(-1, N_TIME, rank))  # (B, R)
        mean = ((state * theta[:, :dims]) @ self.world.item_emb.T + theta[:, dims:dims + 1] * self.z_pop
                + update @ self.item_coords.T)
        mean = mean + 1e-6 * self.rng.random(mask.shape)  # random tie-break (all-equal scores at step 0)
        if self.params.exploration == "thompson" or self.params.alpha == 0:
            return mean
        k = min(self.params.candidates, mask.shape[1])
        top = np.argpartition(np.where(mask, -mean, np.inf), k - 1, axis=1)[:, :k]
        shared, own = self._features(state, obs, top)
        variance = (((shared @ np.linalg.inv(self.A)) * shared).sum(axis=-1)
                    + ((own @ self.heads.covariance(users)) * own).sum(axis=-1))
        rows = np.arange(mask.shape[0])[:, None]
        mean[rows, top] += self.params.alpha * np.sqrt(variance)
        return mean

    def update(self, obs: Obs, actions: np.ndarray, rewards: np.ndarray) -> None:
        """Backfitting step: the shared ridge learns what the users' heads leave, each head what the
        shared model leaves."""
        users = obs["user_id"][:, 0]
        shared, own = (block[:, 0] for block in self._features(self._state(obs), obs, actions[:, None]))
        rewards = np.asarray(rewards, np.float64)
        shared_target = rewards - np.einsum("bf,bf->b", own, self.heads.mean(users))
        user_target = rewards - shared @ np.linalg.solve(self.A, self.b)
        self.A += shared.T @ shared
        self.b += shared.T @ shared_target
        self.heads.add(users, own, user_target)
