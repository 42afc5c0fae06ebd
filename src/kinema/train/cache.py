"""Precomputed diffusion inputs on disk: VAE latents and text states, keyed by (source, index).

Encoding every clip with a frozen VAE and text encoder at every step repeats the same work;
with `data.cache = DIR` a run encodes each item once and then reads it back. Every source
must be finite (`items`), so the cache holds all of it: for source s, clip length T (the
run's frames, and 1 when image batches are on) and index i < items, the entry "s/T/i".

    DIR/index.json                       {"format", "fingerprint", "items": {"s/T/i": {"shard",
                                          "caption"}}, "texts": {sha1(caption): shard}}
    DIR/shard-r<rank>-<n>.safetensors    "x/s/T/i": latents (C, t, h, w) float32;
                                         "text/<sha1>": states (L, D) float32, unpadded

The fingerprint (clip geometry, sources, VAE config and weights hash, text encoder) is
checked on open: a cache built for other data or another VAE is refused, never mixed in.
Under torchrun each rank encodes a share, and rank 0 writes the index.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from kinema.errors import KinemaError
from kinema.fileio import atomic_path, atomic_write_text
from kinema.train import distributed
from kinema.train.config import RunConfig, SourceSpec
from kinema.train.data import build_source

INDEX_FILE = "index.json"
FORMAT_VERSION = 1
SHARD_ITEMS = 256  # entries per shard file
ENCODE_BATCH = 8  # clips per VAE call while building


def _text_key(caption: str) -> str:
    return hashlib.sha1(caption.encode("utf-8")).hexdigest()


def _weights_hash(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def frame_counts(config: RunConfig) -> list[int]:
    d = config.data
    return sorted({d.frames} | ({1} if d.image_prob > 0 else set()))


def _source_fields(source: dict[str, Any]) -> dict[str, Any]:
    """A source's fields that differ from their defaults, as JSON holds them: a field added
    to SourceSpec later, left at its default, does not invalidate the caches built before."""
    defaults = json.loads(json.dumps(SourceSpec(type="shapes").to_dict()))
    return {k: v for k, v in json.loads(json.dumps(source)).items() if k == "type" or v != defaults.get(k)}


def _comparable(fp: dict[str, Any]) -> dict[str, Any]:
    fp = json.loads(json.dumps(fp))
    if isinstance(fp.get("sources"), list):
        fp["sources"] = [_source_fields(s) for s in fp["sources"]]
    return fp


def fingerprint(config: RunConfig, objective: Any) -> dict[str, Any]:
    d = config.data
    vae = objective.vae
    return {
        "frames": frame_counts(config), "height": d.height, "width": d.width, "fit": d.fit,
        "sources": [_source_fields(s.to_dict()) for s in d.sources],
        "vae": None if vae is None else {"config": vae.config.to_dict(), "sha256": _weights_hash(vae)},
        "text_encoder": config.diffusion.text_encoder,
    }


class LatentCache:
    """Read side: `get(source, index, frames) -> (latents (C, t, h, w), caption, states or None)`."""

    def __init__(self, folder: Path, index: dict[str, Any]) -> None:
        self.folder, self.items, self.texts = folder, index["items"], index["texts"]
        self._files: dict[str, Any] = {}

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers reopen the shards themselves
        return {**self.__dict__, "_files": {}}

    def _tensor(self, shard: str, key: str) -> torch.Tensor:
        from safetensors import safe_open

        if shard not in self._files:
            self._files[shard] = safe_open(str(self.folder / shard), framework="pt")
        return self._files[shard].get_tensor(key)

    def get(self, source: int, index: int, frames: int) -> tuple[torch.Tensor, str, torch.Tensor | None]:
        key = f"{source}/{frames}/{index}"
        entry = self.items.get(key)
        if entry is None:
            raise KinemaError(f"data.cache {self.folder} has no entry {key}; delete it to rebuild")
        caption = entry["caption"]
        text = self.texts.get(_text_key(caption))
        states = self._tensor(text, f"text/{_text_key(caption)}") if text is not None else None
        return self._tensor(entry["shard"], f"x/{key}"), caption, states


def build_cache(folder: Path, config: RunConfig, objective: Any, dist: distributed.DistInfo) -> None:
    """Encode this rank's share of every item into shards and a partial index."""
    from safetensors.torch import save_file

    sources = [build_source(s, config.data) for s in config.data.sources]
    keys = [(s, frames, i) for s, spec in enumerate(config.data.sources) for frames in frame_counts(config)
            for i in range(spec.items)]
    mine = keys[dist.rank :: dist.world_size]
    items: dict[str, dict[str, str]] = {}
    texts: dict[str, str] = {}
    pending: dict[str, torch.Tensor] = {}
    shard_count = 0

    def flush() -> None:
        nonlocal pending, shard_count
        if not pending:
            return
        name = f"shard-r{dist.rank}-{shard_count:05d}.safetensors"
        with atomic_path(folder / name) as tmp:
            save_file(pending, str(tmp))
        for key in pending:
            kind, _, rest = key.partition("/")
            if kind == "x":
                items[rest]["shard"] = name
            else:
                texts[rest] = name
        pending, shard_count = {}, shard_count + 1

    for start in range(0, len(mine), ENCODE_BATCH):
        group = mine[start : start + ENCODE_BATCH]
        by_frames: dict[int, list[tuple[int, int, int]]] = {}
        for k in group:  # one VAE call per clip length
            by_frames.setdefault(k[1], []).append(k)
        for frames, ks in by_frames.items():
            videos, captions = zip(*(sources[s].get(i, frames) for s, _, i in ks))
            latents = objective.encode_video(torch.stack(videos).to(objective.device)).float().cpu()
            for (s, f, i), x, caption in zip(ks, latents, captions):
                key = f"{s}/{f}/{i}"
                items[key] = {"caption": caption, "shard": ""}
                pending[f"x/{key}"] = x.contiguous()
            new = sorted({c for c in captions if c.strip() and _text_key(c) not in texts
                          and f"text/{_text_key(c)}" not in pending})
            if objective.text is not None and new:
                states, mask = objective.text.encode(new)
                for c, row, m in zip(new, states, mask):
                    pending[f"text/{_text_key(c)}"] = row[: int(m.sum())].float().cpu().contiguous()
        if len(pending) >= SHARD_ITEMS:
            flush()
    flush()
    atomic_write_text(folder / f"index-r{dist.rank}.json", json.dumps({"items": items, "texts": texts}))


