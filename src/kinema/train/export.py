"""The final directory of a run: what `kinema generate --model DIR` (or a diffusion run's
`diffusion.vae`) loads.

VAE run, `RUN/final/` is a component dir (kinema.checkpoint) whose config carries the
latent statistics measured on the training data with the EMA weights, so `encode` returns
unit-scale latents (DESIGN rule 9):

    config.json  model.safetensors  ema.safetensors

Diffusion run, `RUN/final/` is a pipeline dir (kinema.pipeline describes the layout): the
denoiser network's component dir, a `model.json` that ties it to the rest, and a copy of
the exact VAE weights it was trained on, so the directory is self-contained.
"""

from __future__ import annotations

from pathlib import Path

import torch

from kinema.checkpoint import save_component
from kinema.config import Config
from kinema.fileio import atomic_dir
from kinema.pipeline import PIPELINE_FILE, VAE_DIR, PipelineConfig

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
