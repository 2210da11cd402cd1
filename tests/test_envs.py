"""The Gymnasium, vector and SB3 views: API conformance, determinism, autoreset, training."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode
from stable_baselines3 import PPO
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import recgym
from recgym.envs import RecSysVectorEnv
from recgym.envs.sb3 import SB3VecEnv

IDS = list(recgym.ENV_IDS)


@pytest.mark.parametrize("env_id", IDS)
def test_gymnasium_and_sb3_env_checkers_pass(env_id):
    env = gym.make(env_id)
    check_env(env.unwrapped, skip_render_check=False)
    sb3_check_env(env.unwrapped)


@pytest.mark.parametrize("env_id", IDS)
def test_ppo_learns_2000_steps_on_each_id(env_id):
    model = PPO("MultiInputPolicy", gym.make(env_id), n_steps=256, batch_size=64, n_epochs=1, seed=0, device="cpu")
    model.learn(2_000)
    assert model.num_timesteps >= 2_000


def rollout(env, seed, steps=60):
    obs, info = env.reset(seed=seed)
    env.action_space.seed(seed)
    trace = [obs["item_ids"].copy()]
    for _ in range(steps):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        trace.append((obs["item_ids"].copy(), obs["feedback"].copy(), np.asarray(reward).copy(), info["true_reward"]))
        if np.ndim(terminated) == 0 and (terminated or truncated):
            obs, info = env.reset()
    return trace


def assert_same(a, b):
    for x, y in zip(a, b, strict=True):
        for u, v in zip(x if isinstance(x, tuple) else (x,), y if isinstance(y, tuple) else (y,), strict=True):
            np.testing.assert_array_equal(u, v)


def test_same_seed_same_trajectory_single_env():
    assert_same(rollout(gym.make("recgym/KuaiRec-v0"), 3), rollout(gym.make("recgym/KuaiRec-v0"), 3))
    with pytest.raises(AssertionError):
        assert_same(rollout(gym.make("recgym/KuaiRec-v0"), 3), rollout(gym.make("recgym/KuaiRec-v0"), 4))


def test_same_seed_same_trajectory_vector_env():
    def make():
        return gym.make_vec("recgym/KuaiRec-v0", num_envs=32, vectorization_mode="vector_entry_point")

    assert_same(rollout(make(), 7, 40), rollout(make(), 7, 40))


def test_make_vec_uses_the_native_batched_env_and_same_step_autoreset_replaces_users():
    venv = gym.make_vec("recgym/Synthetic-v0", num_envs=16, vectorization_mode="vector_entry_point", max_turn=3,
                        leave_window=0, patience=0.0, autoreset_mode="SameStep")
    assert isinstance(venv, RecSysVectorEnv)
    assert venv.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    obs, _ = venv.reset(seed=0)
    rng = np.random.default_rng(0)
    for step in range(3):
        actions = np.array([rng.choice(np.flatnonzero(m)) for m in venv.action_masks()])
        obs, reward, terminated, truncated, info = venv.step(actions)
    done = terminated | truncated
    assert done.all() and truncated[~terminated].all()
    assert (obs["step"] == 0).all() and (obs["item_ids"] == -1).all()  # replaced by new users
    assert info["_final_obs"].all()
    assert (info["final_obs"]["item_ids"][truncated] >= 0).sum(axis=1).min() == 3  # departing users' last obs
    assert venv.action_masks().all()  # new sessions start unmasked


def test_sb3_adapter_reports_terminal_observation_and_time_limit_truncation():
    venv = SB3VecEnv("recgym/Synthetic-v0", num_envs=8, max_turn=2, leave_window=0, patience=0.0)
    venv.seed(0)
    obs = venv.reset()
    assert obs["item_ids"].shape == (8, 10)
    venv.step(np.arange(8))
    _, rewards, dones, infos = venv.step(np.arange(8, 16))
    assert dones.all() and rewards.dtype == np.float32
    for info in infos:
        assert info["TimeLimit.truncated"] is True
        assert info["terminal_observation"]["item_ids"][-2:].tolist() != [-1, -1]
    assert venv.action_masks().shape == (8, 500)


def test_sb3_adapter_marks_leaving_as_true_termination():
    venv = SB3VecEnv("recgym/Synthetic-v0", num_envs=4, max_turn=30, leave_window=0, patience=0.0,
                     popular_streak=1)
    venv.reset()
    popular = int(np.argmax(venv.venv.world.pop_prior))
    _, _, dones, infos = venv.step(np.full(4, popular))
    assert dones.all() and not any(info["TimeLimit.truncated"] for info in infos)


def test_maskable_ppo_trains_in_no_repeat_mode():
    from sb3_contrib import MaskablePPO

    venv = SB3VecEnv("recgym/Synthetic-v0", num_envs=8, mode="NX_0")
    model = MaskablePPO("MultiInputPolicy", venv, n_steps=32, batch_size=64, n_epochs=1, seed=0, device="cpu")
    model.learn(512)
    obs = venv.reset()
    for _ in range(5):  # masked prediction never repeats an item within a session
        masks = venv.action_masks()
        actions, _ = model.predict(obs, action_masks=masks, deterministic=True)
        assert masks[np.arange(8), actions].all()
        obs, _, _, _ = venv.step(actions)


def test_no_repeat_mode_masks_seen_items_and_pays_nothing_for_repeats():
    env = gym.make("recgym/Synthetic-v0", mode="NX_0", leave_window=0, patience=0.0)
    _, info = env.reset(seed=0)
    assert info["action_mask"].all()
    _, first, _, _, info = env.step(5)
    assert not info["action_mask"][5] and info["action_mask"].sum() == 499
    _, again, _, _, info = env.step(5)
    assert first > 0 and again == 0.0 and info["repeated"]


def test_nx_10_forces_length_ten():
    env = gym.make("recgym/KuaiRec-v0", mode="NX_10")
    env.reset(seed=0)
    lengths = []
    for _ in range(3):
        env.reset()
        for t in range(1, 100):
            _, _, terminated, truncated, _ = env.step(t * 7)
            if terminated or truncated:
                lengths.append(t)
                assert truncated and not terminated
                break
    assert lengths == [10, 10, 10]


def test_slate_variant_consumes_one_item_of_the_slate():
    env = gym.make("recgym/Synthetic-v0", slate_size=5)
    assert isinstance(env.action_space, gym.spaces.MultiDiscrete) and env.action_space.shape == (5,)
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.array([1, 2, 3, 4, 5]))
    assert info["item"] in {1, 2, 3, 4, 5}
    _, _, _, _, info = env.step(np.array([6, 6, 7, 8, 9]))  # a repeated id is shown once
    assert info["item"] in {6, 7, 8, 9}


def test_reset_options_choose_the_user_and_reject_unknown_keys():
    env = gym.make("recgym/Synthetic-v0")
    _, info = env.reset(seed=0, options={"user_id": 17})
    assert info["user_id"] == 17
    with pytest.raises(ValueError, match="unknown reset option"):
        env.reset(options={"usr": 1})
    with pytest.raises(ValueError, match=r"user_id must be an integer in \[0, 199\]"):
        env.reset(options={"user_id": 200})


def test_shared_catalogue_counts_persist_across_episodes_until_reseeded():
    env = gym.make("recgym/Synthetic-v0", leave_window=0, patience=0.0, max_turn=2)
    env.reset(seed=0)
    env.step(3)
    env.reset()
    env.step(3)
    assert env.unwrapped.sim.exposure[3] == 2
    env.reset(seed=0)
    assert env.unwrapped.sim.exposure.sum() == 0


def test_render_ansi_describes_the_last_step():
    env = gym.make("recgym/Synthetic-v0", render_mode="ansi")
    env.reset(seed=0)
    env.step(4)
    assert "item=4" in env.render() and "true_reward=" in env.render()


def test_idle_rows_keep_their_state_and_add_nothing_to_the_shared_counts():
    venv = gym.make_vec("recgym/Synthetic-v0", num_envs=4, vectorization_mode="vector_entry_point",
                        leave_window=0, patience=0.0)
    venv.reset(seed=0)
    venv.step(np.array([1, 2, 3, 4]))
    before = venv.sim.observe()
    exposure = venv.sim.exposure.copy()
    active = np.array([True, False, True, False])
    obs, reward, terminated, truncated, _ = venv.step(np.array([5, 6, 7, 8]), active=active)
    for key in before:
        np.testing.assert_array_equal(obs[key][~active], before[key][~active])
    assert (obs["item_ids"][active, -1] == [5, 7]).all()
    assert (reward[~active] == 0).all() and not (terminated | truncated)[~active].any()
    assert venv.sim.exposure.sum() - exposure.sum() == 2 and venv.sim.exposure[[6, 8]].tolist() == exposure[[6, 8]].tolist()


def test_one_sessions_fate_never_shifts_anothers_random_draws():
    """Within a session, row 0's rewards are identical whether row 1 idles, leaves and restarts, or
    carries on (new sessions draw their user from a separate generator)."""
    order = np.argsort(recgym.world.synthetic_world().pop_prior)
    tail, popular = order[:12], int(order[-1])

    def row0_rewards(row1_actions, row1_active):
        venv = gym.make_vec("recgym/Synthetic-v0", num_envs=2, vectorization_mode="vector_entry_point",
                            popularity_feedback=0.0, popular_streak=1, leave_window=0, patience=0.0, mode="Free")
        venv.reset(seed=11)
        out = []
        for step in range(12):
            _, reward, _, _, _ = venv.step(np.array([tail[step], row1_actions[step]]),
                                           active=np.array([True, row1_active[step]]))
            out.append(reward[0])
        return np.array(out)

    always = [True] * 12
    baseline = row0_rewards(tail, always)
    np.testing.assert_array_equal(baseline, row0_rewards([popular] * 12, always))  # row 1 leaves every step
    np.testing.assert_array_equal(baseline, row0_rewards(tail, [i % 3 == 0 for i in range(12)]))


def test_next_step_autoreset_returns_the_last_observation_then_restarts():
    venv = gym.make_vec("recgym/Synthetic-v0", num_envs=3, vectorization_mode="vector_entry_point",
                        autoreset_mode="NextStep", max_turn=3, leave_window=0, patience=0.0)
    assert venv.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    obs, _ = venv.reset(seed=0)
    steps = []
    for t in range(8):
        obs, reward, terminated, truncated, _ = venv.step(np.full(3, t))
        steps.append(round(float(obs["step"][0, 0]) * 3))  # step / max_turn in float32
        if t == 3:  # the step after the end: new sessions, reward 0, not done, action ignored
            assert (reward == 0).all() and not (terminated | truncated).any() and (obs["item_ids"] == -1).all()
    assert steps == [1, 2, 3, 0, 1, 2, 3, 0]
    with pytest.raises(ValueError, match="autoreset_mode must be one of"):
        gym.make_vec("recgym/Synthetic-v0", num_envs=2, vectorization_mode="vector_entry_point", autoreset_mode="x")
