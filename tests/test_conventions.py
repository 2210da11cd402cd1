"""The conventions users expect from a Gymnasium / SB3 env (issue #15), one test per class of defect:
gymnasium's vector API (autoreset modes, seed lists, partial resets, vector wrappers), int8 action
masks, every action-space sample valid (slates included, and SB3 training on slates), SB3's Monitor
conventions and model arguments, ``spec.max_episode_steps``, stepping without a live episode, and
options that would silently change what is measured."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.error import ResetNeeded
from gymnasium.vector import AutoresetMode
from gymnasium.wrappers import vector as vector_wrappers
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

import recgym
from recgym.agents.baselines import RandomPolicy
from recgym.envs import RecSysEnv, RecSysVectorEnv
from recgym.envs.sb3 import SB3VecEnv
from recgym.evaluation import make_eval_env

SYN = "recgym/Synthetic-v0"
FIXED_LENGTH = {"leave_window": 0, "patience": 0.0, "popular_streak": 0}  # sessions last exactly max_turn


def make_vec(num_envs: int = 4, **options):
    return gym.make_vec(SYN, num_envs=num_envs, vectorization_mode="vector_entry_point", **options)


# ---------------------------------------------------------------- gymnasium's vector API
@pytest.mark.parametrize("wrap", [
    vector_wrappers.FlattenObservation,
    lambda env: vector_wrappers.FilterObservation(env, ["item_ids", "step"]),
    vector_wrappers.RecordEpisodeStatistics,
    vector_wrappers.NormalizeReward,
], ids=["flatten", "filter", "episode-statistics", "normalize-reward"])
def test_make_vec_works_under_gymnasium_vector_wrappers(wrap):
    venv = make_vec(max_turn=3, **FIXED_LENGTH)
    assert venv.metadata["autoreset_mode"] is AutoresetMode.NEXT_STEP  # gymnasium's default
    env = wrap(venv)
    env.reset(seed=0)
    env.action_space.seed(0)
    episodes = []
    for _ in range(8):  # 3 steps per session, then the restart step
        *_, infos = env.step(env.action_space.sample())
        if "episode" in infos:
            episodes += infos["episode"]["l"][infos["_episode"]].tolist()
    if isinstance(env, vector_wrappers.RecordEpisodeStatistics):
        assert episodes == [3] * 8


def test_same_step_autoreset_returns_final_info():
    venv = make_vec(autoreset_mode=AutoresetMode.SAME_STEP, max_turn=2, **FIXED_LENGTH)
    venv.reset(seed=0)
    *_, infos = venv.step(np.arange(4))
    assert "final_info" not in infos
    _, _, _, truncated, infos = venv.step(np.arange(4, 8))
    assert truncated.all() and infos["_final_info"].all() and infos["_final_obs"].all()
    for key in ("true_reward", "observed_feedback", "leave_reason", "user_id"):
        np.testing.assert_array_equal(infos["final_info"][key], infos[key])
        assert infos["final_info"][f"_{key}"].all()


def test_reset_takes_a_list_of_per_env_seeds():
    def trajectory(seed, num_envs=4):
        venv = make_vec(num_envs)
        obs, _ = venv.reset(seed=seed)
        rewards = [venv.step(np.arange(num_envs) + 7 * t)[1] for t in range(5)]
        return np.concatenate([obs["item_ids"].ravel(), venv.sim.user, np.concatenate(rewards)])

    first = trajectory([1, 2, 3, 4])
    np.testing.assert_array_equal(first, trajectory([1, 2, 3, 4]))  # deterministic
    assert not np.array_equal(first, trajectory([1, 2, 3, 5]))  # every entry counts
    np.testing.assert_array_equal(trajectory([9], num_envs=1), trajectory(9, num_envs=1))  # [s] is s
    make_vec().reset(seed=[None] * 4)  # gymnasium's "no seed"
    with pytest.raises(ValueError, match="a list of 4 such ints"):
        make_vec().reset(seed=[1, None, 3, 4])
    with pytest.raises(ValueError, match="a list of 4 such ints"):
        make_vec().reset(seed=[1, 2, -3, 4])


def test_reset_mask_restarts_only_those_rows():
    venv = make_vec(**FIXED_LENGTH)
    venv.reset(seed=0)
    for t in range(3):
        venv.step(np.arange(4) + 10 * t)
    before, exposure, users = venv.sim.observe(), venv.sim.exposure.copy(), venv.sim.user.copy()
    mask = np.array([True, False, True, False])
    obs, _ = venv.reset(options={"reset_mask": mask})
    assert (obs["step"][mask] == 0).all() and (obs["item_ids"][mask] == -1).all()
    for key in before:
        np.testing.assert_array_equal(obs[key][~mask], before[key][~mask])
    np.testing.assert_array_equal(venv.sim.user[~mask], users[~mask])
    np.testing.assert_array_equal(venv.sim.exposure, exposure)  # the shared counts are kept
    for bad in (mask.astype(int), np.zeros(4, bool), np.ones(3, bool)):
        with pytest.raises(ValueError, match=r"reset_mask must be a bool array of shape \(4,\)"):
            venv.reset(options={"reset_mask": bad})


def test_disabled_autoreset_keeps_ended_rows_ended_until_reset_mask():
    venv = make_vec(autoreset_mode=AutoresetMode.DISABLED, max_turn=2, **FIXED_LENGTH)
    venv.reset(seed=0)
    venv.step(np.arange(4))
    _, _, _, truncated, _ = venv.step(np.arange(4, 8))
    assert truncated.all()
    with pytest.raises(ResetNeeded, match=r"rows \[0, 1, 2, 3\] ended"):
        venv.step(np.arange(4))
    venv.reset(options={"reset_mask": np.array([True, True, False, False])})
    with pytest.raises(ResetNeeded, match=r"rows \[2, 3\] ended"):
        venv.step(np.arange(4))
    obs, reward, *_ = venv.step(np.arange(4), active=np.array([True, True, False, False]))
    assert (obs["step"][:2, 0] == 0.5).all() and (reward[2:] == 0).all()


def test_every_caller_gets_the_autoreset_it_needs():
    assert SB3VecEnv(SYN, num_envs=2).venv.metadata["autoreset_mode"] is AutoresetMode.SAME_STEP
    assert make_eval_env(SYN, 2).metadata["autoreset_mode"] is AutoresetMode.SAME_STEP
    for mode in (AutoresetMode.NEXT_STEP, AutoresetMode.DISABLED):
        with pytest.raises(ValueError, match="evaluation needs a same-step autoreset env"):
            recgym.evaluate(RandomPolicy(), make_vec(autoreset_mode=mode), episodes=4)
        with pytest.raises(ValueError, match="SB3 needs same-step autoreset"):
            SB3VecEnv(make_vec(autoreset_mode=mode))
    with pytest.raises(ValueError, match="evaluation needs a same-step autoreset env"):
        recgym.evaluate(RandomPolicy(), SYN, episodes=4, autoreset_mode="NextStep")


# ---------------------------------------------------------------- action masks and action samples
def test_action_masks_are_int8_and_sample_with_them():
    env = gym.make(SYN, mode="NX_0", **FIXED_LENGTH)
    _, info = env.reset(seed=0)
    env.action_space.seed(0)
    for _ in range(20):
        mask = info["action_mask"]
        assert mask.dtype == np.int8 and env.unwrapped.action_masks().dtype == np.int8
        action = env.action_space.sample(mask=mask)
        assert mask[action] == 1
        _, _, _, _, info = env.step(action)
        assert info["action_mask"][action] == 0

    slate = gym.make(SYN, mode="NX_0", slate_size=3)
    _, info = slate.reset(seed=0)
    slate.step(np.array([4, 5, 6]))
    _, _, _, _, info = slate.step(np.array([4, 7, 8]))
    slate.action_space.seed(0)
    assert 4 not in slate.action_space.sample(mask=info["action_mask"])
    assert len(info["action_mask"]) == 3 and all(m.dtype == np.int8 and m[4] == 0 for m in info["action_mask"])
    assert slate.unwrapped.action_masks().shape == (3 * 500,) and slate.unwrapped.action_masks().dtype == np.int8

    venv = make_vec(mode="NX_0")
    venv.reset(seed=0)
    venv.step(np.full(4, 9))
    masks = venv.action_masks()
    assert masks.dtype == np.int8 and (masks[:, 9] == 0).all()
    assert (venv.action_space.sample(mask=tuple(masks)) != 9).all()
    sb3 = SB3VecEnv(SYN, num_envs=2, mode="NX_0", slate_size=2)
    sb3.reset()
    assert sb3.action_masks().dtype == np.int8 and sb3.action_masks().shape == (2, 2 * 500)


@pytest.mark.parametrize("slate_size", [1, 10])
def test_every_sample_of_each_action_space_is_a_valid_action(slate_size):
    """1,000 samples of each view's action space step without error (20 items, slates of 10: most
    sampled slates repeat an id)."""
    options = {"world_options": {"n_items": 20}, "slate_size": slate_size, "mode": "NX_0"}
    env = gym.make(SYN, **options)
    env.reset(seed=0)
    env.action_space.seed(0)
    for _ in range(1_000):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    venv = make_vec(8, **options)
    venv.reset(seed=0)
    venv.action_space.seed(0)
    for _ in range(1_000):
        venv.step(venv.action_space.sample())
    sb3 = SB3VecEnv(SYN, num_envs=8, **options)
    sb3.reset()
    sb3.action_space.seed(0)
    for _ in range(1_000):
        sb3.step(np.stack([sb3.action_space.sample() for _ in range(8)]))


def test_a_repeated_slate_id_is_shown_once():
    """[a, a, b] shows a and b once each: a is chosen as often as from [a, b, b] and exposed once."""
    n = 4_000
    venv = make_vec(n, slate_size=3, popularity_feedback=0.0)

    def share_of_first(slate):
        venv.reset(seed=0)
        venv.step(np.tile(slate, (n, 1)))
        return np.mean(venv.sim.recent_items[:, -1] == slate[0]), venv.sim.exposure.copy()

    a, b = 3, 4
    twice_a, exposure = share_of_first([a, a, b])
    twice_b, _ = share_of_first([a, b, b])
    assert abs(twice_a - twice_b) < 0.04  # before: a had two Gumbel draws ([a, a, b] ~ +0.2)
    assert exposure[a] == n and exposure[b] == n and exposure.sum() == 2 * n


@pytest.mark.parametrize("agent", ["ppo", "maskable-ppo"])
def test_ppo_and_maskable_ppo_train_on_slates_from_the_cli(tmp_path, agent):
    from recgym.cli import main

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the note that evaluation needs slate_size=1
        assert main(["train", "--agent", agent, "--env", SYN, "--timesteps", "512", "--num-envs", "8",
                     "--logdir", str(tmp_path), "--option", "slate_size=3", "--option", "mode=NX_0"]) == 0
    checkpoint, = tmp_path.rglob("*.zip")
    from recgym.agents.flat import load_model

    model = load_model(agent, checkpoint, device="cpu")
    assert model.num_timesteps >= 512 and model.action_space.shape == (3,)
    env = SB3VecEnv(SYN, num_envs=4, slate_size=3, mode="NX_0")
    actions, _ = model.predict(env.reset(), deterministic=True)
    assert actions.shape == (4, 3)
    env.step(actions)


# ---------------------------------------------------------------- SB3 conventions
def test_sb3_adapter_emits_monitor_episode_infos_and_step_infos():
    env = SB3VecEnv(SYN, num_envs=4, max_turn=3, **FIXED_LENGTH)
    env.seed(0)
    env.reset()
    returns = np.zeros(4)
    for t in range(3):
        _, rewards, dones, infos = env.step(np.arange(4) + 4 * t)
        returns += rewards
        for i, info in enumerate(infos):
            assert info["true_reward"] == pytest.approx(float(env.last_infos["true_reward"][i]))
            assert {"observed_feedback", "leave_reason", "user_id"} <= info.keys()
    assert dones.all()
    for i, info in enumerate(infos):
        assert info["episode"]["l"] == 3 and info["episode"]["r"] == pytest.approx(returns[i], abs=1e-5)
        assert info["episode"]["t"] >= 0
    assert env.env_is_wrapped(Monitor) == [True] * 4

    from recgym.agents.flat import make_model

    model = make_model("ppo", env, seed=0, n_steps=8, batch_size=32)
    model.learn(64)
    assert len(model.ep_info_buffer) > 0  # what rollout/ep_rew_mean averages
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # evaluate_policy warns when the env is not Monitor-wrapped
        mean, _ = evaluate_policy(model, env, n_eval_episodes=8)
    assert 0 <= mean <= 3 * env.venv.world.reward_max


def test_make_model_and_load_model_honour_their_arguments(tmp_path):
    from recgym.agents.flat import load_model, make_model, train

    env = SB3VecEnv(SYN, num_envs=2)
    assert make_model("ppo", env, verbose=1, batch_size=64).verbose == 1
    assert make_model("ppo", env, batch_size=64).verbose == 0
    _, path = train("ppo", SYN, 64, num_envs=4, logdir=tmp_path, n_steps=16, batch_size=32)
    assert load_model("ppo", path, device="cpu").device.type == "cpu"
    with pytest.raises(RuntimeError, match="Invalid device string: 'not-a-device'"):  # it reaches torch
        load_model("ppo", path, device="not-a-device")


def test_spec_max_episode_steps_is_the_envs_own_limit():
    assert gym.make(SYN).spec.max_episode_steps == 30
    env = gym.make(SYN, max_turn=50, **FIXED_LENGTH)
    assert env.spec.max_episode_steps == 50 and env.unwrapped.spec.max_episode_steps == 50
    env.reset(seed=0)
    for t in range(1, 51):  # not cut at the default 30
        _, _, terminated, truncated, _ = env.step(t)
        assert truncated == (t == 50) and not terminated
    again = gym.make(env.spec)  # the spec recreates the env
    assert again.spec.max_episode_steps == 50 and again.unwrapped.params.max_turn == 50
    venv = make_vec(2, max_turn=40)
    assert venv.spec.max_episode_steps == 40
    assert gym.make_vec(venv.spec).params.max_turn == 40
    with pytest.raises(ValueError, match="max_episode_steps=20 differs from max_turn=40"):
        make_vec(2, max_turn=40, max_episode_steps=20)


# ---------------------------------------------------------------- stepping without a live episode
def test_stepping_before_reset_or_after_the_episode_ended_is_refused():
    env = RecSysEnv(world="synthetic", max_turn=2, **FIXED_LENGTH)
    with pytest.raises(ResetNeeded, match=r"call reset\(\) before step\(\)"):
        env.step(0)
    env.reset(seed=0)
    env.step(0)
    assert env.step(1)[3]  # truncated
    with pytest.raises(ResetNeeded, match="the episode ended"):
        env.step(2)
    env.reset()
    env.step(2)

    for venv in (make_vec(), RecSysVectorEnv(4, world="synthetic", autoreset_mode="SameStep")):
        with pytest.raises(ResetNeeded, match=r"call reset\(\) before step\(\)"):
            venv.step(np.zeros(4, np.int64))
        with pytest.raises(ResetNeeded, match="reset the whole batch"):
            venv.reset(options={"reset_mask": np.ones(4, bool)})
    with pytest.raises(ResetNeeded, match=r"call reset\(\) before step\(\)"):
        SB3VecEnv(SYN, num_envs=4).step(np.zeros(4, np.int64))

    venv = make_vec(max_turn=1, **FIXED_LENGTH)  # next-step rows that ended are restarted, not refused
    venv.reset(seed=0)
    for _ in range(4):
        venv.step(np.zeros(4, np.int64))


# ---------------------------------------------------------------- options that change what is measured
def test_world_option_cannot_override_the_ids_world():
    for make in (lambda **kw: gym.make("recgym/KuaiRec-v0", **kw),
                 lambda **kw: gym.make_vec("recgym/KuaiRec-v0", num_envs=2, vectorization_mode="vector_entry_point", **kw)):
        with pytest.raises(ValueError, match="recgym/KuaiRec-v0 is the 'kuairec' world; world='synthetic'"):
            make(world="synthetic")
        assert make(world="kuairec").unwrapped.world.n_items == 3_327
    with pytest.raises(ValueError, match="world='World'"):
        gym.make(SYN, world=recgym.world.synthetic_world())
    assert RecSysEnv(world=recgym.world.synthetic_world()).world.n_items == 500  # a custom World: the class
