"""Timestep embeddings: the sinusoid of Vaswani et al. (2017, sec. 3.5) as used by ADM and DiT.

The layout is [cos, sin] with frequencies exp(-ln(max_period) * i / half), which is also
what Wan 2.1 and diffusers' `Timesteps(flip_sin_to_cos=True, downscale_freq_shift=0)`
compute, so Wan's time MLP weights apply unchanged.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps: (...,) -> (..., dim) float32."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[..., None] * freqs  # (..., half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))  # odd widths get a zero last channel, as ADM does
    return emb


class TimestepEmbedder(nn.Module):
    """t (...,) -> (..., dim): sinusoid -> Linear -> SiLU -> Linear.

    Parameter names (linear_1, linear_2) follow diffusers' `TimestepEmbedding`.
    """

    def __init__(self, dim: int, freq_dim: int = 256) -> None:
        super().__init__()
        self.freq_dim = freq_dim
        self.linear_1 = nn.Linear(freq_dim, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, t: Tensor) -> Tensor:
        emb = timestep_embedding(t, self.freq_dim).to(self.linear_1.weight.dtype)
        return self.linear_2(F.silu(self.linear_1(emb)))
