"""v1 novelty seeking and time (issue #17): the hierarchical novelty (static propensity, latent
session mode, novelty against the long-term history) and the user-specific daily / weekly cycles
change WHICH item is best; the mode chain switches at its documented rates; the propensity is
identifiable from 30 logged steps; knobs are validated; same seed, same trajectory."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from recgym.params import V1_DEFAULTS, SimParams
from recgym.phenomena import novelty_identifiability
from recgym.simulator import Simulator
from recgym.world import kuairec_world
from recgym.world_v1 import WorldOptions, kuairec_world_v1


def v1_params(**changes) -> SimParams:
    return SimParams(**{**V1_DEFAULTS, "leave_window": 0, "popular_streak": 0, "patience": 0.0, **changes})


def sessions_of(user: int, n: int, params: SimParams, seed: int) -> Simulator:
    """``n`` fresh sessions of one ``user`` (each at its own random hour and weekday)."""
    sim = Simulator(kuairec_world_v1(), params, n, seed=seed)
    sim.reset(seed, np.full(n, user))
    return sim


def test_best_item_changes_with_the_clock_for_a_fixed_user():
    """48 fresh sessions of user 7 differ only in their clock (novelty, item hour and the acquired tastes'
    valley off): with the cycles on, the best item depends on the clock; with them off it is one item."""
    # with the valley (0.35 of par on 80% of the items) user 7's best item takes 3 values over the 48 clocks
    clock_only = dict(novelty_weight=0.0, time_of_day=0.0, taste_valley=0.0)
    sim = sessions_of(7, 48, v1_params(**clock_only), seed=1)
    best = sim.expected_reward().argmax(axis=1)
    assert len(set(best)) >= 4
    by_hour = {}
    for b in range(48):  # sessions in the same clock hour of the week agree
        by_hour.setdefault((int(sim.sessions.weekday[b]), int(sim.hour[b])), set()).add(best[b])
    assert all(len(items) == 1 for items in by_hour.values())
    off = sessions_of(7, 48, v1_params(daily_cycle=0.0, weekly_cycle=0.0, **clock_only), seed=1)
    assert len(set(off.expected_reward().argmax(axis=1))) == 1
    assert not off.sessions.time_interest.any()


def test_cycles_are_the_documented_functions_of_the_clock():
    sim = sessions_of(3, 64, v1_params(), seed=2)
    world, p, s = sim.world, sim.params, sim.sessions
    hour = np.floor(sim.hour.astype(np.float64)) + 0.5
    day, week = 2 * np.pi * hour / 24, 2 * np.pi * (s.weekday + hour / 24) / 7
    weights = np.stack([p.daily_cycle * np.cos(day), p.daily_cycle * np.sin(day),
                        p.weekly_cycle * np.cos(week), p.weekly_cycle * np.sin(week)], axis=1)
    np.testing.assert_allclose(s.time_interest, np.einsum("br,rd->bd", weights, world.user_cycles[3]), atol=1e-5)
    # the term's size: several logits on the items of the user's components, within its bound
    # (daily + weekly amplitude) x (2 components x amplitude draw <= 1.5)
    term = s.time_interest @ world.item_emb.T
    assert 2.0 < np.abs(term).max() <= (p.daily_cycle + p.weekly_cycle) * 2 * 1.5
    # within a session the shift is constant inside a clock hour and moves when the hour turns
    start_hour = np.floor(sim.hour).copy()
    before = s.time_interest.copy()
    for _ in range(3):
        sim.step(sim.expected_reward().argmax(axis=1))
    same = np.floor(sim.hour) == start_hour
    assert same.any() and (~same).any()
    np.testing.assert_array_equal(s.time_interest[same], before[same])
    assert (np.abs(s.time_interest[~same] - before[~same]).max(axis=1) > 0).all()


def test_best_item_changes_with_the_session_mode():
    """User 11 after 12 consumed items: the same state scored in the explore and in the exploit mode.
    Explore prefers items unlike the long-term history, exploit items like it."""
    params = v1_params(daily_cycle=0.0, weekly_cycle=0.0, time_of_day=0.0)
    sim = sessions_of(11, 1, params, seed=3)
    for _ in range(12):
        sim.step(sim.expected_reward().argmax(axis=1))
    world, s = sim.world, sim.sessions
    consumed = s.consumed_categories[11] > 0
    assert 0 < consumed.sum() < world.n_categories  # some categories are known, some new
    tables = {}
    for explore in (True, False):
        s.explore[0] = explore
        tables[explore] = sim.expected_reward()[0]
    best = {mode: int(table.argmax()) for mode, table in tables.items()}
    assert best[True] != best[False]
    novel_share = {mode: (~consumed[world.item_cats[item]]).mean() for mode, item in best.items()}
    assert novel_share[True] > novel_share[False]
    rho = world.user_novelty[11]
    assert sim.novelty_propensity()[0] == pytest.approx(max(rho - params.novelty_mode_shift, 0), abs=1e-6)


def test_the_mode_chain_switches_at_its_rates():
    """4,096 sessions x 30 steps: empirical switch frequencies match novelty_switch * rho and
    novelty_switch * (1 - rho); the first mode is explore with probability rho."""
    n, params = 4096, v1_params(novelty_switch=0.3)
    sim = Simulator(kuairec_world_v1(), params, n, seed=4)
    sim.reset(4)
    rho = sim.world.user_novelty[sim.user].astype(np.float64)
    first = sim.sessions.explore.copy()
    assert abs(first.mean() - rho.mean()) < 4 * np.sqrt(0.25 / n)
    assert first[rho > 0.7].mean() > 0.6
    assert first[rho < 0.3].mean() < 0.4
    into = np.zeros(2)  # [switches exploit -> explore, their expectation]
    out = np.zeros(2)
    rng = np.random.default_rng(0)
    for _ in range(30):
        before = sim.sessions.explore.copy()
        sim.step(rng.integers(0, sim.world.n_items, n))
        after = sim.sessions.explore
        into += [(~before & after).sum(), (params.novelty_switch * rho)[~before].sum()]
        out += [(before & ~after).sum(), (params.novelty_switch * (1 - rho))[before].sum()]
    for observed, expected in (into, out):
        assert abs(observed - expected) < 4 * np.sqrt(expected)


def test_propensity_is_identifiable_from_30_logged_steps():
    """The phenomena row's observer on 100 KuaiRec-v1 users (the full row uses 400)."""
    world = kuairec_world_v1()
    users = np.random.default_rng(0).choice(world.n_users, 100, replace=False)
    params = SimParams(**{**V1_DEFAULTS, "mode": "NX_0", "leave_window": 0, "popular_streak": 3,
                          "popularity_feedback": 0.0})
    corr, low, high = novelty_identifiability(world, params, users, seed=0)
    assert corr > 0.5 and low < corr < high
    off, _, _ = novelty_identifiability(world, dataclasses.replace(params, novelty_weight=0.0), users, seed=0)
    assert off == 0.0


