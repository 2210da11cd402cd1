"""v1 slates (issue #16, item 3): a click model decides what is examined and the one click; unexamined
items are missing from the log, examined unclicked ones are impressions with click 0; the env views,
checkers and PPO on a slate of a v1 id. The exact click probabilities: tests/test_dynamics_v1_reference.py."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3 import PPO
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import recgym  # noqa: F401  (registers the ids)
from recgym.envs.core import build_simulator
from recgym.params import SimParams

SYN = "recgym/Synthetic-v1"


def click_shares(click_model: str, position_decay: float = 1.0, size: int = 5, n: int = 4096, steps: int = 3):
    """(S + 1,) share of the slate's clicks on each slot and of skips, and (S,) share of each slot
    examined, over ``steps`` steps of ``n`` KuaiRec-v1 sessions shown slates of random distinct items
    (each slot drawn the same way, so position is the only difference between slots)."""
    sim = build_simulator(n, "kuairec-v1", seed=3, slate_size=size, click_model=click_model,
                          position_decay=position_decay, popularity_feedback=0.0)
    sim.reset(3)
    rng = np.random.default_rng(3)
    clicks, examined = np.zeros(size + 1), np.zeros(size)
    for _ in range(steps):
        actions = np.argsort(rng.random((n, 200)), axis=1)[:, :size] * 16  # distinct items across the catalogue
        result = sim.step(actions)
        took = result.consumed >= 0  # the user's click (in NX_0 a clicked repeat is logged with click 0)
        clicks += np.bincount(np.where(took, (actions == result.consumed[:, None]).argmax(axis=1), size),
                              minlength=size + 1)
        examined += (sim.sessions.slate_log >= 0).sum(axis=0)
        sim.reset_sessions(np.flatnonzero(result.terminated | result.truncated))
    return clicks / (n * steps), examined / (n * steps)


def test_position_model_click_rate_falls_with_position():
    """eta = 1: slot j is examined with 1 / (1 + j), and its click rate falls with it (~1/(1+j) of
    slot 0's, a little above: fewer competitors are examined with it); eta = 0 (the control): every
    slot is examined and the click rate is flat."""
    clicks, examined = click_shares("position")
    np.testing.assert_allclose(examined, 1 / (1 + np.arange(5)), atol=0.012)
    ratio = clicks[:5] / clicks[0]
    assert (np.diff(clicks[:5]) < 0).all()
    np.testing.assert_allclose(ratio, 1 / (1 + np.arange(5)), rtol=0.25)
    flat, all_examined = click_shares("position", position_decay=0.0)
    assert (all_examined == 1).all()
    np.testing.assert_allclose(flat[:5] / flat[:5].mean(), 1, atol=0.12)
    assert flat[:5].sum() > clicks[:5].sum() * 1.5  # examining everything finds more to click


def test_cascade_clicks_fall_geometrically_and_stop_at_the_first_click():
    clicks, examined = click_shares("cascade")
    assert examined[0] == 1 and (np.diff(examined) < 0).all()
    assert (np.diff(clicks[:5]) < 0).all()
    # P(reach slot j) = P(no click before it): examined[j + 1] = examined[j] - clicks[j]
    np.testing.assert_allclose(examined[1:], examined[:-1] - clicks[:4], atol=1e-12)


def test_log_holds_examined_impressions_only():
    """The cascade's log is [0, .., 0, 1, -1, .., -1] (or all 0: a skip); the history gains only the
    clicked item, at its slot; every shown item counts as exposure, examined or not."""
    n, size = 512, 6
    sim = build_simulator(n, "kuairec-v1", seed=5, slate_size=size, click_model="cascade", mode="Free")
    sim.reset(5)
    actions = np.tile(np.arange(size) * 100, (n, 1))
    before_items, exposure = sim.recent_items.copy(), sim.exposure.copy()
    result = sim.step(actions)
    log = sim.sessions.slate_log
    took = result.consumed >= 0
    slot = np.where(took, (log == 1).argmax(axis=1), size)
    expected = np.where(np.arange(size) < slot[:, None], 0, np.where(np.arange(size) == slot[:, None], 1, -1))
    np.testing.assert_array_equal(log, expected)
    assert 0 < took.mean() < 1 and (slot[took] > 0).any()
    np.testing.assert_array_equal(sim.recent_items[took, -1], actions[took, slot[took]])
    np.testing.assert_array_equal(sim.recent_items[~took], before_items[~took])
    np.testing.assert_array_equal(sim.sessions.recent_position[took, -1], slot[took])
    np.testing.assert_array_equal(sim.exposure[actions[0]] - exposure[actions[0]], n)
    observation = sim.observe()
    np.testing.assert_array_equal(observation["slate_clicks"], log)
    np.testing.assert_array_equal(observation["position"][:, -1], np.where(took, slot, -1))


def test_repeated_ids_are_shown_once_and_never_logged():
    sim = build_simulator(256, "synthetic-v1", seed=2, slate_size=4, position_decay=0.0, mode="Free")
    sim.reset(2)
    result = sim.step(np.tile([7, 7, 9, 7], (256, 1)))
    log = sim.sessions.slate_log
    assert (log[:, [1, 3]] == -1).all() and (log[:, [0, 2]] >= 0).all()
    assert set(result.consumed.tolist()) <= {-1, 7, 9}
    assert sim.exposure[7] == sim.exposure[9] == 256


def test_click_model_knobs_are_validated_in_one_line():
    for options, message in (
        ({"click_model": "pbm"}, "click_model must be one of ['position', 'cascade'], got 'pbm'"),
        ({"position_decay": -0.5}, "position_decay must be in [0.0, 10.0], got -0.5"),
        ({"position_decay": float("nan")}, "position_decay must be finite, got nan"),
        ({"position_decay": "1"}, "position_decay must be a number, got '1'"),
    ):
        with pytest.raises(ValueError) as error:
            SimParams(**options)
        assert str(error.value) == message
    with pytest.raises(ValueError, match=r"^position_decay: v1 knob\(s\), but 'kuairec' is a v0 world"):
        gym.make("recgym/KuaiRec-v0", slate_size=3, position_decay=2.0)


def test_bad_slate_action_leaves_the_state_intact():
    env = gym.make(SYN, slate_size=3)
    env.reset(seed=0)
    sim = env.unwrapped.sim
    before = [np.copy(array) for array in sim.sessions]
    for action in (np.array([1, 2]), np.array([1, 2, 10**6]), np.array([1.0, 2.0, 3.0])):
        with pytest.raises(ValueError):
            env.step(action)
    for array, kept in zip(sim.sessions, before):
        np.testing.assert_array_equal(array, kept)


@pytest.mark.parametrize("click_model", ["position", "cascade"])
def test_checkers_and_ppo_learn_on_a_v1_slate(click_model):
    options = {"slate_size": 3, "click_model": click_model}
    gym_check_env(gym.make(SYN, **options).unwrapped, skip_render_check=True)
    sb3_check_env(gym.make(SYN, **options))
    model = PPO("MultiInputPolicy", gym.make(SYN, **options), n_steps=64, batch_size=32, n_epochs=1, seed=0)
    model.learn(128)


def test_every_sample_and_int8_masks_on_a_v1_slate():
    """Slates of 10 from 20 items (most samples repeat an id), NX_0 masks as S int8 arrays."""
    env = gym.make(SYN, world_options={"n_items": 20}, slate_size=10, mode="NX_0", max_turn=100, patience=0.0)
    _, info = env.reset(seed=1)
    env.action_space.seed(1)
    for _ in range(200):
        assert len(info["action_mask"]) == 10 and all(mask.dtype == np.int8 for mask in info["action_mask"])
        _, _, terminated, truncated, info = env.step(env.action_space.sample())
        if terminated or truncated:
            _, info = env.reset()


def rollout(seed: int, click_model: str) -> list:
    env = gym.make(SYN, slate_size=4, click_model=click_model)
    env.action_space.seed(seed)
    obs, info = env.reset(seed=seed)
    out = []
    for _ in range(15):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample(mask=info.get("action_mask")))
        out.append((reward, info["item"], info["true_reward"], obs["slate_clicks"].tobytes(), obs["position"].tobytes(),
                    obs["signals"].tobytes()))
        if terminated or truncated:
            obs, info = env.reset()
    return out


@pytest.mark.parametrize("click_model", ["position", "cascade"])
def test_same_seed_same_trajectory(click_model):
    first = rollout(5, click_model)
    assert first == rollout(5, click_model)
    assert first != rollout(6, click_model)
    assert any(step[1] == -1 for step in first) and any(step[1] >= 0 for step in first)  # skips and clicks


def test_single_items_log_position_zero():
    env = gym.make(SYN)
    obs, _ = env.reset(seed=0)
    assert "slate_clicks" not in obs and (obs["position"] == -1).all()
    obs, *_ = env.step(3)
    assert obs["position"][-1] == 0 and (obs["position"][:-1] == -1).all()


def test_a_clicked_repeat_in_nx0_is_an_impression_with_click_0():
    """As a single item's repeat: the user may click an item shown in an earlier step of the session,
    which earns 0 and is logged with click 0."""
    sim = build_simulator(512, "kuairec-v1", seed=1, slate_size=3, position_decay=0.0, conformity=20.0)
    sim.reset(1)
    slate = np.tile(np.argsort(sim.world.pop_prior)[-3:], (512, 1))  # pop score ~1: clicks almost sure
    first = sim.step(slate)
    assert (first.consumed >= 0).mean() > 0.9 and first.signals[0].sum() == (first.consumed >= 0).sum()
    again = sim.step(slate)
    took = again.consumed >= 0
    assert took.mean() > 0.9 and again.repeated[took].all()
    assert (again.signals == 0).all() and (again.reward == 0).all() and (sim.sessions.slate_log == 0).all()
