"""ppo-gru: trains through the registry on v0 and v1, loads back, and its state depends on the history's order."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th

from recgym.agents import load_agent, train_agent
from recgym.agents.recurrent import GRUHistoryExtractor
from recgym.envs.sb3 import SB3VecEnv
from recgym.evaluation import evaluate

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("env_id", ["recgym/Synthetic-v0", "recgym/Synthetic-v1"])
def test_ppo_gru_trains_a_few_hundred_steps_and_loads_back(env_id, tmp_path):
    model, path = train_agent("ppo-gru", env_id, 384, seed=0, logdir=tmp_path, num_envs=8)
    assert model.num_timesteps >= 384 and model._n_updates >= 2 * model.n_epochs  # two rollouts of 8 x 32, trained on
    extractor = model.policy.features_extractor
    assert isinstance(extractor, GRUHistoryExtractor)
    assert path.parent.name.startswith("ppo-gru_") and path.is_file()
    loaded = load_agent("ppo-gru", path, world=model.get_env().venv.world)
    for name, tensor in model.policy.state_dict().items():
        th.testing.assert_close(loaded.policy.state_dict()[name], tensor)
    result = evaluate(loaded, env_id, episodes=8, num_envs=8, seed=1)
    assert np.isfinite(result.summary["R_cum"]) and result.summary["length"] >= 1


def test_the_gru_state_depends_on_the_order_of_the_history():
    venv = SB3VecEnv("recgym/Synthetic-v1", num_envs=4)
    venv.seed(0)
    obs = venv.reset()
    for step in range(12):  # fill the 10 history slots
        obs, *_ = venv.step(np.arange(4) * 7 + step)
    th.manual_seed(0)
    extractor = GRUHistoryExtractor(venv.observation_space, hidden=16)
    slot_keys = ("item_ids", "embeddings", "feedback", "signals", "popularity", "exposure", "position")
    as_tensors = {key: th.as_tensor(value, dtype=th.float32) for key, value in obs.items()}
    reversed_history = {key: (value.flip(1) if key in slot_keys else value) for key, value in as_tensors.items()}
    with th.no_grad():
        features, again, flipped = (extractor(o) for o in (as_tensors, as_tensors, reversed_history))
    th.testing.assert_close(features, again)
    assert (features - flipped).abs().max() > 1e-3, (features - flipped).abs().max()
    # the same multiset of history slots, so an order-blind state (a mean embedding) would not move
    th.testing.assert_close(as_tensors["embeddings"].mean(1), reversed_history["embeddings"].mean(1))


def test_bad_hidden_size_is_a_one_line_error():
    venv = SB3VecEnv("recgym/Synthetic-v0", num_envs=2)
    with pytest.raises(ValueError, match="hidden must be an integer >= 1, got 0"):
        GRUHistoryExtractor(venv.observation_space, hidden=0)
