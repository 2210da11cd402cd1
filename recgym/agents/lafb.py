"""LAFB: a learned familiarity debiaser, as a post-ranker over a base recommender's top N.

The hand-set :class:`~recgym.agents.baselines.FamiliarityDebiaser` ranks a base policy's ``candidates``
best items by ``rank - weight * familiarity`` with one weight for everyone. LAFB learns the weights,
per user, from what the platform logs: on v1 worlds the logged reward of a familiar item is inflated
(habit, not satisfaction: ``familiarity_click`` / ``familiarity_watch``), so a ranker fitted to the log
over-serves familiar creators and categories. Per served impression LAFB regresses the logged reward
on the base's rank of the item and its familiarity features:

    f(b, i)  = [creator familiarity, category familiarity]      (2,) from the observation:
               creator followed by the user or among the history's creators (0/1); the share of the
               item's categories among the last ``window`` history items
    r_log    = a + beta * rank_i + (w + w_u) . f(b, i)           shared (a, beta, w), per-user w_u
    score_i  = rank_i - s * lambda_u . f(b, i),   lambda_u = clip((w + w_u) / beta, 0, max_factor)

``lambda_u`` is the user's personalised debiasing factor: the logged reward that familiarity adds
beyond what the base's ranking explains, in units of the base's rank (``rank`` in [0, 1] among the
candidates, so the base's score scale does not matter). The shared coefficients and each user's are
two ridge regressions fitted by backfitting (:class:`~recgym.agents.ridge.GroupRidge`); before the
rank coefficient ``beta`` is positive the factors are 0 (the base's order). ``s`` (``strength``, default 1)
scales the learned factors, as the hand-set ranker's ``weight`` sets its one factor: ``s = 0`` serves the
base's order, larger ``s`` trades the base's ranking for less familiar items (the equal-watch-time sweep of
``familiarity_v1``). Learned online from the
log as it accumulates (the observed reward the env returns on v1 ids), batched over the sessions.

:func:`familiarity_rollout` measures what the comparison asks: total watch time, the share of it on
items whose creator was unfamiliar when recommended (novel watch-time share), and the
emerging-creator share of exposure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from recgym import metrics
from recgym.agents.baselines import FamiliarityDebiaser, Obs, Policy
from recgym.agents.ridge import GroupRidge
from recgym.sizes import check_count, check_number

#: Familiarity features, in order.
FEATURES = ("creator", "category")


@dataclass(frozen=True)
class LAFBParams:
    """LAFB's knobs (a bad one is a one-line ValueError naming it and its range).

    candidates: the base's top N re-ranked, >= 1. window: history items the category familiarity
    looks at, >= 1. ridge / user_ridge: prior precision of the shared and per-user coefficients, > 0.
    max_factor: largest debiasing factor (rank units per unit of familiarity), > 0. strength: multiplier of
    the learned factors when ranking, >= 0 (0: the base's order; they are learned alike whatever it is).
    """

    candidates: int = 50
    window: int = 10
    ridge: float = 1.0
    user_ridge: float = 8.0
    max_factor: float = 4.0
    strength: float = 1.0

    def __post_init__(self) -> None:
        for name in ("candidates", "window"):
            check_count(name, getattr(self, name))
        for name in ("ridge", "user_ridge", "max_factor", "strength"):
            check_number(name, getattr(self, name), strict=name != "strength")


class LAFB(FamiliarityDebiaser):
    """Learned familiarity debiaser (module docstring). Shapes, B sessions, K = ``candidates``, U users:
    ``shared`` one ridge over ``[1, rank, f]`` (4,); ``users`` U ridges over ``f`` (2,)."""

    def __init__(self, base: Policy, candidates: int = 50, window: int = 10, ridge: float = 1.0,
                 user_ridge: float = 8.0, max_factor: float = 4.0, strength: float = 1.0) -> None:
        self.params = LAFBParams(candidates, window, ridge, user_ridge, max_factor, strength)
        super().__init__(base, weight=0.0, candidates=candidates, window=window)

    def bind(self, env: Any, seed: int | None = None) -> None:
        if not env.world.is_v1:
            raise ValueError(f"lafb needs a v1 world (followed creators, logged familiarity bias); "
                             f"{env.world.name!r} is v0")
        super().bind(env, seed)
        self.shared = GroupRidge(1, 2 + len(FEATURES), self.params.ridge)
        self.users = GroupRidge(self.world.n_users, len(FEATURES), self.params.user_ridge)
        self._served: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def features(self, obs: Obs, items: np.ndarray) -> np.ndarray:
        """(B, K, 2) familiarity of the (B, K) ``items``: creator (followed or in the history), category share."""
        known = metrics.known_creators(self.world, obs)
        creator = (self.world.item_creator[items][..., None] == known[:, None, :]).any(axis=-1)
        return np.stack([creator, self.familiarity(obs, items)], axis=-1).astype(np.float64)

    def factors(self, users: np.ndarray) -> np.ndarray:
        """(B, 2) the users' debiasing factors ``lambda_u`` (0 until the rank coefficient is positive)."""
        coef = self.shared.mean(np.zeros(1, np.int64))[0]
        beta = coef[1]
        if beta <= 1e-3:
            return np.zeros((users.size, len(FEATURES)))
        return np.clip((coef[2:] + self.users.mean(users)) / beta, 0.0, self.params.max_factor)

    def _rerank(self, obs: Obs, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(B, K) the base's top-K allowed items, their debiased score ``rank - s * lambda_u . f`` (-inf where
        fewer than K items are allowed), their rank in [0, 1] (1 = the base's best) and (B, K, 2) features."""
        base = np.where(mask, self.base.scores(obs, mask), -np.inf)
        k = min(self.params.candidates, mask.shape[1])
        top = np.argpartition(-base, k - 1, axis=1)[:, :k]
        chosen = np.take_along_axis(base, top, axis=1)
        rank = chosen.argsort(axis=1).argsort(axis=1) / max(k - 1, 1)
        feats = self.features(obs, top)
        debiased = rank - self.params.strength * np.einsum("bkf,bf->bk", feats, self.factors(obs["user_id"][:, 0]))
        return top, np.where(np.isfinite(chosen), debiased, -np.inf), rank, feats

    def act(self, obs: Obs, mask: np.ndarray) -> np.ndarray:
        """(B,) the best candidate by ``rank - s * lambda_u . f``; remembers the served items' rank and
        familiarity for :meth:`update`."""
        top, debiased, rank, feats = self._rerank(obs, mask)
        pick = debiased.argmax(axis=1)
        rows = np.arange(top.shape[0])
        actions = top[rows, pick]
        self._served = (actions, rank[rows, pick], feats[rows, pick])
        return actions

    def scores(self, obs: Obs, mask: np.ndarray) -> np.ndarray:
        top, debiased, _, _ = self._rerank(obs, mask)
        out = np.full(mask.shape, -np.inf)
        np.put_along_axis(out, top, debiased, axis=1)
        return out

    def update(self, obs: Obs, actions: np.ndarray, rewards: np.ndarray) -> None:
        """Backfitting step on the served impressions (the shared model on what the users' terms leave,
        each user's on what the shared model leaves), then the base's own update."""
        if self._served is None or not np.array_equal(self._served[0], actions):
            raise ValueError("lafb.update needs the actions of its last act() call (it learns from the items it served)")
        _, rank, feats = self._served
        users = obs["user_id"][:, 0]
        rewards = np.asarray(rewards, np.float64)
        shared_x = np.column_stack([np.ones_like(rank), rank, feats])
        groups = np.zeros(users.size, np.int64)
        user_target = rewards - shared_x @ self.shared.mean(groups[:1])[0]
        self.shared.add(groups, shared_x, rewards - np.einsum("bf,bf->b", feats, self.users.mean(users)))
        self.users.add(users, feats, user_target)
        self._served = None
        self.base.update(obs, actions, rewards)


def familiarity_rollout(policy: Policy, env: str, episodes: int = 200, seed: int = 0, num_envs: int = 64,
                        **options: Any) -> dict[str, float]:
    """Run ``policy`` (learning online) for ``episodes`` episodes on the v1 id ``env`` and return what the
    familiarity comparison reads from :func:`recgym.evaluate`'s one rollout (``familiarity=True``):

    watch_time: mean logged play time per episode (watch ratio x item duration, seconds);
    novel_watch_share: share of that play time on items whose creator was unfamiliar (not followed,
        not in the observed history) when recommended;
    emerging_creator_share: share of recommendations to the youngest 20% of creators
        (:func:`recgym.metrics.emerging_creators`); R_cum: mean TRUE return per episode.
    """
    from recgym.evaluation import FAMILIARITY_METRICS, evaluate

    result = evaluate(policy, env, episodes, seed=seed, num_envs=num_envs, familiarity=True, **options)
    return {key: result.summary[key] for key in (*FAMILIARITY_METRICS, "emerging_creator_share", "R_cum")}
