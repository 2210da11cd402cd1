"""Golden fingerprints: same seed => bit-identical trajectories, across performance work.

Each scenario runs a few hundred steps of seeded random actions on ``recgym/KuaiRec-v0`` with
every mechanism on (the defaults plus ``popular_streak=5``) and hashes, step by step, everything
an agent or an experiment can read: observations, rewards, terminations, truncations, infos
(incl. ``final_obs`` and action masks). A changed digest means changed behaviour, not a test to
re-record.

History: the digests were first recorded on commit ``8fc6569`` (numpy dynamics). They were
re-recorded once, deliberately, when the dynamics moved into compiled kernels (session 12): the
kernels draw a step's random numbers in two batched calls instead of five and sum in a fixed
sequential order instead of numpy's SIMD order, so a seed's trajectory changed while every
mechanism's formula stayed the same (``tests/test_dynamics_reference.py`` checks the formulas).

The digests are of float32/float64 bits: they hold for x86-64 with glibc's libm (the kernels'
exp/cos/log1p); the kernels' own arithmetic does not depend on the CPU's SIMD width.
"""

from __future__ import annotations

import hashlib
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import recgym  # noqa: F401  (registers the env ids)
from recgym import dynamics
from recgym.envs.core import build_simulator
from recgym.envs.population import PopulationEnv
from recgym.envs.vector import RecSysVectorEnv
from recgym.world import World, synthetic_world

ALL_MECHANISMS = {"popular_streak": 5}


def _feed(digest: hashlib._Hash, value: Any) -> None:
    """Hash ``value`` (nested dicts/lists/tuples of arrays and scalars) with types and shapes."""
    if isinstance(value, dict):
        for key in sorted(value):
            digest.update(f"<{key}>".encode())
            _feed(digest, value[key])
    elif isinstance(value, (list, tuple)):
        digest.update(f"[{len(value)}".encode())
        for item in value:
            _feed(digest, item)
    elif isinstance(value, np.ndarray):
        digest.update(f"{value.dtype.str}{value.shape}".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, np.generic):
        digest.update(f"{value.dtype.str}:".encode() + value.tobytes())
    else:
        digest.update(f"{type(value).__name__}:{value!r}".encode())


def single_env_digest(mode: str, n_steps: int = 300, **options: Any) -> str:
    """``gym.make`` env (with its wrappers), reset without a seed when a session ends."""
    env = gym.make("recgym/KuaiRec-v0", mode=mode, **ALL_MECHANISMS, **options)
    digest = hashlib.sha256()
    _feed(digest, env.reset(seed=11))
    actions = np.random.default_rng(5).integers(0, env.unwrapped.world.n_items, size=n_steps)
    for action in actions.tolist():
        out = env.step(action)
        _feed(digest, out)
        if out[2] or out[3]:
            _feed(digest, env.reset())
    return digest.hexdigest()


def vector_env_digest(
    mode: str, n_envs: int, autoreset: str, n_steps: int = 200, idle: bool = False, world: str | World = "kuairec",
    **options: Any,
) -> str:
    """Native vector env; ``idle``: every step a random quarter of the rows is passed as inactive."""
    venv = RecSysVectorEnv(n_envs, world=world, mode=mode, autoreset_mode=autoreset, **ALL_MECHANISMS, **options)
    digest = hashlib.sha256()
    _feed(digest, venv.reset(seed=23))
    rng = np.random.default_rng(7)
    for t in range(n_steps):
        actions = rng.integers(0, venv.world.n_items, size=venv.action_space.shape)
        active = rng.random(n_envs) >= 0.25 if idle else None
        if venv.params.slate_size > 1:  # distinct items per slate
            actions = np.argsort(rng.random((n_envs, venv.world.n_items)), axis=1)[:, : venv.params.slate_size]
        _feed(digest, venv.step(actions, active=active))
        if t % 50 == 49 and venv.params.no_repeat:
            _feed(digest, venv.action_masks())
    _feed(digest, [venv.sim.exposure, venv.sim.clicks, venv.sim.interest])
    return digest.hexdigest()


def population_digest(mode: str, n_users: int = 7, max_cycles: int = 120) -> str:
    """Population env with arrivals (idle slots in the simulator), stepped until every user is gone."""
    env = PopulationEnv(n_users=n_users, max_cycles=max_cycles, arrival_rate=0.6, mode=mode, **ALL_MECHANISMS)
    digest = hashlib.sha256()
    _feed(digest, env.reset(seed=31))
    rng = np.random.default_rng(3)
    while env.agents:
        actions = {agent: int(rng.integers(0, env.world.n_items)) for agent in env.agents}
        _feed(digest, env.step(actions))
    return digest.hexdigest()


def _matrix_world() -> World:
    """The synthetic world with a ground-truth reward matrix (the matrix-backed code path)."""
    base = synthetic_world()
    matrix = np.random.default_rng(0).uniform(0, 5, size=(base.n_users, base.n_items)).astype(np.float32)
    fields = {name: getattr(base, name) for name in base.__dataclass_fields__}
    return World(**{**fields, "name": "synthetic-matrix", "reward_matrix": matrix, "reward_max": 5.0})


