"""`kinema eval` and `kinema check` through the real CLI entry point."""

import json

import numpy as np
import pytest
from PIL import Image

import kinema.cli
from kinema.eval.gate import check
from kinema.eval.metrics import psnr, ssim
from kinema.media import write_video
from kinema.world.render import render
from kinema.world.scene import parse_caption

CAPTION = "a large red circle moving right on a black background"


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """A clean rendered clip, the same clip with frame 9 inverted, and a noisy reference."""
    root = tmp_path_factory.mktemp("clips")
    video = render(parse_caption(CAPTION), frames=17, size=(64, 64), rng=0).video
    flashed = video.copy()
    flashed[9] = 255 - flashed[9]
    noise = np.random.default_rng(0).normal(0, 8, video.shape)
    noisy = np.clip(video + noise, 0, 255).astype(np.uint8)
    paths = {}
    for name, v in [("clean", video), ("flashed", flashed), ("noisy", noisy)]:
        paths[name] = root / f"{name}.npy"
        write_video(paths[name], v)
    return paths, {"clean": video, "flashed": flashed, "noisy": noisy}


def test_check_clean_exits_0(clips, capsys):
    paths, _ = clips
    assert kinema.cli.main(["check", str(paths["clean"])]) == 0
    assert capsys.readouterr().out.startswith("clean:")


def test_check_flags_a_flash_one_line_per_problem(clips, capsys):
    paths, videos = clips
    assert kinema.cli.main(["check", str(paths["flashed"])]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    expected = check(videos["flashed"])
    assert lines == [p.message() for p in expected.problems] and len(lines) >= 1
    assert any("9" in line for line in lines)
    assert kinema.cli.main(["check", str(paths["flashed"]), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["clean"] is False and any(9 in p["frames"] for p in data["problems"])


@pytest.mark.parametrize("command", ["check", "eval"])
def test_missing_corrupt_and_too_short_input_exit_2(tmp_path, capsys, command):
    corrupt = tmp_path / "bad.mp4"
    corrupt.write_bytes(b"not a video at all")
    one = tmp_path / "one.npy"
    write_video(one, np.zeros((1, 32, 32, 3), np.uint8))
    for path in (tmp_path / "missing.mp4", corrupt, one):
        assert kinema.cli.main([command, str(path)]) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err.startswith("kinema: error:") and len(captured.err.strip().splitlines()) == 1
        assert str(path.name) in captured.err


def test_eval_json_structure_reference_and_shapes(clips, capsys):
    paths, videos = clips
    code = kinema.cli.main(["eval", str(paths["clean"]), "--reference", str(paths["noisy"]), "--prompt", CAPTION, "--json"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert {"clip", "frames", "height", "width", "temporal", "drift", "reference", "shapes", "gate", "notes"} <= set(data)
    assert (data["frames"], data["height"], data["width"]) == (17, 64, 64)
    assert data["gate"]["clean"] is True and data["notes"] == []
    assert data["shapes"]["passed"] is True and data["shapes"]["caption"] == CAPTION
    assert all(isinstance(v, float) for v in data["temporal"].values())
    ref = data["reference"]
    value, per_frame = psnr(videos["noisy"], videos["clean"], per_frame=True)
    assert ref["psnr"] == pytest.approx(value, rel=1e-12) and np.allclose(ref["psnr_per_frame"], per_frame)
    assert ref["ssim"] == pytest.approx(ssim(videos["noisy"], videos["clean"]), rel=1e-12)
    assert ref["frames_compared"] == 17 and ref["resized"] is False


def test_eval_reference_of_other_size_and_length(clips, tmp_path, capsys):
    paths, videos = clips
    small = tmp_path / "small.npy"
    write_video(small, videos["clean"][:12, ::2, ::2])
    assert kinema.cli.main(["eval", str(paths["clean"]), "--reference", str(small), "--json"]) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert data["reference"]["frames_compared"] == 12 and data["reference"]["resized"] is True
    assert len(data["notes"]) == 2 and "first 12" in captured.err and "resized" in captured.err
    assert 15 < data["reference"]["psnr"] < 60


def test_eval_free_text_prompt_is_a_note_not_an_error(clips, capsys):
    paths, _ = clips
    assert kinema.cli.main(["eval", str(paths["clean"]), "--prompt", "a cat playing piano"]) == 0
    captured = capsys.readouterr()
    assert "not a Shapes caption" in captured.err and "shapes:" not in captured.out
    assert "temporal" in captured.out and "gate: clean" in captured.out


def test_eval_report_marks_flagged_frames(clips, tmp_path, capsys):
    paths, videos = clips
    out = tmp_path / "report"
    assert kinema.cli.main(["eval", str(paths["flashed"]), "--reference", str(paths["clean"]), "--report", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"report: {out / 'index.html'}" in text and "problem" in text
    for name in ("contact_sheet.png", "metrics.png"):
        with Image.open(out / name) as image:
            assert image.format == "PNG" and min(image.size) > 100
    page = (out / "index.html").read_text()
    flagged = sorted({f for p in check(videos["flashed"]).problems for f in p.frames})
    assert 'src="contact_sheet.png"' in page and 'src="metrics.png"' in page
    assert f"Flagged frames: <span class=\"fail\">{', '.join(map(str, flagged))}</span>" in page
    assert "psnr_db" in page
