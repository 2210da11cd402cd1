"""DSRM as a Stable-Baselines3 features extractor: any SB3 algorithm reads the purified state.

    policy_kwargs = {"features_extractor_class": DSRMExtractor,
                     "features_extractor_kwargs": {"model": "dsrm.pt", "freeze": True}}
    PPO("MultiInputPolicy", SB3VecEnv("recgym/KuaiRec-v0", num_envs=64), policy_kwargs=policy_kwargs)
"""

from __future__ import annotations

from pathlib import Path

import torch
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

from recgym.agents.dsrm.model import DSRM


class DSRMExtractor(BaseFeaturesExtractor):
    """Features = the purified state s^_t (B, D), averaged over ``n_samples`` seeded DDIM chains.

    Args:
        observation_space: a recgym ``Dict`` observation space (item_ids, embeddings, feedback, step).
        model: a :class:`DSRM` or the path of a saved one.
        freeze: keep DSRM's weights fixed (default) or fine-tune them with the policy's loss.
        sampler, steps, n_samples: reverse-chain options (see :meth:`DSRM.sample`); the DDIM sampler
            with a fixed noise seed makes the features a deterministic function of the observation.
    """

    def __init__(
        self, observation_space: spaces.Dict, model: DSRM | str | Path, freeze: bool = True,
        sampler: str = "ddim", steps: int | None = None, n_samples: int = 4,
    ) -> None:
        dsrm = model if isinstance(model, DSRM) else DSRM.load(model, device="cpu")
        _check_space(observation_space, dsrm)
        super().__init__(observation_space, features_dim=dsrm.config.embed_dim)
        self.dsrm, self.freeze = dsrm, freeze
        self.sampler, self.steps, self.n_samples = sampler, steps, n_samples
        self.dsrm.requires_grad_(not freeze)

    def apply(self, fn):
        """Apply ``fn`` to this module only: SB3 policies ``apply`` an orthogonal re-initialisation to
        their features extractor, which must not overwrite DSRM's pretrained weights."""
        fn(self)
        return self

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            raw = self.dsrm.raw_state(observations)
            return self.dsrm.purify_state(raw, self.sampler, self.steps, self.n_samples, seed=0,
                                          context=self.dsrm.history_context(observations))


def _check_space(space: spaces.Space, model: DSRM) -> None:
    """Refuse observation spaces of another embedding size, history length or catalogue."""
    keys = ("item_ids", "embeddings", "feedback")
    if not isinstance(space, spaces.Dict) or any(key not in space.spaces for key in keys):
        raise ValueError(f"DSRMExtractor needs a recgym Dict observation space with keys {list(keys)}, got {space}")
    k, dim = space["embeddings"].shape
    if dim != model.config.embed_dim:
        raise ValueError(f"observation embeddings have {dim} dims but the DSRM model expects {model.config.embed_dim}")
    if k > model.config.history_len:
        raise ValueError(f"observation history_len {k} exceeds the DSRM model's history_len {model.config.history_len}")
    n_items = int(space["item_ids"].high.max()) + 1
    if n_items != model.n_items:
        raise ValueError(
            f"observation space has {n_items} items but the DSRM model was trained on {model.n_items} "
            f"(world {model.world_fingerprint!r})"
        )
