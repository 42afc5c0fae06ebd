"""Temporal-consistency metrics of one clip, with no reference: flicker, warping error, motion.

Every metric is computed on an analysis copy of the clip whose long side is at most
ANALYSIS_LONG_SIDE pixels (area-downscaled; smaller clips are used as they are), so a 720p
clip costs about what a 256 x 144 one does. Flow-based distances are reported in pixels of
the *input* clip. Optical flow is OpenCV's DIS (Kroeger et al. 2016, "Fast Optical Flow
using Dense Inverse Search"), or Farneback (2003) on request; both run on luma.

For each transition t -> t+1 the forward flow F_t (t -> t+1) and the backward flow B_t
(t+1 -> t) are computed. Frame t warped onto frame t+1 is W_t(x) = frame_t(x + B_t(x)).
A pixel of frame t+1 counts as visible in frame t (not occluded) when the flows agree
forward-backward, |B_t(x) + F_t(x + B_t(x))|^2 < 0.01 (|B_t|^2 + |F_t(x + B_t)|^2) + 0.5
(Sundaram et al. 2010, "Dense point trajectories by GPU-accelerated large displacement
optical flow", eq. 5; the occlusion test of Lai et al. 2018's warping error), and x + B_t(x)
lies inside the frame. Each metric's meaning and range is in METRIC_DOCS.

morph_peak follows each pixel of frame t along the flows over five transitions t-2 .. t+2
(velocities u_-1, u_0, u_1, u_2, u_3 along its trajectory) and looks for a local displacement
d added to frames t and t+1 only: the velocity residuals of linear interpolation,
e_0 = u_0 - (u_-1 + u_1) / 2 and e_2 = u_2 - (u_1 + u_3) / 2, are then +d and -d (there and
exactly back), while e_1 = u_1 - (u_-1 + u_3) / 2, the symmetric part (e_0 + e_2) / 2 and
u_-1 - u_3 stay 0. Smooth motion at any speed leaves all of them near 0; a steady uneven
cadence (alternating slow and fast transitions) gives e_0 = e_2, not e_0 = -e_2; real
back-and-forth motion (pedalling legs) gives a slowly turning velocity whose residuals are a
small share of it. The fields are averaged over a Gaussian neighbourhood (sigma
MORPH_BLUR x short side) weighted by texture and forward-backward consistency (a flow is
observed only where there is texture, and is unreliable where it fails the check), and the
score is |there-and-back| minus what a morph does not have (MORPH_PENALTY x |e_1|, the
symmetric part, |u_-1 - u_3|) minus MORPH_SPEED x the local speed (flow error grows with it),
times the local share of consistent pixels (fast, motion-blurred content fails the check
and its flow is no evidence). Velocities are taken relative to each field's median over the
frame (the camera's motion), and the peak over the frame is reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kinema.errors import KinemaError

ANALYSIS_LONG_SIDE = 256
MIN_SIDE = 16  # DIS needs a few pyramid levels of 8-px patches; smaller frames give noise
FLOW_METHODS = ("dis", "farneback")
DIS_MIN_SIDE = 12  # OpenCV's DIS needs a frame with width or height >= 12
LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601 luma weights, as cv2.cvtColor uses
# A transition whose frames differ by less than 0.15 grey levels on average is a repeat: the
# repeated frames of bigbuckbunny.mp4 (24 -> 25 fps), decoded and resized, differ by
# 0.04-0.10 levels, while the stillest clean transition measured (carphone_distorted, a
# low-bitrate encode of a static camera) differs by 0.17 (docs/QA_GATE.md).
DUPLICATE_DIFF = 0.15 / 255
ACCEL_BLUR = 0.05  # accel_peak averages acceleration over a Gaussian of this * short side
MOVING_PX = 0.5  # a pixel moves if its flow exceeds this many analysis pixels per frame
MORPH_BLUR = 0.05  # morph_peak averages over a Gaussian of this * short side
MORPH_TEXTURE = 0.02  # luma gradient (0..1 per pixel) at which a pixel's flow counts half in morph_peak
MORPH_PENALTY = 0.5  # weight of the middle transition's residual |e_1| in morph_peak (see the docstring)
MORPH_SPEED = 0.5  # weight of the local speed (relative to the frame's median motion) in morph_peak

METRIC_DOCS: dict[str, str] = {
    "frame_diff": "per transition: mean |frame_{t+1} - frame_t| over pixels and RGB channels, in [0, 1]",
    "flicker": (
        "per frame: |second temporal difference| of luma along the motion, (r_{t-1} - r_t) / 2 with r_t the "
        "mean signed luma change of visible pixels across t -> t+1 after flow warping; still content gives the "
        "plain temporal second difference; 0 at the two end frames; in [0, 1], clean clips < 0.01"
    ),
    "warp_error": "per transition: mean |frame_{t+1} - warp(frame_t)| over visible pixels and channels, in [0, 1]",
    "flow_magnitude": "per transition: mean optical-flow length in input pixels per frame, >= 0",
    "flow_accel": (
        "per pair of transitions: mean |F_{t+1}(x + F_t(x)) - F_t(x)| (acceleration along the trajectory) over "
        "visible pixels, input pixels per frame^2, >= 0; 0 for constant velocity"
    ),
    "accel_peak": (
        "per pair of transitions: peak length of the trajectory acceleration minus its median, averaged "
        "over a Gaussian neighbourhood (sigma 5% of the short side), as a fraction of the short side, >= 0; "
        "a local morph shows here"
    ),
    "morph_peak": (
        "per transition t: peak over the frame of a local there-and-back displacement d added to frames t and "
        "t+1 only (velocity residuals +d, then -d, along the trajectories over transitions t-2..t+2), less the "
        "residuals a morph does not leave and half the local speed, averaged over a texture-weighted Gaussian "
        "neighbourhood (sigma 5% of the short side), as a fraction of the short side, >= 0; 0 for the first "
        "two and last two transitions; a local morph of two frames shows here (see the module docstring)"
    ),
    "noise_level": (
        "per frame: Immerkaer (1996) fast noise estimate sigma of the analysis luma, in [0, 1] "
        "(texture adds to it; compare within a clip)"
    ),
    "warp_error_all": (
        "per transition: mean |frame_{t+1} - warp(frame_t) - its mean per channel| over all pixels, occluded "
        "ones included, in [0, 1]; a cut shows here, a global brightness change does not"
    ),
    "occluded_fraction": "per transition: fraction of frame t+1's pixels not visible in frame t, in [0, 1]",
    "moving_fraction": f"per transition: fraction of pixels whose flow exceeds {MOVING_PX} analysis px, in [0, 1]",
    "color_residual": (
        "per transition (3 channels): mean signed RGB change of visible pixels after warping, in [-1, 1]; "
        "colour change the motion does not explain"
    ),
    "color_mean": "per frame (3 channels): mean RGB, in [0, 1]",
    "frame_diff_mean": "mean of frame_diff, in [0, 1]",
    "frame_diff_max": "max of frame_diff, in [0, 1]",
    "flicker_mean": "mean of flicker over the inner frames, in [0, 1]",
    "flicker_max": "max of flicker, in [0, 1]",
    "warp_error_mean": "mean of warp_error, in [0, 1]; lower is more consistent",
    "warp_error_max": "max of warp_error, in [0, 1]",
    "flow_magnitude_mean": "mean of flow_magnitude, input px per frame",
    "flow_accel_mean": "mean of flow_accel, input px per frame^2",
    "motion_smoothness": "1 / (1 + flow_accel_mean), in (0, 1]; 1 = every point at constant velocity",
    "dynamic_degree": "mean of moving_fraction: how much of the frame moves, in [0, 1]",
    "frozen_fraction": f"fraction of transitions with frame_diff < {DUPLICATE_DIFF:.5f} (repeats), in [0, 1]",
    "duplicate_count": "number of transitions with frame_diff < DUPLICATE_DIFF (repeated frames), >= 0",
    "noise_level_mean": "mean of noise_level, in [0, 1]",
    "occluded_fraction_mean": "mean of occluded_fraction, in [0, 1]",
    "drift_color": "max over segments of |mean RGB(segment) - mean RGB(first segment)| / sqrt(3), in [0, 1]",
    "drift_color_std": "max over segments of |std RGB(segment) - std RGB(first segment)| / sqrt(3), in [0, 1]",
    "drift_structure": "max over segments of 1 - SSIM(segment's middle frame, first segment's), luma, in [0, 2]",
    "drift_color_compensated": (
        "max over segments of |mean cumulative colour_residual(segment) - (first segment)| / sqrt(3), in [0, 1]: "
        "colour drift that the motion does not explain"
    ),
}


class TemporalError(KinemaError):
    """A clip the temporal metrics cannot measure: wrong type, shape, or too short or small."""


def _check_frames(frames: object) -> np.ndarray:
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        got = f"{frames.dtype} array {frames.shape}" if isinstance(frames, np.ndarray) else type(frames).__name__
        raise TemporalError(f"temporal metrics need uint8 frames shaped (T, H, W, 3), got {got}")
    t, h, w, _ = frames.shape
    if t < 2:
        raise TemporalError(f"temporal metrics need at least 2 frames, got {t}")
    if min(h, w) < MIN_SIDE:
        raise TemporalError(f"temporal metrics need frames of at least {MIN_SIDE}x{MIN_SIDE} pixels, got {h}x{w}")
    return frames


def _cv2():
    try:
        import cv2
    except ImportError as err:  # the `eval` extra
        raise TemporalError("temporal metrics need OpenCV: pip install 'kinema[eval]' "
                            "(opencv-python-headless)") from err
    return cv2


def _gray(image: np.ndarray) -> np.ndarray:
    """uint8 (H, W) luma of an (H, W, 3) RGB or (H, W) image."""
    if image.ndim == 2:
        return np.ascontiguousarray(image, dtype=np.uint8)
    return _cv2().cvtColor(np.ascontiguousarray(image, dtype=np.uint8), _cv2().COLOR_RGB2GRAY)


def optical_flow(a: np.ndarray, b: np.ndarray, method: str = "dis") -> np.ndarray:
    """Dense flow (H, W, 2) float32, (dx, dy) per pixel of `a`, such that a(x) ~ b(x + flow(x)).

    a, b: uint8 (H, W, 3) RGB or (H, W) grey, same size. method "dis" (OpenCV DIS, medium
    preset) or "farneback".
    """
    if method not in FLOW_METHODS:
        raise TemporalError(f"unknown flow method {method!r}; use one of {', '.join(FLOW_METHODS)}")
    if a.shape[:2] != b.shape[:2]:
        raise TemporalError(f"flow needs two frames of one size, got {a.shape[:2]} and {b.shape[:2]}")
    cv2 = _cv2()
    ga, gb = _gray(a), _gray(b)
    if method == "dis":
        h, w = ga.shape
        if max(h, w) < DIS_MIN_SIDE:  # DIS refuses frames this small: flow on a replicate-padded copy
            pad = dict(top=0, bottom=DIS_MIN_SIDE - h, left=0, right=DIS_MIN_SIDE - w, borderType=cv2.BORDER_REPLICATE)
            ga, gb = cv2.copyMakeBorder(ga, **pad), cv2.copyMakeBorder(gb, **pad)
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        return dis.calc(ga, gb, None)[:h, :w]
    # pyramid scale 0.5, 4 levels, 15-px window, 3 iterations, poly_n 5, poly_sigma 1.2
    return cv2.calcOpticalFlowFarneback(ga, gb, None, 0.5, 4, 15, 3, 5, 1.2, 0)


def pixel_grid(h: int, w: int) -> np.ndarray:
    """(h, w, 2) float32 pixel coordinates (x, y): the identity warp that flows are added to."""
    return np.stack(np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)), axis=-1)


def remap(image: np.ndarray, flow: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """image sampled at grid + flow (bilinear, edges replicated); image (H, W[, C]) float32."""
    cv2 = _cv2()
    coords = grid + flow  # (H, W, 2)
    return cv2.remap(image, coords[..., 0], coords[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _consistent(flow: np.ndarray, back_at_target: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """(H, W) bool: forward-backward consistent (Sundaram et al. 2010 eq. 5) and landing inside."""
    h, w = flow.shape[:2]
    dist = np.square(flow + back_at_target).sum(-1)
    bound = 0.01 * (np.square(flow).sum(-1) + np.square(back_at_target).sum(-1)) + 0.5
    target = grid + flow
    inside = (target[..., 0] >= 0) & (target[..., 0] <= w - 1) & (target[..., 1] >= 0) & (target[..., 1] <= h - 1)
    return (dist < bound) & inside


def _noise_sigma(luma: np.ndarray) -> float:
    """Immerkaer 1996, "Fast noise variance estimation", eq. 3: sigma from |luma * N|, N the
    3x3 difference of two Laplacians (zero response to linear ramps)."""
    kernel = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)
    response = _cv2().filter2D(luma, -1, kernel, borderType=_cv2().BORDER_REFLECT)[1:-1, 1:-1]
    h, w = luma.shape
    return float(np.sqrt(np.pi / 2) * np.abs(response).sum() / (6.0 * (w - 2) * (h - 2)))


def _segments(t: int, segments: int) -> list[np.ndarray]:
    if segments < 1:
        raise TemporalError(f"segments must be >= 1, got {segments}")
    return [s for s in np.array_split(np.arange(t), min(segments, t)) if len(s)]


def _ssim_luma(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM (Wang et al. 2004, eq. 13; Gaussian window sigma 1.5) of two float luma
    images in [0, 1]; kinema.eval.metrics.ssim is the reference-clip version."""
    cv2 = _cv2()
    blur = lambda v: cv2.GaussianBlur(v, (11, 11), 1.5)  # noqa: E731
    mx, my = blur(a), blur(b)
    vx, vy, cov = blur(a * a) - mx * mx, blur(b * b) - my * my, blur(a * b) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    ssim_map = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(ssim_map.mean())