GOLDEN = {
    ("single", "NX_0"): "e842ff14fb9158ac4057aca8fb2036ef8a5356ad4a861dd3b94e61f52e176706",
    ("single", "Free"): "62008eda122fe482c274627123a04d24c5f90d2c0c8d43cca75f099427282e19",
    ("vector", "NX_0", 1, "SameStep"): "6291929a48d63b85d75dc5f6db9c907983fec3bdb82990d781ae92c12513e312",
    ("vector", "NX_0", 7, "SameStep"): "1c35328f626e2fc0ab65ea10fcd1523c085ce17b66ede1848119b610420e8c24",
    ("vector", "NX_0", 256, "SameStep"): "b7a7aca513843390644af5134d2fb7195d0598eb883b5fc033244a5c44f6ecd1",
    ("vector", "Free", 7, "SameStep"): "df00bdcb74e39e47ddee9751d1820c12f4902877c95747e017fc9eb22e932942",
    ("vector", "Free", 256, "SameStep"): "6ecafb98ac82c1be11fa0db26de2c65067e4149ab11b300e922bacaa07c884d6",
    ("vector", "NX_0", 7, "NextStep"): "1321d32ec05ef80d61ba26e79a77719861d7c0737efff1ee970aa52ada2c28c1",
    ("vector", "NX_0", 256, "NextStep"): "caf10d1f8979bc49ef4e4b86855c13411d9f80392885b0ea927831b7fbc5d09c",
    ("vector", "Free", 256, "NextStep"): "0d616258fd6f3effb54c4deb27722e97855ee3c158cc0a7a4a902813c5629deb",
    ("vector-idle", "NX_0", 7, "SameStep"): "e77c41106d767edfafdd8d3ec57bab96a3f7cd74151f581a09d0b363d5682250",
    ("vector-slate", "NX_0", 7, "SameStep"): "0937f043f50e23fbec527acdee97da1a20caf7c4bb19e80ed1668b0263ea8f69",
    ("vector-matrix", "NX_0", 7, "SameStep"): "f91ea06b37695a4fb9fc9a4c5f37418390a698e5a1dcd5ffb48850fa42d10249",
    ("population", "NX_0"): "5d8697c1d72d3775a0fe409a87d126edc5212dd8b1952aedd4ecb6f70be2ad94",
    ("population", "Free"): "30ce44306fd89df6c32570e7079d87222c036d77f099745b87b57d38edce097f",
}


def compute(key: tuple) -> str:
    kind, mode, *rest = key
    if kind == "single":
        return single_env_digest(mode)
    if kind == "population":
        return population_digest(mode)
    n_envs, autoreset = rest
    extra: dict[str, Any] = {
        "vector": {}, "vector-idle": {"idle": True}, "vector-slate": {"slate_size": 3},
        "vector-matrix": {"world": _matrix_world()},
    }[kind]
    return vector_env_digest(mode, n_envs, autoreset, **extra)


@pytest.mark.parametrize("key", list(GOLDEN), ids=["-".join(map(str, key)) for key in GOLDEN])
def test_trajectory_matches_golden_fingerprint(key):
    assert compute(key) == GOLDEN[key]


@pytest.mark.parametrize("max_turn, slate_size", [(30, 1), (30, 100), (3, 1)])
def test_reset_clears_exactly_the_sessions_seen_items(max_turn, slate_size):
    """A reset row's no-repeat mask ends all False, other rows keep theirs; also with large slates and
    for sessions stepped past max_turn without a reset."""
    sim = build_simulator(16, "kuairec", seed=0, mode="NX_0", max_turn=max_turn, slate_size=slate_size,
                          leave_window=0, patience=0.0)
    sim.reset(seed=0)
    shadow = np.zeros_like(sim.seen)
    rng = np.random.default_rng(1)
    n_items = sim.world.n_items
    for t in range(12):
        actions = np.argsort(rng.random((16, n_items)), axis=1)[:, :slate_size]
        sim.step(actions[:, 0] if slate_size == 1 else actions)
        shadow[np.arange(16)[:, None], actions] = True
        slots = np.flatnonzero(rng.random(16) < 0.3)
        sim.reset_sessions(slots)
        shadow[slots] = False
        assert np.array_equal(sim.seen, shadow), f"step {t}"
    assert shadow.sum() > 0


def test_fingerprint_detects_a_one_bit_change():
    """The hash sees a single flipped bit in a float32 reward (so the goldens can fail)."""
    reward = np.array([0.5], np.float32)
    flipped = reward.view(np.int32) ^ 1
    first, second = hashlib.sha256(), hashlib.sha256()
    _feed(first, {"reward": reward})
    _feed(second, {"reward": flipped.view(np.float32)})
    assert first.hexdigest() != second.hexdigest()


def test_category_lists_pad_each_item_with_its_first_category():
    cats = np.array([[0, 1, 0, 1], [0, 0, 0, 0], [0, 0, 1, 0]], bool)
    lists, has_category = dynamics.category_lists(cats)
    assert lists.tolist() == [[1, 3], [0, 0], [2, 2]]
    assert has_category.tolist() == [True, False, True]
