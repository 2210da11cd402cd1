"""DSRM: the purified state is closer to the simulator's true interest than the raw one, by a margin
that grows with the observation noise and vanishes without it, and the model is a safe,
reloadable, SB3-pluggable component."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO

import recgym  # noqa: F401  (registers the env ids)
from recgym.agents.dsrm import DSRM, DSRMConfig, DSRMExtractor, evaluate, pretrain
from recgym.agents.dsrm.evaluate import cosine, ndcg_at
from recgym.agents.dsrm.model import resolve_device
from recgym.agents.dsrm.train import Log, load_model, train_cli
from recgym.envs.sb3 import SB3VecEnv
from recgym.world import kuairec_world, synthetic_world

ENV = "recgym/Synthetic-v0"
TINY = {"d_model": 32, "n_heads": 4, "n_layers": 1, "hidden": 128}
NOISE_OFF = {"popularity_noise": 0.0, "exposure_bias": 0.0, "observation_noise": 0.0}
HIGH_NOISE = {"popularity_noise": 1.5, "exposure_bias": 0.95, "observation_noise": 0.15}  # 3x the defaults

pytestmark = pytest.mark.usefixtures("one_torch_thread")




@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[DSRM, object]:
    torch.set_num_threads(1)
    logdir = tmp_path_factory.mktemp("runs")
    model = pretrain(ENV, timesteps=20_000, num_envs=200, encoder_epochs=2, diffusion_epochs=10, logdir=logdir,
                     seed=0, device="cpu", progress=False, **TINY)
    return model, logdir


def _ratio_at(noise: dict[str, float]) -> float:
    model = pretrain(ENV, timesteps=20_000, num_envs=200, encoder_epochs=2, diffusion_epochs=10, logdir=None,
                     seed=0, device="cpu", progress=False, env_options=noise, **TINY)
    return evaluate(model, ENV, timesteps=3_000, num_envs=100, seed=7, env_options=noise).ratio


def test_purified_state_is_closer_to_the_true_interest(trained):
    model, _ = trained
    scores = evaluate(model, ENV, timesteps=3_000, num_envs=100, seed=7)
    assert scores.n_states > 1_500
    assert scores.cosine_raw > scores.cosine_history > 0.05  # the encoder already beats the heuristic
    assert scores.ratio > 1.005, scores.as_dict()  # measured 1.020 (cos 0.372 -> 0.379)


def test_denoising_gain_grows_with_the_noise_and_vanishes_without_it():
    off, high = _ratio_at(NOISE_OFF), _ratio_at(HIGH_NOISE)
    assert abs(off - 1) < 0.01, off  # measured 1.006: nothing to remove, the purified state is the raw one
    assert high > off + 0.015, (off, high)  # measured 1.040


def test_debiasing_fit_recovers_the_noise_model():
    """Hand-made log: feedback = taste + 0.8 pop, lost with probability 0.6 (1 - pop)."""
    rng = np.random.default_rng(0)
    n, n_items = 200_000, 50
    popularity = rng.uniform(0, 1, n_items)
    item = rng.integers(0, n_items, n)
    user = rng.integers(0, 100, n)
    taste = rng.normal(1.0, 0.3, n)
    feedback = np.where(rng.random(n) < 0.6 * (1 - popularity[item]), 0.0, taste + 0.8 * popularity[item])
    log = Log(np.zeros((n, 1), np.int64), np.zeros((n, 1), np.float32), item, feedback.astype(np.float32), user,
              popularity)
    fitted = log.fit_debiasing()
    assert fitted.beta == pytest.approx(0.8, abs=0.02)
    assert fitted.propensity_intercept == pytest.approx(0.4, abs=0.01)
    assert fitted.propensity_slope == pytest.approx(0.6, abs=0.02)
    debiased, weights = log.debiased_feedback(fitted)
    logged = feedback > 0
    assert abs(np.corrcoef(debiased[logged], popularity[item][logged])[0, 1]) < 0.01
    assert np.all(weights[~logged] == 0) and weights[logged].mean() == pytest.approx(1.0)
    rare, common = popularity[item] < 0.2, popularity[item] > 0.8
    assert weights[logged & rare].mean() > 1.5 * weights[logged & common].mean()  # rarely logged, weighted up


def test_pretraining_logs_both_losses_to_tensorboard(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, logdir = trained
    events = EventAccumulator(str(logdir))
    events.Reload()
    encoder = [event.value for event in events.Scalars("stage1/encoder_loss")]
    teacher = [event.value for event in events.Scalars("stage1/teacher_loss")]
    diffusion = [event.value for event in events.Scalars("stage1/diffusion_loss")]
    assert len(encoder) == len(teacher) == 2 and len(diffusion) == 10
    assert events.Scalars("stage1/beta")[0].value > 0  # default conformity is on
    assert diffusion[-1] < diffusion[0] < 1.0  # eps-MSE starts below the unit-variance noise and falls


def test_reverse_chain_recovers_a_known_conditional_target():
    """Hand-made case: the clean state is a fixed rotation of the condition; both samplers find it."""
    torch.manual_seed(0)
    model = DSRM(DSRMConfig(embed_dim=8, history_len=4, hidden=128, k_steps=20), "none", 10)
    raw = torch.randn(2_000, 8)
    context = torch.zeros(2_000, 24)
    target = torch.roll(raw / raw.norm(dim=1, keepdim=True), 1, dims=1)
    optimizer = torch.optim.Adam(model.denoiser.parameters(), lr=2e-3)
    for _ in range(20):
        for rows in torch.randperm(2_000).split(200):
            loss = model.diffusion_loss(raw[rows], context[rows], target[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        for sampler, steps in (("ddpm", None), ("ddim", 5)):
            purified = model.purify_state(raw[:500], sampler, steps, n_samples=4, context=context[:500])
            assert torch.cosine_similarity(purified, target[:500]).mean() > 0.8
        untouched = torch.cosine_similarity(raw[:500], target[:500]).mean()
        assert untouched.abs() < 0.1


def test_more_steps_destroy_more_of_the_raw_state():
    levels = [DSRM(DSRMConfig(embed_dim=4, history_len=2, k_steps=k), "none", 3).alpha_bar[-1] for k in (10, 30, 300)]
    assert 1 > levels[0] > levels[1] > levels[2] > 0


def test_save_load_roundtrip_and_world_checks(trained, tmp_path):
    model, _ = trained
    path = model.save(tmp_path / "dsrm.pt")
    loaded = DSRM.load(path, world=synthetic_world(), device="auto")
    obs = {"item_ids": np.array([[3, 4, -1]]), "embeddings": synthetic_world().item_emb[[[3, 4, 0]]] * [[[1], [1], [0]]],
           "feedback": np.array([[1.2, 0.3, 0.0]], np.float32)}
    assert torch.allclose(loaded.purify(obs), model.purify(obs))
    with pytest.raises(ValueError, match="trained on world 'synthetic:200x500"):
        DSRM.load(path, world=kuairec_world())
    with pytest.raises(ValueError, match="trained on world"):
        evaluate(model, "recgym/KuaiRec-v0", timesteps=10, num_envs=10)
    old_format = torch.load(path, weights_only=True)
    del old_format["format_version"]
    torch.save(old_format, tmp_path / "v1.pt")
    with pytest.raises(ValueError, match="format version 1, this code reads version 2"):
        DSRM.load(tmp_path / "v1.pt")


def test_bad_inputs_raise_clear_errors(trained):
    model, _ = trained
    wrong_dim = {"item_ids": np.zeros((2, 3), np.int64), "embeddings": np.zeros((2, 3, 32), np.float32),
                 "feedback": np.zeros((2, 3), np.float32)}
    with pytest.raises(ValueError, match=r"shape \(B, k, 16\), got \(2, 3, 32\)"):
        model.raw_state(wrong_dim)
    kuairec_space = SB3VecEnv("recgym/KuaiRec-v0", num_envs=1).observation_space
    with pytest.raises(ValueError, match="embeddings have 32 dims but the DSRM model expects 16"):
        DSRMExtractor(kuairec_space, model)
    other_catalogue = SB3VecEnv(ENV, num_envs=1, world_options={"n_items": 300}).observation_space
    with pytest.raises(ValueError, match="300 items but the DSRM model was trained on 500"):
        DSRMExtractor(other_catalogue, model)
    with pytest.raises(ValueError, match="behaviour must be one of"):
        pretrain(ENV, timesteps=10, behaviour="greedy", logdir=None, progress=False)
    with pytest.raises(ValueError, match="sampler must be one of"):
        model.purify(wrong_dim | {"embeddings": np.zeros((2, 3, 16), np.float32)}, sampler="euler")
    with pytest.raises(ValueError, match=r"steps must be an integer in \[1, 20\]"):
        model.sample(torch.zeros(1, 16), torch.zeros(1, 48), "ddim", steps=50)
    with pytest.raises(ValueError, match=r"context must have shape \(1, 48\)"):
        model.purify_state(torch.zeros(1, 16), context=torch.zeros(1, 16))


@pytest.mark.parametrize("freeze", [True, False])
def test_sb3_algorithm_reads_the_purified_state(trained, freeze):
    model = copy.deepcopy(trained[0])
    env = SB3VecEnv(ENV, num_envs=8)
    before = [p.detach().clone() for p in model.denoiser.parameters()]
    agent = PPO("MultiInputPolicy", env, n_steps=16, batch_size=64, n_epochs=1, seed=0, device="cpu",
                policy_kwargs={"features_extractor_class": DSRMExtractor,
                               "features_extractor_kwargs": {"model": model, "freeze": freeze}})
    extractor = agent.policy.features_extractor
    assert extractor.features_dim == 16
    assert all(torch.equal(a, b) for a, b in zip(before, extractor.dsrm.denoiser.parameters()))  # no re-init
    agent.learn(total_timesteps=128)
    unchanged = all(torch.equal(a, b) for a, b in zip(before, extractor.dsrm.denoiser.parameters()))
    assert unchanged == freeze  # frozen weights stay, fine-tuned ones follow the policy's loss
    action, _ = agent.predict(env.reset(), deterministic=True)
    assert action.shape == (8,)


def test_scores_on_hand_made_cases():
    assert np.allclose(cosine(np.array([[1.0, 0.0], [0.0, 0.0]]), np.array([[2.0, 0.0], [1.0, 1.0]])), [1.0, 0.0])
    relevance = np.array([[3.0, 2.0, 1.0, 0.0]])
    allowed = np.array([[True, True, False, True]])
    perfect = ndcg_at(np.array([[9.0, 8.0, 7.0, 6.0]]), relevance, allowed, k=2)
    swapped = ndcg_at(np.array([[8.0, 9.0, 7.0, 6.0]]), relevance, allowed, k=2)
    assert perfect[0] == pytest.approx(1.0)
    assert swapped[0] == pytest.approx((2 + 3 / np.log2(3)) / (3 + 2 / np.log2(3)))
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")


def test_cli_training_hook_saves_a_checkpoint_and_logs_scores(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model, path = train_cli(ENV, 1_000, seed=3, logdir=tmp_path, num_envs=100, eval_episodes=5)
    assert path == tmp_path / "dsrm-pretrain_Synthetic-v0_s3_1" / "dsrm.pt"
    assert load_model(path).world_fingerprint == model.world_fingerprint == synthetic_world().fingerprint
    events = EventAccumulator(str(path.parent))
    events.Reload()
    assert {"stage1/encoder_loss", "stage1/diffusion_loss", "dsrm/ratio", "dsrm/cosine_purified"} <= set(
        events.Tags()["scalars"])
