"""Video diffusion transformer (DiT) with the Wan 2.1 block structure.

Read top to bottom: config and presets, helpers, blocks, model.

The network follows Wan 2.1 (`wan/modules/model.py`; diffusers `WanTransformer3DModel`):
Conv3d patch embedding -> transformer blocks over all space-time tokens -> modulated head ->
unpatchify. Time conditions every block through one shared adaLN projection (6 * dim) plus
a learned per-block table; text enters through cross-attention. Parameter names follow
diffusers, so real Wan 2.1 weights load after the renames in `DIFFUSERS_RENAMES`.

The interface is the one every kinema network shares:
    net(x, t, context=None, context_mask=None, cond=None) -> prediction
x (B, C, T, H, W); t (B,) or per-frame (B, T) in timestep units (0..1000, 1000 = pure noise);
context (B, S, text_dim) with context_mask (B, S) bool (True = real token); cond
(B, cond_channels, T, H, W) concatenated to x on channels. The raw network knows nothing of
eps/v/flow: the denoiser wrapper gives the output its meaning.

Choices beyond Wan, in one place:
- context None means "no text": cross-attention then contributes what it would for a context
  whose tokens are all masked (attention over no keys is zero, so only the output bias of
  `attn2.to_out` remains). No learned null embedding is needed for classifier-free guidance.
- Wan attends to zero-padded text without a mask; kinema masks padding. To reproduce Wan
  exactly, pass its zero-padded 512-token context with context_mask None.
- Sizes not divisible by the patch are padded by replication and the output cropped: time
  at the front (so T = 1 works with pt > 1, like a causal VAE's lone first frame), height and
  width at the end.
- Per-frame t (B, T): the tokens of each latent frame get their own modulation (Wan 2.2 /
  diffusion-forcing style). With pt > 1 a temporal patch takes the mean t of its frames.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from kinema.checkpoint import load_component, save_component
from kinema.config import Config, ConfigError
from kinema.errors import KinemaError
from kinema.nn.attention import Attention
from kinema.nn.embeddings import TimestepEmbedder
from kinema.nn.norms import FP32LayerNorm, modulate
from kinema.nn.rope import Rope, rope_3d

# ---------------------------------------------------------------------------- config


@dataclasses.dataclass(frozen=True)
class DiTConfig(Config):
    """Geometry of a VideoDiT. `out_channels` None means the same as `in_channels`."""

    kind: ClassVar[str] = "dit"

    in_channels: int = 16
    out_channels: int | None = None
    cond_channels: int = 0
    patch_size: tuple[int, int, int] = (1, 2, 2)
    dim: int = 384
    ffn_dim: int = 1536
    heads: int = 6
    depth: int = 10
    text_dim: int = 384
    freq_dim: int = 256
    qk_norm: bool = True
    cross_attn_norm: bool = True
    rope_theta: float = 10000.0
    eps: float = 1e-6
    gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        positive = ("in_channels", "dim", "ffn_dim", "heads", "depth", "text_dim", "freq_dim")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"dit config: {name} must be positive, got {getattr(self, name)}")
        if self.out_channels is not None and self.out_channels < 1:
            raise ConfigError(f"dit config: out_channels must be positive or null, got {self.out_channels}")
        if self.cond_channels < 0:
            raise ConfigError(f"dit config: cond_channels must be >= 0, got {self.cond_channels}")
        if len(self.patch_size) != 3 or min(self.patch_size) < 1:
            raise ConfigError(f"dit config: patch_size must be three positive ints, got {self.patch_size}")
        if self.dim % self.heads:
            raise ConfigError(f"dit config: dim {self.dim} is not divisible by heads {self.heads}")
        head_dim = self.dim // self.heads
        if head_dim % 2 or head_dim < 6:
            raise ConfigError(f"dit config: head width dim/heads = {head_dim} must be even and >= 6 for 3D RoPE")

    @property
    def output_channels(self) -> int:
        """Channels of the prediction: `out_channels`, or `in_channels` when that is None."""
        return self.in_channels if self.out_channels is None else self.out_channels


PRESETS: dict[str, DiTConfig] = {
    # For tests: about 140k parameters.
    "dit-tiny": DiTConfig(in_channels=4, dim=64, ffn_dim=128, heads=2, depth=2, text_dim=32, freq_dim=64),
    # The default-model candidate for 16-channel latents and 384-wide MiniLM text states.
    "dit-s": DiTConfig(in_channels=16, dim=384, ffn_dim=1536, heads=6, depth=10, text_dim=384),
    # Wan 2.1 T2V-1.3B geometry (umT5-XXL text states), for reference and benchmarks.
    "wan2.1-1.3b": DiTConfig(
        in_channels=16, dim=1536, ffn_dim=8960, heads=12, depth=30, text_dim=4096, freq_dim=256
    ),
}

# diffusers WanTransformer3DModel key fragment -> kinema key fragment (everything else equal).
DIFFUSERS_RENAMES: tuple[tuple[str, str], ...] = (
    (".to_out.0.", ".to_out."),
    (".ffn.net.0.proj.", ".ffn.0."),
    (".ffn.net.2.", ".ffn.2."),
)

# ---------------------------------------------------------------------------- helpers


def _per_group(p: Tensor) -> Tensor:
    """(B, G, D) per-group parameter -> (B, G, 1, D), broadcasting over a group's tokens."""
    return p.unsqueeze(2)


