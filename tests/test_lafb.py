"""LAFB: learns per-user familiarity factors from the log (0 when the log is unbiased), raises the novel
watch-time share over its base and the hand-set debiaser and more so at a higher strength, refuses bad knobs,
keeps the mask; the equal-watch-time comparison of the post-rankers' strength sweeps."""

from __future__ import annotations

import numpy as np
import pytest

from recgym.agents import FamiliarityDebiaser, LinUCB, make_policy
from recgym.agents.lafb import LAFB, familiarity_rollout
from recgym.evaluation import make_eval_env
from recgym.experiments import equal_watch_time
from recgym.metrics import path_value_at

SYN = "recgym/Synthetic-v1"
NO_CATEGORY_LEAVE = dict(leave_window=0)  # sessions end by patience: the comparison is about the log's bias
UNBIASED_LOG = dict(familiarity_click=0.0, familiarity_watch=0.0, conformity=0.0, conformity_like=0.0)


def rollout(policy, **options):
    return familiarity_rollout(policy, SYN, episodes=96, seed=0, num_envs=48, **NO_CATEGORY_LEAVE, **options)


def test_lafb_learns_the_familiarity_bias_of_the_log_and_nothing_without_it():
    biased, control = LAFB(LinUCB()), LAFB(LinUCB())
    rollout(biased)
    rollout(control, **UNBIASED_LOG)
    users = np.arange(biased.world.n_users)
    creator, control_creator = (policy.factors(users)[:, 0] for policy in (biased, control))
    # measured: mean creator factor 2.438 (100% of users > 0) with the log's pulls, 0.069 (10.5%) without
    # them (rank units per unit of familiarity), since the rollout is evaluate's (the older loop's: 2.196 / 100%,
    # 0.113 / 13%). Since the acquired tastes (d4b150c) popularity follows
    # content, so a familiar creator's items share its popularity and the conformity pull reads as
    # familiarity: with only the familiarity pulls off the factor stays 1.031 (100%), hence the control
    # turns every pull off. Before d4b150c: 0.375 (90.5%) and 0.0 (0%) with only the familiarity pulls off;
    # at 124ba7a (taste inside the session) 0.865 / 98% and control 0.057 / 14%
    assert creator.mean() > 1.0 and (creator > 0).mean() > 0.85, (creator.mean(), (creator > 0).mean())
    assert control_creator.mean() < 0.1 * creator.mean() and (control_creator > 0).mean() < 0.2, control_creator.mean()


def test_lafb_raises_the_novel_watch_share_over_its_base_and_the_hand_set_debiaser():
    base, hand_set, lafb = (rollout(policy) for policy in (LinUCB(), FamiliarityDebiaser(LinUCB()), LAFB(LinUCB())))
    # measured (Synthetic-v1, 96 episodes): novel watch-time share 0.787 base, 0.604 hand-set, 0.994 lafb; watch
    # time per episode 2003 s, 1596 s, 1960 s since the rollout is evaluate's (its first 96 episodes to start; the
    # older loop counted every step until 96 had ended: 0.833, 0.618, 0.912 and 2918 s, 1977 s, 2996 s)
    assert lafb["novel_watch_share"] > base["novel_watch_share"] + 0.05, (lafb, base)
    assert lafb["novel_watch_share"] > hand_set["novel_watch_share"] + 0.1, (lafb, hand_set)
    assert lafb["watch_time"] > 0.8 * base["watch_time"], (lafb, base)
    assert lafb["watch_time"] > hand_set["watch_time"], (lafb, hand_set)


def test_a_stronger_lafb_raises_the_novel_watch_share_and_strength_0_serves_the_base_order():
    novel = [rollout(LAFB(LinUCB(), strength=strength))["novel_watch_share"] for strength in (0.0, 0.5, 1.0)]
    # measured (Synthetic-v1, 96 episodes): 0.776, 0.857, 0.994 (LinUCB alone 0.787: another tie-break seed)
    assert novel[0] + 0.05 < novel[1] and novel[1] + 0.05 < novel[2], novel
    assert rollout(FamiliarityDebiaser(LinUCB(), weight=0.0))["novel_watch_share"] == novel[0]  # both: the base's order


