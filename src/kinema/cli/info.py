"""`kinema info MODEL_OR_CONFIG`: which network it is, how big, and what one call costs.

MODEL_OR_CONFIG is any of
  a component dir   config.json + model.safetensors (a VAE run's final/, a checkpoint);
  a pipeline dir    model.json + the denoiser's component files + vae/ (a diffusion run's final/);
  a config file     a network's config.json (no weights needed), a model.json or a run's config.json;
  a run config      a .toml file for `kinema train`;
  a preset name     e.g. dit-s, unet3d-s, vae-s.

It prints the family, the parameter count (total and trainable) and the FLOPs of one call
at a clip of --frames x --size (batch --batch): for a denoiser one forward, on the latent
clip the VAE makes of it (on the pixel clip for a pixel-space model), with --text-len text
tokens; for a VAE, encode and decode apart. FLOPs are counted by PyTorch's FlopCounterMode
(kinema.models.flops: 2 per multiply-add) on shape-only meta copies of the network, so even
large clips take about a second.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kinema.cli.arguments import parse_size, positive_int

if TYPE_CHECKING:
    from torch import nn

    from kinema.config import Config

DEFAULT_TEXT_LEN = 16  # tokens of a Shapes caption with MiniLM's start and end markers, about
ASSUMED_GEOMETRY = (4, 8)  # (time, space) downsampling of every kinema VAE preset


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "info", help="parameters and FLOPs of a model, config or preset",
        description="Show a model's family, parameter count and FLOPs per call at a clip size. "
        "MODEL_OR_CONFIG: a component or pipeline dir, a config .json, a run config .toml or a preset name.",
    )
    parser.add_argument("model", metavar="MODEL_OR_CONFIG", help="model dir, config file or preset (e.g. dit-s)")
    parser.add_argument("--frames", type=positive_int, default=17, help="clip length in frames (default 17)")
    parser.add_argument("--size", type=parse_size, default=(64, 64), metavar="HxW", help="frame size (default 64x64)")
    parser.add_argument("--batch", type=positive_int, default=1, help="clips per call (default 1)")
    parser.add_argument("--text-len", type=positive_int, default=DEFAULT_TEXT_LEN,
                        help=f"text tokens a denoiser attends to (default {DEFAULT_TEXT_LEN})")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=_info)


@dataclasses.dataclass
class Subject:
    """What MODEL_OR_CONFIG names: a network config, maybe its loaded weights, and what is
    known of the VAE whose latents it sees (`vae_config`; `pixel_space` when there is none)."""

    source: str
    name: str
    config: Config
    module: nn.Module | None = None
    vae_config: Config | None = None
    vae_module: nn.Module | None = None
    pixel_space: bool = False
    text: bool = True


def _info(args: argparse.Namespace) -> int:
    import json

    subject = resolve(args.model)
    report = describe(subject, frames=args.frames, size=args.size, batch=args.batch, text_len=args.text_len)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


# ----------------------------------------------------------------------------- what it is


def resolve(spec: str) -> Subject:
    """Read MODEL_OR_CONFIG into a Subject (see the module docstring for what is accepted)."""
    from kinema.errors import KinemaError
    from kinema.models.registry import all_presets, config_from_dict, load_component_dir, read_json
    from kinema.pipeline import PIPELINE_FILE

    path = Path(spec)
    if path.is_dir():
        if (path / PIPELINE_FILE).is_file():
            return _pipeline(path)
        if (path / "config.json").is_file() and _kind(read_json(path / "config.json")) == "run":
            return _run_config(path / "config.json")
        config, module = load_component_dir(path)
        return Subject("component dir", str(path), config, module)
    if path.is_file():
        if path.suffix == ".toml":
            return _run_config(path)
        if path.suffix != ".json":
            raise KinemaError(f"{path}: expected a model dir, a config .json, a run config .toml or a preset name")
        data = read_json(path)
        kind = _kind(data)
        if kind == "pipeline":
            return _pipeline(path.parent, path)
        if kind == "run":
            return _run_config(path)
        return Subject("config file", str(path), config_from_dict(data, str(path)))
    presets = all_presets()
    if spec not in presets:
        raise KinemaError(f"{spec!r} is not a file, a directory or a preset name; presets: {', '.join(presets)}")
    return Subject("preset", spec, presets[spec][1])


def _kind(data: object) -> object:
    return data.get("kind") if isinstance(data, dict) else None


def _pipeline(root: Path, file: Path | None = None) -> Subject:
    from kinema.errors import KinemaError
    from kinema.models.registry import load_component_dir
    from kinema.pipeline import PIPELINE_FILE, PipelineConfig

    pipe = PipelineConfig.load(file or root / PIPELINE_FILE)
    config, module = load_component_dir(root / pipe.denoiser)
    if config.kind != pipe.network:
        raise KinemaError(
            f"{root}: model.json names a {pipe.network} network, but {pipe.denoiser} holds a {config.kind}"
        )
    subject = Subject("pipeline dir", str(root), config, module, text=pipe.text_encoder != "none")
    if pipe.vae is None:
        subject.pixel_space = True
    else:
        subject.vae_config, subject.vae_module = load_component_dir(root / pipe.vae)
        if subject.vae_config.kind != "vae3d":
            raise KinemaError(f"{root / pipe.vae}: expected the pipeline's VAE, found a {subject.vae_config.kind}")
    return subject


def _run_config(path: Path) -> Subject:
    from kinema.models.registry import DENOISER_FAMILIES, load_config_file
    from kinema.train.config import load_run_config

    run = load_run_config(path)
    subject = Subject("run config", str(path), run.model.resolve())
    if run.model.family in DENOISER_FAMILIES:
        subject.text = run.diffusion.text_encoder != "none"
        vae_file = None if run.diffusion.vae is None else Path(run.diffusion.vae) / "config.json"
        subject.pixel_space = vae_file is None
        if vae_file is not None and vae_file.is_file():  # else: not trained yet; the geometry is assumed
            subject.vae_config = load_config_file(vae_file)
    return subject


# ----------------------------------------------------------------------------- what it costs


def describe(subject: Subject, *, frames: int, size: tuple[int, int], batch: int, text_len: int) -> dict[str, Any]:
    """The report: family, parameters, input shapes and FLOPs per call, as plain data."""
    from kinema.models.flops import build_on_meta, param_counts
    from kinema.models.registry import model_family

    config = subject.config
    module = subject.module if subject.module is not None else build_on_meta(model_family(config.kind)[1], config)
    total, trainable = param_counts(module)
    report: dict[str, Any] = {
        "source": subject.source, "name": subject.name, "family": config.kind,
        "params": {"total": total, "trainable": trainable},
        "clip": {"frames": frames, "height": size[0], "width": size[1], "batch": batch},
    }
    if config.kind == "vae3d":
        report.update(_vae_costs(config, frames, size, batch))
        return report
    report.update(_denoiser_costs(subject, frames, size, batch, text_len))
    if subject.vae_config is not None:
        vae = subject.vae_module or build_on_meta(model_family("vae3d")[1], subject.vae_config)
        total, trainable = param_counts(vae)
        report["vae"] = {"params": {"total": total, "trainable": trainable},
                         **_vae_costs(subject.vae_config, frames, size, batch)}
    return report


def _count(config: Config, call) -> tuple[int, str]:
    """FLOPs of `call(module, device)` on a meta copy of the network; if some op cannot run
    on meta, on a real CPU copy with zero inputs instead. Returns (flops, device used)."""
    from kinema.errors import KinemaError
    from kinema.models.flops import build_on_meta
    from kinema.models.registry import model_family

    network_cls = model_family(config.kind)[1]
    try:
        return call(build_on_meta(network_cls, config), "meta"), "meta"
    except KinemaError:
        raise  # the clip does not fit the network: the user's to fix
    except (NotImplementedError, RuntimeError):
        return call(network_cls(config).eval(), "cpu"), "cpu"


def _vae_costs(config: Config, frames: int, size: tuple[int, int], batch: int) -> dict[str, Any]:
    import torch

    from kinema.models.flops import forward_flops

    clip = (batch, config.in_channels, frames, *size)
    latent = (batch, config.latent_channels, *_latent_grid(frames, size, config.temporal_factor, config.spatial_factor))
    encode, device = _count(config, lambda vae, dev: forward_flops(vae.encode, torch.zeros(clip, device=dev)))
    decode, _ = _count(config, lambda vae, dev: forward_flops(vae.decode, torch.zeros(latent, device=dev)))
    return {"input": {"clip": list(clip), "latent": list(latent)},
            "flops": {"encode": encode, "decode": decode}, "counted_on": device}


def _latent_grid(frames: int, size: tuple[int, int], tf: int, sf: int) -> tuple[int, int, int]:
    """(t, h, w) of the latents of a frames x H x W clip under (tf, sf) downsampling."""
    from kinema.errors import KinemaError

    if (frames - 1) % tf:
        accepted = f"1 + {tf}k frames (1, {1 + tf}, {1 + 2 * tf}, {1 + 3 * tf}, ...)"
        raise KinemaError(f"--frames {frames}: the VAE takes {accepted}")
    if size[0] % sf or size[1] % sf:
        raise KinemaError(f"--size {size[0]}x{size[1]}: height and width must be multiples of the VAE's {sf}")
    return 1 + (frames - 1) // tf, size[0] // sf, size[1] // sf


def _denoiser_costs(subject: Subject, frames: int, size: tuple[int, int], batch: int, text_len: int) -> dict[str, Any]:
    import torch

    from kinema.models.flops import forward_flops

    config = subject.config
    if subject.vae_config is not None:
        vae = subject.vae_config
        geometry = {"time": vae.temporal_factor, "space": vae.spatial_factor, "assumed": False}
    elif subject.pixel_space or config.in_channels == 3:
        geometry = None  # a pixel-space model (or, with 3 input channels, surely one)
    else:
        geometry = {"time": ASSUMED_GEOMETRY[0], "space": ASSUMED_GEOMETRY[1], "assumed": True}
    grid = (frames, *size) if geometry is None else _latent_grid(frames, size, geometry["time"], geometry["space"])
    x = (batch, config.in_channels, *grid)
    text_dim = getattr(config, "text_dim", None)  # sr3d upscalers have no text input
    context = (batch, text_len, text_dim) if subject.text and text_dim is not None else None
    cond = (batch, config.cond_channels, *grid) if config.cond_channels else None

    def call(net: nn.Module, dev: str) -> int:
        def zeros(shape):
            return None if shape is None else torch.zeros(shape, device=dev)
        t = torch.full((batch,), 500.0, device=dev)  # any noise level: the cost does not depend on it
        return forward_flops(net, zeros(x), t, context=zeros(context), cond=zeros(cond))

    flops, device = _count(config, call)
    shapes = {"x": list(x), "context": context and list(context), "cond": cond and list(cond)}
    return {"input": {"space": "pixels" if geometry is None else "latent", "vae_geometry": geometry, **shapes},
            "flops": {"forward": flops}, "counted_on": device}


# ----------------------------------------------------------------------------- printing


def _si(flops: int) -> str:
    for unit, scale in (("TFLOPs", 1e12), ("GFLOPs", 1e9), ("MFLOPs", 1e6), ("kFLOPs", 1e3)):
        if flops >= scale:
            return f"{flops / scale:.2f} {unit} ({flops:,})"
    return f"{flops} FLOPs"


def _params(params: dict[str, int]) -> str:
    total = params["total"]
    short = f"{total / 1e9:.2f}B" if total >= 1e9 else f"{total / 1e6:.2f}M"
    return f"{total:,} total, {params['trainable']:,} trainable ({short})"


def _vae_lines(part: dict[str, Any], indent: str = "") -> list[str]:
    shapes = part["input"]
    return [f"{indent}clip {tuple(shapes['clip'])} <-> latent {tuple(shapes['latent'])}",
            f"{indent}encode: {_si(part['flops']['encode'])}",
            f"{indent}decode: {_si(part['flops']['decode'])}"]


def format_report(report: dict[str, Any]) -> str:
    """The report as a few lines of text."""
    clip = report["clip"]
    lines = [f"{report['name']}: {report['family']} ({report['source']})",
             f"parameters: {_params(report['params'])}",
             f"clip: {clip['frames']} frames at {clip['height']}x{clip['width']}, batch {clip['batch']}"]
    if report["family"] == "vae3d":
        lines += _vae_lines(report)
    else:
        shapes = report["input"]
        geometry = shapes["vae_geometry"]
        where = "pixels" if geometry is None else (
            f"latents (VAE {'assumed' if geometry['assumed'] else 'of the model'}: "
            f"{geometry['time']}x time, {geometry['space']}x space)")
        lines.append(f"input: x {tuple(shapes['x'])} in {where}"
                     + (f", text {tuple(shapes['context'])}" if shapes["context"] else ", no text")
                     + (f", cond {tuple(shapes['cond'])}" if shapes["cond"] else ""))
        lines.append(f"forward: {_si(report['flops']['forward'])}")
        if "vae" in report:
            lines.append(f"VAE parameters: {_params(report['vae']['params'])}")
            lines += _vae_lines(report["vae"], "VAE ")
    lines.append(f"(FLOPs counted by torch FlopCounterMode on {report['counted_on']} tensors, 2 per multiply-add)")
    return "\n".join(lines)
