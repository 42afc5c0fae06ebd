"""`kinema shapes render` and `kinema shapes judge`, through the real CLI entry point."""

import argparse
import json

import numpy as np
import pytest

import kinema.cli
from kinema.cli.arguments import parse_size
from kinema.media import read_frames
from kinema.world.render import render
from kinema.world.scene import parse_caption

CAPTION = "a large cyan triangle moving up on a gray background"


def test_render_writes_the_clip_the_renderer_makes(tmp_path, capsys):
    out = tmp_path / "clip.npy"
    code = kinema.cli.main(["shapes", "render", CAPTION, "-o", str(out), "--seed", "3", "--frames", "9",
                            "--size", "32x48"])
    assert code == 0
    assert capsys.readouterr().out.strip() == str(out)
    expected = render(parse_caption(CAPTION), frames=9, size=(32, 48), rng=3).video
    assert np.array_equal(read_frames(out), expected)


@pytest.mark.parametrize("ext", ["npy", "mp4", "gif"])
def test_rendered_clips_pass_judge(tmp_path, capsys, ext):
    out = tmp_path / f"clip.{ext}"
    assert kinema.cli.main(["shapes", "render", CAPTION, "-o", str(out)]) == 0
    capsys.readouterr()
    assert kinema.cli.main(["shapes", "judge", CAPTION, str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == f"PASS: {CAPTION}"
    assert [line.split()[1] for line in lines[:-1]] == ["presence", "shape", "motion", "consistency", "background"]


def test_judge_exits_1_on_a_failing_clip_and_prints_json(tmp_path, capsys):
    out = tmp_path / "clip.npy"
    kinema.cli.main(["shapes", "render", CAPTION, "-o", str(out)])
    capsys.readouterr()
    wrong = "a large cyan triangle moving down on a gray background"
    assert kinema.cli.main(["shapes", "judge", wrong, str(out), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["passed"] is False and data["caption"] == wrong
    assert data["checks"]["motion"]["passed"] is False and data["checks"]["shape"]["passed"] is True


def test_bad_caption_and_unreadable_clip_exit_2(tmp_path, capsys):
    assert kinema.cli.main(["shapes", "render", "a purple circle", "-o", str(tmp_path / "x.npy")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kinema: error:") and "grammar" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.npy").exists()
    assert kinema.cli.main(["shapes", "judge", CAPTION, str(tmp_path / "missing.mp4")]) == 2
    assert capsys.readouterr().err.startswith("kinema: error:")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    assert kinema.cli.main(["shapes", "judge", CAPTION, str(broken)]) == 2


def test_size_flag_is_validated(capsys):
    assert parse_size("32x48") == (32, 48) and parse_size("64X64") == (64, 64)
    for bad in ["64", "0x64", "64x", "axb", "-4x4", "64x64x3"]:
        with pytest.raises(argparse.ArgumentTypeError, match="HxW"):
            parse_size(bad)
    with pytest.raises(SystemExit) as info:
        kinema.cli.main(["shapes", "render", CAPTION, "-o", "x.npy", "--size", "big"])
    assert info.value.code == 2 and "expected HxW" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        kinema.cli.main(["shapes", "render", CAPTION, "-o", "x.npy", "--frames", "0"])
