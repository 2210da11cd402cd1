"""Single-session Gymnasium view of the batched simulator (a batch of one)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
from gymnasium import spaces
import numpy as np
from gymnasium.error import ResetNeeded

from recgym.dynamics import LEAVE_REASONS
from recgym.envs.core import RegisteredSpec, build_simulator, has_reset_option, session_spaces
from recgym.params import SIGNALS, SimParams
from recgym.world import World


class RecSysEnv(RegisteredSpec, gym.Env):
    """## Description

    One user session with a KuaiRec-style simulated user. Each step the agent recommends an item
    (or a slate); the user consumes it, reacts, and may leave. Users have latent interests that
    drift toward what they consume, a time-of-day preference, a static and a session-level
    novelty-seeking propensity, boredom with repeated categories and creators, and a patience
    budget. The agent never sees the true engagement: the observation carries the OBSERVED
    feedback, inflated for popular items (conformity) and thinned by exposure bias. Item
    exposure and popularity are shared across all sessions of the simulator and feed back into
    the observed feedback (the rich-get-richer loop). Equations: ``docs/simulator.md``.

    Registered ids: ``recgym/KuaiRec-v0`` (1,411 users x 3,327 items, 31 categories),
    ``recgym/KuaiRand-v0`` (27,285 users x 7,583 real KuaiRand-Pure items with real creators and
    tags), ``recgym/Synthetic-v0`` (200 users x 500 items, configurable via ``world_options``).
    ``recgym/KuaiRec-v1``, ``recgym/KuaiRand-v1`` (the real KuaiRand-Pure users' static features),
    ``recgym/Synthetic-v1``: the same catalogues with the v1 user model (see Version History).
    ``recgym/Fitted-v1`` (``world_dir=WORLD_DIR``): a v1 world fitted to a log by ``recgym fit``, its
    fitted options as defaults (``docs/fit.md``); on the command line ``--env recgym/Fitted-v1
    --world-dir WORLD_DIR``.

    ## Action Space

    ``Discrete(n_items)``: the recommended item id. With ``slate_size=S > 1``:
    ``MultiDiscrete([n_items] * S)``, a slate of which the user consumes one item (softmax choice on
    utility plus conformity). A slate that repeats an id shows that item once: the user sees the
    slate's distinct items, and the item's exposure counts once. So every sample of the action space
    is a valid action. v1 ids: the user examines the slate by a click model (``click_model``:
    ``"position"``, slot j examined with probability ``(1 + j) ** -position_decay``, or ``"cascade"``)
    and clicks at most one item, which is consumed; a slate without a click consumes nothing
    (reward 0, ``info["item"]`` -1). Every shown item counts as exposure.

    In the NX modes ``info["action_mask"]`` marks, as int8 (1 = allowed), the items not yet
    recommended, in the form the action space's ``sample(mask=...)`` takes: an (n_items,) array, or a
    tuple of S such arrays for a slate; so ``env.action_space.sample(mask=info["action_mask"])``
    samples allowed items. :meth:`action_masks` (for sb3-contrib's MaskablePPO) gives the same as one
    int8 array, the per-slot masks concatenated for a slate. Recommending a masked item anyway earns
    0 reward.

    ## Observation Space

    ``Dict`` with the last ``k = history_len`` (default 10) consumed items, oldest first:

    | key          | space                              | meaning                               |
    |--------------|------------------------------------|---------------------------------------|
    | ``item_ids``   | ``Box(-1, n_items-1, (k,), int64)``  | item ids, ``-1`` for empty slots        |
    | ``embeddings`` | ``Box(-1, 1, (k, 32), float32)``     | their unit item embeddings (0 if empty) |
    | ``feedback``   | ``Box(0, reward_max, (k,), float32)``| observed (biased) feedback on them      |
    | ``step``       | ``Box(0, 1, (1,), float32)``         | session step / max_turn                 |

    v1 ids: ``feedback`` is the observed reward (range from ``reward_weights``), and the platform's
    logs are added: ``signals`` (k, 8) the logged click, watch_ratio, long_view, like, follow,
    comment, forward, hate of each impression; ``popularity`` / ``exposure`` (k,) log1p of the item's
    popularity and exposure count as shown at that impression; ``hour`` / ``weekday`` (2,) (sin, cos)
    of the session clock; ``user_id`` (1,); ``user_features`` (F,) the user's static features;
    ``position`` (k,) int64 the slate slot each item was clicked in (0 for single items, -1 empty).
    v1 slates add ``slate_clicks`` (S,) int8, the log of the last slate: 1 clicked, 0 an impression
    with click 0 (examined, not clicked), -1 not logged (unexamined or a repeated id: missing, not negative).

    ## Rewards

    v1 ids: ``reward_signal="observed"`` (default) returns ``click * sum_s w_s * signal_s`` of the
    logged signals (``reward_weights``); ``"true"`` returns the satisfaction's draw (oracle studies);
    ``info`` carries both and ``info["signals"]`` (the logged signals by name).

    v0 ids: ``reward_signal="true"`` (default): the user's true engagement, watch-ratio-like, in
    ``[0, reward_max]`` (2 for the latent worlds, 5 for the real KuaiRec matrix), as the field's
    tables report. ``"observed"``: the biased logged feedback. ``info`` always carries both
    (``true_reward``, ``observed_feedback``).

    ## Episode End

    ``terminated`` when the user leaves (``info["leave_reason"]``): DORL's category-window rule
    (``leave_window=4``, ``leave_threshold=0``; step 0 never quits), the popular-streak rule
    (``popular_streak=W``, off by default) or patience (``patience=3``). The leaving step's reward
    counts, as in DORL. ``truncated`` at ``max_turn`` (default 30), which ``gym.make`` reports as
    ``env.spec.max_episode_steps`` (the ids register no ``TimeLimit``: ``gym.make(id, max_turn=50)``
    runs 50 steps). Stepping before ``reset`` or after the episode ended raises
    ``gymnasium.error.ResetNeeded``.

    **Lifetime episodes** (v1 ids, ``episode="lifetime"``): one episode is one user's sequence of
    sessions. When a session ends (a leave rule or ``max_turn``) the episode goes on: the user returns
    after a gap (days, :mod:`recgym.users`: shorter after satisfying sessions) to a new session in the
    same episode, and the observation adds ``session_index`` (1,) int64 (0, 1, ...) and ``return_gap``
    (1,) float32 (days before this session; 0 for the first). No reward accrues between sessions (the
    step that ends a session returns its last item's reward and the next session's first observation;
    ``info["session_ended"]`` marks it). The episode is ``truncated`` at the horizon:
    ``lifetime_sessions`` sessions (default 20) or a return after ``lifetime_days`` days (``0``: no day
    limit); it never terminates. ``reset()`` starts a new lifetime (the user's taste, history and
    interest back to the world's). ``env.spec.max_episode_steps`` is the lifetime's step bound
    ``lifetime_sessions * max_turn`` (every session at its cap; ``lifetime_days`` only ends it sooner).
    In session mode (default) a new session takes the user who returns first on the platform clock,
    so satisfied users come back more often; they keep their drifted interest and acquired taste.

    ## Arguments

    ``gym.make("recgym/KuaiRec-v0", mode="NX_0", max_turn=30, ...)``: every
    :class:`recgym.params.SimParams` field is an option (unknown names are a ``ValueError``
    listing the valid ones). Also ``world`` (name or :class:`recgym.world.World`),
    ``world_options`` (e.g. ``{"n_items": 100}`` for Synthetic), ``data_dir`` (real KuaiRec
    ``small_matrix.csv``: DORL's matrix-backed protocol) and ``render_mode="ansi"``. Each id names its
    world: ``gym.make("recgym/KuaiRec-v0", world="synthetic")`` is refused (use the Synthetic id).

    ``reset(seed=s)`` re-seeds and also clears the shared catalogue counts; ``reset()`` without a
    seed keeps them, so popularity keeps accumulating across episodes.
    ``reset(options={"user_id": u})`` starts a session for a chosen user.

    ## Version History

    * v0: initial release. 2026-11-23: the dynamics moved into compiled kernels (same formulas and
      spaces; the step's random numbers are drawn in a different layout and sums are added in a
      different order, so a seed's trajectories differ from earlier commits).
      2026-11-24, API conventions, same dynamics (a seed's trajectories are unchanged): action masks
      are int8; a slate may repeat an id (shown once; it was an error); stepping before ``reset`` or
      after the episode ended raises ``ResetNeeded``; ``env.spec.max_episode_steps`` is ``max_turn``;
      ``world=`` differing from the id's world is refused. Vector env: the default autoreset is
      ``NEXT_STEP`` (was ``SAME_STEP``), same-step mode adds ``final_info``, ``reset`` takes a seed list
      and ``reset_mask``, ``AutoresetMode.DISABLED`` exists. SB3 adapter: Monitor-style
      ``info["episode"]`` and per-env step infos.
    * v1 (2026-12-01, issue #16, ``docs/design-v1.md``): new ids over the same catalogues; v0 ids
      unchanged. Items have a latent quality (satisfaction x ``exp(b q - b^2/2)``) and popularity
      re-ordered by content, quality, age and noise (same heavy tail); the affinity intercept is -2
      (v0: -1); users follow creators. The platform logs KuaiRand's signals (click with conformity and
      familiarity pulls, watch ratio inflated by familiarity, long view, like, follow, comment,
      forward, hate), and the default reward is the observed reward of those logs (v0: the true
      reward); v0's additive ``popularity_noise`` / ``exposure_bias`` are off; popularity counts
      logged clicks; the observation adds the logged signals, popularity, exposure, clock, user id
      and features. 2026-12-01, v1 slates: ``slate_size > 1`` is accepted (it was refused): a click
      model (``click_model`` ``"position"`` with ``position_decay``, or ``"cascade"``) decides what is
      examined and the one click; unexamined items are missing from the log, examined unclicked ones are
      impressions with click 0 (``slate_clicks``); observations add ``position`` (0 for single items,
      whose trajectories are unchanged).
    * v1, 2026-12-01, issue #17 (users over time, :mod:`recgym.users`): users persist across sessions
      (drifted interest kept, ``interest_memory``; acquired taste per category enters the utility,
      ``taste_weight`` / ``taste_rate``, per neighbourhood since, see below; long-term consumed categories and creators); a session's end
      draws the return gap from a satisfaction-dependent rate (``session_rate`` x activity,
      ``retention_weight``), and new sessions take users in order of return (they were uniform draws):
      a seed's v1 trajectories differ from earlier commits. ``episode="lifetime"`` (see above).
    * v1, 2026-12-01, issue #17 (novelty seeking and time, ``docs/simulator.md`` "Novelty and time"):
      v0's recent-history novelty term is replaced on v1 by a hierarchical one: a static propensity
      per user, a latent explore / exploit session mode (a two-state Markov chain,
      ``novelty_mode_shift``, ``novelty_switch``) and novelty against the user's LONG-TERM history
      (categories and creators never consumed), ``novelty_weight`` 3.5 on v1; each user has daily and
      weekly preference cycles (``daily_cycle``, ``weekly_cycle``; world table ``user_cycles``), so the
      best item depends on the mode and on the observed clock. A seed's v1 trajectories differ from
      earlier commits (one more session-start draw, new terms).
    * ``recgym/Fitted-v1``, 2026-12-01, issue #20 second pass (``docs/fit.md``): a world fitted from
      now on carries its users' return model (``session_rate``, ``retention_weight`` and each user's
      activity in ``user_features[:, 0]``; earlier world dirs run SimParams' defaults and their
      feature-derived activity); ``recgym eval/train/compare --env recgym/Fitted-v1 --world-dir DIR``.
    * v1, 2026-12-01: in lifetime mode ``env.spec.max_episode_steps`` is ``lifetime_sessions * max_turn``
      (it was ``max_turn``, a session's cap, below the episode's length); dynamics unchanged.
    * v1, 2026-12-01, issue #17 (acquired taste of the long tail, ``docs/simulator.md`` "Users over
      time"): taste is per catalogue neighbourhood (``taste_neighbourhoods`` k-means clusters of the item
      embeddings, 64), not per category; it multiplies a long-tail item's satisfaction by
      ``1 + taste_weight * taste`` (it was a term of the utility's logit), grows only with consumed
      long-tail items and acts from the user's next session; ``taste_weight`` 3, ``taste_rate`` 0.2 (were
      1, 0.05). A seed's v1 trajectories differ from earlier commits (the old taste acted within the
      session too).
    * v1, 2026-12-01, issue #17 (acquired tastes start below par, ``docs/simulator.md`` "Users over
      time"): the world says which items are acquired tastes (``item_acquired``: world options
      ``acquired_share`` 0.8 of the items, unlike the mainstream plus chance), and they are unpopular
      (``acquired_gap`` 3 in the popularity order: the long tail is 95% acquired tastes); their satisfaction
      is multiplied by ``1 + taste_weight * taste - taste_valley`` (``taste_valley`` 0.65: 0.35 of par
      before any taste). The v1 worlds' popularity order and every v1 trajectory differ from earlier
      commits; v1 has no published results yet.
    * v1, 2026-12-02, issue #19 ("the training world ages"): in session mode every session starts from the
      user's initial long-term state (the world's interest, no taste, no consumed categories or creators;
      the platform clock and return order keep running), knob ``session_memory`` (default ``False``;
      ``True`` is the earlier behaviour, users carry their state between sessions; ``recgym/Population-v1``
      defaults it to ``True``; lifetime episodes ignore it). A seed's v1 session-mode trajectories differ
      from earlier commits from the first returning user's session on; lifetime trajectories are unchanged.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self,
        world: str | World = "kuairec",
        data_dir: str | Path | None = None,
        world_options: dict[str, Any] | None = None,
        render_mode: str | None = None,
        **options: Any,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self.sim = build_simulator(1, world, data_dir, world_options, **options)
        self.world, self.params = self.sim.world, self.sim.params
        self.observation_space, self.action_space = episode_spaces(self.world, self.params)
        self.render_mode = render_mode
        self._last_info: dict[str, Any] = {}
        self._ended = True  # no session until reset

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        user = _user_option(options, self.world.n_users)
        users = None if user is None else np.array([user])
        if seed is not None:
            self.sim.reset(seed, users)
        else:
            self.sim.reset_sessions(np.zeros(1, np.int64), users)
        self._last_info = {"user_id": int(self.sim.user[0])}
        self._ended = False
        return self._obs(), self._info()

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        if self._ended:
            raise ResetNeeded("the episode ended (terminated or truncated): call reset() before step()"
                              if self._last_info else "call reset() before step()")
        result = self.sim.step(_as_batch_action(action, self.params.slate_size))
        terminated, truncated = bool(result.terminated[0]), bool(result.truncated[0])
        self._ended = terminated or truncated
        self._last_info = {
            "user_id": int(self.sim.user[0]),
            "item": int(result.consumed[0]),
            "true_reward": float(result.true_reward[0]),
            "observed_feedback": float(result.observed_feedback[0]),
            "repeated": bool(result.repeated[0]),
            "leave_reason": LEAVE_REASONS[result.leave_reason[0]],
        }
        if self.world.is_v1:
            self._last_info["signals"] = dict(zip(SIGNALS, result.signals[:, 0].tolist()))
        if self.params.episode == "lifetime":
            self._last_info["session_ended"] = bool(result.session_ended[0])
        return self._obs(), float(result.reward[0]), terminated, truncated, self._info()

    def action_masks(self) -> np.ndarray:
        """int8, 1 for items that may still be recommended this session: (n_items,), or for a slate the
        S per-slot masks concatenated, (S * n_items,) (sb3-contrib's MultiDiscrete mask)."""
        mask = self.sim.action_mask()[0].view(np.int8)
        return mask if self.params.slate_size == 1 else np.tile(mask, self.params.slate_size)

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        return " ".join(f"{key}={value}" for key, value in self._last_info.items())

    def _obs(self) -> dict[str, np.ndarray]:
        return {key: value[0] for key, value in self.sim.observe().items()}

    def _info(self) -> dict[str, Any]:
        info = dict(self._last_info)
        if self.params.no_repeat:
            mask = self.sim.action_mask()[0].view(np.int8)
            info["action_mask"] = mask if self.params.slate_size == 1 else (mask,) * self.params.slate_size
        return info


def _as_batch_action(action: Any, slate_size: int) -> np.ndarray:
    """One session's action as a batch of one, rejecting floats, bools and wrong shapes."""
    array = np.asarray(action)
    expected = () if slate_size == 1 else (slate_size,)
    if array.shape != expected:
        raise ValueError(f"action must have shape {expected} (an item id{'s' if expected else ''}), got {array.shape}")
    if array.dtype.kind not in "iu":  # integer kinds only (bool is kind "b")
        raise ValueError(f"action must be an integer item id, got {action!r} of type {type(action).__name__}")
    return array[None]


def _user_option(options: dict[str, Any] | None, n_users: int) -> int | None:
    if not has_reset_option(options, "user_id"):
        return None
    user = options["user_id"]
    if isinstance(user, bool) or not isinstance(user, (int, np.integer)) or not 0 <= user < n_users:
        raise ValueError(f"reset option user_id must be an integer in [0, {n_users - 1}], got {user!r}")
    return int(user)


def episode_spaces(world: World, params: SimParams) -> tuple[spaces.Dict, spaces.Space]:
    """Observation and action space of one episode: :func:`recgym.envs.core.session_spaces`, plus in
    lifetime mode ``session_index`` (1,) int64 in [0, lifetime_sessions - 1] and ``return_gap`` (1,)
    float32 days in [0, inf)."""
    observation, action = session_spaces(world, params)
    if params.episode == "lifetime":
        observation = spaces.Dict({
            **observation.spaces,
            "session_index": spaces.Box(0, params.lifetime_sessions - 1, shape=(1,), dtype=np.int64),
            "return_gap": spaces.Box(0.0, np.inf, shape=(1,), dtype=np.float32),
        })
    return observation, action
