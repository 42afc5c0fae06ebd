"""A 3D U-Net video denoiser after Ho et al. 2022, "Video Diffusion Models" (§3, Fig. 1).

The network is a 2D image U-Net whose layers are factorized over space and time:
spatial 3x3 convolutions and spatial self-attention work on each frame separately, and
temporal 3-tap convolutions and temporal self-attention (with a learned relative position
bias) mix frames at each pixel. Text enters by cross-attention at the attention levels.
Only space is down- and upsampled, so any clip length works, including T = 1.

Design choices, and why:
- Activations are kept as frames, `(B*T, C, H, W)`, because most layers are spatial; the
  temporal layers unfold them (`(b t) c h w -> b c t h w` or `-> (b h w) t c`).
- GroupNorm is applied per frame (groups over (C, H, W) of one frame), so no norm mixes
  frames: frames talk to each other only through the temporal layers.
- The timestep may differ per frame, t (B, T), (diffusion forcing, known-content tasks);
  each frame's embedding modulates its own features by FiLM: norm(h) * (1 + scale) + shift.
- Every temporal layer is a residual branch that is skipped when T == 1: a single frame is
  an image, and the network is then exactly its spatial (image) part, so images can train
  the spatial layers (Ho et al. §3, joint image-video training). Its output convolution
  or projection starts at zero, so a fresh network treats frames independently.
- `context=None` (or a sample whose `context_mask` is all False) means "no text": the
  cross-attention branch is skipped for that sample (its residual adds nothing). This is
  the unconditional branch classifier-free guidance needs; no null token is learned.
- The final convolution and every residual branch's last layer start at zero, so a fresh
  network predicts 0 and each block starts as the identity.

Interface (shared by every kinema network):
    net(x, t, context=None, context_mask=None, cond=None) -> (B, out_channels, T, H, W)
"""

from __future__ import annotations

import dataclasses
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


class UNet3DInputError(KinemaError, ValueError):
    """Inputs that do not fit the network; the message says what is accepted."""


# ----------------------------------------------------------------------------- config


