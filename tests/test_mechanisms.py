"""Each user mechanism does what its docstring says, measured with numbers."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import MECHANISMS_OFF, hand_sim, hand_world
from recgym import dynamics
from recgym.params import SimParams
from recgym.simulator import Simulator
from recgym.world import synthetic_world


def cosine(a, b):
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_interest_drifts_toward_consumed_items_only_when_switched_on():
    world = synthetic_world()
    item = 7
    drifting = Simulator(world, SimParams.from_kwargs(**{**MECHANISMS_OFF, "interest_drift": 0.2}), 64, seed=1)
    frozen = Simulator(world, SimParams.from_kwargs(**MECHANISMS_OFF), 64, seed=1)
    for sim in (drifting, frozen):
        sim.reset(1)
    before = np.array([cosine(u, world.item_emb[item]) for u in drifting.interest])
    for _ in range(10):
        drifting.step(np.full(64, item))
        frozen.step(np.full(64, item))
    after = np.array([cosine(u, world.item_emb[item]) for u in drifting.interest])
    assert (after > before).all()
    assert after.mean() - before.mean() > 0.2
    np.testing.assert_allclose(frozen.interest, world.user_interest[frozen.user])


def test_random_walk_moves_interest_without_a_direction():
    world = synthetic_world()
    sim = Simulator(world, SimParams.from_kwargs(**{**MECHANISMS_OFF, "interest_walk": 0.05}), 256, seed=2)
    sim.reset(2)
    start = sim.interest.copy()
    rng = np.random.default_rng(0)
    for _ in range(20):
        sim.step(rng.integers(0, world.n_items, 256))
    moved = 1 - np.einsum("bd,bd->b", start, sim.interest)
    assert moved.min() > 0.005  # everyone moved
    np.testing.assert_allclose(np.linalg.norm(sim.interest, axis=1), 1.0, atol=1e-5)


def test_boredom_lowers_the_reward_of_a_repeated_category():
    world = hand_world([[0], [0], [0], [1]], 2, n_users=1)
    bored = hand_sim(world, boredom=1.0, boredom_decay=0.9)
    plain = hand_sim(world)
    for sim in (bored, plain):
        sim.step(np.array([0]))
        sim.step(np.array([1]))
    # same category as the last two items: lower with boredom on; the fresh category is untouched
    assert bored.expected_reward()[0, 2] < plain.expected_reward()[0, 2] - 0.05
    assert bored.expected_reward()[0, 3] == pytest.approx(plain.expected_reward()[0, 3])


def test_creator_fatigue_penalises_the_same_creator():
    world = synthetic_world()
    creators = world.item_creator
    same = np.flatnonzero(creators == np.bincount(creators).argmax())[:2]
    assert same.size == 2
    sim = Simulator(world, SimParams.from_kwargs(**{**MECHANISMS_OFF, "creator_fatigue": 1.0}), 1, seed=0)
    plain = Simulator(world, SimParams.from_kwargs(**MECHANISMS_OFF), 1, seed=0)
    for s in (sim, plain):
        s.reset(0)
        s.step(np.array([same[0]]))
    assert sim.expected_reward()[0, same[1]] < plain.expected_reward()[0, same[1]]


def test_time_of_day_term_peaks_at_the_items_preferred_hour():
    params = SimParams.from_kwargs(**{**MECHANISMS_OFF, "time_of_day": 0.3})
    emb = np.eye(2, dtype=np.float32)[[0, 0]]  # the same item for both sessions, preferred at 6:00
    terms = dynamics.session_terms(
        params, emb, np.ones((2, 1), bool), np.array([6.0, 6.0], np.float32),
        hour=np.array([6.0, 18.0], np.float32), history_sum_emb=np.zeros((2, 2), np.float32),
        history_count=np.zeros(2, np.int64), novelty_propensity=np.full(2, 0.5, np.float32),
        category_fatigue=np.zeros((2, 1), np.float32), creator_repeats=np.zeros(2, np.float32),
    )
    np.testing.assert_allclose(terms, [0.3, -0.3], atol=1e-6)


def test_novelty_seekers_prefer_novel_items_and_novelty_averse_users_familiar_ones():
    params = SimParams.from_kwargs(**{**MECHANISMS_OFF, "novelty_weight": 1.0})
    emb = np.eye(2, dtype=np.float32)[[0, 1, 0, 1]]  # familiar, novel, familiar, novel
    history_sum = np.array([[3.0, 0.0]] * 4, np.float32)  # history is item 0 three times
    propensity = np.array([0.9, 0.9, 0.1, 0.1], np.float32)
    terms = dynamics.session_terms(
        params, emb, np.ones((4, 1), bool), np.zeros(4, np.float32), np.zeros(4, np.float32),
        history_sum, np.full(4, 3), propensity, np.zeros((4, 1), np.float32), np.zeros(4, np.float32),
    )
    np.testing.assert_allclose(terms, [0.0, 0.4, 0.0, -0.4], atol=1e-6)


def test_session_novelty_propensity_moves_within_a_session_around_the_static_one():
    world = synthetic_world()
    sim = Simulator(world, SimParams.from_kwargs(session_novelty_volatility=0.05), 512, seed=3)
    sim.reset(3)
    start = sim.novelty_propensity().copy()
    rng = np.random.default_rng(0)
    for _ in range(5):
        sim.step(rng.integers(0, world.n_items, 512))
    assert np.abs(sim.novelty_propensity() - start).mean() > 0.01
    static = world.user_novelty[sim.user]
    assert np.corrcoef(static, sim.novelty_propensity())[0, 1] > 0.8


def test_observed_feedback_is_biased_toward_popular_items_while_true_reward_is_not():
    world = synthetic_world(n_items=400, seed=5)
    sim = Simulator(world, SimParams.from_kwargs(mode="Free", leave_window=0, patience=0.0), 2048, seed=5)
    sim.reset(5)
    rng = np.random.default_rng(5)
    pop_score = np.log1p(world.pop_prior) / np.log1p(world.pop_prior.max())
    true, observed, popularity = [], [], []
    for _ in range(10):
        actions = rng.integers(0, world.n_items, 2048)
        result = sim.step(actions)
        true.append(result.true_reward)
        observed.append(result.observed_feedback)
        popularity.append(pop_score[actions])
    true, observed, popularity = map(np.concatenate, (true, observed, popularity))
    assert np.corrcoef(observed - true, popularity)[0, 1] > 0.1  # measured 0.16
    assert abs(np.corrcoef(true, popularity)[0, 1]) < 0.03  # measured -0.009
    top, tail = popularity > np.quantile(popularity, 0.8), popularity < np.quantile(popularity, 0.2)
    assert observed[top].mean() - observed[tail].mean() > 0.12  # measured 0.81 vs 0.63
    assert abs(true[top].mean() - true[tail].mean()) < 0.03  # measured 0.70 vs 0.72


def test_without_popularity_noise_and_exposure_bias_observed_equals_true():
    world = synthetic_world()
    sim = Simulator(world, SimParams.from_kwargs(popularity_noise=0.0, exposure_bias=0.0, observation_noise=0.0,
                                                 mode="Free"), 256, seed=0)
    sim.reset(0)
    result = sim.step(np.arange(256) % world.n_items)
    np.testing.assert_allclose(result.observed_feedback, result.true_reward)


def gini(counts: np.ndarray) -> float:
    """Lorenz-curve Gini of non-negative counts (0: equal, -> 1: concentrated)."""
    ordered = np.sort(counts)
    n = ordered.size
    return float((n + 1 - 2 * np.sum(np.cumsum(ordered)) / ordered.sum()) / n)


@pytest.mark.parametrize("greedy", [True, False])
def test_popularity_feedback_loop(greedy):
    """A popularity-greedy policy concentrates exposure and popularity over time; a uniform one spreads them."""
    world = synthetic_world(n_items=300, seed=4)
    sim = Simulator(world, SimParams.from_kwargs(mode="NX_0", leave_window=0, patience=0.0), 64, seed=4)
    sim.reset(4)
    rng = np.random.default_rng(4)
    exposure_ginis, popularity_ginis = [], []
    for _ in range(200):
        if greedy:  # most popular item (live popularity, updated by everyone's clicks) not yet seen
            actions = np.where(sim.action_mask(), sim.popularity, -np.inf).argmax(axis=1)
        else:
            actions = rng.integers(0, world.n_items, 64)
        result = sim.step(actions)
        done = np.flatnonzero(result.terminated | result.truncated)
        sim.reset_sessions(done)
        exposure_ginis.append(gini(sim.exposure))
        popularity_ginis.append(gini(sim.popularity))
    if greedy:  # exposure stays concentrated and the popularity ranking grows more unequal
        assert min(exposure_ginis[5:]) > 0.85
        assert popularity_ginis[-1] > popularity_ginis[0] + 0.02  # measured 0.745 -> 0.776
    else:  # exposure evens out and the popularity ranking flattens
        assert exposure_ginis[-1] < 0.35 and exposure_ginis[-1] < exposure_ginis[5] - 0.2  # measured 0.46 -> 0.087
        assert popularity_ginis[-1] < popularity_ginis[0] - 0.05  # measured 0.744 -> 0.618
