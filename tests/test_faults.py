"""kinema.eval.faults: every fault changes the frames it names, as documented, reproducibly."""

import numpy as np
import pytest

pytest.importorskip("cv2")

from kinema.errors import KinemaError  # noqa: E402
from kinema.eval.faults import FAULT_KINDS, inject  # noqa: E402
from kinema.world.render import render  # noqa: E402
from kinema.world.scene import parse_caption  # noqa: E402


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    scene = parse_caption("a large red square moving right and a small blue circle moving down on a gray background")
    return render(scene, frames=17, size=(64, 64), rng=0).video


def test_fault_kinds_are_the_documented_seven():
    assert FAULT_KINDS == ("flicker", "frozen", "dropped", "color_drift", "morph", "cut", "noise")


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_injection_is_seeded_and_touches_the_named_frames(clip, kind):
    out, info = inject(clip, kind, 1.0, np.random.default_rng(3))
    again, info_again = inject(clip, kind, 1.0, np.random.default_rng(3))
    assert np.array_equal(out, again) and info == info_again
    assert out.dtype == np.uint8 and out.shape[1:] == clip.shape[1:]
    assert info["kind"] == kind and info["strength"] == 1.0
    frames = info["frames"]
    assert frames and min(frames) >= 0 and max(frames) < len(out)
    if kind == "dropped":
        return  # checked below
    assert len(out) == len(clip)
    changed = np.flatnonzero(np.any(out != clip, axis=(1, 2, 3))).tolist()
    assert changed, "the fault changed nothing"
    if kind != "cut":  # a cut changes every frame from its start on; info names the transition
        assert set(changed) <= set(frames)
    else:
        assert changed[0] == frames[1] and changed[-1] == len(clip) - 1


def test_frozen_holds_one_frame(clip):
    out, info = inject(clip, "frozen", 0.5, np.random.default_rng(1))
    held = info["held_frame"]
    assert info["frames"][0] == held + 1
    assert len(info["frames"]) == 1 + round(0.5 * 17 / 4)
    for f in info["frames"]:
        assert np.array_equal(out[f], clip[held])


@pytest.mark.parametrize("strength, removed", [(0.25, 1), (0.5, 2), (1.0, 4)])
def test_dropped_removes_frames(clip, strength, removed):
    out, info = inject(clip, "dropped", strength, np.random.default_rng(0))
    assert len(out) == len(clip) - removed == len(clip) - len(info["removed"])
    before, after = info["frames"]
    assert after == before + 1
    assert np.array_equal(out[before], clip[before]) and np.array_equal(out[after], clip[after + removed])


def test_color_drift_is_a_ramp_from_zero(clip):
    out, info = inject(clip, "color_drift", 1.0, np.random.default_rng(0))
    assert np.array_equal(out[0], clip[0])
    shift = out[-1].astype(float).mean(axis=(0, 1)) - clip[-1].astype(float).mean(axis=(0, 1))
    # a gray background: no channel clips, so the last frame moves by the full 0.25 * 255
    assert np.linalg.norm(shift) == pytest.approx(0.25 * 255, rel=0.05)
    middle = out[8].astype(float).mean(axis=(0, 1)) - clip[8].astype(float).mean(axis=(0, 1))
    assert np.linalg.norm(middle) == pytest.approx(0.5 * 0.25 * 255, rel=0.1)


def test_strength_scales_the_fault(clip):
    sizes = []
    for strength in (0.25, 0.5, 1.0):
        out, info = inject(clip, "noise", strength, np.random.default_rng(0))
        f = info["frames"][0]
        sizes.append(np.abs(out[f].astype(float) - clip[f]).mean())
    assert sizes[0] < sizes[1] < sizes[2]


@pytest.mark.parametrize("args, message", [
    (("blur", 0.5), "unknown fault"),
    (("noise", 0.0), r"strength must be in \(0, 1\]"),
    (("noise", 1.5), r"strength must be in \(0, 1\]"),
])
def test_bad_requests_raise(clip, args, message):
    with pytest.raises(KinemaError, match=message):
        inject(clip, *args, rng=np.random.default_rng(0))


def test_short_or_malformed_clips_raise(clip):
    with pytest.raises(KinemaError, match="at least 9 frames"):
        inject(clip[:5], "noise", 0.5, np.random.default_rng(0))
    with pytest.raises(KinemaError, match="uint8 frames"):
        inject(clip.astype(np.float32), "noise", 0.5, np.random.default_rng(0))
