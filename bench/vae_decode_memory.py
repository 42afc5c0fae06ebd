"""Peak memory of streaming VAE decode against clip length: it must stay flat.

Each measurement runs in a fresh subprocess (peak RSS is a per-process high-water mark, and
tracemalloc does not see torch's allocations): build the VAE (random weights: memory does
not depend on them), draw the latents, note the peak RSS so far as the baseline, decode,
note the peak again. The children run with a fixed glibc mmap threshold (see run_child)
so that peak RSS follows live memory rather than heap fragmentation. The streaming decode
(`decode_chunks`) hands each chunk of frames to a consumer that keeps only a checksum, as a
writer to disk would; the naive decode (`decode(..., chunk_latents=None)`) runs the whole
clip through the decoder at once.

    python bench/vae_decode_memory.py --out docs/vae_decode_memory.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def measure(args: argparse.Namespace) -> dict:
    """Child process: decode one clip and report its peak memory above the baseline."""
    import resource

    import torch

    from kinema.models.vae3d import VAE3D, preset

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = preset(args.preset)
    vae = VAE3D(cfg).eval()
    s = cfg.spatial_factor
    z = torch.randn(1, cfg.latent_channels, cfg.latent_frames(args.frames), args.size // s, args.size // s)
    baseline_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    start = time.perf_counter()
    frames = 0
    checksum = 0.0
    with torch.inference_mode():
        if args.mode == "stream":
            for chunk in vae.decode_chunks(z, chunk_latents=args.chunk_latents):
                frames += chunk.shape[2]
                checksum += float(chunk.double().sum())  # consume, keep nothing
        else:
            clip = vae.decode(z, chunk_latents=None)
            frames, checksum = clip.shape[2], float(clip.double().sum())
    seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "mode": args.mode,
        "frames": frames,
        "size": args.size,
        "seconds": round(seconds, 2),
        "baseline_mib": round(baseline_kib / 1024, 1),
        "peak_above_baseline_mib": round((peak_kib - baseline_kib) / 1024, 1),
        "clip_mib": round(frames * cfg.in_channels * args.size**2 * 4 / 2**20, 1),  # float32 frames
        "checksum": checksum,
    }


def run_child(args: argparse.Namespace, frames: int, mode: str) -> dict:
    cmd = [
        sys.executable, __file__, "--child", "--frames", str(frames), "--mode", mode,
        "--preset", args.preset, "--size", str(args.size), "--chunk-latents", str(args.chunk_latents),
        "--threads", str(args.threads),
    ]
    env = dict(os.environ)
    if not args.glibc_default:
        # A fixed mmap threshold stops glibc from moving big freed buffers onto its heap,
        # where fragmentation makes RSS creep up although live tensors stay the same.
        env.setdefault("MALLOC_MMAP_THRESHOLD_", "65536")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="vae-s")
    p.add_argument("--size", type=int, default=64, help="output frame height and width")
    p.add_argument("--lengths", type=int, nargs="+", default=[17, 129, 257])
    p.add_argument("--naive-frames", type=int, default=129, help="also decode this many frames at once (0: skip)")
    p.add_argument("--chunk-latents", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--glibc-default", action="store_true", help="keep glibc's sliding mmap threshold")
    p.add_argument("--out", type=Path, help="write the results here as JSON")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--frames", type=int, help=argparse.SUPPRESS)
    p.add_argument("--mode", choices=["stream", "whole"], default="stream", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(measure(args)))
        return 0

    rows = [run_child(args, n, "stream") for n in args.lengths]
    if args.naive_frames:
        rows.append(run_child(args, args.naive_frames, "whole"))
    size, chunk = f"{args.size}x{args.size}", args.chunk_latents
    print(f"{args.preset} decode at {size}, chunk_latents={chunk}, {args.threads} thread(s)")
    print(f"{'mode':>7} {'frames':>7} {'peak MiB':>9} {'clip MiB':>9} {'seconds':>8}")
    for r in rows:
        peak, clip_mib = r["peak_above_baseline_mib"], r["clip_mib"]
        print(f"{r['mode']:>7} {r['frames']:>7} {peak:>9.1f} {clip_mib:>9.1f} {r['seconds']:>8.1f}")
    stream = {r["frames"]: r for r in rows if r["mode"] == "stream"}
    shortest, longest = min(stream), max(stream)
    ratio = stream[longest]["peak_above_baseline_mib"] / max(stream[shortest]["peak_above_baseline_mib"], 1e-9)
    print(f"peak ratio {longest}/{shortest} frames (streaming): {ratio:.2f}")
    result = {
        "preset": args.preset, "size": args.size, "chunk_latents": args.chunk_latents, "threads": args.threads,
        "malloc_mmap_threshold": None if args.glibc_default else os.environ.get("MALLOC_MMAP_THRESHOLD_", "65536"),
        "rows": rows, f"ratio_{longest}_over_{shortest}": round(ratio, 3),
    }
    if args.out:
        from benchio import emit_json

        emit_json(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
