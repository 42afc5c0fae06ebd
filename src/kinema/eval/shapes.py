"""Judge a clip against its Shapes caption: the checks at the end of SHAPES.md.

Pixels are classified to the nearest of the nine reference colours (six palette colours,
three backgrounds). Each named object is, per frame, the largest 8-connected region of its
colour; its sub-pixel coverage, recovered from the blend colours of its anti-aliased rim,
gives area, extents, centroid and skew. From those come the checks: presence, shape,
motion, consistency and background (for an empty scene: empty and background). Every
threshold is a module constant with the reason for its value, measured where it says so on
rendered clips, also after mp4 encoding, noise or blur; `Judgement` keeps each check's
measured value so a report can show how close a clip came.

Reliable for canvases with min(H, W) >= 32 (a small object is then >= 8 px wide).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from kinema.errors import KinemaError
from kinema.world.render import displacement_px, object_area_px
from kinema.world.scene import (
    BACKGROUND_RGB,
    COLORS,
    PALETTE,
    Scene,
    ShapeObject,
    format_caption,
    parse_caption,
)

if TYPE_CHECKING:
    import torch

# Reference colours: palette first (class k < 6 is COLORS[k]), then the backgrounds.
REFERENCE_NAMES: tuple[str, ...] = COLORS + tuple(BACKGROUND_RGB)
_REFERENCE_RGB = np.array([PALETTE[c] for c in COLORS] + list(BACKGROUND_RGB.values()), dtype=np.float32)  # (9, 3)

# A pixel takes the nearest reference colour if it lies within this RGB distance of it. The
# closest two references are gray-green (132) and blue-cyan (140), so 66 (half of 132) keeps
# the classes disjoint while a generated colour may be off by 66 and still count. Anti-aliased
# edge pixels, blends of object and background, mostly fall between classes and stay unlabelled.
COLOR_RADIUS = 66.0

# presence: SHAPES.md. A region of the named colour covering at least 30% of the analytic
# area (so a blurry or shrunken generation still counts), in >= 90% of frames.
PRESENCE_MIN_AREA = 0.30
MIN_FRAME_FRACTION = 0.90  # the share of frames that presence, consistency, background and empty need

# shape: SHAPES.md asks for the region's fill of its bounding box: 0.5 (triangle), pi/4 =
# 0.785 (circle), 1.0 (square). fill = covered area / (extent_x * extent_y), median over
# frames. Fill alone cannot tell a triangle from a blurred blob, so triangles are also
# recognised by their vertical skew (the coverage's skewness along y): -0.57 for apex up
# (density growing linearly from apex to base), 0 for a circle or square, +0.57 apex down.
# A shape passes when its median (fill, skew) falls in its region below; the regions do
# not overlap, so a clip matches at most one shape. Measured on rendered clips (median per
# clip; 8 px objects on 32 px canvases are the hardest): squares 0.99..1.00, circles
# 0.77..0.80, triangles 0.52..0.60 with skew -0.59..-0.50; after mp4 encoding, noise
# (sigma 15) or a 3x3 blur, squares 0.915..1.00, circles 0.76..0.85, triangles up to 0.80
# with skew down to -0.24 (a blurred 8 px triangle). The edges sit between those ranges.
SHAPE_SKEW_LIMIT = -0.20  # triangles below it, circles and squares at or above it
FILL_BANDS: dict[str, tuple[float, float]] = {"triangle": (0.0, 0.85), "circle": (0.70, 0.88), "square": (0.88, 1.05)}
# All three shapes have a square bounding box (triangle base = height); a region 1.67 times
# wider than tall (or taller than wide) is none of them. Rendered clips measure 0.91..1.06.
ASPECT_RANGE = (0.6, 1.0 / 0.6)

# motion: SHAPES.md. Net displacement along the named axis, in the named sense, >= half the
# expected 0.40 * extent. It is the least-squares velocity times (T - 1): equal to last minus
# first for exact constant motion, but it uses every frame and survives a missing one.
MOTION_MIN_FRACTION = 0.5
# Drift across the axis at most a quarter of the expected displacement: a path more than
# about 14 degrees off the axis fails. Rendered clips (also after mp4 or noise) drift by
# under 0.01 of it and move 0.99..1.01 of the expected distance.
MOTION_MAX_DRIFT = 0.25

# consistency: the object must not flicker or morph. A frame is steady when the region is
# there with its area within 0.75..1.33 of the clip's median and its fill within 0.10 of the
# median fill; >= 90% of frames must be steady (a blanked frame is not). Rendered clips
# vary by under 7% in area and 0.065 in fill (8 px shapes after mp4 or noise). A gradual
# morph stays inside per-frame bands, so the medians of the first and last thirds of the
# clip must also agree: fill within 0.08, area within a factor 1.25 (rendered, also after
# mp4 or noise: under 0.03 and 1.04). A circle turning into a square (fill 0.785 -> 1.0) or
# an object growing from small to large (area x 2.56) fails.
STEADY_AREA_RANGE = (0.75, 1.0 / 0.75)
STEADY_FILL_TOLERANCE = 0.10
TREND_FILL_TOLERANCE = 0.08
TREND_AREA_FACTOR = 1.25

# background: the named background must cover at least half of each frame. Objects cover at
# most 2 * 0.16 of the canvas (two large squares), so a correct clip has about 0.68 or more.
BACKGROUND_MIN_COVER = 0.5

# empty: no palette-coloured region as large as 30% of the smallest object (a small
# triangle), i.e. nothing that presence would count as an object.
EMPTY_MAX_AREA_FRACTION = 0.30

# Coverage estimates below this (and above 1 minus this) are read as 0 (and 1): noise of up
# to about 0.15 * |object colour - background| (20 to 35 RGB levels) then adds no area.
COVERAGE_FLOOR = 0.15

# Two objects: a frame where one object's region comes within this many pixels of the
# other's is left out of both objects' shape, motion and consistency measurements (hidden
# and blended pixels distort an outline). For the earlier object, which the later one is
# drawn over, such a frame, or one where it is missing while the later object is large
# enough to hide it, is "occluded" and counts towards presence.
OCCLUSION_MARGIN_PX = 2


@dataclass(frozen=True)
class Check:
    """One check: did it pass, the measured value, what the value had to be, and why."""

    passed: bool
    value: float
    threshold: str
    detail: str

    def to_dict(self) -> dict:
        value = None if not math.isfinite(self.value) else float(self.value)
        return {"passed": bool(self.passed), "value": value, "threshold": self.threshold, "detail": self.detail}


@dataclass(frozen=True)
class Judgement:
    """The verdict on a clip: it passes only if every check passes."""

    passed: bool
    checks: dict[str, Check] = field(default_factory=dict)
    caption: str = ""  # the caption judged, in canonical form

    def to_dict(self) -> dict:
        return {"caption": self.caption, "passed": self.passed,
                "checks": {name: c.to_dict() for name, c in self.checks.items()}}

    def summary(self) -> str:
        """One line: PASS or FAIL, then each check's value, failed ones marked with '!'."""
        parts = [f"{'' if c.passed else '!'}{name}={c.value:.2f}" for name, c in self.checks.items()]
        return f"{'PASS' if self.passed else 'FAIL'} {' '.join(parts)}"


