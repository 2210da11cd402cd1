"""The compiled kernels against the documented formulas, written here once more in plain numpy.

The kernels (``recgym.dynamics``) step one session at a time in compiled loops; these tests rebuild
what they must compute from the visible state with whole-array numpy, after many steps with every
mechanism on and sessions ending and restarting.
"""

from __future__ import annotations

import numpy as np
import pytest

from recgym.params import SimParams
from recgym.simulator import Simulator
from recgym.world import kuairec_world


@pytest.fixture(scope="module", params=["NX_0", "Free"])
def stepped(request) -> Simulator:
    """12 sessions after 40 steps of random actions on KuaiRec, ended sessions restarted."""
    sim = Simulator(kuairec_world(), SimParams(mode=request.param, popular_streak=5), 12, seed=4)
    sim.reset(4)
    rng = np.random.default_rng(0)
    for _ in range(40):
        result = sim.step(rng.integers(0, sim.world.n_items, 12))
        sim.reset_sessions(np.flatnonzero(result.terminated | result.truncated))
    assert (sim.step_count >= 2).sum() >= 6  # the state below is not just fresh sessions
    return sim


def reference_utility(sim: Simulator) -> tuple[np.ndarray, np.ndarray]:
    """(B, I) float64 (base, session terms) of every item for every session, from the visible state."""
    p, world = sim.params, sim.world
    k = p.history_len
    recent = sim.recent_items[:, -k:]
    valid = recent >= 0
    emb = world.item_emb.astype(np.float64)
    history_mean = (emb[recent] * valid[..., None]).sum(axis=1) / np.maximum(valid.sum(axis=1), 1)[:, None]
    propensity = np.clip(world.user_novelty[sim.user] + sim.novelty_offset, 0, 1)
    shares = world.item_cats / np.maximum(world.item_cats.sum(axis=1), 1)[:, None]
    creators = np.where(valid, world.item_creator[recent], -1)
    creator_share = (creators[:, :, None] == world.item_creator[None, None, :]).sum(axis=1) / k
    terms = (
        p.time_of_day * np.cos(2 * np.pi * (sim.hour[:, None] - world.item_hour[None, :]) / 24)
        + (0.0 if world.is_v1 else p.novelty_weight) * (propensity[:, None] - 0.5) * (1 - history_mean @ emb.T)
        - p.boredom * sim.category_fatigue @ shares.T
        - p.creator_fatigue * creator_share
    )
    return world.affinity_scale * sim.interest @ emb.T + world.affinity_bias, terms


def test_expected_reward_matches_the_formulas(stepped):
    sim, world = stepped, stepped.world
    base, terms = reference_utility(sim)
    expected = world.reward_max / (1 + np.exp(-(base + terms))) * sim.action_mask()
    np.testing.assert_allclose(sim.expected_reward(), expected, atol=2e-5)
    assert np.abs(terms).max() > 0.3  # the session terms matter


def test_session_state_is_consistent_with_the_history(stepped):
    sim, p, world = stepped, stepped.params, stepped.world
    recent = sim.recent_items
    for b in range(sim.n_sessions):
        steps = sim.step_count[b]
        items = recent[b][recent[b] >= 0]
        assert items.size == min(steps, recent.shape[1])
        window = items[-p.leave_window:] if steps else items[:0]
        np.testing.assert_array_equal(sim.window_counts[b], world.item_cats[window].sum(axis=0))
        np.testing.assert_allclose(sim.sessions.history_sum_emb[b], world.item_emb[items[-p.history_len:]].sum(axis=0),
                                   atol=1e-5)
        # decayed category counts: sum over the session's items of decay ** age (all items are in the buffer
        # while the session is shorter than it)
        if steps <= recent.shape[1]:
            ages = np.arange(items.size)[::-1]
            fatigue = (world.item_cats[items] * p.boredom_decay ** ages[:, None]).sum(axis=0)
            np.testing.assert_allclose(sim.category_fatigue[b], fatigue, atol=1e-5)
        assert sim.popular_streak[b] == (
            0 if not items.size else np.argmin(np.append(sim.popular[items][::-1], False))
        )
    np.testing.assert_array_equal(sim.sessions.recent_creators, np.where(recent >= 0, world.item_creator[recent], -1))
    np.testing.assert_allclose(np.linalg.norm(sim.interest, axis=1), 1.0, atol=1e-5)
    if p.no_repeat:  # in NX_0 the mask holds at least the consumed items
        assert not sim.action_mask()[np.arange(sim.n_sessions)[:, None].repeat(recent.shape[1], 1)[recent >= 0],
                                     recent[recent >= 0]].any()


def test_shared_counts_add_up(stepped):
    sim = stepped
    assert sim.exposure.sum() == 12 * 40  # every recommendation of every step
    assert 0 < sim.clicks.sum() < 12 * 40  # one per consumption with positive observed feedback
    np.testing.assert_allclose(sim.sessions.highest_popularity[0], sim.popularity.max())
