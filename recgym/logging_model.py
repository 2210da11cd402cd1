"""v1 logging model: what the platform logs of one impression (``docs/design-v1.md`` 3.3).

Scalar functions compiled and inlined into the batch kernels of :mod:`recgym.dynamics`. Given the
consumed item's satisfaction ``sat``, familiarity ``f`` and popularity score ``p`` (all from
:mod:`recgym.choice`), the logged signals, in :data:`recgym.params.SIGNALS` order:

    click        ~ Bernoulli(sigmoid(click_logit))                     carries both pulls
    watch_ratio  = min(sat * exp(familiarity_watch * f) * LN, watch_max)  LN mean-one log-normal (watch_noise)
    long_view    = watch_ratio >= long_view_ratio
    like, follow, comment, forward, hate ~ Bernoulli(sigmoid(a_s + k_s log sat + pulls_s))
    no click: every signal is 0 (the user swiped away)

with a_s the knob ``post_click_intercepts`` (default :data:`recgym.params.DEFAULT_POST_CLICK_INTERCEPTS`)
and k_s in :data:`POST_CLICK_SLOPES`; the like carries ``conformity_like * p``, like /
follow / comment / forward carry ``familiarity_click * f``, hate none. The observed reward is
``click * sum_s reward_weights_s * signal_s``. With every pull off, E[watch_ratio | click] = sat
(clip aside) and each signal is a monotone function of sat.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from recgym.choice import MIN_SATISFACTION, click_logit, sigmoid

N_SIGNALS = 8
CLICK, WATCH_RATIO, LONG_VIEW = 0, 1, 2
#: Random uniforms one impression consumes: the click and the five post-click signals (a v1 slate
#: adds one per slot after them: the click model's examination or click draw).
UNIFORMS_PER_IMPRESSION = 6
#: What a v1 slate's log holds per slot (``Sessions.slate_log``, the ``slate_clicks`` observation):
#: the clicked item, an impression with click 0 (examined, not clicked), or nothing (unexamined, or a
#: repeat of an earlier slot: missing from the log, not a negative).
SLATE_UNLOGGED, SLATE_IMPRESSION, SLATE_CLICK = -1, 0, 1

#: Slope in log satisfaction of the logits of like, follow, comment, forward, hate (signals 3..7; their
#: intercepts are the knob ``post_click_intercepts``).
POST_CLICK_SLOPES = np.array([1.5, 1.5, 1.0, 1.0, -2.0], np.float32)


@njit(cache=True, inline="always")
def post_click_logit(kn: np.void, j: int, log_sat: np.float32, pop_score: np.float32, fam: np.float32) -> np.float32:
    """Logit of post-click signal ``j`` (0 like, 1 follow, 2 comment, 3 forward, 4 hate)."""
    x = kn.post_click_intercepts[j] + POST_CLICK_SLOPES[j] * log_sat
    if j == 0:
        x += kn.conformity_like * pop_score
    if j < 4:
        x += kn.familiarity_click * fam
    return x


@njit(cache=True, inline="always")
def log_signals(
    kn: np.void, sat: np.float32, fam: np.float32, pop_score: np.float32, uniforms: np.ndarray,
    watch_normal: np.float32, signals: np.ndarray, b: int,
) -> np.float32:
    """Draw the logged signals of one impression into ``signals[:, b]`` ((8, B) float32) from
    ``uniforms`` (6,) and one standard normal; return the observed reward."""
    log_sat = np.log(max(sat, MIN_SATISFACTION))
    for j in range(N_SIGNALS):
        signals[j, b] = 0.0
    if uniforms[0] >= sigmoid(click_logit(kn, log_sat, pop_score, fam)):
        return np.float32(0.0)
    return log_clicked(kn, sat, log_sat, fam, pop_score, uniforms, watch_normal, signals, b)


@njit(cache=True, inline="always")
def log_clicked(
    kn: np.void, sat: np.float32, log_sat: np.float32, fam: np.float32, pop_score: np.float32, uniforms: np.ndarray,
    watch_normal: np.float32, signals: np.ndarray, b: int,
) -> np.float32:
    """Draw the signals of a clicked impression into ``signals[:, b]`` (all 8: the click, watch ratio
    and long view from one standard normal, the post-click signals from ``uniforms[1:6]``); return the
    observed reward. A slate's click model decides its click; :func:`log_signals` a single item's."""
    noise = np.exp(kn.watch_noise * watch_normal - np.float32(0.5) * kn.watch_noise * kn.watch_noise)
    watch = min(sat * np.exp(kn.familiarity_watch * fam) * noise, kn.watch_max)
    signals[CLICK, b] = 1.0
    signals[WATCH_RATIO, b] = watch
    signals[LONG_VIEW, b] = watch >= kn.long_view_ratio
    for j in range(5):
        signals[3 + j, b] = uniforms[1 + j] < sigmoid(post_click_logit(kn, j, log_sat, pop_score, fam))
    reward = np.float32(0.0)
    for j in range(N_SIGNALS):
        reward += kn.reward_weights[j] * signals[j, b]
    return reward


@njit(cache=True, inline="always")
def normal_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


@njit(cache=True, inline="always")
def expected_observed_reward(kn: np.void, sat: np.float32, fam: np.float32, pop_score: np.float32) -> float:
    """E[observed reward] of one impression, exact (the watch-ratio cap and the long view included):
    with log W ~ N(mu, s^2), mu = log(m) - s^2 / 2, m = sat * exp(familiarity_watch * f),
    E[min(W, c)] = m Phi((log c - mu - s^2) / s) + c (1 - Phi((log c - mu) / s)) and
    P(W >= r) = 1 - Phi((log r - mu) / s) (s = 0: the deterministic values)."""
    log_sat = np.log(max(sat, MIN_SATISFACTION))
    mean = float(sat) * math.exp(float(kn.familiarity_watch * fam))
    cap, ratio, spread = float(kn.watch_max), float(kn.long_view_ratio), float(kn.watch_noise)
    if spread > 0:
        mu = math.log(max(mean, 1e-30)) - 0.5 * spread * spread
        watch = mean * normal_cdf((math.log(cap) - mu - spread * spread) / spread) + cap * (
            1.0 - normal_cdf((math.log(cap) - mu) / spread))
        long_view = 1.0 - normal_cdf((math.log(max(ratio, 1e-30)) - mu) / spread) if ratio > 0 else 1.0
    else:
        watch = min(mean, cap)
        long_view = 1.0 if min(mean, cap) >= ratio else 0.0
    per_click = kn.reward_weights[CLICK] + kn.reward_weights[WATCH_RATIO] * watch + kn.reward_weights[LONG_VIEW] * long_view
    for j in range(5):
        weight = kn.reward_weights[3 + j]
        if weight:
            per_click += weight * float(sigmoid(post_click_logit(kn, j, log_sat, pop_score, fam)))
    return float(sigmoid(click_logit(kn, log_sat, pop_score, fam))) * per_click


@njit(cache=True, inline="always")
def record_impression(
    s: tuple, b: int, signals: np.ndarray, log_popularity: np.float32, log_exposure: np.float32, position: int,
) -> None:
    """Append the impression's signals (``signals[:, b]``), the popularity and exposure the platform
    showed at that moment (log1p counts) and its slate ``position`` (0 for a single item) to session
    ``b``'s logged history (oldest first)."""
    length = s.recent_signals.shape[1]
    for j in range(length - 1):
        for m in range(N_SIGNALS):
            s.recent_signals[b, j, m] = s.recent_signals[b, j + 1, m]
        s.recent_popularity[b, j] = s.recent_popularity[b, j + 1]
        s.recent_exposure[b, j] = s.recent_exposure[b, j + 1]
        s.recent_position[b, j] = s.recent_position[b, j + 1]
    for m in range(N_SIGNALS):
        s.recent_signals[b, length - 1, m] = signals[m, b]
    s.recent_popularity[b, length - 1] = log_popularity
    s.recent_exposure[b, length - 1] = log_exposure
    s.recent_position[b, length - 1] = position