# ----------------------------------------------------------------------------- pixels to regions


def _as_frames(video: np.ndarray | torch.Tensor) -> np.ndarray:
    """uint8 (T, H, W, 3) ndarray, or a float tensor/array (C, T, H, W) in [-1, 1] -> uint8 (T, H, W, 3)."""
    if hasattr(video, "detach"):  # a torch tensor
        if video.dtype.is_floating_point:
            video = video.detach().to("cpu").float()
            if video.ndim != 4 or video.shape[0] != 3:
                raise KinemaError(f"a float video tensor must be (C=3, T, H, W), got {tuple(video.shape)}")
            video = ((video.clamp(-1, 1) + 1) * 127.5).round().byte().numpy()
            return np.ascontiguousarray(video.transpose(1, 2, 3, 0))  # c t h w -> t h w c
        video = video.detach().to("cpu").numpy()
    video = np.asarray(video)
    if video.dtype == np.uint8:
        if video.ndim != 4 or video.shape[-1] != 3:
            raise KinemaError(f"a uint8 video must be (T, H, W, 3), got {video.shape}")
        return video
    if np.issubdtype(video.dtype, np.floating):
        if video.ndim != 4 or video.shape[0] != 3:
            raise KinemaError(f"a float video must be (C=3, T, H, W) in [-1, 1], got {video.shape}")
        video = np.rint((np.clip(video, -1, 1) + 1) * 127.5).astype(np.uint8)
        return np.ascontiguousarray(video.transpose(1, 2, 3, 0))  # c t h w -> t h w c
    raise KinemaError(f"a video must be uint8 (T, H, W, 3) or float (C, T, H, W) in [-1, 1], got dtype {video.dtype}")


