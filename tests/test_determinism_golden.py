"""Golden fingerprints: same seed => bit-identical trajectories, across performance work.

Each scenario runs a few hundred steps of seeded random actions on ``recgym/KuaiRec-v0`` with
every mechanism on (the defaults plus ``popular_streak=5``) and hashes, step by step, everything
an agent or an experiment can read: observations, rewards, terminations, truncations, infos
(incl. ``final_obs`` and action masks). A changed digest means changed behaviour, not a test to
re-record.

History: the digests were first recorded on commit ``8fc6569`` (numpy dynamics). They were
re-recorded once, deliberately, when the dynamics moved into compiled kernels (session 12): the
kernels draw a step's random numbers in three batched calls instead of five (the interest walk
from raw random bytes) and sum in a fixed order instead of numpy's SIMD order, so a seed's
trajectory changed while every mechanism's formula stayed the same
(``tests/test_dynamics_reference.py`` checks the formulas).

Issue #15 changed two representations and no dynamics: action masks became int8 (they were bool)
and same-step infos gained ``final_info`` (the ended rows' step infos, already hashed in ``infos``).
The harness hashes those masks as bool and leaves ``final_info`` out (:func:`_as_recorded`), so the
digests recorded before still pin every trajectory bit; ``tests/test_conventions.py`` checks the new
representations.

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


def _as_recorded(out: tuple) -> tuple:
    """A step's or reset's output as the digests recorded it: the int8 action mask as bool, no
    ``final_info`` (a repeat of the ended rows' step infos)."""
    *rest, info = out
    info = {key: value for key, value in info.items() if key not in ("final_info", "_final_info")}
    if "action_mask" in info:
        info["action_mask"] = info["action_mask"].view(bool)
    return (*rest, info)


def single_env_digest(mode: str, n_steps: int = 300, **options: Any) -> str:
    """``gym.make`` env (with its wrappers), reset without a seed when a session ends."""
    env = gym.make("recgym/KuaiRec-v0", mode=mode, **ALL_MECHANISMS, **options)
    digest = hashlib.sha256()
    _feed(digest, _as_recorded(env.reset(seed=11)))
    actions = np.random.default_rng(5).integers(0, env.unwrapped.world.n_items, size=n_steps)
    for action in actions.tolist():
        out = env.step(action)
        _feed(digest, _as_recorded(out))
        if out[2] or out[3]:
            _feed(digest, _as_recorded(env.reset()))
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
        _feed(digest, _as_recorded(venv.step(actions, active=active)))
        if t % 50 == 49 and venv.params.no_repeat:
            _feed(digest, venv.action_masks().view(bool))
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
    ("single", "NX_0"): "53b9925d7fb62aa0d1a8310633d179d40ab2cf14e5e50560a1e027978f6e7b74",
    ("single", "Free"): "34212b65efec0e3b0f8599900ad38e566b5c8f86923e22030cd5e8dfe2cf11e2",
    ("vector", "NX_0", 1, "SameStep"): "c5f019ad68c10927be3b4e85287a61320fc7e3cdd625f69c8da661567e0ac4e5",
    ("vector", "NX_0", 7, "SameStep"): "d75501c267db8f3b9475e22e36270be69164bae3cd0e5c0d85ea244d2d208cfe",
    ("vector", "NX_0", 256, "SameStep"): "a6efcf6389b0f8543d58b2715d1a5618f2a7a7358bb55e27cfe6e70adb483883",
    ("vector", "Free", 7, "SameStep"): "462e430d6c641acf85a3afb3ebafc4d53f4561b472cd96fda8fa32689dc72c45",
    ("vector", "Free", 256, "SameStep"): "29a5ef9f8f601625b162ff5a9d4c91c5b8451e35663ac771babe6d769da56efe",
    ("vector", "NX_0", 7, "NextStep"): "f4cedea1a6d4349fe508cec137ee8245779323637c1fc80577d59c506b2278a4",
    ("vector", "NX_0", 256, "NextStep"): "287844d2e9a9a5b7a1c60c601d99abb114e979c500c5aa580ba792afcd7f0bf2",
    ("vector", "Free", 256, "NextStep"): "4b8af65cf2f8dac3458253f11feac55147333cabf2ab9b7859aa317ed6a55417",
    ("vector-idle", "NX_0", 7, "SameStep"): "07fd41c21c36707080405ff0f00a24ba26bbe53bbaf50e4cf5dda9404563515d",
    ("vector-slate", "NX_0", 7, "SameStep"): "4e36953bf15016bd587bbb62aaf56d4a7a79ab9478f45ad28e58982e12f1cac0",
    ("vector-matrix", "NX_0", 7, "SameStep"): "1342829c1d14dfaf6dd1c9ab90570ccc2c49e975338fed0433cf8fc1e7ebe4ca",
    ("population", "NX_0"): "83464d74974540e288e7b1db174ac17f575ac298e94cb4430232e5c4b42e2302",
    ("population", "Free"): "918776ef2869ca4f93e768fb1c7eca55e7f85a5cd44766f5b471712d567c286b",
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


def test_category_lists_list_each_items_categories_in_order():
    cats = np.array([[0, 1, 0, 1], [0, 0, 0, 0], [0, 0, 1, 0]], bool)
    lists, counts = dynamics.category_lists(cats)
    assert lists.tolist() == [[1, 3], [0, 0], [2, 0]]
    assert counts.tolist() == [2, 0, 1]
