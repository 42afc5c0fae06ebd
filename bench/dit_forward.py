"""Utilization of the default model's denoiser forward on this CPU (MFU), fp32 and bf16, side by side.

(Named for the DiT it was first written for; it measures whichever denoiser a run config names:
configs/default-t2v.toml is now a 3D U-Net, configs/t2v-dit-4x.toml the video DiT.)

Issue "Benchmarks", item 3: FLOPs of one denoiser forward (counted by FlopCounterMode) over
its time, against the peak of a large matrix product in the same precision, same machine,
same run. The forward runs at the batch guided sampling uses (2: conditional and
unconditional; --batch 16 is eval-model's batch of 8 guided clips) on the geometry of configs/default-t2v.toml: 17 frames at 64x64 through the
default VAE (spatial factor from its config, 4 -> latents (16, 5, 16, 16)), 12 text tokens,
the 17 known-content channels as the default model gets them.

Precisions: "fp32" runs the float32 network; "bf16" the network cast to bfloat16 as
`Pipeline.load(..., precision="bf16")` does it (inputs cast by the denoiser wrapper), against
a bf16 matrix product. Within one run every timed thing alternates (fp32 GEMM, fp32
forward, bf16 GEMM, bf16 forward, again...), so all see the same load on the machine.

    python bench/dit_forward.py [--config configs/default-t2v.toml] [--threads 1] [--repeats 9]
                                [--precisions fp32 bf16] [--gemm 2048] [--batch 2] [--compile]
                                [--out docs/dit_forward.json]
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import time
from pathlib import Path

import torch

from kinema.models.flops import forward_flops
from kinema.models.registry import model_family
from kinema.train.config import load_run_config

from benchio import emit_json

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def default_latent(config_path: str) -> tuple[int, int, int]:
    """(t, h, w) latents of the run config's clip through its VAE (or pixels without one)."""
    run = load_run_config(config_path)
    frames, height, width = run.data.frames, run.data.height, run.data.width
    vae_dir = getattr(run.diffusion, "vae", None)
    if not vae_dir or not (Path(vae_dir) / "config.json").is_file():
        return frames, height, width
    from kinema.models.vae3d import VAE3DConfig

    vc = VAE3DConfig.load(Path(vae_dir) / "config.json")
    return vc.latent_frames(frames), height // vc.spatial_factor, width // vc.spatial_factor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/default-t2v.toml")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--precisions", nargs="+", choices=list(DTYPES), default=["fp32", "bf16"])
    parser.add_argument("--gemm", type=int, default=2048, help="N of the N x N x N peak matrix product")
    parser.add_argument("--batch", type=int, default=2,
                        help="2: one clip with guidance (the target's batch); 16: kinema eval-model's 8 clips")
    parser.add_argument("--compile", action="store_true",
                        help="also time torch.compile'd forwards (compiling takes minutes on 2 cores)")
    parser.add_argument("--latent", type=int, nargs=3, metavar=("T", "H", "W"),
                        help="latent size (default: the config's clip through its VAE)")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    run = load_run_config(args.config)
    config = run.model.resolve()
    base = model_family(run.model.family)[1](config).eval().requires_grad_(False)
    with torch.no_grad():  # zero-initialized heads and branches get weights, so the output is not 0
        for param in base.parameters():
            if param.ndim > 1 and not param.any():
                param.normal_(0, 0.02)
    t, h, w = args.latent or default_latent(args.config)
    bsz = args.batch
    x = torch.randn(bsz, config.in_channels, t, h, w)
    cond = torch.randn(bsz, config.cond_channels, t, h, w) if config.cond_channels else None
    inputs = dict(t=torch.rand(bsz) * 1000, context=torch.randn(bsz, 12, config.text_dim),
                  context_mask=torch.ones(bsz, 12, dtype=torch.bool), cond=cond)
    n = args.gemm

    cases = {}
    with torch.no_grad():
        flops = forward_flops(base, x, **inputs)
        reference = base(x, **inputs)
        for name in args.precisions:
            dtype = DTYPES[name]
            model = base if dtype == torch.float32 else copy.deepcopy(base).to(dtype)
            xi = x.to(dtype)
            kw = {k: v.to(dtype) if isinstance(v, torch.Tensor) and v.is_floating_point() and k != "t" else v
                  for k, v in inputs.items()}
            a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
            out = model(xi, **kw).float()
            err = float((out - reference).norm() / reference.norm())
            a @ b  # warm-up
            cases[name] = {"forward": lambda m=model, xi=xi, kw=kw: m(xi, **kw), "gemm": lambda a=a, b=b: a @ b,
                           "times": {"forward": [], "gemm": []}, "rel_err_vs_fp32": err}
            if args.compile:
                compiled = torch.compile(model)
                start = time.perf_counter()
                out = compiled(xi, **kw).float()
                cases[name + "+compile"] = {
                    "forward": lambda m=compiled, xi=xi, kw=kw: m(xi, **kw), "gemm": lambda a=a, b=b: a @ b,
                    "times": {"forward": [], "gemm": []}, "compile_s": round(time.perf_counter() - start, 1),
                    "rel_err_vs_fp32": float((out - reference).norm() / reference.norm())}
        with torch.inference_mode():
            for _ in range(args.repeats):
                for case in cases.values():
                    for key in ("gemm", "forward"):
                        case["times"][key].append(_timed(case[key]))

    result: dict = {
        "machine": {"cpu": cpu_model(), "threads": args.threads, "torch": torch.__version__,
                    "cpu_capability": torch.backends.cpu.get_cpu_capability()},
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "config": args.config, "family": run.model.family,
        "latent": [config.in_channels, t, h, w], "batch": bsz,
        "parameters_M": round(sum(p.numel() for p in base.parameters()) / 1e6, 2),
        "flops_per_forward_G": round(flops / 1e9, 3),
        "gemm_n": n, "repeats": args.repeats,
    }
    print(f"{'precision':<14}{'GEMM GFLOP/s':>14}{'forward ms':>12}{'forward GFLOP/s':>17}{'MFU':>7}{'rel err':>10}")
    for name, case in cases.items():
        peak = 2 * n**3 / statistics.median(case["times"]["gemm"])
        median = statistics.median(case["times"]["forward"])
        row = {
            "gemm_peak_GFLOPs": round(peak / 1e9, 1),
            "forward_median_ms": round(median * 1e3, 2),
            "forward_min_ms": round(min(case["times"]["forward"]) * 1e3, 2),
            "forward_GFLOPs": round(flops / median / 1e9, 1),
            "mfu": round(flops / median / peak, 3),
            "rel_err_vs_fp32": float(f"{case['rel_err_vs_fp32']:.3g}"),
        }
        if "compile_s" in case:
            row["compile_s"] = case["compile_s"]
        result[name] = row
        print(f"{name:<14}{row['gemm_peak_GFLOPs']:>14.1f}{row['forward_median_ms']:>12.2f}"
              f"{row['forward_GFLOPs']:>17.1f}{row['mfu']:>7.3f}{row['rel_err_vs_fp32']:>10.2g}")
    if "fp32" in cases and "bf16" in cases:
        result["bf16_speedup"] = round(result["fp32"]["forward_median_ms"] / result["bf16"]["forward_median_ms"], 2)
        print(f"bf16 forward speedup over fp32: {result['bf16_speedup']:.2f}x")
    emit_json(result, args.out)


if __name__ == "__main__":
    main()
