"""kinema.eval.temporal: flow, warping error, flicker, repeats and drift on clips with known answers."""

import json

import numpy as np
import pytest

pytest.importorskip("cv2")

from kinema.errors import KinemaError  # noqa: E402
from kinema.eval.temporal import (  # noqa: E402
    METRIC_DOCS,
    TemporalMetrics,
    drift,
    optical_flow,
    temporal_metrics,
)


def texture(size: int = 160, seed: int = 0) -> np.ndarray:
    """A smooth random RGB texture, uint8 (size, size, 3): trackable at every pixel."""
    import cv2

    noise = np.random.default_rng(seed).random((size, size, 3)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), 2.0)
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    return (smooth * 255).astype(np.uint8)


def translating_clip(frames: int = 9, step: tuple[int, int] = (2, 1), size: int = 64) -> np.ndarray:
    """Windows of one texture moving by `step` = (dx, dy) px per frame: uint8 (T, size, size, 3)."""
    big = texture(size + 40)
    dx, dy = step
    return np.stack([big[20 - t * dy : 20 - t * dy + size, 20 - t * dx : 20 - t * dx + size] for t in range(frames)])


@pytest.mark.parametrize("method", ["dis", "farneback"])
def test_flow_recovers_a_known_shift(method):
    clip = translating_clip(frames=2, step=(3, 2))  # content moves +3 px in x, +2 px in y
    flow = optical_flow(clip[0], clip[1], method)
    assert flow.shape == (64, 64, 2)
    inner = flow[8:-8, 8:-8].reshape(-1, 2)
    assert np.allclose(np.median(inner, axis=0), [3.0, 2.0], atol=0.5)
    assert np.abs(inner.mean(axis=0) - [3.0, 2.0]).max() < 0.5


def test_pure_translation_has_near_zero_warp_error_and_constant_motion():
    clip = translating_clip(frames=9, step=(2, 1))
    m = temporal_metrics(clip)
    assert m.warp_error.max() < 0.01  # the flow explains the change...
    assert m.frame_diff.min() > 5 * m.warp_error.max()  # ...which is large without it
    assert np.allclose(m.flow_magnitude, np.hypot(2, 1), atol=0.3)
    assert m.flow_accel.max() < 0.3  # constant velocity
    assert m.summary()["motion_smoothness"] > 0.8
    assert m.summary()["dynamic_degree"] > 0.9
    assert m.flicker.max() < 0.003


def test_shapes_follow_the_documented_layout():
    clip = translating_clip(frames=7)
    m = temporal_metrics(clip)
    t = len(clip)
    expected = {"frame_diff": (t - 1,), "flicker": (t,), "warp_error": (t - 1,), "flow_magnitude": (t - 1,),
                "flow_accel": (t - 2,), "color_mean": (t, 3), "accel_peak": (t - 2,), "noise_level": (t,),
                "occluded_fraction": (t - 1,), "moving_fraction": (t - 1,), "color_residual": (t - 1, 3),
                "warp_error_all": (t - 1,), "morph_peak": (t - 1,)}
    for name, shape in expected.items():
        assert getattr(m, name).shape == shape, name
        assert getattr(m, name).dtype == np.float64, name
    series = m.per_frame()
    assert set(series) <= set(expected) and {"frame_diff", "flicker", "warp_error", "color_mean"} <= set(series)
    summary = m.summary()
    json.dumps(summary)
    assert all(isinstance(v, float) and np.isfinite(v) for v in summary.values())
    assert set(summary) | set(series) <= set(METRIC_DOCS)  # every reported name is documented
    assert 0 <= summary["frame_diff_mean"] <= 1 and 0 <= summary["warp_error_mean"] <= 1


def test_flicker_is_high_for_alternating_brightness_and_low_without():
    still = np.repeat(texture(64)[None], 9, axis=0)
    still = np.clip(still.astype(np.int16), 30, 225).astype(np.uint8)  # room for +-20 without clipping
    signs = np.array([1, -1] * 5)[:9]
    flickering = (still.astype(np.int16) + 20 * signs[:, None, None, None]).astype(np.uint8)
    calm, bright = temporal_metrics(still), temporal_metrics(flickering)
    assert calm.flicker.max() < 1e-3
    # each inner frame is 20 levels off the mean of its neighbours, which sit 20 the other way: 40 / 255
    assert np.allclose(bright.flicker[1:-1], 40 / 255, atol=0.01)
    assert bright.flicker[0] == bright.flicker[-1] == 0.0


def test_repeated_frames_are_counted_at_their_transitions():
    clip = translating_clip(frames=9)
    clip[4] = clip[3]  # transition 3 -> 4 repeats
    clip[6] = clip[5]  # transition 5 -> 6 repeats
    m = temporal_metrics(clip)
    assert np.flatnonzero(m.frame_diff == 0).tolist() == [3, 5]
    assert m.summary()["duplicate_count"] == 2.0
    assert m.summary()["frozen_fraction"] == pytest.approx(2 / 8)


