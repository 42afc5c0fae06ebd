"""A small fully-convolutional space-time U-Net for the upscaling stages (kinema.tasks.upscale).

A cascade stage sees a naive upsampling of its input (bicubic in space, frame blending in
time) and denoises the residual between the true clip and it (SR3, Saharia et al. 2022;
Imagen Video, Ho et al. 2022, §2.3; cascaded diffusion, Ho et al. 2021). Its input is the
noisy residual x (B, 3, T, H, W) concatenated with `cond` (B, cond_channels, T, H, W): the
naive upsampling, a known-frame mask and the conditioning-augmentation level.

Why not the 3D U-Net of unet3d.py: that family normalizes every frame with GroupNorm over
all of (H, W) and attends over whole frames and the whole clip, so its output at a pixel
depends on every pixel. This one has no normalization and no attention: its output at a
pixel depends only on a bounded window (`receptive_field`), so an upscaler can run tile by
tile and chunk by chunk on a clip of any size and give exactly the whole-clip result (the
tiles' margins cover the window; kinema.tasks.upscale.Tiled).

Blocks: a spatial residual block (3x3 convolution, FiLM by the noise level, 3x3
convolution) and a residual 3-tap temporal convolution, on frames (B*T, C, H, W). Only space
is down- and upsampled; every residual branch ends in a zero-initialized layer, so a fresh
network predicts 0 (the naive upsampling) and each block starts as the identity.

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

from kinema.checkpoint import load_component, save_component
from kinema.config import Config, ConfigError
from kinema.errors import KinemaError
from kinema.models.unet3d import ResBlock, TemporalConv, zero_init  # their groups=None form
from kinema.nn.embeddings import TimestepEmbedder


class SR3DInputError(KinemaError, ValueError):
    """Inputs that do not fit the network; the message says what is accepted."""


# ----------------------------------------------------------------------------- config


@dataclasses.dataclass(frozen=True)
class SR3DConfig(Config):
    """Widths and depths of an SR3D; the constructor's only argument.

    Level i works at resolution H / 2**i with base_channels * channel_mults[i] channels and
    `num_res_blocks` blocks on each path. `temporal` adds a residual temporal convolution
    after every block (off: frames are treated independently).
    """

    kind: ClassVar[str] = "sr3d"

    in_channels: int = 3
    out_channels: int | None = None
    cond_channels: int = 5
    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2)
    num_res_blocks: int = 2
    temporal: bool = True

    def __post_init__(self) -> None:
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ConfigError(f"sr3d config: {msg}")

        for name in ("in_channels", "base_channels", "num_res_blocks"):
            need(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        need(self.out_channels is None or self.out_channels >= 1, f"out_channels must be >= 1 or null, got {self.out_channels}")
        need(self.cond_channels >= 0, f"cond_channels must be >= 0, got {self.cond_channels}")
        need(len(self.channel_mults) >= 1 and min(self.channel_mults) >= 1,
             f"channel_mults must be positive integers, got {list(self.channel_mults)}")

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
        """H and W must be multiples of this; a tile must start at a multiple of it."""
        return 2 ** (self.levels - 1)

    @property
    def receptive_field(self) -> tuple[int, int]:
        """(frames, pixels): an upper bound on how far, in time and in space at full
        resolution, an output pixel sees from its own position. Counted layer by layer in
        the order `SR3D.__init__` builds them: a 3x3 convolution at level l reaches 2**l
        pixels, a 3-tap temporal convolution one frame, a downsampler 2**l and a nearest
        upsampler (conservatively) 2**l."""
        space, time = 1, 0  # conv_in
        blocks = self.num_res_blocks
        for level in range(self.levels):  # down path
            space += blocks * 2 * 2**level
            time += blocks * self.temporal
            if level < self.levels - 1:
                space += 2**level  # strided 3x3 convolution
        for level in reversed(range(self.levels - 1)):  # up path
            space += 2 * 2 ** (level + 1) // 2 + 2**level  # nearest upsampling, then a 3x3 convolution
            space += blocks * 2 * 2**level
            time += blocks * self.temporal
        return time, space + 1  # conv_out


# ----------------------------------------------------------------------------- blocks


class Block(nn.Module):
    """A spatial ResBlock, then (when the config has it) a temporal convolution."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, temporal: bool):
        super().__init__()
        self.res = ResBlock(in_ch, out_ch, emb_dim, groups=None)  # no norm: the block stays local
        self.temporal = TemporalConv(out_ch, groups=None) if temporal else None

    def forward(self, x: Tensor, emb: Tensor, frames: int) -> Tensor:
        x = self.res(x, emb)
        if self.temporal is not None and frames > 1:
            x = self.temporal(x, frames)
        return x


# ----------------------------------------------------------------------------- model


