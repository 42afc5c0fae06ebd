"""Training throughput and peak memory: kinema's 3D U-Net against video-diffusion-pytorch's.

Issue "Benchmarks: kinema against diffusers and video-diffusion-pytorch": lucidrains'
video-diffusion-pytorch needs about 4 s per fp32 training step at batch 4, 8x32x32, with a
3.2M-parameter Unet3D; target: kinema >= 2x its training throughput (samples per second)
on a U-Net of matched size.

The two networks, at the same widths, depth in levels, resolution and frames:
  vdp     `Unet3D(dim=16, dim_mults=(1, 2, 4, 8), channels=3)`, unconditional (its text
          path downloads BERT), trained through its own `GaussianDiffusion` (cosine
          schedule, 1000 steps, eps prediction, loss_type "l2").
  kinema  `UNet3D` preset "vdp-match" (the same level widths 16/32/64/128, pixel RGB in)
          with text_dim None, trained through `Denoiser.loss` on the same cosine schedule
          (VPSchedule "squaredcos_cap_v2", eps prediction, MSE, uniform levels).
Both counts of parameters are reported (about 3.0M each); forward FLOPs per sample too
(FlopCounterMode), since equal sizes need not mean equal work: vdp puts linear spatial
attention and temporal attention at every level with two ResNet blocks per level, kinema's
preset one block per level, a temporal convolution in every block and attention only at the
third level and the middle. `--text` benchmarks the conditional pair instead: vdp with
cond_dim 384 and one random (B, 384) vector per sample (concatenated to the time
embedding), kinema with text_dim 384 and random (B, 16, 384) text states (cross-attention).

One training step: draw noise levels and noise, forward, loss, backward, AdamW step, fp32,
on a fixed random batch (B, 3, T, H, W) in [-1, 1] (vdp takes it as [0, 1] and rescales).
Each side runs in its own subprocesses, so its peak RSS (resource.getrusage, a per-process
high-water mark; tracemalloc does not see torch's allocations) is its own: the baseline is
taken after the model, optimizer and batch are built, the peak after the training steps.
Timing children alternate (kinema, vdp, kinema, ...) `--repeats` times with glibc's malloc
as it is; each does `--warmup` untimed steps and `--steps` timed ones, and the median over
all timed steps is reported, with the peak RSS those children reached ("peak_mib", what a
user sees). Then one memory child per side trains `--warmup` + 1 steps with glibc's mmap
threshold fixed (as bench/vae_decode_memory.py does), so that RSS follows live memory
rather than heap fragmentation ("live_peak_above_baseline_mib"). The fixed threshold is
kept out of the timed runs: every large buffer then becomes a fresh mmap, which slowed
both sides' steps here (kinema's about 2x), so it would not time what users run.

video-diffusion-pytorch is a dev-only peer (kinema's package never imports it). Install it
and the dependencies it actually uses without letting pip pull torch or torchvision:
    .venv/bin/pip install --no-deps -r bench/requirements-peers.txt
It imports torchvision at module top only for its GIF dataset and Trainer; torchvision is
not installed here (the PyPI build is CUDA and breaks transformers' import), so the vdp child
puts a stub `torchvision` in sys.modules that fails if anything actually calls into it.

    python bench/train_vs_vdp.py [--batch 4] [--frames 8] [--size 32] [--steps 5] [--warmup 2] [--repeats 3] [--threads 2] [--out docs/train_vs_vdp.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

from benchio import emit_json

SIDES = ("kinema", "vdp")


def stub_torchvision() -> None:
    """Put a minimal `torchvision` in sys.modules: video_diffusion_pytorch imports
    `transforms as T, utils` and builds T.ToTensor() as a default argument at import time;
    the model and GaussianDiffusion never use either."""

    class Unavailable:
        def __init__(self, *args, **kwargs) -> None:
            pass

        def __call__(self, *args, **kwargs):
            raise RuntimeError("torchvision is stubbed out in bench/train_vs_vdp.py")

    names = ("torchvision", "torchvision.transforms", "torchvision.utils")
    tv, transforms, utils = (types.ModuleType(n) for n in names)
    for name in ("ToTensor", "ToPILImage", "Compose", "Resize", "RandomHorizontalFlip", "Lambda", "CenterCrop"):
        setattr(transforms, name, Unavailable)
    tv.transforms, tv.utils = transforms, utils
    sys.modules.update({"torchvision": tv, "torchvision.transforms": transforms, "torchvision.utils": utils})


def build(side: str, args: argparse.Namespace):
    """(model, step function, forward-only function for FLOPs) for one side."""
    import torch

    b, t, s = args.batch, args.frames, args.size
    x = torch.rand(b, 3, t, s, s) * 2 - 1  # (B, 3, T, H, W) clip in [-1, 1]
    if side == "vdp":
        stub_torchvision()
        from video_diffusion_pytorch import GaussianDiffusion, Unet3D

        cond_dim = args.text_dim if args.text else None
        net = Unet3D(dim=16, dim_mults=(1, 2, 4, 8), channels=3, cond_dim=cond_dim)
        model = GaussianDiffusion(net, image_size=s, num_frames=t, channels=3, timesteps=1000, loss_type="l2")
        x01 = (x + 1) / 2  # GaussianDiffusion.forward normalizes [0, 1] to [-1, 1]
        kw = {"cond": torch.randn(b, cond_dim)} if args.text else {}  # (B, 384)

        def loss():
            return model(x01, **kw)

        def forward():
            return net(x, torch.randint(0, 1000, (b,)), **kw)

        return net, model.parameters(), loss, forward

    from kinema.diffusion.denoiser import Denoiser
    from kinema.diffusion.density import sample_sigmas
    from kinema.diffusion.schedules import VPSchedule
    from kinema.models.unet3d import UNet3D, unet3d_preset

    net = UNet3D(unet3d_preset("vdp-match", text_dim=args.text_dim if args.text else None))
    denoiser = Denoiser(net, VPSchedule(beta_schedule="squaredcos_cap_v2"), "eps")
    kw = {}
    if args.text:
        kw = {"context": torch.randn(b, 16, args.text_dim), "context_mask": torch.ones(b, 16, dtype=torch.bool)}

    def loss():
        sigma = sample_sigmas(denoiser.schedule, b)
        return denoiser.loss(x, torch.randn_like(x), sigma, **kw).mean()

    def forward():
        return net(x, torch.rand(b) * 999, **kw)

    return net, net.parameters(), loss, forward


def measure(args: argparse.Namespace) -> dict:
    """Child process: train one side for warmup + steps steps; time and peak RSS."""
    import resource

    import torch

    from kinema.models.flops import forward_flops

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net, params, loss_fn, forward = build(args.child, args)
    net.train()
    opt = torch.optim.AdamW(params, lr=1e-4)
    baseline_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    times, losses = [], []
    for i in range(args.warmup + args.steps):
        start = time.perf_counter()
        loss = loss_fn()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        elapsed = time.perf_counter() - start
        losses.append(float(loss))
        if i >= args.warmup:
            times.append(elapsed)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    net.eval()
    flops = forward_flops(forward)  # after the peak was read: counting allocates too
    return {
        "side": args.child,
        "parameters": sum(p.numel() for p in net.parameters()),
        "forward_GFLOPs_per_sample": round(flops / args.batch / 1e9, 4),
        "step_s": [round(x, 4) for x in times],
        "loss_finite": all(map(lambda v: v == v and abs(v) != float("inf"), losses)),
        "baseline_mib": round(baseline_kib / 1024, 1),
        "peak_mib": round(peak_kib / 1024, 1),
        "peak_above_baseline_mib": round((peak_kib - baseline_kib) / 1024, 1),
    }


MMAP_THRESHOLD = "65536"


def run_child(args: argparse.Namespace, side: str, memory: bool = False) -> dict:
    """One child: timing (glibc as it is, `--steps` timed steps) or memory (fixed mmap
    threshold, one step after the warm-up)."""
    cmd = [
        sys.executable, __file__, "--child", side, "--batch", str(args.batch), "--frames", str(args.frames),
        "--size", str(args.size), "--steps", str(1 if memory else args.steps), "--warmup", str(args.warmup),
        "--threads", str(args.threads), "--text-dim", str(args.text_dim),
    ] + (["--text"] if args.text else [])
    env = dict(os.environ)
    if memory:
        # A fixed mmap threshold stops glibc from moving big freed buffers onto its heap,
        # where fragmentation makes RSS creep up although live tensors stay the same.
        env["MALLOC_MMAP_THRESHOLD_"] = MMAP_THRESHOLD
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode:
        raise SystemExit(f"{side} child failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=32, help="frame height and width")
    p.add_argument("--steps", type=int, default=5, help="timed training steps per child")
    p.add_argument("--warmup", type=int, default=2, help="untimed training steps per child, first")
    p.add_argument("--repeats", type=int, default=3, help="alternating rounds (one child per side each)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--text", action="store_true", help="benchmark the text-conditioned pair instead")
    p.add_argument("--text-dim", type=int, default=384, help=argparse.SUPPRESS)
    p.add_argument("--no-memory", action="store_true", help="skip the memory children (live peak memory)")
    p.add_argument("--out", type=Path, help="write the results here as JSON")
    p.add_argument("--child", choices=SIDES, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(measure(args)))
        return 0

    runs: dict[str, list[dict]] = {side: [] for side in SIDES}
    for _ in range(args.repeats):
        for side in SIDES:
            runs[side].append(run_child(args, side))
    memory = {} if args.no_memory else {side: run_child(args, side, memory=True) for side in SIDES}

    result: dict = {
        "config": {
            "batch": args.batch, "frames": args.frames, "size": [args.size, args.size], "dtype": "float32",
            "text": args.text, "steps": args.steps, "warmup": args.warmup, "repeats": args.repeats,
            "threads": args.threads, "optimizer": "AdamW",
            "memory_children_malloc_mmap_threshold": None if args.no_memory else MMAP_THRESHOLD,
        },
    }
    print(f"batch {args.batch}, {args.frames}x{args.size}x{args.size}, fp32, {args.threads} thread(s)"
          f"{', text' if args.text else ', unconditional'}")
    print(f"{'side':<7} {'params M':>9} {'GFLOPs/sample':>14} {'step s':>8} {'samples/s':>10} {'peak MiB':>9} "
          f"{'+MiB':>7} {'live +MiB':>10}")
    for side in SIDES:
        rows = runs[side]
        steps = [s for r in rows for s in r["step_s"]]
        median = statistics.median(steps)
        result[side] = {
            "parameters": rows[0]["parameters"],
            "forward_GFLOPs_per_sample": rows[0]["forward_GFLOPs_per_sample"],
            "step_median_s": round(median, 4), "step_min_s": round(min(steps), 4), "step_max_s": round(max(steps), 4),
            "samples_per_s": round(args.batch / median, 3),
            "peak_mib": max(r["peak_mib"] for r in rows),
            "peak_above_baseline_mib": max(r["peak_above_baseline_mib"] for r in rows),
            "live_peak_above_baseline_mib": memory[side]["peak_above_baseline_mib"] if memory else None,
            "loss_finite": all(r["loss_finite"] for r in rows + list(memory.values())),
            "runs": rows,
        }
        r = result[side]
        live = "-" if r["live_peak_above_baseline_mib"] is None else f"{r['live_peak_above_baseline_mib']:.1f}"
        print(f"{side:<7} {r['parameters'] / 1e6:>9.3f} {r['forward_GFLOPs_per_sample']:>14.3f} {median:>8.3f} "
              f"{r['samples_per_s']:>10.2f} {r['peak_mib']:>9.1f} {r['peak_above_baseline_mib']:>7.1f} {live:>10}")
    k, v = result["kinema"], result["vdp"]
    result["ratios"] = {
        "throughput_kinema_over_vdp": round(k["samples_per_s"] / v["samples_per_s"], 2),
        "peak_above_baseline_kinema_over_vdp": round(
            k["peak_above_baseline_mib"] / max(v["peak_above_baseline_mib"], 1e-9), 3),
        "live_peak_above_baseline_kinema_over_vdp": round(
            k["live_peak_above_baseline_mib"] / max(v["live_peak_above_baseline_mib"], 1e-9), 3) if memory else None,
        "parameters_kinema_over_vdp": round(k["parameters"] / v["parameters"], 3),
        "forward_flops_kinema_over_vdp": round(k["forward_GFLOPs_per_sample"] / v["forward_GFLOPs_per_sample"], 3),
    }
    result["target"] = {"throughput_ratio_at_least": 2.0,
                        "met": result["ratios"]["throughput_kinema_over_vdp"] >= 2.0}
    print(f"throughput kinema/vdp: {result['ratios']['throughput_kinema_over_vdp']:.2f}x (target >= 2)")
    emit_json(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
