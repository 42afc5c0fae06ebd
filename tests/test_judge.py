"""The Shapes evaluator: rendered clips pass, clips that break the caption fail (SHAPES.md)."""

import json

import numpy as np
import pytest
import torch

from kinema.errors import KinemaError
from kinema.eval.shapes import REFERENCE_NAMES, classify, judge, label_components
from kinema.world.dataset import video_to_tensor
from kinema.world.render import render
from kinema.world.scene import (
    BACKGROUND_RGB,
    BACKGROUNDS,
    COLORS,
    HELD_OUT_OBJECTS,
    PALETTE,
    SHAPES,
    CaptionError,
    Scene,
    ShapeObject,
    format_caption,
    parse_caption as parse,
    prompt_set,
    random_scene,
)

torch.set_num_threads(1)

# (size, frames): the default clip plus other canvases and lengths
CLIP_SHAPES = [((64, 64), 17), ((32, 48), 17), ((64, 64), 9), ((48, 80), 12)]


def _render(scene: Scene, index: int, rng: np.random.Generator) -> np.ndarray:
    size, frames = CLIP_SHAPES[index % len(CLIP_SHAPES)]
    return render(scene, frames=frames, size=size, rng=rng).video


def test_rendered_clips_pass():
    rng = np.random.default_rng(0)
    scenes = [random_scene(rng, split="any", p_empty=0.05, p_two=0.3) for _ in range(170)]
    heldout = [random_scene(rng, split="heldout") for _ in range(30)]
    failures = []
    for i, scene in enumerate(scenes + heldout):
        caption = format_caption(scene)
        judgement = judge(_render(scene, i, rng), caption)
        if not judgement.passed:
            failures.append(f"{caption}: {judgement.summary()}")
    assert len(failures) <= 2, failures  # >= 99% of 200


def test_every_held_out_object_renders_and_passes():
    rng = np.random.default_rng(1)
    captions = prompt_set("heldout", 66, seed=0)
    for obj in HELD_OUT_OBJECTS:  # each once, on the background its first prompt names
        caption = next(c for c in captions if parse(c).objects[0] == obj)
        judgement = judge(render(parse(caption), rng=rng).video, caption)
        assert judgement.passed, judgement.summary()


def test_tensor_and_uint8_inputs_agree():
    scene = parse("a small blue triangle moving down on a white background")
    video = render(scene, frames=9, size=(32, 48), rng=3).video
    a, b = judge(video, format_caption(scene)), judge(video_to_tensor(video), format_caption(scene))
    assert a.to_dict() == b.to_dict() and a.passed


def test_judge_survives_noise_and_colour_drift():
    """Generated clips are never exact: mild noise and a uniform colour shift still pass."""
    rng = np.random.default_rng(4)
    for i in range(12):
        scene = random_scene(rng, split="any", p_empty=0.0, p_two=0.0)
        video = _render(scene, i, rng).astype(np.float64)
        noisy = np.clip(video + rng.normal(0, 12, video.shape), 0, 255).astype(np.uint8)
        shifted = np.clip(video + rng.integers(-25, 26, size=3), 0, 255).astype(np.uint8)
        for clip in (noisy, shifted):
            judgement = judge(clip, format_caption(scene))
            assert judgement.passed, (format_caption(scene), judgement.summary())


# ----------------------------------------------------------------------------- negative controls


def _one_object_clips(n: int, seed: int):
    rng = np.random.default_rng(seed)
    for i in range(n):
        scene = random_scene(rng, split="any", p_empty=0.0, p_two=0.0)
        size, frames = CLIP_SHAPES[i % len(CLIP_SHAPES)]
        yield scene, render(scene, frames=frames, size=size, rng=rng)


def _failed(video, caption) -> set[str]:
    judgement = judge(video, caption)
    assert not judgement.passed
    return {name for name, check in judgement.checks.items() if not check.passed}


def test_static_and_backwards_clips_fail_motion():
    for scene, r in _one_object_clips(12, seed=5):
        caption = format_caption(scene)
        static = np.repeat(r.video[:1], len(r.video), axis=0)
        assert "motion" in _failed(static, caption)
        assert "motion" in _failed(r.video[::-1], caption)


