"""Samplers: pure functions sample_<name>(denoiser, x, sigmas, *, ...) -> x (DESIGN rule 2).

`denoiser` is any callable D(x, sigma) -> x0_hat with a `.path` (a `Denoiser`, or a wrapper
from `guidance`), called with sigma as a float64 (B,) tensor; conditioning is bound by the
caller. `sigmas` is a decreasing 1-D grid of N + 1 noise levels in [0, 1], usually from
`schedule.sigmas(N)` and ending in 0; x is the sample at sigmas[0], and the result the sample
at sigmas[-1]. Editing strength is `sigmas[k:]`. There is no scheduler object and no hidden
step counter: multistep history is a local variable.

Every step is written in the path's own coordinates, so one formula serves VP and flow:
the deterministic step is x_next = alpha_n * x0_hat + sigma_n * eps_hat (DDIM; also exactly
the Euler step of the probability-flow ODE in its linear coordinates, see `Path.ode_scale`).

Noise: a stochastic step draws randn(x.shape) once, in the same order as diffusers' schedulers,
and none when sigma_next = 0. `generator` is a torch.Generator or a list of B of them (one per
sample, like diffusers' `randn_tensor`) so each sample's seed fixes it alone; deterministic
samplers accept and ignore it, so every sampler has the same call signature.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import torch
from torch import Tensor

from kinema.diffusion.schedules import Path
from kinema.errors import KinemaError

Generators = torch.Generator | Sequence[torch.Generator] | None
Callback = Callable[[dict[str, Any]], None] | None


class DenoiserFn(Protocol):
    path: Path

    def __call__(self, x: Tensor, sigma: Tensor) -> Tensor: ...


# ---------------------------------------------------------------- shared helpers


def randn(shape: Sequence[int], *, generator: Generators = None, dtype: torch.dtype | None = None,
          device: torch.device | str | None = None) -> Tensor:
    """Standard normal noise; with a list of B generators, sample b comes from generator[b]
    alone (diffusers `randn_tensor`). Drawn on the generator's device, then moved."""
    if isinstance(generator, Sequence):
        if len(generator) != shape[0]:
            raise ValueError(f"got {len(generator)} generators for a batch of {shape[0]}")
        parts = [torch.randn((1, *shape[1:]), generator=g, dtype=dtype, device=g.device) for g in generator]
        out = torch.cat(parts)
    else:
        gen_device = generator.device if generator is not None else device
        out = torch.randn(tuple(shape), generator=generator, dtype=dtype, device=gen_device)
    return out if device is None else out.to(device)


def generators(seeds: Sequence[int], device: torch.device | str = "cpu") -> list[torch.Generator]:
    """One seeded generator per sample, for per-sample reproducible noise."""
    return [torch.Generator(device).manual_seed(int(s)) for s in seeds]


class _Grid:
    """The (alpha, sigma) bookkeeping every sampler shares: the grid as Python floats (float64)
    and the denoiser call with a (B,) float64 sigma."""

    def __init__(self, denoiser: DenoiserFn, sigmas: Tensor) -> None:
        path = getattr(denoiser, "path", None)
        if not isinstance(path, Path):
            raise KinemaError("the denoiser has no .path; wrap the network in diffusion.denoiser.Denoiser")
        if sigmas.ndim != 1 or len(sigmas) < 2:
            raise KinemaError(f"sigmas must be a 1-D grid of at least 2 levels, got shape {tuple(sigmas.shape)}")
        s = sigmas.detach().double().cpu()
        if not (bool((s[:-1] > s[1:]).all()) and s[-1] >= 0 and s[0] <= 1):
            raise KinemaError("sigmas must decrease strictly within [0, 1]")
        self.path, self.denoiser = path, denoiser
        self.sigma: list[float] = s.tolist()
        self.alpha: list[float] = path.alpha(s).tolist()
        self.scale: list[float] = path.ode_scale(s).tolist()
        self.steps = len(s) - 1

    def denoise(self, x: Tensor, sigma: float) -> Tensor:
        return self.denoiser(x, torch.full((x.shape[0],), sigma, dtype=torch.float64, device=x.device))

    def ddim_step(self, x: Tensor, x0: Tensor, i: int, eta: float = 0.0, noise: Tensor | None = None) -> Tensor:
        """x at sigma[i] -> x at sigma[i + 1] given x0_hat (Song et al. 2021, eq. 12).

        The noise std c solves the posterior q(x_next | x, x0) at eta = 1 on any Gaussian path:
        c^2 = eta^2 sigma_n^2 (1 - (alpha sigma_n)^2 / (alpha_n sigma)^2), which on VP is
        DDIM's eta^2 (1 - abar_n) / (1 - abar) (1 - abar / abar_n); eta = 1 is DDPM's ancestral
        step with variance "fixed_small" (Ho et al. 2020, eq. 7)."""
        a, s, a_n, s_n = self.alpha[i], self.sigma[i], self.alpha[i + 1], self.sigma[i + 1]
        eps = (x - a * x0) / s
        c2 = eta * eta * s_n * s_n * (1 - (a * s_n) ** 2 / (a_n * s) ** 2) if eta > 0 and s_n > 0 else 0.0
        c = math.sqrt(min(max(c2, 0.0), s_n * s_n))
        x_next = a_n * x0 + math.sqrt(s_n * s_n - c * c) * eps
        return x_next + c * noise if c > 0 and noise is not None else x_next


