"""v1 worlds (issue #16, ``docs/design-v1.md`` section 3.1): a v0 world plus latent item quality,
popularity that follows content, quality and age plus noise, creator debuts, followed creators and
static user features.

``build_world_v1(base, options, seed)`` keeps the base world's embeddings, categories, creators,
ages and users, and adds (the v0 builders are untouched, so v0 stays bit-identical):

    q_i   ~ N(0, 1)                                        latent quality (hidden)
    t_i   = 1 for the top acquired_share by -zscore(<m_u, e_i>) + N(0, 1)   an acquired taste (item_acquired)
    c_i   = zscore(<m, e_i>)                               fit to the content axis m
    a_i   = zscore(log1p(age_i))
    z_i   = w_q (q_i - acquired_gap t_i) + w_c c_i + w_a a_i + w_n n_i,  n_i ~ N(0, 1)
    pop_i = the base world's Zipf values, re-ordered by z  (same heavy tail, same Gini)

    user_cycles: per user, ``cycle_components`` K interest components d_k (the mean direction of a
    category's items, categories drawn uniformly) with daily and weekly amplitudes ~ U(0.5, 1.5) and
    phases ~ U(0, 24) hours / U(0, 7) days, stored as four interest shifts (see :func:`user_cycles`)

Popularity follows what the population gets from an item: its quality, and for an acquired taste the
valley (below par until a user acquires it, :func:`recgym.users.acquired_appeal`): acquired tastes are
unpopular because few have acquired them. ``popularity_quality=0`` removes both from the order, so the
long tail is then independent of quality and of the acquired tastes (the long-tail row's control: the
"trend" content axis is uncorrelated with the mainstream one).

The content axis ``"trend"`` is a random direction whose image under the catalogue covariance is
orthogonal to the catalogue mean and the mean user interest; ``"mainstream"`` is the mean user
interest. Each user follows ``followed_creators`` creators: those of items drawn uniformly from the
user's ``followed_pool`` best items by base affinity.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from recgym.loaders import read_kuairand_users
from recgym.world import World, kuairand_item_durations, kuairand_world, kuairec_world, synthetic_world

CONTENT_AXES = ("trend", "mainstream")

#: Users per block when ranking every item for every user (bounds the (block, I) float32 table).
AFFINITY_BLOCK = 2048


@dataclass(frozen=True)
class WorldOptions:
    """World knobs of the v1 user model (each weight 0 switches its mechanism off).

    quality_weight: b, satisfaction multiplier ``exp(b q - b^2 / 2)``; 0: quality has no effect.
    popularity_quality, popularity_content, popularity_age, popularity_noise: weights of quality (the
        population's appeal: q minus ``acquired_gap`` for an acquired taste), content fit, log age and noise
        in the popularity order; ``popularity_quality=0`` makes popularity independent of quality and of
        the acquired tastes (the long-tail control).
    acquired_share: the share of items that are acquired tastes (:func:`draw_acquired_tastes`: content
        unlike the mainstream, and chance; 0: none); acquired_gap: how far an acquired taste's unacquired
        appeal lowers it in the popularity order, in quality standard deviations (3: ~95% of the acquired
        tastes lie in the bottom 80%).
    content_axis: ``"trend"`` or ``"mainstream"`` (see the module docstring).
    affinity_bias: the base logit's intercept (v0: -1; v1 -2 keeps users' top items apart).
    followed_creators: K creators followed per user (0: none); followed_pool: drawn from the
        creators of the user's top ``followed_pool`` items by base affinity.
    cycle_components: K interest components per user whose weights follow the user's daily and weekly
        cycles (their strengths are the SimParams ``daily_cycle`` / ``weekly_cycle``).
    """

    quality_weight: float = 0.25
    popularity_quality: float = 1.0
    popularity_content: float = 0.6
    popularity_age: float = 0.2
    popularity_noise: float = 0.4
    content_axis: str = "trend"
    affinity_bias: float = -2.0
    followed_creators: int = 8
    followed_pool: int = 300
    cycle_components: int = 2
    acquired_share: float = 0.8
    acquired_gap: float = 3.0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type == "int" and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError(f"world option {f.name} must be an integer, got {value!r}")
            if f.type == "float" and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value)):
                raise ValueError(f"world option {f.name} must be a finite number, got {value!r}")
        for name in ("quality_weight", "popularity_quality", "popularity_content", "popularity_age", "popularity_noise",
                     "acquired_gap"):
            if not 0 <= getattr(self, name) <= 100:
                raise ValueError(f"world option {name} must be in [0, 100], got {getattr(self, name)!r}")
        if self.content_axis not in CONTENT_AXES:
            raise ValueError(f"world option content_axis must be one of {list(CONTENT_AXES)}, got {self.content_axis!r}")
        if not -100 <= self.affinity_bias <= 100:
            raise ValueError(f"world option affinity_bias must be in [-100, 100], got {self.affinity_bias!r}")
        if not 0 <= self.followed_creators <= 1_000:
            raise ValueError(f"world option followed_creators must be in [0, 1000], got {self.followed_creators!r}")
        if not 1 <= self.followed_pool <= 1_000_000:
            raise ValueError(f"world option followed_pool must be in [1, 1000000], got {self.followed_pool!r}")
        if not 0 <= self.acquired_share <= 1:
            raise ValueError(f"world option acquired_share must be in [0, 1], got {self.acquired_share!r}")
        if not 1 <= self.cycle_components <= 16:
            raise ValueError(f"world option cycle_components must be in [1, 16], got {self.cycle_components!r}")

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> WorldOptions:
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(kwargs) - set(valid))
        if unknown:
            raise ValueError(f"unknown world option(s) {unknown}; valid v1 world options: {', '.join(valid)}")
        return cls(**kwargs)


def _zscore(x: np.ndarray) -> np.ndarray:
    std = x.std()
    return (x - x.mean()) / std if std > 0 else np.zeros_like(x)


def content_axis(world: World, axis: str, rng: np.random.Generator) -> np.ndarray:
    """(D,) unit direction m of popular content (see the module docstring)."""
    emb = world.item_emb.astype(np.float64)
    mean_user = world.user_interest.astype(np.float64).mean(axis=0)
    if axis == "mainstream":
        return mean_user / np.linalg.norm(mean_user)
    direction = rng.standard_normal(emb.shape[1])
    centred = emb - emb.mean(axis=0)
    cov = centred.T @ centred / len(emb)
    basis = np.linalg.qr(np.column_stack([cov @ emb.mean(axis=0), cov @ mean_user]))[0]
    direction -= basis @ (basis.T @ direction)
    return direction / np.linalg.norm(direction)


def followed_creators(world: World, k: int, pool: int, rng: np.random.Generator) -> np.ndarray:
    """(U, k) int32: per user the creators of k items drawn uniformly from the user's ``pool`` best
    items by base affinity <u, e> (blocks of users, so the (U, I) table is never whole)."""
    n_users, n_items = world.n_users, world.n_items
    pool = min(pool, n_items)
    picks = rng.integers(0, pool, size=(n_users, k))
    out = np.empty((n_users, k), np.int32)
    emb_t = np.ascontiguousarray(world.item_emb.T)
    for start in range(0, n_users, AFFINITY_BLOCK):
        rows = slice(start, min(start + AFFINITY_BLOCK, n_users))
        affinity = world.user_interest[rows] @ emb_t
        top = np.argpartition(-affinity, pool - 1, axis=1)[:, :pool] if pool < n_items else np.argsort(-affinity, axis=1)
        top.sort(axis=1)  # argpartition's order within the pool is an implementation detail
        chosen = np.take_along_axis(top, picks[rows], axis=1)
        out[rows] = world.item_creator[chosen]
    return out


def user_cycles(world: World, components: int, rng: np.random.Generator) -> np.ndarray:
    """(U, 4, D) float32 each user's daily and weekly preference cycles as four interest shifts.

    User u has ``components`` K interest components d_k (unit mean embedding of the items of a
    category drawn uniformly among the non-empty ones), daily amplitude A_k and phase phi_k (hours),
    weekly amplitude W_k and phase psi_k (days). At daily angle a = 2 pi h / 24 and weekly angle
    w = 2 pi (weekday + h / 24) / 7 the shift is

        sum_k [A_k cos(a - 2 pi phi_k / 24) + W_k cos(w - 2 pi psi_k / 7)] d_k
        = cos a X + sin a Y + cos w Z + sin w W,

    rows (X, Y, Z, W) of the table: X = sum_k A_k cos(2 pi phi_k / 24) d_k, Y the sines, Z and W weekly.
    """
    emb, cats = world.item_emb.astype(np.float64), world.item_cats
    counts = cats.sum(axis=0)
    centres = cats.T.astype(np.float64) @ emb
    nonempty = np.flatnonzero(counts)
    directions = centres[nonempty] / np.linalg.norm(centres[nonempty], axis=1, keepdims=True)
    n_users = world.n_users
    picks = rng.integers(0, nonempty.size, size=(n_users, components))
    daily_amp, weekly_amp = rng.uniform(0.5, 1.5, size=(2, n_users, components))
    daily_phase = 2 * np.pi * rng.uniform(0, 24, size=(n_users, components)) / 24
    weekly_phase = 2 * np.pi * rng.uniform(0, 7, size=(n_users, components)) / 7
    weights = np.stack([daily_amp * np.cos(daily_phase), daily_amp * np.sin(daily_phase),
                        weekly_amp * np.cos(weekly_phase), weekly_amp * np.sin(weekly_phase)], axis=1)  # (U, 4, K)
    return np.einsum("urk,ukd->urd", weights, directions[picks]).astype(np.float32)


def simulated_user_features(world: World, rng: np.random.Generator, dims: int = 8) -> np.ndarray:
    """(U, 1 + dims) float32 in [-1, 1]: an activity level and a noisy ``dims``-d projection of the
    base interest (what a platform knows of simulated users)."""
    activity = rng.beta(2.0, 2.0, size=world.n_users)
    projection = world.user_interest @ rng.standard_normal((world.embed_dim, dims)) / np.sqrt(world.embed_dim)
    noisy = np.tanh(projection + 0.5 * rng.standard_normal((world.n_users, dims)))
    return np.column_stack([activity, noisy]).astype(np.float32)


def draw_acquired_tastes(world: World, share: float, rng: np.random.Generator) -> np.ndarray:
    """(I,) bool the acquired tastes: the ``share`` of items with the highest unfamiliarity
    ``-zscore(<e_i, m>) + eps_i``, m the mean user interest (the mainstream), eps_i ~ N(0, 1): content
    unlike the mainstream, and item-level chance, weigh the same (content alone made the liked items'
    direction the popular one, so feedback leaned to popularity with every pull off)."""
    mainstream = _zscore(world.item_emb.astype(np.float64) @ content_axis(world, "mainstream", rng))
    unfamiliarity = -(mainstream + rng.standard_normal(world.n_items))
    acquired = np.zeros(world.n_items, bool)
    acquired[np.argsort(-unfamiliarity, kind="stable")[:round(share * world.n_items)]] = True
    return acquired


def build_world_v1(
    base: World, options: WorldOptions, seed: int, user_features: np.ndarray | None = None,
    item_duration: np.ndarray | None = None,
) -> World:
    """The v1 world over ``base`` (see the module docstring). ``user_features`` (U, F) and
    ``item_duration`` (I,) seconds default to simulated ones (NaN durations: the median)."""
    if base.reward_matrix is not None or base.is_v1:
        raise ValueError(f"build_world_v1 takes a latent v0 world, got {base.name!r}")
    rng = np.random.default_rng([seed, 16])
    n_items = base.n_items
    quality = rng.standard_normal(n_items)
    noise = rng.standard_normal(n_items)
    content = _zscore(base.item_emb.astype(np.float64) @ content_axis(base, options.content_axis, rng))
    age = _zscore(np.log1p(base.item_age.astype(np.float64)))
    acquired = draw_acquired_tastes(base, options.acquired_share, np.random.default_rng([seed, 18]))
    appeal = quality - options.acquired_gap * acquired  # what the population gets: few have acquired a taste
    score = (options.popularity_quality * appeal + options.popularity_content * content
             + options.popularity_age * age + options.popularity_noise * noise)
    pop = np.empty(n_items)
    pop[np.argsort(-score, kind="stable")] = np.sort(base.pop_prior)[::-1]
    debut = np.zeros(base.n_creators, np.float32)
    np.maximum.at(debut, base.item_creator, base.item_age)
    if item_duration is None:
        item_duration = rng.lognormal(np.log(60.0), 0.8, size=n_items)
    duration = np.asarray(item_duration, np.float64)
    duration = np.where(np.isnan(duration), np.nanmedian(duration), duration)
    if user_features is None:
        user_features = simulated_user_features(base, rng)
    return dataclasses.replace(
        base, name=f"{base.name}-v1", pop_prior=pop, affinity_bias=options.affinity_bias,
        item_quality=quality.astype(np.float32), quality_weight=options.quality_weight,
        item_duration=duration.astype(np.float32), creator_debut=debut,
        user_followed=followed_creators(base, options.followed_creators, options.followed_pool, rng),
        user_features=np.asarray(user_features, np.float32),
        user_cycles=user_cycles(base, options.cycle_components, np.random.default_rng([seed, 17])),
        item_acquired=acquired,
    )


@functools.lru_cache(maxsize=4)
def kuairec_world_v1(seed: int = 0, options: WorldOptions = WorldOptions()) -> World:
    """KuaiRec-v1: :func:`recgym.world.kuairec_world` with the v1 tables (simulated user features)."""
    return build_world_v1(kuairec_world(seed), options, seed)


def kuairand_user_features() -> np.ndarray:
    """(27,285, 34) float32: the real KuaiRand-Pure users' static features (package data)."""
    path = resources.files("recgym") / "data" / "kuairand_pure_users.csv.gz"
    with resources.as_file(path) as csv_path:
        return read_kuairand_users(Path(csv_path)).features