@dataclasses.dataclass(frozen=True)
class UNet3DConfig(Config):
    """Widths and depths of a UNet3D; the constructor's only argument.

    Level i works at resolution H / 2**i with base_channels * channel_mults[i] channels.
    `attention_levels` lists the levels whose blocks carry spatial self-attention,
    temporal self-attention and text cross-attention (the middle block always does).
    Attention heads have `head_dim` channels each. `text_dim=None` builds no
    cross-attention. `temporal_rel_pos_max` clips the relative frame distance of the
    temporal attention bias.
    """

    kind: ClassVar[str] = "unet3d"

    in_channels: int = 4
    out_channels: int | None = None
    cond_channels: int = 0
    base_channels: int = 64
    channel_mults: tuple[int, ...] = (1, 2, 4)
    num_res_blocks: int = 2
    attention_levels: tuple[int, ...] = (1, 2)
    head_dim: int = 32
    text_dim: int | None = 384
    groups: int = 32
    temporal_rel_pos_max: int = 32
    dropout: float = 0.0
    gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ConfigError(f"unet3d config: {msg}")

        positive = ("in_channels", "base_channels", "num_res_blocks", "head_dim", "groups", "temporal_rel_pos_max")
        for name in positive:
            need(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("out_channels", "text_dim"):
            value = getattr(self, name)
            need(value is None or value >= 1, f"{name} must be >= 1 or null, got {value}")
        need(self.cond_channels >= 0, f"cond_channels must be >= 0, got {self.cond_channels}")
        mults = list(self.channel_mults)
        need(len(mults) >= 1 and min(mults) >= 1, f"channel_mults must be positive integers, got {mults}")
        need(all(0 <= i < self.levels for i in self.attention_levels),
             f"attention_levels {list(self.attention_levels)} must be level indices in 0..{self.levels - 1}")
        need(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}")
        widths = list(self.widths)
        need(all(w % self.groups == 0 for w in widths), f"groups={self.groups} must divide every level width {widths}")
        need(all(w % self.head_dim == 0 for w in widths),
             f"head_dim={self.head_dim} must divide every level width {widths}")

    @property
    def levels(self) -> int:
        return len(self.channel_mults)

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(self.base_channels * m for m in self.channel_mults)

    @property
    def out_dim(self) -> int:
        return self.in_channels if self.out_channels is None else self.out_channels

    @property
    def spatial_multiple(self) -> int:
        """H and W must be multiples of this (one halving per level below the first)."""
        return 2 ** (self.levels - 1)


# ----------------------------------------------------------------------------- helpers


def _group_norm(groups: int | None, ch: int) -> nn.Module:
    """GroupNorm, or none for groups=None (Identity has no parameters: the state dict then
    simply has no norm entries)."""
    return nn.GroupNorm(groups, ch) if groups is not None else nn.Identity()


def zero_init(module: nn.Module) -> nn.Module:
    """Zero a layer's weights and bias so that the residual branch it ends starts at 0."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def _zero_attention_output(attn: Attention) -> Attention:
    zero_init(attn.to_out)
    return attn


class RelativePositionBias(nn.Module):
    """Learned per-head attention bias b[head, clip(j - i, -D, D)] over frames i (query), j (key).

    Relative position representations (Shaw et al. 2018); Ho et al. 2022 (§3) use relative
    position embeddings in temporal attention so that the network sees frame order without
    absolute positions. Depending only on j - i, the bias is translation-invariant in time,
    and distances beyond D share one entry, so any clip length works.
    """

    def __init__(self, heads: int, max_distance: int):
        super().__init__()
        self.max_distance = max_distance
        self.table = nn.Parameter(torch.zeros(2 * max_distance + 1, heads))

    def forward(self, frames: int) -> Tensor:
        """-> (1, heads, T, T) additive attention bias."""
        pos = torch.arange(frames, device=self.table.device)
        rel = (pos[None, :] - pos[:, None]).clamp(-self.max_distance, self.max_distance)  # (T, T): j - i
        bias = self.table[rel + self.max_distance]  # (T, T, heads)
        return rearrange(bias, "i j h -> 1 h i j")


# ----------------------------------------------------------------------------- blocks


class ResBlock(nn.Module):
    """Spatial residual block on frames (B*T, C, H, W), FiLM-conditioned on each frame's time.

    A 3x3 Conv2d on frames is the 1x3x3 Conv3d of the factorized space-time block.
    `groups=None` leaves out the normalization (the sr3d upscaler: its blocks must stay local).
    """

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, groups: int | None, dropout: float = 0.0):
        super().__init__()
        self.norm1 = _group_norm(groups, in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.film = nn.Linear(emb_dim, 2 * out_ch)
        self.norm2 = _group_norm(groups, out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = zero_init(nn.Conv2d(out_ch, out_ch, 3, padding=1))
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        """x (B*T, C_in, H, W), emb (B*T, E) already passed through SiLU -> (B*T, C_out, H, W)."""
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = rearrange(self.film(emb), "n (two c) -> two n c 1 1", two=2)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class TemporalConv(nn.Module):
    """Residual 3x1x1 convolution over time: x + conv_t(silu(norm(x))), zero padding at the ends."""

    def __init__(self, ch: int, groups: int | None):
        super().__init__()
        self.norm = _group_norm(groups, ch)
        self.conv = zero_init(nn.Conv3d(ch, ch, (3, 1, 1), padding=(1, 0, 0)))

    def forward(self, x: Tensor, frames: int) -> Tensor:
        """x (B*T, C, H, W) -> same shape.

        The 3x1x1 kernel runs as a 3x1 conv2d over (T, H*W): on CPU, PyTorch sends this
        Conv3d shape to its slow reference kernel, while conv2d takes oneDNN (2.4x faster at
        48 channels, 16x16; same weights, equal to float rounding)."""
        height = x.shape[2]
        h = rearrange(F.silu(self.norm(x)), "(b t) c h w -> b c t (h w)", t=frames)
        h = F.conv2d(h, self.conv.weight.squeeze(-1), self.conv.bias, padding=(1, 0))
        return x + rearrange(h, "b c t (h w) -> (b t) c h w", h=height)


class SpatialAttention(nn.Module):
    """Pre-norm self-attention among the H*W positions of each frame."""

    def __init__(self, ch: int, heads: int):
        super().__init__()
        self.norm = nn.LayerNorm(ch)
        self.attn = _zero_attention_output(Attention(ch, heads))

    def forward(self, x: Tensor) -> Tensor:
        """x (B*T, C, H, W) -> same shape."""
        height = x.shape[2]
        h = rearrange(x, "n c h w -> n (h w) c")
        h = self.attn(self.norm(h))
        return x + rearrange(h, "n (h w) c -> n c h w", h=height)


class TemporalAttention(nn.Module):
    """Pre-norm self-attention among the T frames at each pixel, with a relative position bias."""

    def __init__(self, ch: int, heads: int, max_distance: int):
        super().__init__()
        self.norm = nn.LayerNorm(ch)
        self.attn = _zero_attention_output(Attention(ch, heads))
        self.rel_pos = RelativePositionBias(heads, max_distance)

    def forward(self, x: Tensor, frames: int) -> Tensor:
        """x (B*T, C, H, W) -> same shape."""
        height, width = x.shape[2:]
        h = rearrange(x, "(b t) c h w -> (b h w) t c", t=frames)
        h = self.attn(self.norm(h), bias=self.rel_pos(frames))
        return x + rearrange(h, "(b h w) t c -> (b t) c h w", h=height, w=width)


class CrossAttention(nn.Module):
    """Pre-norm attention from every pixel of every frame to the text tokens.

    Queries are independent, so the clip is folded as one sequence per sample,
    `b (t h w) c`, and the text is not repeated per frame.
    """

    def __init__(self, ch: int, heads: int, text_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(ch)
        self.attn = _zero_attention_output(Attention(ch, heads, context_dim=text_dim))

    def forward(self, x: Tensor, frames: int, text: "TextInputs") -> Tensor:
        """x (B*T, C, H, W) -> same shape."""
        height, width = x.shape[2:]
        h = rearrange(x, "(b t) c h w -> b (t h w) c", t=frames)
        h = self.attn(self.norm(h), text.context, text.mask)
        h = h * text.keep.to(h.dtype)[:, None, None]  # samples without text get no branch
        return x + rearrange(h, "b (t h w) c -> (b t) c h w", t=frames, h=height, w=width)


@dataclasses.dataclass
class TextInputs:
    """Text for cross-attention: context (B, L, D), mask (B, L) bool (True = real token),
    keep (B,) bool: False for samples without any real token, whose branch is skipped."""

    context: Tensor
    mask: Tensor
    keep: Tensor


class SpaceTimeBlock(nn.Module):
    """One U-Net block: spatial ResBlock, temporal conv, and at attention levels spatial
    self-attention, text cross-attention and temporal self-attention (Ho et al. Fig. 1)."""

    def __init__(self, in_ch: int, out_ch: int, config: UNet3DConfig, emb_dim: int, attention: bool):
        super().__init__()
        heads = out_ch // config.head_dim
        self.res = ResBlock(in_ch, out_ch, emb_dim, config.groups, config.dropout)
        self.temporal_conv = TemporalConv(out_ch, config.groups)
        self.spatial_attn = SpatialAttention(out_ch, heads) if attention else None
        has_text = attention and config.text_dim is not None
        self.cross_attn = CrossAttention(out_ch, heads, config.text_dim) if has_text else None
        self.temporal_attn = TemporalAttention(out_ch, heads, config.temporal_rel_pos_max) if attention else None

    def forward(self, x: Tensor, emb: Tensor, frames: int, text: TextInputs | None) -> Tensor:
        """x (B*T, C_in, H, W), emb (B*T, E) -> (B*T, C_out, H, W)."""
        x = self.res(x, emb)
        if frames > 1:  # one frame: temporal branches are skipped (see module docstring)
            x = self.temporal_conv(x, frames)
        if self.spatial_attn is not None:
            x = self.spatial_attn(x)
        if self.cross_attn is not None and text is not None:
            x = self.cross_attn(x, frames, text)
        if self.temporal_attn is not None and frames > 1:
            x = self.temporal_attn(x, frames)
        return x


class Downsample(nn.Module):
    """Halve H and W with a strided 3x3 convolution; time is untouched."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)  # (B*T, C, H, W) -> (B*T, C, H/2, W/2)


class Upsample(nn.Module):
    """Double H and W (nearest neighbour, then a 3x3 convolution); time is untouched."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))  # -> (B*T, C, 2H, 2W)


# ----------------------------------------------------------------------------- model


class UNet3D(nn.Module):
    """The 3D U-Net: `net(x, t, context, context_mask, cond) -> prediction`, see module docstring."""

    def __init__(self, config: UNet3DConfig):
        super().__init__()
        self.config = config
        c = config
        emb_dim = 4 * c.base_channels
        self.time_embed = TimestepEmbedder(emb_dim)
        self.conv_in = nn.Conv2d(c.in_channels + c.cond_channels, c.base_channels, 3, padding=1)

        # Down path: every block's and every downsampler's output is kept as a skip.
        self.down = nn.ModuleList()
        skip_widths = [c.base_channels]
        ch = c.base_channels
        for level, width in enumerate(c.widths):
            for _ in range(c.num_res_blocks):
                self.down.append(SpaceTimeBlock(ch, width, c, emb_dim, level in c.attention_levels))
                ch = width
                skip_widths.append(ch)
            if level < c.levels - 1:
                self.down.append(Downsample(ch))
                skip_widths.append(ch)

        self.mid = nn.ModuleList([
            SpaceTimeBlock(ch, ch, c, emb_dim, attention=True),
            SpaceTimeBlock(ch, ch, c, emb_dim, attention=False),
        ])

        # Up path: each block consumes one skip (concatenated on channels), in reverse order.
        self.up = nn.ModuleList()
        for level in reversed(range(c.levels)):
            width = c.widths[level]
            for _ in range(c.num_res_blocks + 1):
                in_ch = ch + skip_widths.pop()
                self.up.append(SpaceTimeBlock(in_ch, width, c, emb_dim, level in c.attention_levels))
                ch = width
            if level > 0:
                self.up.append(Upsample(ch))

        self.norm_out = nn.GroupNorm(c.groups, ch)
        self.conv_out = zero_init(nn.Conv2d(ch, c.out_dim, 3, padding=1))

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        context: Tensor | None = None,
        context_mask: Tensor | None = None,
        cond: Tensor | None = None,
    ) -> Tensor:
        """Predict for a noisy clip.

        x (B, C_in, T, H, W); t (B,) or per-frame (B, T), float noise levels in 0..1000 units;
        context (B, L, text_dim) text tokens with context_mask (B, L) bool, True = real token
        (None: all real); cond (B, cond_channels, T, H, W) concatenated to x on channels.
        Returns (B, out_channels, T, H, W).
        """
        batch, _, frames, _, _ = self._check_inputs(x, t, cond)
        text = self._text_inputs(context, context_mask, batch)
        if cond is not None:
            x = torch.cat([x, cond.to(x.dtype)], dim=1)  # (B, C_in + C_cond, T, H, W)
        if t.ndim == 1:
            t = t[:, None].expand(batch, frames)  # (B,) -> (B, T)
        # t stays float32 (bf16 cannot tell 999 from 1000); the embedder casts after the sinusoid.
        emb = F.silu(self.time_embed(rearrange(t.float(), "b t -> (b t)")))  # (B*T, E)

        h = self.conv_in(rearrange(x, "b c t h w -> (b t) c h w"))
        skips = [h]
        for layer in self.down:
            h = self._block(layer, h, emb, frames, text) if isinstance(layer, SpaceTimeBlock) else layer(h)
            skips.append(h)
        for block in self.mid:
            h = self._block(block, h, emb, frames, text)
        for layer in self.up:
            if isinstance(layer, SpaceTimeBlock):
                h = self._block(layer, torch.cat([h, skips.pop()], dim=1), emb, frames, text)
            else:
                h = layer(h)
        h = self.conv_out(F.silu(self.norm_out(h)))
        return rearrange(h, "(b t) c h w -> b c t h w", b=batch)

    def _block(self, block: SpaceTimeBlock, h: Tensor, emb: Tensor, frames: int, text: TextInputs | None) -> Tensor:
        """Run a block, recomputing its activations in backward when checkpointing is on."""
        if self.config.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, h, emb, frames, text, use_reentrant=False)
        return block(h, emb, frames, text)

    def _check_inputs(self, x: Tensor, t: Tensor, cond: Tensor | None) -> tuple[int, int, int, int, int]:
        c = self.config
        if x.ndim != 5:
            raise UNet3DInputError(f"x must be (B, C, T, H, W), got shape {tuple(x.shape)}")
        batch, channels, frames, height, width = x.shape
        if channels != c.in_channels:
            raise UNet3DInputError(f"x has {channels} channels, this network takes in_channels={c.in_channels}")
        m = c.spatial_multiple
        if height % m or width % m:
            raise UNet3DInputError(
                f"height and width must be multiples of {m} for {c.levels} levels, got {height}x{width}"
            )
        if tuple(t.shape) not in ((batch,), (batch, frames)):
            raise UNet3DInputError(f"t must have shape ({batch},) or ({batch}, {frames}), got {tuple(t.shape)}")
        if c.cond_channels == 0 and cond is not None:
            raise UNet3DInputError("this network takes no cond (cond_channels=0), but cond was given")
        if c.cond_channels > 0:
            want = (batch, c.cond_channels, frames, height, width)
            if cond is None:
                raise UNet3DInputError(f"this network needs cond of shape {want} (cond_channels={c.cond_channels})")
            if tuple(cond.shape) != want:
                raise UNet3DInputError(f"cond must have shape {want}, got {tuple(cond.shape)}")
        return batch, channels, frames, height, width

    def _text_inputs(self, context: Tensor | None, mask: Tensor | None, batch: int) -> TextInputs | None:
        """Check the text; samples whose mask is all False count as having no text."""
        if context is None:
            if mask is not None:
                raise UNet3DInputError("context_mask was given without context")
            return None
        if self.config.text_dim is None:
            raise UNet3DInputError("this network has no text input (text_dim=null), but context was given")
        if context.ndim != 3 or context.shape[0] != batch or context.shape[2] != self.config.text_dim:
            raise UNet3DInputError(
                f"context must be (B={batch}, L, text_dim={self.config.text_dim}), got {tuple(context.shape)}"
            )
        if mask is None:
            mask = torch.ones(context.shape[:2], dtype=torch.bool, device=context.device)
        elif mask.dtype != torch.bool or tuple(mask.shape) != tuple(context.shape[:2]):
            raise UNet3DInputError(
                f"context_mask must be bool of shape {tuple(context.shape[:2])}, got {mask.dtype} {tuple(mask.shape)}"
            )
        return TextInputs(context=context, mask=mask, keep=mask.any(dim=1))

    def save(self, path: str | Path, ema_state_dict: dict[str, Tensor] | None = None) -> Path:
        """Write a component directory (config.json + model.safetensors) atomically."""
        return save_component(path, self.config, self.state_dict(), ema_state_dict)

    @classmethod
    def load(cls, path: str | Path, *, ema: bool = False) -> "UNet3D":
        """Build from a component directory, strictly; returned in eval mode."""
        return load_component(path, UNet3DConfig, cls, ema=ema)


# ----------------------------------------------------------------------------- presets


PRESETS: dict[str, UNet3DConfig] = {
    # For tests: 0.26M parameters, two levels.
    "unet3d-tiny": UNet3DConfig(
        in_channels=4, base_channels=16, channel_mults=(1, 2), num_res_blocks=1,
        attention_levels=(1,), head_dim=8, text_dim=32, groups=4, temporal_rel_pos_max=8,
    ),
    # Candidate default denoiser for 16-channel latents of about 8x8 to 16x16: 23.1M parameters.
    "unet3d-s": UNet3DConfig(
        in_channels=16, base_channels=64, channel_mults=(1, 2, 4), num_res_blocks=2,
        attention_levels=(1, 2), head_dim=32, text_dim=384, groups=32,
    ),
    # For the benchmark against lucidrains' video-diffusion-pytorch: 3.34M parameters, the
    # size of its Unet3D(dim=16, dim_mults=(1, 2, 4, 8), channels=3, cond_dim=384) (3.26M;
    # the same widths, pixel RGB input, 384-wide MiniLM text).
    "vdp-match": UNet3DConfig(
        in_channels=3, base_channels=16, channel_mults=(1, 2, 4, 8), num_res_blocks=1,
        attention_levels=(2,), head_dim=16, text_dim=384, groups=8,
    ),
}


def unet3d_preset(name: str, **changes) -> UNet3DConfig:
    """A named preset config, optionally with some fields replaced."""
    if name not in PRESETS:
        raise ConfigError(f"unknown unet3d preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name].replace(**changes) if changes else PRESETS[name]
