"""The v1 ids: registered, both env checkers, a short PPO.learn, same seed => same trajectory, the
platform's logs in the observation and the info."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3 import PPO
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import recgym  # noqa: F401  (registers the ids)
from recgym.params import SIGNALS

V1_IDS = ["recgym/Synthetic-v1", "recgym/KuaiRec-v1", "recgym/KuaiRand-v1"]


@pytest.mark.parametrize("env_id", V1_IDS)
def test_checkers_and_ppo_learn(env_id):
    gym_check_env(gym.make(env_id).unwrapped, skip_render_check=True)
    sb3_check_env(gym.make(env_id))
    model = PPO("MultiInputPolicy", gym.make(env_id), n_steps=64, batch_size=32, n_epochs=1, seed=0)
    model.learn(128)


def rollout(env_id: str, seed: int, steps: int = 12) -> list:
    env = gym.make(env_id)
    env.action_space.seed(seed)
    obs, info = env.reset(seed=seed)
    out = []
    for t in range(steps):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample(mask=info.get("action_mask")))
        out.append((reward, info["true_reward"], tuple(info["signals"].values()), obs["signals"].tobytes(),
                    obs["popularity"].tobytes(), obs["hour"].tobytes(), obs["weekday"].tobytes()))
        if terminated or truncated:
            obs, info = env.reset()
    return out


@pytest.mark.parametrize("env_id", ["recgym/Synthetic-v1", "recgym/KuaiRec-v1"])
def test_same_seed_same_trajectory(env_id):
    first = rollout(env_id, 5)
    assert first == rollout(env_id, 5)
    assert first != rollout(env_id, 6)


def test_v1_defaults_observation_and_info():
    env = gym.make("recgym/KuaiRec-v1")
    params = env.unwrapped.params
    assert params.reward_signal == "observed" and params.popularity_noise == 0 and params.exposure_bias == 0
    obs, info = env.reset(seed=0)
    assert set(obs) == {"item_ids", "embeddings", "feedback", "step", "signals", "popularity", "exposure", "hour",
                        "weekday", "user_id", "user_features", "position"}
    assert obs["user_id"][0] == info["user_id"]
    np.testing.assert_allclose(np.hypot(*obs["hour"]), 1, rtol=1e-6)
    top = int(np.argmax(env.unwrapped.world.pop_prior))
    obs, reward, *_, info = env.step(top)
    assert list(info["signals"]) == list(SIGNALS)
    np.testing.assert_array_equal(obs["signals"][-1], np.float32(list(info["signals"].values())))
    assert obs["feedback"][-1] == np.float32(reward) == np.float32(info["observed_feedback"])
    assert obs["popularity"][-1] == np.float32(np.log1p(env.unwrapped.world.pop_prior[top]))
    assert obs["exposure"][-1] == 0  # logged before this impression was counted
    true_env = gym.make("recgym/KuaiRec-v1", reward_signal="true")
    true_env.reset(seed=0)
    _, reward, *_, info = true_env.step(top)
    assert reward == info["true_reward"]


def test_kuairand_v1_observes_the_real_users_features():
    env = gym.make("recgym/KuaiRand-v1")
    obs, info = env.reset(seed=1, options={"user_id": 0})
    np.testing.assert_array_equal(obs["user_features"], env.unwrapped.world.user_features[0])
    assert obs["user_features"].shape == (34,) and obs["user_features"][0] == 1.0  # user 0 is full_active


def test_v0_ids_unchanged_and_refuse_v1_knobs():
    obs, _ = gym.make("recgym/KuaiRec-v0").reset(seed=0)
    assert set(obs) == {"item_ids", "embeddings", "feedback", "step"}
    with pytest.raises(ValueError, match="conformity: v1 knob"):
        gym.make("recgym/KuaiRec-v0", conformity=2.0)
    with pytest.raises(ValueError, match="recgym/KuaiRec-v1 is the 'kuairec-v1' world"):
        gym.make("recgym/KuaiRec-v1", world="kuairec")


def test_vector_env_reports_the_logged_signals():
    venv = gym.make_vec("recgym/Synthetic-v1", num_envs=8, vectorization_mode="vector_entry_point")
    venv.reset(seed=0)
    observation, reward, *_, infos = venv.step(np.arange(8))
    assert infos["signals"].shape == (8, 8) and infos["_signals"].all()
    np.testing.assert_array_equal(observation["signals"][:, -1], infos["signals"])
    np.testing.assert_array_equal(reward, infos["observed_feedback"])
