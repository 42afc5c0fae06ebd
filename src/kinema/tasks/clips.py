"""The tasks that start from pixels: image-to-video, prediction, editing, inpainting.

Each one encodes what the user gives into latents, says what is known (kinema.tasks.known),
runs the shared sampling loop (kinema.tasks.t2v.sample_latents) and decodes. Clips are
(B, 3, T, H, W) in [-1, 1] at the model's size; the CLI resizes inputs before they get here.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from kinema.errors import KinemaError
from kinema.pipeline import Pipeline
from kinema.models.vae3d import block_mean
from kinema.tasks.flowedit import flow_edit
from kinema.tasks.known import Known, known_at
from kinema.tasks.t2v import sample_latents


def _vae(pipe: Pipeline):
    if pipe.vae is None:
        raise KinemaError("this task needs a latent model (a pipeline with a VAE)")
    return pipe.vae


def encode(pipe: Pipeline, video: Tensor) -> Tensor:
    """(B, 3, 1 + f*k, H, W) in [-1, 1] -> normalized latents (B, C, 1 + k, h, w)."""
    return _vae(pipe).encode(video)


def _frames_and_shape(pipe: Pipeline, batch: int, frames: int | None, size: tuple[int, int]) -> tuple[int, tuple]:
    frames = pipe.config.frames if frames is None else frames
    return frames, pipe.latent_shape(batch, frames, size)


@torch.no_grad()
def image_to_video(pipe: Pipeline, prompts: list[str], image: Tensor, *, frames: int | None = None,
                   method: str = "trained", **sampling: Any) -> Tensor:
    """A clip whose first frame is `image` (B, 3, H, W): the causal VAE encodes a frame on
    its own into the first latent frame, which is the known content. The decoded first frame
    is the image through the VAE (29-41 dB on Shapes frames), so the image itself replaces
    it, as inpainting keeps the known pixels: the clip starts from exactly the given frame."""
    frames, shape = _frames_and_shape(pipe, len(prompts), frames, tuple(image.shape[-2:]))
    known = known_at(shape, encode(pipe, image[:, :, None]), [0])  # the image is latent frame 0
    out = sample_latents(pipe, prompts, shape, known=known, method=method, **sampling)
    video = pipe.decode(out)
    return torch.cat([image[:, :, None].to(video.dtype).clamp(-1, 1), video[:, :, 1:]], dim=2)


def context_frames(available: int, temporal_factor: int, wanted: int | None = None) -> int:
    """The longest usable context, 1 + f*k frames, within `available` (and `wanted`)."""
    n = available if wanted is None else min(wanted, available)
    if n < 1:
        raise KinemaError("need at least one context frame")
    return 1 + temporal_factor * ((n - 1) // temporal_factor)


@torch.no_grad()
def predict(pipe: Pipeline, prompts: list[str], clip: Tensor, *, frames: int | None = None,
            method: str = "trained", **sampling: Any) -> Tensor:
    """Continue `clip` (B, 3, K, H, W), K = 1 + f*k context frames: returns the whole clip
    of `frames` frames, the context's latent frames known, the rest generated."""
    frames, shape = _frames_and_shape(pipe, len(prompts), frames, tuple(clip.shape[-2:]))
    context = encode(pipe, clip)  # (B, C, 1 + k, h, w)
    k = context.shape[2]
    if k >= shape[2]:
        raise KinemaError(f"the context ({clip.shape[2]} frames) already fills {frames} frames; ask for more frames")
    known = known_at(shape, context, list(range(k)))
    out = sample_latents(pipe, prompts, shape, known=known, method=method, **sampling)
    return pipe.decode(out)


EDIT_METHODS = ("sdedit", "flowedit")

# SDEdit's guidance when the call sets none: scale 7 from sigma 1 down to 0.4, with the source
# prompt as the null condition, so that guidance steers from what the clip shows to what the
# prompt asks. Measured on the default model, colour changed at strength 0.7 (10 steps;
# docs/MEASURED.md, "Editing: guidance away from the source prompt").
SDEDIT_GUIDANCE = 7.0
SDEDIT_GUIDANCE_INTERVAL = (0.4, 1.0)


@torch.no_grad()
def edit(pipe: Pipeline, prompts: list[str], clip: Tensor, *, strength: float, method: str = "sdedit",
         source_prompts: list[str] | None = None, source_guidance: float = 1.5, **sampling: Any) -> Tensor:
    """Restyle `clip` (B, 3, T, H, W) under `prompts`. Strength 0 returns the input itself.

    `strength` is the share of the sampling trajectory redone (diffusers' rule,
    kinema.tasks.t2v.edit_levels). `source_prompts` say what the clip shows (default the
    empty prompt). "sdedit" (Meng et al. 2022): noise the clip's latents to the level where
    that share starts and denoise them under the new prompt, guided away from the source
    prompt (its null condition; guidance SDEDIT_GUIDANCE over SDEDIT_GUIDANCE_INTERVAL unless
    the call sets them); 1 ignores the input. "flowedit" (kinema.tasks.flowedit): move the
    clip by the difference between the flows under the new prompt and the source prompt over
    the same levels, so that what both prompts agree on stays where it is; it takes `steps`,
    `guidance` and `seeds` only.
    """
    if not 0.0 <= strength <= 1.0:
        raise KinemaError(f"strength must be in [0, 1], got {strength}")
    if method not in EDIT_METHODS:
        raise KinemaError(f"unknown edit method {method!r}; expected one of {', '.join(EDIT_METHODS)}")
    if source_prompts is not None and len(source_prompts) != len(prompts):
        raise KinemaError(f"got {len(source_prompts)} source prompts for {len(prompts)} prompts")
    if strength == 0.0:
        return clip.clone()
    init = encode(pipe, clip)
    if method == "flowedit":
        ignored = sorted(k for k, v in sampling.items() if v is not None and k not in ("steps", "guidance", "seeds"))
        if ignored:
            raise KinemaError(f"flowedit does not take {', '.join(ignored)} (it steps the levels itself, guided at each)")
        sources = [""] * len(prompts) if source_prompts is None else list(source_prompts)
        out = flow_edit(pipe, prompts, sources, init, strength=strength, source_guidance=source_guidance,
                        **{k: v for k, v in sampling.items() if v is not None})
    else:
        if sampling.get("negative_prompts") is not None:
            raise KinemaError("sdedit guides away from the source prompts; give those instead of negative prompts")
        guided = {"guidance": SDEDIT_GUIDANCE, "guidance_interval": SDEDIT_GUIDANCE_INTERVAL,
                  **{k: v for k, v in sampling.items() if v is not None}, "negative_prompts": source_prompts}
        out = sample_latents(pipe, prompts, tuple(init.shape), init=init, strength=strength, **guided)
    return pipe.decode(out)


