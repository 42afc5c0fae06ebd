"""What a network costs: parameter counts, and FLOPs counted by PyTorch itself.

FLOPs come from `torch.utils.flop_counter.FlopCounterMode`, which sees every aten op a
call dispatches and applies PyTorch's own formula for it: matrix products and
convolutions count 2 FLOPs per multiply-add; elementwise ops, norms and softmax count 0.
No hand formula here can drift from the code it describes.

Counting needs no real computation: build the network and its inputs on the meta device
(`build_on_meta`) and the ops run on shapes only, so even a large model at a large clip
size is counted in about a second.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

from kinema.config import Config


def param_counts(module: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts; buffers are not parameters."""
    params = list(module.parameters())
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


def build_on_meta(network_cls: Callable[[Config], nn.Module], config: Config) -> nn.Module:
    """The network with shape-only (meta) weights, in eval mode: free to build at any size."""
    with torch.device("meta"):
        return network_cls(config).eval()


def _uses_cuda(module: Any, inputs: tuple, kw: dict) -> bool:
    tensors = [*inputs, *kw.values()]
    if isinstance(module, nn.Module):
        tensors += list(module.parameters())[:1]
    return any(isinstance(t, torch.Tensor) and t.is_cuda for t in tensors)


def _mkldnn_convolution_flops(x_shape, w_shape, _bias, _padding, _stride, _dilation, _groups, *,
                              out_shape, **_) -> int:
    """aten.mkldnn_convolution(x, w, b, padding, stride, dilation, groups): an ordinary
    convolution (w holds C_in / groups input channels, so groups need no extra term)."""
    return conv_flop_count(x_shape, w_shape, out_shape, transposed=False)


def forward_flops(module: Callable[..., Any], *inputs: Any, **kw: Any) -> int:
    """FLOPs of one call `module(*inputs, **kw)` without gradients (a module or any callable,
    e.g. `vae.encode`), as counted by FlopCounterMode.

    Two ops have no formula in FlopCounterMode and would silently count 0 on a CPU: the
    fused CPU attention kernel (so off CUDA, attention runs on SDPA's math backend, whose
    matrix products are counted) and aten.mkldnn_convolution, which kinema.models.vae3d
    calls directly on CPUs (counted here with PyTorch's own convolution formula).
    """
    backend = contextlib.nullcontext() if _uses_cuda(module, inputs, kw) else sdpa_kernel(SDPBackend.MATH)
    extra = {torch.ops.aten.mkldnn_convolution: _mkldnn_convolution_flops}
    with torch.no_grad(), backend, FlopCounterMode(display=False, custom_mapping=extra) as counter:
        module(*inputs, **kw)
    return int(counter.get_total_flops())