def test_a_clip_moving_along_the_other_axis_fails_motion():
    for scene, r in _one_object_clips(8, seed=6):
        obj = scene.objects[0]
        turned = {"left": "up", "right": "down", "up": "right", "down": "left"}[obj.direction]
        wrong = Scene((ShapeObject(obj.size, obj.color, obj.shape, turned),), scene.background)
        assert "motion" in _failed(r.video, format_caption(wrong))


def test_wrong_shape_fails():
    for scene, r in _one_object_clips(12, seed=7):
        obj = scene.objects[0]
        for shape in SHAPES:
            if shape != obj.shape:
                wrong = Scene((ShapeObject(obj.size, obj.color, shape, obj.direction),), scene.background)
                assert _failed(r.video, format_caption(wrong)) == {"shape"}


def test_upside_down_triangle_fails_shape():
    obj = ShapeObject("large", "green", "triangle", "right")
    video = render(Scene((obj,), "black"), rng=0).video
    assert _failed(video[:, ::-1], format_caption(Scene((obj,), "black"))) == {"shape"}


def test_wrong_colour_fails_presence():
    for scene, r in _one_object_clips(8, seed=8):
        obj = scene.objects[0]
        for color in COLORS:
            if color != obj.color:
                wrong = Scene((ShapeObject(obj.size, color, obj.shape, obj.direction),), scene.background)
                assert "presence" in _failed(r.video, format_caption(wrong))


def test_wrong_background_fails():
    for scene, r in _one_object_clips(6, seed=9):
        for background in BACKGROUNDS:
            if background != scene.background:
                assert "background" in _failed(r.video, format_caption(Scene(scene.objects, background)))


def test_flickering_clip_fails_presence_and_consistency():
    for scene, r in _one_object_clips(8, seed=10):
        flicker = r.video.copy()
        flicker[1::2] = BACKGROUND_RGB[scene.background]
        failed = _failed(flicker, format_caption(scene))
        assert {"presence", "consistency"} <= failed


