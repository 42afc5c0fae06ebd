"""Training checkpoints: everything a run needs to continue bit for bit, saved atomically.

A checkpoint is a directory `RUN/checkpoints/step-00000100/`:

    model.safetensors      the trained network's state dict
    ema.safetensors        its EMA (float32)
    optimizer.safetensors  optimizer state tensors, keyed "<param index>.<name>"
    rng.safetensors        torch CPU (and CUDA) generator states, one set per rank
    state.json             step, data position, lr schedule, optimizer param groups and
                           scalar state, python/numpy RNG states, the model config, the
                           run config, and each file's size and SHA-256

It appears all at once (kinema.fileio.atomic_dir: temp dir, fsync, rename), so a run
killed at any instant leaves only whole checkpoints. Loading is strict: every file is
checked against its recorded size and checksum and every tensor against the model and
optimizer before anything is copied, so a corrupt or mismatched checkpoint is refused with
one line and nothing is half-loaded. No pickle anywhere: tensors in safetensors, the rest
in JSON.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from kinema.checkpoint import CheckpointError, config_difference, load_state_strict, load_tensors
from kinema.fileio import atomic_dir
from kinema.train.ema import EMA

CHECKPOINTS_DIR = "checkpoints"
STATE_FILE = "state.json"
MODEL_FILE = "model.safetensors"
EMA_FILE = "ema.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
RNG_FILE = "rng.safetensors"
FORMAT_VERSION = 1
_STEP_DIR = re.compile(r"step-(\d{8})")


@dataclass(frozen=True)
class Resumed:
    """What a loaded checkpoint tells the loop beyond the weights it filled in."""

    step: int  # optimizer steps completed; the next batch index (the data position)
    path: Path
    run_config: dict[str, Any]
    rng: list[dict[str, Any]]  # per rank: {"python", "numpy", "torch_cpu", "torch_cuda"}


# ----------------------------------------------------------------------------- RNG


def capture_rng() -> dict[str, Any]:
    """This process's global generator states: torch CPU/CUDA as tensors, python/numpy as JSON."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch_cpu": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["torch_cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch_cpu"])
    cuda = state.get("torch_cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


# ----------------------------------------------------------------------------- optimizer


def _split_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Optimizer state dict -> (tensors for safetensors, the rest for JSON)."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entry in sd["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    groups = [{k: list(v) if isinstance(v, tuple) else v for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def _join_optimizer(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any], where: str
) -> dict[str, Any]:
    """Rebuild an optimizer state dict, checking it against `optimizer`'s parameters first."""
    params = [p for g in optimizer.param_groups for p in g["params"]]
    groups = meta["param_groups"]
    if [len(g["params"]) for g in groups] != [len(g["params"]) for g in optimizer.param_groups]:
        raise CheckpointError(f"{where}: optimizer parameter groups do not match the model")
    state: dict[int, dict[str, Any]] = {}
    for name, t in tensors.items():
        index, _, key = name.partition(".")
        if not index.isdigit() or int(index) >= len(params):
            raise CheckpointError(f"{where}: optimizer tensor {name} names no parameter of the model")
        p = params[int(index)]
        if t.ndim and t.shape != p.shape:  # 0-dim entries (step) are per-parameter scalars
            raise CheckpointError(f"{where}: optimizer tensor {name} has shape {tuple(t.shape)}, parameter has {tuple(p.shape)}")
        state.setdefault(int(index), {})[key] = t
    for index, entry in meta["scalars"].items():
        state.setdefault(int(index), {}).update(entry)
    param_groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in groups]
    return {"state": state, "param_groups": param_groups}


# ----------------------------------------------------------------------------- files


def _sha256(file: Path) -> str:
    h = hashlib.sha256()
    with open(file, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _save_tensors(tensors: dict[str, torch.Tensor], file: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(file))


def checkpoint_dirs(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (temp dirs of a killed save are skipped)."""
    folder = Path(run_dir) / CHECKPOINTS_DIR
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and _STEP_DIR.fullmatch(p.name))


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    dirs = checkpoint_dirs(run_dir)
    return dirs[-1] if dirs else None


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    *,
    model: nn.Module,
    ema: EMA,
    optimizer: torch.optim.Optimizer,
    model_config: dict[str, Any],
    run_config: dict[str, Any],
    lr_schedule: dict[str, Any],
    rng: list[dict[str, Any]],
    keep: int,
) -> Path:
    """Write `RUN/checkpoints/step-{step:08d}` atomically, then drop all but the newest `keep`.

    `rng` holds one `capture_rng()` per rank (rank order).
    """
    folder = Path(run_dir) / CHECKPOINTS_DIR
    path = folder / f"step-{step:08d}"
    opt_tensors, opt_meta = _split_optimizer(optimizer)
    rng_tensors: dict[str, torch.Tensor] = {}
    rng_json: list[dict[str, Any]] = []
    for rank, r in enumerate(rng):
        rng_tensors[f"{rank}.torch_cpu"] = r["torch_cpu"]
        for i, t in enumerate(r.get("torch_cuda", [])):
            rng_tensors[f"{rank}.torch_cuda.{i}"] = t
        rng_json.append({"python": r["python"], "numpy": r["numpy"], "cuda_devices": len(r.get("torch_cuda", []))})

    with atomic_dir(path) as tmp:
        _save_tensors(model.state_dict(), tmp / MODEL_FILE)
        _save_tensors(ema.state_dict(), tmp / EMA_FILE)
        _save_tensors(opt_tensors, tmp / OPTIMIZER_FILE)
        _save_tensors(rng_tensors, tmp / RNG_FILE)
        files = {f: {"bytes": (tmp / f).stat().st_size, "sha256": _sha256(tmp / f)}
                 for f in (MODEL_FILE, EMA_FILE, OPTIMIZER_FILE, RNG_FILE)}
        state = {
            "format": FORMAT_VERSION,
            "step": step,
            "data": {"next_batch": step},  # batch k is a pure function of (seed, k, rank)
            "lr_schedule": lr_schedule,
            "optimizer": opt_meta,
            "rng": rng_json,
            "model_config": model_config,
            "run_config": run_config,
            "files": files,
        }
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=1) + "\n", encoding="utf-8")

    for old in checkpoint_dirs(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in folder.glob(".step-*"):  # temp dirs left by a save that was killed
        shutil.rmtree(stale, ignore_errors=True)
    return path


def _read_state(path: Path) -> dict[str, Any]:
    file = path / STATE_FILE
    if not file.is_file():
        raise CheckpointError(f"checkpoint {path} is incomplete: {STATE_FILE} is missing")
    try:
        state = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"checkpoint {path} is corrupt: {STATE_FILE} is unreadable ({type(e).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path}: unknown format {state.get('format') if isinstance(state, dict) else None!r}, expected {FORMAT_VERSION}")
    for name, info in state["files"].items():
        f = path / name
        if not f.is_file():
            raise CheckpointError(f"checkpoint {path} is incomplete: {name} is missing")
        size = f.stat().st_size
        if size != info["bytes"]:
            raise CheckpointError(f"checkpoint {path} is corrupt: {name} has {size} bytes, expected {info['bytes']}")
        if _sha256(f) != info["sha256"]:
            raise CheckpointError(f"checkpoint {path} is corrupt: {name} fails its SHA-256 check")
    return state


def load_checkpoint(
    path: str | Path,
    *,
    model: nn.Module,
    ema: EMA,
    optimizer: torch.optim.Optimizer,
    model_config: dict[str, Any],
) -> Resumed:
    """Fill `model`, `ema` and `optimizer` from a checkpoint, or raise CheckpointError and
    change none of them. RNG states are returned, for `restore_rng`, not applied."""
    path = Path(path)
    state = _read_state(path)
    if state["model_config"] != model_config:
        raise CheckpointError(
            f"checkpoint {path} was written for a different model ({config_difference(state['model_config'], model_config)})"
        )
    weights = load_tensors(path / MODEL_FILE)
    ema_weights = load_tensors(path / EMA_FILE)
    opt_state = _join_optimizer(optimizer, load_tensors(path / OPTIMIZER_FILE), state["optimizer"], str(path))
    rng_tensors = load_tensors(path / RNG_FILE)

    # Check everything before the first copy: EMA against the model's own state dict.
    own = model.state_dict()
    if set(ema_weights) != set(own) or any(ema_weights[k].shape != own[k].shape for k in own):
        raise CheckpointError(f"{path}: EMA weights do not match the model")
    load_state_strict(model, weights, str(path))  # checks names and shapes, then loads
    ema.load_state_dict(ema_weights)
    optimizer.load_state_dict(opt_state)

    rng = []
    for rank, r in enumerate(state["rng"]):
        cuda = [rng_tensors[f"{rank}.torch_cuda.{i}"] for i in range(r["cuda_devices"])]
        rng.append({"python": r["python"], "numpy": r["numpy"], "torch_cpu": rng_tensors[f"{rank}.torch_cpu"], "torch_cuda": cuda})
    return Resumed(step=int(state["step"]), path=path, run_config=state["run_config"], rng=rng)
