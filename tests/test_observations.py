"""The same-step pair of observations around a reset (``Simulator.observe_around_reset``, the vector env's
``final_obs`` and returned observation)."""

from __future__ import annotations

import numpy as np
import pytest

from recgym.envs.core import build_simulator


@pytest.mark.parametrize("world, options", [
    ("synthetic", {}), ("synthetic-v1", {}), ("synthetic-v1", {"slate_size": 3}),
    ("synthetic-v1", {"episode": "lifetime", "lifetime_sessions": 2}),
])
def test_observations_around_a_reset_match_observe(world, options):
    """``before`` is what ``observe()`` reads before the resets and ``after`` what it reads after them:
    every key, every row; the rows that did not restart are the same in both."""
    sim = build_simulator(24, world, world_options={"n_users": 64, "n_items": 90}, seed=3, **options)
    sim.reset(seed=3)
    actions = np.random.default_rng(0).integers(0, sim.world.n_items, size=(6, 24, sim.params.slate_size))
    for step_actions in actions:
        sim.step(step_actions.reshape(sim.n_sessions, -1).squeeze(1) if sim.params.slate_size == 1 else step_actions)
    slots = np.array([1, 5, 6, 20])
    expected_before = sim.observe()
    before, after = sim.observe_around_reset(slots)
    expected_after = sim.observe()
    assert before.keys() == after.keys() == expected_before.keys()
    for key in before:
        np.testing.assert_array_equal(before[key], expected_before[key], err_msg=key)
        np.testing.assert_array_equal(after[key], expected_after[key], err_msg=key)
    kept = np.setdiff1d(np.arange(24), slots)
    np.testing.assert_array_equal(after["item_ids"][kept], before["item_ids"][kept])
    assert (after["item_ids"][slots] == -1).all() and (before["item_ids"][slots] >= 0).any()  # new sessions: empty history


def test_observe_around_reset_refuses_a_bad_slot_and_keeps_the_sessions():
    sim = build_simulator(8, "synthetic-v1", world_options={"n_users": 32, "n_items": 40}, seed=0)
    sim.reset(seed=0)
    users, state = sim.user.copy(), sim.session_rng.bit_generator.state
    with pytest.raises(ValueError, match=r"slots holds 8, outside \[0, 7\]"):
        sim.observe_around_reset(np.array([2, 8]))
    np.testing.assert_array_equal(sim.user, users)
    assert sim.session_rng.bit_generator.state == state
