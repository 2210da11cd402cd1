"""The leave rules fire exactly as specified in the reference, on hand-made sequences."""

from __future__ import annotations

import numpy as np

from conftest import hand_sim, hand_world
from recgym.dynamics import LEAVE_CATEGORY_WINDOW, LEAVE_NONE, LEAVE_PATIENCE, LEAVE_POPULAR_STREAK

# Items: 0 -> {A}, 1 -> {B}, 2 -> {A, C}, 3 -> {C}, 4 -> {D}, 5 -> {} (no category)
CATS = [[0], [1], [0, 2], [2], [3], []]


def run(sim, items):
    """Step one session through ``items``; return the leave codes, stopping at the first leave."""
    codes = []
    for item in items:
        result = sim.step(np.array([item]))
        codes.append(int(result.leave_reason[0]))
        if result.terminated[0]:
            break
    return codes


def test_dorl_window_fires_when_a_category_repeats_inside_the_window():
    sim = hand_sim(hand_world(CATS, 4), leave_window=2, leave_threshold=0)
    # A, B, then {A, C}: A is among the last 2 items -> leave at the third step.
    assert run(sim, [0, 1, 2]) == [LEAVE_NONE, LEAVE_NONE, LEAVE_CATEGORY_WINDOW]


def test_dorl_window_forgets_items_that_slid_out():
    sim = hand_sim(hand_world(CATS, 4), leave_window=2, leave_threshold=0)
    # A, B, D, then A again: the first A slid out of the 2-item window -> stays.
    assert run(sim, [0, 1, 4, 0]) == [LEAVE_NONE] * 4
    # ...but a window of 3 still holds it.
    sim = hand_sim(hand_world(CATS, 4), leave_window=3, leave_threshold=0)
    assert run(sim, [0, 1, 4, 0]) == [LEAVE_NONE] * 3 + [LEAVE_CATEGORY_WINDOW]


def test_dorl_threshold_counts_occurrences_and_step_zero_never_quits():
    sim = hand_sim(hand_world(CATS, 4), leave_window=4, leave_threshold=1)
    # A once in the window is allowed with threshold 1; the third A (two in the window) quits.
    assert run(sim, [0, 1, 2, 0]) == [LEAVE_NONE, LEAVE_NONE, LEAVE_NONE, LEAVE_CATEGORY_WINDOW]
    sim = hand_sim(hand_world(CATS, 4), leave_window=4, leave_threshold=0)
    assert run(sim, [5, 5, 5]) == [LEAVE_NONE] * 3  # items without categories never trigger it


def test_popular_streak_ends_after_w_consecutive_popular_items():
    pop = [100.0, 90.0, 80.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]  # top 20% of 10 items = items 0, 1
    world = hand_world([[i] for i in range(10)], 10, pop_prior=pop)
    sim = hand_sim(world, popular_streak=3, popular_fraction=0.2)
    # popular, popular, tail (resets), popular, popular, popular -> leaves on the 6th step
    assert run(sim, [0, 1, 3, 0, 1, 0]) == [LEAVE_NONE] * 5 + [LEAVE_POPULAR_STREAK]
    sim = hand_sim(world, popular_streak=2, popular_fraction=0.2)
    assert run(sim, [2, 0, 1]) == [LEAVE_NONE, LEAVE_NONE, LEAVE_POPULAR_STREAK]  # item 2 is not top-20%


def test_patience_drains_by_the_reward_shortfall():
    matrix = np.array([[0.0, 1.0, 0.5]], np.float32)
    world = hand_world([[0], [1], [2]], 3, n_users=1, reward_matrix=matrix)
    sim = hand_sim(world, patience=1.0, patience_threshold=0.6)
    # shortfalls: item 1 -> 0, item 2 -> 0.1, item 0 -> 0.6 (total 0.7 < 1), item 0 -> total 1.3 -> leave
    assert run(sim, [1, 2, 0, 0]) == [LEAVE_NONE, LEAVE_NONE, LEAVE_NONE, LEAVE_PATIENCE]
    np.testing.assert_allclose(sim.patience, [1.0 - 1.3], atol=1e-6)


def test_leaving_step_still_pays_its_reward_as_in_dorl():
    matrix = np.array([[1.0, 2.0, 3.0, 4.0, 0.5, 0.25]], np.float32)
    sim = hand_sim(hand_world(CATS, 4, n_users=1, reward_matrix=matrix), leave_window=2)
    rewards = [float(sim.step(np.array([i])).reward[0]) for i in (0, 1, 2)]
    assert rewards == [1.0, 2.0, 3.0]


def test_leave_mask_predicts_the_deterministic_rules():
    sim = hand_sim(hand_world(CATS, 4), leave_window=2)
    sim.step(np.array([0]))  # window now holds A
    mask = sim.leave_mask()[0]
    assert mask.tolist() == [True, False, True, False, False, False]  # items carrying A would end it