def drift(frames: np.ndarray, segments: int = 4) -> dict[str, float]:
    """Colour statistics and structure of each of `segments` equal time segments against the
    first: drift_color, drift_color_std, drift_structure (see METRIC_DOCS). frames uint8 (T, H, W, 3)."""
    return _drift_of(_analysis_copy(_check_frames(frames))[0], segments)


def _drift_of(small: np.ndarray, segments: int) -> dict[str, float]:
    """drift() of an analysis copy, float32 (T, h, w, 3) in [0, 1]."""
    parts = _segments(len(small), segments)
    means = np.stack([small[p].mean(axis=(0, 1, 2)) for p in parts])  # (S, 3)
    stds = np.stack([small[p].std(axis=(0, 1, 2)) for p in parts])  # (S, 3)
    luma = small @ LUMA.astype(np.float32)  # (T, h, w)
    middles = [luma[p[len(p) // 2]] for p in parts]
    return {
        "drift_color": float(np.linalg.norm(means - means[0], axis=1).max() / np.sqrt(3)),
        "drift_color_std": float(np.linalg.norm(stds - stds[0], axis=1).max() / np.sqrt(3)),
        "drift_structure": float(max(1.0 - _ssim_luma(middles[0], m) for m in middles)),
    }


def _coherent_peak(change: np.ndarray, ok: np.ndarray) -> float:
    """Largest length of a locally averaged field `change` (h, w, C) after removing its median
    (for acceleration, the camera's own). The average is a normalized Gaussian convolution over
    the visible pixels `ok` (h, w) with sigma ACCEL_BLUR * short side: a coherent local warp
    keeps its length, while the isolated flow errors at motion boundaries average away."""
    cv2 = _cv2()
    sigma = ACCEL_BLUR * min(ok.shape)
    weight = ok.astype(np.float32)
    centred = (change - np.median(change[ok], axis=0)) * weight[..., None]
    num = cv2.GaussianBlur(centred, (0, 0), sigma, borderType=cv2.BORDER_CONSTANT)
    den = cv2.GaussianBlur(weight, (0, 0), sigma, borderType=cv2.BORDER_CONSTANT)
    if num.ndim == 2:  # cv2 drops a trailing axis of length 1
        num = num[..., None]
    mean = num / np.maximum(den, 1e-6)[..., None]
    return float(np.linalg.norm(mean, axis=-1)[den > 0.25].max(initial=0.0))


def _texture_weight(gray: np.ndarray) -> np.ndarray:
    """(h, w) float32 in [0, 1): g^2 / (g^2 + MORPH_TEXTURE^2), g the luma gradient length (0..1
    per pixel, 3x3 Sobel / 8): where a displacement can be seen at all."""
    cv2 = _cv2()
    luma = gray.astype(np.float32) / 255.0
    gx = cv2.Sobel(luma, cv2.CV_32F, 1, 0, ksize=3) / 8.0
    gy = cv2.Sobel(luma, cv2.CV_32F, 0, 1, ksize=3) / 8.0
    energy = gx * gx + gy * gy
    return energy / (energy + MORPH_TEXTURE**2)


def _morph_peaks(forward: list[np.ndarray], backward: list[np.ndarray], forward_ok: list[np.ndarray],
                 gray: list[np.ndarray], grid: np.ndarray) -> np.ndarray:
    """morph_peak (T-1,) from the flows of every transition: forward[t] (t -> t+1, on frame t's
    grid), backward[t] (t+1 -> t, on frame t+1's grid), forward_ok[t] their consistency on
    frame t, gray the analysis luma frames (see the module docstring)."""
    cv2 = _cv2()
    n = len(forward)
    h, w = grid.shape[:2]
    out = np.zeros(n)
    if n < 5:
        return out
    # the neighbourhood average runs at half resolution (the Gaussian is >= 5% of the short side wide)
    half = (w // 2, h // 2)  # cv2 takes (W, H); an exact 2x2 area average (any number of channels)
    sigma = MORPH_BLUR * min(h, w) / 2.0
    ones = np.ones((half[1], half[0]), np.float32)
    inside = cv2.GaussianBlur(ones, (0, 0), sigma, borderType=cv2.BORDER_CONSTANT) > 0.25  # away from the border
    for i in range(2, n - 2):
        u1 = forward[i]  # velocities along the trajectory through pixel x of frame i
        u2 = remap(forward[i + 1], u1, grid)
        u3 = remap(forward[i + 2], u1 + u2, grid)
        u0 = -backward[i - 1]
        um1 = -remap(backward[i - 2], backward[i - 1], grid)
        e0, e2 = u0 - (um1 + u1) / 2, u2 - (u1 + u3) / 2
        fields = [(e0 - e2) / 2, (e0 + e2) / 2, u1 - (um1 + u3) / 2, um1 - u3, u1, um1, u3]  # 7 x (h, w, 2)
        stack = np.concatenate([f - np.median(f[::2, ::2].reshape(-1, 2), axis=0) for f in fields], axis=-1)
        weight = _texture_weight(gray[i]) * forward_ok[i]
        if weight.mean() < 1e-3:
            weight = np.ones_like(weight)
        both = np.concatenate([stack * weight[..., None], forward_ok[i][..., None].astype(np.float32),
                               weight[..., None]], axis=-1)
        both = np.ascontiguousarray(both[: 2 * half[1], : 2 * half[0]])
        both = cv2.GaussianBlur(cv2.resize(both, half, interpolation=cv2.INTER_AREA), (0, 0), sigma,
                                borderType=cv2.BORDER_CONSTANT)
        mean = both[..., :-2] / np.maximum(both[..., -1:], 1e-6)
        consistent = both[..., -2]  # local share of forward-backward consistent pixels
        there_back, same, middle, outer, s1, sm1, s3 = (np.hypot(mean[..., 2 * k], mean[..., 2 * k + 1])
                                                        for k in range(7))
        score = (there_back - same - MORPH_PENALTY * middle - outer
                 - MORPH_SPEED * np.maximum(np.maximum(s1, sm1), s3))
        score = score * consistent  # fast, blurred motion fails the consistency check: its flow is not evidence
        out[i] = max(0.0, float(score[inside].max(initial=0.0))) / min(h, w)
    return out


def _analysis_copy(frames: np.ndarray) -> tuple[np.ndarray, float]:
    """float32 (T, h, w, 3) in [0, 1] with long side <= ANALYSIS_LONG_SIDE, and the scale h / H."""
    t, h, w, _ = frames.shape
    scale = min(1.0, ANALYSIS_LONG_SIDE / max(h, w))
    if scale < 1.0:
        cv2 = _cv2()
        size = (max(MIN_SIDE, round(w * scale)), max(MIN_SIDE, round(h * scale)))  # cv2 takes (W, H)
        frames = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])
        scale = frames.shape[1] / h
    return frames.astype(np.float32) / 255.0, scale


@dataclass
class TemporalMetrics:
    """Per-frame and per-transition series of one clip (T frames); all float64. See METRIC_DOCS."""

    frame_diff: np.ndarray  # (T-1,)
    flicker: np.ndarray  # (T,)
    warp_error: np.ndarray  # (T-1,)
    flow_magnitude: np.ndarray  # (T-1,)
    flow_accel: np.ndarray  # (T-2,)
    color_mean: np.ndarray  # (T, 3)
    accel_peak: np.ndarray  # (T-2,)
    noise_level: np.ndarray  # (T,)
    occluded_fraction: np.ndarray  # (T-1,)
    moving_fraction: np.ndarray  # (T-1,)
    color_residual: np.ndarray  # (T-1, 3)
    warp_error_all: np.ndarray  # (T-1,)
    morph_peak: np.ndarray  # (T-1,), 0 at the first two and last two transitions
    drift_stats: dict[str, float] = field(default_factory=dict)  # drift(frames)

    def compensated_color_drift(self, skip: np.ndarray | None = None, segments: int = 4) -> float:
        """drift_color_compensated: the colour path (T, 3) accumulated from color_residual,
        leaving out the transitions marked in `skip` (T-1,) bool (cuts, flicker), compared
        segment by segment with the first segment."""
        steps = self.color_residual.copy()
        if skip is not None:
            steps[np.asarray(skip, dtype=bool)] = 0.0
        path = np.concatenate([np.zeros((1, 3)), np.cumsum(steps, axis=0)])  # (T, 3)
        means = np.stack([path[p].mean(axis=0) for p in _segments(len(path), segments)])
        return float(np.linalg.norm(means - means[0], axis=1).max() / np.sqrt(3))

    def summary(self) -> dict[str, float]:
        """One float per metric (keys documented in METRIC_DOCS)."""
        inner = self.flicker[1:-1] if len(self.flicker) > 2 else self.flicker
        repeats = self.frame_diff < DUPLICATE_DIFF
        accel_mean = float(self.flow_accel.mean()) if len(self.flow_accel) else 0.0
        return {
            "frame_diff_mean": float(self.frame_diff.mean()),
            "frame_diff_max": float(self.frame_diff.max()),
            "flicker_mean": float(inner.mean()),
            "flicker_max": float(self.flicker.max()),
            "warp_error_mean": float(self.warp_error.mean()),
            "warp_error_max": float(self.warp_error.max()),
            "flow_magnitude_mean": float(self.flow_magnitude.mean()),
            "flow_accel_mean": accel_mean,
            "motion_smoothness": 1.0 / (1.0 + accel_mean),
            "dynamic_degree": float(self.moving_fraction.mean()),
            "frozen_fraction": float(repeats.mean()),
            "duplicate_count": float(repeats.sum()),
            "noise_level_mean": float(self.noise_level.mean()),
            "occluded_fraction_mean": float(self.occluded_fraction.mean()),
            **{k: float(v) for k, v in self.drift_stats.items()},
            "drift_color_compensated": self.compensated_color_drift(),
        }

    def per_frame(self) -> dict[str, np.ndarray]:
        """The series the QA gate reads, for plots: name -> (T,), (T-1,) or (T-2,) array (see the
        field comments); color_mean (T, 3) has one column per RGB channel. The other fields are
        series too."""
        names = ("frame_diff", "flicker", "warp_error", "warp_error_all", "flow_magnitude", "flow_accel",
                 "morph_peak", "noise_level", "color_mean")
        return {n: getattr(self, n) for n in names}


def temporal_metrics(frames: np.ndarray, *, flow: str = "dis") -> TemporalMetrics:
    """All temporal metrics of a clip. frames: uint8 (T, H, W, 3), T >= 2, H, W >= 16."""
    frames = _check_frames(frames)
    if flow not in FLOW_METHODS:
        raise TemporalError(f"unknown flow method {flow!r}; use one of {', '.join(FLOW_METHODS)}")
    cv2 = _cv2()
    rgb, scale = _analysis_copy(frames)  # (T, h, w, 3) float32
    t, h, w, _ = rgb.shape
    gray = [cv2.cvtColor((f * 255.0 + 0.5).astype(np.uint8), cv2.COLOR_RGB2GRAY) for f in rgb]
    luma = rgb @ LUMA.astype(np.float32)  # (T, h, w)
    grid = pixel_grid(h, w)  # (h, w, 2)

    forward, backward, forward_ok = [], [], []
    warp_error, warp_error_all, occluded, moving = (np.zeros(t - 1) for _ in range(4))
    color_residual = np.zeros((t - 1, 3))
    for i in range(t - 1):
        fwd = optical_flow(gray[i], gray[i + 1], flow)  # (h, w, 2) on frame i's grid
        bwd = optical_flow(gray[i + 1], gray[i], flow)  # (h, w, 2) on frame i+1's grid
        visible = _consistent(bwd, remap(fwd, bwd, grid), grid)  # (h, w) on frame i+1
        forward.append(fwd)
        backward.append(bwd)
        forward_ok.append(_consistent(fwd, remap(bwd, fwd, grid), grid))  # (h, w) on frame i
        warped = remap(rgb[i], bwd, grid)  # frame i seen from frame i+1: (h, w, 3)
        diff = rgb[i + 1] - warped
        pick = visible if visible.mean() >= 0.01 else np.ones_like(visible)  # nothing visible: judge all
        color_residual[i] = diff[pick].mean(axis=0)
        warp_error[i] = np.abs(diff[pick]).mean()
        warp_error_all[i] = np.abs(diff - diff.mean(axis=(0, 1))).mean()
        occluded[i] = 1.0 - visible.mean()
        moving[i] = (np.linalg.norm(fwd, axis=-1) > MOVING_PX).mean()

    accel, accel_peak = np.zeros(max(t - 2, 0)), np.zeros(max(t - 2, 0))
    for i in range(t - 2):
        # F_{i+1} at the point x + F_i(x) reached from x: the velocity change along the trajectory
        change = remap(forward[i + 1], forward[i], grid) - forward[i]  # (h, w, 2)
        ok = forward_ok[i] if forward_ok[i].mean() >= 0.01 else np.ones((h, w), dtype=bool)
        accel[i] = np.linalg.norm(change[ok], axis=-1).mean() / scale
        accel_peak[i] = _coherent_peak(change, ok) / min(h, w)

    morph_peak = _morph_peaks(forward, backward, forward_ok, gray, grid)
    r = color_residual @ LUMA  # (T-1,) signed luma change after motion compensation
    flicker = np.zeros(t)
    flicker[1:-1] = np.abs(r[:-1] - r[1:]) / 2.0

    frame_diff = np.array([np.abs(frames[i + 1].astype(np.int16) - frames[i]).mean() / 255.0 for i in range(t - 1)])
    return TemporalMetrics(
        frame_diff=frame_diff,
        flicker=flicker,
        warp_error=warp_error,
        flow_magnitude=np.array([np.linalg.norm(f, axis=-1).mean() / scale for f in forward], dtype=np.float64),
        flow_accel=accel,
        color_mean=rgb.mean(axis=(1, 2)).astype(np.float64),
        accel_peak=accel_peak,
        noise_level=np.array([_noise_sigma(y) for y in luma]),
        occluded_fraction=occluded,
        moving_fraction=moving,
        color_residual=color_residual,
        warp_error_all=warp_error_all,
        morph_peak=morph_peak,
        drift_stats=_drift_of(rgb, 4),
    )
