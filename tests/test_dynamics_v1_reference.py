"""The v1 kernels (recgym.choice, recgym.logging_model) against design-v1's formulas in plain numpy:
satisfaction, familiarity, the expected logged reward, the sampled signals, and the controls."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
from scipy.stats import norm

from recgym.params import SIGNALS, V1_DEFAULTS, SimParams
from recgym.simulator import Simulator
from recgym.users import acquired_tastes, item_neighbourhoods
from recgym.world import kuairec_world
from recgym.world_v1 import kuairec_world_v1
from test_dynamics_reference import reference_utility  # tests/ is on sys.path (pytest prepend mode)

POST_CLICK = {"like": (-4.5, 1.5), "follow": (-6.5, 1.5), "comment": (-6.0, 1.0), "forward": (-6.5, 1.0),
              "hate": (-7.5, -2.0)}


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def v1_params(**changes) -> SimParams:
    return SimParams(**{**V1_DEFAULTS, "popular_streak": 5, **changes})


@pytest.fixture(scope="module")
def stepped() -> Simulator:
    """12 sessions after 40 steps of random actions on KuaiRec-v1, ended sessions restarted."""
    sim = Simulator(kuairec_world_v1(), v1_params(), 12, seed=4)
    sim.reset(4)
    rng = np.random.default_rng(0)
    for _ in range(40):
        result = sim.step(rng.integers(0, sim.world.n_items, 12))
        sim.reset_sessions(np.flatnonzero(result.terminated | result.truncated))
    assert (sim.step_count >= 2).sum() >= 6
    return sim


def first_sessions(sim: Simulator) -> np.ndarray:
    """(B,) bool: the first session (lowest slot) of each user in the batch. The step kernel moves
    the sessions in slot order and a user's long-term history (novelty, taste) is shared by all of
    the user's sessions, so only these see, during a step, the state a table computed before it saw."""
    first = np.zeros(sim.n_sessions, bool)
    first[np.unique(sim.user, return_index=True)[1]] = True
    return first


def reference_novelty_time(sim: Simulator) -> np.ndarray:
    """(B, I) the v1 novelty and time terms (v0's recent-history novelty is off on v1 worlds)."""
    p, world, s = sim.params, sim.world, sim.sessions
    rho = np.clip(world.user_novelty[sim.user] + np.where(s.explore, p.novelty_mode_shift, -p.novelty_mode_shift), 0, 1)
    never = (s.consumed_categories[sim.user] == 0).astype(np.float64)  # (B, C)
    creators = world.item_creator
    new_creator = (s.consumed_creators[sim.user][:, creators >> 3] >> (creators & 7)) & 1 == 0  # (B, I)
    novelty = (never @ world.item_cats.T + new_creator) / (world.item_cats.sum(axis=1) + 1)
    hour = np.floor(sim.hour.astype(np.float64)) + 0.5
    day, week = 2 * np.pi * hour / 24, 2 * np.pi * (s.weekday + hour / 24) / 7
    weights = np.stack([p.daily_cycle * np.cos(day), p.daily_cycle * np.sin(day),
                        p.weekly_cycle * np.cos(week), p.weekly_cycle * np.sin(week)], axis=1)  # (B, 4)
    shift = np.einsum("br,brd->bd", weights, world.user_cycles[sim.user])
    return p.novelty_weight * (2 * rho - 1)[:, None] * novelty + shift @ world.item_emb.T.astype(np.float64)


