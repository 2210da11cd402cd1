"""Batched baseline policies: every one scores all items for B sessions at once.

A :class:`Policy` sees what a platform sees (the observation dict of (B, ...) arrays, the
(B, I) action mask, the catalogue's item features and logged popularity); only
:class:`OracleGreedy` reads the simulator's ground truth, as the upper reference. ``act`` is the
masked argmax of ``scores``, so every policy respects the NX modes' no-repeat mask. Online
learners (the bandits) update from the reward the environment returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from recgym.sizes import check_count, check_number

Obs = dict[str, np.ndarray]


def masked_argmax(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(B,) int64 index of the best allowed item per row of (B, I) ``scores`` under the (B, I) bool ``mask``."""
    return np.where(mask, scores, -np.inf).argmax(axis=1).astype(np.int64)


class Policy:
    """Base class: ``bind`` to a :class:`~recgym.envs.vector.RecSysVectorEnv`, then ``act`` each step."""

    def bind(self, env: Any, seed: int | None = None) -> None:
        """Attach to ``env`` (its ``world`` / ``sim``) and seed the policy's own generator."""
        self.env, self.world, self.rng = env, env.world, np.random.default_rng(seed)

    def scores(self, obs: Obs, mask: np.ndarray) -> np.ndarray:
        """(B, I) float preference of each session for each item (higher is better)."""
        raise NotImplementedError

    def acting_rows(self, table: np.ndarray) -> np.ndarray:
        """The (B, ...) rows of a per-session simulator ``table`` (``sim.expected_reward()``, ``sim.leave_mask()``)
        for the B sessions this policy acts for: every row of a vector env's; a population's live slots
        (:attr:`~recgym.envs.population.PopulationEnv.live_slots`, the order of its ``agents``), not its empty ones."""
        slots = getattr(self.env, "live_slots", None)
        return table if slots is None else table[slots]

    def act(self, obs: Obs, mask: np.ndarray) -> np.ndarray:
        """(B,) item ids: the best allowed item of :meth:`scores`."""
        return masked_argmax(self.scores(obs, mask), mask)

    def update(self, obs: Obs, actions: np.ndarray, rewards: np.ndarray) -> None:
        """Learn from one batched step (``obs`` the observation the actions were chosen on). No-op here."""


class RandomPolicy(Policy):
    """Uniformly random allowed item."""

    def scores(self, obs: Obs, mask: np.ndarray) -> np.ndarray:
        return self.rng.random(mask.shape)


class MostPopular(Policy):
    """The most popular allowed item by the platform's logged popularity (prior + clicks so far)."""

    def scores(self, obs: Obs, mask: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.env.sim.popularity, mask.shape)


class OracleGreedy(Policy):
    """Upper reference: the item with the highest noise-free true reward right now
    (``Simulator.expected_reward``), avoiding items that would make the user leave
    (``Simulator.leave_mask``) whenever another allowed item exists."""

    def scores(self, obs: Obs, mask: np.ndarray) -> np.ndarray:
        sim = self.env.sim
        return self.acting_rows(sim.expected_reward() - 2.0 * sim.world.reward_max * sim.leave_mask())


class LongTailOracle(OracleGreedy):
    """Control: :class:`OracleGreedy` restricted to the long tail (items outside the top ``1 - tail`` by prior
    popularity, ``World.popular_items``) as :func:`recgym.phenomena.long_tail_and_share` runs it: the best tail
    item by true expected reward, a head item only when no tail item is allowed, and (as the oracle) no
    leave-triggering item while another allowed item exists."""

    def __init__(self, head_fraction: float = 0.2) -> None:
        if isinstance(head_fraction, bool) or not isinstance(head_fraction, (int, float)) or not 0 <= head_fraction < 1:
            raise ValueError(f"head_fraction must be in [0, 1), got {head_fraction!r}")
        self.head_fraction = float(head_fraction)

    def bind(self, env: Any, seed: int | None = None) -> None:
        super().bind(env, seed)
        self.head = self.world.popular_items(self.head_fraction)

    def scores(self, obs: Obs, mask: np.ndarray) -> np.ndarray:
        sim = self.env.sim
        return self.acting_rows(np.where(self.head, -1.0, sim.expected_reward())
                                - 2.0 * self.world.reward_max * sim.leave_mask())


