"""Users over time (issue #17, recgym.users): persistent users, lifetime episodes, return gaps,
acquired taste, the platform's return order, the v1 population, the knobs' errors and a small soak."""

from __future__ import annotations

import dataclasses
import tracemalloc

import gymnasium as gym
import numpy as np
import pettingzoo
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from pettingzoo.test import parallel_api_test
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import recgym  # noqa: F401  (registers the ids)
from recgym import phenomena
from recgym import users as user_model
from recgym.envs import population_v1
from recgym.envs.sb3 import SB3VecEnv
from recgym.params import V1_DEFAULTS, SimParams
from recgym.simulator import Simulator
from recgym.world_v1 import kuairand_user_features, resolve_world_v1

SYNTHETIC = "recgym/Synthetic-v1"
LIFETIME = dict(episode="lifetime", lifetime_sessions=4, max_turn=5)


def synthetic_sim(n_sessions: int, seed: int = 0, **options) -> Simulator:
    world = resolve_world_v1("synthetic-v1")
    sim = Simulator(world, SimParams.from_kwargs(**{**V1_DEFAULTS, **options}), n_sessions, seed=seed)
    sim.reset(seed)
    return sim


def run(sim: Simulator, steps: int, seed: int = 0) -> list:
    """``steps`` uniform-random unseen items; [(users (B,) served, step result)] (ended sessions restart
    in session mode)."""
    rng, out = np.random.default_rng(seed), []
    for _ in range(steps):
        mask, users = sim.action_mask(), sim.user.copy()
        result = sim.step(np.where(mask, rng.random(mask.shape), -1).argmax(axis=1))
        out.append((users, result))
        if sim.params.episode == "session":
            sim.reset_sessions(np.flatnonzero(result.session_ended))
    return out


# ------------------------------------------------------------------ the per-user state
def test_long_term_history_records_every_consumed_category_and_creator():
    sim = synthetic_sim(16, taste_rate=0.0, session_memory=True)  # the history carried across sessions
    world, users = sim.world, sim.users
    expected = np.zeros_like(users.consumed_categories)
    creators = np.zeros((world.n_users, world.n_creators), bool)
    for served, result in run(sim, 40):
        np.add.at(expected, served, world.item_cats[result.consumed].astype(np.int32))
        creators[served, world.item_creator[result.consumed]] = True
    np.testing.assert_array_equal(users.consumed_categories, expected)
    assert expected.sum() > 640  # 640 items consumed, 1-3 categories each
    bits = np.unpackbits(users.consumed_creators, axis=1, bitorder="little")[:, :world.n_creators].astype(bool)
    np.testing.assert_array_equal(bits, creators)
    assert all(user_model.creator_consumed(users.consumed_creators, u, c) == creators[u, c]
               for u in range(0, world.n_users, 37) for c in range(0, world.n_creators, 7))
    assert users.taste.max() == 0  # taste_rate=0: the taste control


def test_drift_persists_between_sessions_and_its_control_restarts_from_the_world():
    for memory in (1.0, 0.0):
        sim = synthetic_sim(1, **LIFETIME, interest_memory=memory)
        user = int(sim.user[0])
        while True:
            result = sim.step(np.array([int(np.argmax(sim.expected_reward()[0]))]))
            if result.session_ended[0]:
                break
        drifted = sim.users.long_term_interest[user]
        if memory:
            np.testing.assert_allclose(drifted, sim.interest[0], atol=1e-6)  # next session starts there
            assert np.abs(drifted - sim.world.user_interest[user]).max() > 0.01  # ~0.03 after 5 steps
        else:
            np.testing.assert_array_equal(drifted, sim.world.user_interest[user])
            np.testing.assert_array_equal(sim.interest[0], sim.world.user_interest[user])


