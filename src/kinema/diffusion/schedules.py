"""Noise paths and training schedules.

A noise level is the pair (alpha, sigma) in x = alpha * x0 + sigma * eps. kinema knows two
paths, and on each alpha is a function of sigma, so a noise level is one number, sigma:

  VP   (variance preserving; DDPM, Ho et al. 2020):  alpha^2 + sigma^2 = 1
  flow (rectified flow; Liu et al. 2022, SD3):       alpha + sigma = 1, sigma = t

sigma lies in [0, 1] on both; sigma = 1 is pure noise (zero terminal SNR, flow t = 1) and is
finite here, unlike k-diffusion's VE sigma = sigma / alpha.

A schedule says how a network was trained: which noise levels it saw (`sigma_from_unit`,
used by `density`) and how it is told the level (`timestep`). It makes sampling grids with
`sigmas(num_steps)`: a decreasing float64 tensor of num_steps + 1 sigmas ending in 0, which
is all a sampler needs (DESIGN rule 2; editing strength is `sigmas[k:]`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import ClassVar, Literal

import numpy as np
import torch
from torch import Tensor

from kinema.config import Config
from kinema.errors import KinemaError


# ---------------------------------------------------------------- paths


class Path:
    """How alpha depends on sigma. Use the two instances `VP` and `FLOW`."""

    name: str = ""

    def alpha(self, sigma: Tensor) -> Tensor:
        raise NotImplementedError

    def dalpha(self, sigma: Tensor) -> Tensor:
        """d alpha / d sigma, which defines the flow velocity dx/dsigma = dalpha * x0 + eps."""
        raise NotImplementedError

    def ode_scale(self, sigma: Tensor) -> Tensor:
        """c(sigma) such that with y = x / c and tau = sigma / c the probability-flow ODE is
        dy/dtau = (y - x0_hat) / tau, the form Karras et al. 2022 integrate (their eq. 4 with
        s(t) = 1, sigma(t) = t): VE coordinates (c = alpha) on VP, and (x, t) itself (c = 1)
        on flow, where alpha + sigma = 1 makes x - x0 = t * (eps - x0). Heun steps in these."""
        raise NotImplementedError

    def add_noise(self, x0: Tensor, noise: Tensor, sigma: Tensor | float) -> Tensor:
        """x = alpha * x0 + sigma * noise; sigma is a number, (B,) or per-frame (B, T)."""
        s = expand_sigma(as_sigma(sigma, x0.device), x0).double()  # alpha in float64: near sigma = 1 it is tiny
        return self.alpha(s).to(x0.dtype) * x0 + s.to(x0.dtype) * noise

    def __repr__(self) -> str:
        return self.name.upper()


class _VPPath(Path):
    name = "vp"

    def alpha(self, sigma: Tensor) -> Tensor:
        return (1 - sigma * sigma).clamp(min=0).sqrt()

    def dalpha(self, sigma: Tensor) -> Tensor:
        return -sigma / self.alpha(sigma)  # -inf at alpha = 0

    def ode_scale(self, sigma: Tensor) -> Tensor:
        return self.alpha(sigma)


class _FlowPath(Path):
    name = "flow"

    def alpha(self, sigma: Tensor) -> Tensor:
        return 1 - sigma

    def dalpha(self, sigma: Tensor) -> Tensor:
        return torch.full_like(sigma, -1.0)

    def ode_scale(self, sigma: Tensor) -> Tensor:
        return torch.ones_like(sigma)


VP: Path = _VPPath()
FLOW: Path = _FlowPath()


def as_sigma(sigma: Tensor | float, device: torch.device | str | None = None) -> Tensor:
    """A noise level as a tensor on `device`; Python numbers become float64 (t near sigma = 1
    needs the precision)."""
    if isinstance(sigma, Tensor):
        return sigma.to(device) if device is not None else sigma
    return torch.tensor(float(sigma), dtype=torch.float64, device=device)


def expand_sigma(sigma: Tensor, x: Tensor) -> Tensor:
    """View a noise level so that it broadcasts against x.

    0-d -> unchanged; (B,) -> (B, 1, ..., 1); per-frame (B, T) against video x (B, C, T, H, W)
    -> (B, 1, T, 1, 1), so frame k of every channel gets sigma[:, k].
    """
    if sigma.ndim == 0:
        return sigma
    if sigma.ndim == 1 and sigma.shape[0] == x.shape[0]:
        return sigma.view(-1, *([1] * (x.ndim - 1)))  # (B,) -> (B, 1, ..., 1)
    if sigma.ndim == 2 and x.ndim == 5 and tuple(sigma.shape) == (x.shape[0], x.shape[2]):
        return sigma[:, None, :, None, None]  # (B, T) -> (B, 1, T, 1, 1)
    raise ValueError(
        f"sigma of shape {tuple(sigma.shape)} does not fit x of shape {tuple(x.shape)}; "
        "expected (B,) or, for video (B, C, T, H, W), per-frame (B, T)"
    )


# ---------------------------------------------------------------- schedules


@dataclasses.dataclass(frozen=True)
class VPSchedule(Config):
    """Discrete-time DDPM schedule with num_train_timesteps levels; the network is told the
    (fractional) training timestep index in [0, num_train_timesteps - 1].

    Betas as in diffusers/LDM, in float32 so that pretrained models' timesteps mean the same
    levels: "linear" (Ho et al. 2020), "scaled_linear" (LDM) and "squaredcos_cap_v2" (cosine,
    Nichol & Dhariwal 2021, betas capped at 0.999). `rescale_zero_terminal_snr` applies Lin
    et al. 2024, Algorithm 1, so that the last level is pure noise (sigma = 1, alpha = 0).
    """

    kind: ClassVar[str] = "vp_schedule"

    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "linear"
    num_train_timesteps: int = 1000
    beta_start: float = 0.0001
    beta_end: float = 0.02
    rescale_zero_terminal_snr: bool = False

    path: ClassVar[Path] = VP

    def __post_init__(self) -> None:
        if self.beta_schedule not in ("linear", "scaled_linear", "squaredcos_cap_v2"):
            raise KinemaError(
                f"unknown beta_schedule {self.beta_schedule!r}; "
                "expected 'linear', 'scaled_linear' or 'squaredcos_cap_v2'"
            )
        if self.num_train_timesteps < 2:
            raise KinemaError(f"num_train_timesteps must be at least 2, got {self.num_train_timesteps}")

    @functools.cached_property
    def train_sigmas(self) -> Tensor:
        """(num_train_timesteps,) float64, increasing: sigma of each training timestep."""
        T = self.num_train_timesteps
        if self.beta_schedule == "linear":
            betas = torch.linspace(self.beta_start, self.beta_end, T, dtype=torch.float32)
        elif self.beta_schedule == "scaled_linear":
            betas = torch.linspace(self.beta_start**0.5, self.beta_end**0.5, T, dtype=torch.float32) ** 2
        else:  # alpha_bar(t) = cos^2((t + 0.008) / 1.008 * pi / 2), Nichol & Dhariwal 2021, eq. 17
            f = [math.cos((i / T + 0.008) / 1.008 * math.pi / 2) ** 2 for i in range(T + 1)]
            betas = torch.tensor([min(1 - f[i + 1] / f[i], 0.999) for i in range(T)], dtype=torch.float32)
        alphas_cumprod = torch.cumprod(1 - betas.double(), dim=0)
        if self.rescale_zero_terminal_snr:
            # Lin et al. 2024, Algorithm 1: shift sqrt(alpha_bar) so the last is 0, rescale so
            # the first is unchanged.
            a = alphas_cumprod.sqrt()
            a = (a - a[-1]) * a[0] / (a[0] - a[-1])
            alphas_cumprod = a * a
        return (1 - alphas_cumprod).clamp(min=0).sqrt()

    @functools.cached_property
    def _log_sigmas(self) -> Tensor:
        return self.train_sigmas.log()

    def timestep(self, sigma: Tensor) -> Tensor:
        """Fractional training timestep of each sigma (same shape), linear in log sigma
        between table entries (k-diffusion's `sigma_to_t`, with the VP sigma so that
        sigma = 1 stays finite); exact integers on the table, clamped to [0, T - 1]."""
        log_sigmas = self._log_sigmas.to(sigma.device)
        log_s = sigma.double().clamp(min=1e-30).log()
        hi = torch.searchsorted(log_sigmas, log_s).clamp(1, len(log_sigmas) - 1)
        lo_val, hi_val = log_sigmas[hi - 1], log_sigmas[hi]
        w = ((log_s - lo_val) / (hi_val - lo_val)).clamp(0, 1)
        return (hi - 1).double() + w

    def sigma_at(self, timestep: Tensor) -> Tensor:
        """Inverse of `timestep`: sigma at fractional training timesteps (float64)."""
        T = self.num_train_timesteps
        sig, log_sig = self.train_sigmas.to(timestep.device), self._log_sigmas.to(timestep.device)
        t = timestep.double().clamp(0, T - 1)
        lo = t.floor().long()
        hi = (lo + 1).clamp(max=T - 1)
        return sig[lo] * torch.exp((t - lo) * (log_sig[hi] - log_sig[lo]))  # exact at integers

    def sigma_from_unit(self, u: Tensor) -> Tensor:
        """Training level for u in [0, 1): the integer timestep floor(u * T), as in DDPM training."""
        T = self.num_train_timesteps
        idx = (u.double() * T).floor().long().clamp(0, T - 1)
        return self.train_sigmas.to(u.device)[idx]

    def sigmas(
        self,
        num_steps: int,
        spacing: Literal["leading", "trailing", "linspace"] = "leading",
        steps_offset: int = 0,
    ) -> Tensor:
        """(num_steps + 1,) float64 grid: the training levels of diffusers' DDPM/DDIM
        `timestep_spacing`, then 0 (DDIM `set_alpha_to_one=True`). "trailing" starts at the
        last training timestep (Lin et al. 2024, Sec. 3.3); "leading" is the diffusers default.
        """
        T = self.num_train_timesteps
        if not 1 <= num_steps <= T:
            raise KinemaError(f"num_steps must be in [1, {T}], got {num_steps}")
        if spacing == "leading":
            ts = np.arange(num_steps)[::-1] * (T // num_steps) + steps_offset
        elif spacing == "trailing":
            ts = np.round(np.arange(T, 0, -T / num_steps)).astype(np.int64) - 1
        elif spacing == "linspace":
            ts = np.linspace(0, T - 1, num_steps).round()[::-1].astype(np.int64)
        else:
            raise KinemaError(f"unknown spacing {spacing!r}; expected 'leading', 'trailing' or 'linspace'")
        if ts.max() > T - 1 or ts.min() < 0:
            raise KinemaError(f"steps_offset {steps_offset} moves timesteps outside [0, {T - 1}]")
        ts = torch.from_numpy(np.ascontiguousarray(ts))
        return torch.cat([self.train_sigmas[ts], torch.zeros(1, dtype=torch.float64)])


@dataclasses.dataclass(frozen=True)
class CosineSchedule(Config):
    """Continuous-time cosine VP schedule, alpha(t) = f(t) / f(0) with
    f(t) = cos((t + s) / (1 + s) * pi / 2) (Nichol & Dhariwal 2021, eq. 17, uncapped), t in
    [0, 1]. t = 1 is pure noise. The network is told timestep_scale * t."""

    kind: ClassVar[str] = "cosine_schedule"

    s: float = 0.008
    timestep_scale: float = 1000.0

    path: ClassVar[Path] = VP

    def _sigma_of_t(self, t: Tensor) -> Tensor:
        f = lambda t: torch.cos((t + self.s) / (1 + self.s) * (math.pi / 2))  # noqa: E731
        alpha = (f(t.double()) / f(torch.zeros((), dtype=torch.float64))).clamp(0, 1)
        return (1 - alpha * alpha).clamp(min=0).sqrt()

    def timestep(self, sigma: Tensor) -> Tensor:
        c0 = math.cos(self.s / (1 + self.s) * math.pi / 2)
        alpha = VP.alpha(sigma.double())
        t = torch.acos((alpha * c0).clamp(-1, 1)) * (2 / math.pi) * (1 + self.s) - self.s
        return t.clamp(0, 1) * self.timestep_scale

    def sigma_at(self, timestep: Tensor) -> Tensor:
        return self._sigma_of_t(timestep.double() / self.timestep_scale)

    def sigma_from_unit(self, u: Tensor) -> Tensor:
        return self._sigma_of_t(u)

    def sigmas(self, num_steps: int, t_max: float = 1.0) -> Tensor:
        """sigma at t = linspace(t_max, 0, num_steps + 1). t_max < 1 avoids alpha = 0, which
        eps-prediction cannot denoise."""
        if num_steps < 1 or not 0 < t_max <= 1:
            raise KinemaError(f"need num_steps >= 1 and 0 < t_max <= 1, got {num_steps}, {t_max}")
        return self._sigma_of_t(torch.linspace(t_max, 0, num_steps + 1, dtype=torch.float64))


@dataclasses.dataclass(frozen=True)
class FlowSchedule(Config):
    """Rectified flow, alpha = 1 - t, sigma = t, with the SD3 timestep shift
    sigma = shift * t / (1 + (shift - 1) * t) (Esser et al. 2024, resolution-dependent shifting) applied to both
    the training density and the sampling grid. The network is told num_train_timesteps *
    sigma, as diffusers' FlowMatchEulerDiscreteScheduler does."""

    kind: ClassVar[str] = "flow_schedule"

    shift: float = 1.0
    num_train_timesteps: int = 1000

    path: ClassVar[Path] = FLOW

    def __post_init__(self) -> None:
        if not self.shift > 0:
            raise KinemaError(f"shift must be positive, got {self.shift}")

    def shifted(self, t: Tensor) -> Tensor:
        return self.shift * t / (1 + (self.shift - 1) * t)

    def timestep(self, sigma: Tensor) -> Tensor:
        return sigma.double() * self.num_train_timesteps

    def sigma_at(self, timestep: Tensor) -> Tensor:
        return timestep.double() / self.num_train_timesteps

    def sigma_from_unit(self, u: Tensor) -> Tensor:
        return self.shifted(u.double())

    def sigmas(self, num_steps: int, spacing: Literal["linspace", "trailing"] = "linspace") -> Tensor:
        """(num_steps + 1,) float64 grid: shifted t, then 0.

        "linspace": t = linspace(1, 1 / num_train_timesteps, num_steps), the grid of
        FlowMatchEulerDiscreteScheduler with dynamic shifting at mu = log(shift) (with a static
        shift != 1 diffusers shifts its last level twice; we shift once). "trailing":
        t = linspace(1, 0, num_steps + 1), evenly spaced down to 0 (the FLUX pipeline's grid).
        """
        if num_steps < 1:
            raise KinemaError(f"num_steps must be at least 1, got {num_steps}")
        if spacing == "linspace":
            t = torch.from_numpy(np.linspace(1.0, 1.0 / self.num_train_timesteps, num_steps))
            t = torch.cat([t, torch.zeros(1, dtype=torch.float64)])
        elif spacing == "trailing":
            t = torch.from_numpy(np.linspace(1.0, 0.0, num_steps + 1))
        else:
            raise KinemaError(f"unknown spacing {spacing!r}; expected 'linspace' or 'trailing'")
        return self.shifted(t)


Schedule = VPSchedule | CosineSchedule | FlowSchedule


def resolution_shift(
    num_tokens: int,
    *,
    base_tokens: int = 256,
    max_tokens: int = 4096,
    base_shift: float = 0.5,
    max_shift: float = 1.15,
) -> float:
    """Resolution-dependent flow shift exp(mu), mu linear in the token count through
    (base_tokens, base_shift) and (max_tokens, max_shift) (FLUX; diffusers `calculate_shift`).
    Bigger inputs keep more signal at a given t, so they need more time at high noise."""
    mu = base_shift + (max_shift - base_shift) * (num_tokens - base_tokens) / (max_tokens - base_tokens)
    return math.exp(mu)
