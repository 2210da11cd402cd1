"""Every metric on a hand-made case whose answer is worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import hand_world

from recgym import metrics


def test_gini_lorenz_form_known_values():
    assert metrics.gini(np.array([5.0, 5.0, 5.0, 5.0])) == pytest.approx(0.0)
    # sorted [1,2,3,4]: sum (2i - 5) x_i = -3 - 2 + 3 + 12 = 10; / (4 * 10) = 0.25
    assert metrics.gini(np.array([4.0, 1.0, 3.0, 2.0])) == pytest.approx(0.25)
    # one item gets everything: 1 - 1/I; never-exposed items count as zeros
    assert metrics.gini(np.array([0.0, 0.0, 0.0, 10.0])) == pytest.approx(0.75)
    assert metrics.gini(np.zeros(3)) == 0.0


def test_coverage_and_coverage_turn():
    items = np.array([0, 0, 1, 3])
    assert metrics.coverage(items, n_items=10) == pytest.approx(0.3)
    assert metrics.coverage_turn(items) == pytest.approx(3 / 4)


def test_long_tail_share_and_exposure_gap():
    exposure = np.array([6.0, 2.0, 1.0, 1.0])
    popular = np.array([True, False, False, False])
    assert metrics.long_tail_share(exposure, popular) == pytest.approx(0.4)
    # popular group: 60% of exposure for 25% of the catalogue
    assert metrics.exposure_gap(exposure, popular) == pytest.approx(0.35)
    # exposure proportional to group size: no gap
    assert metrics.exposure_gap(np.ones(4), popular) == pytest.approx(0.0)


def test_novelty_is_minus_log_popularity_share():
    popularity = np.array([1.0, 1.0, 2.0])
    np.testing.assert_allclose(metrics.novelty(np.array([2, 0]), popularity), [np.log(2), np.log(4)])


def test_majority_categories_from_the_worlds_positives():
    # items 0,1 in category 0, item 2 in category 1, item 3 in category 2
    matrix = np.array([[1.0, 0.9, 0.0, 0.0],   # user 0 likes items 0, 1
                       [0.7, 0.0, 0.6, 0.1],   # user 1 likes items 0, 2 (0.6 is the threshold)
                       [0.0, 0.5, 0.0, 2.0]], np.float32)  # user 2 likes item 3
    world = hand_world([[0], [0], [1], [2]], 3, reward_matrix=matrix)
    # positives per category: 3, 1, 1 -> cumulative shares 0.6, 0.8, 1.0 -> keep while <= 0.8
    np.testing.assert_array_equal(metrics.majority_categories(world), [True, True, False])
    is_major = metrics.mcd(np.array([0, 2, 3, 3]), world.item_cats, metrics.majority_categories(world))
    np.testing.assert_array_equal(is_major, [True, True, False, False])


def test_majority_categories_keeps_at_least_one():
    matrix = np.array([[1.0, 1.0, 0.0]], np.float32)  # every positive in category 0: share 1.0 > 0.8
    world = hand_world([[0], [0], [1]], 2, n_users=1, reward_matrix=matrix)
    np.testing.assert_array_equal(metrics.majority_categories(world), [True, False])


def test_session_diversity_hand_case_and_brute_force():
    emb = np.eye(3, dtype=np.float32)
    episode = np.array([0, 0, 1, 1, 1, 2])
    items = np.array([0, 1, 2, 2, 2, 0])
    diversity = metrics.session_diversity(episode, items, emb, 3)
    assert diversity[0] == pytest.approx(1.0)  # orthogonal items
    assert diversity[1] == pytest.approx(0.0)  # the same item three times
    assert np.isnan(diversity[2])  # a single recommendation has no pairs

    rng = np.random.default_rng(0)
    emb = rng.standard_normal((20, 4))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    items = rng.integers(0, 20, size=7)
    sims = emb[items] @ emb[items].T
    expected = 1 - (sims.sum() - 7) / (7 * 6)
    assert metrics.session_diversity(np.zeros(7, int), items, emb, 1)[0] == pytest.approx(expected)


def test_denoising_error_is_one_minus_cosine():
    truth = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    estimate = np.array([[3.0, 0.0], [1.0, 0.0], [-1.0, -1.0]])
    np.testing.assert_allclose(metrics.denoising_error(estimate, truth), [0.0, 1.0, 2.0], atol=1e-12)
    with pytest.raises(ValueError, match="shape"):
        metrics.denoising_error(np.ones((2, 3)), np.ones((2, 2)))


def test_confidence_intervals():
    mean, half = metrics.mean_ci95(np.array([1.0, 2.0, 3.0, np.nan]))
    assert mean == pytest.approx(2.0)
    assert half == pytest.approx(1.96 / np.sqrt(3))
    ratio, half = metrics.ratio_ci95(np.array([2.0, 4.0]), np.array([1.0, 2.0]))
    assert (ratio, half) == (pytest.approx(2.0), pytest.approx(0.0))
    ratio, half = metrics.ratio_ci95(np.array([1.0, 3.0]), np.array([1.0, 1.0]))
    assert ratio == pytest.approx(2.0)
    assert half == pytest.approx(1.96 * np.std([-1.0, 1.0], ddof=1) / np.sqrt(2))
