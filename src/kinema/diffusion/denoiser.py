"""The one denoiser contract, D(x, sigma, **cond) -> x0_hat (DESIGN rule 1).

`Denoiser` wraps a raw network `net(x, t, **cond)` that predicts eps, v, x0 or the flow
velocity, and owns the conversion to x0 and the training loss, as k-diffusion's
`layers.Denoiser` and EDM's `EDMPrecond` do. Samplers and guidance only ever see x0_hat, so
eps, v, x0 and flow models are interchangeable.

Parameterizations on a path x = alpha * x0 + sigma * eps (alpha' = d alpha / d sigma):
  eps   the noise
  x0    the clean sample
  v     alpha * eps - sigma * x0 (Salimans & Ho 2022; on VP it is dx/dphi with
        alpha = cos phi; kept verbatim on every path, so x0 = (alpha x - sigma v) / (alpha^2 + sigma^2))
  flow  dx/dsigma = alpha' * x0 + eps, i.e. eps - x0 on the flow path (Liu et al. 2022)
"""

from __future__ import annotations

from typing import Any, Callable, Literal

import torch
from torch import Tensor, nn

from kinema.diffusion.schedules import Path, Schedule, as_sigma, expand_sigma
from kinema.errors import KinemaError

Prediction = Literal["eps", "v", "x0", "flow"]
PREDICTIONS: tuple[str, ...] = ("eps", "v", "x0", "flow")


