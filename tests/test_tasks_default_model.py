"""The issue's ground-truth criteria for the known-content tasks, on the shipped default model.

A small seeded subset of bench/tasks_shapes.py (same clips, same measurements: its
docstring says what each figure means): two rendered Shapes clips per criterion (16 for
editing, judged as a rate), the "trained" method (the default's), 10 sampling steps.
Thresholds are the issue's:

- prediction from 5 frames: >= 80% of predicted frames within 2 px of the true trajectory;
- interpolation between a clip's first and last frames: >= 80% of the generated frames
  within 2 px of the true trajectory (the issue says "within 2 px"; the 80% is ours, as for
  prediction);
- image-to-video: first frame >= 30 dB PSNR against the image, and the judge passes the clip;
- inpainting (object removal): >= 40 dB PSNR outside the region against the input;
- editing (colour word changed, strength 0.7, SDEdit guided away from the rendered caption,
  16 clips): the judge passes >= 80% of the clips for the new caption (the 80% is ours);
- long video (extend from 5 frames to 81, windows keeping extend's default 3 latent frames):
  every chunk boundary crossed while the object is inside the canvas departs by <= 2 px from
  the expected per-frame displacement; after the object has left (plus 2 frames) no
  palette-coloured region is larger than the judge's limit for an empty frame; background
  colour, object colour and size drift within bench/tasks_shapes.py's DRIFT_BOUNDS.

Every test is skipped until src/kinema/weights/default/model.json exists. The shipped model
(12000 steps, the squares fine-tune and the exit runs; 10 steps, guidance 4 at noise levels
0.8..1, editing at its own kinema.tasks.clips.SDEDIT_GUIDANCE; docs/MEASURED.md) meets all
six criteria on these clips.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from kinema.weights import DEFAULT_PIPELINE_DIR

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import tasks_shapes as bench  # noqa: E402

MODEL_JSON = DEFAULT_PIPELINE_DIR / "model.json"
pytestmark = [
    pytest.mark.skipif(not MODEL_JSON.is_file(),
                       reason=f"the default model is not trained yet: {MODEL_JSON} does not exist"),
    pytest.mark.slow,
]

CLIPS = 2
EDIT_CLIPS = 16  # a rate: one clip in eight fails the judge (docs/MEASURED.md)
STEPS = 10
SEED = 0
METHOD = "trained"


@pytest.fixture(scope="module")
def pipe():
    from kinema.pipeline import Pipeline

    return Pipeline.load(DEFAULT_PIPELINE_DIR)


def clips(pipe, entry: bool = False, n: int = CLIPS):
    c = pipe.config
    return bench.shapes_clips(n, SEED, frames=c.frames, size=(c.height, c.width), entry=entry)


def run(pipe, task: str, method: str | None = METHOD, n: int = CLIPS, **options):
    return bench.run_task(pipe, task, clips(pipe, entry=task == "long", n=n), method, steps=STEPS, seed=SEED, **options)


def show(rows) -> str:
    return "; ".join(", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items())
                     for r in rows)


def test_prediction_stays_on_the_true_trajectory(pipe):
    rows = run(pipe, "predict", context=5)
    within = float(np.mean([r["within_2px"] for r in rows]))
    assert within >= 0.80, f"{within:.0%} of predicted frames within 2 px (need 80%): {show(rows)}"


def test_interpolation_stays_on_the_true_trajectory(pipe):
    rows = run(pipe, "interpolate")
    within = float(np.mean([r["within_2px"] for r in rows]))
    assert within >= 0.80, f"{within:.0%} of generated frames within 2 px (need 80%): {show(rows)}"


def test_image_to_video_keeps_the_image_and_passes_the_judge(pipe):
    rows = run(pipe, "i2v")
    assert all(r["first_psnr_db"] >= 30.0 for r in rows), f"first frame below 30 dB: {show(rows)}"
    assert all(r["judge_pass"] == 1.0 for r in rows), f"the judge fails a clip for its caption: {show(rows)}"


def test_inpainting_keeps_the_pixels_outside_the_region(pipe):
    rows = run(pipe, "inpaint")
    assert all(r["psnr_outside_db"] >= 40.0 for r in rows), f"outside the region below 40 dB: {show(rows)}"


def test_editing_changes_the_colour_under_the_judge(pipe):
    rows = run(pipe, "edit", method="sdedit", n=EDIT_CLIPS, strength=0.7)
    rate = float(np.mean([r["judge_pass"] for r in rows]))
    op, target = bench.TARGETS[("edit", "judge_pass")]
    assert bench.meets(rate, op, target), \
        f"the judge passes {rate:.0%} of edited clips' new captions (need {op} {target:.0%}): {show(rows)}"


def test_long_video_keeps_its_velocity_and_draws_nothing_after_the_exit(pipe):
    rows = run(pipe, "long", context=5, long_frames=81)
    assert all(r["boundaries"] >= 1 for r in rows), f"no chunk boundary measurable (object not found): {show(rows)}"
    worst = max(r["boundary_jump_px"] for r in rows)
    assert worst <= 2.0, f"a chunk boundary jumps {worst:.2f} px beyond the expected displacement: {show(rows)}"
    assert all(r["exit_frame"] < 60 for r in rows), f"the object does not leave early enough to check: {show(rows)}"
    stray = [r["stray_px"] for r in rows]
    assert all(s <= r["stray_limit_px"] for s, r in zip(stray, rows)), \
        f"an object appears after the exit ({stray} px, limit {rows[0]['stray_limit_px']:.1f}): {show(rows)}"
    for figure, (op, bound) in bench.DRIFT_BOUNDS.items():
        values = [r[figure] for r in rows]
        assert all(bench.meets(v, op, bound) for v in values), \
            f"{figure} {values} beyond the stated bound {op} {bound}: {show(rows)}"
