"""Long video by overlapping-chunk autoregression, handed over in latent space.

The model sees a window of `t` latent frames. The first window is text-to-video (or the
given clip's latents); each later window knows the last `context` latent frames of the one
before (their latents, never decoded and re-encoded, which would drift in colour) and
generates the rest. The context is shown slightly noised (context_sigma, as the default
model was trained with, Diffusion Forcing style) against exposure bias. New latents go
straight into the VAE's streaming decoder, whose causal cache makes chunk-by-chunk
decoding equal to decoding the whole latent clip, so frames reach the writer as each
window completes and memory stays bounded whatever the length.
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch
from torch import Tensor

from kinema.errors import KinemaError
from kinema.pipeline import Pipeline
from kinema.tasks.known import known_at
from kinema.tasks.t2v import sample_latents


def default_context(window: int) -> int:
    """Latent frames each window keeps from the one before unless told: just over half the
    window (3 of the default model's 5), at least one new frame per window. Keeping 2 of 5,
    a model fine-tuned on exits still drew a new object after the exit in 2 of 6 long clips;
    keeping 3 it sees enough of the exit to leave the canvas empty (docs/MEASURED.md)."""
    return max(1, min(window - 1, window // 2 + 1))


def latent_frames_needed(pipe: Pipeline, frames: int) -> int:
    """Latent frames for `frames` output frames (1 + f*k), with a clear error otherwise."""
    return pipe.latent_shape(1, frames, (pipe.config.height, pipe.config.width))[2]


@torch.no_grad()
def extend_latents(
    pipe: Pipeline,
    prompt: str,
    total_latents: int,
    *,
    start: Tensor | None = None,
    context: int | None = None,
    context_sigma: float = 0.05,
    method: str = "trained",
    seed: int = 0,
    **sampling,
) -> Iterator[Tensor]:
    """Yield latent chunks (1, C, n, h, w) whose concatenation has `total_latents` frames.

    `start`: latents (1, C, k, h, w) to continue (their frames are yielded first); None
    starts with text-to-video. Window w (the model's latent frames) with `context` known
    frames (None: default_context(w)), so each later window adds w - context frames; window i
    uses seed + i.
    """
    c = pipe.config
    shape = pipe.latent_shape(1, c.frames, (c.height, c.width))  # one window
    context = default_context(shape[2]) if context is None else context
    if not 1 <= context < shape[2]:
        raise KinemaError(f"context must be between 1 and {shape[2] - 1} latent frames, got {context}")
    if start is None:
        start = sample_latents(pipe, [prompt], shape, seeds=seed, **sampling)
    start = start[:, :, :total_latents]
    yield start
    made, tail, index = start.shape[2], start[:, :, -context:], 1
    while made < total_latents:
        k = tail.shape[2]
        known = known_at(shape, tail, list(range(k)), context_sigma)
        out = sample_latents(pipe, [prompt], shape, known=known, method=method, seeds=seed + index, **sampling)
        new = out[:, :, k : k + total_latents - made]
        yield new
        made += new.shape[2]
        tail = torch.cat([tail, new], dim=2)[:, :, -context:]
        index += 1


@torch.no_grad()
def extend(
    pipe: Pipeline,
    prompt: str,
    frames: int,
    *,
    clip: Tensor | None = None,
    on_frames: Callable[[Tensor], None] | None = None,
    **options,
) -> int:
    """Generate `frames` frames (1 + f*k), decoding each chunk as soon as it is sampled and
    handing its frames (1, 3, n, H, W) in [-1, 1] to `on_frames`. `clip` (1, 3, 1 + f*k, H,
    W) is continued (its own frames come first, as decoded from its latents). Returns the
    number of frames produced."""
    vae = pipe.vae
    if vae is None:
        raise KinemaError("extend needs a latent model (a pipeline with a VAE)")
    total = latent_frames_needed(pipe, frames)
    start = vae.encode(clip) if clip is not None else None
    cache, count = None, 0
    for chunk in extend_latents(pipe, prompt, total, start=start, **options):
        decoded, cache = vae.decode_chunk(chunk, cache)
        count += decoded.shape[2]
        if on_frames is not None:
            on_frames(decoded.float().clamp(-1, 1))
    return count
