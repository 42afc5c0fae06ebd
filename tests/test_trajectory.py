"""kinema.eval.trajectory against the Shapes world's exact ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from kinema.eval.trajectory import (
    boundary_jumps,
    centroid_errors,
    chunk_boundaries,
    empty_area_limit,
    fraction_within,
    masked_psnr,
    mean_finite,
    palette_region_area,
    step_errors,
    track_object,
)
from kinema.world.dataset import video_to_tensor
from kinema.world.render import render
from kinema.world.scene import BACKGROUND_RGB, parse_caption, prompt_set

CAPTIONS = prompt_set("train", 12, seed=3)


def rendered(k: int):
    scene = parse_caption(CAPTIONS[k])
    return scene, render(scene, rng=k)


@pytest.mark.parametrize("k", range(len(CAPTIONS)))
def test_centroids_of_a_rendered_clip_are_the_true_positions(k):
    scene, r = rendered(k)
    track = track_object(r.video, scene.objects[0], scene.background)
    assert track.visible.all() and not np.isnan(track.centers).any()
    assert centroid_errors(track.centers, r.centers[0]).max() < 0.5
    assert fraction_within(centroid_errors(track.centers, r.centers[0])) == 1.0
    np.testing.assert_array_equal(track.background, np.tile(BACKGROUND_RGB[scene.background], (17, 1)))


def test_float_video_measures_like_uint8():
    scene, r = rendered(0)
    a = track_object(r.video, scene.objects[0], scene.background)
    b = track_object(video_to_tensor(r.video), scene.objects[0], scene.background)
    np.testing.assert_allclose(a.centers, b.centers, atol=1e-6)


def test_a_clip_shifted_by_3_px_is_never_within_2_px():
    scene, r = rendered(1)
    shifted = np.full_like(r.video, BACKGROUND_RGB[scene.background])
    shifted[:, :, 3:] = r.video[:, :, :-3]  # 3 px to the right; rendered objects stay >= 0 px from the border
    track = track_object(shifted, scene.objects[0], scene.background)
    errors = centroid_errors(track.centers, r.centers[0])
    assert fraction_within(errors) == 0.0
    np.testing.assert_allclose(errors, 3.0, atol=0.5)


def test_a_missing_object_counts_as_far_and_not_visible():
    scene, r = rendered(2)
    video = r.video.copy()
    video[5:8] = BACKGROUND_RGB[scene.background]  # blank three frames
    track = track_object(video, scene.objects[0], scene.background)
    assert not track.visible[5:8].any() and track.visible[:5].all() and track.visible[8:].all()
    errors = centroid_errors(track.centers, r.centers[0])
    assert np.isinf(errors[5:8]).all()
    assert fraction_within(errors) == pytest.approx(14 / 17)
    assert mean_finite(errors) < 0.5


def test_constant_velocity_has_no_step_error_and_a_jump_shows_at_its_boundary():
    scene, r = rendered(3)
    velocity = np.diff(r.centers[0], axis=0)[0]  # the renderer's per-frame displacement
    assert np.linalg.norm(velocity) == pytest.approx(0.4 * 64 / 16)
    track = track_object(r.video, scene.objects[0], scene.background)
    assert np.nanmax(step_errors(track.centers, velocity)) < 0.5
    jumped = track.centers.copy()
    jumped[9:] += np.array([2.5, 0.0])  # the second chunk starts 2.5 px off
    jumps = boundary_jumps(jumped, chunk_boundaries([9, 4, 4]), velocity)
    assert jumps.shape == (2,) and jumps[0] == pytest.approx(2.5, abs=0.5) and jumps[1] < 0.5
    assert np.isnan(boundary_jumps(jumped, [0, 17], velocity)).all()  # no transition into frame 0 or past the end


def test_empty_background_has_no_palette_region_and_an_object_does():
    scene, r = rendered(4)
    empty = np.full_like(r.video, BACKGROUND_RGB[scene.background])
    assert palette_region_area(empty).max() == 0
    assert (palette_region_area(r.video) > empty_area_limit((64, 64))).all()


def test_masked_psnr_looks_only_inside_the_mask():
    _, r = rendered(5)
    noisy = r.video.copy()
    noisy[:, :32] = np.clip(noisy[:, :32].astype(int) + 10, 0, 255).astype(np.uint8)
    bottom = np.zeros(r.video.shape[:3], dtype=bool)
    bottom[:, 32:] = True
    assert masked_psnr(r.video, noisy, bottom) == float("inf")
    top_psnr = masked_psnr(r.video, noisy, ~bottom)
    assert 25 < top_psnr < 30.2  # an error of at most 10 levels: >= 28.1 dB where nothing clips
    assert np.isnan(masked_psnr(r.video, noisy, np.zeros_like(bottom)))