def _levels(path: Path, sigma: Tensor, like: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(alpha, sigma, alpha') broadcast against `like`, computed in float64 (alpha is tiny
    near sigma = 1) and cast to at least float32."""
    s = expand_sigma(as_sigma(sigma, like.device), like).double()
    dtype = torch.promote_types(like.dtype, torch.float32)
    return path.alpha(s).to(dtype), s.to(dtype), path.dalpha(s).to(dtype)


def _check_kind(kind: str) -> None:
    if kind not in PREDICTIONS:
        raise KinemaError(f"unknown prediction {kind!r}; expected one of {', '.join(PREDICTIONS)}")


def prediction_target(path: Path, kind: Prediction, x0: Tensor, noise: Tensor, sigma: Tensor | float) -> Tensor:
    """What a `kind` network should output for x = alpha * x0 + sigma * noise."""
    _check_kind(kind)
    a, s, da = _levels(path, sigma, x0)
    if kind == "eps":
        return noise
    if kind == "x0":
        return x0
    if kind == "v":
        return a * noise - s * x0
    return da * x0 + noise


def prediction_to_x0(path: Path, kind: Prediction, pred: Tensor, x: Tensor, sigma: Tensor | float) -> Tensor:
    """x0 implied by a `kind` prediction at (x, sigma); eps is singular where alpha = 0."""
    _check_kind(kind)
    a, s, da = _levels(path, sigma, x)
    if kind == "eps":
        return (x - s * pred) / a
    if kind == "x0":
        return pred
    if kind == "v":  # alpha x - sigma v = (alpha^2 + sigma^2) x0
        return (a * x - s * pred) / (a * a + s * s)
    return (x - s * pred) / (a - s * da)  # x - sigma u = (alpha - sigma alpha') x0


def x0_to_prediction(path: Path, kind: Prediction, x0: Tensor, x: Tensor, sigma: Tensor | float) -> Tensor:
    """The `kind` prediction that implies x0 at (x, sigma) (needs sigma > 0 unless kind is x0)."""
    if kind == "x0":
        return x0
    a, s, _ = _levels(path, sigma, x)
    return prediction_target(path, kind, x0, (x - a * x0) / s, sigma)


def min_snr_weight(path: Path, kind: Prediction, sigma: Tensor, gamma: float) -> Tensor:
    """Min-SNR-gamma loss weight (Hang et al. 2023) for a `kind` MSE, same shape as sigma.

    The weight is defined on the x0 error, min(SNR, gamma) with SNR = alpha^2 / sigma^2; at a
    fixed x the squared error of `kind` is J * the x0 error with J = SNR (eps), 1 (x0),
    (alpha^2 + sigma^2)^2 / sigma^2 (v) or (alpha - sigma alpha')^2 / sigma^2 (flow), so the
    weight is min(SNR, gamma) / J = min(alpha^2, gamma sigma^2) / K with K = sigma^2 J. On VP
    this is Hang et al.'s min(SNR, gamma) / SNR for eps and / (SNR + 1) for v.
    """
    _check_kind(kind)
    s = sigma.double()
    a, da = path.alpha(s), path.dalpha(s)
    k = {"eps": a * a, "x0": s * s, "v": (a * a + s * s) ** 2, "flow": (a - s * da) ** 2}[kind]
    return torch.minimum(a * a, gamma * s * s) / k


def _to_net_dtype(net: Any, x: Tensor, cond: dict[str, Any]) -> tuple[Tensor, dict[str, Any]]:
    """x and the floating-point tensors of cond in the network's parameter dtype (a network
    cast to bf16 for inference gets bf16 inputs; the sampler's state stays float32)."""
    param = next(net.parameters(), None) if isinstance(net, nn.Module) else None  # any callable works
    if param is None or not param.is_floating_point() or param.dtype == x.dtype:
        return x, cond
    dtype = param.dtype
    cast = {k: v.to(dtype) if isinstance(v, Tensor) and v.is_floating_point() else v for k, v in cond.items()}
    return x.to(dtype), cast


class Denoiser(nn.Module):
    """D(x, sigma, **cond) -> x0_hat around a raw network net(x, t, **cond) -> prediction.

    x: (B, C, T, H, W) video (or any (B, ...)); sigma: a float, (B,), or per-frame (B, T) for
    video, best float64 (the samplers pass float64 so that t is exact near sigma = 1). The
    network gets t = schedule.timestep(sigma) as float32, same shape as sigma.
    """

    def __init__(self, net: nn.Module, schedule: Schedule, prediction: Prediction = "eps") -> None:
        super().__init__()
        _check_kind(prediction)
        self.net = net
        self.schedule = schedule
        self.prediction = prediction

    @property
    def path(self) -> Path:
        return self.schedule.path

    def _sigma(self, sigma: Tensor | float, x: Tensor) -> Tensor:
        sigma = as_sigma(sigma, x.device)
        if sigma.ndim == 0:
            sigma = sigma.expand(x.shape[0])
        expand_sigma(sigma, x)  # shape check
        if self.prediction == "eps" and bool((self.path.alpha(sigma.double()) == 0).any()):
            raise KinemaError(
                "eps prediction cannot denoise at zero SNR (alpha = 0, e.g. sigma = 1 on a "
                "zero-terminal-SNR or flow grid); use prediction 'v', 'x0' or 'flow', or a grid below sigma = 1"
            )
        return sigma

    def forward(self, x: Tensor, sigma: Tensor | float, **cond: Any) -> Tensor:
        sigma = self._sigma(sigma, x)
        net_x, net_cond = _to_net_dtype(self.net, x, cond)
        pred = self.net(net_x, self.schedule.timestep(sigma).float(), **net_cond)
        # x0 from the float32 x: a bf16 network's output is promoted, the sample is never rounded.
        return prediction_to_x0(self.path, self.prediction, pred, x, sigma).to(x.dtype)

    def loss(
        self,
        x0: Tensor,
        noise: Tensor,
        sigma: Tensor,
        *,
        loss_weight: Tensor | None = None,
        min_snr_gamma: float | None = None,
        teacher: Callable[[Tensor, Tensor], Tensor] | None = None,
        **cond: Any,
    ) -> Tensor:
        """(B,) per-sample training loss: MSE between the network output and its target.

        x0, noise: (B, ...) clean data and its noise; sigma: (B,) or per-frame (B, T) (e.g.
        from `density.sample_sigmas`). loss_weight: optional per-element weight broadcastable
        to x0 (e.g. 0 on known frames); the loss is then the weighted mean. min_snr_gamma:
        weight each level by `min_snr_weight` (gamma = 5 in Hang et al. 2023). teacher:
        a denoiser T(x, sigma) -> x0_hat (e.g. a guided one) whose output replaces x0 in the
        target wherever sigma > 0 (distillation; at sigma = 0 the target stays the data's).
        """
        sigma = self._sigma(sigma, x0)
        x = self.path.add_noise(x0, noise, sigma)
        target = prediction_target(self.path, self.prediction, x0, noise, sigma)
        if teacher is not None:
            with torch.no_grad():
                taught = x0_to_prediction(self.path, self.prediction, teacher(x, sigma).to(x0.dtype), x, sigma)
            target = torch.where(expand_sigma(sigma, x) > 0, taught, target)
        pred = self.net(x, self.schedule.timestep(sigma).float(), **cond)
        dtype = torch.promote_types(x0.dtype, torch.float32)
        err = (pred.to(dtype) - target.to(dtype)) ** 2
        if min_snr_gamma is not None:
            w = min_snr_weight(self.path, self.prediction, sigma, min_snr_gamma)
            err = err * expand_sigma(w, err).to(dtype)
        if loss_weight is None:
            return err.flatten(1).mean(1)
        m = loss_weight.to(dtype).expand_as(err)
        return (m * err).flatten(1).sum(1) / m.flatten(1).sum(1).clamp(min=1e-12)