def _grouped(x: Tensor, groups: int) -> Tensor:
    """(B, L, D) tokens in (t h w) order -> (B, G, L/G, D): G contiguous groups (frames)."""
    return x.unflatten(1, (groups, -1))


def _pad_to_patch(x: Tensor, patch: tuple[int, int, int]) -> tuple[Tensor, tuple[int, int, int]]:
    """Replicate-pad x (B, C, T, H, W): time at the front, height/width at the end."""
    _, _, t, h, w = x.shape
    pads = ((-t) % patch[0], (-h) % patch[1], (-w) % patch[2])
    if any(pads):
        x = F.pad(x, (0, pads[2], 0, pads[1], pads[0], 0), mode="replicate")
    return x, pads


def _frame_timesteps(t: Tensor, batch: int, frames: int, pt: int, pad_t: int) -> Tensor:
    """t (B,) or (B, T) -> (B, G) float: G = 1 (shared) or one value per temporal patch."""
    if t.ndim == 0:
        t = t.expand(batch)
    if t.ndim == 1:
        if t.shape[0] != batch:
            raise KinemaError(f"timestep t has shape {tuple(t.shape)}; expected ({batch},) or ({batch}, {frames})")
        return t.float()[:, None]
    if t.ndim != 2 or tuple(t.shape) != (batch, frames):
        raise KinemaError(f"timestep t has shape {tuple(t.shape)}; expected ({batch},) or ({batch}, {frames})")
    t = t.float()
    if pad_t:
        t = torch.cat([t[:, :1].expand(batch, pad_t), t], dim=1)  # replicate like the frames
    return t.unflatten(1, (-1, pt)).mean(-1)  # (B, T'): mean over each temporal patch


# ---------------------------------------------------------------------------- blocks


class ConditionEmbedder(nn.Module):
    """Timestep and text embeddings (diffusers `WanTimeTextImageEmbedding`, text-to-video part).

    time: t (B, G) -> temb (B, G, dim) -> shared modulation (B, G, 6 * dim);
    text: (B, S, text_dim) -> (B, S, dim) through Linear-GELU(tanh)-Linear.
    """

    def __init__(self, dim: int, freq_dim: int, text_dim: int) -> None:
        super().__init__()
        self.time_embedder = TimestepEmbedder(dim, freq_dim)
        self.time_proj = nn.Linear(dim, 6 * dim)
        self.text_embedder = TextProjection(text_dim, dim)

    def forward(self, t: Tensor) -> tuple[Tensor, Tensor]:
        temb = self.time_embedder(t)  # (B, G, dim)
        return temb, self.time_proj(F.silu(temb))  # (B, G, dim), (B, G, 6*dim)


class TextProjection(nn.Module):
    """Text states to model width: Linear -> GELU(tanh) -> Linear (diffusers PixArt naming)."""

    def __init__(self, text_dim: int, dim: int) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(text_dim, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, context: Tensor) -> Tensor:
        return self.linear_2(F.gelu(self.linear_1(context), approximate="tanh"))