class PopulationMeanRanking(Policy):
    """Control: the best non-personalised ranking of the phenomena reference. Every session gets the same
    order, the population's mean first-session satisfaction of each item
    (:func:`recgym.phenomena.population_mean_satisfaction`, computed once at ``bind``), skipping items that
    would make the user leave (the leave rules are the protocol's, public) when another allowed item exists.
    v1 worlds (the score uses the items' quality and the acquired tastes' valley)."""

    def bind(self, env: Any, seed: int | None = None) -> None:
        from recgym.phenomena import population_mean_satisfaction

        if not env.world.is_v1:
            raise ValueError(f"the population-mean ranking needs a v1 world, got {env.world.name!r}")
        super().bind(env, seed)
        self.ranking = population_mean_satisfaction(self.world, self.env.sim.params)

    def scores(self, obs: Obs, mask: np.ndarray) -> np.ndarray:
        return self.ranking[None, :] - 2.0 * self.world.reward_max * self.acting_rows(self.env.sim.leave_mask())


@dataclass
class _ItemStats:
    """Per-item reward sums and counts pooled over all sessions."""

    sums: np.ndarray
    counts: np.ndarray

    def add(self, actions: np.ndarray, rewards: np.ndarray) -> None:
        n_items = self.sums.size
        self.sums += np.bincount(actions, weights=rewards, minlength=n_items)
        self.counts += np.bincount(actions, minlength=n_items)


class EpsilonGreedy(Policy):
    """Per-item mean reward (optimistic prior of ``reward_max / 2`` counted as one pull); each
    session explores a uniformly random item with probability ``epsilon``."""

    def __init__(self, epsilon: float = 0.1) -> None:
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon!r}")
        self.epsilon = epsilon

    def bind(self, env: Any, seed: int | None = None) -> None:
        super().bind(env, seed)
        self.stats = _ItemStats(np.zeros(self.world.n_items), np.zeros(self.world.n_items))

    def scores(self, obs: Obs, mask: np.ndarray) -> np.ndarray:
        prior = self.world.reward_max / 2
        means = (self.stats.sums + prior) / (self.stats.counts + 1.0)
        noise = self.rng.random(mask.shape)
        explore = self.rng.random(mask.shape[0]) < self.epsilon
        return np.where(explore[:, None], noise, means + 1e-6 * noise)

    def update(self, obs: Obs, actions: np.ndarray, rewards: np.ndarray) -> None:
        self.stats.add(actions, rewards)


