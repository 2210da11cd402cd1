"""DSRM: a diffusion denoiser of the user state (history Transformer + conditional DDPM).

Stage I (:func:`pretrain`) logs a behaviour policy in a recgym env and fits the model from observed
data only; :func:`evaluate` scores raw and purified states against the simulator's ground truth;
:class:`DSRMExtractor` feeds the purified state to any Stable-Baselines3 algorithm.
"""

from recgym.agents.dsrm.evaluate import DenoisingScores, evaluate
from recgym.agents.dsrm.extractor import DSRMExtractor
from recgym.agents.dsrm.model import DSRM, DSRMConfig
from recgym.agents.dsrm.rollouts import BEHAVIOURS
from recgym.agents.dsrm.train import pretrain, stage_one

__all__ = ["BEHAVIOURS", "DSRM", "DSRMConfig", "DSRMExtractor", "DenoisingScores", "evaluate", "pretrain", "stage_one"]
