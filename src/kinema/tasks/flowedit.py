"""Editing without inversion: FlowEdit (Kulikov et al. 2024, arXiv:2412.08629).

SDEdit noises the clip to a level and regenerates from there, so whatever the noise has not
hidden yet (a flat colour survives a lot of noise) stays, and whatever it has hidden (where
the object is) is drawn anew. FlowEdit instead moves the clip along the difference of two
flows: at each level it noises the source clip with fresh noise, shifts that point by the
edit made so far, and steps the edit by (flow under the new prompt at the shifted point)
minus (flow under the source prompt at the source point). Where the two prompts agree the
difference is zero and the clip is kept as it is; only what the prompts disagree on moves.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from kinema.diffusion.samplers import generators, randn
from kinema.errors import KinemaError
from kinema.pipeline import Pipeline
from kinema.tasks.t2v import edit_levels, empty_conditioning, guided_denoiser, seed_list


def _step(path, x: Tensor, x0: Tensor, sigma: float, sigma_next: float) -> Tensor:
    """The deterministic (DDIM / Euler) step from level sigma to sigma_next given the
    denoised estimate x0; on the flow path this is x + (sigma_next - sigma) * velocity."""
    s, s_next = torch.tensor(sigma, dtype=torch.float64), torch.tensor(sigma_next, dtype=torch.float64)
    eps = (x - path.alpha(s).to(x.dtype) * x0) / sigma
    return path.alpha(s_next).to(x.dtype) * x0 + sigma_next * eps


@torch.no_grad()
def flow_edit(pipe: Pipeline, prompts: Sequence[str], source_prompts: Sequence[str], init: Tensor, *,
              strength: float, steps: int | None = None, guidance: float | None = None,
              source_guidance: float = 1.5, seeds: Sequence[int] | int = 0) -> Tensor:
    """Latents (B, C, t, h, w) of `init` (the clip's latents, same shape) edited from what
    `source_prompts` describe to `prompts`.

    The edit runs the grid's last steps * strength steps (kinema.tasks.t2v.edit_levels;
    FlowEdit's n_max out of T; 0 returns `init`), one network call per level on the target
    and source points together. Guidance: `guidance` (the model's default) on the target,
    `source_guidance` on the source, as the paper guides the source less than the target.
    Noise per sample as in sample_latents.
    """
    if len(source_prompts) != len(prompts):
        raise KinemaError(f"got {len(source_prompts)} source prompts for {len(prompts)} prompts")
    if not 0.0 <= strength <= 1.0:
        raise KinemaError(f"strength must be in [0, 1], got {strength}")
    c = pipe.config
    steps = c.steps if steps is None else steps
    guidance = c.guidance if guidance is None else guidance
    if steps < 1:
        raise KinemaError(f"steps must be >= 1, got {steps}")
    if guidance < 0 or source_guidance < 0:
        raise KinemaError(f"guidance must be >= 0, got {guidance} (target) and {source_guidance} (source)")
    sigmas = edit_levels(pipe.schedule.sigmas(steps), strength).tolist()
    if len(sigmas) < 2:
        return init.clone()
    n = len(prompts)
    device = init.device
    shape = (2 * n, *init.shape[1:])
    scales = torch.tensor([float(guidance)] * n + [float(source_guidance)] * n, device=device)
    denoiser = guided_denoiser(pipe, list(prompts) + list(source_prompts), scales,
                               empty_conditioning(pipe, shape, device))
    return flow_edit_loop(denoiser, pipe.schedule.path, init, sigmas, generators(seed_list(seeds, n)))


def flow_edit_loop(denoiser, path, init: Tensor, sigmas: Sequence[float], generator) -> Tensor:
    """FlowEdit's loop over `sigmas` (descending, ending at the last level to reach).

    `denoiser` (x (2B, ...), sigma (2B,)) -> x0 estimates: the first B rows under the target
    condition, the last B under the source one. `generator`: per-sample generators (B of
    them) or one, for the fresh noise drawn at every level.
    """
    n = init.shape[0]
    edited = init.clone()
    for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:]):
        noise = randn(init.shape, generator=generator).to(init.device)
        source = path.add_noise(init, noise, sigma)  # the source clip at this level
        target = edited + (source - init)  # the same noise, shifted by the edit so far
        points = torch.cat([target, source])
        x0 = denoiser(points, torch.full((2 * n,), float(sigma), device=init.device, dtype=init.dtype))
        moved = _step(path, points, x0, sigma, sigma_next) - points
        edited = edited + (moved[:n] - moved[n:])
    return edited