def test_acquired_taste_starts_below_par_and_multiplies_its_neighbourhood():
    par = synthetic_sim(1, **LIFETIME, taste_weight=2.0, taste_valley=0.0).expected_reward()[0]  # the control
    sim = synthetic_sim(1, **LIFETIME, taste_weight=2.0, taste_valley=0.6)
    neighbourhood = user_model.item_neighbourhoods(sim.world, sim.params.taste_neighbourhoods)
    acquired = user_model.acquired_tastes(sim.world, sim.params.popular_fraction)
    uncapped = par < sim.params.watch_max / 2
    here = (neighbourhood == 0) & acquired & uncapped
    assert here.sum() > 5 and ((neighbourhood == 0) & ~acquired).sum() > 0  # the neighbourhood has other items too
    # no taste yet: an acquired taste is liked 1 - 0.6 of par (the valley), any other item at par
    np.testing.assert_allclose(sim.expected_reward()[0][acquired & uncapped], 0.4 * par[acquired & uncapped], rtol=1e-5)
    np.testing.assert_array_equal(sim.expected_reward()[0][~acquired], par[~acquired])
    sim.users.taste[sim.user[0], 0] = 0.5
    lifted = sim.expected_reward()[0]
    # x (1 + 2 * 0.5 - 0.6) = 1.4 of par: a multiplier, not a logit term that saturates
    np.testing.assert_allclose(lifted[here], 1.4 * par[here], rtol=1e-5)
    others = ~((neighbourhood == 0) & acquired)
    np.testing.assert_allclose(lifted[others & uncapped], np.where(acquired, 0.4, 1.0)[others & uncapped]
                               * par[others & uncapped], rtol=1e-5)  # other neighbourhoods, other items: unchanged
    off = synthetic_sim(1, **LIFETIME, taste_weight=0.0, taste_valley=0.6)  # taste recorded, but of no effect
    before = off.expected_reward()[0].copy()
    off.users.taste[off.user[0], 0] = 0.5
    np.testing.assert_array_equal(off.expected_reward()[0], before)


def test_taste_grows_only_with_satisfied_consumption_of_acquired_tastes():
    sim = synthetic_sim(8, taste_rate=0.1, session_memory=True)  # taste carried across sessions
    neighbourhood = user_model.item_neighbourhoods(sim.world, sim.params.taste_neighbourhoods)
    acquired = user_model.acquired_tastes(sim.world, sim.params.popular_fraction)
    tail_consumed = np.zeros_like(sim.users.taste, dtype=bool)
    for served, result in run(sim, 30):
        tail = acquired[result.consumed]
        tail_consumed[served[tail], neighbourhood[result.consumed[tail]]] = True
    taste = sim.users.taste + sim.users.taste_pending  # the running sessions' gains are still pending
    assert (taste[~tail_consumed] == 0).all() and taste.max() < 1  # other items build no taste
    assert tail_consumed.sum() > 100
    assert (taste[tail_consumed] > 0).mean() > 0.75  # an item enjoyed 0 (a repeat, a zero draw) adds no taste
    assert 0.005 < taste[tail_consumed].mean() < 0.03  # 0.010: unacquired, it is enjoyed at 0.35 of par (the valley)


def test_taste_gained_in_a_session_acts_from_the_next_session():
    sim = synthetic_sim(1, **{**LIFETIME, "max_turn": 8}, taste_weight=2.0, taste_rate=0.3)
    neighbourhood = user_model.item_neighbourhoods(sim.world, sim.params.taste_neighbourhoods)
    user, tail = int(sim.user[0]), user_model.acquired_tastes(sim.world, sim.params.popular_fraction)
    for step in range(8):
        table = sim.expected_reward()[0]
        stays = tail & (table > 0) & ~sim.leave_mask()[0]  # acquired tastes only, none that ends the session
        item = int(np.argmax(np.where(stays, table, -1)))
        if step:
            # the next item of the same neighbourhood gains nothing yet: taste is still pending
            assert sim.users.taste[user].max() == 0 and sim.users.taste_pending[user].max() > 0.1
        result = sim.step(np.array([item]))
    assert result.session_ended[0] and sim.session_index[0] == 1
    gained = sim.users.taste[user].copy()
    assert sim.users.taste_pending[user].max() == 0 and gained.max() > 0.15  # consolidated at the session's end
    lifted = sim.expected_reward()[0]
    sim.users.taste[user] = 0
    plain = sim.expected_reward()[0]
    sim.users.taste[user] = gained
    shown = plain > 0  # unmasked: the first session's items stay masked for the lifetime
    valley = sim.params.taste_valley  # plain (no taste) holds the valley: 1 - valley of par on acquired tastes
    expected = np.minimum(plain * (1 + tail * (2.0 * gained[neighbourhood] - valley)) / (1 - tail * valley),
                          sim.params.watch_max)
    np.testing.assert_allclose(lifted[shown], expected[shown], rtol=1e-5)
    assert (lifted[shown] > plain[shown]).sum() > 10


