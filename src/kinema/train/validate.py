"""The loop's "every N steps" hooks for a diffusion run: sample GIFs and Shapes validation.

Both generate with the EMA weights: text -> noise -> sampler(cfg(denoiser)) -> VAE decode.
Validation asks for one-object captions from the Shapes train split and from the held-out
split (objects no training clip contains), judges each generated clip with the Shapes
evaluator through kinema.eval.model.evaluate_model (the code `kinema eval-model` runs) and
reports the pass rates: the first says whether the model learned its data, the second
whether it composes what it learned.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import torch
from einops import rearrange
from torch import Tensor, nn

from kinema.train.config import DataSpec, SampleSpec
from kinema.train.objectives import DiffusionObjective

if TYPE_CHECKING:
    from kinema.pipeline import Pipeline


def pipeline(net: nn.Module, objective: DiffusionObjective, data: DataSpec, sample: SampleSpec) -> Pipeline:
    """The network being trained as a text-to-video Pipeline making clips of the training
    size with the run's sample settings: what `kinema generate` would load after export."""
    from kinema.pipeline import Pipeline, PipelineConfig

    config = PipelineConfig(
        network=net.config.kind, schedule=objective.schedule.to_dict(), prediction=objective.spec.prediction,
        text_encoder=objective.spec.text_encoder, frames=data.frames, height=data.height,
        width=data.width, sampler=sample.sampler, steps=sample.steps, guidance=sample.guidance,
    )
    return Pipeline(config=config, net=net, schedule=objective.schedule, vae=objective.vae, text=objective.text)


def generate(
    net: nn.Module,
    objective: DiffusionObjective,
    prompts: Sequence[str],
    *,
    data: DataSpec,
    sample: SampleSpec,
) -> Tensor:
    """Clips of the training size for `prompts` from a network in eval mode: (B, 3, T, H, W)
    in [-1, 1], through the same text-to-video task `kinema generate` runs.

    Sample b's noise comes from generator seed `sample.seed + b`, so a prompt's clip does
    not depend on the other prompts in the batch.
    """
    from kinema.tasks.t2v import text_to_video

    return text_to_video(pipeline(net, objective, data, sample), prompts, seeds=sample.seed)


def tile(videos: Tensor, columns: int | None = None) -> Tensor:
    """(B, C, T, H, W) -> one grid clip (C, T, rows*H, cols*W), near square, empty cells black."""
    b = videos.shape[0]
    cols = columns or math.ceil(math.sqrt(b))
    rows = -(-b // cols)
    pad = rows * cols - b
    if pad:
        videos = torch.cat([videos, videos.new_full((pad, *videos.shape[1:]), -1.0)])
    return rearrange(videos, "(r k) c t h w -> c t (r h) (k w)", r=rows, k=cols)


def write_samples(path: Path, net: nn.Module, objective: DiffusionObjective, data: DataSpec, sample: SampleSpec) -> Path:
    """The fixed prompts' clips as one looping grid GIF at `path`."""
    from kinema.media import write_video

    return write_video(path, tile(generate(net, objective, sample.prompts, data=data, sample=sample)), fps=8)


def shapes_pass_rates(net: nn.Module, objective: DiffusionObjective, data: DataSpec, sample: SampleSpec) -> dict[str, float]:
    """{"val_train_pass", "val_heldout_pass"}: the fraction of clips the Shapes evaluator
    passes, computed by kinema.eval.model.evaluate_model, the code `kinema eval-model` runs."""
    from kinema.eval.model import evaluate_model

    pipe = pipeline(net, objective, data, sample)
    rates = {}
    for split in ("train", "heldout"):
        result = evaluate_model(pipe, f"shapes:{split}", n=sample.validate_prompts, seed=sample.seed,
                                batch_size=sample.validate_prompts, keep_clips=0)
        rates[f"val_{split}_pass"] = result.pass_rate
    return rates