def classify(frames: np.ndarray) -> np.ndarray:
    """uint8 (T, H, W, 3) -> int8 (T, H, W): index into REFERENCE_NAMES of the nearest reference
    colour, or -1 if none is within COLOR_RADIUS. Exact integer distances, one reference at a time."""
    r, g, b = frames.transpose(3, 0, 1, 2).astype(np.int32)  # three (T, H, W) planes
    best = np.full(frames.shape[:3], int(COLOR_RADIUS ** 2) + 1, dtype=np.int32)  # farther: unlabelled
    labels = np.full(frames.shape[:3], -1, dtype=np.int8)
    for k, (cr, cg, cb) in enumerate(_REFERENCE_RGB.astype(np.int32).tolist()):
        d2 = (r - cr) ** 2 + (g - cg) ** 2 + (b - cb) ** 2
        closer = d2 < best  # ties go to the earlier reference
        labels[closer] = k
        np.minimum(d2, best, out=best)
    return labels


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation of (T, H, W) masks by a (2r+1) x (2r+1) square, per frame."""
    out = mask.copy()
    for axis in (1, 2):  # the square is separable: dilate rows, then columns
        src = out.copy()
        for shift in range(1, radius + 1):
            lo = [slice(None)] * 3
            hi = [slice(None)] * 3
            lo[axis], hi[axis] = slice(0, -shift), slice(shift, None)
            out[tuple(lo)] |= src[tuple(hi)]
            out[tuple(hi)] |= src[tuple(lo)]
    return out


def label_components(classes: np.ndarray) -> np.ndarray:
    """Connected components of same-class pixels, 8-connected, within each frame.

    classes: int (T, H, W), -1 for pixels that belong to no component. Returns int64
    (T*H*W,): for each pixel the flat index of its component's root (its smallest pixel
    index); unlabelled pixels are their own root. Union-find with hooking and pointer
    jumping, vectorised over all edges at once, on the labelled pixels only.
    """
    t, h, w = classes.shape
    labelled = classes.reshape(-1) >= 0
    pixels = np.flatnonzero(labelled)  # (n,) flat index of each labelled pixel
    compact = np.full(t * h * w, -1, dtype=np.int64)
    compact[pixels] = np.arange(len(pixels))
    compact = compact.reshape(t, h, w)
    starts, ends = [], []
    for di, dj in ((0, 1), (1, 0), (1, 1), (1, -1)):  # each neighbour pair once
        a = (slice(None), slice(0, h - di), slice(max(0, -dj), w - max(0, dj)))
        b = (slice(None), slice(di, h), slice(max(0, dj), w - max(0, -dj)))
        same = (classes[a] == classes[b]) & (classes[a] >= 0)
        starts.append(compact[a][same])
        ends.append(compact[b][same])
    a, b = np.concatenate(starts), np.concatenate(ends)
    parent = np.arange(len(pixels))  # compact ids; a root is its own parent, parents only decrease
    while a.size:
        ra, rb = parent[a], parent[b]  # roots: parent is fully compressed here
        differ = ra != rb
        a, b, ra, rb = a[differ], b[differ], ra[differ], rb[differ]
        if not a.size:
            break
        np.minimum.at(parent, np.maximum(ra, rb), np.minimum(ra, rb))  # hook the larger root
        while True:  # pointer jumping until every pixel points at a root
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand
    roots = np.arange(t * h * w, dtype=np.int64)
    roots[pixels] = pixels[parent]  # compact root -> flat index (compact order is flat order)
    return roots


def _largest_region(roots: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The largest component inside `mask` (T, H, W) bool in each frame -> (T, H, W) bool."""
    t = mask.shape[0]
    flat = mask.reshape(t, -1)
    counts = np.bincount(roots[flat.reshape(-1)], minlength=roots.size).reshape(t, -1)  # (T, H*W)
    # A root is a flat index in its own frame, so row f holds frame f's components.
    best = counts.argmax(1) + np.arange(t) * flat.shape[1]  # (T,) flat index of each frame's largest root
    region = (roots.reshape(t, -1) == best[:, None]) & flat
    return region.reshape(mask.shape)