def test_same_seed_same_trajectory_and_the_draws_matter():
    def run(seed):
        sim = Simulator(kuairec_world_v1(), v1_params(), 64, seed=seed)
        sim.reset(seed)
        rng = np.random.default_rng(seed)
        trace = []
        for _ in range(20):
            result = sim.step(rng.integers(0, sim.world.n_items, 64))
            trace.append((result.true_reward.copy(), sim.sessions.explore.copy(), sim.sessions.time_interest.copy()))
        return trace

    a, b, c = run(5), run(5), run(6)
    for step_a, step_b in zip(a, b):
        for x, y in zip(step_a, step_b):
            np.testing.assert_array_equal(x, y)
    assert any((x[1] != y[1]).any() for x, y in zip(a, c))


@pytest.mark.parametrize("options, message", [
    (dict(novelty_switch=1.5), "novelty_switch must be in"),
    (dict(novelty_mode_shift=-0.1), "novelty_mode_shift must be in"),
    (dict(daily_cycle=float("nan")), "daily_cycle must be finite"),
    (dict(weekly_cycle=101.0), "weekly_cycle must be in"),
])
def test_bad_knobs_are_one_line_errors(options, message):
    with pytest.raises(ValueError, match=message) as error:
        SimParams.from_kwargs(**options)
    assert "\n" not in str(error.value)


def test_v0_worlds_refuse_the_knobs_and_bad_world_options():
    with pytest.raises(ValueError, match="daily_cycle: v1 knob"):
        Simulator(kuairec_world(), SimParams(daily_cycle=2.0), 1)
    with pytest.raises(ValueError, match="cycle_components must be in"):
        WorldOptions(cycle_components=0)
    sim = Simulator(kuairec_world(), SimParams(), 4, seed=0)  # v0 state carries no mode and no cycles
    assert sim.sessions.explore.shape == (0,) and sim.sessions.time_interest.shape == (0, 32)
