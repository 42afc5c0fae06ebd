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

from kinema.eval.temporal import _cv2, optical_flow


def _warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """image (H, W, C) float32 sampled at x + flow(x) (bilinear, borders replicated)."""
    h, w = flow.shape[:2]
    grid = np.stack(np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)), axis=-1)
    coords = grid + flow
    cv2 = _cv2()
    return cv2.remap(image, coords[..., 0], coords[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def flow_midpoint(a: np.ndarray, b: np.ndarray, method: str = "dis") -> np.ndarray:
    """The frame halfway between `a` and `b` (H, W, 3), float32 in [0, 255] or uint8: flows
    a->b and b->a (on 8-bit copies), each frame warped halfway along both, and the four
    estimates averaged (each flow is valid on its own frame's grid, so averaging both
    directions halves the error of using one flow on the other frame's grid). Returns
    float32 (H, W, 3), unrounded."""
    a32, b32 = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
    a8, b8 = (np.clip(np.rint(v), 0, 255).astype(np.uint8) for v in (a32, b32))
    f_ab, f_ba = optical_flow(a8, b8, method), optical_flow(b8, a8, method)
    estimates = (_warp(a32, -0.5 * f_ab), _warp(b32, 0.5 * f_ab), _warp(a32, 0.5 * f_ba), _warp(b32, -0.5 * f_ba))
    return np.mean(estimates, axis=0)


def upsample_time_flow(video: Tensor, method: str = "dis") -> Tensor:
    """(B, 3, T, H, W) in [-1, 1] -> (B, 3, 2T - 1, H, W): the given frames at the even
    positions, and between each two their flow midpoint. Frames go through 8 bits only for
    the flow; the warps read the float frames."""
    b, c, t, h, w = video.shape
    pixels = ((video.detach().float().cpu() + 1) * 127.5).permute(0, 2, 3, 4, 1).numpy()  # (B, T, H, W, 3)
    mids = np.stack([
        np.stack([flow_midpoint(pixels[i, k], pixels[i, k + 1], method) for k in range(t - 1)]) for i in range(b)
    ])  # (B, T - 1, H, W, 3)
    mid = torch.from_numpy(mids).permute(0, 4, 1, 2, 3).to(video) / 127.5 - 1  # (B, 3, T - 1, H, W)
    out = video.new_empty(b, c, 2 * t - 1, h, w)
    out[:, :, ::2] = video
    out[:, :, 1::2] = mid
    return out
