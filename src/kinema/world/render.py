"""Render a Shapes scene to a clip, with its exact ground truth (SHAPES.md).

Coordinates are continuous: x grows right, y grows down, and pixel (i, j) (row i, column j)
covers [j, j+1) x [i, i+1), so its centre is (j + 0.5, i + 0.5). An object's position is its
centroid: the centre of a circle or square, and for the apex-up triangle the point 2/3 of
the height below the apex. Anti-aliasing is 4x4 supersampling: each pixel's coverage is the
fraction of its 16 sub-pixel points (j + (b + 0.5)/4, i + (a + 0.5)/4), a, b in 0..3, that
fall inside the shape.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from kinema.world.scene import (
    BACKGROUND_RGB,
    DIRECTION_VECTORS,
    DISPLACEMENT_FRACTION,
    PALETTE,
    SIZE_FRACTION,
    Scene,
    ShapeObject,
)

SUPERSAMPLE = 4  # sub-pixel points per pixel along each axis (SHAPES.md: 4x4 supersampling)

# Centroid depth below the top of the bounding box, as a fraction of the size.
_CENTROID_DEPTH = {"circle": 0.5, "square": 0.5, "triangle": 2.0 / 3.0}
# Filled area as a fraction of size**2.
_AREA_FRACTION = {"circle": math.pi / 4.0, "square": 1.0, "triangle": 0.5}


@dataclass(frozen=True)
class Rendering:
    """A clip and its ground truth.

    video: uint8 (T, H, W, 3). centers: float64 (n_objects, T, 2), each object's centroid
    (x, y) per frame in pixel coordinates (see module docstring). sizes_px: float64
    (n_objects,), the size in pixels (circle diameter, square side, triangle base = height).
    """

    video: np.ndarray
    scene: Scene
    centers: np.ndarray
    sizes_px: np.ndarray


def object_size_px(obj: ShapeObject, size: tuple[int, int]) -> float:
    """Size in pixels: SIZE_FRACTION of min(H, W)."""
    return SIZE_FRACTION[obj.size] * min(size)


def object_area_px(obj: ShapeObject, size: tuple[int, int]) -> float:
    """Analytic filled area in pixels: pi/4 s^2 (circle), s^2 (square), s^2/2 (triangle)."""
    return _AREA_FRACTION[obj.shape] * object_size_px(obj, size) ** 2


def displacement_px(obj: ShapeObject, frames: int, size: tuple[int, int]) -> np.ndarray:
    """Total (dx, dy) from frame 0 to frame T-1: 0.40 of the extent along the axis (none if T = 1)."""
    if frames < 2:
        return np.zeros(2)
    height, width = size
    ux, uy = DIRECTION_VECTORS[obj.direction]
    return DISPLACEMENT_FRACTION * np.array([ux * width, uy * height], dtype=np.float64)


def start_bounds(obj: ShapeObject, frames: int,
                 size: tuple[int, int]) -> tuple[tuple[float, float], tuple[float, float]]:
    """((x_min, x_max), (y_min, y_max)) for the frame-0 centroid that keep the whole object
    inside the canvas in every frame. Always non-empty: size + displacement <= 0.8 extent."""
    height, width = size
    s = object_size_px(obj, size)
    dx, dy = displacement_px(obj, frames, size)
    depth = _CENTROID_DEPTH[obj.shape] * s
    # Bounding-box left edge x0 must satisfy 0 <= x0 and x0 + s <= W at frame 0 and frame T-1.
    x0_lo, x0_hi = max(0.0, -dx), min(width - s, width - s - dx)
    y0_lo, y0_hi = max(0.0, -dy), min(height - s, height - s - dy)
    return (x0_lo + s / 2, x0_hi + s / 2), (y0_lo + depth, y0_hi + depth)


def exit_start(obj: ShapeObject, frames: int, size: tuple[int, int],
               rng: np.random.Generator) -> tuple[float, float]:
    """A frame-0 centroid from which the object leaves the canvas during the clip, or has
    left before it: the furthest start that keeps it inside (start_bounds), moved on along
    its direction by d, uniform in (0, 2 s + D] (s its size, D the clip's displacement). From
    d > s it is gone by the last frame, from d > s + D it is gone in every frame; across the
    motion the start is uniform within start_bounds. Clips of objects leaving and staying
    gone, which the in-canvas rule of SHAPES.md never draws, are what long videos need after
    an exit (kinema.tasks.extend: the context is then empty and must stay so)."""
    (x_lo, x_hi), (y_lo, y_hi) = start_bounds(obj, frames, size)
    x, y = float(rng.uniform(x_lo, x_hi)), float(rng.uniform(y_lo, y_hi))
    s = object_size_px(obj, size)
    travel = float(np.abs(displacement_px(obj, frames, size)).sum())
    d = float(rng.uniform(0.0, 2 * s + travel))
    ux, uy = DIRECTION_VECTORS[obj.direction]
    if ux:
        x = (x_hi if ux > 0 else x_lo) + ux * d
    else:
        y = (y_hi if uy > 0 else y_lo) + uy * d
    return x, y


def _coverage(shape: str, x0: np.ndarray, y0: np.ndarray, s: float, height: int,
              width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame coverage in [0, 1] of a window of pixels holding the shape.

    x0, y0: (T,) top-left corner of the shape's bounding box [x0, x0+s) x [y0, y0+s) per
    frame. Returns (coverage (T, h, w) float32, i0 (T,), j0 (T,)): frame f's window has its
    top-left pixel at (i0[f], j0[f]). The window (ceil(s) + 1 pixels a side, at most the
    canvas) holds the bounding box wherever it falls, so one array serves every frame.
    """
    n = SUPERSAMPLE
    h, w = min(math.ceil(s) + 1, height), min(math.ceil(s) + 1, width)
    i0 = np.clip(np.floor(y0).astype(np.int64), 0, height - h)  # (T,)
    j0 = np.clip(np.floor(x0).astype(np.int64), 0, width - w)  # (T,)
    offsets = (np.arange(n) + 0.5) / n
    # (T, w*n) sub-pixel x and (T, h*n) sub-pixel y, relative to the bounding box corner
    xs = (j0[:, None, None] + np.arange(w)[None, :, None] + offsets).reshape(len(x0), w * n) - x0[:, None]
    ys = (i0[:, None, None] + np.arange(h)[None, :, None] + offsets).reshape(len(y0), h * n) - y0[:, None]
    x, y = xs[:, None, :], ys[:, :, None]  # broadcast to (T, h*n, w*n)
    if shape == "circle":
        r = s / 2
        inside = (x - r) ** 2 + (y - r) ** 2 <= r * r
    elif shape == "square":
        inside = (x >= 0) & (x < s) & (y >= 0) & (y < s)
    else:  # triangle, apex (s/2, 0); with base = height the half-width at depth y is y/2
        inside = (y >= 0) & (y <= s) & (np.abs(x - s / 2) <= y / 2)
    # (T, h*n, w*n) -> (T, h, n, w, n) -> mean over each pixel's n x n sub-pixels
    coverage = inside.reshape(len(x0), h, n, w, n).mean(axis=(2, 4), dtype=np.float32)
    return coverage, i0, j0


def render(scene: Scene, *, frames: int = 17, size: tuple[int, int] = (64, 64),
           rng: np.random.Generator | int | None = None,
           starts: Sequence[tuple[float, float]] | None = None, exits: bool = False) -> Rendering:
    """Render `scene` as a clip of `frames` frames of `size` = (H, W).

    Start positions are drawn uniformly from `start_bounds` with `rng` (a Generator, a
    seed, or None for fresh entropy, as np.random.default_rng takes), or given exactly by
    `starts`: one frame-0 centroid (x, y) per object, which must lie within start_bounds.
    `exits=True` draws every object's start with `exit_start` instead (it leaves the canvas,
    or has left it, which SHAPES.md's captions never show) and accepts such `starts`.
    Motion is constant velocity: centroid(t) = start + displacement * t / (T - 1).
    """
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    height, width = (int(v) for v in size)
    if height < 1 or width < 1:
        raise ValueError(f"size must be positive (H, W), got {size}")
    objects = scene.objects
    if starts is None:
        gen = np.random.default_rng(rng)
        starts = []
        for obj in objects:
            if exits:
                starts.append(exit_start(obj, frames, (height, width), gen))
            else:
                (x_lo, x_hi), (y_lo, y_hi) = start_bounds(obj, frames, (height, width))
                starts.append((float(gen.uniform(x_lo, x_hi)), float(gen.uniform(y_lo, y_hi))))
    if len(starts) != len(objects):
        raise ValueError(f"need one start per object ({len(objects)}), got {len(starts)}")

    t = np.arange(frames, dtype=np.float64) / max(frames - 1, 1)  # (T,) fraction of the way
    centers = np.zeros((len(objects), frames, 2))
    sizes = np.array([object_size_px(o, (height, width)) for o in objects], dtype=np.float64)
    for k, (obj, start) in enumerate(zip(objects, starts)):
        (x_lo, x_hi), (y_lo, y_hi) = start_bounds(obj, frames, (height, width))
        x, y = float(start[0]), float(start[1])
        eps = 1e-9
        if not exits and not (x_lo - eps <= x <= x_hi + eps and y_lo - eps <= y <= y_hi + eps):
            raise ValueError(f"start {start} of object {k} leaves the canvas; allowed x in "
                             f"[{x_lo:.3f}, {x_hi:.3f}], y in [{y_lo:.3f}, {y_hi:.3f}]")
        # (T, 2) = (2,) + (T, 1) * (2,)
        centers[k] = np.array([x, y]) + t[:, None] * displacement_px(obj, frames, (height, width))

    video = np.empty((frames, height, width, 3), dtype=np.float32)
    video[:] = np.array(BACKGROUND_RGB[scene.background], dtype=np.float32)
    for k, obj in enumerate(objects):  # in caption order: later objects cover earlier ones
        s = sizes[k]
        color = np.array(PALETTE[obj.color], dtype=np.float32)
        depth = _CENTROID_DEPTH[obj.shape] * s
        cov, i0, j0 = _coverage(obj.shape, centers[k, :, 0] - s / 2, centers[k, :, 1] - depth, s, height, width)
        h, w = cov.shape[1:]
        for f in range(frames):
            window = video[f, i0[f]:i0[f] + h, j0[f]:j0[f] + w]  # (h, w, 3) view
            window += cov[f, :, :, None] * (color - window)
    video = np.rint(video, out=video).astype(np.uint8)  # values are blends of 0..255: no clip needed
    return Rendering(video=video, scene=scene, centers=centers, sizes_px=sizes)
