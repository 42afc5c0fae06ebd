"""Guidance and conditioning as wrappers from denoiser to denoiser (DESIGN rule 3).

Each wrapper is a callable D'(x, sigma) -> x0_hat that keeps the inner denoiser's `.path`,
so wrappers nest (e.g. a known-content wrapper around `cfg(...)`) and every task uses the
same samplers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from kinema.diffusion.denoiser import prediction_to_x0, x0_to_prediction
from kinema.diffusion.schedules import Path, as_sigma, expand_sigma


class Bound:
    """D'(x, sigma) = denoiser(x, sigma, **cond): conditioning fixed once."""

    def __init__(self, denoiser: Any, cond: Mapping[str, Any]) -> None:
        self.denoiser, self.cond = denoiser, dict(cond)

    @property
    def path(self) -> Path:
        return self.denoiser.path

    def __call__(self, x: Tensor, sigma: Tensor) -> Tensor:
        return self.denoiser(x, sigma, **self.cond)


def bind(denoiser: Any, **cond: Any) -> Bound:
    """Fix a denoiser's conditioning (e.g. context=..., context_mask=...)."""
    return Bound(denoiser, cond)


def _expand_cond(cond: Mapping[str, Any], batch: int) -> dict[str, Any]:
    """The conditioning alone for a batch of `batch`: batch-1 tensors expanded."""
    return {k: v.expand(batch, *v.shape[1:]) if isinstance(v, Tensor) and v.shape[0] == 1 else v
            for k, v in cond.items()}


def _stack_cond(cond: Mapping[str, Any], uncond: Mapping[str, Any], batch: int) -> dict[str, Any]:
    """Conditioning for the doubled batch [cond; uncond]: tensors are concatenated along dim 0
    (a batch-1 tensor is first expanded to the batch), None stays None, other values must agree."""
    if set(cond) != set(uncond):
        raise ValueError(f"cond and uncond need the same keys, got {sorted(cond)} and {sorted(uncond)}")
    out: dict[str, Any] = {}
    uncond = _expand_cond(uncond, batch)
    for key, c in _expand_cond(cond, batch).items():
        u = uncond[key]
        if isinstance(c, Tensor) and isinstance(u, Tensor):
            if c.shape != u.shape:
                raise ValueError(f"cond[{key!r}] {tuple(c.shape)} and uncond {tuple(u.shape)} differ; pad both alike")
            out[key] = torch.cat([c, u])  # (2B, ...)
        elif (c is None and u is None) or (not isinstance(c, Tensor) and not isinstance(u, Tensor) and c == u):
            out[key] = c
        else:
            raise ValueError(f"cond[{key!r}] and uncond[{key!r}] must both be tensors, both None, or equal")
    return out


class ClassifierFree:
    """Classifier-free guidance (Ho & Salimans 2022): x0_u + scale * (x0_c - x0_u).

    Cond and uncond run in one forward over the doubled batch. Guiding x0 is the same as
    guiding eps, v or the flow velocity: at a fixed (x, sigma) each of those is an affine
    function of x0 with coefficients that do not depend on the conditioning, and an affine map
    commutes with (1 - scale) * a + scale * b. `rescale` (phi, Lin et al. 2024, Sec. 3.4)
    rescales the guided v = alpha eps - sigma x0 to the per-sample std of the conditional v
    and mixes phi of that with the plain guided v: the paper's rescale, done in v space
    whatever the model's own parameterization (so eps, v and flow models agree).
    `interval` (lo, hi) guides only where lo <= sigma <= hi (Kynkaanniemi et al. 2024, "Applying
    guidance in a limited interval"); elsewhere the conditional prediction is used as it is,
    and a step whose every sample lies outside costs one forward instead of two.
    """

    def __init__(self, denoiser: Any, scale: float | Tensor, cond: Mapping[str, Any],
                 uncond: Mapping[str, Any], rescale: float = 0.0,
                 interval: tuple[float, float] | None = None) -> None:
        if interval is not None and not 0 <= interval[0] <= interval[1]:
            raise ValueError(f"a guidance interval needs 0 <= lo <= hi, got {interval}")
        self.denoiser, self.scale, self.rescale, self.interval = denoiser, scale, rescale, interval
        self.cond, self.uncond = dict(cond), dict(uncond)

    @property
    def path(self) -> Path:
        return self.denoiser.path

    def __call__(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        batch = x.shape[0]
        sigma = as_sigma(sigma, x.device)
        if sigma.ndim == 0:
            sigma = sigma.expand(batch)
        scale = torch.as_tensor(self.scale, device=x.device)
        if self.interval is not None:
            inside = (sigma >= self.interval[0]) & (sigma <= self.interval[1])  # (B,)
            if not bool(inside.any()):
                return self.denoiser(x, sigma, **_expand_cond(self.cond, batch))
            if scale.ndim:  # per-sample (B,) against a per-frame (B, T) sigma
                scale = scale.view(-1, *[1] * (inside.ndim - 1))
            scale = torch.where(inside, scale, torch.ones_like(scale))
        both = _stack_cond(self.cond, self.uncond, batch)
        x0_c, x0_u = self.denoiser(torch.cat([x, x]), torch.cat([sigma, sigma]), **both).chunk(2)
        guided = x0_u + expand_sigma(scale, x).to(x0_c.dtype) * (x0_c - x0_u)
        if self.rescale > 0:
            guided = self._rescale(guided, x0_c, x, sigma)
        return guided

    def _rescale(self, guided: Tensor, x0_c: Tensor, x: Tensor, sigma: Tensor) -> Tensor:
        v_cfg = x0_to_prediction(self.path, "v", guided, x, sigma)
        v_c = x0_to_prediction(self.path, "v", x0_c, x, sigma)
        dims = list(range(1, x.ndim))
        ratio = v_c.std(dim=dims, keepdim=True) / v_cfg.std(dim=dims, keepdim=True)
        v = self.rescale * (v_cfg * ratio) + (1 - self.rescale) * v_cfg
        return prediction_to_x0(self.path, "v", v, x, sigma).to(guided.dtype)


def cfg(denoiser: Any, scale: float | Tensor, cond: Mapping[str, Any], uncond: Mapping[str, Any],
        *, rescale: float = 0.0, interval: tuple[float, float] | None = None) -> ClassifierFree:
    """Guided denoiser D'(x, sigma) from D(x, sigma, **cond); scale is a float or per-sample (B,);
    `interval` (lo, hi) limits guidance to those noise levels."""
    return ClassifierFree(denoiser, scale, cond, uncond, rescale, interval)