@dataclass(frozen=True)
class _RegionStats:
    """Per-frame measurements of an object from its coverage map, each (T,); NaN where absent."""

    area: np.ndarray  # sum of coverage, px
    fill: np.ndarray  # area / (extent_x * extent_y)
    aspect: np.ndarray  # extent_x / extent_y
    skew: np.ndarray  # skewness of the coverage along y: about -0.57 for an apex-up triangle, 0 if symmetric
    cx: np.ndarray
    cy: np.ndarray


def _background_rgb(frames: np.ndarray, classes: np.ndarray, background: str) -> np.ndarray:
    """The clip's actual background colour (3,): the mean of the pixels labelled as `background`.

    Every other pixel in each direction is plenty for the mean of a uniform colour (and 4x cheaper).
    """
    mask = classes[:, ::2, ::2] == REFERENCE_NAMES.index(background)
    if not mask.any():
        return np.array(BACKGROUND_RGB[background], dtype=np.float32)
    return frames[:, ::2, ::2][mask].mean(0, dtype=np.float64).astype(np.float32)


def _coverage(frames: np.ndarray, classes: np.ndarray, region: np.ndarray, color: str,
              background_rgb: np.ndarray) -> np.ndarray:
    """Sub-pixel coverage (T, H, W) in [0, 1] of the object whose hard region is `region`.

    An anti-aliased pixel is a blend p = b + a (c - b) of background b and object colour c,
    so a = (p - b).(c - b) / |c - b|^2 recovers its coverage. b and c are measured on the
    clip (`background_rgb`; the median of the region's pixels), so a clip whose colours are
    uniformly off still measures right. The estimate is then stretched,
    clip((a - COVERAGE_FLOOR) / (1 - 2 COVERAGE_FLOOR), 0, 1): symmetric about 0.5, so a
    sharp edge keeps its measured position, while noise on background (a ~ 0) and interior
    (a ~ 1) pixels is flattened instead of summing into area and extent. Coverage is taken
    over the region and the one-pixel rim around it (where the blends lie), except pixels
    of another palette colour, which belong to another object.
    """
    alpha = np.zeros(frames.shape[:3], dtype=np.float32)
    if not region.any():
        return alpha
    c = np.median(frames[region], axis=0).astype(np.float32)
    axis = c - background_rgb
    if float(axis @ axis) < 1.0:  # object and background indistinguishable: nothing measurable
        return alpha
    other = (classes >= 0) & (classes < len(COLORS)) & (classes != COLORS.index(color))
    support = _dilate(region, 1) & ~other
    a = ((frames[support].astype(np.float32) - background_rgb) @ axis) / float(axis @ axis)  # (n,)
    alpha[support] = np.clip((a - COVERAGE_FLOOR) / (1.0 - 2.0 * COVERAGE_FLOOR), 0.0, 1.0)
    return alpha


def _region_stats(alpha: np.ndarray) -> _RegionStats:
    """Measure coverage maps alpha (T, H, W); pixel (i, j) has its centre at (j + 0.5, i + 0.5)."""
    t, h, w = alpha.shape
    area = alpha.sum((1, 2)).astype(np.float64)
    # Extents: a column's largest coverage is the share of its width the shape spans (exact
    # for a square's edge columns, close for a circle's), so their sum is the width.
    extent_x = alpha.max(1).sum(1).astype(np.float64)
    extent_y = alpha.max(2).sum(1).astype(np.float64)
    rows, cols = alpha.sum(2), alpha.sum(1)  # (T, H), (T, W) coverage profiles
    ys, xs = np.arange(h) + 0.5, np.arange(w) + 0.5
    with np.errstate(invalid="ignore", divide="ignore"):
        cy = (rows * ys).sum(1) / area
        cx = (cols * xs).sum(1) / area
        dy = ys[None, :] - cy[:, None]  # (T, H)
        var_y = (rows * dy ** 2).sum(1) / area
        skew = (rows * dy ** 3).sum(1) / area / var_y ** 1.5
        stats = _RegionStats(area=area, fill=area / (extent_x * extent_y), aspect=extent_x / extent_y,
                             skew=skew, cx=cx, cy=cy)
    empty = area <= 0
    for name in ("fill", "aspect", "skew", "cx", "cy"):
        getattr(stats, name)[empty] = np.nan
    return stats