def test_steering_toward_the_long_tail_pays_over_a_lifetime_and_not_without_taste():
    # recgym phenomena's guidance_lifetime_gain on 20 KuaiRec-v1 users (the first 20 of the row's draw):
    # 0.124 [0.027, 0.237] at the defaults, -0.069 [-0.100, -0.036] with taste_weight=0 (the early steering
    # is then a pure cost); -0.003 [-0.035, 0.029] with taste_valley=0 (the myopic oracle then acquires
    # the tastes by itself); ~20 s
    world = resolve_world_v1("kuairec-v1")
    params = SimParams.from_kwargs(**{**V1_DEFAULTS, **phenomena.PROTOCOL})
    users = np.random.default_rng(0).choice(world.n_users, 400, replace=False)[:20]
    gain, low, _ = phenomena.guidance_lifetime_gain(world, params, users, 0)
    control, _, high = phenomena.guidance_lifetime_gain(world, dataclasses.replace(params, taste_weight=0.0), users, 0)
    assert low > 0 and gain > 0.05
    assert high < 0


def test_item_neighbourhoods_are_a_deterministic_k_means_of_the_embeddings():
    world = resolve_world_v1("kuairec-v1")
    first = user_model.item_neighbourhoods(world, 64)
    user_model.item_neighbourhoods.cache_clear()
    again = user_model.item_neighbourhoods(world, 64)
    np.testing.assert_array_equal(first, again)
    sizes = np.bincount(first, minlength=64)
    assert first.shape == (world.n_items,) and (sizes > 0).all() and sizes.max() < 0.1 * world.n_items
    emb = world.item_emb.astype(np.float64)
    centres = np.stack([emb[first == n].mean(axis=0) for n in range(64)])
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    assert ((emb @ centres.T).argmax(axis=1) == first).mean() > 0.99  # a fixed point of Lloyd's iteration
    own = np.einsum("id,id->i", emb, centres[first]).mean()
    other = np.einsum("id,id->i", emb, centres[np.roll(first, 1)]).mean()
    assert own > other + 0.2  # items sit near their own centre


def test_acquired_tastes_are_the_long_tail_and_a_random_subset_in_the_long_tail_control():
    world = resolve_world_v1("kuairec-v1")
    acquired, tail = user_model.acquired_tastes(world, 0.2), ~world.popular_items(0.2)
    assert 0.78 < acquired.mean() < 0.82  # acquired_share 0.8
    # unpopular because few have acquired them (acquired_gap 3 in the popularity order): 94.9% of them in the
    # bottom 80%, 94.9% of the bottom 80% acquired tastes
    assert tail[acquired].mean() > 0.93 and acquired[tail].mean() > 0.93
    control = resolve_world_v1("kuairec-v1", popularity_quality=0.0)  # the long-tail row's control world
    np.testing.assert_array_equal(user_model.acquired_tastes(control, 0.2), acquired)
    assert abs(acquired[~control.popular_items(0.2)].mean() - acquired.mean()) < 0.02  # 0.798: independent
    fitted = dataclasses.replace(world, item_acquired=None)  # a world that does not say: its long tail
    np.testing.assert_array_equal(user_model.acquired_tastes(fitted, 0.2), tail)
    with pytest.raises(ValueError, match=r"world option acquired_share must be in \[0, 1\], got 1.5"):
        resolve_world_v1("kuairec-v1", acquired_share=1.5)
    with pytest.raises(ValueError, match=r"world option acquired_gap must be in \[0, 100\], got -1"):
        resolve_world_v1("kuairec-v1", acquired_gap=-1)