def test_equal_watch_time_reads_both_sweeps_at_the_largest_common_change_of_watch_time():
    assert path_value_at([0, 2, 1, 3], [0, 20, 10, 30], 1.5) == 15.0  # the first segment reaching 1.5: 0 -> 2
    assert path_value_at([5, 3], [1, 2], 4) == 1.5
    with pytest.raises(ValueError, match=r"target must be in the path's range \[3, 5\], got 6"):
        path_value_at([5, 3], [1, 2], 6)
    base = {"watch_time": 100.0, "novel_watch_share": 0.5, "emerging_creator_share": 0.10}

    def sweep(*points):
        return [base, *({"watch_time": w, "novel_watch_share": n, "emerging_creator_share": e} for w, n, e in points)]

    # the hand-set ranker lowers watch time to 60 s, LAFB to 70 s then raises it to 120 s: both reach [70, 100]; 70 s
    # is the end farthest from the base's 100 s. Hand-set: half-way along 80 -> 60; LAFB: its 70 s point
    paths = {"debias-linucb": sweep((80, 0.3, 0.20), (60, 0.2, 0.30), (70, 0.1, 0.40)),
             "lafb": sweep((90, 0.7, 0.12), (70, 0.9, 0.16), (120, 1.0, 0.5))}
    result = equal_watch_time(paths)
    assert result["watch_time"] == 70 and result["base_watch_time"] == 100
    assert result["debias-linucb"] == pytest.approx({"novel_watch_share": 0.25, "emerging_creator_share": 0.25})
    assert result["lafb"] == pytest.approx({"novel_watch_share": 0.9, "emerging_creator_share": 0.16})
    # they move watch time in opposite directions: the only common watch time is the base's, where both are the base
    opposite = equal_watch_time({"debias-linucb": sweep((80, 0.3, 0.2)), "lafb": sweep((130, 0.9, 0.3))})
    assert opposite["watch_time"] == 100 and opposite["lafb"]["novel_watch_share"] == 0.5


@pytest.mark.parametrize("kwargs, message", [
    (dict(candidates=0), "candidates must be an integer >= 1"),
    (dict(window=1.5), "window must be an integer >= 1"),
    (dict(ridge=0.0), "ridge must be a finite number > 0"),
    (dict(user_ridge=-1.0), "user_ridge must be a finite number > 0"),
    (dict(max_factor=float("inf")), "max_factor must be a finite number > 0"),
    (dict(strength=-0.5), "strength must be a finite number >= 0"),
    (dict(strength=float("nan")), "strength must be a finite number >= 0"),
])
def test_bad_knobs_are_one_line_errors(kwargs, message):
    with pytest.raises(ValueError, match=message) as error:
        LAFB(LinUCB(), **kwargs)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("kwargs, message", [
    (dict(weight=-1.0), "weight must be a finite number >= 0"), (dict(weight=float("nan")), "weight must be a finite"),
    (dict(candidates=0), "candidates must be an integer >= 1"), (dict(window=2.5), "window must be an integer >= 1"),
])
def test_hand_set_debiaser_refuses_bad_knobs_by_name(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FamiliarityDebiaser(LinUCB(), **kwargs)


def test_v0_world_and_an_update_without_its_act_are_refused():
    with pytest.raises(ValueError, match="lafb needs a v1 world"):
        LAFB(LinUCB()).bind(make_eval_env("recgym/Synthetic-v0", 2))
    venv = make_eval_env(SYN, 2)
    obs, _ = venv.reset(seed=0)
    policy = make_policy("lafb")
    policy.bind(venv, seed=0)
    with pytest.raises(ValueError, match="needs the actions of its last act"):
        policy.update(obs, np.array([0, 1]), np.zeros(2))


def test_registered_lafb_respects_the_mask():
    venv = make_eval_env(SYN, 8, mode="NX_0")
    obs, _ = venv.reset(seed=1)
    policy = make_policy("lafb")
    policy.bind(venv, seed=1)
    for _ in range(10):
        mask = venv.sim.action_mask()
        mask[:, 1::2] = False  # forbid half the catalogue on top of the no-repeat mask
        actions = policy.act(obs, mask)
        assert mask[np.arange(8), actions].all()
        next_obs, rewards, *_ = venv.step(actions)
        policy.update(obs, actions, rewards)
        obs = next_obs
