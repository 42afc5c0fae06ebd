"""The loop's "every N steps" hooks for a diffusion run: sample GIFs and Shapes validation.

Both generate with the EMA weights: text -> noise -> sampler(cfg(denoiser)) -> VAE decode.
Validation asks for one-object captions from the Shapes train split and from the held-out
split (objects no training clip contains), judges each generated clip with the Shapes
evaluator (kinema.eval.shapes.judge) and reports the pass rates: the first says whether the
model learned its data, the second whether it composes what it learned.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import torch
from einops import rearrange
from torch import Tensor, nn

from kinema.diffusion.denoiser import Denoiser
from kinema.diffusion.guidance import bind, cfg
from kinema.diffusion.samplers import generators, get_sampler, randn
from kinema.train.config import DataSpec, SampleSpec
from kinema.train.objectives import DiffusionObjective


@torch.no_grad()
def generate(
    net: nn.Module,
    objective: DiffusionObjective,
    prompts: Sequence[str],
    *,
    data: DataSpec,
    sample: SampleSpec,
) -> Tensor:
    """Clips of the training size for `prompts` from a network in eval mode: (B, 3, T, H, W)
    in [-1, 1].

    Sample b's noise comes from generator seed `sample.seed + b`, so a prompt's clip does
    not depend on the other prompts in the batch.
    """
    device = objective.device
    frames, n = data.frames, len(prompts)
    if objective.vae is not None:
        vc = objective.vae.config
        s = vc.spatial_factor
        shape = (n, vc.latent_channels, vc.latent_frames(frames), data.height // s, data.width // s)
    else:
        shape = (n, 3, frames, data.height, data.width)
    denoiser = Denoiser(net, objective.schedule, objective.spec.prediction)
    if objective.text is None:
        guided = bind(denoiser)
    else:
        # Encode prompts and nulls together so both come padded to the same length.
        states, mask = objective.text.encode(list(prompts) + [""] * n)
        cond = {"context": states[:n], "context_mask": mask[:n]}
        uncond = {"context": states[n:], "context_mask": mask[n:]}
        guided = bind(denoiser, **cond) if sample.guidance == 1.0 else cfg(denoiser, sample.guidance, cond, uncond)
    gens = generators([sample.seed + b for b in range(n)])
    x = randn(shape, generator=gens, device=device)  # the start of both paths at sigma = 1 is noise
    sigmas = objective.schedule.sigmas(sample.steps).to(device)
    x0 = get_sampler(sample.sampler)(guided, x, sigmas, generator=gens)
    video = objective.vae.decode(x0) if objective.vae is not None else x0
    return video.float().clamp(-1, 1)


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
    """{"val_train_pass", "val_heldout_pass"}: the fraction of clips the Shapes evaluator passes."""
    from kinema.eval.shapes import judge
    from kinema.world.scene import prompt_set

    rates = {}
    for split in ("train", "heldout"):
        prompts = prompt_set(split, sample.validate_prompts, seed=sample.seed)
        videos = generate(net, objective, prompts, data=data, sample=sample)
        rates[f"val_{split}_pass"] = sum(judge(v, p).passed for v, p in zip(videos.cpu(), prompts)) / len(prompts)
    return rates
