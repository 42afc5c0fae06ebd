"""The final directory of a run: what `kinema generate --model DIR` (or a diffusion run's
`diffusion.vae`) loads.

VAE run, `RUN/final/` is a component dir (kinema.checkpoint) whose config carries the
latent statistics measured on the training data with the EMA weights, so `encode` returns
unit-scale latents (DESIGN rule 9):

    config.json  model.safetensors  ema.safetensors

Diffusion run, `RUN/final/` is a pipeline dir: the denoiser network's component dir, plus a
`model.json` that ties it to the rest, plus a copy of the exact VAE weights it was trained
on, so the directory is self-contained:

    model.json          PipelineConfig: network family, schedule, prediction, text encoder,
                        the VAE's folder (or null for pixel space), default clip size and
                        sampler settings
    config.json  model.safetensors  ema.safetensors      the denoiser network
    vae/config.json  vae/model.safetensors               the frozen VAE (latent runs only)
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch

from kinema.checkpoint import save_component
from kinema.config import Config
from kinema.fileio import atomic_dir

PIPELINE_FILE = "model.json"
VAE_DIR = "vae"


@dataclasses.dataclass(frozen=True)
class PipelineConfig(Config):
    """model.json of a pipeline dir. `schedule` is the schedule's own config dict (its
    "kind" names the class in kinema.diffusion.schedules); folders are relative to the
    pipeline dir; frames/height/width/fps are the training clip's, the sampler settings
    those of the run's sample GIFs."""

    kind: ClassVar[str] = "pipeline"

    network: Literal["dit", "unet3d"]
    schedule: dict[str, Any]
    prediction: Literal["eps", "v", "x0", "flow"]
    text_encoder: Literal["minilm", "none"]
    denoiser: str = "."
    vae: str | None = VAE_DIR
    frames: int = 17
    height: int = 64
    width: int = 64
    fps: float = 8.0
    sampler: str = "euler"
    steps: int = 20
    guidance: float = 4.0


def export_pipeline(
    path: Path,
    pipeline: PipelineConfig,
    *,
    network_config: Config,
    weights: dict[str, torch.Tensor],
    ema: dict[str, torch.Tensor],
    vae: torch.nn.Module | None,
) -> Path:
    """Write a diffusion run's pipeline dir atomically (the whole of it appears at once)."""
    with atomic_dir(path) as tmp:
        save_component(tmp, network_config, weights, ema)
        if vae is not None:
            save_component(tmp / VAE_DIR, vae.config, vae.state_dict())
        pipeline = pipeline.replace(vae=VAE_DIR if vae is not None else None)
        (tmp / PIPELINE_FILE).write_text(pipeline.to_json(), encoding="utf-8")
    return path