def reference_tables(sim: Simulator) -> dict[str, np.ndarray]:
    """(B, I) satisfaction, familiarity, popularity score, click logit, P(click) and E[observed reward], in numpy."""
    p, world = sim.params, sim.world
    base, terms = reference_utility(sim)
    terms = terms + reference_novelty_time(sim)
    quality = np.exp(world.quality_weight * world.item_quality - world.quality_weight ** 2 / 2)
    neighbourhood = item_neighbourhoods(world, p.taste_neighbourhoods)  # acquired tastes (recgym.users)
    niche = acquired_tastes(world, p.popular_fraction)
    appeal = 1 + niche * (p.taste_weight * sim.users.taste[sim.user][:, neighbourhood] - p.taste_valley)
    sat = np.minimum(world.reward_max * sigmoid(base + terms) * quality * appeal, p.watch_max)
    recent = sim.recent_items[:, -p.history_len:]
    recent_creators = np.where(recent >= 0, world.item_creator[np.maximum(recent, 0)], -1)
    known = np.concatenate([recent_creators, world.user_followed[sim.user]], axis=1)
    familiar_creator = (known[:, :, None] == world.item_creator[None, None, :]).any(axis=1)
    shares = world.item_cats / np.maximum(world.item_cats.sum(axis=1), 1)[:, None]
    category = (sim.category_fatigue @ shares.T) * (1 - p.boredom_decay)
    fam = np.where(familiar_creator, 1.0, np.minimum(category, 1.0))
    popularity = world.pop_prior + sim.clicks
    pop = np.log1p(popularity) / np.log1p(popularity.max())
    log_sat = np.log(np.maximum(sat, 1e-6))
    click_logit = p.click_base + p.click_slope * log_sat + p.conformity * pop + p.familiarity_click * fam
    click = sigmoid(click_logit)
    mean_watch = sat * np.exp(p.familiarity_watch * fam)
    s = p.watch_noise
    mu = np.log(mean_watch) - s * s / 2
    cap = p.watch_max
    watch = mean_watch * norm.cdf((np.log(cap) - mu - s * s) / s) + cap * norm.sf((np.log(cap) - mu) / s)
    weights = dict(zip(SIGNALS, p.reward_weights))
    per_click = weights["click"] + weights["watch_ratio"] * watch + weights["long_view"] * norm.sf(
        (np.log(p.long_view_ratio) - mu) / s)
    for name, (intercept, slope) in POST_CLICK.items():
        logit = intercept + slope * log_sat
        logit = logit + (p.conformity_like * pop if name == "like" else 0) + (p.familiarity_click * fam if name != "hate" else 0)
        per_click = per_click + weights[name] * sigmoid(logit)
    return dict(sat=sat, fam=fam, familiar_creator=familiar_creator, pop=pop, logit=click_logit, click=click,
                reward=click * per_click)


