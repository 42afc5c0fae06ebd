"""Shared by tests that need a pipeline dir: a tiny, randomly initialized text-to-video model."""

from __future__ import annotations

import torch

from kinema.diffusion.schedules import FlowSchedule
from kinema.models.dit import PRESETS as DIT_PRESETS
from kinema.models.dit import VideoDiT
from kinema.models.vae3d import PRESETS as VAE_PRESETS
from kinema.models.vae3d import VAE3D
from kinema.pipeline import PipelineConfig
from kinema.train.export import export_pipeline


def make_pipeline_dir(path, text_encoder="minilm", frames=5, height=16, width=16, cond_channels=0):
    """Export a tiny random pipeline (dit-tiny + vae-tiny, flow, 3 steps) to `path`; returns the dir.
    cond_channels > 0 (latent channels + 1) makes a network that takes known content."""
    torch.manual_seed(0)
    vae = VAE3D(VAE_PRESETS["vae-tiny"])
    text_dim = 384 if text_encoder == "minilm" else 32
    net = VideoDiT(DIT_PRESETS["dit-tiny"].replace(in_channels=vae.config.latent_channels, text_dim=text_dim,
                                                  cond_channels=cond_channels))
    with torch.no_grad():  # the head is zero-initialized: make the untrained net predict something
        for p in net.proj_out.parameters():
            p.normal_(0, 0.1)
    config = PipelineConfig(network="dit", schedule=FlowSchedule(shift=1.0).to_dict(), prediction="flow",
                            text_encoder=text_encoder, frames=frames, height=height, width=width, steps=3, guidance=3.0)
    return export_pipeline(path, config, network_config=net.config, weights=net.state_dict(),
                           ema=net.state_dict(), vae=vae)
