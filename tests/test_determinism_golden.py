"""Golden fingerprints: same seed => bit-identical trajectories, before and after performance work.

Each scenario runs a few hundred steps of seeded random actions on ``recgym/KuaiRec-v0`` with
every mechanism on (the defaults plus ``popular_streak=5``) and hashes, step by step, everything
an agent or an experiment can read: observations, rewards, terminations, truncations, infos
(incl. ``final_obs`` and action masks). The expected digests were recorded on commit ``8fc6569``
(before the session-11 throughput work); experiments run on that code are published as valid for
the current code, so a changed digest means changed behaviour, not a test to re-record.

The digests are of float32/float64 bits, so they hold for this numpy build on x86-64; a different
numpy version or CPU may legitimately round differently.
"""

from __future__ import annotations

import hashlib
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import recgym  # noqa: F401  (registers the env ids)
from recgym import dynamics, simulator
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
    ("single", "NX_0"): "58755ad0155048fbb8af40f7dea3ff9c374e4310ad8e06ca8b52a0b0317c1fa8",
    ("single", "Free"): "fd072bcff5432db9b020497a1c4d442e485b5f7c68302c4aa6f307ceff47feb0",
    ("vector", "NX_0", 1, "SameStep"): "fae6771aa432251d839a400918fc0f14c5eb315a0706426758cd08dde9af4816",
    ("vector", "NX_0", 7, "SameStep"): "863cf4dec99dd68e8597de4e0fa38ccf30c0dbc8a9a92b00b524ff81fd5f8802",
    ("vector", "NX_0", 256, "SameStep"): "905114348034bd4e9f461f3496e159785491484cab261023ad3078b5957fd22a",
    ("vector", "Free", 7, "SameStep"): "be0db483a015dbd2ed29f97f1243dc96f1b4ff5f31949f5c28a7960f23a37b6e",
    ("vector", "Free", 256, "SameStep"): "a0f7c9b8d895453a0497b2c2013a4b88f8bd8fe4833a921910746db0672240d4",
    ("vector", "NX_0", 7, "NextStep"): "dd885b8543fac6676a8ceeac47b6e43fce18cef357fc79bdc5dd7581aca470a3",
    ("vector", "NX_0", 256, "NextStep"): "5083a4e500bc9c450c344b77797937687c12ef24151f17440eb0506080e2eb46",
    ("vector", "Free", 256, "NextStep"): "52fc3c4f5b02ecb452aa9c32fba112bd804cdb569cd39ed3a4885522bd47add2",
    ("vector-idle", "NX_0", 7, "SameStep"): "407390a4247905da25a886f453e507b99db251f21ff107aee7a798e1cfce3c53",
    ("vector-slate", "NX_0", 7, "SameStep"): "f3171240c246f4b0dbd2606d23054a97de72443a9d346c1de95c4d8d21894b23",
    ("vector-matrix", "NX_0", 7, "SameStep"): "08414774aab75358924a2584c61eaf0f7b948ec2c2a3c91a7804eb0f346f931d",
    ("population", "NX_0"): "994c232f936c6fec7b2b40942ef5956a3acce22f56295a878e84c1b79789b207",
    ("population", "Free"): "3a8071dc626d713224c0b9874b687a9e9be582a8204a6fddb4d69286d3719bd7",
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


@pytest.mark.parametrize("key", [key for key in GOLDEN if key[0] != "single"],
                         ids=["-".join(map(str, key)) for key in GOLDEN if key[0] != "single"])
def test_trajectory_matches_golden_fingerprint_when_resets_clear_logged_items(key, monkeypatch):
    """The same trajectories when every reset clears the no-repeat mask through the recommendation log."""
    monkeypatch.setattr(simulator, "ROW_CLEAR_BYTES", 0)
    assert compute(key) == GOLDEN[key]


@pytest.mark.parametrize("max_turn, slate_size, longer_than_log", [(30, 1, False), (30, 100, True), (3, 1, True)])
def test_reset_clears_exactly_the_sessions_seen_items(max_turn, slate_size, longer_than_log, monkeypatch):
    """A reset row's no-repeat mask ends all False, other rows keep theirs; also for sessions longer than
    the log (slate 100: 2 logged steps) and sessions stepped past max_turn without a reset."""
    monkeypatch.setattr(simulator, "ROW_CLEAR_BYTES", 0)
    sim = build_simulator(16, "kuairec", seed=0, mode="NX_0", max_turn=max_turn, slate_size=slate_size,
                          leave_window=0, patience=0.0)
    sim.reset(seed=0)
    shadow = np.zeros_like(sim.seen)
    rng = np.random.default_rng(1)
    n_items = sim.world.n_items
    overflowed = False
    for t in range(12):
        actions = np.argsort(rng.random((16, n_items)), axis=1)[:, :slate_size]
        sim.step(actions[:, 0] if slate_size == 1 else actions)
        shadow[np.arange(16)[:, None], actions] = True
        slots = np.flatnonzero(rng.random(16) < 0.3)
        overflowed |= bool((sim.step_count[slots] > sim.log_steps).any())
        sim.reset_sessions(slots)
        shadow[slots] = False
        assert np.array_equal(sim.seen, shadow), f"step {t}"
    assert shadow.sum() > 0 and overflowed == longer_than_log


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
