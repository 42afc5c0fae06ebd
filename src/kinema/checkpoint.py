"""Component directories: `config.json` + `model.safetensors` (+ `ema.safetensors`).

Saving is atomic (the whole directory appears at once or not at all); loading is strict
(missing or unexpected tensors, wrong shapes, a corrupt file: a clear error, nothing
half-loaded). Weights are safetensors only: kinema never unpickles a file.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from kinema.config import Config, ConfigError
from kinema.errors import KinemaError
from kinema.fileio import atomic_dir

if TYPE_CHECKING:
    import torch

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
EMA_FILE = "ema.safetensors"

C = TypeVar("C", bound=Config)


class CheckpointError(KinemaError):
    """A model directory that is missing, corrupt or does not match its model."""


def _contiguous(state: dict[str, "torch.Tensor"]) -> dict[str, "torch.Tensor"]:
    return {k: v.detach().contiguous().cpu() for k, v in state.items()}


def save_component(
    path: str | Path,
    config: Config,
    state_dict: dict[str, "torch.Tensor"],
    ema_state_dict: dict[str, "torch.Tensor"] | None = None,
) -> Path:
    """Write a component directory atomically and return its path."""
    from safetensors.torch import save_file

    path = Path(path)
    with atomic_dir(path) as tmp:
        (tmp / CONFIG_FILE).write_text(config.to_json(), encoding="utf-8")
        save_file(_contiguous(state_dict), str(tmp / WEIGHTS_FILE), metadata={"kind": config.kind})
        if ema_state_dict is not None:
            save_file(_contiguous(ema_state_dict), str(tmp / EMA_FILE), metadata={"kind": config.kind})
    return path


def load_config(path: str | Path, config_cls: type[C]) -> C:
    """Read a component directory's config (strictly)."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"model directory not found: {path}")
    try:
        return config_cls.load(path / CONFIG_FILE)
    except ConfigError as e:
        raise CheckpointError(f"{path}: {e}") from None


def load_tensors(file: str | Path) -> dict[str, "torch.Tensor"]:
    """Read a safetensors file, turning any corruption into a CheckpointError."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    file = Path(file)
    if not file.is_file():
        raise CheckpointError(f"weights file not found: {file}")
    try:
        return load_file(str(file))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"corrupt weights file {file}: {str(e).splitlines()[0]}") from None


def load_state_strict(module: "torch.nn.Module", state: dict[str, "torch.Tensor"], where: str) -> None:
    """Load `state` into `module` only if every name and shape matches; else change nothing."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensor(s) (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} tensor(s) (e.g. {unexpected[0]})")
        raise CheckpointError(f"{where}: weights do not match the model: {'; '.join(parts)}")
    for name, t in state.items():
        if tuple(t.shape) != tuple(own[name].shape):
            raise CheckpointError(
                f"{where}: tensor {name} has shape {tuple(t.shape)}, model expects {tuple(own[name].shape)}"
            )
    module.load_state_dict(state, strict=True)


def weights_file(path: Path, ema: bool) -> Path:
    """A component dir's weights file: the EMA one when asked for and present, else the raw one."""
    return path / EMA_FILE if ema and (path / EMA_FILE).is_file() else path / WEIGHTS_FILE


def config_difference(saved: dict, current: dict, saved_as: str = "in checkpoint", current_as: str = "now") -> str:
    """The first three fields where two config dicts differ, e.g. "depth: 1 in checkpoint vs 2 now"."""
    keys = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    return ", ".join(f"{k}: {saved.get(k)!r} {saved_as} vs {current.get(k)!r} {current_as}" for k in keys[:3])


def load_component(path: str | Path, config_cls: type[C], build, *, ema: bool = False):
    """Build a model from a component directory: `build(config) -> nn.Module`, then load.

    With `ema=True` the EMA weights are loaded when present (falling back to the raw ones).
    Returns the module in eval mode.
    """
    path = Path(path)
    config = load_config(path, config_cls)
    module = build(config)
    load_state_strict(module, load_tensors(weights_file(path, ema)), str(path))
    return module.eval()


def load_initial_weights(module: "torch.nn.Module", path: str | Path, config: Config, what: str = "model.init") -> None:
    """Start `module` (built from `config`) from the weights of a component dir, or of a
    pipeline dir's denoiser (the folder its model.json names): the EMA weights when present
    (a float16 release loads into float32 parameters as it does at inference). A different
    network config is refused with the fields that differ (`what` names the setting in the
    message); nothing is loaded then."""
    from kinema.pipeline import PIPELINE_FILE, PipelineConfig

    path = Path(path)
    component = path / PipelineConfig.load(path / PIPELINE_FILE).denoiser if (path / PIPELINE_FILE).is_file() else path
    found = load_config(component, type(config)).to_dict()
    if found != config.to_dict():
        raise CheckpointError(f"{what} {path} holds a different network "
                              f"({config_difference(found, config.to_dict(), 'there', 'in this run')})")
    load_state_strict(module, load_tensors(weights_file(component, ema=True)), str(component))
