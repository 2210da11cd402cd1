"""Hardening of the PettingZoo population: the env layer imports neither torch nor SB3, a bad action
is refused on its own agent's turn with state intact (AEC and parallel), masks are int8."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pettingzoo
import pytest
from pettingzoo.test import api_test, parallel_api_test

from recgym.envs import population_v0

SMALL = dict(world="synthetic", world_options={"n_items": 60})


# ------------------------------------------------------------------ layering
ENV_LAYER_SCRIPT = """
import json, sys
import gymnasium as gym, numpy as np, pettingzoo
import recgym, recgym.envs
import recgym.dynamics, recgym.envs.core, recgym.envs.population, recgym.envs.population_v0, recgym.envs.recsys
import recgym.envs.vector, recgym.loaders, recgym.metrics, recgym.params, recgym.simulator, recgym.world
options = dict(world="synthetic", world_options={"n_items": 60}, n_users=3)
for env in (pettingzoo.make("parallel", "recgym/Population-v0", **options),
            recgym.envs.population_v0.parallel_env(**options)):
    env.reset(seed=0)
    env.step({agent: 1 for agent in env.agents})
aec = pettingzoo.make("aec", "recgym/Population-v0", **options)
aec.reset(seed=0)
aec.step(1)
venv = gym.make_vec("recgym/Synthetic-v0", num_envs=2, vectorization_mode="vector_entry_point")
venv.reset(seed=0)
venv.step(np.array([1, 2]))
print(json.dumps(sorted(name for name in sys.modules if name.split(".")[0] in ("torch", "stable_baselines3"))))
"""


def test_the_env_layer_and_the_population_env_import_neither_torch_nor_sb3():
    done = subprocess.run([sys.executable, "-c", ENV_LAYER_SCRIPT], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == []


# ------------------------------------------------------------------ AEC: a bad action on its own turn
BAD_ACTIONS = [5000, -1, True, np.True_, 2.5, np.float32(3.0), np.array([1]), np.array(2.0), [1, 2], "3", None]


def aec_env(**kwargs):
    return population_v0.env(**{**SMALL, "n_users": 3, "max_cycles": 8, **kwargs})


def play(env, first_actions: list, turn: int = 0) -> list[tuple]:
    """Step an AEC env to the end with ``first_actions`` first, then item (turn * 7 + agent) % 60,
    counting turns from ``turn``; returns every (agent, reward, terminated, truncated) ``last()`` gave."""
    trace = []
    for agent in env.agent_iter():
        _, reward, terminated, truncated, _ = env.last()
        trace.append((agent, reward, terminated, truncated))
        if terminated or truncated:
            action = None
        elif turn < len(first_actions):
            action = first_actions[turn]
        else:
            action = (turn * 7 + int(agent.split("_")[1])) % 60
        env.step(action)
        turn += 1
    return trace


@pytest.mark.parametrize("bad", BAD_ACTIONS, ids=repr)
def test_aec_refuses_a_bad_action_on_its_own_agents_turn_and_stays_usable(bad):
    reference = aec_env()
    reference.reset(seed=3)
    expected = play(reference, [])

    env = aec_env()
    env.reset(seed=3)
    with pytest.raises(ValueError) as refused:
        env.step(bad)
    message = str(refused.value)
    assert "\n" not in message and "'user_0'" in message
    assert env.agent_selection == "user_0"  # still user_0's turn: nothing was stored
    assert play(env, []) == expected  # the refused action left no trace


def test_aec_refuses_a_bad_action_after_other_agents_acted():
    reference = aec_env()
    reference.reset(seed=4)
    expected = play(reference, [11, 12])
    env = aec_env()
    env.reset(seed=4)
    env.step(11)
    with pytest.raises(ValueError, match="'user_1': item id 60 is outside \\[0, 59\\]"):
        env.step(60)
    env.step(12)
    assert [turn[0] for turn in expected[:3]] == ["user_0", "user_1", "user_2"]
    assert play(env, [], turn=2) == expected[2:]


def test_aec_done_agent_must_step_with_none_and_a_wrong_step_does_not_wedge():
    env = aec_env(max_turn=2, leave_window=0, patience=0.0, max_cycles=6)  # everyone is truncated at turn 2
    env.reset(seed=0)
    for _ in range(6):  # two platform steps of three users
        env.step(1 if env.agent_selection != "user_2" else 2)
    dead = env.agent_selection
    assert env.truncations[dead]
    with pytest.raises(ValueError, match=f"'{dead}' is done .* takes None, got 4"):
        env.step(4)
    env.step(None)  # the done agent is removed as PettingZoo expects
    assert dead not in env.agents
    play(env, [])


def test_aec_masks_are_int8_and_sample_valid_actions():
    env = aec_env(mode="NX_0")
    env.reset(seed=0)
    for agent in env.agent_iter(30):
        _, _, terminated, truncated, info = env.last()
        mask = info["action_mask"]
        assert mask.dtype == np.int8 and mask.shape == (60,)
        action = None if terminated or truncated else env.action_space(agent).sample(mask=mask)
        assert action is None or mask[action] == 1
        env.step(action)


def test_pettingzoo_api_tests_pass_with_checked_actions():
    api_test(aec_env(mode="NX_0", max_arrivals=6, max_cycles=20), num_cycles=60)
    parallel_api_test(population_v0.parallel_env(**SMALL, n_users=4, slate_size=3, max_cycles=20), num_cycles=60)


# ------------------------------------------------------------------ parallel: bools and other bad items
@pytest.mark.parametrize("slate_size, bad", [
    (1, True), (1, np.True_), (1, np.array(True)), (1, np.array([3])), (1, 2.0), (1, "3"), (1, None), (1, 60),
    (3, [1, True, 2]), (3, (1, np.False_, 2)), (3, np.array([True, False, True])), (3, [1, 2]),
    (3, np.array([1.0, 2.0, 3.0])), (3, [[1, 2, 3]]), (3, [1, 2, 60]), (3, np.array([1, -1, 2])),
], ids=repr)
def test_parallel_env_refuses_bools_and_other_invalid_actions_with_state_intact(slate_size, bad):
    def valid(env, step):
        if slate_size == 1:
            return {agent: (step * 5 + i) % 60 for i, agent in enumerate(env.agents)}
        return {agent: np.array([step, step + 1, i + 30]) for i, agent in enumerate(env.agents)}

    options = {**SMALL, "n_users": 3, "max_cycles": 5, "slate_size": slate_size}
    reference, env = population_v0.parallel_env(**options), population_v0.parallel_env(**options)
    reference.reset(seed=1)
    env.reset(seed=1)
    with pytest.raises(ValueError) as refused:
        env.step({**valid(env, 0), "user_1": bad})
    message = str(refused.value)
    assert "\n" not in message and "'user_1'" in message
    assert env.agents == ["user_0", "user_1", "user_2"] and env.sim.exposure.sum() == 0
    for step in range(5):  # then the run is the reference's, bit for bit
        got, want = env.step(valid(env, step)), reference.step(valid(reference, step))
        assert got[1:4] == want[1:4]


def test_parallel_env_accepts_every_integer_kind_it_samples():
    env = population_v0.parallel_env(**SMALL, n_users=3)
    env.reset(seed=0)
    env.step({"user_0": 1, "user_1": np.int32(2), "user_2": np.uint8(3)})
    env.step({"user_0": np.int64(4), "user_1": np.array(5), "user_2": np.uint64(6)})
    assert env.sim.exposure[[1, 2, 3, 4, 5, 6]].tolist() == [1.0] * 6
