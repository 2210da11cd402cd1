"""Score DSRM states against the simulator's ground truth (which real systems never have).

Three states of the same observation are compared, each a D-vector in item-embedding space:

* ``history``: the observed-feedback-weighted mean of the history embeddings (a heuristic);
* ``raw``: the encoder's s~_t;
* ``purified``: DSRM's s^_t.

Scores: cosine to the true current interest ``sim.interest`` (B, D), and NDCG@10 of ranking the
still-allowed items by ``<state, e_i>`` against the true taste ``reward_max * sigmoid(a <u, e_i> + b)``
of that interest (the world's affinity; the session terms of ``sim.expected_reward()`` -- time of
day, boredom -- are not part of the latent interest a state should recover, and evaluating them
for every item costs seconds per batch).
Only states with at least one history item are scored (at a session's first step there is
nothing to denoise).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from recgym.agents.dsrm.model import DSRM
from recgym.agents.dsrm.rollouts import make_venv, rollout

STATES = ("history", "raw", "purified")


def cosine(states: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(B,) cosine similarity of rows of (B, D) arrays (0 for a zero state)."""
    norms = np.linalg.norm(states, axis=1) * np.linalg.norm(truth, axis=1)
    return np.einsum("bd,bd->b", states, truth) / np.maximum(norms, 1e-12)


def ndcg_at(scores: np.ndarray, relevance: np.ndarray, allowed: np.ndarray, k: int = 10) -> np.ndarray:
    """(B,) NDCG@k of ranking items by ``scores`` (B, I) with graded ``relevance`` (B, I) among ``allowed``."""
    rows = np.arange(scores.shape[0])[:, None]
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    masked = np.where(allowed, scores, -np.inf)
    top = np.argpartition(-masked, k - 1, axis=1)[:, :k]
    top = top[rows, np.argsort(-masked[rows, top], axis=1)]
    ideal = -np.sort(-np.where(allowed, relevance, 0.0), axis=1)[:, :k]
    dcg = (relevance[rows, top] * allowed[rows, top]) @ discount
    return dcg / np.maximum(ideal @ discount, 1e-12)


@dataclass(frozen=True)
class DenoisingScores:
    """Mean cosine to the true interest and NDCG@10 per state kind, over ``n_states`` scored states."""

    cosine_history: float
    cosine_raw: float
    cosine_purified: float
    ndcg_history: float
    ndcg_raw: float
    ndcg_purified: float
    n_states: int

    @property
    def ratio(self) -> float:
        """Denoising ratio: cosine(purified, truth) / cosine(raw, truth); > 1 means DSRM helps."""
        return self.cosine_purified / self.cosine_raw

    def as_dict(self) -> dict[str, float]:
        return {**asdict(self), "ratio": self.ratio}


def history_state(obs: dict[str, np.ndarray]) -> np.ndarray:
    """(B, D) observed-feedback-weighted sum of the history embeddings (direction = weighted mean)."""
    return np.einsum("bk,bkd->bd", obs["feedback"], obs["embeddings"])


def evaluate(
    model: DSRM,
    env_id: str,
    *,
    timesteps: int = 10_000,
    num_envs: int = 256,
    behaviour: str = "random",
    seed: int = 1,
    sampler: str = "ddpm",
    steps: int | None = None,
    n_samples: int = 8,
    env_options: dict[str, Any] | None = None,
) -> DenoisingScores:
    """Roll out ``behaviour`` in ``env_id`` and score the three states against the ground truth.

    Raises ``ValueError`` if ``model`` was trained on another world.
    """
    venv = make_venv(env_id, num_envs, env_options)
    model.check_world(venv.world)
    item_emb = venv.world.item_emb
    sums = dict.fromkeys([f"{m}_{s}" for m in ("cosine", "ndcg") for s in STATES], 0.0)
    n_states = 0

    def truth(sim):
        logits = sim.world.affinity_scale * (sim.interest @ item_emb.T) + sim.world.affinity_bias
        return sim.interest.copy(), 1.0 / (1.0 + np.exp(-logits)), sim.action_mask()

    n_steps = -(-timesteps // num_envs)
    for obs, _, _, (interest, relevance, allowed) in rollout(venv, n_steps, behaviour, seed, truth):
        scored = obs["item_ids"][:, -1] >= 0
        if not scored.any():
            continue
        with torch.no_grad():
            raw = model.raw_state(obs)
            purified = model.purify_state(raw, sampler, steps, n_samples, seed, context=model.history_context(obs))
        states = {"history": history_state(obs), "raw": raw.cpu().numpy(), "purified": purified.cpu().numpy()}
        for name, state in states.items():
            sums[f"cosine_{name}"] += cosine(state[scored], interest[scored]).sum()
            sums[f"ndcg_{name}"] += ndcg_at(state[scored] @ item_emb.T, relevance[scored], allowed[scored]).sum()
        n_states += int(scored.sum())
    venv.close()
    if n_states == 0:
        raise ValueError("no state with a non-empty history was visited; raise timesteps")
    return DenoisingScores(**{key: value / n_states for key, value in sums.items()}, n_states=n_states)