def open_cache(config: RunConfig, objective: Any, dist: distributed.DistInfo) -> LatentCache:
    """Open `data.cache`, building it first when it has no index."""
    folder = Path(config.data.cache)
    want = fingerprint(config, objective)
    index_file = folder / INDEX_FILE
    if not index_file.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        if dist.is_main:
            print(f"kinema train: building the latent cache in {folder}", flush=True)
        build_cache(folder, config, objective, dist)
        distributed.barrier(dist)
        if dist.is_main:
            merged: dict[str, Any] = {"format": FORMAT_VERSION, "fingerprint": want, "items": {}, "texts": {}}
            for r in range(dist.world_size):
                part = folder / f"index-r{r}.json"
                data = json.loads(part.read_text(encoding="utf-8"))
                merged["items"].update(data["items"])
                merged["texts"].update(data["texts"])
            atomic_write_text(index_file, json.dumps(merged))
            for r in range(dist.world_size):
                (folder / f"index-r{r}.json").unlink()
        distributed.barrier(dist)
    try:
        index = json.loads(index_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise KinemaError(f"data.cache {folder}: unreadable {INDEX_FILE} ({type(e).__name__}); delete the folder to rebuild") from None
    have = _comparable(index.get("fingerprint") or {})
    want = _comparable(want)
    if index.get("format") != FORMAT_VERSION or have != want:
        diff = [k for k in want if want[k] != have.get(k)]
        raise KinemaError(
            f"data.cache {folder} was built for other inputs (differs in: {', '.join(diff) or 'format'}); "
            "delete it or set another data.cache"
        )
    return LatentCache(folder, index)
