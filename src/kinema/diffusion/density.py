"""Training noise-level densities: which sigmas a network sees while it learns.

A density draws u in [0, 1] (0 clean, 1 pure noise) and the schedule maps it to sigma with
`sigma_from_unit`, so the same densities serve every schedule: integer timesteps on a
discrete VP schedule, the shifted t of a flow schedule.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from kinema.diffusion.schedules import Schedule
from kinema.errors import KinemaError

DENSITIES: tuple[str, ...] = ("uniform", "logit_normal")


def sample_sigmas(
    schedule: Schedule,
    batch: int,
    *,
    kind: Literal["uniform", "logit_normal"] = "uniform",
    frames: int | None = None,
    mean: float = 0.0,
    std: float = 1.0,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Training sigmas, float64: (batch,), or (batch, frames) with an independent level per
    frame (Diffusion Forcing, Chen et al. 2024) when `frames` is given.

    "uniform": u ~ U[0, 1) (DDPM's uniform timesteps on a discrete VP schedule).
    "logit_normal": u = sigmoid(mean + std * n), n ~ N(0, 1) (Esser et al. 2024, Sec. 3.1; SD3
    uses mean 0, std 1), then the schedule's shift.
    """
    shape = (batch,) if frames is None else (batch, frames)
    gen_device = generator.device if generator is not None else device
    if kind == "uniform":
        u = torch.rand(shape, generator=generator, dtype=torch.float64, device=gen_device)
    elif kind == "logit_normal":
        n = torch.randn(shape, generator=generator, dtype=torch.float64, device=gen_device)
        u = torch.sigmoid(mean + std * n)
    else:
        raise KinemaError(f"unknown density {kind!r}; expected one of {', '.join(DENSITIES)}")
    return schedule.sigma_from_unit(u if device is None else u.to(device))
