"""Simulation parameters: one frozen, validated dataclass shared by every view of the simulator.

Every user mechanism is a field with a documented default; setting its weight to ``0`` switches it
off. :func:`SimParams.from_kwargs` is how the environments build it, so an unknown option or an
out-of-range value is reported as a one-line ``ValueError`` naming the field and its valid range.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

MODES = ("Free", "NX_0", "NX_10")
REWARD_SIGNALS = ("true", "observed")
#: v1 slates' click models (``docs/simulator.md``, "v1 slates").
CLICK_MODELS = ("position", "cascade")

#: The signals a v1 platform logs per impression, in KuaiRand's schema and this order (the columns of
#: ``signals`` in v1 observations and of ``info["signals"]``).
SIGNALS = ("click", "watch_ratio", "long_view", "like", "follow", "comment", "forward", "hate")

#: v1's default ``reward_weights``: the observed reward is click * sum_s w_s * signal_s.
DEFAULT_REWARD_WEIGHTS = {"watch_ratio": 1.0, "like": 1.0, "follow": 2.0, "comment": 1.0, "forward": 1.0, "hate": -3.0}

#: The post-click signals of the v1 logging model (``recgym.logging_model``) and their default logit
#: intercepts: ``P(signal | click) = sigmoid(intercept + slope log sat + pulls)`` (``post_click_intercepts``).
POST_CLICK_SIGNALS = SIGNALS[3:]
DEFAULT_POST_CLICK_INTERCEPTS = {"like": -4.5, "follow": -6.5, "comment": -6.0, "forward": -6.5, "hate": -7.5}

#: Defaults that differ on the v1 worlds (``recgym/*-v1``): agents learn from what the platform logs,
#: and v0's additive conformity / random feedback loss are replaced by the v1 logging model.
V1_DEFAULTS = {"reward_signal": "observed", "popularity_noise": 0.0, "exposure_bias": 0.0, "observation_noise": 0.0,
               "novelty_weight": 3.5}  # v1's hierarchical novelty (issue #17) at the strength its phenomena rows need

#: Episode shapes (``episode``): one session, or one user's lifetime of sessions (v1 worlds).
EPISODES = ("session", "lifetime")

#: Knobs of users over time (issue #17, :mod:`recgym.users`; v1 worlds only, a v0 world refuses non-default values).
USERS_KNOBS = ("episode", "session_memory", "lifetime_sessions", "lifetime_days", "interest_memory", "taste_weight",
               "taste_rate", "taste_valley", "taste_neighbourhoods", "session_rate", "retention_weight", "retention_reference")

#: Knobs of the v1 user model (``docs/design-v1.md``); a v0 world refuses non-default values.
V1_KNOBS = ("conformity", "conformity_like", "familiarity_click", "familiarity_watch", "click_base", "click_slope",
            "watch_noise", "watch_max", "long_view_ratio", "reward_weights", "post_click_intercepts", "click_model",
            "position_decay")
#: Novelty seeking and time on the v1 worlds (issue #17, ``docs/simulator.md`` "Novelty and time"): v1 knobs too.
NOVELTY_TIME_KNOBS = ("novelty_mode_shift", "novelty_switch", "daily_cycle", "weekly_cycle")
V1_KNOBS += NOVELTY_TIME_KNOBS


@dataclass(frozen=True)
class SimParams:
    """Knobs of the batched user simulator (see ``docs/simulator.md`` for the equations).

    Protocol
        max_turn: episode length cap; ``truncated`` is set when a session reaches it.
        mode: ``"Free"`` (repeats allowed), ``"NX_0"`` (an item already recommended in the session
            is masked; recommending it anyway earns 0 reward) or ``"NX_10"`` (no repeats, leave
            rules off, forced length 10), as in DORL.
        history_len: k, how many past (item, feedback) pairs the observation carries.
        slate_size: 1 gives a ``Discrete`` action; >1 a ``MultiDiscrete`` slate from which the user
            consumes one item (v0: softmax choice over utility + conformity; v1: at most one, clicked
            by ``click_model``, see "v1 slates" below).
        reward_signal: what ``step`` returns as reward: ``"true"`` (the user's real engagement, as
            the literature's tables report) or ``"observed"`` (the biased logged feedback).

    Leave rules (each ``0`` disables it)
        leave_window, leave_threshold: DORL's rule: quit when a category of the new item appears
            more than ``leave_threshold`` times among the last ``leave_window`` items. Step 0 never quits.
        popular_streak: the fairness papers' rule: quit after W consecutive items from the top
            ``popular_fraction`` of the catalogue (by prior popularity).
        patience: a budget drained by ``patience_threshold - reward`` whenever the true reward is
            below ``patience_threshold``; the user leaves when it is spent.

    User mechanisms (each weight ``0`` disables it)
        interest_drift: step size of the interest vector toward each consumed item, scaled by how
            much the user enjoyed it; interest_walk: per-step standard deviation of a slow random walk.
        time_of_day: amplitude of the periodic preference (items have a preferred hour);
            minutes_per_step advances the session clock.
        novelty_weight: how strongly the novelty propensity (static per user + session level)
            rewards items unlike the recent history; session_novelty_volatility: std of the
            session propensity's mean-reverting walk; boredom raises it.
        boredom, boredom_decay: category familiarity (decayed count) lowers appeal;
        creator_fatigue: repeats of a creator in the recent history lower appeal.
        reward_noise: std of Gaussian noise on the true reward.

    Observed feedback (what a real system logs)
        popularity_noise: conformity: popular items get extra observed engagement regardless of taste.
        exposure_bias: probability that feedback on the least popular item is lost (logged as 0);
            decreases linearly to 0 for the most popular item.
        observation_noise: std of Gaussian noise on the observed feedback.

    Shared catalogue state
        popularity_feedback: weight with which consumption adds to item popularity (the
            rich-get-richer loop; on v1 worlds each logged click adds it); ``0`` freezes popularity
            at the world's prior, decoupling users.

    Users over time (v1 worlds only; :mod:`recgym.users`, ``docs/simulator.md`` "Users over time";
    each control in brackets)
        episode: ``"session"`` (one session per episode; new sessions take users in order of their
            return times) or ``"lifetime"`` (one episode is one user's sessions up to the horizon).
        session_memory: session mode only: whether a returning user's long-term state (the interest
            written back by ``interest_memory``, acquired ``taste``, the consumed categories and creators
            the novelty model reads) carries over to their next session. ``False`` (default): every
            session starts from the user's initial long-term state, as :func:`recgym.users.restart_users`
            sets it (the platform's return order and clock keep running, ``session_count`` counts on), so
            a long training run's users do not age away from the fresh users an evaluation meets (issue
            #19, "the training world ages"); ``True``: users carry their state between sessions (what
            lifetime episodes and ``recgym/Population-v1`` always do; lifetime mode ignores the knob).
        lifetime_sessions, lifetime_days: the lifetime horizon: the episode is truncated when the
            user has had ``lifetime_sessions`` sessions or would next return after ``lifetime_days``
            days (``0``: no day limit).
        interest_memory: share of a session's interest drift kept for the next session (``0``: every
            session starts from the world's interest, as in v0).
        taste_weight, taste_valley: acquired tastes (the world's ``item_acquired``, most of the long tail): such
            an item's satisfaction is multiplied by ``1 + taste_weight * taste - taste_valley`` of its
            neighbourhood's taste (``taste_weight=0``: taste off, the control; ``taste_valley=0``: no valley,
            an acquired taste starts at par); taste_rate: each consumed acquired-taste item raises its
            neighbourhood's taste by ``taste_rate * enjoyment * (1 - taste)`` (``0``: off), taken into
            ``taste`` when the session ends (acquired between sessions: a session's own consumption does not
            change its satisfaction);
            taste_neighbourhoods: N, the catalogue's neighbourhoods (k-means clusters of the item
            embeddings, :func:`recgym.users.item_neighbourhoods`).
        session_rate: base sessions per day (times the user's activity level: KuaiRand's
            ``user_active_degree`` on KuaiRand-v1); retention_weight: how much the session's mean
            satisfaction raises the return rate ``exp(retention_weight * (mean - retention_reference))``
            (``0``: the return gap ignores satisfaction).

    v1 logging model (v1 worlds only; ``docs/design-v1.md`` 3.3; each pull's weight ``0`` is its control)
        conformity: popularity pull on the click logit (per unit popularity score);
            conformity_like: the like's own bandwagon pull.
        familiarity_click: familiarity pull on the click and post-click signal logits;
            familiarity_watch: log watch-ratio inflation on a familiar item (habit, not satisfaction).
        click_base, click_slope: click logit = click_base + click_slope * log(satisfaction) + pulls.
        watch_noise: std of the mean-one log-normal watch-ratio noise; watch_max: the watch ratio's
            (and the true reward's) cap; long_view_ratio: watch ratio at which a view is long.
        reward_weights: ``{signal: weight}`` over :data:`SIGNALS`; the observed reward is
            ``click * sum_s weight_s * signal_s`` (``None``: :data:`DEFAULT_REWARD_WEIGHTS`; a dict
            replaces them all, e.g. ``{"click": 1}`` is KuaiRand's is_click, ``{"watch_ratio": 1}`` KuaiRec's).
        post_click_intercepts: ``{signal: intercept}`` over :data:`POST_CLICK_SIGNALS`, each in [-100, 100]:
            the logit intercepts of like, follow, comment, forward and hate given a click (``None``:
            :data:`DEFAULT_POST_CLICK_INTERCEPTS`; a dict overrides the signals it names, e.g. a fitted
            world's, ``recgym fit``).

    v1 slates (``slate_size > 1`` on v1 worlds; the user clicks at most one item, which is what is consumed)
        click_model: ``"position"`` (position-based model: slot j is examined with probability
            ``(1 + j) ** -position_decay`` and the user picks among the examined items and a skip by
            their click logits, a multinomial logit) or ``"cascade"`` (every slot is examined top-down
            until the first click, each clicked with its single-item click probability).
        position_decay: eta of the position-based model's examination curve (``0``: every slot is
            examined, the control; the cascade does not read it).

    v1 novelty seeking and time (v1 worlds only; ``docs/simulator.md`` "Novelty and time")
        novelty_weight (v1 meaning; v1 default 3.5, :data:`V1_DEFAULTS`): strength of the hierarchical
            novelty term on items whose categories or creator the user never consumed (``0``: off, the control).
        novelty_mode_shift: how far the latent session mode moves the static propensity (explore
            ``+``, exploit ``-``; ``0``: no mode); novelty_switch: scale of the mode's per-step switch
            probabilities (exploit -> explore ``novelty_switch * rho``, explore -> exploit
            ``novelty_switch * (1 - rho)``; ``0``: the session keeps its first mode).
        daily_cycle, weekly_cycle: amplitudes of the user-specific daily and weekly preference cycles
            (per-user components, phases and amplitudes from the world; ``0``: off, the control).
    """

    max_turn: int = 30
    mode: str = "NX_0"
    history_len: int = 10
    slate_size: int = 1
    reward_signal: str = "true"

    leave_window: int = 4
    leave_threshold: int = 0
    popular_streak: int = 0
    popular_fraction: float = 0.2
    patience: float = 3.0
    patience_threshold: float = 0.3

    interest_drift: float = 0.05
    interest_walk: float = 0.01
    time_of_day: float = 0.3
    minutes_per_step: float = 2.0
    novelty_weight: float = 1.0
    session_novelty_volatility: float = 0.05
    boredom: float = 0.2
    boredom_decay: float = 0.8
    creator_fatigue: float = 0.5
    reward_noise: float = 0.05

    popularity_noise: float = 0.5
    exposure_bias: float = 0.5
    observation_noise: float = 0.05

    popularity_feedback: float = 1.0

    episode: str = "session"
    session_memory: bool = False
    lifetime_sessions: int = 20
    lifetime_days: float = 0.0
    interest_memory: float = 1.0
    taste_weight: float = 3.0
    taste_rate: float = 0.2
    taste_valley: float = 0.65
    taste_neighbourhoods: int = 64
    session_rate: float = 1.0
    retention_weight: float = 0.3
    retention_reference: float = 1.0

    conformity: float = 4.0
    conformity_like: float = 1.0
    familiarity_click: float = 1.0
    familiarity_watch: float = 0.7
    click_base: float = -2.5
    click_slope: float = 1.0
    watch_noise: float = 0.3
    watch_max: float = 5.0
    long_view_ratio: float = 1.0
    reward_weights: Any = None
    post_click_intercepts: Any = None
    click_model: str = "position"
    position_decay: float = 1.0
    novelty_mode_shift: float = 0.45
    novelty_switch: float = 0.1
    daily_cycle: float = 3.0
    weekly_cycle: float = 1.5

    def __post_init__(self) -> None:
        object.__setattr__(self, "reward_weights", _reward_weights(self.reward_weights))
        object.__setattr__(self, "post_click_intercepts", _post_click_intercepts(self.post_click_intercepts))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type == "int":
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ValueError(f"{f.name} must be an integer, got {value!r}")
            elif f.type == "float":
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ValueError(f"{f.name} must be a number, got {value!r}")
                if not math.isfinite(value):
                    raise ValueError(f"{f.name} must be finite, got {value!r}")
        _check_range("max_turn", self.max_turn, 1, 10_000)
        _check_choice("mode", self.mode, MODES)
        _check_range("history_len", self.history_len, 1, 1_000)
        _check_range("slate_size", self.slate_size, 1, 1_000)
        _check_choice("reward_signal", self.reward_signal, REWARD_SIGNALS)
        _check_range("leave_window", self.leave_window, 0, 1_000)
        _check_range("leave_threshold", self.leave_threshold, 0, 1_000)
        _check_range("popular_streak", self.popular_streak, 0, 1_000)
        _check_range("popular_fraction", self.popular_fraction, 0.0, 1.0)
        _check_range("boredom_decay", self.boredom_decay, 0.0, 1.0)
        _check_range("exposure_bias", self.exposure_bias, 0.0, 1.0)
        for name in (
            "patience", "patience_threshold", "interest_drift", "interest_walk", "time_of_day",
            "minutes_per_step", "novelty_weight", "session_novelty_volatility", "boredom",
            "creator_fatigue", "reward_noise", "popularity_noise", "observation_noise",
            "popularity_feedback",
        ):
            _check_range(name, getattr(self, name), 0.0, 1e6)
        if self.interest_drift > 1.0:
            raise ValueError(f"interest_drift must be in [0, 1], got {self.interest_drift!r}")
        for name in ("conformity", "conformity_like", "familiarity_click", "familiarity_watch", "click_slope",
                     "watch_noise"):
            _check_range(name, getattr(self, name), 0.0, 100.0)
        _check_range("click_base", self.click_base, -100.0, 100.0)
        _check_range("watch_max", self.watch_max, 1e-3, 1e3)
        _check_range("long_view_ratio", self.long_view_ratio, 0.0, 1e3)
        _check_choice("click_model", self.click_model, CLICK_MODELS)
        _check_range("position_decay", self.position_decay, 0.0, 10.0)
        _check_choice("episode", self.episode, EPISODES)
        if not isinstance(self.session_memory, bool):
            raise ValueError(f"session_memory must be True or False, got {self.session_memory!r}")
        _check_range("lifetime_sessions", self.lifetime_sessions, 1, 100_000)
        _check_range("lifetime_days", self.lifetime_days, 0.0, 1e6)
        _check_range("interest_memory", self.interest_memory, 0.0, 1.0)
        _check_range("taste_weight", self.taste_weight, 0.0, 100.0)
        _check_range("taste_rate", self.taste_rate, 0.0, 1.0)
        _check_range("taste_valley", self.taste_valley, 0.0, 0.95)
        _check_range("taste_neighbourhoods", self.taste_neighbourhoods, 1, 100_000)
        _check_range("session_rate", self.session_rate, 1e-3, 1e3)
        _check_range("retention_weight", self.retention_weight, 0.0, 100.0)
        _check_range("retention_reference", self.retention_reference, 0.0, 1e3)
        _check_range("novelty_mode_shift", self.novelty_mode_shift, 0.0, 1.0)
        _check_range("novelty_switch", self.novelty_switch, 0.0, 1.0)
        _check_range("daily_cycle", self.daily_cycle, 0.0, 100.0)
        _check_range("weekly_cycle", self.weekly_cycle, 0.0, 100.0)

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> SimParams:
        """Build params from keyword options, rejecting unknown names with the list of valid ones.

        The ``NX_10`` mode implies ``max_turn=10`` and no leave rules unless given explicitly.
        """
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(kwargs) - set(valid))
        if unknown:
            raise ValueError(f"unknown option(s) {unknown}; valid options: {', '.join(valid)}")
        if kwargs.get("mode") == "NX_10":
            for name, value in (("max_turn", 10), ("leave_window", 0), ("popular_streak", 0), ("patience", 0.0)):
                kwargs.setdefault(name, value)
        return cls(**kwargs)

    @property
    def no_repeat(self) -> bool:
        """True in the NX modes, where items already recommended in the session are masked."""
        return self.mode != "Free"


def _reward_weights(weights: Any) -> tuple[float, ...]:
    """``reward_weights`` as one float per :data:`SIGNALS` entry (a dict, ``None`` or such a tuple)."""
    if isinstance(weights, tuple) and len(weights) == len(SIGNALS):
        return weights
    if weights is None:
        weights = DEFAULT_REWARD_WEIGHTS
    if not isinstance(weights, dict):
        raise ValueError(f"reward_weights must be a dict {{signal: weight}} over {list(SIGNALS)}, got {weights!r}")
    unknown = sorted(set(weights) - set(SIGNALS))
    if unknown:
        raise ValueError(f"reward_weights: unknown signal(s) {unknown}; signals: {', '.join(SIGNALS)}")
    for name, value in weights.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not -1e3 <= value <= 1e3:
            raise ValueError(f"reward_weights[{name!r}] must be a number in [-1000, 1000], got {value!r}")
    return tuple(float(weights.get(name, 0.0)) for name in SIGNALS)


def _post_click_intercepts(intercepts: Any) -> tuple[float, ...]:
    """``post_click_intercepts`` as one float per :data:`POST_CLICK_SIGNALS` entry (a dict over some of
    them, the rest at :data:`DEFAULT_POST_CLICK_INTERCEPTS`; ``None``; or such a tuple)."""
    if isinstance(intercepts, tuple) and len(intercepts) == len(POST_CLICK_SIGNALS):
        return intercepts
    if intercepts is None:
        intercepts = {}
    if not isinstance(intercepts, dict):
        raise ValueError(f"post_click_intercepts must be a dict {{signal: intercept}} over {list(POST_CLICK_SIGNALS)}, "
                         f"got {intercepts!r}")
    unknown = sorted(set(intercepts) - set(POST_CLICK_SIGNALS))
    if unknown:
        raise ValueError(f"post_click_intercepts: unknown signal(s) {unknown}; signals: {', '.join(POST_CLICK_SIGNALS)}")
    for name, value in intercepts.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not -100 <= value <= 100:
            raise ValueError(f"post_click_intercepts[{name!r}] must be a number in [-100, 100], got {value!r}")
    return tuple(float(intercepts.get(name, DEFAULT_POST_CLICK_INTERCEPTS[name])) for name in POST_CLICK_SIGNALS)


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value!r}")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
