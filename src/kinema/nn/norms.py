"""Normalization layers computed in float32, and the adaLN `modulate` operation.

Wan 2.1 (and diffusers' port) run LayerNorm and RMSNorm in float32 even when the network
runs in bf16/fp16: the variance of wide activations overflows or loses precision in half
precision. The layers here do the same and return the input's dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class FP32LayerNorm(nn.LayerNorm):
    """LayerNorm over the last axis, computed in float32, output in the input's dtype."""

    def forward(self, x: Tensor) -> Tensor:
        weight = self.weight.float() if self.weight is not None else None
        bias = self.bias.float() if self.bias is not None else None
        return F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps).type_as(x)


class RMSNorm(nn.Module):
    """Root-mean-square norm (Zhang & Sennrich 2019) over the last axis, in float32.

    y = x / sqrt(mean(x^2) + eps) * weight. State key `weight`, as torch.nn.RMSNorm and Wan.
    """

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        xf = x.float()
        normed = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.type_as(x) * self.weight.to(x.dtype)


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """Adaptive LayerNorm modulation (DiT, Peebles & Xie 2023): x * (1 + scale) + shift.

    Shapes broadcast; the caller arranges `shift`/`scale` so they line up with `x`.
    """
    return x * (1 + scale) + shift
