"""Bad input gets a one-line ValueError naming the problem, and leaves the state intact."""

from __future__ import annotations

import dataclasses
import math

import gymnasium as gym
import numpy as np
import pytest

import recgym  # noqa: F401  (registers the ids)
from recgym.params import SimParams
from recgym.world import synthetic_world


@pytest.mark.parametrize(
    "action, message",
    [
        (500, r"action 500 is out of range: item ids are in \[0, 499\]"),
        (-1, r"action -1 is out of range"),
        (3.0, "action must be an integer item id"),
        (True, "action must be an integer item id"),
        ("7", "action must be an integer item id"),
        (np.array([1, 2]), r"action must have shape \(\)"),
    ],
)
def test_bad_actions_raise_and_leave_the_state_intact(action, message):
    env = gym.make("recgym/Synthetic-v0")
    obs, _ = env.reset(seed=0)
    env.step(1)
    sim = env.unwrapped.sim
    before = (sim.observe(), sim.step_count.copy(), sim.exposure.copy(), sim.rng.bit_generator.state)
    with pytest.raises(ValueError, match=message):
        env.step(action)
    after = (sim.observe(), sim.step_count.copy(), sim.exposure.copy(), sim.rng.bit_generator.state)
    for key in before[0]:
        np.testing.assert_array_equal(before[0][key], after[0][key])
    np.testing.assert_array_equal(before[1], after[1])
    np.testing.assert_array_equal(before[2], after[2])
    assert before[3] == after[3]


def test_vector_env_rejects_wrong_shapes_and_dtypes():
    venv = gym.make_vec("recgym/Synthetic-v0", num_envs=4, vectorization_mode="vector_entry_point")
    venv.reset(seed=0)
    with pytest.raises(ValueError, match=r"actions must have shape \(4,\)"):
        venv.step(np.zeros(3, int))
    with pytest.raises(ValueError, match="integer item ids"):
        venv.step(np.zeros(4))
    with pytest.raises(ValueError, match="or a list of 4 such ints"):
        venv.reset(seed=[1, 2, 3])


def test_unknown_option_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['max_turns'\]; valid options: max_turn, mode"):
        gym.make("recgym/KuaiRec-v0", max_turns=10)


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("novelty_weight", math.nan, "novelty_weight must be finite"),
        ("popularity_noise", math.inf, "popularity_noise must be finite"),
        ("exposure_bias", 1.5, r"exposure_bias must be in \[0.0, 1.0\], got 1.5"),
        ("max_turn", 0, r"max_turn must be in \[1, 10000\]"),
        ("max_turn", 2.5, "max_turn must be an integer"),
        ("mode", "NX0", r"mode must be one of \['Free', 'NX_0', 'NX_10'\]"),
        ("boredom", -0.1, r"boredom must be in \[0.0, 1000000.0\]"),
        ("reward_signal", "clicks", "reward_signal must be one of"),
    ],
)
def test_bad_config_values_are_named(option, value, message):
    with pytest.raises(ValueError, match=message):
        SimParams.from_kwargs(**{option: value})
    with pytest.raises(ValueError, match=message):
        gym.make("recgym/Synthetic-v0", **{option: value})


def test_bad_world_choices_are_named():
    with pytest.raises(ValueError, match="unknown world 'kuairek'; valid worlds: kuairec, kuairand, synthetic"):
        gym.make("recgym/KuaiRec-v0", world="kuairek")
    with pytest.raises(ValueError, match="n_items must be an integer >= 2"):
        gym.make("recgym/Synthetic-v0", world_options={"n_items": 1})
    with pytest.raises(ValueError, match="takes only 'seed'"):
        gym.make("recgym/KuaiRec-v0", world_options={"n_items": 10})
    with pytest.raises(ValueError, match="render_mode must be one of"):
        gym.make("recgym/Synthetic-v0", render_mode="human")


@pytest.mark.parametrize("creators, message", [(-1, r"\[-1, "), (2**31, "2147483648"), (0.5, "float64")])
def test_bad_creator_ids_are_named(creators, message):
    """Creator ids index the creator-fatigue buffer, where -1 marks an empty slot."""
    world = synthetic_world()
    item_creator = world.item_creator.astype(type(creators)).copy()
    item_creator[3] = creators
    with pytest.raises(ValueError, match=r"item_creator must hold integer creator ids in \[0, 2\*\*31 - 1\], got .*" + message):
        dataclasses.replace(world, item_creator=item_creator)


@pytest.mark.parametrize(
    "slots, users, message",
    [
        (np.array([5]), None, r"slots holds 5, outside \[0, 2\]"),
        (np.array([-1]), None, r"slots holds -1, outside \[0, 2\]"),
        (np.array([0]), np.array([200]), r"users holds 200, outside \[0, 199\]"),
        (np.array([0.5]), None, "slots must be a 1-D array of integer indices"),
        (np.array([0, 1]), np.array([1]), r"users must match slots in shape \(2,\)"),
    ],
)
def test_bad_session_restarts_raise_and_leave_the_state_intact(slots, users, message):
    """The kernels index without bounds checks, so the simulator checks indices before calling them."""
    from recgym.simulator import Simulator
    from recgym.world import synthetic_world

    sim = Simulator(synthetic_world(), SimParams(), 3, seed=0)
    sim.reset(0)
    sim.step(np.array([1, 2, 3]))
    before = (sim.user.copy(), sim.step_count.copy(), sim.session_rng.bit_generator.state)
    with pytest.raises(ValueError, match=message):
        sim.reset_sessions(slots, users)
    assert np.array_equal(sim.user, before[0]) and np.array_equal(sim.step_count, before[1])
    assert sim.session_rng.bit_generator.state == before[2]
