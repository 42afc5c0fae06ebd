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


def load_component(path: str | Path, config_cls: type[C], build, *, ema: bool = False):
    """Build a model from a component directory: `build(config) -> nn.Module`, then load.

    With `ema=True` the EMA weights are loaded when present (falling back to the raw ones).
    Returns the module in eval mode.
    """
    path = Path(path)
    config = load_config(path, config_cls)
    module = build(config)
    file = path / EMA_FILE if ema and (path / EMA_FILE).is_file() else path / WEIGHTS_FILE
    load_state_strict(module, load_tensors(file), str(path))
    return module.eval()


def load_initial_weights(module: "torch.nn.Module", path: str | Path, config: Config) -> None:
    """Start `module` (built from `config`) from the weights of a component dir, or of a
    pipeline dir's denoiser (its model.json names the folder): the EMA weights when present,
    cast to the module's dtypes (a release may store float16). A different network config is
    refused with the first field that differs; nothing is loaded then."""
    path = Path(path)
    component = path
    if (path / "model.json").is_file():
        import json

        try:
            component = path / json.loads((path / "model.json").read_text(encoding="utf-8")).get("denoiser", ".")
        except (OSError, ValueError) as e:
            raise CheckpointError(f"{path}/model.json cannot be read: {e}") from None
    found = load_config(component, type(config))
    theirs, ours = found.to_dict(), config.to_dict()
    differing = [k for k in ours if theirs.get(k) != ours[k]]
    if differing:
        k = differing[0]
        raise CheckpointError(f"model.init {path}: its network differs from this run's ({k}: {theirs.get(k)} there, "
                              f"{ours[k]} here)")
    file = component / EMA_FILE if (component / EMA_FILE).is_file() else component / WEIGHTS_FILE
    own = module.state_dict()
    state = {k: v.to(own[k].dtype) if k in own else v for k, v in load_tensors(file).items()}
    load_state_strict(module, state, str(component))