def test_drift_grows_with_an_injected_colour_ramp():
    base = np.clip(translating_clip(frames=17, step=(1, 1)).astype(np.int16), 40, 215)
    values = []
    for amount in (0, 10, 20, 40):
        ramp = np.linspace(0, amount, 17)[:, None, None, None] * np.array([1.0, -0.5, 0.2])
        clip = np.clip(base + ramp, 0, 255).astype(np.uint8)
        values.append((drift(clip)["drift_color"], temporal_metrics(clip).summary()["drift_color_compensated"]))
    plain, compensated = np.array(values).T
    assert np.all(np.diff(plain) > 0) and np.all(np.diff(compensated) > 0)
    assert compensated[0] < 0.005  # moving texture, no colour change: no drift once motion is compensated
    # segment means sit at 1/8 and 7/8 of the ramp: 0.75 * |offset| / sqrt(3)
    assert compensated[-1] == pytest.approx(0.75 * 40 / 255 * np.linalg.norm([1.0, -0.5, 0.2]) / np.sqrt(3), rel=0.25)


def test_a_large_clip_is_analysed_downscaled_with_input_pixel_units():
    clip = translating_clip(frames=3, step=(2, 0), size=64)
    big = np.repeat(np.repeat(clip, 8, axis=1), 8, axis=2)  # 512 x 512, moving 16 px per frame
    m = temporal_metrics(big)
    assert np.allclose(m.flow_magnitude, 16.0, rtol=0.15)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((1, 32, 32, 3), np.uint8), "at least 2 frames"),
    (np.zeros((4, 32, 32, 3), np.float32), "uint8 frames shaped"),
    (np.zeros((4, 32, 32), np.uint8), "uint8 frames shaped"),
    (np.zeros((4, 8, 8, 3), np.uint8), "at least 16x16"),
    ([[1, 2]], "uint8 frames shaped"),
])
def test_unusable_clips_raise_one_line_errors(bad, message):
    with pytest.raises(KinemaError, match=message) as err:
        temporal_metrics(bad)
    assert "\n" not in str(err.value)


def test_unknown_flow_method_is_refused():
    clip = translating_clip(frames=2)
    with pytest.raises(KinemaError, match="unknown flow method"):
        temporal_metrics(clip, flow="raft")
    with pytest.raises(KinemaError, match="unknown flow method"):
        optical_flow(clip[0], clip[1], "raft")


def test_farneback_metrics_agree_with_dis_on_a_translation():
    clip = translating_clip(frames=5, step=(2, 1))
    dis, farneback = temporal_metrics(clip), temporal_metrics(clip, flow="farneback")
    assert isinstance(farneback, TemporalMetrics)
    assert np.allclose(dis.flow_magnitude, farneback.flow_magnitude, atol=0.5)
    assert farneback.warp_error.max() < 0.02


def bump_warp(frame: np.ndarray, center: tuple[int, int], amplitude: float, sigma: float) -> np.ndarray:
    """frame warped by a Gaussian bump displacement of `amplitude` px along x around `center` (x, y)."""
    import cv2

    h, w = frame.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    bump = amplitude * np.exp(-((xs - center[0]) ** 2 + (ys - center[1]) ** 2) / (2 * sigma**2))
    return cv2.remap(frame, xs - bump, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def test_morph_peak_finds_a_local_there_and_back_warp_of_two_frames():
    clip = translating_clip(frames=11, step=(1, 0))
    calm = temporal_metrics(clip).morph_peak
    warped = clip.copy()
    for i in (5, 6):  # frames 5 and 6 carry a local displacement of 6 px that frame 7 undoes
        warped[i] = bump_warp(clip[i], (32, 32), 6.0, 6.0)
    m = temporal_metrics(warped)
    assert m.morph_peak.shape == (10,)
    assert m.morph_peak[[0, 1, -2, -1]].tolist() == [0.0] * 4  # five transitions are needed around a position
    assert int(np.argmax(m.morph_peak)) == 5  # the transition between the two warped frames
    assert m.morph_peak[5] > 0.02  # 6 px is 0.094 of the 64 px short side; the flow and the penalties keep part
    assert calm.max() < 0.005  # steady translation: no there-and-back anywhere


def test_morph_peak_ignores_an_uneven_cadence():
    # alternating slow and fast transitions (1 px, 4 px): velocity residuals repeat with one sign
    # (e_0 = e_2), not there and back, so nothing is reported
    big = texture(140)
    offsets = np.cumsum([0] + [1, 4] * 5)
    clip = np.stack([big[30:94, 10 + o: 74 + o] for o in offsets])
    assert temporal_metrics(clip).morph_peak.max() < 0.005