def _steps(n: int, progress: bool, name: str) -> Iterator[int]:
    """range(n), with a one-line progress bar on stderr when asked."""
    if not progress:
        yield from range(n)
        return
    start = time.monotonic()
    for i in range(n):
        yield i
        done = (i + 1) / n
        bar = "#" * int(24 * done)
        sys.stderr.write(f"\r{name} {i + 1}/{n} [{bar:<24}] {time.monotonic() - start:.1f}s")
        sys.stderr.flush()
    sys.stderr.write("\n")


def _report(callback: Callback, i: int, x: Tensor, grid: _Grid, x0: Tensor) -> None:
    if callback is not None:
        callback({"step": i, "x": x, "sigma": grid.sigma[i], "sigma_next": grid.sigma[i + 1], "x0_hat": x0})


# ---------------------------------------------------------------- samplers


def sample_ddim(denoiser: DenoiserFn, x: Tensor, sigmas: Tensor, *, eta: float = 0.0, generator: Generators = None,
                callback: Callback = None, progress: bool = False) -> Tensor:
    """DDIM (Song et al. 2021); eta = 0 is deterministic, eta = 1 ancestral (DDPM).

    callback gets {"step", "x" (after the step, at sigma_next), "sigma", "sigma_next", "x0_hat"}."""
    grid = _Grid(denoiser, sigmas)
    for i in _steps(grid.steps, progress, "ddim" if eta == 0 else f"ddim(eta={eta})"):
        x0 = grid.denoise(x, grid.sigma[i])
        noise = None
        if eta > 0 and grid.sigma[i + 1] > 0:
            noise = randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        x = grid.ddim_step(x, x0, i, eta, noise)
        _report(callback, i, x, grid, x0)
    return x


def sample_ddpm(denoiser: DenoiserFn, x: Tensor, sigmas: Tensor, *, generator: Generators = None,
                callback: Callback = None, progress: bool = False) -> Tensor:
    """DDPM ancestral sampling (Ho et al. 2020, Alg. 2) on any grid: each step draws from the
    posterior q(x_next | x, x0_hat), i.e. DDIM with eta = 1. Matches diffusers' DDPMScheduler
    (variance_type "fixed_small", clip_sample False)."""
    return sample_ddim(denoiser, x, sigmas, eta=1.0, generator=generator, callback=callback, progress=progress)


def sample_euler(denoiser: DenoiserFn, x: Tensor, sigmas: Tensor, *, generator: Generators = None,
                 callback: Callback = None, progress: bool = False) -> Tensor:
    """Euler on the probability-flow ODE (Karras et al. 2022, Alg. 1 without the correction).
    In the path's linear coordinates it is exactly the DDIM eta = 0 step, so it matches
    FlowMatchEulerDiscreteScheduler on flow and EulerDiscreteScheduler / k-diffusion on VP."""
    return sample_ddim(denoiser, x, sigmas, eta=0.0, generator=generator, callback=callback, progress=progress)