# ----------------------------------------------------------------------------- checks


_NOT_JUDGED_CONTACT = "not judged: the object touches or hides behind the other in (almost) every frame it shows"


def _band(lo: float, hi: float) -> str:
    return f"{lo:.2f}..{hi:.2f}"


def _check_presence(visible: np.ndarray, occluded: np.ndarray, area: np.ndarray, expected: float) -> Check:
    present = visible | occluded
    value = float(present.mean())
    passed = value >= MIN_FRAME_FRACTION
    detail = (f"region >= {PRESENCE_MIN_AREA:.0%} of {expected:.0f} px in {int(visible.sum())}/{len(visible)} frames"
              + (f", occluded in {int(occluded.sum())}" if occluded.any() else "")
              + (f"; median area {np.median(area):.0f} px" if visible.any() else "; never visible"))
    return Check(passed, value, f">= {MIN_FRAME_FRACTION:.2f} of frames", detail)


def _shape_ok(shape: str, fill: float, skew: float) -> bool:
    lo, hi = FILL_BANDS[shape]
    asymmetric = skew < SHAPE_SKEW_LIMIT
    return lo <= fill < hi and asymmetric == (shape == "triangle")


def _check_shape(obj: ShapeObject, stats: _RegionStats, valid: np.ndarray, excluded: np.ndarray) -> Check:
    lo, hi = FILL_BANDS[obj.shape]
    skew_rule = f"skew {'<' if obj.shape == 'triangle' else '>='} {SHAPE_SKEW_LIMIT:.2f}"
    threshold = f"fill {_band(lo, hi)}, {skew_rule}, aspect {_band(*ASPECT_RANGE)}"
    if not valid.any():
        if excluded.any():
            return Check(True, math.nan, threshold, _NOT_JUDGED_CONTACT)
        return Check(False, math.nan, threshold, "no region of the named colour to measure")
    fill, aspect, skew = (float(np.median(v[valid])) for v in (stats.fill, stats.aspect, stats.skew))
    measured = f"fill {fill:.2f}, skew {skew:+.2f}, aspect {aspect:.2f}"
    problems = []
    if not _shape_ok(obj.shape, fill, skew):
        looks = [s for s in FILL_BANDS if _shape_ok(s, fill, skew)]
        problems.append(f"looks like a {looks[0]}" if looks else "matches no shape")
    if not ASPECT_RANGE[0] <= aspect <= ASPECT_RANGE[1]:
        problems.append("aspect out of range")
    detail = measured + (f": {'; '.join(problems)}" if problems else "")
    return Check(not problems, fill, threshold, detail)


def _check_motion(obj: ShapeObject, stats: _RegionStats, valid: np.ndarray, excluded: np.ndarray,
                  size: tuple[int, int]) -> Check:
    frames = len(valid)
    threshold = f"along >= {MOTION_MIN_FRACTION:.2f} of expected, drift <= {MOTION_MAX_DRIFT:.2f}"
    if frames < 2:
        return Check(True, math.nan, threshold, "not judged: a clip of one frame cannot show motion")
    expected = displacement_px(obj, frames, size)  # (dx, dy)
    axis = 0 if expected[0] != 0 else 1
    if valid.sum() < 2:
        if excluded.any() and (valid | excluded).all():
            return Check(True, math.nan, threshold, _NOT_JUDGED_CONTACT)
        return Check(False, math.nan, threshold, f"the object is measurable in {int(valid.sum())} frame(s), need 2")
    t = np.flatnonzero(valid).astype(np.float64)
    centres = np.stack([stats.cx[valid], stats.cy[valid]], 1)  # (n, 2)
    tc = t - t.mean()
    velocity = (tc[:, None] * (centres - centres.mean(0))).sum(0) / (tc * tc).sum()  # (2,) px per frame
    moved = velocity * (frames - 1)
    along = float(moved[axis] / expected[axis])  # signed: negative is the wrong sense
    drift = float(abs(moved[1 - axis]) / abs(expected[axis]))
    passed = along >= MOTION_MIN_FRACTION and drift <= MOTION_MAX_DRIFT
    detail = (f"moved ({moved[0]:+.1f}, {moved[1]:+.1f}) px, expected ({expected[0]:+.1f}, {expected[1]:+.1f}); "
              f"along {along:.2f}, drift {drift:.2f}")
    return Check(passed, along, threshold, detail)


