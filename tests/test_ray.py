"""Ray extra: RLlib registration/PPO on recgym envs and the Ray Tune trial backend.

Skipped unless Ray is installed (``pip install "recgym[ray]"``; see ``docs/ray.md``). Runs on a
local 2-CPU Ray without dashboard.
"""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

pytest.importorskip("ray")

import ray  # noqa: E402

from recgym.agents import MostPopular, RandomPolicy  # noqa: E402
from recgym.envs.recsys import RecSysEnv  # noqa: E402
from recgym.envs.vector import RecSysVectorEnv  # noqa: E402
from recgym.evaluation import evaluate  # noqa: E402
from recgym.integrations.ray_tune import run_trials_on_ray  # noqa: E402
from recgym.integrations.rllib import (  # noqa: E402
    RLLIB_ENV_IDS, SHARED_POLICY, make_env, make_population_env, ppo_config,
)

# A session lasts exactly max_turn steps: leave rules and noise off.
FIXED_LENGTH = dict(max_turn=3, leave_window=0, patience=0.0, mode="Free", world_options={"n_items": 50})


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # ship _baseline_trial to the workers
    yield
    ray.shutdown()


def test_recgym_never_imports_ray_and_missing_ray_names_the_extra():
    code = (
        "import sys, recgym, recgym.integrations; assert 'ray' not in sys.modules, 'recgym imported ray'\n"
        "sys.modules['ray'] = None\n"
        "try:\n    import recgym.integrations.rllib\nexcept ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert 'pip install "recgym[ray]"' in out


def test_rllib_creator_builds_one_next_step_batched_env_or_one_session():
    venv = make_env("synthetic", {"num_envs": 4, "max_turn": 5})
    assert isinstance(venv, RecSysVectorEnv) and venv.metadata["autoreset_mode"] is AutoresetMode.NEXT_STEP
    assert venv.num_envs == venv.sim.n_sessions == 4 and venv.params.max_turn == 5
    assert isinstance(make_env("synthetic", {"max_turn": 5}), RecSysEnv)


def test_rllibs_next_step_env_matches_same_step_semantics_and_leaves_no_trace():
    """The creator's NEXT_STEP env: same transitions as a SAME_STEP env while sessions run;
    after the done step, one restart step (reward 0, first observation) that recommends nothing."""
    same_step = RecSysVectorEnv(4, world="synthetic", autoreset_mode=AutoresetMode.SAME_STEP, **FIXED_LENGTH)
    rllib = make_env("synthetic", {"num_envs": 4, **FIXED_LENGTH})
    same_step.reset(seed=3)
    rllib.reset(seed=3)
    actions = np.array([1, 2, 3, 4])
    for step in range(1, 4):
        _, rew_s, _, _, infos_s = same_step.step(actions)
        obs, rew, term, trunc, infos = rllib.step(actions)
        np.testing.assert_array_equal(rew, rew_s)
        np.testing.assert_array_equal(infos["user_id"], infos_s["user_id"])
        assert trunc.all() == (step == 3) and not term.any()
    # NEXT_STEP: the done step returns the departing users' last observation (SAME_STEP: infos["final_obs"]).
    np.testing.assert_array_equal(obs["item_ids"], infos_s["final_obs"]["item_ids"])
    np.testing.assert_allclose(obs["step"], 1.0)
    exposure = rllib.sim.exposure.copy()
    obs, rew, term, trunc, infos = rllib.step(np.array([9, 9, 9, 9]))
    np.testing.assert_allclose(obs["step"], 0.0)
    assert (obs["item_ids"] == -1).all() and (rew == 0).all() and not (term | trunc).any()
    np.testing.assert_array_equal(rllib.sim.exposure, exposure)  # the ignored actions were never shown
    assert exposure.sum() == 12
    _, rew, _, _, _ = rllib.step(actions)
    assert (rew > 0).all() and rllib.sim.exposure.sum() == 16


def test_population_episodes_end_the_way_rllib_expects():
    """RLlib's MultiAgentEpisode is over once every agent it has seen (before this step) is done; the
    wrapper must signal ``__all__`` exactly then and leave no live agent behind."""
    env = make_population_env({"world": "synthetic", "n_users": 3, "max_cycles": 12, "world_options": {"n_items": 40}})
    rng = np.random.default_rng(0)
    endings = {"terminated": 0, "truncated": 0, "turnover": 0}
    env.reset(seed=0)
    seen, finished = set(env.agents), set()
    for _ in range(400):
        live_before = list(env.par_env.agents)
        obs, _, terminated, truncated, _ = env.step({a: int(rng.integers(40)) for a in env.agents})
        finished |= {a for a in obs if terminated[a] or truncated[a]}
        over = terminated["__all__"] or truncated["__all__"]
        assert over == (seen <= finished) == (not env.agents)
        assert set(env.agents) == set(obs) - finished
        seen |= set(obs)
        if over:
            if truncated["__all__"] and env.par_env.agents:
                endings["turnover"] += 1  # everyone who acted left at once; arrivals were dropped
                assert not set(obs) - set(live_before)
            else:
                endings["truncated" if truncated["__all__"] else "terminated"] += 1
            env.reset(seed=sum(endings.values()))
            seen, finished = set(env.agents), set()
    assert endings["turnover"] > 0 and endings["truncated"] + endings["terminated"] > 0, endings


def _ppo_one_iteration(env_id: str, env_config: dict, **options) -> dict:
    algo = ppo_config(env_id, env_config=env_config, num_envs_per_env_runner=8, rollout_fragment_length=16,
                      minibatch_size=64, num_epochs=1, hidden=(32,), **options).build_algo()
    try:
        return algo.train()
    finally:
        algo.stop()


def test_ppo_trains_one_iteration_on_kuairec(local_ray):
    result = _ppo_one_iteration("recgym/KuaiRec-v0", {"max_turn": 10})
    runners = result["env_runners"]
    assert runners["num_env_steps_sampled"] >= 8 * 16
    assert runners["num_episodes"] > 0 and 0 < runners["episode_return_mean"] <= 5 * 10  # reward_max 5 x max_turn
    learner = result["learners"]["default_policy"]
    assert math.isfinite(learner["total_loss"]) and learner["num_module_steps_trained"] >= 8 * 16


def test_rllib_records_full_length_episodes(local_ray):
    """Every session lasts max_turn=3 steps; with SAME_STEP autoreset RLlib would record 2-step episodes."""
    runners = _ppo_one_iteration("recgym/Synthetic-v0", FIXED_LENGTH)["env_runners"]
    assert runners["num_episodes"] > 8
    assert runners["episode_len_min"] == runners["episode_len_max"] == 3


def test_ppo_trains_one_iteration_on_population(local_ray):
    result = _ppo_one_iteration("recgym/Population-v0", {"world": "synthetic", "n_users": 4, "max_cycles": 8})
    runners = result["env_runners"]
    assert runners["num_episodes"] > 0 and runners["episode_return_mean"] > 0
    learner = result["learners"][SHARED_POLICY]
    assert math.isfinite(learner["total_loss"]) and learner["num_module_steps_trained"] > 0


def test_ppo_on_a_remote_env_runner_is_seeded(local_ray):
    first, second = (_ppo_one_iteration("recgym/Synthetic-v0", {}, num_env_runners=1, seed=5) for _ in range(2))
    assert first["env_runners"]["num_env_steps_sampled"] >= 8 * 16
    assert first["env_runners"]["episode_return_mean"] == second["env_runners"]["episode_return_mean"]


def _baseline_trial(trial: dict) -> dict:
    policy = {"random": RandomPolicy, "popular": MostPopular}[trial["method"]]()
    return evaluate(policy, trial["env"], episodes=32, seed=trial["seed"], num_envs=32).summary


def test_trial_grid_on_ray_equals_local_run(local_ray, tmp_path):
    trials = [{"method": m, "seed": s, "env": "recgym/Synthetic-v0"} for m in ("random", "popular") for s in (0, 1)]
    results = run_trials_on_ray(trials, _baseline_trial, tmp_path)
    assert results == [_baseline_trial(trial) for trial in trials]  # same columns, same numbers, trial order
    assert results[0]["coverage"] > 10 * results[2]["coverage"]  # random spreads, most-popular concentrates
    assert len(list(tmp_path.glob("recgym/*/events.out.tfevents.*"))) == 4  # one TensorBoard log per trial


def test_trial_grid_reports_bad_input_and_failed_trials(local_ray, tmp_path):
    with pytest.raises(ValueError, match="non-empty list of config dicts"):
        run_trials_on_ray([], _baseline_trial, tmp_path)
    with pytest.raises(RuntimeError, match="1 trial\\(s\\) failed; first: \\{'method': 'oracle'"):
        run_trials_on_ray([{"method": "oracle", "seed": 0, "env": "recgym/Synthetic-v0"}], _baseline_trial, tmp_path)


def test_every_id_is_registered_and_unknown_ids_are_rejected():
    assert set(RLLIB_ENV_IDS) == {"recgym/KuaiRec-v0", "recgym/KuaiRand-v0", "recgym/Synthetic-v0", "recgym/KuaiRec-v1",
                                  "recgym/KuaiRand-v1", "recgym/Synthetic-v1", "recgym/Population-v0"}
    with pytest.raises(ValueError, match="valid ids: recgym/KuaiRec-v0"):
        ppo_config("recgym/Nope-v0")
