"""DSRM networks: the history encoder, the conditional DDPM in item-embedding space, and the wrapper.

Shapes: B states, k history slots, D item-embedding dims, K diffusion steps.

The raw state ``s~_t`` is the encoder's output, a D-vector in ITEM-EMBEDDING space (``<s~_t, e_i>``
scores item i), so it can be compared with the simulator's true interest. The DDPM generates the
purified state ``s^_t`` in the same space, conditioned on ``s~_t`` and on the history's popularity
context (:meth:`DSRM.history_context`: which history items were logged, and how popular they are).
"""

from __future__ import annotations

import dataclasses
import math
import pickle
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recgym.agents.checkpoints import META_KEY, check_meta, check_world, first_line
from recgym.sizes import check_count, check_optional_count
from recgym.world import World

SAMPLERS = ("ddpm", "ddim")
#: Checkpoint format: 2 added the logged item popularity and the popularity-conditioned denoiser; 3: the
#: encoders regress held-out feedback (no feedback bias in the model), the DDPM samples the held-out profile.
FORMAT_VERSION = 3


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"``: CUDA when present, CPU otherwise; anything else is passed to ``torch.device``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclass(frozen=True)
class DSRMConfig:
    """Architecture of a DSRM model.

    embed_dim: D, the world's item-embedding size; history_len: k, the longest history accepted;
    d_model / n_heads / n_layers: the history Transformer; hidden: width of the noise predictor;
    k_steps: K diffusion steps; beta_min / beta_max: ends of the linear noise schedule (DDPM's).
    The schedule is fixed per step, so a larger K noises the raw state more before denoising it.
    """

    embed_dim: int
    history_len: int
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    hidden: int = 256
    k_steps: int = 20
    beta_min: float = 1e-4
    beta_max: float = 0.02

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if f.type == "int":
                check_count(f"DSRMConfig.{f.name}", getattr(self, f.name))
        if not 0 < self.beta_min <= self.beta_max < 1:
            raise ValueError(f"DSRMConfig needs 0 < beta_min <= beta_max < 1, got {self.beta_min}, {self.beta_max}")
        if self.d_model % self.n_heads:
            raise ValueError(f"DSRMConfig.d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")


