"""Sampling with known content: three ways to make a clip agree with what is given.

`Known` is the task (kinema.tasks.conditioning): known latents and their mask. A
`KnownContent` wrapper turns a denoiser D(x, sigma) into one that honours it, by one of:

- "trained": the network was trained with the task mix; the known latents enter through
  its cond channels, fully known frames are held at their own (context) noise level.
- "replace": the known region of x is replaced, at every step, by the known latents noised
  to the current level (the replacement method; Song et al. 2021, Ho et al. 2022 sec. 3.1).
- "guidance": replacement plus reconstruction guidance (Ho et al. 2022, eq. 7): the unknown
  part of x0_hat moves against the gradient of the known part's reconstruction error,
  x0_hat_b - (w_r * alpha / 2) * grad_{x_b} ||x_a - x0_hat_a(x)||^2, which couples the
  generated region to the given one; needs gradients through the network.

In all three, x0_hat equals the known latents where they are known, so the sampler's
trajectory ends on them.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import torch
from torch import Tensor

from kinema.diffusion.schedules import Path, as_sigma, expand_sigma
from kinema.errors import KinemaError
from kinema.tasks.conditioning import frame_sigmas, known_frames, make_cond

Method = Literal["trained", "replace", "guidance"]
METHODS = ("trained", "replace", "guidance")


@dataclasses.dataclass
class Known:
    """latents (B, C, t, h, w) normalized; mask (B, 1, t, h, w), 1 = known. context_sigma:
    the noise level fully known frames are shown at (noised context, "trained" only)."""

    latents: Tensor
    mask: Tensor
    context_sigma: float = 0.0

    def __post_init__(self) -> None:
        b, _, t, h, w = self.latents.shape
        if tuple(self.mask.shape) not in {(b, 1, t, h, w), (1, 1, t, h, w)}:
            raise KinemaError(f"known mask {tuple(self.mask.shape)} does not fit latents {tuple(self.latents.shape)}")
        self.mask = self.mask.to(self.latents.dtype).expand(b, 1, t, h, w)


def known_at(shape: tuple[int, ...], latents: Tensor, positions: list[int], context_sigma: float = 0.0) -> Known:
    """Known content for a latent clip of `shape` (B, C, t, h, w): `latents` (B, C, n, h, w)
    placed at latent frames `positions` (n of them), every other frame unknown."""
    full = latents.new_zeros(shape)
    mask = latents.new_zeros(shape[0], 1, *shape[2:])
    full[:, :, positions] = latents
    mask[:, :, positions] = 1
    return Known(full, mask, context_sigma)


def check_method(method: str) -> None:
    if method not in METHODS:
        raise KinemaError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")


class KnownContent:
    """D'(x, sigma): `denoiser` made to honour `known` by `method` (see the module doc).

    `noise` (same shape as the latents) is the fixed noise the known latents are noised
    with. For "trained", `denoiser` must already carry `known_cond(known, context)` as its
    cond input (kinema.tasks.t2v.guided_denoiser's `known`), where `context` is
    `noised_context(known, path, noise)`; pass that same tensor here, or it is recomputed.
    """

    def __init__(self, denoiser: Any, known: Known, method: Method, noise: Tensor, guidance_weight: float = 2.0,
                 context: Tensor | None = None):
        check_method(method)
        self.denoiser, self.known, self.method, self.noise = denoiser, known, method, noise
        self.guidance_weight = guidance_weight
        if method == "trained":
            self.full = known_frames(known.mask)[:, None, :, None, None]  # (B, 1, t, 1, 1)
            self.context = noised_context(known, self.path, noise) if context is None else context

    @property
    def path(self) -> Path:
        return self.denoiser.path

    def __call__(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        known, mask = self.known.latents, self.known.mask
        sigma = as_sigma(sigma, x.device)
        sigma = sigma.expand(x.shape[0]) if sigma.ndim == 0 else sigma
        if self.method == "trained":
            x = torch.where(self.full, self.context, x)
            x0 = self.denoiser(x, frame_sigmas(sigma, mask, self.known.context_sigma))
        else:
            x = mask * self.path.add_noise(known, self.noise, sigma) + (1 - mask) * x
            x0 = self._guided(x, sigma) if self.method == "guidance" else self.denoiser(x, sigma)
        return mask * known + (1 - mask) * x0

    def _guided(self, x: Tensor, sigma: Tensor) -> Tensor:
        known, mask = self.known.latents, self.known.mask
        with torch.enable_grad():
            z = x.detach().requires_grad_(True)
            x0 = self.denoiser(z, sigma)
            error = (mask * (known - x0)).square().sum()
            (grad,) = torch.autograd.grad(error, z)
        alpha = expand_sigma(self.path.alpha(sigma.double()), x).to(x.dtype)
        return (x0 - (self.guidance_weight * alpha / 2) * (1 - mask) * grad).detach()


def noised_context(known: Known, path: Path, noise: Tensor) -> Tensor:
    """The known latents as a task-trained network sees them: noised to context_sigma."""
    return path.add_noise(known.latents, noise, known.context_sigma)


def known_cond(known: Known, context: Tensor) -> dict[str, Tensor]:
    """The cond input of a task-trained network for `known`, given its `noised_context`."""
    return {"cond": make_cond(context, known.mask)}
