"""kinema.eval.report: contact sheets, plots and the HTML pages, on rendered Shapes clips."""

import numpy as np
import pytest
from PIL import Image

from kinema.eval import report
from kinema.eval.gate import check
from kinema.eval.shapes import judge
from kinema.world.render import render
from kinema.world.scene import parse_caption

CAPTION = "a large red circle moving right on a black background"


@pytest.fixture(scope="module")
def flashed():
    """A rendered clip with frame 9 inverted: the gate flags it."""
    video = render(parse_caption(CAPTION), frames=17, size=(64, 64), rng=0).video.copy()
    video[9] = 255 - video[9]
    return video


def test_contact_sheet_layout_and_flag_outline():
    frames = np.full((5, 16, 16, 3), 128, np.uint8)
    sheet = report.contact_sheet(frames, flagged=[3], columns=4)
    assert sheet.shape == (*report.sheet_size(5, (16, 16), columns=4), 3)
    up, down = report.cell_scale(16, 16)
    assert (up, down) == (6, 1)  # 16 px frames are enlarged to 96 px cells
    cell_w = 16 * up + 2 * report.BORDER
    # cell k's outline starts at GAP + col * (cell_w + GAP), below its label strip
    top = report.GAP + report.LABEL_HEIGHT
    for k, expected in [(2, report.PLAIN_RGB), (3, report.FLAG_RGB)]:
        left = report.GAP + k * (cell_w + report.GAP)
        assert tuple(sheet[top, left]) == expected
        assert tuple(sheet[top + report.BORDER + 5, left + report.BORDER + 5]) == (128, 128, 128)


def test_long_clips_keep_every_flagged_frame():
    shown = report.sheet_frames(200, flagged=[57, 58, 199], max_frames=16)
    assert {0, 57, 58, 199} <= set(shown) and len(shown) <= 16 and shown == sorted(shown)
    assert report.sheet_frames(10, [3]) == list(range(10))
    assert report.cell_scale(1024, 512) == (1, 4)  # large frames are subsampled to <= MAX_CELL


def test_clip_report_files_and_flags(tmp_path, flashed):
    gate = check(flashed)
    flagged = report.flagged_frames(gate)
    assert not gate.clean and 9 in flagged
    out = report.write_clip_report(tmp_path / "r", flashed, gate, title="a <clip>", tables={"Temporal": gate.metrics.summary()},
                                   judgement=judge(flashed, CAPTION), notes=["a note"])
    assert sorted(p.name for p in out.iterdir()) == sorted(report.CLIP_FILES)
    series = gate.metrics.per_frame()
    sizes = {"contact_sheet.png": report.sheet_size(17, (64, 64))[::-1], "metrics.png": report.plot_size(len(series))[::-1]}
    for name, size in sizes.items():
        with Image.open(out / name) as image:
            assert image.format == "PNG" and image.size == size
    page = (out / "index.html").read_text()
    assert 'src="contact_sheet.png"' in page and 'src="metrics.png"' in page
    assert "a &lt;clip&gt;" in page and "a note" in page  # escaped
    assert f"Flagged frames: <span class=\"fail\">{', '.join(map(str, flagged))}</span>" in page
    assert all(p.message().split(":")[0] in page for p in gate.problems)
    # the flagged frame's outline is red in the contact sheet
    sheet = np.asarray(Image.open(out / "contact_sheet.png"))
    cell_w = 64 * report.cell_scale(64, 64)[0] + 2 * report.BORDER
    top = report.GAP + 1 * (report.LABEL_HEIGHT + cell_w + report.GAP) + report.LABEL_HEIGHT  # frame 9: row 1
    left = report.GAP + 1 * (cell_w + report.GAP)  # column 1
    assert tuple(sheet[top, left]) == report.FLAG_RGB
    assert 0 not in flagged
    assert tuple(sheet[report.GAP + report.LABEL_HEIGHT, report.GAP]) == report.PLAIN_RGB  # frame 0


def test_clean_clip_report_has_no_flags(tmp_path):
    video = render(parse_caption(CAPTION), frames=9, size=(32, 32), rng=0).video
    gate = check(video)
    assert gate.clean
    page = (report.write_clip_report(tmp_path / "r", video, gate, title="t") / "index.html").read_text()
    assert "clean" in page and "Flagged frames" not in page


def test_report_replaces_an_existing_directory_whole(tmp_path, flashed):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "stale.txt").write_text("old")
    report.write_clip_report(tmp_path / "r", flashed[:5], check(flashed[:5]), title="t")
    assert not (tmp_path / "r" / "stale.txt").exists() and (tmp_path / "r" / "index.html").is_file()


def test_clips_sheet_one_row_per_clip_failed_rows_red():
    clips = [np.full((5, 32, 32, 3), v, np.uint8) for v in (50, 150)]
    sheet = report.clips_sheet(clips, failed=[False, True], frames_per_clip=6)
    assert sheet.shape == (*report.sheet_size(10, (32, 32), columns=5), 3)  # 6 per row capped at the clip length
    cell = 32 * report.cell_scale(32, 32)[0] + 2 * report.BORDER
    top0 = report.GAP + report.LABEL_HEIGHT
    top1 = top0 + cell + report.LABEL_HEIGHT + report.GAP
    assert tuple(sheet[top0, report.GAP]) == report.PLAIN_RGB and tuple(sheet[top1, report.GAP]) == report.FLAG_RGB
    assert sheet[top1 + report.BORDER + 1, report.GAP + report.BORDER + 1, 0] == 150


def test_pass_rate_plot_is_a_png_of_the_documented_size(tmp_path):
    path = report.plot_pass_rates(tmp_path / "p.png", {"presence": 0.5, "overall": float("nan"), "gate_clean": 1.0})
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == report.plot_size(1)[::-1]
