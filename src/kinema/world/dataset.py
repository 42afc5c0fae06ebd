"""An infinite, seeded stream of Shapes clips and captions for training.

Item i is a pure function of (seed, i): its generator is np.random.default_rng([seed, i]).
So training resumes from a data position by index alone, and data-parallel ranks (and
DataLoader workers) take disjoint, interleaved indices without talking to each other.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from kinema.errors import KinemaError
from kinema.world.render import render
from kinema.world.scene import SPLITS, format_caption, object_pool, random_scene


def video_to_tensor(video: np.ndarray) -> torch.Tensor:
    """uint8 (T, H, W, 3) in 0..255 -> float32 (C, T, H, W) in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(video)).permute(3, 0, 1, 2)  # t h w c -> c t h w
    return x.to(torch.float32).div_(127.5).sub_(1.0)


class ShapesDataset(IterableDataset):
    """Shapes clips: `dataset[i]` -> {"video": float32 (C, T, H, W) in [-1, 1], "caption": str}.

    `shapes` / `sizes` (optional) keep only objects of those shapes and sizes; `exits` makes
    every object leave the canvas during the clip or before it (kinema.world.render.exit_start).

    As a torch IterableDataset it yields items start + rank + world_size * m, m = 0, 1, ...
    forever (see `iterate`); `start`, `rank` and `world_size` are set at construction.
    """

    def __init__(self, seed: int = 0, frames: int = 17, size: tuple[int, int] = (64, 64), split: str = "train",
                 p_empty: float = 0.05, p_two: float = 0.3, *, start: int = 0, rank: int = 0,
                 world_size: int = 1, shapes: tuple[str, ...] | None = None, sizes: tuple[str, ...] | None = None,
                 exits: bool = False):
        super().__init__()
        if split not in SPLITS:
            raise KinemaError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        if frames < 1 or min(size) < 1:
            raise KinemaError(f"need frames >= 1 and a positive size, got frames={frames}, size={size}")
        if not (0 <= rank < world_size) or start < 0:
            raise KinemaError(f"need 0 <= rank < world_size and start >= 0, got rank={rank}, "
                              f"world_size={world_size}, start={start}")
        self.seed, self.frames, self.size, self.split = int(seed), int(frames), (int(size[0]), int(size[1])), split
        self.p_empty, self.p_two = float(p_empty), float(p_two)
        self.start, self.rank, self.world_size = int(start), int(rank), int(world_size)
        self.objects = object_pool(split, shapes, sizes)  # once, not per item
        self.exits = bool(exits)
        self._draw(np.random.default_rng(0))  # validate the rates now

    def _draw(self, rng: np.random.Generator):
        return random_scene(rng, split=self.split, p_empty=self.p_empty, p_two=self.p_two, objects=self.objects)

    def __getitem__(self, index: int) -> dict:
        if index < 0:
            raise IndexError(f"an infinite dataset has no negative index, got {index}")
        rng = np.random.default_rng([self.seed, int(index)])
        scene = self._draw(rng)
        rendering = render(scene, frames=self.frames, size=self.size, rng=rng, exits=self.exits)
        return {"video": video_to_tensor(rendering.video), "caption": format_caption(scene)}

    def iterate(self, start: int = 0, rank: int = 0, world_size: int = 1) -> Iterator[dict]:
        """Yield items start + rank, start + rank + world_size, ... forever.

        Inside a DataLoader worker (w of W workers) this rank's sequence is split further:
        the worker yields its m-th share start + rank + world_size * (w + W * m), so the
        workers together cover exactly this rank's indices, each index once.
        """
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        index, step = start + rank + world_size * worker, world_size * workers
        while True:
            yield self[index]
            index += step

    def __iter__(self) -> Iterator[dict]:
        return self.iterate(self.start, self.rank, self.world_size)
