"""Shared fixtures: hand-made worlds whose every number is known."""

from __future__ import annotations

import numpy as np
import pytest

from recgym.params import SimParams
from recgym.simulator import Simulator
from recgym.world import World

# Switch every stochastic or session mechanism off: a step's reward is then exactly the base reward.
MECHANISMS_OFF = dict(
    interest_drift=0.0, interest_walk=0.0, time_of_day=0.0, novelty_weight=0.0, boredom=0.0,
    creator_fatigue=0.0, reward_noise=0.0, popularity_noise=0.0, exposure_bias=0.0, observation_noise=0.0,
    session_novelty_volatility=0.0, patience=0.0, leave_window=0, mode="Free",
)


def hand_world(categories: list[list[int]], n_categories: int, pop_prior: list[float] | None = None,
               n_users: int = 3, reward_matrix: np.ndarray | None = None) -> World:
    """A world with the given item categories; embeddings are axis-aligned unit vectors."""
    n_items = len(categories)
    dims = max(n_items, 2)
    cats = np.zeros((n_items, n_categories), bool)
    for item, labels in enumerate(categories):
        cats[item, labels] = True
    emb = np.eye(dims, dtype=np.float32)[:n_items]
    interest = np.eye(dims, dtype=np.float32)[np.arange(n_users) % dims]
    return World(
        name="hand",
        item_emb=emb,
        item_cats=cats,
        item_creator=np.arange(n_items),
        item_age=np.zeros(n_items, np.float32),
        item_hour=np.zeros(n_items, np.float32),
        pop_prior=np.asarray(pop_prior if pop_prior is not None else np.ones(n_items), float),
        user_interest=interest,
        user_novelty=np.full(n_users, 0.5, np.float32),
        reward_matrix=reward_matrix,
        reward_max=5.0 if reward_matrix is not None else 2.0,
    )


def hand_sim(world: World, n_sessions: int = 1, seed: int = 0, **options) -> Simulator:
    sim = Simulator(world, SimParams.from_kwargs(**{**MECHANISMS_OFF, **options}), n_sessions, seed=seed)
    sim.reset(seed)
    return sim


@pytest.fixture(autouse=True, scope="session")
def private_cache(tmp_path_factory):
    """Loads with ``data_dir`` cache their arrays in a folder of this test session, never the user's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RECGYM_CACHE", str(tmp_path_factory.mktemp("recgym-cache")))
        yield


@pytest.fixture
def one_torch_thread():
    """Tiny torch models train fastest on one thread; restore the caller's setting afterwards."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
