"""Frame interpolation by optical flow: the frame halfway between two frames.

The base of the flow-based temporal upscaling stage (kinema.tasks.upscale, `temporal_base =
"flow"`): the stage then only learns what the flow gets wrong (occlusions, flow errors),
which is far less than the whole motion a blended base leaves to it. It is also the
baseline a user would pick instead (OpenCV DIS, Kroeger et al. 2016), measured beside the
stage in bench/upscale_quality.py. Needs OpenCV (the `eval` extra).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from kinema.eval.temporal import optical_flow, pixel_grid, remap


def flow_midpoint(a: np.ndarray, b: np.ndarray, method: str = "dis") -> np.ndarray:
    """The frame halfway between `a` and `b` (H, W, 3), float32 in [0, 255] or uint8: flows
    a->b and b->a (on 8-bit copies), each frame warped halfway along both, and the four
    estimates averaged (each flow is valid on its own frame's grid, so averaging both
    directions halves the error of using one flow on the other frame's grid). Returns
    float32 (H, W, 3), unrounded."""
    a32, b32 = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
    a8, b8 = (np.clip(np.rint(v), 0, 255).astype(np.uint8) for v in (a32, b32))
    f_ab, f_ba = optical_flow(a8, b8, method), optical_flow(b8, a8, method)
    grid = pixel_grid(*f_ab.shape[:2])
    estimates = [remap(a32, -0.5 * f_ab, grid), remap(b32, 0.5 * f_ab, grid),
                 remap(a32, 0.5 * f_ba, grid), remap(b32, -0.5 * f_ba, grid)]
    return np.mean(estimates, axis=0)


def flow_midpoints(video: Tensor, method: str = "dis") -> Tensor:
    """(B, 3, T, H, W) in [-1, 1] -> (B, 3, T - 1, H, W): the flow midpoint of every two
    consecutive frames. Frames go through 8 bits only for the flow; the warps read the
    float frames."""
    b, t = video.shape[0], video.shape[2]
    pixels = ((video.detach().float().cpu() + 1) * 127.5).permute(0, 2, 3, 4, 1).numpy()  # (B, T, H, W, 3)
    mids = np.stack([
        np.stack([flow_midpoint(pixels[i, k], pixels[i, k + 1], method) for k in range(t - 1)]) for i in range(b)
    ])  # (B, T - 1, H, W, 3)
    return torch.from_numpy(mids).permute(0, 4, 1, 2, 3).to(video) / 127.5 - 1
