"""Cascaded upscaling: spatial (2x size) and temporal (2x frame rate) stages, chained for 4x.

A stage is a small diffusion model in pixel space (kinema.models.sr3d) that denoises the
residual between the high-resolution clip and a naive upsampling of its input, bicubic in
space or frame blending in time (SR3, Saharia et al. 2022; Imagen Video, Ho et al. 2022).
Its cond channels are the naive upsampling, a known-frame mask and the level of Gaussian
noise added to the low-resolution input: conditioning augmentation (Ho et al. 2021,
"Cascaded Diffusion Models", §3.2), random while training so that a stage tolerates the
previous stage's artefacts, fixed (`noise_aug`) at inference.

Temporal stages place the given frames at the even positions of a 2T - 1 frame clip; they
are known content (kinema.tasks.known, "replace") and come out exactly as given.

Sampling is the shared sampler loop on the whole clip; only the network calls are split
(`Tiled`): chunks of frames and tiles of pixels, each with a margin that covers the
network's receptive field, so the result equals whole-clip inference while activations
stay bounded by the tile size. With `steps=1` the flow-Euler sampler returns the
denoiser's estimate at sigma = 1, the posterior mean of the residual: the PSNR-optimal
(regression) output; more steps give samples (sharper, lower PSNR). docs/UPSCALE.md has
both measured.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from kinema.config import Config, ConfigError
from kinema.errors import KinemaError

UPSCALER_FILE = "upscaler.json"
MODES = ("spatial", "temporal")
FACTORS = (1, 2, 4)
COND_CHANNELS = 5  # naive upsampling (3), known-frame mask (1), augmentation level (1)
TEMPORAL_BASES = ("blend", "flow")


@dataclasses.dataclass(frozen=True)
class UpscalerConfig(Config):
    """upscaler.json of an upscaler dir (beside the network's config.json + safetensors).

    `schedule`: the flow schedule's dict; `residual_scale`: the residual is multiplied by
    it before diffusion (it is small: the network sees unit-scale data); `noise_aug`: the
    conditioning-augmentation level used at inference; `sampler`, `steps`: defaults;
    `tile`, `chunk`: the core size of a spatial tile (pixels) and of a time chunk (frames)
    per network call; `temporal_base`: a temporal stage's naive upsampling, "blend" (the
    mean of the two neighbours) or "flow" (their optical-flow midpoint,
    kinema.tasks.interpolation; needs OpenCV)."""

    kind: ClassVar[str] = "upscaler"

    mode: Literal["spatial", "temporal"]
    schedule: dict[str, Any]
    prediction: Literal["eps", "v", "x0", "flow"] = "x0"
    residual_scale: float = 4.0
    noise_aug: float = 0.0
    sampler: str = "euler"
    steps: int = 1
    tile: int = 128
    chunk: int = 24
    temporal_base: Literal["blend", "flow"] = "blend"

    def __post_init__(self) -> None:
        if self.residual_scale <= 0 or self.noise_aug < 0 or self.steps < 1 or self.tile < 1 or self.chunk < 1:
            raise ConfigError("upscaler: residual_scale > 0, noise_aug >= 0, steps, tile and chunk >= 1 are required")


# ----------------------------------------------------------------------------- naive resampling


def _frames(video: Tensor) -> tuple[Tensor, int]:
    return rearrange(video, "b c t h w -> (b t) c h w"), video.shape[0]


def downscale_space(video: Tensor, factor: int = 2) -> Tensor:
    """(B, C, T, H, W) -> (B, C, T, H/f, W/f): the mean of each f x f block (area
    downsampling), the degradation the spatial stage is trained and measured on."""
    frames, b = _frames(video)
    return rearrange(F.avg_pool2d(frames, factor), "(b t) c h w -> b c t h w", b=b)


def upsample_space(video: Tensor, factor: int = 2) -> Tensor:
    """(B, C, T, h, w) -> (B, C, T, f*h, f*w): bicubic (Keys, a = -0.75; torch's), unclamped."""
    frames, b = _frames(video)
    up = F.interpolate(frames, scale_factor=float(factor), mode="bicubic", align_corners=False)
    return rearrange(up, "(b t) c h w -> b c t h w", b=b)


def place_frames(video: Tensor) -> tuple[Tensor, Tensor]:
    """(B, C, T, H, W) -> (B, C, 2T - 1, H, W) with the given frames at the even positions
    and zeros between, and the known mask (1, 1, 2T - 1, 1, 1), 1 at the even positions."""
    b, c, t, h, w = video.shape
    out = video.new_zeros(b, c, 2 * t - 1, h, w)
    out[:, :, ::2] = video
    mask = video.new_zeros(1, 1, 2 * t - 1, 1, 1)
    mask[:, :, ::2] = 1
    return out, mask


def upsample_time(video: Tensor, base: str = "blend") -> Tensor:
    """(B, C, T, H, W) -> (B, C, 2T - 1, H, W): the given frames, and between each two their
    mean ("blend", frame blending) or their optical-flow midpoint ("flow", C = 3 in [-1, 1];
    kinema.tasks.interpolation, needs OpenCV)."""
    if base not in TEMPORAL_BASES:
        raise KinemaError(f"unknown temporal base {base!r}; expected one of {', '.join(TEMPORAL_BASES)}")
    out, _ = place_frames(video)
    if base == "flow":
        from kinema.tasks.interpolation import flow_midpoints

        out[:, :, 1::2] = flow_midpoints(video)
    else:
        out[:, :, 1::2] = 0.5 * (video[:, :, :-1] + video[:, :, 1:])
    return out


def degrade(mode: str, clip: Tensor) -> Tensor:
    """The low-resolution input a stage gets for the high-resolution `clip`: area-downscaled
    by 2 (spatial), or every other frame (temporal; the clip has an odd frame count)."""
    if mode == "spatial":
        return downscale_space(clip)
    if clip.shape[2] % 2 == 0:
        raise KinemaError(f"a temporal stage's target clip has 2T - 1 frames; got {clip.shape[2]}")
    return clip[:, :, ::2]


def stage_inputs(mode: str, low: Tensor, noise_aug: Tensor, aug_noise: Tensor,
                 temporal_base: str = "blend") -> tuple[Tensor, Tensor, Tensor]:
    """(base, cond, mask) for input `low` (B, 3, T, h, w) with conditioning-augmentation levels
    `noise_aug` (B,) and its noise (like `low`). low + level * noise is upsampled naively to
    `base` (B, 3, T', H, W): bicubic in space, `temporal_base` in time; cond = cat(base, mask,
    level) (B, 5, T', H, W); mask (B, 1, T', H, W) is 1 on given frames (temporal), 0
    everywhere else."""
    if mode not in MODES:
        raise KinemaError(f"unknown upscaling mode {mode!r}; expected one of {', '.join(MODES)}")
    level = noise_aug.to(low.dtype).view(-1, 1, 1, 1, 1)
    noisy = low + level * aug_noise
    if mode == "spatial":
        base = upsample_space(noisy)
        mask = base.new_zeros(base.shape[0], 1, *base.shape[2:])
    else:
        base = upsample_time(noisy, temporal_base)
        mask = place_frames(low[:, :1, :, :1, :1])[1].expand(base.shape[0], 1, -1, *base.shape[3:])
    cond = torch.cat([base, mask, level.expand_as(mask)], dim=1)
    return base, cond, mask


# ----------------------------------------------------------------------------- tiled denoiser


def _spans(size: int, core: int) -> list[tuple[int, int]]:
    return [(a, min(a + core, size)) for a in range(0, size, core)]


class Tiled:
    """D'(x, sigma) = denoiser(x, sigma, cond=cond), computed chunk by chunk in time and tile
    by tile in space (DESIGN rule 3: a wrapper from denoiser to denoiser).

    Each call reads its core plus `reach` = (frames, pixels) on every side (clipped to the
    clip; a window starts at a multiple of `multiple` so strided layers line up) and keeps
    the core. When `reach` bounds the network's receptive field (SR3DConfig.receptive_field),
    the result is the whole-clip call's, up to float rounding; memory is that of one window.
    """

    def __init__(self, denoiser: Any, cond: Tensor, *, chunk: int, tile: int, reach: tuple[int, int], multiple: int):
        if tile % multiple:
            raise KinemaError(f"tile must be a multiple of {multiple}, got {tile}")
        self.denoiser, self.cond, self.chunk, self.tile, self.reach, self.multiple = denoiser, cond, chunk, tile, reach, multiple

    @property
    def path(self):
        return self.denoiser.path

    def _window(self, a: int, b: int, size: int, reach: int, multiple: int) -> tuple[int, int]:
        start = max(0, a - reach) // multiple * multiple
        end = min(size, -(-(b + reach) // multiple) * multiple)
        return start, end

    def __call__(self, x: Tensor, sigma: Tensor) -> Tensor:
        _, _, frames, height, width = x.shape
        sigma = sigma.expand(x.shape[0]) if sigma.ndim == 0 else sigma
        out = torch.empty_like(x)
        rt, rs = self.reach
        for t0, t1 in _spans(frames, self.chunk):
            a0, a1 = self._window(t0, t1, frames, rt, 1)
            s = sigma[:, a0:a1] if sigma.ndim == 2 else sigma
            for y0, y1 in _spans(height, self.tile):
                b0, b1 = self._window(y0, y1, height, rs, self.multiple)
                for x0, x1 in _spans(width, self.tile):
                    c0, c1 = self._window(x0, x1, width, rs, self.multiple)
                    window = (..., slice(a0, a1), slice(b0, b1), slice(c0, c1))
                    d = self.denoiser(x[window], s, cond=self.cond[window])
                    out[..., t0:t1, y0:y1, x0:x1] = d[..., t0 - a0 : t1 - a0, y0 - b0 : y1 - b0, x0 - c0 : x1 - c0]
        return out


# ----------------------------------------------------------------------------- upscalers


@dataclasses.dataclass
class Upscaler:
    """A loaded stage: its config, raw network (sr3d) and schedule."""

    config: UpscalerConfig
    net: nn.Module
    schedule: Any

    @property
    def denoiser(self):
        from kinema.diffusion.denoiser import Denoiser

        return Denoiser(self.net, self.schedule, self.config.prediction)

    @classmethod
    def load(cls, path: str | Path, *, device: str = "cpu", ema: bool = True) -> "Upscaler":
        from kinema.checkpoint import CheckpointError
        from kinema.models.registry import load_component_dir
        from kinema.pipeline import schedule_from_dict

        path = Path(path)
        if not (path / UPSCALER_FILE).is_file():
            what = f"upscaler not found: {path}" if not path.exists() else f"{path} is not an upscaler: it has no {UPSCALER_FILE}"
            raise KinemaError(f"{what} (train one with kinema train configs/upscale-spatial.toml or upscale-temporal.toml)")
        try:
            config = UpscalerConfig.load(path / UPSCALER_FILE)
            schedule = schedule_from_dict(config.schedule)
        except ConfigError as e:
            raise CheckpointError(f"{path / UPSCALER_FILE}: {e}") from None
        net_config, net = load_component_dir(path, ema=ema)
        if net_config.kind != "sr3d" or net_config.cond_channels != COND_CHANNELS:
            raise CheckpointError(f"{path}: expected an sr3d network with {COND_CHANNELS} cond channels")
        return cls(config=config, net=net.to(device).requires_grad_(False), schedule=schedule)

    def save(self, path: str | Path, ema_state_dict: dict[str, Tensor] | None = None) -> Path:
        """Write the upscaler dir atomically: the network's component files + upscaler.json."""
        from kinema.checkpoint import save_component
        from kinema.fileio import atomic_dir

        with atomic_dir(Path(path)) as tmp:
            save_component(tmp, self.net.config, self.net.state_dict(), ema_state_dict)
            (tmp / UPSCALER_FILE).write_text(self.config.to_json(), encoding="utf-8")
        return Path(path)


def _check_clip(clip: Tensor, mode: str) -> None:
    if not isinstance(clip, Tensor) or clip.ndim != 5 or clip.shape[1] != 3:
        raise KinemaError(f"expected a clip (B, 3, T, H, W), got {tuple(getattr(clip, 'shape', ()))}")
    if mode == "temporal" and clip.shape[2] < 2:
        raise KinemaError(f"temporal upscaling needs at least 2 frames, got {clip.shape[2]}")


@torch.no_grad()
def upscale_stage(
    up: Upscaler,
    clip: Tensor,
    *,
    steps: int | None = None,
    sampler: str | None = None,
    noise_aug: float | None = None,
    seed: int = 0,
    tile: int | None = None,
    chunk: int | None = None,
    progress: bool = False,
) -> Tensor:
    """One 2x stage on `clip` (B, 3, T, H, W) in [-1, 1]: (B, 3, T, 2H, 2W) (spatial) or
    (B, 3, 2T - 1, H, W) (temporal, the given frames exactly at the even positions)."""
    from kinema.diffusion.samplers import generators, get_sampler, randn
    from kinema.tasks.known import Known, KnownContent

    c = up.config
    _check_clip(clip, c.mode)
    steps = c.steps if steps is None else steps
    noise_aug = c.noise_aug if noise_aug is None else noise_aug
    if steps < 1 or noise_aug < 0:
        raise KinemaError(f"steps must be >= 1 and noise_aug >= 0, got {steps}, {noise_aug}")
    sample = get_sampler(c.sampler if sampler is None else sampler)
    device = next(up.net.parameters()).device
    clip = clip.to(device=device, dtype=torch.float32)
    b = clip.shape[0]
    gens = generators([seed + i for i in range(b)])
    aug_noise = randn(clip.shape, generator=gens).to(device)
    base, cond, mask = stage_inputs(c.mode, clip, torch.full((b,), float(noise_aug), device=device), aug_noise,
                                    c.temporal_base)

    # The network takes sizes that are multiples of its spatial multiple: pad by replication.
    m = up.net.config.spatial_multiple
    height, width = base.shape[-2:]
    pad = (0, -width % m, 0, -height % m)

    def padded(v: Tensor) -> Tensor:
        return F.pad(v.flatten(1, 2), pad, mode="replicate").unflatten(1, v.shape[1:3]) if any(pad) else v

    base_p, cond_p = padded(base), padded(cond)
    tile, chunk = c.tile if tile is None else tile, c.chunk if chunk is None else chunk
    tile = max(m, tile // m * m)
    denoiser = Tiled(up.denoiser, cond_p, chunk=chunk, tile=tile, reach=up.net.config.receptive_field, multiple=m)
    if c.mode == "temporal":
        # Given frames are known content: their residual is fixed, so the sampler ends on them.
        placed, _ = place_frames(clip)
        mask_p = cond_p[:, 3:4]
        known = Known((padded(placed) - base_p) * c.residual_scale * mask_p, mask_p)
        known_noise = randn(base_p.shape, generator=generators([seed + 10**6 + i for i in range(b)])).to(device)
        denoiser = KnownContent(denoiser, known, "replace", known_noise)
    x = randn(base_p.shape, generator=gens).to(device)
    residual = sample(denoiser, x, up.schedule.sigmas(steps).to(device), generator=gens, progress=progress)
    out = (base_p + residual / c.residual_scale)[..., :height, :width].clamp(-1, 1)
    if c.mode == "temporal":
        out = torch.where(mask.bool(), placed, out)  # exactly the given frames
    return out


def stages_for(scale: int, fps_multiplier: int) -> list[str]:
    """The stages a cascade runs, temporal first (cheaper at the lower resolution)."""
    for name, value in (("scale", scale), ("fps multiplier", fps_multiplier)):
        if value not in FACTORS:
            raise KinemaError(f"unsupported {name} {value}; expected one of {', '.join(map(str, FACTORS))}")
    return ["temporal"] * int(math.log2(fps_multiplier)) + ["spatial"] * int(math.log2(scale))


def load_upscalers(scale: int, fps_multiplier: int, spatial: str | Path | None = None,
                   temporal: str | Path | None = None, device: str = "cpu") -> dict[str, Upscaler]:
    """The stages a cascade needs, from the given dirs or the shipped defaults."""
    from kinema.weights import DEFAULT_SPATIAL_UPSCALER_DIR, DEFAULT_TEMPORAL_UPSCALER_DIR

    dirs = {"spatial": spatial or DEFAULT_SPATIAL_UPSCALER_DIR, "temporal": temporal or DEFAULT_TEMPORAL_UPSCALER_DIR}
    out = {}
    for mode in sorted(set(stages_for(scale, fps_multiplier))):
        out[mode] = Upscaler.load(dirs[mode], device=device)
        if out[mode].config.mode != mode:
            raise KinemaError(f"{dirs[mode]} is a {out[mode].config.mode} upscaler, but a {mode} one is needed here")
    return out


@torch.no_grad()
def upscale(clip: Tensor, upscalers: dict[str, Upscaler], *, scale: int = 1, fps_multiplier: int = 1, seed: int = 0,
            **options: Any) -> Tensor:
    """The cascade: `clip` (B, 3, T, H, W) -> (B, 3, m(T - 1) + 1, s H, s W) for scale s and
    fps multiplier m in 1, 2, 4, by chained 2x stages (temporal ones first); `options` go
    to every `upscale_stage`."""
    for i, mode in enumerate(stages_for(scale, fps_multiplier)):
        if mode not in upscalers:
            raise KinemaError(f"this cascade needs a {mode} upscaler")
        clip = upscale_stage(upscalers[mode], clip, seed=seed + 7919 * i, **options)
    return clip
