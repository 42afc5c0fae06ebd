"""Where a Shapes object is, frame by frame, in a generated clip, and how far that is from the truth.

The object is segmented exactly as the judge (kinema.eval.shapes) segments it: pixels are
classified to the nearest reference colour, the object is the largest 8-connected region of
its colour in each frame, and its sub-pixel coverage, recovered from the blend colours of
its anti-aliased rim, gives its area and centroid. On rendered clips the centroid equals the
renderer's true position to under 0.2 px (tests/test_trajectory.py). Each frame is measured
against its own background colour, so a clip whose background drifts still measures right.

Positions are pixel coordinates as the renderer's (kinema.world.render): x grows right, y
grows down, pixel (i, j) has its centre at (j + 0.5, i + 0.5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from kinema.eval.shapes import (
    COLORS,
    EMPTY_MAX_AREA_FRACTION,
    PRESENCE_MIN_AREA,
    REFERENCE_NAMES,
    _as_frames,
    _coverage,
    _dilate,
    _largest_region,
    _region_stats,
    classify,
    label_components,
)
from kinema.world.render import object_area_px
from kinema.world.scene import BACKGROUND_RGB, ShapeObject

if TYPE_CHECKING:
    import torch

TOLERANCE_PX = 2.0  # the "within 2 px of the true trajectory"


@dataclass(frozen=True)
class Track:
    """One object measured in every frame of a clip; all arrays have T rows.

    centers (T, 2): centroid (x, y), NaN where the object is not visible. area (T,): its
    coverage in px (0 where no region). visible (T,): area >= PRESENCE_MIN_AREA of the
    analytic area, the judge's presence rule. edge (T,): its coverage reaches the canvas
    border (it may be cut off, so its centroid is biased inwards). color (T, 3): median RGB
    of its region, NaN where none. background (T, 3): mean RGB of the pixels classified as
    the named background, leaving out those within 2 px of a palette-coloured pixel (an
    object's anti-aliased rim), NaN where none.
    """

    centers: np.ndarray
    area: np.ndarray
    visible: np.ndarray
    edge: np.ndarray
    color: np.ndarray
    background: np.ndarray


def track_object(video: np.ndarray | torch.Tensor, obj: ShapeObject, background: str) -> Track:
    """Measure `obj` (its colour names it) in `video` on a `background` ("black", "gray",
    "white"): uint8 (T, H, W, 3) or float (C, T, H, W) in [-1, 1], as the judge takes."""
    frames = _as_frames(video)
    t, h, w = frames.shape[:3]
    classes = classify(frames)
    target = COLORS.index(obj.color)
    roots = label_components(np.where(classes == target, classes, -1))
    region = _largest_region(roots, classes == target)  # (T, H, W)
    alpha = np.zeros(frames.shape[:3], dtype=np.float32)
    bg = np.full((t, 3), np.nan)
    color = np.full((t, 3), np.nan)
    near_palette = _dilate((classes >= 0) & (classes < len(COLORS)), 2)
    plain = (classes == REFERENCE_NAMES.index(background)) & ~near_palette  # (T, H, W)
    for f in range(t):  # per frame: each against its own background colour
        one = slice(f, f + 1)
        if plain[f].any():
            bg[f] = frames[f][plain[f]].mean(0, dtype=np.float64)
        if region[f].any():
            color[f] = np.median(frames[f][region[f]], axis=0)
            ref = bg[f] if np.isfinite(bg[f]).all() else np.array(BACKGROUND_RGB[background])
            alpha[one] = _coverage(frames[one], classes[one], region[one], obj.color, ref.astype(np.float32))
    stats = _region_stats(alpha)
    visible = stats.area >= PRESENCE_MIN_AREA * object_area_px(obj, (h, w))
    centers = np.stack([stats.cx, stats.cy], axis=1)
    centers[~visible] = np.nan
    border = np.concatenate([alpha[:, 0, :], alpha[:, -1, :], alpha[:, :, 0], alpha[:, :, -1]], axis=1)
    return Track(centers=centers, area=stats.area, visible=visible, edge=(border > 0).any(1), color=color,
                 background=bg)


def centroid_errors(centers: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(T,) Euclidean distance in px between measured `centers` (T, 2) and `truth` (T, 2);
    inf where the object was not found (NaN centre), so a missing object is never close."""
    err = np.hypot(*(np.asarray(centers, dtype=np.float64) - np.asarray(truth, dtype=np.float64)).T)
    return np.where(np.isnan(err), np.inf, err)


def fraction_within(errors: np.ndarray, tolerance: float = TOLERANCE_PX) -> float:
    """Share of frames whose error is at most `tolerance` px (NaN for no frames)."""
    errors = np.asarray(errors, dtype=np.float64)
    return float((errors <= tolerance).mean()) if errors.size else float("nan")


def mean_finite(values: np.ndarray) -> float:
    """Mean of the finite values (NaN if none): a mean error over the frames where it was measurable."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")


def step_errors(centers: np.ndarray, velocity: Sequence[float]) -> np.ndarray:
    """(T - 1,) for each transition t -> t+1: |(c_{t+1} - c_t) - velocity| in px, how far
    the step departs from the expected per-frame displacement; NaN where either end is
    missing (NaN centre)."""
    steps = np.diff(np.asarray(centers, dtype=np.float64), axis=0) - np.asarray(velocity, dtype=np.float64)
    return np.hypot(steps[:, 0], steps[:, 1])


def boundary_jumps(centers: np.ndarray, boundaries: Sequence[int], velocity: Sequence[float]) -> np.ndarray:
    """(n,) the step error (see `step_errors`) across each chunk boundary b, the transition
    b-1 -> b where frame b is the first of a new chunk; NaN where not measurable."""
    steps = step_errors(centers, velocity)
    return np.array([steps[b - 1] if 1 <= b <= len(steps) else np.nan for b in boundaries], dtype=np.float64)


def chunk_boundaries(chunk_frames: Sequence[int]) -> list[int]:
    """First frame of every chunk but the first, from the chunks' frame counts: [9, 4, 4] -> [9, 13]."""
    return [int(b) for b in np.cumsum(chunk_frames)[:-1]]


def palette_region_area(video: np.ndarray | torch.Tensor) -> np.ndarray:
    """(T,) px of the largest 8-connected region of any one palette colour per frame: what the
    judge's empty check looks at (an object-sized one is >= `empty_area_limit`)."""
    frames = _as_frames(video)
    classes = classify(frames)
    palette = (classes >= 0) & (classes < len(COLORS))
    roots = label_components(np.where(palette, classes, -1))
    return _largest_region(roots, palette).sum((1, 2))


def empty_area_limit(size: tuple[int, int]) -> float:
    """The judge's limit for an empty frame: 30% of the smallest object's (a small triangle's) area."""
    return EMPTY_MAX_AREA_FRACTION * object_area_px(ShapeObject("small", COLORS[0], "triangle", "left"), size)


def masked_psnr(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor, mask: np.ndarray | torch.Tensor) -> float:
    """PSNR in dB of `b` against `a` over the pixels where `mask` is true: clips as the judge
    takes them (uint8 (T, H, W, 3) or float (C, T, H, W) in [-1, 1], compared as uint8
    0..255), mask (T, H, W) bool. inf if identical there, NaN for an empty mask."""
    x, y = (_as_frames(v).astype(np.float64) for v in (a, b))
    mask = np.asarray(mask.cpu() if hasattr(mask, "cpu") else mask).astype(bool)
    if not mask.any():
        return float("nan")
    mse = float(((x - y)[mask] ** 2).mean())
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


__all__ = [
    "TOLERANCE_PX", "Track", "track_object", "centroid_errors", "fraction_within", "mean_finite", "step_errors",
    "boundary_jumps", "chunk_boundaries", "palette_region_area", "empty_area_limit", "masked_psnr",
]
