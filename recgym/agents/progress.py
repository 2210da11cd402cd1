"""A training progress bar that ends at 100%: its total is the number of steps SB3 really runs."""

from __future__ import annotations

import warnings

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import ProgressBarCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.type_aliases import TrainFrequencyUnit
from tqdm import TqdmExperimentalWarning
from tqdm.rich import tqdm


def steps_to_run(model: BaseAlgorithm, requested: int) -> int:
    """Environment steps ``model.learn`` runs for ``requested`` more steps.

    SB3 checks its budget only between rollouts, so it runs whole rollouts: ``n_steps * n_envs``
    steps for on-policy algorithms, ``train_freq * n_envs`` for off-policy ones counting steps
    (one vector step, ``n_envs``, where ``train_freq`` counts episodes: then the count is a lower
    bound). 1,000 requested steps of PPO at 64 sessions x 32 steps run 2,048.
    """
    if isinstance(model, OnPolicyAlgorithm):
        rollout = model.n_steps
    elif getattr(model, "train_freq", None) is not None and model.train_freq.unit == TrainFrequencyUnit.STEP:
        rollout = model.train_freq.frequency
    else:
        rollout = 1
    chunk = rollout * model.n_envs
    return -(-requested // chunk) * chunk


class TrainingProgressBar(ProgressBarCallback):
    """SB3's progress bar (tqdm + rich) whose total is :func:`steps_to_run`, not the requested budget.

    SB3's own bar takes the requested ``total_timesteps`` as its total and ends past it ("2,048/1,000");
    this one ends at exactly 100% (``pbar.n == pbar.total``); a run stopped early by another callback
    ends below 100%, as it should. Pass it as a callback instead of ``learn(progress_bar=True)``.
    """

    def _on_training_start(self) -> None:
        with warnings.catch_warnings():  # tqdm's rich front end calls itself experimental; SB3 uses it as is
            warnings.simplefilter("ignore", TqdmExperimentalWarning)
            self.pbar = tqdm(total=steps_to_run(self.model, self.locals["total_timesteps"] - self.model.num_timesteps))