class SR3D(nn.Module):
    """`net(x, t, cond=cond) -> prediction`; see the module docstring."""

    def __init__(self, config: SR3DConfig):
        super().__init__()
        self.config = c = config
        emb_dim = 4 * c.base_channels
        self.time_embed = TimestepEmbedder(emb_dim)
        self.conv_in = nn.Conv2d(c.in_channels + c.cond_channels, c.base_channels, 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        ch = c.base_channels
        for level, width in enumerate(c.widths):
            self.down.append(nn.ModuleList([Block(ch if i == 0 else width, width, emb_dim, c.temporal)
                                            for i in range(c.num_res_blocks)]))
            ch = width
            if level < c.levels - 1:
                self.downsample.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
        # Up path: at each level below the last, upsample, concatenate the down path's output
        # of that level (a U-Net skip), then the blocks.
        self.upsample = nn.ModuleList()
        self.up = nn.ModuleList()
        for level in reversed(range(c.levels - 1)):
            width = c.widths[level]
            self.upsample.append(nn.Conv2d(ch, width, 3, padding=1))
            self.up.append(nn.ModuleList([Block(2 * width if i == 0 else width, width, emb_dim, c.temporal)
                                          for i in range(c.num_res_blocks)]))
            ch = width
        self.conv_out = zero_init(nn.Conv2d(ch, c.out_dim, 3, padding=1))

    def forward(self, x: Tensor, t: Tensor, context: Tensor | None = None, context_mask: Tensor | None = None,
                cond: Tensor | None = None) -> Tensor:
        """x (B, C_in, T, H, W); t (B,) or per-frame (B, T) in 0..1000 units; cond
        (B, cond_channels, T, H, W). No text: context must be None. -> (B, out_channels, T, H, W)."""
        batch, frames = self._check_inputs(x, t, context, cond)
        if cond is not None:
            x = torch.cat([x, cond.to(x.dtype)], dim=1)  # (B, C_in + C_cond, T, H, W)
        if t.ndim == 1:
            t = t[:, None].expand(batch, frames)  # (B,) -> (B, T)
        emb = F.silu(self.time_embed(rearrange(t.float(), "b t -> (b t)")))  # (B*T, E)
        h = self.conv_in(rearrange(x, "b c t h w -> (b t) c h w"))
        skips = []
        for level, blocks in enumerate(self.down):
            for block in blocks:
                h = block(h, emb, frames)
            if level < len(self.downsample):
                skips.append(h)
                h = self.downsample[level](h)  # (B*T, C, H/2, W/2)
        for upsample, blocks in zip(self.upsample, self.up):
            h = upsample(F.interpolate(h, scale_factor=2.0, mode="nearest"))  # (B*T, C', 2H, 2W)
            h = torch.cat([h, skips.pop()], dim=1)
            for block in blocks:
                h = block(h, emb, frames)
        h = self.conv_out(F.silu(h))
        return rearrange(h, "(b t) c h w -> b c t h w", b=batch)

    def _check_inputs(self, x: Tensor, t: Tensor, context: Tensor | None, cond: Tensor | None) -> tuple[int, int]:
        c = self.config
        if x.ndim != 5:
            raise SR3DInputError(f"x must be (B, C, T, H, W), got shape {tuple(x.shape)}")
        batch, channels, frames, height, width = x.shape
        if channels != c.in_channels:
            raise SR3DInputError(f"x has {channels} channels, this network takes in_channels={c.in_channels}")
        m = c.spatial_multiple
        if height % m or width % m:
            raise SR3DInputError(f"height and width must be multiples of {m} for {c.levels} levels, got {height}x{width}")
        if tuple(t.shape) not in ((batch,), (batch, frames)):
            raise SR3DInputError(f"t must have shape ({batch},) or ({batch}, {frames}), got {tuple(t.shape)}")
        if context is not None:
            raise SR3DInputError("sr3d networks take no text context")
        want = (batch, c.cond_channels, frames, height, width)
        if c.cond_channels == 0 and cond is not None:
            raise SR3DInputError("this network takes no cond (cond_channels=0), but cond was given")
        if c.cond_channels > 0 and (cond is None or tuple(cond.shape) != want):
            got = None if cond is None else tuple(cond.shape)
            raise SR3DInputError(f"cond must have shape {want}, got {got}")
        return batch, frames

    def save(self, path: str | Path, ema_state_dict: dict[str, Tensor] | None = None) -> Path:
        """Write a component directory (config.json + model.safetensors) atomically."""
        return save_component(path, self.config, self.state_dict(), ema_state_dict)

    @classmethod
    def load(cls, path: str | Path, *, ema: bool = False) -> "SR3D":
        """Build from a component directory, strictly; returned in eval mode."""
        return load_component(path, SR3DConfig, cls, ema=ema)


# ----------------------------------------------------------------------------- presets


PRESETS: dict[str, SR3DConfig] = {
    # For tests: 10k parameters.
    "sr3d-tiny": SR3DConfig(base_channels=8, channel_mults=(1, 2), num_res_blocks=1),
    # The shipped upscalers (configs/upscale-*.toml).
    "sr3d-s": SR3DConfig(base_channels=32, channel_mults=(1, 2), num_res_blocks=2),
}


def sr3d_preset(name: str, **changes) -> SR3DConfig:
    """A named preset config, optionally with some fields replaced."""
    if name not in PRESETS:
        raise ConfigError(f"unknown sr3d preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name].replace(**changes) if changes else PRESETS[name]
