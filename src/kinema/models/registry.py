"""Model families by name: the one place that maps a family (a config's `kind`) to its
config class, network class and presets, and loads any component dir by what it holds.

A family's module is imported only when that family is asked for, so importing this
module costs nothing (no torch).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from kinema.checkpoint import CONFIG_FILE, CheckpointError
from kinema.config import Config, ConfigError, read_config_text

if TYPE_CHECKING:
    from torch import nn

FAMILIES = ("dit", "unet3d", "vae3d", "sr3d")
DENOISER_FAMILIES = ("dit", "unet3d")


def model_family(family: str) -> tuple[type[Config], type, dict[str, Config]]:
    """(config class, network class, presets) of a model family; imports it lazily."""
    if family == "dit":
        from kinema.models.dit import PRESETS, DiTConfig, VideoDiT

        return DiTConfig, VideoDiT, PRESETS
    if family == "unet3d":
        from kinema.models.unet3d import PRESETS, UNet3D, UNet3DConfig

        return UNet3DConfig, UNet3D, PRESETS
    if family == "vae3d":
        from kinema.models import vae3d

        return vae3d.VAE3DConfig, vae3d.VAE3D, vae3d.PRESETS
    if family == "sr3d":
        from kinema.models.sr3d import PRESETS, SR3D, SR3DConfig

        return SR3DConfig, SR3D, PRESETS
    raise ConfigError(f"unknown model family {family!r}; expected one of {', '.join(FAMILIES)}")


def all_presets() -> dict[str, tuple[str, Config]]:
    """Every preset of every family: name -> (family, config). Names are unique across families."""
    found: dict[str, tuple[str, Config]] = {}
    for family in FAMILIES:
        for name, config in model_family(family)[2].items():
            found[name] = (family, config)
    return found


def find_preset(name: str) -> tuple[str, Config]:
    """(family, config) of the preset called `name`, from whichever family has it."""
    presets = all_presets()
    if name not in presets:
        raise ConfigError(f"unknown preset {name!r}; known: {', '.join(presets)}")
    return presets[name]


def config_from_dict(data: object, where: str) -> Config:
    """A network config from its JSON object, its class chosen by the object's "kind"."""
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind not in FAMILIES:
        raise ConfigError(f"{where}: unknown kind {kind!r}; expected a model config of kind {', '.join(FAMILIES)}")
    config_cls, _, _ = model_family(kind)
    try:
        return config_cls.from_dict(data)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


def read_json(path: str | Path) -> object:
    """A JSON file's value; a missing, unreadable or malformed file is a one-line ConfigError."""
    path = Path(path)
    text = read_config_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON: {e}") from None


def load_config_file(path: str | Path) -> Config:
    """A network config from a JSON file, whatever its family."""
    return config_from_dict(read_json(path), str(path))


def load_component_dir(path: str | Path, *, ema: bool = False) -> tuple[Config, nn.Module]:
    """(config, module) of a component dir (config.json + model.safetensors) of any family.

    The family is the config's "kind"; the module is built and loaded strictly by that
    family's own `load` (EMA weights with `ema=True` when present), in eval mode.
    """
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"model directory not found: {path}")
    if not (path / CONFIG_FILE).is_file():
        raise CheckpointError(f"{path} is not a model directory: it has no {CONFIG_FILE}")
    try:
        config = load_config_file(path / CONFIG_FILE)
    except ConfigError as e:
        raise CheckpointError(str(e)) from None
    _, network_cls, _ = model_family(config.kind)
    module = network_cls.load(path, ema=ema)
    return module.config, module
