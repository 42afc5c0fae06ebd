"""Peak memory of `kinema extend` against clip length (1x, 4x, 8x the window): it must stay flat.

Issue "Benchmarks", item 4 (the VAE half is bench/vae_decode_memory.py). Each length runs in
a fresh subprocess, since peak RSS is a per-process high-water mark (and tracemalloc does not
see torch's allocations). The child does what `kinema extend --prompt P --frames N -o OUT.mp4`
does (kinema.cli.clip_tasks._extend): load the pipeline, then `kinema.tasks.extend.extend`
with every window's frames going straight into the mp4 writer. Its baseline is the peak RSS
after loading the pipeline and one warm-up window (so allocator pools and the oneDNN caches
are counted in the baseline, not as growth); the figure is the peak after the whole clip.
Children run with glibc's mmap threshold fixed (as bench/vae_decode_memory.py does) so that
RSS follows live memory rather than heap fragmentation.

The pipeline is the default model (src/kinema/weights/default) if it is packaged, else a
randomly initialized pipeline of its architecture built in a temporary dir (memory does not
depend on the weights; bench/default_pipeline.py). A window is the model's clip (17 frames:
5 latent frames); with `context` latent frames carried over, each later window adds
5 - context latent frames. Lengths are m windows' worth of latent frames, m in --multiples:
1 + 4 * (5m - 1) frames (17, 77, 157 for 1x, 4x, 8x). Sampler steps do not change memory;
the default --steps 2 keeps the run short.

    python bench/extend_memory.py [--multiples 1 4 8] [--steps 2] [--threads 1] [--precision fp32]
                                  [--out docs/extend_memory.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchio import emit_json

PROMPT = "a large red circle moving right on a black background"


def measure(args: argparse.Namespace) -> dict:
    """Child: run extend for args.frames frames into an mp4 and report peak RSS."""
    import resource

    import torch

    from kinema.media import VideoWriter
    from kinema.pipeline import Pipeline
    from kinema.tasks.extend import extend

    torch.set_num_threads(args.threads)
    pipe = Pipeline.load(args.model, precision=args.precision)
    options = dict(context=args.context, steps=args.steps, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        with VideoWriter(f"{tmp}/warm.mp4", fps=pipe.config.fps) as writer:  # one window: warm-up
            extend(pipe, PROMPT, pipe.config.frames, on_frames=lambda v: writer.write(v[0]), **options)
        baseline_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        start = time.perf_counter()
        with VideoWriter(f"{tmp}/clip.mp4", fps=pipe.config.fps) as writer:
            count = extend(pipe, PROMPT, args.frames, on_frames=lambda v: writer.write(v[0]), **options)
        seconds = time.perf_counter() - start
        size = os.path.getsize(f"{tmp}/clip.mp4")
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    c = pipe.config
    return {
        "frames": count, "seconds": round(seconds, 2),
        "baseline_mib": round(baseline_kib / 1024, 1), "peak_mib": round(peak_kib / 1024, 1),
        "peak_above_baseline_mib": round((peak_kib - baseline_kib) / 1024, 1),
        "clip_mib": round(count * 3 * c.height * c.width * 4 / 2**20, 1),  # the clip as float32 frames
        "mp4_bytes": size,
    }


def run_child(args: argparse.Namespace, model: str, frames: int) -> dict:
    cmd = [sys.executable, __file__, "--child", "--model", model, "--frames", str(frames),
           "--steps", str(args.steps), "--context", str(args.context), "--threads", str(args.threads),
           "--precision", args.precision]
    env = dict(os.environ)
    env.setdefault("MALLOC_MMAP_THRESHOLD_", "65536")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="pipeline dir (default: the default model, or a random one of its architecture)")
    p.add_argument("--multiples", type=int, nargs="+", default=[1, 4, 8], help="lengths in windows")
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--context", type=int, default=2, help="latent frames carried from window to window")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--precision", default="fp32", choices=["auto", "bf16", "fp32"])
    p.add_argument("--out", type=Path, help="write the results here as JSON")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--frames", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(measure(args)))
        return 0

    sys.path.insert(0, str(Path(__file__).parent))
    from default_pipeline import default_model_dir, export_random_default

    with tempfile.TemporaryDirectory() as tmp:
        model, weights = args.model, "given"
        if model is None:
            found = default_model_dir()
            model, weights = (str(found), "default model") if found else (
                str(export_random_default(Path(tmp) / "model")), "random, default architecture")
        from kinema.pipeline import PipelineConfig

        c = PipelineConfig.load(Path(model) / "model.json")
        from kinema.models.vae3d import VAE3DConfig

        vc = VAE3DConfig.load(Path(model) / (c.vae or "vae") / "config.json")
        window = vc.latent_frames(c.frames)
        rows = []
        for m in args.multiples:
            frames = vc.num_frames(window * m)
            row = run_child(args, model, frames)
            row["multiple"] = m
            rows.append(row)
            print(f"{m}x window: {row['frames']} frames, peak {row['peak_mib']:.1f} MiB, "
                  f"{row['peak_above_baseline_mib']:.1f} MiB above baseline, {row['seconds']:.1f} s", flush=True)
    first, last = rows[0], rows[-1]
    ratio = last["peak_mib"] / first["peak_mib"]
    growth = last["peak_above_baseline_mib"] - first["peak_above_baseline_mib"]
    print(f"peak RSS {last['multiple']}x / {first['multiple']}x: {ratio:.3f}; growth above baseline "
          f"{growth:+.1f} MiB while the clip grew {last['clip_mib'] - first['clip_mib']:.1f} MiB (as float32 frames)")
    result = {
        "model": weights, "window_latent_frames": window, "window_frames": c.frames, "size": [c.height, c.width],
        "steps": args.steps, "context": args.context, "threads": args.threads, "precision": args.precision,
        "malloc_mmap_threshold": os.environ.get("MALLOC_MMAP_THRESHOLD_", "65536"),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "rows": rows, "peak_ratio_last_over_first": round(ratio, 3),
        "growth_above_baseline_mib": round(growth, 1),
    }
    emit_json(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
