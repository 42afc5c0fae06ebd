"""`kinema generate --image`, `kinema predict`, `kinema edit`, `kinema inpaint` on a tiny
task-trained-shaped pipeline: outputs, input fitting with notices, and one-line errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from kinema.cli import main
from kinema.media import write_video
from pipeline_utils import make_pipeline_dir

PROMPT = "a small blue square moving up on a gray background"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return str(make_pipeline_dir(tmp_path_factory.mktemp("tasks") / "m", frames=9, cond_channels=5))


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A 12-frame 24x20 clip: the wrong size and length for the 9-frame 16x16 model."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("clip") / "in.npy"
    write_video(path, rng.integers(0, 256, (12, 24, 20, 3), dtype=np.uint8))
    return str(path)


def test_image_to_video(model, clip, tmp_path, capsys):
    out = tmp_path / "i2v.npy"
    assert main(["generate", PROMPT, "--image", clip, "--model", model, "-o", str(out), "--steps", "2"]) == 0
    assert np.load(out).shape == (9, 16, 16, 3)
    assert "scaled and centre-cropped to 16x16" in capsys.readouterr().err


def test_predict_keeps_the_context_size_and_says_what_it_changed(model, clip, tmp_path, capsys):
    out = tmp_path / "pred.npy"
    assert main(["predict", clip, "--model", model, "-o", str(out), "--steps", "2", "--context", "5"]) == 0
    assert np.load(out).shape == (9, 16, 16, 3)
    err = capsys.readouterr().err
    assert "scaled and centre-cropped" in err and "using the first 5" in err


def test_edit_strength_zero_returns_the_fitted_input(model, clip, tmp_path, capsys):
    out = tmp_path / "same.npy"
    assert main(["edit", clip, "--prompt", PROMPT, "--strength", "0", "--model", model, "-o", str(out)]) == 0
    got = np.load(out)
    assert got.shape == (9, 16, 16, 3)
    from kinema.media import read_frames

    assert np.array_equal(got, read_frames(clip, count=9, size=(16, 16), fit="crop"))
    edited = tmp_path / "edited.npy"
    assert main(["edit", clip, "--prompt", PROMPT, "--strength", "0.8", "--model", model, "-o", str(edited),
                 "--steps", "3"]) == 0
    assert not np.array_equal(np.load(edited), got)
    flowed = tmp_path / "flowed.npy"
    assert main(["edit", clip, "--prompt", PROMPT, "--method", "flowedit", "--source-prompt", "a clip",
                 "--strength", "0.8", "--model", model, "-o", str(flowed), "--steps", "3"]) == 0
    assert np.load(flowed).shape == got.shape and not np.array_equal(np.load(flowed), got)


def test_inpaint_keeps_pixels_outside_the_mask(model, clip, tmp_path):
    mask = np.zeros((16, 16, 3), dtype=np.uint8)
    mask[4:12, 4:12] = 255
    mask_path = tmp_path / "mask.png"
    from PIL import Image

    Image.fromarray(mask).save(mask_path)
    out = tmp_path / "inpainted.npy"
    assert main(["inpaint", clip, "--mask", str(mask_path), "--model", model, "-o", str(out), "--steps", "2",
                 "--method", "replace"]) == 0
    from kinema.media import read_frames

    original = read_frames(clip, count=9, size=(16, 16), fit="crop")
    got = np.load(out)
    outside = mask[..., 0] == 0
    assert np.array_equal(got[:, outside], original[:, outside])


@pytest.mark.parametrize("command, extra, message", [
    ("predict", ["--context", "4"], "--context must be 1 + 4k"),
    ("predict", ["--method", "paste"], "unknown method"),
    ("edit", ["--prompt", "x", "--strength", "1.5"], "--strength must be in [0, 1]"),
    ("edit", ["--prompt", "x", "--frames", "13"], "has 12 frames; 13 asked for"),
    ("edit", ["--prompt", "x", "--source-prompt", "y", "--guidance", "1"], "guidance is 1 (off)"),
    ("predict", ["--negative-prompt", "y", "--guidance", "1"], "guidance is 1 (off)"),
    ("edit", ["--prompt", "x", "--method", "flowedit", "--sampler", "heun"], "flowedit does not take sampler"),
    ("inpaint", ["--mask", "/nonexistent.png"], "nonexistent.png"),
])
def test_bad_input_is_one_line_and_exit_2(model, clip, tmp_path, command, extra, message):
    proc = subprocess.run([sys.executable, "-m", "kinema", command, clip, "--model", model, "-o",
                           str(tmp_path / "x.npy"), *extra], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if not line.startswith(("kinema: clip", "kinema: context"))]
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert not (tmp_path / "x.npy").exists()


def test_interpolate_and_extend_commands(model, clip, tmp_path):
    from PIL import Image

    a, b = tmp_path / "a.png", tmp_path / "b.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(a)
    Image.fromarray(np.full((16, 16, 3), 255, np.uint8)).save(b)
    out = tmp_path / "interp.npy"
    assert main(["interpolate", "--first", str(a), "--last", str(b), "--model", model, "-o", str(out), "--steps", "2"]) == 0
    assert np.load(out).shape == (9, 16, 16, 3)
    long = tmp_path / "long.mp4"
    assert main(["extend", "--prompt", PROMPT, "--frames", "21", "--model", model, "-o", str(long), "--steps", "2"]) == 0
    from kinema.media import read_frames

    assert read_frames(long).shape == (21, 16, 16, 3)
    cont = tmp_path / "cont.npy"
    assert main(["extend", clip, "--frames", "17", "--model", model, "-o", str(cont), "--steps", "2"]) == 0
    assert np.load(cont).shape == (17, 16, 16, 3)
    # --negative-prompt reaches every window's guidance (and each interpolation pass)
    steered = tmp_path / "steered.npy"
    assert main(["extend", clip, "--frames", "17", "--model", model, "-o", str(steered), "--steps", "2",
                 "--negative-prompt", "an empty black background"]) == 0
    assert np.load(steered).shape == (17, 16, 16, 3) and not np.array_equal(np.load(steered), np.load(cont))
    steered = tmp_path / "steered_interp.npy"
    assert main(["interpolate", "--first", str(a), "--last", str(b), "--model", model, "-o", str(steered),
                 "--steps", "2", "--negative-prompt", "an empty black background"]) == 0
    assert not np.array_equal(np.load(steered), np.load(out))


@pytest.mark.parametrize("extra, message", [
    (["--frames", "20", "--prompt", "x"], "1 + 4k frames"),
    (["--frames", "21"], "give a clip to continue or a --prompt"),
])
def test_extend_bad_input(model, tmp_path, extra, message):
    proc = subprocess.run([sys.executable, "-m", "kinema", "extend", "--model", model, "-o", str(tmp_path / "x.mp4"),
                           *extra], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and message in proc.stderr.strip().splitlines()[-1], proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.mp4").exists()