# ------------------------------------------------------------------ returns
def test_return_gap_shrinks_with_satisfaction_as_the_hazard_says():
    n, gaps = 200, {}
    for weight in (1.0, 0.0):
        sim = synthetic_sim(n, retention_weight=weight, retention_reference=1.0)
        sim.users.session_rate[:] = 1.0
        for satisfaction in (0.0, 2.0):
            sim.sessions.reward_sum[:] = satisfaction * 10
            sim.sessions.step_count[:] = 10
            out = np.empty(n)
            unit = np.random.default_rng(1).standard_exponential(n)
            user_model.end_sessions(sim.knobs, sim._users_args, np.arange(n), sim.user, sim.interest,
                                    sim.sessions.reward_sum, sim.sessions.step_count, sim.start_day, unit, out)
            gaps[weight, satisfaction] = out
    # the same unit draws: mean satisfaction 2 vs 0 divides the gap by exp(retention_weight * 2) = 7.39
    np.testing.assert_allclose(gaps[1.0, 0.0] / gaps[1.0, 2.0], np.exp(2.0), rtol=1e-5)
    np.testing.assert_allclose(gaps[1.0, 0.0], np.random.default_rng(1).standard_exponential(n) * np.e, rtol=1e-5)
    np.testing.assert_array_equal(gaps[0.0, 0.0], gaps[0.0, 2.0])  # the control ignores satisfaction


def long_term_state(sim: Simulator, user: int) -> tuple:
    """Copies of ``user``'s long-term state and of the running session's interest (slot 0)."""
    u = sim.users
    return (u.long_term_interest[user].copy(), u.taste[user].copy(), u.taste_pending[user].copy(),
            u.consumed_categories[user].copy(), u.consumed_creators[user].copy(), sim.interest[0].copy())


def session_starts(sim: Simulator, user: int, sessions: int) -> list:
    """Serve ``user`` ``sessions`` sessions in slot 0 (the oracle's items); their state at each start."""
    starts = []
    for _ in range(sessions):
        sim.reset_sessions(np.array([0]), users=np.array([user]))
        starts.append(long_term_state(sim, user))
        while not sim.step(sim.expected_reward().argmax(axis=1)).session_ended[0]:
            pass
    return starts


def test_session_mode_starts_every_session_from_the_users_initial_state_by_default():
    """Issue #19 (the training world ages): without ``session_memory`` a user's tenth session starts
    where their first did (world interest, no taste, no history); with it, the state carried over."""
    user = 3
    fresh = session_starts(synthetic_sim(1, max_turn=8), user, 10)
    kept = session_starts(synthetic_sim(1, max_turn=8, session_memory=True), user, 10)
    for a, b in zip(fresh[0], fresh[9]):
        np.testing.assert_array_equal(a, b)
    world = synthetic_sim(1).world
    np.testing.assert_array_equal(fresh[9][0], world.user_interest[user])
    assert fresh[9][1].max() == 0 and fresh[9][3].max() == 0 and fresh[9][4].max() == 0
    assert np.abs(kept[9][0] - kept[0][0]).max() > 0.01  # drift written back (interest_memory 1)
    assert kept[9][3].sum() > kept[0][3].sum() == 0  # long-term history kept
    assert (kept[9][4] != 0).any()
    np.testing.assert_array_equal(kept[0][0], fresh[0][0])  # the first sessions start alike


