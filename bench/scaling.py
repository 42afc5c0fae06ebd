"""Time per clip against frames and resolution (sampling + VAE decode), with a plot.

Issue "Benchmarks", item 5. The default model's architecture (the default model itself if it
is packaged, else random weights: time does not depend on them; bench/default_pipeline.py)
makes one clip per configuration with guided sampling (2 network evaluations a step, in one
batch-2 call), then decodes it: text-to-video as `kinema generate` runs it, timed in two
parts (sampling, text encoding included; decode). Frames vary at the model's size, sizes at
its frame count. Every repeat goes once through all configurations (and precisions) in
turn, so drifting load on the machine spreads over all of them; medians are reported, and
the first pass is an untimed warm-up.

Tokens per clip grow linearly with frames and with pixels (patch (1, 4, 4) on latents of
the 4x4x4 VAE: 64x64 -> 4x4 tokens a latent frame), so attention, quadratic in tokens, is
the only superlinear part; the plot shows how much of it is visible at these sizes.

    python bench/scaling.py [--frames 9 17 33 65] [--sizes 32 64 96 128] [--steps 20]
                            [--repeats 3] [--precisions fp32 bf16] [--threads 1]
                            [--out docs/scaling.json] [--plot docs/scaling.png]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchio import emit_json

PROMPT = "a large red circle moving right on a black background"


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((axes[0], "frames", "frames (at the model's size)"),
                           (axes[1], "size", "height = width, pixels (at the model's frame count)")):
        for precision, rows in result["series"].items():
            points = sorted((r[key], r) for r in rows[key])
            xs = [x for x, _ in points]
            total = [r["total_s"] for _, r in points]
            sampling = [r["sampling_s"] for _, r in points]
            line, = ax.plot(xs, total, "o-", label=f"{precision}: sampling + decode")
            ax.plot(xs, sampling, "s--", color=line.get_color(), alpha=0.6, label=f"{precision}: sampling")
        ax.set_xlabel(label)
        ax.set_ylabel("seconds per clip")
        ax.set_xticks(sorted({r[key] for rows in result["series"].values() for r in rows[key]}))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    c = result["config"]
    fig.suptitle(f"kinema default architecture, {c['steps']} steps, guidance {c['guidance']}, "
                 f"{c['threads']} thread(s), {result['machine']['cpu']} ({c['date']})", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="pipeline dir (default: the default model, or a random one of its architecture)")
    p.add_argument("--frames", type=int, nargs="+", default=[9, 17, 33, 65])
    p.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 96, 128])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16", "auto"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, help="write the results here as JSON")
    p.add_argument("--plot", type=Path, help="write the plot here (PNG)")
    args = p.parse_args()

    import torch

    from kinema.pipeline import Pipeline
    from kinema.tasks.t2v import sample_latents

    sys.path.insert(0, str(Path(__file__).parent))
    from default_pipeline import model_or_default
    from dit_forward import cpu_model

    torch.set_num_threads(args.threads)
    tmp = tempfile.TemporaryDirectory()
    model, weights = model_or_default(args.model, tmp.name)
    pipes = {name: Pipeline.load(model, precision=name) for name in args.precisions}
    c = next(iter(pipes.values())).config
    cases = [("frames", f, (f, (c.height, c.width))) for f in args.frames]
    cases += [("size", s, (c.frames, (s, s))) for s in args.sizes]
    times: dict = {(name, key, v): {"sampling": [], "decode": []} for name in pipes for key, v, _ in cases}

    def run(pipe, frames: int, size: tuple[int, int]) -> tuple[float, float]:
        shape = pipe.latent_shape(1, frames, size)
        start = time.perf_counter()
        latents = sample_latents(pipe, [PROMPT], shape, steps=args.steps, seeds=0)
        mid = time.perf_counter()
        pipe.decode(latents)
        return mid - start, time.perf_counter() - mid

    with torch.inference_mode():
        for r in range(args.repeats + 1):
            for name, pipe in pipes.items():
                for key, value, (frames, size) in cases:
                    sampling, decode = run(pipe, frames, size)
                    if r:  # pass 0 warms up
                        times[(name, key, value)]["sampling"].append(sampling)
                        times[(name, key, value)]["decode"].append(decode)
            print(f"pass {r}/{args.repeats} done", file=sys.stderr, flush=True)
    tmp.cleanup()

    result: dict = {
        "machine": {"cpu": cpu_model(), "torch": torch.__version__},
        "config": {"model": weights, "steps": args.steps, "evaluations_per_clip": 2 * args.steps,
                   "guidance": c.guidance, "sampler": c.sampler, "threads": args.threads, "repeats": args.repeats,
                   "model_frames": c.frames, "model_size": [c.height, c.width],
                   "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())},
        "series": {},
    }
    print(f"{'precision':<10}{'axis':<8}{'value':>6}{'latents':>16}{'sampling s':>12}{'decode s':>10}{'total s':>9}")
    for name, pipe in pipes.items():
        series: dict = {"frames": [], "size": []}
        for key, value, (frames, size) in cases:
            t = times[(name, key, value)]
            s, d = statistics.median(t["sampling"]), statistics.median(t["decode"])
            shape = pipe.latent_shape(1, frames, size)
            row = {key: value, "frames_out": frames, "size_out": list(size), "latents": list(shape[1:]),
                   "sampling_s": round(s, 3), "decode_s": round(d, 3), "total_s": round(s + d, 3)}
            series[key].append(row)
            print(f"{name:<10}{key:<8}{value:>6}{'x'.join(map(str, shape[1:])):>16}{s:>12.3f}{d:>10.3f}{s + d:>9.3f}")
        result["series"][name] = series
    emit_json(result, args.out)
    if args.plot:
        plot(result, args.plot)
        print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
