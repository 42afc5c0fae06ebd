"""Exponential moving average of a model's weights, kept in float32.

Sampling from an EMA of the weights gives markedly better diffusion samples than the raw
weights (Song & Ermon 2020, "Improved Techniques for Training Score-Based Generative
Models", Sec. 3.5; DiT and EDM train with it). The average lives in float32 whatever the
model's dtype, so a decay of 0.9999 is not lost to bfloat16 rounding.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class EMA:
    """shadow <- d * shadow + (1 - d) * param after every optimizer step.

    The decay warms up as d_k = min(decay, (1 + k) / (10 + k)) for update k (0-based), so
    the average is not dominated by the random initialization in short runs (the schedule
    of TensorFlow's ExponentialMovingAverage with num_updates). Floating-point buffers are
    copied, not averaged; `state_dict()` has exactly the model's keys, so it loads into the
    same network class (the `ema.safetensors` of a component directory).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.params = {n: p.detach().float().clone() for n, p in model.named_parameters()}
        self.buffers = {n: b.detach().clone() for n, b in model.named_buffers()}

    def decay_at(self, update: int) -> float:
        return min(self.decay, (1.0 + update) / (10.0 + update))

    @torch.no_grad()
    def update(self, model: nn.Module, update: int) -> None:
        """Fold the model's current weights in; `update` counts previous updates (the step)."""
        d = self.decay_at(update)
        for name, p in model.named_parameters():
            self.params[name].lerp_(p.detach().float(), 1.0 - d)  # shadow += (1 - d) * (p - shadow)
        for name, b in model.named_buffers():
            self.buffers[name].copy_(b)

    def state_dict(self) -> dict[str, Tensor]:
        return {**self.params, **self.buffers}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Replace the average; names, shapes must match exactly (checked before any copy)."""
        own = self.state_dict()
        if set(state) != set(own):
            missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
            raise KeyError(f"EMA state does not match the model (missing {missing[:1]}, unexpected {extra[:1]})")
        for name, t in state.items():
            if t.shape != own[name].shape:
                raise ValueError(f"EMA tensor {name} has shape {tuple(t.shape)}, expected {tuple(own[name].shape)}")
        for name, t in state.items():
            own[name].copy_(t)

    def copy_to(self, model: nn.Module) -> nn.Module:
        """Load the averaged weights into `model` (cast to its dtypes); returns it."""
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(self.params[name])
            for name, b in model.named_buffers():
                b.copy_(self.buffers[name])
        return model
