"""Text-to-video: noise -> sampler(cfg(denoiser)) -> VAE decode."""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor

from kinema.diffusion.guidance import bind, cfg
from kinema.diffusion.samplers import generators, get_sampler, randn
from kinema.errors import KinemaError
from kinema.pipeline import Pipeline


def guided_denoiser(pipe: Pipeline, prompts: Sequence[str], guidance: float, known: dict | None = None):
    """The denoiser D(x, sigma) for `prompts` with classifier-free guidance at `guidance`.

    The null condition is the empty prompt (the text encoder's no-text states); prompts and
    nulls are encoded in one call so both are padded to the same length. `known` is the
    network's extra inputs ({"cond": (B, C + 1, t, h, w)}, kinema.tasks.conditioning) for a
    network trained with tasks; both guidance branches see it.
    """
    denoiser = pipe.denoiser
    extra = dict(known or {})
    if pipe.text is None:
        return bind(denoiser, **extra)
    n = len(prompts)
    states, mask = pipe.text.encode(list(prompts) + [""] * n)
    cond = {"context": states[:n], "context_mask": mask[:n], **extra}
    if guidance == 1.0:
        return bind(denoiser, **cond)
    return cfg(denoiser, guidance, cond, {"context": states[n:], "context_mask": mask[n:], **extra})


def empty_conditioning(pipe: Pipeline, shape: Sequence[int], device: torch.device) -> dict:
    """The extra inputs of text-to-video (nothing known) for a network trained with tasks."""
    channels = getattr(pipe.net.config, "cond_channels", 0)
    if not channels:
        return {}
    b, _, t, h, w = shape
    return {"cond": torch.zeros(b, channels, t, h, w, device=device)}


@torch.no_grad()
def text_to_video(
    pipe: Pipeline,
    prompts: Sequence[str],
    *,
    frames: int | None = None,
    size: tuple[int, int] | None = None,
    steps: int | None = None,
    guidance: float | None = None,
    sampler: str | None = None,
    seeds: Sequence[int] | int = 0,
    progress: bool = False,
    callback: Callable[[dict], None] | None = None,
) -> Tensor:
    """Clips for `prompts`: (B, 3, T, H, W) in [-1, 1]. Unset options take the pipeline's
    defaults. Sample b's noise comes from its own generator (seed `seeds + b`, or
    `seeds[b]`), so a prompt's clip does not depend on the rest of the batch."""
    c = pipe.config
    frames = c.frames if frames is None else frames
    size = (c.height, c.width) if size is None else size
    steps = c.steps if steps is None else steps
    guidance = c.guidance if guidance is None else guidance
    if steps < 1:
        raise KinemaError(f"steps must be >= 1, got {steps}")
    if guidance < 0:
        raise KinemaError(f"guidance must be >= 0, got {guidance}")
    sample = get_sampler(c.sampler if sampler is None else sampler)
    n = len(prompts)
    seed_list = [seeds + b for b in range(n)] if isinstance(seeds, int) else list(seeds)
    device = next(pipe.net.parameters()).device
    gens = generators(seed_list)
    shape = pipe.latent_shape(n, frames, size)
    x = randn(shape, generator=gens).to(device)
    sigmas = pipe.schedule.sigmas(steps).to(device)
    denoiser = guided_denoiser(pipe, prompts, guidance, empty_conditioning(pipe, shape, device))
    latents = sample(denoiser, x, sigmas, generator=gens, callback=callback, progress=progress)
    return pipe.decode(latents)