class UCB(Policy):
    """UCB1 over items: ``mean_i + c * sqrt(2 ln t / n_i)``; untried items first (random order)."""

    def __init__(self, c: float = 1.0) -> None:
        if c < 0:
            raise ValueError(f"c must be >= 0, got {c!r}")
        self.c = c

    def bind(self, env: Any, seed: int | None = None) -> None:
        super().bind(env, seed)
        self.stats = _ItemStats(np.zeros(self.world.n_items), np.zeros(self.world.n_items))

    def scores(self, obs: Obs, mask: np.ndarray) -> np.ndarray:
        counts = self.stats.counts
        total = max(counts.sum(), 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            ucb = self.stats.sums / counts + self.c * np.sqrt(2 * np.log(total) / counts)
        ucb = np.where(counts > 0, ucb, 1e6)
        return ucb + 1e-6 * self.rng.random(mask.shape)

    def update(self, obs: Obs, actions: np.ndarray, rewards: np.ndarray) -> None:
        self.stats.add(actions, rewards)


class LinUCB(Policy):
    """Contextual LinUCB with one shared ridge model over (session, item) features.

    Session state ``s_b``: the feedback-weighted mean embedding of the observed history (with
    ``recency < 1``, history slot j steps back is further weighted by ``recency ** j``).
    Features ``phi(b, i) = [s_b * e_i, z_i]`` (elementwise product, D dims, plus the item's
    standardised log popularity ``z_i``); with ``time_aware=True`` also ``z_i * step_b``, so the
    weight on popularity can change along the session. Score ``theta . phi + alpha *
    sqrt(phi' A^-1 phi)``; the exploration bonus is computed for the ``candidates`` items with the
    best mean per session (others keep their mean), which bounds the cost at B x K x F^2.
    """

    def __init__(self, alpha: float = 0.5, ridge: float = 1.0, recency: float = 1.0, time_aware: bool = False,
                 candidates: int = 50) -> None:
        if alpha < 0 or ridge <= 0 or not 0 < recency <= 1 or candidates < 1:
            raise ValueError("LinUCB needs alpha >= 0, ridge > 0, recency in (0, 1] and candidates >= 1, "
                             f"got alpha={alpha!r}, ridge={ridge!r}, recency={recency!r}, candidates={candidates!r}")
        self.alpha, self.ridge, self.recency, self.time_aware, self.candidates = alpha, ridge, recency, time_aware, candidates

    def bind(self, env: Any, seed: int | None = None) -> None:
        super().bind(env, seed)
        n_features = self.world.embed_dim + (2 if self.time_aware else 1)
        self.A = self.ridge * np.eye(n_features)
        self.b = np.zeros(n_features)
        log_pop = np.log(self.world.pop_prior)
        self.z_pop = ((log_pop - log_pop.mean()) / log_pop.std()).astype(np.float32)

    def _state(self, obs: Obs) -> np.ndarray:
        """(B, D) recency- and feedback-weighted mean embedding of the history (oldest slot first).
        Negative logged feedback (a v1 "hate" in the observed reward) weighs 0: a convex combination
        stays one, where a negative weight could cancel the normaliser and blow the state up."""
        k = obs["feedback"].shape[1]
        weights = np.maximum(obs["feedback"], 0) * self.recency ** np.arange(k - 1, -1, -1, dtype=np.float32)
        total = np.maximum(weights.sum(axis=1, keepdims=True), 1e-6)
        return np.einsum("bk,bkd->bd", weights, obs["embeddings"]) / total

    def _features(self, state: np.ndarray, obs: Obs, items: np.ndarray) -> np.ndarray:
        """(B, K, F) features of the (B, K) ``items`` for each session."""
        emb = self.world.item_emb[items]
        parts = [state[:, None, :] * emb, self.z_pop[items][..., None]]
        if self.time_aware:
            parts.append((self.z_pop[items] * obs["step"])[..., None])
        return np.concatenate(parts, axis=-1)

    def scores(self, obs: Obs, mask: np.ndarray) -> np.ndarray:
        theta = np.linalg.solve(self.A, self.b)
        dims = self.world.embed_dim
        state = self._state(obs)
        mean = (state * theta[:dims]) @ self.world.item_emb.T + theta[dims] * self.z_pop
        if self.time_aware:
            mean = mean + theta[dims + 1] * obs["step"] * self.z_pop
        mean = mean + 1e-6 * self.rng.random(mask.shape)  # random tie-break (all-equal scores at step 0)
        k = min(self.candidates, mask.shape[1])
        top = np.argpartition(np.where(mask, -mean, np.inf), k - 1, axis=1)[:, :k]
        phi = self._features(state, obs, top)
        bonus = np.sqrt(np.einsum("bkf,fg,bkg->bk", phi, np.linalg.inv(self.A), phi))
        rows = np.arange(mask.shape[0])[:, None]
        mean[rows, top] += self.alpha * bonus
        return mean

    def update(self, obs: Obs, actions: np.ndarray, rewards: np.ndarray) -> None:
        phi = self._features(self._state(obs), obs, actions[:, None])[:, 0]
        self.A += phi.T @ phi
        self.b += phi.T @ rewards


class FamiliarityDebiaser(Policy):
    """Post-ranker: takes a base policy's top ``candidates`` items and rescores them to down-weight
    familiar content: ``rank(base score) - weight * familiarity`` (rank scaled to [0, 1] among the
    candidates, so the base's score scale does not matter), where familiarity is the share of
    the item's categories already present among the session's last ``window`` consumed items."""

    def __init__(self, base: Policy, weight: float = 2.0, candidates: int = 50, window: int = 4) -> None:
        check_number("weight", weight)
        self.base, self.weight = base, weight
        self.candidates, self.window = check_count("candidates", candidates), check_count("window", window)

    def bind(self, env: Any, seed: int | None = None) -> None:
        super().bind(env, seed)
        self.base.bind(env, None if seed is None else seed + 1)
        self._cats_padded = np.vstack([self.world.item_cats, np.zeros((1, self.world.n_categories), bool)])

    def familiarity(self, obs: Obs, items: np.ndarray) -> np.ndarray:
        """(B, K) share of each candidate's categories seen in the last ``window`` history items."""
        recent = self._cats_padded[obs["item_ids"][:, -self.window:]].any(axis=1)  # (B, C); -1 -> no category
        cats = self.world.item_cats[items]  # (B, K, C)
        return (cats & recent[:, None, :]).sum(axis=-1) / np.maximum(cats.sum(axis=-1), 1)

    def scores(self, obs: Obs, mask: np.ndarray) -> np.ndarray:
        base = np.where(mask, self.base.scores(obs, mask), -np.inf)
        k = min(self.candidates, mask.shape[1])
        top = np.argpartition(-base, k - 1, axis=1)[:, :k]
        rows = np.arange(mask.shape[0])[:, None]
        chosen = base[rows, top]
        rank = chosen.argsort(axis=1).argsort(axis=1) / max(k - 1, 1)  # 0 = worst candidate, 1 = best
        out = np.full(mask.shape, -np.inf)
        out[rows, top] = np.where(np.isfinite(chosen), rank - self.weight * self.familiarity(obs, top), -np.inf)
        return out

    def update(self, obs: Obs, actions: np.ndarray, rewards: np.ndarray) -> None:
        self.base.update(obs, actions, rewards)