def test_satisfaction_and_expected_logged_reward_match_the_formulas(stepped):
    sim = stepped
    ref = reference_tables(sim)
    mask = sim.action_mask()
    np.testing.assert_allclose(sim.expected_reward(), ref["sat"] * mask, rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(sim.expected_observed(), ref["reward"] * mask, rtol=1e-4, atol=1e-5)
    assert ref["sat"].max() > sim.world.reward_max  # quality lifts the best items above v0's cap
    assert ref["familiar_creator"].mean() > 0.002 and (ref["fam"][~ref["familiar_creator"]] > 0.1).any()


def test_sampled_signals_follow_their_expectations():
    """4,096 fresh sessions, one random item each: sample means within 4 standard errors."""
    n = 4096
    sim = Simulator(kuairec_world_v1(), v1_params(), n, seed=1)
    sim.reset(1)
    rng = np.random.default_rng(2)
    actions = rng.integers(0, sim.world.n_items, n)
    ref = reference_tables(sim)
    rows = np.arange(n)
    expected_reward, p_click = ref["reward"][rows, actions], ref["click"][rows, actions]
    result = sim.step(actions)
    click = result.signals[0]
    assert abs(click.mean() - p_click.mean()) < 4 * np.sqrt(p_click.mean() / n)
    assert abs(result.observed_feedback.mean() - expected_reward.mean()) < 4 * result.observed_feedback.std() / np.sqrt(n)
    assert 0.04 < click.mean() < 0.15  # design 3.3: CTR ~0.08 on uniform-random impressions
    unclicked = click == 0
    assert (result.signals[:, unclicked] == 0).all() and (result.observed_feedback[unclicked] == 0).all()
    clicked = ~unclicked
    np.testing.assert_array_equal(result.signals[2, clicked], result.signals[1, clicked] >= 1.0)  # long view
    np.testing.assert_allclose(  # click * weighted signals
        result.observed_feedback, np.asarray(sim.params.reward_weights, np.float32) @ result.signals, rtol=1e-5, atol=1e-6)
    first = first_sessions(sim)  # later sessions of a user see the long-term history the first one just wrote
    np.testing.assert_allclose(result.true_reward[first], np.clip(ref["sat"][rows, actions][first], 0, 5),
                               atol=0.25)  # noise sd 0.05


def test_logged_history_records_signals_popularity_and_exposure(stepped):
    sim = stepped
    popularity = np.log1p(sim.world.pop_prior + sim.clicks)
    before_exposure = sim.exposure.copy()
    actions = np.arange(12) * 7
    result = sim.step(actions)
    for b in range(12):
        np.testing.assert_array_equal(sim.sessions.recent_signals[b, -1], result.signals[:, b])
        assert sim.sessions.recent_popularity[b, -1] == np.float32(popularity[actions[b]])
        assert sim.sessions.recent_exposure[b, -1] == np.float32(np.log1p(before_exposure[actions[b]]))
        assert sim.recent_feedback[b, -1] == result.observed_feedback[b]
    assert sim.exposure[actions].sum() - before_exposure[actions].sum() == 12


def test_shared_clicks_count_logged_clicks():
    sim = Simulator(kuairec_world_v1(), v1_params(), 256, seed=3)
    sim.reset(3)
    result = sim.step(np.zeros(256, np.int64) + 5)  # everyone is shown item 5
    assert sim.clicks[5] == result.signals[0].sum() > 0
    assert sim.clicks.sum() == sim.clicks[5]


def test_with_every_pull_off_the_logged_ranking_is_the_true_ranking(stepped):
    """The logged_oracle_regret control: every signal is monotone in satisfaction, so the argmaxes agree."""
    sim = stepped
    control = dataclasses.replace(sim.params, conformity=0.0, conformity_like=0.0, familiarity_click=0.0,
                                  familiarity_watch=0.0)
    twin = Simulator(sim.world, control, 12, seed=0)
    for name in sim.sessions._fields:
        getattr(twin.sessions, name)[...] = getattr(sim.sessions, name)
    truth, logged = twin.expected_reward(), twin.expected_observed()
    np.testing.assert_array_equal(truth.argmax(axis=1), logged.argmax(axis=1))
    default = sim.expected_observed()
    assert (default.argmax(axis=1) != truth.argmax(axis=1)).any()  # the pulls do reorder


def test_calibrated_watch_ratio_without_familiarity_or_noise():
    sim = Simulator(kuairec_world_v1(), v1_params(familiarity_watch=0.0, watch_noise=0.0, conformity=8.0), 512, seed=5)
    sim.reset(5)
    actions = np.random.default_rng(5).integers(0, sim.world.n_items, 512)
    sat = sim.expected_reward()[np.arange(512), actions]
    result = sim.step(actions)
    clicked = result.signals[0] == 1
    assert clicked.sum() > 50
    np.testing.assert_allclose(result.signals[1, clicked], sat[clicked], rtol=1e-6)


def test_repeats_log_nothing_in_nx0():
    sim = Simulator(kuairec_world_v1(), v1_params(conformity=20.0), 64, seed=6)
    sim.reset(6)
    top = int(np.argmax(sim.world.pop_prior))  # pop score 1: clicks almost sure
    first = sim.step(np.full(64, top))
    again = sim.step(np.full(64, top))
    assert first.signals[0].sum() > 32
    assert again.repeated.all() and (again.signals == 0).all() and (again.reward == 0).all() and (again.true_reward == 0).all()


def test_v1_knobs_refused_on_v0_worlds():
    with pytest.raises(ValueError, match="conformity: v1 knob") as error:
        Simulator(kuairec_world(), SimParams(conformity=1.0), 1)
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="click_model: v1 knob"):
        Simulator(kuairec_world(), SimParams(click_model="cascade", slate_size=3), 1)
    with pytest.raises(ValueError, match="reward_weights: unknown signal"):
        SimParams(reward_weights={"clicks": 1})
    with pytest.raises(ValueError, match="watch_max must be in"):
        SimParams(watch_max=0.0)


