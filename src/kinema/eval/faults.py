"""Fault injection: turn a clean clip into one with a known temporal fault, for testing the QA gate.

`inject(frames, kind, strength, rng)` returns the faulty clip and an info dict naming the
frames touched. strength in (0, 1] scales the fault from barely visible to obvious; what it
scales is stated per kind below (and in docs/QA_GATE.md). Every draw comes from `rng`, so a
seeded generator reproduces an injection exactly. Clips are uint8 (T, H, W, 3).

  flicker      a burst of frames each shifted in brightness by +-0.08 * strength (all channels,
               random sign per frame), over max(3, T/4) frames
  frozen       one frame held over the next 1 + round(strength * T/4) frames (the clip stalls,
               then jumps on: frames are replaced, the length stays T)
  dropped      ceil(4 * strength) consecutive frames removed (1..4): the clip is shorter
               and its motion jumps once
  color_drift  an RGB offset growing linearly from 0 at frame 0 to 0.25 * strength along a
               random direction at the last frame (each channel away from the saturation end
               its clip mean is nearer to)
  morph        a Gaussian bump displacement (sigma 0.1 * short side, amplitude 0.12 * strength *
               short side) warps a textured spot of two consecutive frames
  cut          from a random frame on, the clip continues rotated by 180 degrees with its colour
               channels rolled, mixed in by `strength` (a cut to a different shot)
  noise        Gaussian noise of sigma 0.06 * strength added to 1-3 consecutive frames
"""

from __future__ import annotations

import numpy as np

from kinema.errors import KinemaError

FAULT_KINDS = ("flicker", "frozen", "dropped", "color_drift", "morph", "cut", "noise")
MIN_FRAMES = 9  # room for a fault away from both ends, with clean context on each side


class FaultError(KinemaError):
    """A fault that cannot be injected: unknown kind, bad strength, too short a clip."""


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _start(rng: np.random.Generator, t: int, length: int) -> int:
    """A first frame for a fault spanning `length` frames, with >= 2 clean frames before it and after it."""
    lo, hi = 2, max(2, t - 2 - length)
    return int(rng.integers(lo, hi + 1))


def _flicker(frames, strength, rng):
    t = len(frames)
    length = max(3, t // 4)
    start = _start(rng, t, length)
    touched = list(range(start, start + length))
    signs = rng.choice([-1.0, 1.0], size=length)
    out = frames.astype(np.float32)
    out[touched] += (signs * 0.08 * strength * 255.0)[:, None, None, None]
    return _to_uint8(out), {"frames": touched, "offsets": (signs * 0.08 * strength).tolist()}


def _frozen(frames, strength, rng):
    t = len(frames)
    hold = 1 + int(round(strength * t / 4))
    start = _start(rng, t, hold + 1)
    out = frames.copy()
    out[start + 1 : start + 1 + hold] = frames[start]
    return out, {"frames": list(range(start + 1, start + 1 + hold)), "held_frame": start}


def _dropped(frames, strength, rng):
    t = len(frames)
    count = max(1, int(np.ceil(4 * strength - 1e-9)))
    start = _start(rng, t, count)
    removed = list(range(start, start + count))
    out = np.delete(frames, removed, axis=0)
    # in the output, the jump is the transition (start - 1) -> start
    return out, {"frames": [start - 1, start], "removed": removed}


def _color_drift(frames, strength, rng):
    t = len(frames)
    direction = np.abs(rng.normal(size=3))
    # each channel drifts away from the saturation end it is nearer to, so clipping cannot erase it
    direction *= np.where(frames.mean(axis=(0, 1, 2)) > 127.5, -1.0, 1.0)
    direction /= np.linalg.norm(direction)
    ramp = np.linspace(0.0, 1.0, t)[:, None] * direction * 0.25 * strength * 255.0  # (T, 3)
    out = frames.astype(np.float32) + ramp[:, None, None, :]
    return _to_uint8(out), {"frames": list(range(t)), "direction": direction.tolist()}


def _morph(frames, strength, rng):
    import cv2

    t, h, w, _ = frames.shape
    start = _start(rng, t, 2)
    side = min(h, w)
    sigma, amplitude = 0.1 * side, 0.12 * strength * side
    # centre on a textured spot (strong smoothed gradient) so that the warp is visible
    luma = frames[start].astype(np.float32).mean(-1)
    grad = np.hypot(cv2.Sobel(luma, cv2.CV_32F, 1, 0), cv2.Sobel(luma, cv2.CV_32F, 0, 1))
    grad = cv2.GaussianBlur(grad, (0, 0), sigma)
    margin = int(sigma)
    inner = grad[margin : h - margin, margin : w - margin]
    candidates = np.argsort(inner.ravel())[-max(1, inner.size // 50) :]  # top 2% of positions
    cy, cx = np.unravel_index(int(rng.choice(candidates)), inner.shape)
    cy, cx = cy + margin, cx + margin
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    bump = amplitude * np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma**2))  # (H, W)
    map_x = (xs - bump * np.cos(angle)).astype(np.float32)  # out(x) = in(x - d(x))
    map_y = (ys - bump * np.sin(angle)).astype(np.float32)
    out = frames.copy()
    for i in (start, start + 1):
        out[i] = cv2.remap(frames[i], map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out, {"frames": [start, start + 1], "center": (int(cx), int(cy)), "amplitude_px": float(amplitude)}


def _cut(frames, strength, rng):
    t = len(frames)
    start = _start(rng, t, 1)
    shot = frames[start:, ::-1, ::-1].astype(np.float32)  # rotated 180 degrees
    shot = (1.0 - strength) * shot + strength * np.roll(shot, 1, axis=-1)  # colours rolled R->G->B->R
    out = frames.copy()
    out[start:] = _to_uint8(shot)
    return out, {"frames": [start - 1, start]}


def _noise(frames, strength, rng):
    t = len(frames)
    length = int(rng.integers(1, 4))
    start = _start(rng, t, length)
    touched = list(range(start, start + length))
    out = frames.astype(np.float32)
    out[touched] += rng.normal(0.0, 0.06 * strength * 255.0, size=out[touched].shape).astype(np.float32)
    return _to_uint8(out), {"frames": touched}


_INJECTORS = {
    "flicker": _flicker, "frozen": _frozen, "dropped": _dropped, "color_drift": _color_drift,
    "morph": _morph, "cut": _cut, "noise": _noise,
}


def inject(frames: np.ndarray, kind: str, strength: float, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """A copy of `frames` (uint8 (T, H, W, 3), T >= MIN_FRAMES) with one fault of `kind` at
    `strength` in (0, 1]; info = {"kind", "strength", "frames": touched frame indices of the
    output clip, ...kind-specific details}."""
    if kind not in _INJECTORS:
        raise FaultError(f"unknown fault {kind!r}; use one of {', '.join(FAULT_KINDS)}")
    if not (0.0 < float(strength) <= 1.0):
        raise FaultError(f"fault strength must be in (0, 1], got {strength}")
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise FaultError("faults are injected into uint8 frames shaped (T, H, W, 3)")
    if len(frames) < MIN_FRAMES:
        raise FaultError(f"fault injection needs at least {MIN_FRAMES} frames, got {len(frames)}")
    out, info = _INJECTORS[kind](frames, float(strength), rng)
    return out, {"kind": kind, "strength": float(strength), **info}