def test_morphing_and_growing_objects_fail_consistency():
    swap = {"circle": "square", "square": "circle", "triangle": "circle"}
    resize = {"small": "large", "large": "small"}
    checked = 0
    for scene, r in _one_object_clips(10, seed=11):
        obj = scene.objects[0]
        frames, size = len(r.video), r.video.shape[1:3]
        # from the middle of the clip on: the same trajectory with another shape, or size
        for other in (ShapeObject(obj.size, obj.color, swap[obj.shape], obj.direction),
                      ShapeObject(resize[obj.size], obj.color, obj.shape, obj.direction)):
            try:
                second = render(Scene((other,), scene.background), frames=frames, size=size,
                                starts=[tuple(r.centers[0, 0])])
            except ValueError:  # the larger object would leave the canvas on this trajectory
                continue
            morph = r.video.copy()
            morph[frames // 2:] = second.video[frames // 2:]
            assert "consistency" in _failed(morph, format_caption(scene))
            checked += 1
    assert checked >= 12


def test_pure_noise_fails_everything_that_can_fail():
    rng = np.random.default_rng(12)
    noise = rng.integers(0, 256, size=(17, 64, 64, 3), dtype=np.uint8)
    failed = _failed(noise, "a large red square moving right on a gray background")
    assert {"presence", "background"} <= failed
    assert "background" in _failed(noise, "an empty black background")


def test_empty_scenes():
    rng = np.random.default_rng(13)
    for background in BACKGROUNDS:
        empty = render(Scene((), background), frames=9, rng=rng).video
        judgement = judge(empty, f"an empty {background} background")
        assert judgement.passed and set(judgement.checks) == {"empty", "background"}
        full = render(Scene((ShapeObject("small", "cyan", "triangle", "up"),), background), frames=9, rng=rng).video
        assert _failed(full, f"an empty {background} background") == {"empty"}


# ----------------------------------------------------------------------------- two objects, occlusion


def test_two_objects_are_judged_by_colour():
    scene = parse("a large red square moving right and a small blue circle moving down on a gray background")
    r = render(scene, size=(64, 64), starts=[(20.0, 20.0), (48.0, 16.0)])
    judgement = judge(r.video, format_caption(scene))
    assert judgement.passed, judgement.summary()
    assert {"object1.shape", "object2.motion", "background"} <= set(judgement.checks)
    swapped = parse("a large red square moving right and a small blue circle moving up on a gray background")
    assert _failed(r.video, format_caption(swapped)) == {"object2.motion"}
    only_first = render(Scene(scene.objects[:1], "gray"), size=(64, 64), starts=[(20.0, 20.0)]).video
    assert "object2.presence" in _failed(only_first, format_caption(scene))


def test_an_object_hidden_behind_a_later_one_is_excused():
    # the small circle moves with the large square, exactly behind it, for the whole clip
    scene = parse("a small green circle moving left and a large magenta square moving left on a black background")
    r = render(scene, size=(64, 64), starts=[(45.0, 32.0), (45.0, 32.0)])
    assert not (r.video == PALETTE["green"]).all(-1).any()  # truly invisible
    judgement = judge(r.video, format_caption(scene))
    assert judgement.passed, judgement.summary()
    assert "occluded" in judgement.checks["object1.presence"].detail
    # partly hidden: the square passes over the circle in the middle of the clip
    scene = parse("a small green circle moving down and a large magenta square moving left on a black background")
    r = render(scene, size=(64, 64), starts=[(30.0, 12.0), (45.0, 32.0)])
    judgement = judge(r.video, format_caption(scene))
    assert judgement.passed, judgement.summary()


# ----------------------------------------------------------------------------- edge cases and plumbing


def test_one_frame_clip_skips_motion():
    scene = parse("a large yellow circle moving up on a black background")
    judgement = judge(render(scene, frames=1, rng=0).video, format_caption(scene))
    assert judgement.passed
    motion = judgement.checks["motion"]
    assert motion.passed and np.isnan(motion.value) and "not judged" in motion.detail


def test_judgement_serialises_and_summarises():
    scene = parse("a small red square moving left on a white background")
    video = render(scene, rng=0).video
    judgement = judge(video, "a small red circle moving left on a white background")
    data = json.loads(json.dumps(judgement.to_dict(), allow_nan=False))
    assert data["passed"] is False and data["checks"]["shape"]["passed"] is False
    assert set(data["checks"]["shape"]) == {"passed", "value", "threshold", "detail"}
    summary = judgement.summary()
    assert "\n" not in summary and summary.startswith("FAIL") and "!shape=" in summary
    one_frame = judge(render(scene, frames=1, rng=0).video, format_caption(scene))
    assert json.loads(json.dumps(one_frame.to_dict(), allow_nan=False))["checks"]["motion"]["value"] is None


def test_bad_inputs_raise_kinema_errors():
    video = render(parse("an empty gray background"), frames=2, rng=0).video
    with pytest.raises(CaptionError):
        judge(video, "a red circle")
    with pytest.raises(KinemaError, match="T, H, W, 3"):
        judge(video[..., :2], "an empty gray background")
    with pytest.raises(KinemaError, match="C=3"):
        judge(torch.zeros(4, 2, 8, 8), "an empty gray background")


def test_classify_reference_colours():
    refs = [PALETTE[c] for c in COLORS] + [BACKGROUND_RGB[b] for b in BACKGROUNDS]
    frames = np.array(refs, dtype=np.uint8).reshape(1, 1, -1, 3)
    assert classify(frames)[0, 0].tolist() == list(range(len(REFERENCE_NAMES)))
    off = np.array([[[[230 - 30, 40 + 30, 40 + 20], [128, 60, 200], [100, 100, 200]]]], dtype=np.uint8)
    assert classify(off)[0, 0].tolist() == [0, -1, -1]  # red, off by 42; then nothing close


def test_components_match_scipy():
    ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(14)
    classes = rng.integers(-1, 3, size=(3, 24, 20)).astype(np.int8)
    classes[1, 4:14, 3:12] = 2  # one large blob
    roots = label_components(classes).reshape(classes.shape)
    structure = np.zeros((3, 3, 3), bool)
    structure[1] = True  # 8-connected within a frame, nothing across frames
    for k in range(3):
        reference, count = ndimage.label(classes == k, structure=structure)
        mask = classes == k
        # the two labelings define the same partition of the class-k pixels
        pairs = set(zip(reference[mask].tolist(), roots[mask].tolist()))
        assert len(pairs) == count == len({r for _, r in pairs})