def test_session_mode_without_memory_keeps_the_platform_clock_and_order():
    sim = synthetic_sim(8)
    served_again = 0
    for _ in range(60):
        result = sim.step(sim.expected_reward().argmax(axis=1))
        ended = np.flatnonzero(result.session_ended)
        clock = sim.users.platform_day[0]
        sim.reset_sessions(ended)
        users = sim.user[ended]
        assert sim.users.platform_day[0] >= clock
        np.testing.assert_array_equal(sim.users.long_term_interest[users], sim.world.user_interest[users])
        assert sim.users.taste[users].max(initial=0) == 0 and sim.users.consumed_categories[users].max(initial=0) == 0
        served_again += int((sim.users.session_count[users] > 1).sum())
    assert served_again > 0 and sim.users.session_count.max() >= 2  # returning users, counted on


def test_lifetime_episodes_and_the_v1_population_keep_their_users():
    a = run(synthetic_sim(2, **LIFETIME), 40)
    b = run(synthetic_sim(2, **LIFETIME, session_memory=True), 40)  # lifetime mode ignores the knob
    for (users_a, ra), (users_b, rb) in zip(a, b):
        np.testing.assert_array_equal(users_a, users_b)
        np.testing.assert_array_equal(ra.true_reward, rb.true_reward)
    assert population_v1.parallel_env(n_users=4).sim.params.session_memory is True
    assert population_v1.parallel_env(n_users=4, session_memory=False).sim.params.session_memory is False
    assert SimParams().session_memory is False and V1_DEFAULTS.get("session_memory", False) is False


def test_session_mode_serves_users_in_order_of_return():
    sim = synthetic_sim(8)
    clock = [sim.users.platform_day[0]]
    for _ in range(30):
        result = sim.step(sim.expected_reward().argmax(axis=1))
        ended = np.flatnonzero(result.session_ended)
        before = sim.users.next_return.copy()
        sim.reset_sessions(ended)
        if ended.size:  # the users served are the first to return, and the clock moves to their returns
            served = sim.user[ended]
            np.testing.assert_array_equal(sim.start_day[ended], np.sort(before[served]).clip(clock[-1]))
            waiting = np.setdiff1d(np.arange(sim.world.n_users), served)
            assert before[served].max() <= before[waiting].min()
            clock.append(sim.users.platform_day[0])
    assert np.all(np.diff(clock) >= 0) and len(clock) > 10 and clock[-1] > clock[0]


def test_kuairand_activity_degrees_set_the_session_rates():
    features = kuairand_user_features()
    world = type("FeaturesOnly", (), {"user_features": features})()
    rates = user_model.activity_levels(world)
    degree = features[:, :9].argmax(axis=1)
    assert rates[degree == 0].min() == rates[degree == 0].max() == 1.5  # full_active
    assert rates[degree == 3].max() == 0.3  # low_active
    assert 1.2 < rates.mean() < 1.4  # 66% of KuaiRand-Pure's users are full_active


# ------------------------------------------------------------------ lifetime episodes
def test_lifetime_episode_runs_its_sessions_and_truncates_at_the_horizon():
    env = gym.make(SYNTHETIC, **LIFETIME)
    obs, info = env.reset(seed=3)
    assert obs["session_index"][0] == 0 and obs["return_gap"][0] == 0
    sessions, steps, shown = [0], 0, []
    while True:
        action = env.action_space.sample(mask=info["action_mask"])
        shown.append(action)
        obs, reward, terminated, truncated, info = env.step(action)
        steps += 1
        assert not terminated
        if info["session_ended"] and not truncated:
            assert obs["session_index"][0] == sessions[-1] + 1 and obs["return_gap"][0] > 0
            assert obs["step"][0] == 0 and (obs["item_ids"] == -1).all()  # a new session's empty history
            assert (info["action_mask"][shown] == 0).all()  # NX: what was shown stays masked for the lifetime
            sessions.append(int(obs["session_index"][0]))
        if truncated:
            break
    assert sessions == [0, 1, 2, 3] and 4 <= steps <= 20  # 4 sessions of at most max_turn=5 steps