@functools.lru_cache(maxsize=4)
def kuairand_world_v1(seed: int = 0, options: WorldOptions = WorldOptions()) -> World:
    """KuaiRand-v1: the real items (and their durations) and the real users' static features."""
    return build_world_v1(kuairand_world(seed), options, seed, kuairand_user_features(), kuairand_item_durations())


@functools.lru_cache(maxsize=8)
def synthetic_world_v1(options: WorldOptions = WorldOptions(), **synthetic: Any) -> World:
    """Synthetic-v1: :func:`recgym.world.synthetic_world` (``synthetic`` are its arguments) with the v1 tables."""
    return build_world_v1(synthetic_world(**synthetic), options, synthetic.get("seed", 0))


V1_WORLDS = ("kuairec-v1", "kuairand-v1", "synthetic-v1")


def resolve_world_v1(name: str, **world_kwargs: Any) -> World:
    """The v1 world ``name`` (one of :data:`V1_WORLDS`): ``world_kwargs`` are :class:`WorldOptions`
    fields, ``seed``, and for ``synthetic-v1`` the :func:`recgym.world.synthetic_world` sizes."""
    option_names = {f.name for f in dataclasses.fields(WorldOptions)}
    options = WorldOptions.from_kwargs(**{k: v for k, v in world_kwargs.items() if k in option_names})
    rest = {k: v for k, v in world_kwargs.items() if k not in option_names}
    if name == "synthetic-v1":
        try:
            return synthetic_world_v1(options, **rest)
        except TypeError as error:
            raise ValueError(f"world {name!r}: {error}") from None
    if set(rest) - {"seed"}:
        raise ValueError(f"world {name!r} takes 'seed' and the v1 world options "
                         f"({', '.join(sorted(option_names))}), got {sorted(set(rest) - {'seed'})}")
    builder = kuairec_world_v1 if name == "kuairec-v1" else kuairand_world_v1
    return builder(rest.get("seed", 0), options)