def _check_consistency(stats: _RegionStats, visible: np.ndarray, excluded: np.ndarray) -> Check:
    threshold = (f">= {MIN_FRAME_FRACTION:.2f} of frames with area {_band(*STEADY_AREA_RANGE)} x median and fill "
                 f"within {STEADY_FILL_TOLERANCE:.2f}; thirds agree in fill within {TREND_FILL_TOLERANCE:.2f} "
                 f"and area within x{TREND_AREA_FACTOR:.2f}")
    judged = ~excluded
    usable = visible & judged
    if not usable.any():
        if excluded.any():
            return Check(True, math.nan, threshold, _NOT_JUDGED_CONTACT)
        return Check(False, 0.0, threshold, "no region of the named colour to measure")
    area_ratio = stats.area / np.median(stats.area[usable])
    fill_dev = np.abs(stats.fill - np.median(stats.fill[usable]))
    with np.errstate(invalid="ignore"):
        steady = usable & (area_ratio >= STEADY_AREA_RANGE[0]) & (area_ratio <= STEADY_AREA_RANGE[1]) \
            & (fill_dev <= STEADY_FILL_TOLERANCE)
    value = float(steady.sum() / judged.sum())
    # Trend: medians over the first and last thirds of the usable frames.
    frames = np.flatnonzero(usable)
    third = max(1, len(frames) // 3)
    head, tail = frames[:third], frames[-third:]
    fill_trend = float(abs(np.median(stats.fill[tail]) - np.median(stats.fill[head])))
    area_trend = float(np.median(stats.area[tail]) / np.median(stats.area[head]))
    area_trend = max(area_trend, 1.0 / area_trend)
    trend_ok = fill_trend <= TREND_FILL_TOLERANCE and area_trend <= TREND_AREA_FACTOR
    detail = (f"{int(steady.sum())}/{int(judged.sum())} frames steady; first to last third: fill "
              f"{fill_trend:.2f} apart, area x{area_trend:.2f}")
    return Check(value >= MIN_FRAME_FRACTION and trend_ok, value, threshold, detail)


def _check_background(classes: np.ndarray, background: str) -> Check:
    target = REFERENCE_NAMES.index(background)
    cover = (classes == target).mean((1, 2))  # (T,)
    value = float((cover >= BACKGROUND_MIN_COVER).mean())
    counts = np.bincount(classes[classes >= 0].ravel(), minlength=len(REFERENCE_NAMES))
    dominant = REFERENCE_NAMES[int(counts.argmax())] if counts.any() else "none"
    detail = f"{background} covers {cover.mean():.0%} of pixels on average (min {cover.min():.0%}); dominant {dominant}"
    return Check(value >= MIN_FRAME_FRACTION, value, f">= {MIN_FRAME_FRACTION:.2f} of frames with "
                 f">= {BACKGROUND_MIN_COVER:.0%} {background}", detail)


def _check_empty(roots: np.ndarray, classes: np.ndarray, size: tuple[int, int]) -> Check:
    smallest = object_area_px(ShapeObject("small", COLORS[0], "triangle", "left"), size)
    limit = EMPTY_MAX_AREA_FRACTION * smallest
    palette = (classes >= 0) & (classes < len(COLORS))
    largest = _largest_region(roots, palette).sum((1, 2))  # (T,) largest palette-coloured region
    value = float((largest < limit).mean())
    detail = f"largest palette-coloured region {int(largest.max())} px (limit {limit:.0f} px)"
    return Check(value >= MIN_FRAME_FRACTION, value, f">= {MIN_FRAME_FRACTION:.2f} of frames without an object", detail)


def _judge_object(obj: ShapeObject, frames: np.ndarray, classes: np.ndarray, region: np.ndarray,
                  others: np.ndarray | None, cover: np.ndarray | None, background_rgb: np.ndarray) -> dict[str, Check]:
    """The checks for one object.

    region: (T, H, W) bool, its largest region per frame; others: the regions of the other
    objects (None if there are none); cover: the regions of objects drawn over it (None if
    none). Frames where it touches another object are left out of shape, motion and
    consistency; frames where a covering object explains its absence count as present.
    """
    size = frames.shape[1:3]
    stats = _region_stats(_coverage(frames, classes, region, obj.color, background_rgb))
    expected = object_area_px(obj, size)
    visible = stats.area >= PRESENCE_MIN_AREA * expected
    none = np.zeros_like(visible)
    # Touching another object distorts the measured outline (blended and hidden pixels).
    touching = none if others is None else (region & _dilate(others, OCCLUSION_MARGIN_PX)).any((1, 2))
    occluded = none
    if cover is not None:
        # A covering object explains a frame if they touch, or if this object is missing
        # while the cover is large enough to hide what presence asks for.
        can_hide = cover.sum((1, 2)) >= (1.0 - PRESENCE_MIN_AREA) * expected
        occluded = (region & _dilate(cover, OCCLUSION_MARGIN_PX)).any((1, 2)) | (~visible & can_hide)
    excluded = touching | occluded
    valid = visible & ~excluded
    return {
        "presence": _check_presence(visible, occluded, stats.area, expected),
        "shape": _check_shape(obj, stats, valid, excluded),
        "motion": _check_motion(obj, stats, valid, excluded, size),
        "consistency": _check_consistency(stats, visible, excluded),
    }


def judge(video: np.ndarray | torch.Tensor, caption: str | Scene) -> Judgement:
    """Judge `video` (uint8 (T, H, W, 3), or float (C, T, H, W) in [-1, 1]) against `caption`.

    One object: presence, shape, motion, consistency, background. Two objects: the four
    object checks for each, named "object1.presence" ..., with the first object excused
    where the second (drawn over it) occludes it; then background. Empty scene: empty,
    background. A one-frame clip cannot show motion: its motion check passes as "not judged"
    with value NaN. Objects the caption does not name are not looked for, except in an empty
    scene, where any object-sized region of a palette colour fails. Raises CaptionError for
    a caption outside the grammar, KinemaError for a malformed video.
    """
    scene = caption if isinstance(caption, Scene) else parse_caption(caption)
    frames = _as_frames(video)
    size = frames.shape[1:3]
    if frames.shape[0] < 1 or min(size) < 1:
        raise KinemaError(f"cannot judge an empty video of shape {frames.shape}")
    classes = classify(frames)
    # Components only for the colours judged (every palette colour for an empty scene).
    wanted = [COLORS.index(o.color) for o in scene.objects] if scene.objects else list(range(len(COLORS)))
    object_classes = np.where(np.isin(classes, wanted), classes, -1)
    roots = label_components(object_classes)
    checks: dict[str, Check] = {}
    if not scene.objects:
        checks["empty"] = _check_empty(roots, object_classes, size)
    regions = [_largest_region(roots, classes == COLORS.index(o.color)) for o in scene.objects]
    background_rgb = _background_rgb(frames, classes, scene.background)
    for k, obj in enumerate(scene.objects):
        later, rest = regions[k + 1:], regions[:k] + regions[k + 1:]
        cover = np.logical_or.reduce(later) if later else None
        others = np.logical_or.reduce(rest) if rest else None
        prefix = f"object{k + 1}." if len(scene.objects) > 1 else ""
        for name, check in _judge_object(obj, frames, classes, regions[k], others, cover, background_rgb).items():
            checks[prefix + name] = check
    checks["background"] = _check_background(classes, scene.background)
    return Judgement(all(c.passed for c in checks.values()), checks, format_caption(scene))


__all__ = ["Check", "Judgement", "judge", "classify", "label_components"]
