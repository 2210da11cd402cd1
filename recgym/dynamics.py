"""Pure, batched user dynamics. Every function maps arrays for B users to new arrays.

Shapes: B users in the batch, I items, C categories, D embedding dims, L recent-item buffer length.
Randomness comes only from the explicit ``rng`` argument. :class:`recgym.simulator.Simulator`
composes these into one step; nothing here keeps state.
"""

from __future__ import annotations

import numpy as np

from recgym.params import SimParams

LEAVE_NONE, LEAVE_CATEGORY_WINDOW, LEAVE_POPULAR_STREAK, LEAVE_PATIENCE = 0, 1, 2, 3
LEAVE_REASONS = ("none", "category_window", "popular_streak", "patience")


def session_logit_terms(
    params: SimParams,
    item_emb: np.ndarray,
    item_cats: np.ndarray,
    item_hour: np.ndarray,
    items: np.ndarray,
    hour: np.ndarray,
    history_mean_emb: np.ndarray,
    novelty_propensity: np.ndarray,
    category_fatigue: np.ndarray,
    creator_repeats: np.ndarray,
) -> np.ndarray:
    """(B,) additive utility terms of the session mechanisms for consuming ``items`` (B,).

    time of day:  time_of_day * cos(2 pi (hour - item_hour) / 24)
    novelty:      novelty_weight * (propensity - 1/2) * (1 - <e_item, mean history embedding>)
    boredom:      -boredom * mean over the item's categories of the decayed category count
    creator:      -creator_fatigue * share of the recent history by the same creator
    """
    terms = np.zeros(items.shape[0], dtype=np.float32)
    if params.time_of_day:
        terms += params.time_of_day * np.cos((2 * np.pi / 24) * (hour - item_hour[items]))
    if params.novelty_weight:
        novelty = 1.0 - np.einsum("bd,bd->b", item_emb[items], history_mean_emb)
        terms += params.novelty_weight * (novelty_propensity - 0.5) * novelty
    if params.boredom:
        cats = item_cats[items]
        familiarity = np.einsum("bc,bc->b", cats, category_fatigue) / np.maximum(cats.sum(axis=1), 1)
        terms -= params.boredom * familiarity
    if params.creator_fatigue:
        terms -= params.creator_fatigue * creator_repeats
    return terms


def expected_reward(base: np.ndarray, terms: np.ndarray, matrix_backed: bool, reward_max: float) -> np.ndarray:
    """Noise-free true engagement in [0, reward_max], same shape as ``base``.

    ``base`` is the affinity logit ``a <u, e> + b`` (latent worlds: reward_max * sigmoid(base +
    terms)) or the ground-truth matrix value (matrix worlds: value * exp(terms), exactly the matrix
    when every mechanism is off).
    """
    if matrix_backed:
        reward = base * np.exp(terms)
    else:
        reward = reward_max / (1.0 + np.exp(-(base + terms)))
    return np.clip(reward, 0.0, reward_max).astype(np.float32)


def true_reward(
    base: np.ndarray, terms: np.ndarray, matrix_backed: bool, params: SimParams, reward_max: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """(B,) true engagement: :func:`expected_reward` plus N(0, reward_noise), clipped to [0, reward_max]."""
    reward = expected_reward(base, terms, matrix_backed, reward_max)
    if params.reward_noise:
        reward = np.clip(reward + rng.normal(0.0, params.reward_noise, size=reward.shape), 0.0, reward_max)
    return reward.astype(np.float32)


def popularity_score(popularity: np.ndarray, items: np.ndarray) -> np.ndarray:
    """(B,) log-popularity of ``items`` scaled to [0, 1] by the catalogue's most popular item."""
    return (np.log1p(popularity[items]) / np.log1p(popularity.max())).astype(np.float32)


def observed_feedback(
    params: SimParams, reward: np.ndarray, pop_score: np.ndarray, reward_max: float, rng: np.random.Generator
) -> np.ndarray:
    """(B,) feedback a platform logs: true reward plus conformity, thinned by exposure bias, noisy.

    observed = logged * (reward + popularity_noise * reward_max/2 * pop_score) + N(0, observation_noise)
    with logged ~ Bernoulli(1 - exposure_bias * (1 - pop_score)), clipped to [0, reward_max].
    """
    observed = reward + params.popularity_noise * (reward_max / 2) * pop_score
    if params.exposure_bias:
        logged = rng.random(reward.shape[0]) >= params.exposure_bias * (1.0 - pop_score)
        observed = observed * logged
    if params.observation_noise:
        observed = observed + rng.normal(0.0, params.observation_noise, size=reward.shape)
    return np.clip(observed, 0.0, reward_max).astype(np.float32)


def leave_reason(
    params: SimParams,
    new_cats: np.ndarray,
    window_category_counts: np.ndarray,
    step: np.ndarray,
    popular_streak: np.ndarray,
    patience: np.ndarray,
) -> np.ndarray:
    """(B,) int leave code (``LEAVE_*``) after the new item; the first rule that fires wins.

    new_cats: (B, C) bool categories of the new item; window_category_counts: (B, C) how often
    each category appears among the last ``leave_window`` items before it; popular_streak and
    patience: (B,) values already updated with the new item.
    """
    reason = np.zeros(step.shape[0], dtype=np.int8)
    if params.patience:
        reason[patience <= 0] = LEAVE_PATIENCE
    if params.popular_streak:
        reason[popular_streak >= params.popular_streak] = LEAVE_POPULAR_STREAK
    if params.leave_window:
        repeated = (new_cats & (window_category_counts > params.leave_threshold)).any(axis=1) & (step > 0)
        reason[repeated] = LEAVE_CATEGORY_WINDOW
    return reason


def drift_interest(
    params: SimParams, interest: np.ndarray, consumed_emb: np.ndarray, enjoyment: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """(B, D) unit interests moved toward consumed items (by enjoyment in [0, 1]) plus a random walk."""
    moved = interest
    if params.interest_drift:
        moved = moved + (params.interest_drift * enjoyment)[:, None] * (consumed_emb - interest)
    if params.interest_walk:
        moved = moved + rng.normal(0.0, params.interest_walk, size=interest.shape).astype(np.float32)
    return (moved / np.linalg.norm(moved, axis=1, keepdims=True)).astype(np.float32)


def session_novelty_offset(
    params: SimParams, offset: np.ndarray, boredom_signal: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """(B,) session-level novelty offset: mean-reverting walk pushed up by boredom (in [0, 1])."""
    offset = 0.8 * offset + 0.2 * boredom_signal
    if params.session_novelty_volatility:
        offset = offset + rng.normal(0.0, params.session_novelty_volatility, size=offset.shape)
    return offset.astype(np.float32)


def choose_from_slate(
    utility: np.ndarray, pop_score: np.ndarray, params: SimParams, rng: np.random.Generator
) -> np.ndarray:
    """(B,) index into each slate of the item the user consumes: argmax of utility + conformity + Gumbel."""
    noisy = utility + params.popularity_noise * pop_score + rng.gumbel(size=utility.shape)
    return noisy.argmax(axis=1)