# ------------------------------------------------------------------ slates (docs/simulator.md, "v1 slates")
def slate_click_probabilities(logits: np.ndarray, click_model: str, position_decay: float) -> np.ndarray:
    """(B, S + 1) exact probability that the user clicks slot j of a slate of distinct items with
    click logits ``logits`` (B, S); the last column is the skip. Position model: enumerate the 2^S
    examination patterns (slot j examined with (1 + j)^-eta), then a multinomial logit over the
    examined items and a skip of logit 0. Cascade: reach slot j with prod_{i<j} (1 - c_i), click with c_j."""
    n, size = logits.shape
    if click_model == "cascade":
        click = sigmoid(logits)
        reach = np.cumprod(np.concatenate([np.ones((n, 1)), 1 - click], axis=1), axis=1)  # (B, S + 1)
        return np.concatenate([reach[:, :size] * click, reach[:, size:]], axis=1)
    theta = (1.0 + np.arange(size)) ** -position_decay
    weights = np.exp(logits)
    out = np.zeros((n, size + 1))
    for pattern in itertools.product([False, True], repeat=size):
        examined = np.array(pattern)
        chance = np.prod(np.where(examined, theta, 1 - theta))
        total = 1 + (weights * examined).sum(axis=1, keepdims=True)
        out[:, :size] += chance * weights * examined / total
        out[:, size:] += chance / total
    return out


@pytest.mark.parametrize("click_model", ["position", "cascade"])
def test_slate_clicks_follow_the_click_model(click_model):
    """3,072 sessions after two slate steps, one slate of 4 distinct random items each: the share of
    clicks on each slot (and of skips) within 4 standard errors of the numpy click model, the logged
    slate and the history consistent with the click, the truth the clicked item's satisfaction."""
    n, size = 3072, 4
    sim = Simulator(kuairec_world_v1(), v1_params(slate_size=size, click_model=click_model), n, seed=8)
    sim.reset(8)
    rng = np.random.default_rng(8)
    n_items = sim.world.n_items

    def slates():
        return np.stack([rng.choice(n_items, size, replace=False) for _ in range(n)])

    for _ in range(2):
        result = sim.step(slates())
        sim.reset_sessions(np.flatnonzero(result.terminated | result.truncated))
    actions = slates()
    ref = reference_tables(sim)
    rows = np.arange(n)[:, None]
    expected = slate_click_probabilities(ref["logit"][rows, actions], click_model, sim.params.position_decay)
    history_before = sim.recent_items.copy()
    result = sim.step(actions)
    log = sim.sessions.slate_log
    took = result.consumed >= 0
    slot = np.where(took, (actions == result.consumed[:, None]).argmax(axis=1), -1)
    assert (actions[took, slot[took]] == result.consumed[took]).all()
    outcome = np.zeros((n, size + 1), bool)
    outcome[np.arange(n), np.where(took, slot, size)] = True
    share, probability = outcome.mean(axis=0), expected.mean(axis=0)
    np.testing.assert_array_less(np.abs(share - probability), 4 * np.sqrt(probability * (1 - probability) / n))
    fresh = took & ~result.repeated  # NX_0: a clicked item shown in an earlier step earns and logs nothing
    assert fresh.sum() > 0.9 * took.sum() and not result.repeated[~took].any()
    np.testing.assert_array_equal(log == 1, fresh[:, None] & (np.arange(size) == slot[:, None]))
    np.testing.assert_array_equal(result.signals[0], fresh)
    assert (result.signals[:, ~fresh] == 0).all() and (result.true_reward[~fresh] == 0).all()
    sat = ref["sat"][np.arange(n), actions[np.arange(n), slot]]
    first = fresh & first_sessions(sim)  # later sessions of a user see the history the first one just wrote
    np.testing.assert_allclose(result.true_reward[first], np.clip(sat[first], 0, 5), atol=0.25)  # noise sd 0.05
    np.testing.assert_array_equal(sim.recent_items[took, -1], result.consumed[took])
    np.testing.assert_array_equal(sim.sessions.recent_position[took, -1], slot[took])
    np.testing.assert_array_equal(sim.recent_items[~took], history_before[~took])  # a skip logs no consumption
    if click_model == "position":  # slot j examined with theta_j, whatever the items
        theta = (1.0 + np.arange(size)) ** -sim.params.position_decay
        examined = (log >= 0).mean(axis=0)
        np.testing.assert_array_less(np.abs(examined - theta), 4 * np.sqrt(theta * (1 - theta) / n) + 1e-9)
    else:  # examined top-down up to the click
        reached = np.where(took, slot, size - 1)
        np.testing.assert_array_equal(log >= 0, np.arange(size)[None, :] <= reached[:, None])
