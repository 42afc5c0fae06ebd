"""Utilization of the default model's denoiser forward on this CPU (MFU), measured side by side.

Issue "Benchmarks", item 3: FLOPs of one denoiser forward (counted by FlopCounterMode) over
its time, against the peak of a large matrix product in the same precision, same machine,
same run. The forward runs at the batch guided sampling uses (2: conditional and
unconditional) on the geometry of configs/default-t2v.toml (17 frames at 64x64 through the
default VAE: latents (16, 5, 8, 8)).
The peak and the forward alternate (A B A B), so both see the same load on the machine.

    python bench/dit_forward.py [--config configs/default-t2v.toml] [--threads 1] [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from kinema.models.dit import VideoDiT
from kinema.models.flops import forward_flops
from kinema.train.config import load_run_config


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/default-t2v.toml")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--latent", type=int, nargs=3, default=(5, 8, 8), metavar=("T", "H", "W"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    config = load_run_config(args.config).model.resolve()
    model = VideoDiT(config).eval()
    t, h, w = args.latent
    x = torch.randn(2, config.in_channels, t, h, w)
    cond = torch.randn(2, config.cond_channels, t, h, w) if config.cond_channels else None
    inputs = dict(t=torch.rand(2), context=torch.randn(2, 12, config.text_dim), cond=cond)

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    with torch.no_grad():
        flops = forward_flops(model, x, **inputs)
        model(x, **inputs), a @ b  # warm-up
        forward, gemm = [], []
        for _ in range(args.repeats):
            forward.append(_timed(lambda: model(x, **inputs)))
            gemm.append(_timed(lambda: a @ b))
    peak = 2 * 2048**3 / statistics.median(gemm)
    median = statistics.median(forward)
    result = {
        "threads": args.threads,
        "latent": [t, h, w],
        "parameters_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "flops_per_forward_G": round(flops / 1e9, 3),
        "gemm_peak_GFLOPs": round(peak / 1e9, 1),
        "forward_median_ms": round(median * 1e3, 2),
        "forward_GFLOPs": round(flops / median / 1e9, 1),
        "mfu": round(flops / median / peak, 3),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
