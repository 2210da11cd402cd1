"""v1 choice and satisfaction: what one item does to one session's user (``docs/design-v1.md`` 3.2).

Scalar functions of one session and one item, compiled and inlined into the batch kernels of
:mod:`recgym.dynamics` (they take its ``Catalogue`` / ``Sessions`` tuples):

    sat_i    = min(reward_max * sigmoid(base_i + T_i(s)) * Q_i * A_i(u), watch_max)   the true reward's mean
    A_i(u)   = 1 + niche_i * (taste_weight * taste_u,n(i) - taste_valley)   acquired taste (recgym.users.acquired_appeal)
    f_i      = max(creator familiarity, category familiarity) in [0, 1]
    logit_i  = click_base + click_slope * log(sat_i) + conformity * p_i + familiarity_click * f_i
    theta_j  = (1 + j) ** -position_decay                                        slot j examined (slates)

Satisfaction excludes every pull: popularity and familiarity move what the platform logs
(:mod:`recgym.logging_model`), not what the user gets. Creator familiarity is 1 when the item's
creator is followed or among the creators of the last k items; category familiarity is the mean over
the item's categories of the decayed category count / its cap (the quantity boredom reads).

Slates (v1, ``slate_size > 1``): the position-based model examines slot j with probability theta_j
and the user clicks the argmax of ``logit_i + Gumbel`` over the examined items and a skip of logit 0
(a multinomial logit: a one-item slate clicks with sigmoid(logit_i), the single-item probability);
the cascade examines top-down and clicks slot j with sigmoid(logit_j), stopping at the first click.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from recgym.users import acquired_appeal

#: Floor of the satisfaction inside log(sat) (a zero satisfaction gives a finite logit).
MIN_SATISFACTION = np.float32(1e-6)


@njit(cache=True, inline="always")
def sigmoid(x: np.float32) -> np.float32:
    return np.float32(1.0) / (np.float32(1.0) + np.exp(-x))


@njit(cache=True, inline="always")
def satisfaction(kn: np.void, cat: tuple, s: tuple, b: int, item: int, base: np.float32, term: np.float32) -> np.float32:
    """Noise-free true reward of ``item`` for session ``b`` given its (base, session term) utility
    (latent v1 worlds): quality and the user's acquired taste multiply it."""
    appeal = acquired_appeal(kn.taste_weight, kn.taste_valley, s.taste[s.user[b]], cat.item_neighbourhood[item],
                             cat.item_niche[item])
    return min(cat.reward_max * sigmoid(base + term) * cat.item_qmult[item] * appeal, kn.watch_max)


@njit(cache=True, inline="always")
def category_count_sum(fatigue: np.ndarray, categories: np.ndarray, n_categories: int) -> np.float32:
    """Sum of the decayed counts ``fatigue`` (C,) over an item's categories (its category-list row)."""
    total = np.float32(0.0)
    for m in range(n_categories):
        total += fatigue[categories[m]]
    return total


@njit(cache=True, inline="always")
def creator_familiar(kn: np.void, cat: tuple, s: tuple, b: int, item: int) -> bool:
    """Whether ``item``'s creator is followed by session ``b``'s user or made one of its last k items."""
    creator = cat.item_creator[item]
    followed = cat.user_followed[s.user[b]]
    for j in range(followed.shape[0]):
        if followed[j] == creator:
            return True
    length = s.recent_creators.shape[1]
    for j in range(length - kn.history_len, length):
        if s.recent_creators[b, j] == creator:
            return True
    return False


@njit(cache=True, inline="always")
def familiarity(kn: np.void, cat: tuple, s: tuple, b: int, item: int) -> np.float32:
    """f in [0, 1]: max(creator familiarity, mean category count / its cap) of ``item`` for session ``b``."""
    if creator_familiar(kn, cat, s, b, item):
        return np.float32(1.0)
    n_categories = cat.cat_counts[item]
    if n_categories == 0:
        return np.float32(0.0)
    total = category_count_sum(s.category_fatigue[b], cat.cat_lists[item], n_categories)
    return min(total / np.float32(n_categories) / kn.fatigue_cap, np.float32(1.0))


@njit(cache=True, inline="always")
def click_logit(kn: np.void, log_sat: np.float32, pop_score: np.float32, fam: np.float32) -> np.float32:
    """Logit of the click: satisfaction plus the popularity (conformity) and familiarity pulls."""
    return kn.click_base + kn.click_slope * log_sat + kn.conformity * pop_score + kn.familiarity_click * fam


@njit(cache=True, inline="always")
def examination_probability(kn: np.void, position: int) -> np.float32:
    """theta_j = (1 + j) ** -position_decay: probability that the position-based model examines slot ``position``."""
    return np.float32((1.0 + position) ** -float(kn.position_decay))


@njit(cache=True, inline="always")
def slate_click_score(kn: np.void, logit: np.float32, gumbel: float, uniform: np.float32) -> float:
    """Score of an examined slate item in the click model, compared with the running best (the
    skip's score to begin with, :func:`skip_score`): position model ``logit + gumbel`` (the
    multinomial logit's Gumbel-max); cascade ``inf`` when ``uniform < sigmoid(logit)`` (the item is
    attractive: the first such slot wins and the scan stops), else ``-inf``."""
    if kn.cascade:
        return np.inf if uniform < sigmoid(logit) else -np.inf
    return float(logit) + gumbel


@njit(cache=True, inline="always")
def skip_score(kn: np.void, gumbel: float) -> float:
    """The skip's score in :func:`slate_click_score`'s comparison: logit 0 plus its Gumbel (position
    model); in the cascade a skip is what remains when no slot was attractive (-inf beats nothing)."""
    return -np.inf if kn.cascade else gumbel