def latent_known_mask(region: Tensor, spatial: int, temporal: int) -> Tensor:
    """Pixel region to regenerate (B, 1, 1 + f*k, H, W), 1 = regenerate -> latent known mask
    (B, 1, 1 + k, H/s, W/s): a latent element is known only if none of the pixels it
    encodes (frame 0 alone, then groups of f frames; s x s pixels) is to be regenerated."""
    return (block_mean(region.float(), spatial, temporal, first=True) == 0).to(region.dtype)


@torch.no_grad()
def inpaint(pipe: Pipeline, prompts: list[str], clip: Tensor, region: Tensor, *, method: str = "trained",
            **sampling: Any) -> Tensor:
    """Regenerate `clip` (B, 3, T, H, W) where `region` (B or 1, 1, T, H, W) is 1; elsewhere
    the output is the input's pixels exactly (the decoded clip is blended in only inside)."""
    vae = _vae(pipe)
    region = region.to(clip.dtype).expand(clip.shape[0], 1, *clip.shape[2:])
    latents = encode(pipe, clip)
    mask = latent_known_mask(region, vae.config.spatial_factor, vae.config.temporal_factor)
    out = sample_latents(pipe, prompts, tuple(latents.shape), known=Known(latents, mask), method=method, **sampling)
    return region * pipe.decode(out) + (1 - region) * clip


def retime(video: Tensor, arrival: int) -> Tensor:
    """(B, C, T, H, W) whose motion ends at frame `arrival` (still after it) -> the same motion
    spread over all T frames: output frame j shows source time j * arrival / (T - 1), blended
    linearly between the two nearest source frames."""
    t = video.shape[2]
    if t < 2 or arrival == t - 1:
        return video
    times = torch.arange(t, dtype=torch.float64) * arrival / (t - 1)
    lo = times.floor().long().clamp(max=t - 1)
    hi = (lo + 1).clamp(max=t - 1)
    w = (times - lo).to(video.dtype)[None, None, :, None, None]
    return (1 - w) * video[:, :, lo] + w * video[:, :, hi]


@torch.no_grad()
def interpolate(pipe: Pipeline, prompts: list[str], first: Tensor, last: Tensor, *, frames: int | None = None,
                method: str = "trained", passes: int = 3, **sampling: Any) -> Tensor:
    """A clip from keyframe `first` to keyframe `last` (each (B, 3, H, W)).

    The first latent frame is `first` encoded on its own (exact, as in image-to-video). The
    last latent frame encodes the clip's last f frames together and one image cannot give
    it exactly. Pass 1 takes it from a proxy clip that holds `first`, then `last` for those
    f frames, so the sampled clip arrives at `last` by frame T - f and stays; the decoded
    clip is retimed (`retime`) to arrive at the end. That first guess lags the true path
    (the model moves at its own pace, not the proxy's), so each further pass encodes the
    previous clip with its ends set to the two keyframes, whose last latent frame now holds
    motion into `last`, and samples again knowing both end latents (same seeds). On Shapes
    clips: 52% of frames within 2 px of the true path after one pass, 86% after two, 98%
    after three (docs/MEASURED.md). The keyframes themselves are the output's first and
    last frames.
    """
    if passes < 1:
        raise KinemaError(f"interpolation needs at least one pass, got {passes}")
    frames, shape = _frames_and_shape(pipe, len(prompts), frames, tuple(first.shape[-2:]))
    f = _vae(pipe).config.temporal_factor
    if shape[2] < 2:
        raise KinemaError(f"interpolation needs at least {1 + f} frames, got {frames}")
    a, b = first[:, :, None], last[:, :, None]
    proxy = torch.cat([a.expand(-1, -1, frames - f, -1, -1), b.expand(-1, -1, f, -1, -1)], dim=2)
    ends = [0, shape[2] - 1]
    for index in range(passes):
        known = known_at(shape, encode(pipe, proxy)[:, :, ends], ends)
        video = pipe.decode(sample_latents(pipe, prompts, shape, known=known, method=method, **sampling))
        if index == 0:
            video = retime(video, frames - f)
        proxy = torch.cat([a.to(video.dtype), video[:, :, 1:-1], b.to(video.dtype)], dim=2).clamp(-1, 1)
    return proxy
