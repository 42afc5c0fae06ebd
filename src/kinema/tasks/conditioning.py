"""One conditioning interface for every task: what is known, and how noisy each frame is.

A task is a mask over the latent clip, `mask (B, 1, t, h, w)` (1 = known), and per-frame
noise levels. The denoiser sees the known latents through extra input channels,
`cond = cat(mask * known, mask)` (B, C + 1, t, h, w), and every latent frame that is fully
known gets its own noise level (0, or a small one for noised context as in Diffusion
Forcing, Chen et al. 2024) while the rest follow the sampler. Text-to-video is the empty
mask, image-to-video the first latent frame (the causal VAE encodes frame 0 alone), video
prediction the first k, interpolation the first and last, inpainting everything outside a
region. Training draws one task per example (`sample_task_mask`), so one set of weights
serves them all.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor

from kinema.errors import KinemaError

TASKS = ("text", "first_frame", "first_frames", "first_last", "keyframes", "boxes")


def _uniform_int(low: int, high: int, generator: torch.Generator) -> int:
    """An integer in [low, high] (inclusive)."""
    return int(torch.randint(low, high + 1, (), generator=generator))


def task_mask(task: str, shape: tuple[int, int, int], generator: torch.Generator) -> Tensor:
    """A random known-mask (1, t, h, w) float for `task` on a latent clip of `shape` (t, h, w).

    first_frames: the first k latent frames, 1 <= k < t; keyframes: each frame known with
    probability 1/3 (at least one); boxes: everything known but one random box of at least
    a quarter of each side, in every frame (inpainting).
    """
    t, h, w = shape
    mask = torch.zeros(1, t, h, w)
    if task == "text":
        return mask
    if task == "first_frame":
        mask[:, 0] = 1
    elif task == "first_frames":
        mask[:, : _uniform_int(1, max(1, t - 1), generator)] = 1
    elif task == "first_last":
        mask[:, 0] = mask[:, t - 1] = 1
    elif task == "keyframes":
        keep = torch.rand(t, generator=generator) < 1 / 3
        keep[_uniform_int(0, t - 1, generator)] = True
        mask[:, keep] = 1
    elif task == "boxes":
        bh, bw = _uniform_int(max(1, h // 4), h, generator), _uniform_int(max(1, w // 4), w, generator)
        y, x = _uniform_int(0, h - bh, generator), _uniform_int(0, w - bw, generator)
        mask[:] = 1
        mask[:, :, y : y + bh, x : x + bw] = 0
    else:
        raise KinemaError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    return mask


def check_task_weights(weights: Mapping[str, float]) -> None:
    """Refuse unknown task names, negative weights, or an all-zero mix."""
    unknown = sorted(set(weights) - set(TASKS))
    if unknown:
        raise KinemaError(f"unknown task(s) {', '.join(unknown)}; expected some of {', '.join(TASKS)}")
    if any(v < 0 for v in weights.values()) or sum(weights.values()) <= 0:
        raise KinemaError(f"task weights must be >= 0 with a positive sum, got {dict(weights)}")


def sample_task(weights: Mapping[str, float], generator: torch.Generator) -> str:
    """A task name drawn with probability proportional to its weight."""
    names = sorted(weights)
    p = torch.tensor([float(weights[n]) for n in names])
    return names[int(torch.multinomial(p / p.sum(), 1, generator=generator))]


def make_cond(known: Tensor, mask: Tensor) -> Tensor:
    """cond (B, C + 1, t, h, w) = cat(mask * known, mask); known (B, C, t, h, w), mask
    (B, 1, t, h, w) with 1 = known. An empty mask gives all zeros (text-to-video)."""
    mask = mask.to(known.dtype).expand(known.shape[0], 1, *known.shape[2:])
    return torch.cat([known * mask, mask], dim=1)


def known_frames(mask: Tensor) -> Tensor:
    """(B, t) bool: latent frames whose every element is known."""
    return mask.flatten(3).amin(dim=(1, 3)) > 0


def frame_sigmas(sigma: Tensor, mask: Tensor, context_sigma: Tensor | float = 0.0) -> Tensor:
    """Per-frame noise levels (B, t) float64: `context_sigma` (a number or (B,)) on fully
    known frames, the sampler's `sigma` (a number, (B,) or per-frame (B, t)) elsewhere."""
    known = known_frames(mask)
    b, t = known.shape
    sigma = torch.as_tensor(sigma, dtype=torch.float64, device=mask.device)
    sigma = sigma if sigma.ndim == 2 else sigma.reshape(-1, 1).expand(b, t)
    context = torch.as_tensor(context_sigma, dtype=torch.float64, device=mask.device).reshape(-1, 1).expand(b, t)
    return torch.where(known, context, sigma)