def sample_heun(denoiser: DenoiserFn, x: Tensor, sigmas: Tensor, *, generator: Generators = None,
                callback: Callback = None, progress: bool = False) -> Tensor:
    """Heun's second-order method (Karras et al. 2022, Alg. 1, no churn) in the coordinates
    y = x / c, tau = sigma / c of `Path.ode_scale` (VE on VP, (x, t) on flow), where the ODE is
    dy/dtau = (y - x0_hat) / tau. Takes an Euler step into sigma = 0 and out of tau = inf
    (alpha = 0 on VP). 2N - 1 evaluations on a grid ending in 0, like diffusers'
    HeunDiscreteScheduler and FlowMatchHeunDiscreteScheduler."""
    grid = _Grid(denoiser, sigmas)
    for i in _steps(grid.steps, progress, "heun"):
        s, s_n, c, c_n = grid.sigma[i], grid.sigma[i + 1], grid.scale[i], grid.scale[i + 1]
        x0 = grid.denoise(x, s)
        x_euler = grid.ddim_step(x, x0, i)
        if s_n == 0 or c == 0:
            x_next = x_euler
        else:
            # dy/dtau = (y - x0) / tau = (x - c x0) / sigma; average the slopes at both ends.
            d = (x - c * x0) / s
            d_euler = (x_euler - c_n * grid.denoise(x_euler, s_n)) / s_n
            x_next = (c_n / c) * x + (s_n - s * c_n / c) * 0.5 * (d + d_euler)
        x = x_next
        _report(callback, i, x, grid, x0)
    return x


def sample_dpmpp_2m(denoiser: DenoiserFn, x: Tensor, sigmas: Tensor, *, generator: Generators = None,
                    callback: Callback = None, progress: bool = False) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, Alg. 2), multistep order 2 in lambda = log(alpha / sigma):
    x_n = (sigma_n / sigma) x - alpha_n expm1(-h) D with D = x0 + (x0 - x0_prev) / (2 r),
    r = h_prev / h. First order (= DDIM) at the first step, into sigma = 0, and at the last
    step of a grid shorter than 15 steps, as diffusers' DPMSolverMultistepScheduler does with
    lower_order_final and final_sigmas_type "zero"."""
    grid = _Grid(denoiser, sigmas)
    lam = [math.log(a / s) if a > 0 and s > 0 else (math.inf if s == 0 else -math.inf)
           for a, s in zip(grid.alpha, grid.sigma)]
    x0_prev: Tensor | None = None
    for i in _steps(grid.steps, progress, "dpmpp_2m"):
        x0 = grid.denoise(x, grid.sigma[i])
        last_low = i == grid.steps - 1 and grid.steps < 15
        if x0_prev is None or grid.sigma[i + 1] == 0 or last_low:
            x_next = grid.ddim_step(x, x0, i)  # DPM-Solver++ order 1 is DDIM
        else:
            h, h_prev = lam[i + 1] - lam[i], lam[i] - lam[i - 1]
            w = h / (2 * h_prev)  # 1 / (2 r); 0 when the previous level was pure noise
            d = x0 + w * (x0 - x0_prev)
            x_next = (grid.sigma[i + 1] / grid.sigma[i]) * x - grid.alpha[i + 1] * math.expm1(-h) * d
        x0_prev, x = x0, x_next
        _report(callback, i, x, grid, x0)
    return x


SAMPLERS: dict[str, Callable[..., Tensor]] = {
    "ddpm": sample_ddpm,
    "ddim": sample_ddim,
    "euler": sample_euler,
    "heun": sample_heun,
    "dpmpp_2m": sample_dpmpp_2m,
}


def get_sampler(name: str) -> Callable[..., Tensor]:
    """The sampler called `name`; every one takes (denoiser, x, sigmas, *, generator, callback, progress)."""
    try:
        return SAMPLERS[name]
    except KeyError:
        raise KinemaError(f"unknown sampler {name!r}; expected one of {', '.join(SAMPLERS)}") from None
