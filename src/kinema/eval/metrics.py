"""Full-reference image quality of a clip against a reference: PSNR and SSIM.

A clip is either of kinema's two representations (kinema.media), and both arguments must
use the same one:
  frames: uint8 array (T, H, W, 3), values 0..255, data range 255 by default;
  video:  float tensor (C, T, H, W) in [-1, 1], data range 2 by default.

PSNR is taken over the whole clip's mean squared error (a clip of identical frames is
exactly its frames' PSNR); SSIM is the mean over frames of the per-frame SSIM, itself the
mean over channels. `per_frame=True` also returns the per-frame values (T,). Both agree
with scikit-image's `peak_signal_noise_ratio` and `structural_similarity(...,
gaussian_weights=True, sigma=1.5, use_sample_covariance=False, channel_axis=-1)` to
float64 precision; tests/test_metrics.py checks it.
"""

from __future__ import annotations

from typing import Literal, overload

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from kinema.errors import KinemaError

Clip = np.ndarray | torch.Tensor

# Wang et al. 2004, "Image Quality Assessment: From Error Visibility to Structural
# Similarity", sec. III-B and III-C: an 11x11 circular-symmetric Gaussian window with
# sigma 1.5, and the stabilizing constants C1 = (K1 L)^2, C2 = (K2 L)^2.
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03
_FRAMES_PER_PASS = 16  # frames filtered at once: vectorized, but memory stays bounded


class MetricError(KinemaError):
    """Clips that cannot be compared: different shapes or representations."""


def _as_frames(a: Clip, b: Clip) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Both clips as float64 (T, C, H, W) of non-negative intensities, and their default data range."""
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype == np.uint8:
        if a.ndim != 4 or a.shape[-1] != 3:
            raise MetricError(f"uint8 frames must be shaped (T, H, W, 3), got {a.shape}")
        if a.shape != b.shape:
            raise MetricError(f"clips differ in shape: {a.shape} vs {b.shape}")
        x, y = (rearrange(torch.from_numpy(np.ascontiguousarray(v)).double(), "t h w c -> t c h w") for v in (a, b))
        return x, y, 255.0
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.is_floating_point() and b.is_floating_point():
        if a.ndim != 4:
            raise MetricError(f"video tensors must be shaped (C, T, H, W), got {tuple(a.shape)}")
        if a.shape != b.shape:
            raise MetricError(f"clips differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
        # [-1, 1] -> [0, 2]: SSIM's luminance term assumes non-negative intensities.
        x, y = (rearrange(v.detach().cpu().double() + 1.0, "c t h w -> t c h w") for v in (a, b))
        return x, y, 2.0
    raise MetricError(
        "compare two uint8 frame arrays (T, H, W, 3) or two float video tensors (C, T, H, W) in [-1, 1]; "
        f"got {type(a).__name__} and {type(b).__name__}"
    )


@overload
def psnr(a: Clip, b: Clip, data_range: float | None = ..., *, per_frame: Literal[False] = ...) -> float: ...
@overload
def psnr(a: Clip, b: Clip, data_range: float | None = ..., *, per_frame: Literal[True]) -> tuple[float, np.ndarray]: ...


def psnr(a: Clip, b: Clip, data_range: float | None = None, *, per_frame: bool = False):
    """Peak signal-to-noise ratio in dB, 10 log10(R^2 / MSE), of clip `b` against `a`.

    The clip value uses the MSE over all frames; `per_frame=True` returns (value, (T,) array).
    Identical clips (or frames) give inf.
    """
    x, y, default_range = _as_frames(a, b)
    peak = float(data_range if data_range is not None else default_range)
    frame_mse = (x - y).square().mean(dim=(1, 2, 3))  # (T,)

    def to_db(mse: torch.Tensor) -> torch.Tensor:
        return 10.0 * torch.log10(peak**2 / mse)  # mse = 0 -> inf

    value = float(to_db(frame_mse.mean()))
    return (value, to_db(frame_mse).numpy()) if per_frame else value


def _gaussian_window(size: int, sigma: float) -> torch.Tensor:
    """Normalized 1D Gaussian (size,), float64: the taps scipy.ndimage.gaussian_filter uses."""
    offsets = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-0.5 * (offsets / sigma).square())
    return g / g.sum()


def _ssim_frames(x: torch.Tensor, y: torch.Tensor, data_range: float) -> torch.Tensor:
    """Mean SSIM of each frame (T,) for x, y (T, C, H, W) float64, over channels and the
    window-valid pixels (those whose window lies inside the frame, as scikit-image crops)."""
    t, c = x.shape[:2]
    g = _gaussian_window(SSIM_WINDOW, SSIM_SIGMA)
    rows, cols = g.view(1, 1, -1, 1), g.view(1, 1, 1, -1)  # separable: filter H, then W

    def blur(v: torch.Tensor) -> torch.Tensor:  # (N, 1, H, W) -> (N, 1, H - 10, W - 10), 'valid'
        return F.conv2d(F.conv2d(v, rows), cols)

    # Five local moments of every (frame, channel) plane in one batched filter pass.
    planes = torch.cat([x, y, x * x, y * y, x * y]).reshape(5 * t * c, 1, *x.shape[2:])  # (5 T C, 1, H, W)
    moments = blur(planes)  # (5 T C, 1, H', W')
    mx, my, mxx, myy, mxy = moments.reshape(5, t, c, *moments.shape[2:]).unbind(0)  # each (T, C, H', W')
    vx, vy, cov = mxx - mx * mx, myy - my * my, mxy - mx * my  # population (co)variances
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    ssim_map = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))  # Wang eq. 13
    return ssim_map.mean(dim=(1, 2, 3))  # (T,)


@overload
def ssim(a: Clip, b: Clip, data_range: float | None = ..., *, per_frame: Literal[False] = ...) -> float: ...
@overload
def ssim(a: Clip, b: Clip, data_range: float | None = ..., *, per_frame: Literal[True]) -> tuple[float, np.ndarray]: ...


def ssim(a: Clip, b: Clip, data_range: float | None = None, *, per_frame: bool = False):
    """Structural similarity (Wang et al. 2004) of clip `b` against `a`, in [-1, 1] (1 = equal).

    Per frame and channel: Gaussian-weighted local statistics (11x11, sigma 1.5), the SSIM
    map averaged over the pixels whose window fits in the frame; then the mean over
    channels, and over frames for the clip value. `per_frame=True` returns (value, (T,) array).
    """
    x, y, default_range = _as_frames(a, b)
    if min(x.shape[2:]) < SSIM_WINDOW:
        raise MetricError(
            f"SSIM needs frames of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got {x.shape[2]}x{x.shape[3]}"
        )
    peak = float(data_range if data_range is not None else default_range)
    frames = torch.cat([
        _ssim_frames(x[i : i + _FRAMES_PER_PASS], y[i : i + _FRAMES_PER_PASS], peak)
        for i in range(0, x.shape[0], _FRAMES_PER_PASS)
    ]).numpy()
    value = float(frames.mean())
    return (value, frames) if per_frame else value