class HistoryEncoder(nn.Module):
    """Transformer over the last k (item embedding, observed feedback, position) tokens -> s~_t (B, D).

    A learned summary token is always present, so an empty history (session start) still has a state.
    """

    def __init__(self, config: DSRMConfig) -> None:
        super().__init__()
        d = config.d_model
        self.item_proj = nn.Linear(config.embed_dim, d)
        self.feedback_proj = nn.Linear(1, d)
        self.position = nn.Embedding(config.history_len, d)
        self.summary = nn.Parameter(torch.zeros(1, 1, d))
        layer = nn.TransformerEncoderLayer(d, config.n_heads, dim_feedforward=2 * d, dropout=0.0, batch_first=True)
        self.transformer = nn.TransformerEncoder(layer, config.n_layers, enable_nested_tensor=False)
        self.out = nn.Linear(d, config.embed_dim)

    def forward(self, embeddings: torch.Tensor, feedback: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """embeddings (B, k, D), feedback (B, k), valid (B, k) bool -> raw state (B, D)."""
        k = embeddings.shape[1]
        positions = torch.arange(k, device=embeddings.device)
        tokens = self.item_proj(embeddings) + self.feedback_proj(feedback[..., None]) + self.position(positions)
        tokens = torch.cat([self.summary.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        padding = torch.cat([torch.zeros_like(valid[:, :1]), ~valid], dim=1)
        if torch.is_grad_enabled():  # training: the whole stack (every token's gradient flows)
            return self.out(self.transformer(tokens, src_key_padding_mask=padding)[:, 0])
        *first, last = self.transformer.layers  # inference: only the summary token leaves the last layer
        for layer in first:
            tokens = layer(tokens, src_key_padding_mask=padding)
        return self.out(summary_token_output(last, tokens, padding))


def summary_token_output(layer: nn.TransformerEncoderLayer, tokens: torch.Tensor,
                         padding: torch.Tensor) -> torch.Tensor:
    """(B, T, d) tokens, (B, T) bool padding -> (B, d) what ``layer(tokens, src_key_padding_mask=padding)[:, 0]``
    returns for :class:`HistoryEncoder`'s layers (post-norm, ReLU, no dropout), computing the query, the
    attention output, its projection and the feed-forward block for token 0 alone (the keys and values
    for all T tokens): the encoder's output reads only that token, so the other T - 1 rows of the last
    layer's output are never needed. Equal to the full layer to float rounding."""
    attention = layer.self_attn
    batch, length, d = tokens.shape
    heads = attention.num_heads
    weight, bias = attention.in_proj_weight, attention.in_proj_bias
    query = F.linear(tokens[:, 0], weight[:d], bias[:d]).view(batch, heads, 1, d // heads)
    key, value = F.linear(tokens, weight[d:], bias[d:]).view(batch, length, 2, heads, d // heads).unbind(2)
    key, value = key.transpose(1, 2), value.transpose(1, 2)  # (B, heads, T, d / heads)
    mask = torch.zeros(padding.shape, dtype=tokens.dtype, device=tokens.device).masked_fill_(padding, -math.inf)
    attended = F.scaled_dot_product_attention(query, key, value, attn_mask=mask[:, None, None, :])
    x = layer.norm1(tokens[:, 0] + attention.out_proj(attended.reshape(batch, d)))
    return layer.norm2(x + layer.linear2(layer.activation(layer.linear1(x))))


def timestep_embedding(steps: torch.Tensor, dim: int) -> torch.Tensor:
    """(B,) integer steps -> (B, dim) sinusoidal features."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=steps.device) / half)
    angles = steps.float()[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class NoisePredictor(nn.Module):
    """eps_theta(x_k, k, c): MLP on [x_k, sinusoidal(k), c] -> predicted noise (B, D); the condition c
    (B, 4D) is the scaled unit raw state and the (B, 3D) history popularity context."""

    time_dim = 32

    def __init__(self, config: DSRMConfig) -> None:
        super().__init__()
        d, h = config.embed_dim, config.hidden
        self.net = nn.Sequential(
            nn.Linear(5 * d + self.time_dim, h), nn.SiLU(), nn.Linear(h, h), nn.SiLU(), nn.Linear(h, d)
        )

    def forward(self, x: torch.Tensor, steps: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x, timestep_embedding(steps, self.time_dim), condition], dim=1))

    def conditioned(self, condition: torch.Tensor, steps: list[int] | None = None,
                    repeats: int = 1) -> Callable[[torch.Tensor, int], torch.Tensor]:
        """``eps(x, k)`` = :meth:`forward` of (R B, D) x at step k (the same for every row) for a fixed
        (B, 4D) ``condition`` repeated ``repeats`` times (row r B + b is row b's r-th copy), what a
        reverse chain calls at each step: the first layer's condition part (4D of its 5D + 32 inputs)
        is computed once per chain on the B distinct rows instead of once per step and copy, the step
        features once per step instead of once per row (all of ``steps`` in one pass when given), and
        the rest of the network is called as plain functions of its weights. The same function,
        summed in another order."""
        first, dim = self.net[0], condition.shape[1] // 4
        _, hidden, _, out = self.net[1:]
        fixed = F.linear(condition, first.weight[:, dim + self.time_dim:], first.bias)  # (B, hidden)
        fixed = fixed.repeat(repeats, 1)  # (R B, hidden)
        weight_x, weight_t = first.weight[:, :dim].T, first.weight[:, dim:dim + self.time_dim].T

        def step_features(ks: list[int]) -> torch.Tensor:  # (len(ks), hidden)
            return timestep_embedding(torch.tensor(ks, device=condition.device), self.time_dim) @ weight_t

        known = dict(zip(steps, step_features(steps))) if steps else {}

        def eps(x: torch.Tensor, k: int) -> torch.Tensor:
            step = known[k] if k in known else step_features([k])[0]
            h = F.silu(torch.addmm(fixed + step, x, weight_x))
            return F.linear(F.silu(F.linear(h, hidden.weight, hidden.bias)), out.weight, out.bias)

        return eps


def linear_alpha_bar(config: DSRMConfig) -> torch.Tensor:
    """(K+1,) cumulative signal level alpha_bar_k, k = 0..K, of linear betas in [beta_min, beta_max]."""
    betas = torch.linspace(config.beta_min, config.beta_max, config.k_steps, dtype=torch.float64)
    return torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1 - betas, 0)]).float()


class DSRM(nn.Module):
    """Diffusion-based state representation: encoder + conditional DDPM, with world metadata.

    Args:
        config: the architecture.
        world_fingerprint: ``World.fingerprint`` of the world it was trained on.
        n_items: that world's catalogue size (checked against observation spaces).
        item_popularity: (n_items,) logged popularity score of each item in [0, 1] (what the
            platform's logs say; stage I fills it in), read by :meth:`history_context`; zeros if omitted.
        catalogue_reset_every: N when stage I's logging cleared the shared catalogue counters every N user-steps
            (issue #19's reset, as the agent's training does), ``None`` when it never did; saved with the weights
            and checked by :meth:`check_catalogue_reset`.

    The DDPM models ``sqrt(D)`` x unit states, so their coordinates have unit variance. As in
    DiffRec/DSRM, the reverse chain starts from the FORWARD-NOISED raw state
    ``x_K = sqrt(alpha_bar_K) s~ + sqrt(1 - alpha_bar_K) eps`` (not from pure noise), so K sets
    how much of the raw state is destroyed before the model restores a clean one.
    """

    def __init__(
        self, config: DSRMConfig, world_fingerprint: str, n_items: int, item_popularity: np.ndarray | None = None,
        catalogue_reset_every: int | None = None,
    ) -> None:
        super().__init__()
        self.config, self.world_fingerprint, self.n_items = config, world_fingerprint, int(n_items)
        self.catalogue_reset_every = check_optional_count("catalogue_reset_every", catalogue_reset_every)
        self.encoder = HistoryEncoder(config)
        self.denoiser = NoisePredictor(config)
        self.target_scale = math.sqrt(config.embed_dim)
        self.register_buffer("alpha_bar", linear_alpha_bar(config), persistent=False)
        popularity = np.zeros(self.n_items) if item_popularity is None else np.asarray(item_popularity)
        if popularity.shape != (self.n_items,) or not np.all((popularity >= 0) & (popularity <= 1)):
            raise ValueError(f"item_popularity must have shape ({self.n_items},) with values in [0, 1], "
                             f"got shape {popularity.shape}")
        self.register_buffer("item_popularity", torch.as_tensor(popularity, dtype=torch.float32))

    @property
    def device(self) -> torch.device:
        return self.alpha_bar.device

    # ----------------------------------------------------------------- checks
    def check_world(self, world: World, source: str = "DSRM checkpoint") -> None:
        """Raise ``ValueError`` (naming ``source``) unless ``world`` is the one this model was trained on."""
        check_world({"world": self.world_fingerprint, "n_items": self.n_items}, world, source)

    def check_catalogue_reset(self, every: int | None, source: str = "DSRM checkpoint") -> None:
        """Raise a one-line ``ValueError`` (naming ``source``) unless stage I's logging cleared the catalogue
        counters every ``every`` user-steps (``None``: never), as a run training with that reset needs."""
        if self.catalogue_reset_every != every:
            raise ValueError(f"{source}: DSRM stage I logged with catalogue_reset_every={self.catalogue_reset_every}, "
                             f"this run trains with {every} (None: no reset); fit stage I again with the run's reset")

    def _check_history(self, embeddings: torch.Tensor) -> None:
        if embeddings.ndim != 3 or embeddings.shape[-1] != self.config.embed_dim:
            raise ValueError(
                f"history embeddings must have shape (B, k, {self.config.embed_dim}), got {tuple(embeddings.shape)}"
            )
        if embeddings.shape[1] > self.config.history_len:
            raise ValueError(
                f"history length {embeddings.shape[1]} exceeds the model's history_len {self.config.history_len}"
            )

    # ---------------------------------------------------------------- states
    def raw_state(self, obs: dict[str, Any]) -> torch.Tensor:
        """s~_t (B, D) from a batched recgym observation (numpy arrays or tensors)."""
        embeddings = torch.as_tensor(obs["embeddings"], dtype=torch.float32, device=self.device)
        self._check_history(embeddings)
        feedback = torch.as_tensor(obs["feedback"], dtype=torch.float32, device=self.device)
        valid = torch.as_tensor(obs["item_ids"], device=self.device) >= 0
        return self.encoder(embeddings, feedback, valid)

    def history_context(self, obs: dict[str, Any]) -> torch.Tensor:
        """(B, 3D) popularity context of a batched observation, the denoiser's side information.

        Means over the valid history slots of ``y_k e_k``, ``logged_k e_k`` and
        ``logged_k pop_k e_k`` (``logged_k``: feedback > 0, i.e. not lost to exposure bias;
        ``pop_k``: the item's logged popularity score), scaled by sqrt(D) to unit-size coordinates.
        With it the denoiser can tell the popularity-driven part of the feedback from taste.
        """
        embeddings = torch.as_tensor(obs["embeddings"], dtype=torch.float32, device=self.device)
        self._check_history(embeddings)
        feedback = torch.as_tensor(obs["feedback"], dtype=torch.float32, device=self.device)
        item_ids = torch.as_tensor(obs["item_ids"], device=self.device).long()
        valid = item_ids >= 0
        logged = (feedback > 0) & valid
        popularity = self.item_popularity[item_ids.clamp(min=0)] * logged
        weights = torch.stack([feedback * valid, logged.float(), popularity], dim=1)  # (B, 3, k)
        count = valid.sum(dim=1).clamp(min=1)[:, None, None]
        return (self.target_scale * weights @ embeddings / count).flatten(1)

    def _scaled_unit(self, state: torch.Tensor) -> torch.Tensor:
        return self.target_scale * state / state.norm(dim=1, keepdim=True).clamp(min=1e-12)

    def _check_context(self, raw: torch.Tensor, context: torch.Tensor) -> None:
        if context.shape != (raw.shape[0], 3 * self.config.embed_dim):
            raise ValueError(f"context must have shape ({raw.shape[0]}, {3 * self.config.embed_dim}) "
                             f"(DSRM.history_context of the same observation), got {tuple(context.shape)}")

    def _condition(self, raw: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """(B, 4D) denoiser condition: scaled unit raw state (B, D) and history context (B, 3D)."""
        self._check_context(raw, context)
        return torch.cat([self._scaled_unit(raw), context], dim=1)

    def diffusion_loss(self, raw: torch.Tensor, context: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """E ||eps - eps_theta(x_k, k, c)||^2 for raw states (B, D), their history contexts (B, 3D) and
        unit clean targets (B, D), k ~ U{1..K}."""
        condition = self._condition(raw, context)
        x0 = self.target_scale * target
        steps = torch.randint(1, self.config.k_steps + 1, (x0.shape[0],), device=x0.device)
        noise = torch.randn_like(x0)
        alpha_bar = self.alpha_bar[steps][:, None]
        noisy = alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * noise
        return ((noise - self.denoiser(noisy, steps, condition)) ** 2).mean()

    def sample(
        self, raw: torch.Tensor, context: torch.Tensor, sampler: str = "ddpm", steps: int | None = None,
        generator: torch.Generator | None = None, noise: torch.Tensor | None = None, repeats: int = 1,
    ) -> torch.Tensor:
        """Run the reverse chain from the forward-noised raw state: (B, D) s~ and its (B, 3D) history
        context -> (B, D) s^ (unit scale); with ``repeats`` = R, R chains per row: (R B, D), row
        r B + b the r-th chain of row b (the condition is computed once per row).

        Differentiable (a fine-tuned feature extractor back-propagates through it).

        ``sampler="ddpm"`` walks all K ancestral steps; ``"ddim"`` takes ``steps`` (default K)
        deterministic DDIM (eta = 0) jumps, the fast sampler. ``noise``: the (R B, D) noise of the
        forward-noised start (default: drawn from ``generator``). The schedule's coefficients are
        Python floats (no tensor op per coefficient), and each step is a few fused tensor ops.
        """
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {list(SAMPLERS)}, got {sampler!r}")
        big_k = self.config.k_steps
        if sampler == "ddpm" and steps not in (None, big_k):
            raise ValueError(f"steps only applies to the 'ddim' sampler (ddpm walks all {big_k} steps), got {steps!r}")
        n_jumps = big_k if steps is None else steps
        if isinstance(n_jumps, bool) or not isinstance(n_jumps, int) or not 1 <= n_jumps <= big_k:
            raise ValueError(f"steps must be an integer in [1, {big_k}], got {steps!r}")
        repeats = check_count("repeats", repeats)
        condition = self._condition(raw, context)
        if noise is None:
            noise = torch.randn((repeats * raw.shape[0], raw.shape[1]), generator=generator, device=raw.device)
        alpha_bar, scale = self.alpha_bar.tolist(), self.target_scale
        start = condition[:, :self.config.embed_dim].repeat(repeats, 1)
        x = torch.add(math.sqrt(alpha_bar[big_k]) * start, noise, alpha=math.sqrt(1 - alpha_bar[big_k]))
        if sampler == "ddpm":
            schedule = list(range(big_k, 0, -1))
        else:
            schedule = sorted({int(round(v)) for v in np.linspace(big_k, 1, n_jumps)}, reverse=True)
        denoise = self.denoiser.conditioned(condition, schedule, repeats)
        for i, k in enumerate(schedule):
            prev = schedule[i + 1] if i + 1 < len(schedule) else 0
            ab, ab_prev = alpha_bar[k], alpha_bar[prev]
            eps = denoise(x, k)
            x0 = (torch.add(x, eps, alpha=-math.sqrt(1 - ab)) / math.sqrt(ab)).clamp(-3 * scale, 3 * scale)
            if sampler == "ddim" or prev == 0:  # at prev = 0, alpha_bar = 1: x becomes the predicted x0
                x = torch.add(math.sqrt(ab_prev) * x0, eps, alpha=math.sqrt(1 - ab_prev))
            else:  # ancestral step: posterior q(x_prev | x_k, x0)
                beta = 1 - ab / ab_prev
                mean = torch.add(math.sqrt(ab_prev) * beta / (1 - ab) * x0, x,
                                 alpha=math.sqrt(1 - beta) * (1 - ab_prev) / (1 - ab))
                std = math.sqrt(beta * (1 - ab_prev) / (1 - ab))
                x = torch.add(mean, torch.randn(x.shape, generator=generator, device=x.device), alpha=std)
        return x / scale

    @torch.inference_mode()
    def purify(
        self, obs: dict[str, Any], sampler: str = "ddpm", steps: int | None = None, n_samples: int = 8,
        seed: int | None = 0, shared_noise: bool = False,
    ) -> torch.Tensor:
        """s^_t (B, D): the mean of ``n_samples`` reverse-chain samples from (and conditioned on) s~_t
        and the observation's history context."""
        return self.purify_state(self.raw_state(obs), sampler, steps, n_samples, seed,
                                 context=self.history_context(obs), shared_noise=shared_noise)

    def purify_state(
        self, raw: torch.Tensor, sampler: str = "ddpm", steps: int | None = None, n_samples: int = 8,
        seed: int | None = 0, *, context: torch.Tensor, shared_noise: bool = False,
    ) -> torch.Tensor:
        """Like :meth:`purify` from an already encoded raw state (B, D) and its history context (B, 3D)
        (:meth:`history_context` of the same observation); ``seed`` fixes the chains' noise.

        ``shared_noise``: every row's chains start from the same ``n_samples`` noise vectors, so with
        the deterministic DDIM sampler a row's state depends on its own history only, not on its
        position or on the batch it is computed in (default: one draw per row and chain)."""
        n_samples = check_count("n_samples", n_samples)
        self._check_context(raw, context)
        generator = None
        if seed is not None:
            generator = torch.Generator(device=raw.device).manual_seed(seed)
        noise = None
        if shared_noise:
            dim = raw.shape[1]
            chains = torch.randn((n_samples, 1, dim), generator=generator, device=raw.device)
            noise = chains.expand(n_samples, raw.shape[0], dim).reshape(-1, dim)
        samples = self.sample(raw, context, sampler, steps, generator, noise=noise, repeats=n_samples)
        return samples.view(n_samples, *raw.shape).mean(dim=0)

    # ----------------------------------------------------------- persistence
    def save(self, path: str | Path, meta: dict[str, Any] | None = None) -> Path:
        """Write format version, config, world fingerprint, catalogue size, stage I's catalogue reset
        (``catalogue_reset_every``, ``None``: none) and weights (with the logged item popularity) to ``path``
        (a ``.pt`` file); ``meta``: the checkpoint metadata of the agent
        it was trained as (:func:`recgym.agents.checkpoints.checkpoint_meta`), read back by ``load(agent=)``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "format_version": FORMAT_VERSION,
                "config": dataclasses.asdict(self.config),
                "world_fingerprint": self.world_fingerprint,
                "n_items": self.n_items,
                "catalogue_reset_every": self.catalogue_reset_every,
                "state_dict": {key: value.cpu() for key, value in self.state_dict().items()},
                META_KEY: meta,
            },
            path,
        )
        return path

    @classmethod
    def load(cls, path: str | Path, world: World | None = None, device: str = "auto", agent: str | None = None) -> DSRM:
        """Load a checkpoint; with ``world`` given, refuse one trained on another world, with ``agent``
        given, one whose checkpoint metadata names another agent. A missing, truncated or foreign file
        and checkpoints of another format version are refused too (retrain them with ``pretrain``).
        Every refusal is a one-line ``ValueError`` naming the file."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"checkpoint {str(path)!r} not found")
        try:
            with warnings.catch_warnings():  # random bytes can name any pickle protocol; the refusal says enough
                warnings.simplefilter("ignore", UserWarning)
                checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        # random bytes reach torch's unpickler as any of these (measured over 3,000 files: UnpicklingError 91%,
        # IndexError 7%, UnicodeDecodeError (a ValueError) 1.2%, KeyError 0.9%)
        except (RuntimeError, EOFError, pickle.UnpicklingError, OSError, ValueError, IndexError, KeyError) as error:
            raise ValueError(f"{path}: not a readable DSRM checkpoint ({first_line(error)})") from None
        if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
            raise ValueError(f"{path}: not a DSRM checkpoint (a torch file without DSRM's keys)")
        if agent is not None:
            check_meta(checkpoint.get(META_KEY), path, agent)
        version = checkpoint.get("format_version", 1)
        if version != FORMAT_VERSION:
            raise ValueError(f"DSRM checkpoint {str(path)!r} has format version {version}, this code reads version "
                             f"{FORMAT_VERSION} (held-out-profile stage I); retrain it with pretrain()")
        # checkpoints written before stage I could reset the catalogue have no key: their logging never did
        model = cls(DSRMConfig(**checkpoint["config"]), checkpoint["world_fingerprint"], checkpoint["n_items"],
                    catalogue_reset_every=checkpoint.get("catalogue_reset_every"))
        model.load_state_dict(checkpoint["state_dict"])
        if world is not None:
            model.check_world(world, str(path))
        return model.to(resolve_device(device)).eval()
