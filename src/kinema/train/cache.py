"""Precomputed diffusion inputs on disk: VAE latents and text states, keyed by (source, index).

Encoding every clip with a frozen VAE and text encoder at every step repeats the same work;
with `data.cache = DIR` a run encodes each item once and then reads it back. Every source
must be finite (`items`), so the cache holds all of it: for source s, clip length T (the
run's frames, and 1 when image batches are on) and index i < items, the entry "s/T/i".

    DIR/index.json                       {"format", "fingerprint", "items": {"s/T/i": {"shard",
                                          "caption"}}, "texts": {sha1(caption): shard}}
    DIR/shard-r<rank>-<n>.safetensors    "x/s/T/i": latents (C, t, h, w) float32;
                                         "text/<sha1>": states (L, D) float32, unpadded

    DIR/shard-s<k>-r<rank>-<n>.safetensors   the same for sources k, ... added to the mixture later

The fingerprint (clip geometry, what decides each source's items, VAE config and weights
hash, text encoder) is checked on open: a cache built for other data or another VAE is
refused, never mixed in; sources appended to the mixture are encoded and added, the rest
kept (a fine-tune that adds a source to a run's data reuses its cache), and a run on the
first sources alone reads it as it is. Mixture and task
weights are not part of it. Under torchrun each rank encodes a share, and rank 0 writes the
index.
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


# Source fields that change how often items are drawn or which task they serve, not what an
# item is: a cache stays valid when they change.
_NOT_CONTENT = ("weight", "tasks")


def _source_fields(source: dict[str, Any]) -> dict[str, Any]:
    """What decides a source's items, as JSON holds it: fields that differ from their
    defaults (a field added to SourceSpec later, left at its default, does not invalidate
    the caches built before), less the mixture weight and task weights."""
    defaults = json.loads(json.dumps(SourceSpec(type="shapes").to_dict()))
    return {k: v for k, v in json.loads(json.dumps(source)).items()
            if k == "type" or (k not in _NOT_CONTENT and v != defaults.get(k))}


def _comparable(fp: dict[str, Any]) -> dict[str, Any]:
    """A fingerprint as JSON holds it, each source reduced to _source_fields."""
    fp = json.loads(json.dumps(fp))
    if isinstance(fp.get("sources"), list):
        fp["sources"] = [_source_fields(s) for s in fp["sources"]]
    return fp


def fingerprint(config: RunConfig, objective: Any) -> dict[str, Any]:
    d = config.data
    vae = objective.vae
    return {
        "frames": frame_counts(config), "height": d.height, "width": d.width, "fit": d.fit,
        "sources": [s.to_dict() for s in d.sources],
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


def build_cache(folder: Path, config: RunConfig, objective: Any, dist: distributed.DistInfo,
                first_source: int = 0) -> None:
    """Encode this rank's share of every item of sources first_source, ... into shards and
    a partial index."""
    from safetensors.torch import save_file

    sources = [build_source(s, config.data) for s in config.data.sources]
    keys = [(s, frames, i) for s, spec in enumerate(config.data.sources) if s >= first_source
            for frames in frame_counts(config) for i in range(spec.items)]
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
        if first_source:  # an extension: its shards beside the ones already there
            name = f"shard-s{first_source}-r{dist.rank}-{shard_count:05d}.safetensors"
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


def _write_index(folder: Path, dist: distributed.DistInfo, want: dict[str, Any], base: dict[str, Any] | None) -> None:
    """Rank 0 merges every rank's partial index (into `base`, an existing index, when
    extending one) and writes index.json with the fingerprint `want`."""
    distributed.barrier(dist)
    if dist.is_main:
        merged: dict[str, Any] = {"format": FORMAT_VERSION, "fingerprint": want,
                                  "items": dict(base["items"]) if base else {}, "texts": dict(base["texts"]) if base else {}}
        for r in range(dist.world_size):
            part = folder / f"index-r{r}.json"
            data = json.loads(part.read_text(encoding="utf-8"))
            merged["items"].update(data["items"])
            merged["texts"].update({k: v for k, v in data["texts"].items() if k not in merged["texts"]})
        atomic_write_text(folder / INDEX_FILE, json.dumps(merged))
        for r in range(dist.world_size):
            (folder / f"index-r{r}.json").unlink()
    distributed.barrier(dist)


def _read_index(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / INDEX_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise KinemaError(f"data.cache {folder}: unreadable {INDEX_FILE} ({type(e).__name__}); delete the folder to rebuild") from None


def _leads(short: dict[str, Any], long: dict[str, Any]) -> bool:
    """`short`'s sources are the first sources of `long`, everything else equal."""
    first, all_ = short.get("sources"), long.get("sources")
    if not (isinstance(first, list) and isinstance(all_, list) and 0 < len(first) <= len(all_)):
        return False
    return {**long, "sources": all_[: len(first)]} == short


def _appended_sources(have: dict[str, Any], want: dict[str, Any]) -> int:
    """How many sources `have` holds when `want` is `have` with sources added at the end, else 0."""
    return len(have["sources"]) if _leads(have, want) and len(have["sources"]) < len(want["sources"]) else 0


def _serves(have: dict[str, Any], want: dict[str, Any]) -> bool:
    """`have` holds what `want` asks for: the same, or `want` is a mixture of its first
    sources (a run on part of a mixture reads the entries it keys, 0 .. k-1)."""
    return have == want or _leads(want, have)


def open_cache(config: RunConfig, objective: Any, dist: distributed.DistInfo) -> LatentCache:
    """Open `data.cache`, building it first when it has no index, or encoding only the
    sources added at the end of the mixture since it was built; a mixture of its first
    sources reads it as it is."""
    folder = Path(config.data.cache)
    want = fingerprint(config, objective)
    if not (folder / INDEX_FILE).is_file():
        folder.mkdir(parents=True, exist_ok=True)
        if dist.is_main:
            print(f"kinema train: building the latent cache in {folder}", flush=True)
        build_cache(folder, config, objective, dist)
        _write_index(folder, dist, want, None)
    index = _read_index(folder)
    have, wanted = _comparable(index.get("fingerprint") or {}), _comparable(want)
    kept = _appended_sources(have, wanted) if index.get("format") == FORMAT_VERSION else 0
    if kept:
        if dist.is_main:
            print(f"kinema train: adding sources {kept}..{len(wanted['sources']) - 1} to the latent cache in {folder}",
                  flush=True)
        distributed.barrier(dist)  # every rank has read the old index before rank 0 replaces it
        build_cache(folder, config, objective, dist, first_source=kept)
        _write_index(folder, dist, want, index)
        index = _read_index(folder)
        have = _comparable(index["fingerprint"])
    if index.get("format") != FORMAT_VERSION or not _serves(have, wanted):
        diff = [k for k in wanted if wanted[k] != have.get(k)]
        raise KinemaError(
            f"data.cache {folder} was built for other inputs (differs in: {', '.join(diff) or 'format'}); "
            "delete it or set another data.cache"
        )
    return LatentCache(folder, index)