def test_lifetime_spec_reports_the_lifetimes_step_bound():
    env = gym.make(SYNTHETIC, **LIFETIME)
    assert env.spec.max_episode_steps == 20  # 4 sessions x max_turn 5
    assert gym.make(env.spec).spec.max_episode_steps == 20  # the spec recreates the env
    assert gym.make(SYNTHETIC, max_turn=5).spec.max_episode_steps == 5  # session mode: max_turn
    venv = gym.make_vec(SYNTHETIC, num_envs=2, vectorization_mode="vector_entry_point", **LIFETIME)
    assert venv.spec.max_episode_steps == 20 and gym.make_vec(venv.spec).num_envs == 2
    with pytest.raises(ValueError, match="max_episode_steps=5 differs from lifetime_sessions \\* max_turn=20"):
        gym.make_vec(SYNTHETIC, num_envs=2, vectorization_mode="vector_entry_point", max_episode_steps=5,
                     **LIFETIME)


def test_lifetime_days_horizon():
    sim = synthetic_sim(50, episode="lifetime", lifetime_sessions=1000, lifetime_days=5.0, max_turn=3)
    alive, steps = np.ones(50, bool), 0
    while alive.any():
        result = sim.step(np.zeros(50, np.int64), active=alive)
        alive &= ~result.truncated
        steps += 1
    counts = sim.users.session_count[sim.user]
    assert (sim.users.next_return[sim.user] >= 5.0).all()
    assert 2 < counts.mean() < 15  # ~1 session a day (activity-weighted) for 5 days


@pytest.mark.parametrize("episode", ["session", "lifetime"])
def test_both_checkers_and_the_sb3_adapter_on_both_shapes(episode):
    options = dict(episode=episode, lifetime_sessions=3, max_turn=5)
    gym_check_env(gym.make(SYNTHETIC, **options).unwrapped, skip_render_check=True)
    sb3_check_env(gym.make(SYNTHETIC, **options))
    venv = gym.make_vec(SYNTHETIC, num_envs=6, vectorization_mode="vector_entry_point", **options)
    venv.reset(seed=0)
    for _ in range(40):
        observation, reward, terminated, truncated, infos = venv.step(venv.action_space.sample())
    assert venv.observation_space.contains(observation)
    assert ("session_ended" in infos) == (episode == "lifetime")
    adapter = SB3VecEnv(gym.make_vec(SYNTHETIC, num_envs=4, vectorization_mode="vector_entry_point",
                                     autoreset_mode="SameStep", **options))
    adapter.reset()
    for _ in range(40):
        adapter.step_async(np.zeros(4, np.int64))
        adapter.step_wait()


def lifetime_trajectory(seed: int) -> list:
    env = gym.make(SYNTHETIC, **LIFETIME)
    env.action_space.seed(seed)
    obs, info = env.reset(seed=seed)
    out = []
    for _ in range(40):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample(mask=info["action_mask"]))
        out.append((reward, info["true_reward"], obs["return_gap"].tobytes(), obs["session_index"].tobytes()))
        if terminated or truncated:
            obs, info = env.reset()
    return out


def test_same_seed_same_lifetime_trajectory():
    first = lifetime_trajectory(4)
    assert first == lifetime_trajectory(4)
    assert first != lifetime_trajectory(5)


# ------------------------------------------------------------------ population
def test_population_v1_passes_the_parallel_api_test_and_users_come_back():
    parallel_api_test(population_v1.parallel_env(world="synthetic-v1", n_users=4, max_cycles=30, max_turn=5),
                      num_cycles=60)
    assert "recgym/Population-v1" in pettingzoo.parallel_registry
    env = population_v1.parallel_env(world="synthetic-v1", n_users=16, max_cycles=60, max_turn=5)
    observations, infos = env.reset(seed=0)
    seen, returns = {info["user_id"] for info in infos.values()}, 0
    while env.agents:
        _, _, _, _, infos = env.step({agent: 0 for agent in env.agents})
        for info in infos.values():
            if "session_index" in info:
                returns += info["session_index"] > 0 and info["user_id"] in seen
                seen.add(info["user_id"])
    assert returns > 0  # the same users come back as new agents
    with pytest.raises(ValueError, match="Population-v1 needs a v1 world"):
        population_v1.parallel_env(world="synthetic")
    with pytest.raises(ValueError, match="episode='lifetime'"):
        population_v1.parallel_env(world="synthetic-v1", episode="lifetime")


