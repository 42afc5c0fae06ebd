"""PSNR and SSIM of clips, checked against scikit-image's reference implementations."""

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from kinema.errors import KinemaError
from kinema.eval.metrics import psnr, ssim
from kinema.media import frames_to_tensor


def reference_ssim(a: np.ndarray, b: np.ndarray, data_range: float = 255) -> np.ndarray:
    """Wang et al. 2004 SSIM per frame, as scikit-image computes it."""
    return np.array([
        structural_similarity(x, y, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                              channel_axis=-1, data_range=data_range)
        for x, y in zip(a, b)
    ])


def noisy_pair(frames=5, height=24, width=31, noise=25, seed=0) -> tuple[np.ndarray, np.ndarray]:
    """A smooth-ish clip (a gradient with a moving square) and a noisy, shifted copy of it."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:height, :width]
    clean = np.zeros((frames, height, width, 3), np.float64)
    for t in range(frames):
        clean[t, ..., 0] = 255 * x / width
        clean[t, ..., 1] = 255 * y / height
        clean[t, 4 : 12, 2 + 2 * t : 10 + 2 * t, 2] = 220
    a = clean.astype(np.uint8)
    b = np.clip(clean + rng.normal(0, noise, clean.shape) + 6, 0, 255).astype(np.uint8)
    return a, b


@pytest.mark.parametrize("seed, noise", [(0, 25), (1, 4), (2, 80)])
def test_ssim_matches_scikit_image_per_frame_and_on_average(seed, noise):
    a, b = noisy_pair(noise=noise, seed=seed)
    ref = reference_ssim(a, b)
    value, per_frame = ssim(a, b, per_frame=True)
    assert per_frame.shape == (5,)
    np.testing.assert_allclose(per_frame, ref, atol=1e-4, rtol=0)
    assert value == pytest.approx(ref.mean(), abs=1e-4)
    assert ssim(a, b) == value


def test_ssim_matches_on_random_frames_and_an_explicit_data_range():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (3, 11, 40, 3), dtype=np.uint8)  # the smallest frame height SSIM takes
    b = rng.integers(0, 256, (3, 11, 40, 3), dtype=np.uint8)
    np.testing.assert_allclose(ssim(a, b, per_frame=True)[1], reference_ssim(a, b), atol=1e-4, rtol=0)
    assert ssim(a, b, 100.0) == pytest.approx(reference_ssim(a, b, 100.0).mean(), abs=1e-4)


def test_psnr_matches_scikit_image_for_the_clip_and_each_frame():
    a, b = noisy_pair()
    value, per_frame = psnr(a, b, per_frame=True)
    assert value == pytest.approx(peak_signal_noise_ratio(a, b, data_range=255), abs=1e-4)
    np.testing.assert_allclose(
        per_frame, [peak_signal_noise_ratio(x, y, data_range=255) for x, y in zip(a, b)], atol=1e-4, rtol=0
    )
    assert psnr(a, b, 100.0) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=100), abs=1e-4)


def test_float_video_tensors_in_minus_one_one_give_the_same_values_as_their_frames():
    a, b = noisy_pair()
    va, vb = frames_to_tensor(a), frames_to_tensor(b)  # (C, T, H, W) in [-1, 1]
    assert ssim(va, vb) == pytest.approx(ssim(a, b), abs=1e-6)
    assert psnr(va, vb) == pytest.approx(psnr(a, b), abs=1e-5)
    np.testing.assert_allclose(ssim(va, vb, per_frame=True)[1], ssim(a, b, per_frame=True)[1], atol=1e-6)


def test_identical_clips_score_perfectly_and_ssim_is_symmetric():
    a, b = noisy_pair()
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    assert psnr(a, a) == float("inf")
    assert ssim(a, b) == pytest.approx(ssim(b, a), abs=1e-12)  # SSIM is symmetric
    assert psnr(a, b) < psnr(a, noisy_pair(noise=5)[1])  # less noise, higher PSNR


def test_many_frames_are_filtered_in_chunks_with_the_same_result():
    a, b = noisy_pair(frames=37, height=12, width=12, noise=30)  # more frames than one filter pass takes
    np.testing.assert_allclose(ssim(a, b, per_frame=True)[1], reference_ssim(a, b), atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    "a, b, message",
    [
        (np.zeros((2, 16, 16, 3), np.uint8), np.zeros((3, 16, 16, 3), np.uint8), "differ in shape"),
        (np.zeros((2, 16, 16, 3), np.uint8), torch.zeros(3, 2, 16, 16), "compare two uint8"),
        (np.zeros((2, 16, 16), np.uint8), np.zeros((2, 16, 16), np.uint8), r"\(T, H, W, 3\)"),
        (torch.zeros(3, 2, 8, 16), torch.zeros(3, 2, 8, 16), "at least 11x11"),
    ],
)
def test_bad_inputs_are_one_line_errors(a, b, message):
    with pytest.raises(KinemaError, match=message):
        ssim(a, b)
