"""`kinema vae reconstruct`, with a tiny randomly initialized VAE (no trained weights needed)."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import kinema.cli
import kinema.weights
from kinema.eval.metrics import psnr, ssim
from kinema.media import read_frames
from kinema.models.dit import PRESETS as DIT_PRESETS
from kinema.models.dit import VideoDiT
from kinema.models.vae3d import PRESETS, VAE3D
from kinema.pipeline import PipelineConfig
from kinema.train.export import export_pipeline

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny VAE dir and an 11-frame 24x24 clip (a moving bright square on a gradient)."""
    root = tmp_path_factory.mktemp("vae")
    torch.manual_seed(0)
    VAE3D(PRESETS["vae-tiny"]).save(root / "vae")
    y, x = np.mgrid[:24, :24]
    clip = np.zeros((11, 24, 24, 3), np.uint8)
    for t in range(11):
        clip[t, ..., 0] = 10 * x
        clip[t, ..., 1] = 10 * y
        clip[t, 6:14, t : t + 8] = 240
    np.save(root / "clip.npy", clip)
    return root


def reconstruct(capsys, *args: str) -> tuple[int, str, str]:
    code = kinema.cli.main(["vae", "reconstruct", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_reconstruct_writes_the_clip_and_reports_its_metrics(files, tmp_path, capsys):
    out = tmp_path / "rec.npy"
    code, stdout, stderr = reconstruct(capsys, str(files / "clip.npy"), "-o", str(out),
                                       "--model", str(files / "vae"), "--json")
    assert code == 0, stderr
    assert "using the first 9 of 11 frames" in stderr  # 11 is not 1 + 4k: the largest such count below
    report = json.loads(stdout)
    rec = read_frames(out)
    assert rec.shape == (9, 24, 24, 3) and report["frames"] == 9 and report["size"] == [24, 24]
    source = read_frames(files / "clip.npy")[:9]
    assert report["psnr"] == pytest.approx(psnr(source, rec), abs=1e-9)
    assert report["ssim"] == pytest.approx(ssim(source, rec), abs=1e-9)
    assert report["seconds"] >= 0 and report["out"] == str(out)
    # The output is the VAE's reconstruction: encode then decode, quantized to 8 bits.
    vae = VAE3D.load(files / "vae")
    x = torch.from_numpy(source).permute(3, 0, 1, 2)[None].float() / 127.5 - 1  # (1, 3, T, H, W)
    expected = ((vae.decode(vae.encode(x))[0].clamp(-1, 1) + 1) * 127.5).round().permute(1, 2, 3, 0)
    assert np.abs(rec.astype(int) - expected.numpy().astype(int)).max() <= 1


def test_size_and_frames_resize_and_trim_the_input(files, tmp_path, capsys):
    out = tmp_path / "frames"
    code, stdout, stderr = reconstruct(capsys, str(files / "clip.npy"), "-o", str(out), "--model",
                                       str(files / "vae"), "--size", "16x32", "--frames", "5")
    assert code == 0 and stderr == ""  # --frames 5 is 1 + 4k: no notice
    rec = read_frames(out)  # a directory of PNG frames, lossless
    assert rec.shape == (5, 16, 32, 3)
    source = read_frames(files / "clip.npy", count=5, size=(16, 32))
    match = re.search(r"PSNR (\S+) dB  SSIM (\S+)  \(5 frames at 16x32", stdout)
    assert match, stdout
    assert float(match.group(1)) == pytest.approx(psnr(source, rec), abs=0.005)
    assert float(match.group(2)) == pytest.approx(ssim(source, rec), abs=0.00005)


def test_model_may_be_a_pipeline_dir_with_a_vae(files, tmp_path, capsys):
    net_config = DIT_PRESETS["dit-tiny"]
    net = VideoDiT(net_config)
    pipe = PipelineConfig(network="dit", schedule={"kind": "flow", "shift": 1.0}, prediction="flow",
                          text_encoder="none")
    export_pipeline(tmp_path / "final", pipe, network_config=net_config, weights=net.state_dict(),
                    ema=net.state_dict(), vae=VAE3D.load(files / "vae"))
    args = [str(files / "clip.npy"), "--frames", "5", "--json"]
    code, stdout, _ = reconstruct(capsys, *args, "-o", str(tmp_path / "a.npy"), "--model", str(tmp_path / "final"))
    assert code == 0
    code, again, _ = reconstruct(capsys, *args, "-o", str(tmp_path / "b.npy"), "--model", str(files / "vae"))
    assert json.loads(stdout)["psnr"] == json.loads(again)["psnr"]
    assert np.array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"))


def test_default_vae_dir_is_inside_the_package(monkeypatch, files, tmp_path, capsys):
    assert kinema.weights.DEFAULT_VAE_DIR == kinema.weights.DEFAULT_PIPELINE_DIR / "vae"
    assert kinema.weights.DEFAULT_PIPELINE_DIR == Path(kinema.weights.__file__).parent / "default"
    monkeypatch.setattr(kinema.weights, "DEFAULT_VAE_DIR", files / "vae")
    code, _, stderr = reconstruct(capsys, str(files / "clip.npy"), "-o", str(tmp_path / "r.npy"), "--frames", "1")
    assert code == 0, stderr
    assert read_frames(tmp_path / "r.npy").shape == (1, 24, 24, 3)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--frames", "6"], "--frames 6: the VAE takes 1 + 4k frames (1, 5, 9, 13, ...)"),
        (["--frames", "13"], "--frames 13: the clip has only 11 frames"),
        (["--size", "20x20"], "multiples of 8"),
        (["--model", "{missing}"], "model directory not found"),
        (["--model", "{default}"], "no default VAE is installed"),
        (["--clip", "{nope.mp4}"], "no such file"),
        (["--out", "{rec.xyz}"], "unsupported extension"),
        (["--model", "{clip.npy}"], "model directory not found"),
        (["--size", "8x8", "--frames", "5"], "SSIM needs frames of at least 11x11"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(monkeypatch, files, tmp_path, capsys, args, message):
    monkeypatch.setattr(kinema.weights, "DEFAULT_VAE_DIR", tmp_path / "not-installed")
    clip, out, model = str(files / "clip.npy"), str(tmp_path / "rec.npy"), ["--model", str(files / "vae")]
    rest = []
    for flag, value in zip(args[::2], args[1::2]):
        value = value.replace("{clip.npy}", str(files / "clip.npy")).replace("{", str(tmp_path) + "/").rstrip("}")
        if flag == "--clip":
            clip = value
        elif flag == "--out":
            out = value
        elif flag == "--model":
            model = [] if value.endswith("/default") else [flag, value]
        else:
            rest += [flag, value]
    code, stdout, stderr = reconstruct(capsys, clip, "-o", out, *model, *rest)
    assert code == 2, stderr
    assert stderr.count("\n") == 1 and stderr.startswith("kinema: error: ") and message in stderr, stderr
    assert not list(tmp_path.glob("rec*"))  # nothing written
