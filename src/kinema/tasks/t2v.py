"""Text-to-video, and the sampling loop every task shares: noise -> sampler(cfg(denoiser)) -> latents."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable, Sequence

import torch
from torch import Tensor

from kinema.diffusion.guidance import bind, cfg
from kinema.diffusion.samplers import generators, get_sampler, randn
from kinema.errors import KinemaError
from kinema.pipeline import Pipeline

if TYPE_CHECKING:
    from kinema.tasks.known import Known


def guided_denoiser(pipe: Pipeline, prompts: Sequence[str], guidance: float | Tensor, known: dict | None = None,
                    interval: tuple[float, float] | None = None, negative_prompts: Sequence[str] | None = None):
    """The denoiser D(x, sigma) for `prompts` with classifier-free guidance at `guidance`
    (a number, or one per prompt (B,); only at noise levels inside `interval`, when given).

    The null condition is the empty prompt (the text encoder's no-text states), or
    `negative_prompts`, which guidance then steers away from; prompts and nulls are encoded
    in one call so both are padded to the same length. `known` is the network's extra inputs
    ({"cond": (B, C + 1, t, h, w)}, kinema.tasks.conditioning) for a network trained with
    tasks; both guidance branches see it.
    """
    denoiser = pipe.denoiser
    extra = dict(known or {})
    n = len(prompts)
    nulls = [""] * n if negative_prompts is None else list(negative_prompts)
    if len(nulls) != n:
        raise KinemaError(f"got {len(nulls)} negative prompts for {n} prompts")
    if pipe.text is None:
        if negative_prompts is not None:
            raise KinemaError("this model takes no text, so it cannot take a negative prompt")
        return bind(denoiser, **extra)
    if negative_prompts is not None and not isinstance(guidance, Tensor) and guidance == 1.0:
        raise KinemaError("a negative (or edit source) prompt acts through guidance, and guidance is 1 (off); "
                          "set a guidance above 1")
    states, mask = pipe.text.encode(list(prompts) + nulls)
    cond = {"context": states[:n], "context_mask": mask[:n], **extra}
    if not isinstance(guidance, Tensor) and guidance == 1.0:
        return bind(denoiser, **cond)
    return cfg(denoiser, guidance, cond, {"context": states[n:], "context_mask": mask[n:], **extra}, interval=interval)


def empty_conditioning(pipe: Pipeline, shape: Sequence[int], device: torch.device) -> dict:
    """The extra inputs of text-to-video (nothing known) for a network trained with tasks."""
    channels = getattr(pipe.net.config, "cond_channels", 0)
    if not channels:
        return {}
    b, _, t, h, w = shape
    return {"cond": torch.zeros(b, channels, t, h, w, device=device)}


def seed_list(seeds: Sequence[int] | int, n: int) -> list[int]:
    """Per-sample seeds: `seeds + b` for an int, else the sequence itself."""
    return [seeds + b for b in range(n)] if isinstance(seeds, int) else list(seeds)


def edit_levels(sigmas: Tensor, strength: float) -> Tensor:
    """The tail of a grid of N steps (N + 1 levels) that an edit at `strength` runs: the last
    N * strength steps, as diffusers' img2img and video2video pipelines take them
    (t_start = int(N - N * strength)), less their floating-point slip (10 * 0.7 is
    7.000000000000001 in floats, so diffusers redoes 8 of 10 steps at 0.7). Strength is the
    share of the trajectory redone, not a noise level: on the default model's grid (shift 3,
    10 steps) strength 0.7 starts at sigma 0.857."""
    steps = len(sigmas) - 1
    return sigmas[max(math.floor(steps - steps * strength + 1e-9), 0):]


@torch.no_grad()
def sample_latents(
    pipe: Pipeline,
    prompts: Sequence[str],
    shape: Sequence[int],
    *,
    known: "Known | None" = None,
    method: str = "trained",
    init: Tensor | None = None,
    strength: float = 1.0,
    steps: int | None = None,
    guidance: float | None = None,
    sampler: str | None = None,
    seeds: Sequence[int] | int = 0,
    guidance_interval: tuple[float, float] | None = None,
    negative_prompts: Sequence[str] | None = None,
    guidance_weight: float = 2.0,
    progress: bool = False,
    callback: Callable[[dict], None] | None = None,
) -> Tensor:
    """The sampler's loop for every task: latents (B, C, t, h, w) for `prompts`.

    `known` (kinema.tasks.known) is content the clip must keep, honoured by `method`
    ("trained", "replace" or "guidance"). `init` with `strength` < 1 is SDEdit (Meng et al.
    2022): `init` latents are noised to the first level of the grid's last steps * strength
    steps (`edit_levels`) and denoised from there; strength 0 returns `init`. Sample b's
    noise comes from its own generator (seed `seeds + b`, or `seeds[b]`), so a prompt's clip
    does not depend on the rest of the batch. `guidance_interval` (lo, hi) limits guidance to those noise levels
    ((0, inf) guides every step); when the model's default interval would guide no step of
    this trajectory (SDEdit starting below it), every step is guided. `negative_prompts` (one
    per prompt) replace the empty prompt as guidance's null condition. Unset options take the
    pipeline's defaults.
    """
    from kinema.tasks.known import KnownContent, check_method, known_cond, noised_context

    c = pipe.config
    steps = c.steps if steps is None else steps
    guidance = c.guidance if guidance is None else guidance
    interval = c.guidance_interval if guidance_interval is None else guidance_interval
    if steps < 1:
        raise KinemaError(f"steps must be >= 1, got {steps}")
    if guidance < 0:
        raise KinemaError(f"guidance must be >= 0, got {guidance}")
    if interval is not None and not 0 <= interval[0] <= interval[1]:
        raise KinemaError(f"a guidance interval needs 0 <= lo <= hi, got {interval[0]:g}:{interval[1]:g}")
    if not 0.0 <= strength <= 1.0:
        raise KinemaError(f"strength must be in [0, 1], got {strength}")
    check_method(method)
    trained = method == "trained" and known is not None
    if trained and not getattr(pipe.net.config, "cond_channels", 0):
        raise KinemaError("this model was not trained with known-content conditioning; use --method replace or guidance")
    sample = get_sampler(c.sampler if sampler is None else sampler)
    n = len(prompts)
    seeds = seed_list(seeds, n)
    device = next(pipe.net.parameters()).device
    gens = generators(seeds)
    noise = randn(shape, generator=gens).to(device)
    sigmas = pipe.schedule.sigmas(steps).to(device)
    x = noise
    if init is not None and strength < 1.0:
        sigmas = edit_levels(sigmas, strength)  # SDEdit: redo the last steps * strength steps
        if len(sigmas) < 2:
            return init.clone()
        x = pipe.schedule.path.add_noise(init.to(device), noise, sigmas[0].item())
    if guidance_interval is None and interval is not None and not any(
            interval[0] <= s <= interval[1] for s in sigmas[:-1].tolist()):
        interval = None  # the model's default interval misses every step (SDEdit below it): guide them all
    if known is None:
        denoiser = guided_denoiser(pipe, prompts, guidance, empty_conditioning(pipe, shape, device), interval,
                                   negative_prompts)
    else:
        known_noise = randn(shape, generator=generators([s + 10**6 for s in seeds])).to(device)
        context = noised_context(known, pipe.schedule.path, known_noise) if trained else None
        extra = known_cond(known, context) if trained else empty_conditioning(pipe, shape, device)
        denoiser = KnownContent(guided_denoiser(pipe, prompts, guidance, extra, interval, negative_prompts), known,
                                method, known_noise, guidance_weight, context)
    return sample(denoiser, x, sigmas, generator=gens, callback=callback, progress=progress)


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
    guidance_interval: tuple[float, float] | None = None,
    negative_prompts: Sequence[str] | None = None,
    progress: bool = False,
    callback: Callable[[dict], None] | None = None,
) -> Tensor:
    """Clips for `prompts`: (B, 3, T, H, W) in [-1, 1]. Unset options take the pipeline's
    defaults; seeds and negative prompts as in `sample_latents`."""
    c = pipe.config
    frames = c.frames if frames is None else frames
    size = (c.height, c.width) if size is None else size
    shape = pipe.latent_shape(len(prompts), frames, size)
    latents = sample_latents(pipe, prompts, shape, steps=steps, guidance=guidance, sampler=sampler, seeds=seeds,
                             guidance_interval=guidance_interval, negative_prompts=negative_prompts,
                             progress=progress, callback=callback)
    return pipe.decode(latents)