class DiTBlock(nn.Module):
    """Wan 2.1 block: modulated self-attention (3D RoPE) -> cross-attention -> modulated FFN.

    Modulation comes in per token group (a frame, or the whole clip), so per-frame timesteps
    cost a broadcast, not a loop. Norm names follow diffusers: norm1 before self-attention,
    norm2 (affine) before cross-attention, norm3 before the FFN (Wan's norm3/norm2 swapped).
    """

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        dim, heads, eps = config.dim, config.heads, config.eps
        self.norm1 = FP32LayerNorm(dim, eps, elementwise_affine=False)
        self.attn1 = Attention(dim, heads, qk_norm=config.qk_norm, eps=eps)
        self.norm2 = FP32LayerNorm(dim, eps, elementwise_affine=True) if config.cross_attn_norm else nn.Identity()
        self.attn2 = Attention(dim, heads, context_dim=dim, qk_norm=config.qk_norm, eps=eps)
        self.norm3 = FP32LayerNorm(dim, eps, elementwise_affine=False)
        self.ffn = nn.Sequential(
            nn.Linear(dim, config.ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(config.ffn_dim, dim)
        )
        self.scale_shift_table = nn.Parameter(torch.randn(1, 6, dim) / dim**0.5)

    def forward(self, x: Tensor, mod: Tensor, context: Tensor | None, context_mask: Tensor | None, rope: Rope) -> Tensor:
        """x (B, L, dim) float32 residual stream; mod (B, G, 6, dim) shared modulation; context
        (B, S, dim) or None. The linear layers compute in their weights' dtype (bf16 for bf16
        inference); x stays float32 between them, so no residual sum is rounded to bf16."""
        g = mod.shape[1]
        dtype = self.ffn[0].weight.dtype
        params = (self.scale_shift_table[:, None].float() + mod.float()).unbind(2)  # 6 x (B, G, dim)
        shift_a, scale_a, gate_a, shift_f, scale_f, gate_f = (_per_group(p) for p in params)

        h = modulate(_grouped(self.norm1(x.float()), g), shift_a, scale_a).flatten(1, 2).to(dtype)
        h = self.attn1(h, rope=rope)
        x = (_grouped(x.float(), g) + _grouped(h, g) * gate_a).flatten(1, 2)

        if context is None:  # no text: attention over no keys is zero, only to_out's bias remains
            x = x + self.attn2.to_out(x.new_zeros(1, 1, x.shape[-1], dtype=dtype))
        else:
            x = x + self.attn2(self.norm2(x.float()).to(dtype), context, context_mask)

        h = modulate(_grouped(self.norm3(x.float()), g), shift_f, scale_f).flatten(1, 2).to(dtype)
        h = self.ffn(h)
        return (_grouped(x.float(), g) + _grouped(h.float(), g) * gate_f).flatten(1, 2)


# ---------------------------------------------------------------------------- model


class VideoDiT(nn.Module):
    """Text-conditioned video transformer: x (B, C, T, H, W) -> prediction of the same shape."""

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.patch_embedding = nn.Conv3d(c.in_channels + c.cond_channels, c.dim, c.patch_size, stride=c.patch_size)
        self.condition_embedder = ConditionEmbedder(c.dim, c.freq_dim, c.text_dim)
        self.blocks = nn.ModuleList(DiTBlock(c) for _ in range(c.depth))
        self.norm_out = FP32LayerNorm(c.dim, c.eps, elementwise_affine=False)
        self.proj_out = nn.Linear(c.dim, c.output_channels * math.prod(c.patch_size))
        self.scale_shift_table = nn.Parameter(torch.randn(1, 2, c.dim) / c.dim**0.5)
        self._init_weights()

    def _init_weights(self) -> None:
        """Wan/DiT initialization: Xavier-uniform linears, small-normal embedders, zero head.

        The zero output layer makes the untrained network predict exactly 0 (DiT sec. 3.2,
        adaLN-Zero's motivation), a neutral start for any parameterization.
        """
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        w = self.patch_embedding.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))  # as a linear map from one patch
        nn.init.zeros_(self.patch_embedding.bias)
        emb = self.condition_embedder
        for m in (emb.text_embedder.linear_1, emb.text_embedder.linear_2,
                  emb.time_embedder.linear_1, emb.time_embedder.linear_2):
            nn.init.normal_(m.weight, std=0.02)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        context: Tensor | None = None,
        context_mask: Tensor | None = None,
        cond: Tensor | None = None,
    ) -> Tensor:
        """x (B, C, T, H, W); t (B,) or (B, T); context (B, S, text_dim); context_mask (B, S)
        bool; cond (B, cond_channels, T, H, W). Returns (B, out_channels, T, H, W)."""
        c = self.config
        if x.ndim != 5 or x.shape[1] != c.in_channels:
            raise KinemaError(f"DiT input has shape {tuple(x.shape)}; expected (B, {c.in_channels}, T, H, W)")
        b, _, frames, height, width = x.shape
        cond = self._check_cond(cond, x)
        if cond is not None:
            x = torch.cat([x, cond], dim=1)  # (B, C + cond_channels, T, H, W)
        context, context_mask = self._check_context(context, context_mask, b)

        x, (pad_t, _, _) = _pad_to_patch(x, c.patch_size)
        pt, ph, pw = c.patch_size
        grid = (x.shape[2] // pt, x.shape[3] // ph, x.shape[4] // pw)  # (T', H', W') tokens
        tg = _frame_timesteps(t.to(x.device), b, frames, pt, pad_t)  # (B, G), G = 1 or T'

        temb, mod = self.condition_embedder(tg)  # (B, G, dim), (B, G, 6*dim)
        mod = mod.unflatten(-1, (6, c.dim))  # (B, G, 6, dim)
        tokens = rearrange(self.patch_embedding(x), "b d t h w -> b (t h w) d").float()  # float32 residual stream
        rope = rope_3d(grid, c.dim // c.heads, theta=c.rope_theta, device=x.device)
        if context is not None:
            context = self.condition_embedder.text_embedder(context)  # (B, S, dim)

        use_checkpoint = c.gradient_checkpointing and self.training and torch.is_grad_enabled()
        for block in self.blocks:
            if use_checkpoint:
                tokens = checkpoint(block, tokens, mod, context, context_mask, rope, use_reentrant=False)
            else:
                tokens = block(tokens, mod, context, context_mask, rope)

        shift, scale = (self.scale_shift_table[:, None].float() + temb.float()[:, :, None]).unbind(2)  # (B, G, dim)
        h = modulate(_grouped(self.norm_out(tokens.float()), tg.shape[1]), _per_group(shift), _per_group(scale))
        out = self.proj_out(h.flatten(1, 2).to(self.proj_out.weight.dtype))  # (B, L, pt*ph*pw*C), channels last as Wan
        out = rearrange(
            out, "b (t h w) (pt ph pw c) -> b c (t pt) (h ph) (w pw)",
            t=grid[0], h=grid[1], w=grid[2], pt=pt, ph=ph, pw=pw,
        )
        return out[:, :, pad_t:, :height, :width]

    def _check_cond(self, cond: Tensor | None, x: Tensor) -> Tensor | None:
        want = self.config.cond_channels
        if not want:
            if cond is not None:
                raise KinemaError("this DiT takes no cond input (cond_channels = 0); pass cond=None")
            return None
        expected = (x.shape[0], want, *x.shape[2:])
        if cond is None or tuple(cond.shape) != expected:
            got = None if cond is None else tuple(cond.shape)
            raise KinemaError(f"DiT cond has shape {got}; expected {expected} (cond_channels={want})")
        return cond.to(x.dtype)

    def _check_context(
        self, context: Tensor | None, mask: Tensor | None, batch: int
    ) -> tuple[Tensor | None, Tensor | None]:
        if context is None:
            if mask is not None:
                raise KinemaError("context_mask given without context; pass both or neither")
            return None, None
        want = self.config.text_dim
        if context.ndim != 3 or context.shape[0] != batch or context.shape[2] != want:
            raise KinemaError(f"DiT context has shape {tuple(context.shape)}; expected ({batch}, S, {want})")
        if mask is not None and tuple(mask.shape) != tuple(context.shape[:2]):
            raise KinemaError(
                f"context_mask has shape {tuple(mask.shape)}; expected {tuple(context.shape[:2])} (bool, True = token)"
            )
        return context.to(self.patch_embedding.weight.dtype), None if mask is None else mask.to(torch.bool)

    def save(self, path: str | Path, ema_state_dict: dict[str, Tensor] | None = None) -> Path:
        """Write config.json + model.safetensors (+ ema.safetensors) atomically."""
        return save_component(path, self.config, self.state_dict(), ema_state_dict)

    @classmethod
    def load(cls, path: str | Path, *, ema: bool = False) -> "VideoDiT":
        """Build from a component directory (strict); returned in eval mode."""
        return load_component(path, DiTConfig, cls, ema=ema)