# ------------------------------------------------------------------ knobs
@pytest.mark.parametrize("option, value, message", [
    ("episode", "forever", r"episode must be one of \['session', 'lifetime'\], got 'forever'"),
    ("lifetime_sessions", 0, r"lifetime_sessions must be in \[1, 100000\], got 0"),
    ("lifetime_days", -1.0, r"lifetime_days must be in \[0.0, 1000000.0\], got -1.0"),
    ("interest_memory", 1.5, r"interest_memory must be in \[0.0, 1.0\], got 1.5"),
    ("taste_weight", -0.1, r"taste_weight must be in \[0.0, 100.0\], got -0.1"),
    ("taste_rate", 2.0, r"taste_rate must be in \[0.0, 1.0\], got 2.0"),
    ("taste_valley", 1.0, r"taste_valley must be in \[0.0, 0.95\], got 1.0"),
    ("taste_neighbourhoods", 0, r"taste_neighbourhoods must be in \[1, 100000\], got 0"),
    ("taste_neighbourhoods", 6.5, "taste_neighbourhoods must be an integer, got 6.5"),
    ("session_rate", 0.0, r"session_rate must be in \[0.001, 1000.0\], got 0.0"),
    ("retention_weight", float("nan"), "retention_weight must be finite, got nan"),
    ("retention_reference", -1.0, r"retention_reference must be in \[0.0, 1000.0\], got -1.0"),
    ("session_memory", 1, "session_memory must be True or False, got 1"),
    ("session_memory", "yes", "session_memory must be True or False, got 'yes'"),
])
def test_bad_knobs_are_one_line_errors(option, value, message):
    with pytest.raises(ValueError, match=message) as error:
        gym.make(SYNTHETIC, **{option: value})
    assert "\n" not in str(error.value)


def test_v0_refuses_the_knobs_and_lifetime_needs_enough_users():
    with pytest.raises(ValueError, match="episode: v1 knob"):
        gym.make("recgym/Synthetic-v0", episode="lifetime")
    with pytest.raises(ValueError, match="num_envs=201: a lifetime episode holds one user per slot"):
        gym.make_vec(SYNTHETIC, num_envs=201, vectorization_mode="vector_entry_point", episode="lifetime")
    sim = synthetic_sim(2, **LIFETIME)
    state = sim.users.session_count.copy()
    with pytest.raises(ValueError, match="distinct users"):
        sim.reset_sessions(np.array([0, 1]), np.array([5, 5]))
    np.testing.assert_array_equal(sim.users.session_count, state)


# ------------------------------------------------------------------ soak
def test_lifetimes_do_not_grow_memory_beyond_the_per_user_state():
    world = resolve_world_v1("synthetic-v1", n_users=400)
    venv = gym.make_vec(SYNTHETIC, num_envs=200, vectorization_mode="vector_entry_point",
                        world_options={"n_users": 400}, episode="lifetime", lifetime_sessions=10, max_turn=5)
    venv.reset(seed=0)
    actions = np.zeros(200, np.int64)
    for _ in range(60):  # warm-up: every kernel compiled, every buffer allocated
        venv.step(actions)
    tracemalloc.start()
    start = tracemalloc.get_traced_memory()[0]
    lifetimes = 0
    for _ in range(400):
        *_, truncated, _ = venv.step(actions)
        lifetimes += int(truncated.sum())
    growth = tracemalloc.get_traced_memory()[0] - start
    tracemalloc.stop()
    assert lifetimes > 400 and world.n_users == 400
    assert growth < 256 * 1024  # bytes: nothing accumulates per session or per lifetime


def test_the_cli_reads_session_memory_as_true_or_false():
    from recgym.cli import _option

    assert _option("session_memory=true") == ("session_memory", True)
    assert _option("session_memory=False") == ("session_memory", False)
    with pytest.raises(Exception, match="session_memory expects true or false, got 'yes'"):
        _option("session_memory=yes")