@njit(cache=True, _nrt=False)
def write_logged_history(
    recent_signals: np.ndarray, recent_popularity: np.ndarray, recent_exposure: np.ndarray,
    recent_position: np.ndarray, clock: np.ndarray, users: np.ndarray, signals: np.ndarray, popularity: np.ndarray,
    exposure: np.ndarray, position: np.ndarray, hour: np.ndarray, weekday: np.ndarray, user_id: np.ndarray,
) -> None:
    """Fill the v1 observation arrays of B sessions from their state (the ``Sessions`` fields of the
    same names): signals (B, k, 8), popularity and exposure (B, k) float32 and position (B, k) int64
    (the last k slots; position -1 for an empty slot), hour and weekday (B, 2) (sin, cos) of the
    session clock (copied from ``clock`` (B, 4), see ``recgym.dynamics.set_clock``), user_id (B, 1)."""
    n_sessions, k = popularity.shape
    start = recent_popularity.shape[1] - k
    for b in range(n_sessions):
        for j in range(k):
            for m in range(N_SIGNALS):
                signals[b, j, m] = recent_signals[b, start + j, m]
            popularity[b, j] = recent_popularity[b, start + j]
            exposure[b, j] = recent_exposure[b, start + j]
            position[b, j] = recent_position[b, start + j]
        hour[b, 0], hour[b, 1] = clock[b, 0], clock[b, 1]
        weekday[b, 0], weekday[b, 1] = clock[b, 2], clock[b, 3]
        user_id[b, 0] = users[b]
