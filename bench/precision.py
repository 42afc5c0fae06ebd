"""bf16 against fp32 inference: what `--precision auto` detects here, what bf16 costs in quality, what it saves.

Three measurements, each side by side in one run (fp32, bf16, fp32, bf16, ...; medians):
  detection   kinema.precision: the CPU's bf16 flags as torch reports them, the probe's bf16
              speedup on a 384^3 matrix product, and what "auto" resolves to.
  VAE decode  the default VAE (src/kinema/weights/default/vae) decoding the latents of
              --clips encoded Shapes clips (17 frames, 64x64): PSNR of the bf16 decode against
              the fp32 decode, each decode's PSNR against the source clips, and decode time
              per clip (batch 1), fp32 decoder against `decoder_to(torch.bfloat16)`.
  clip        text-to-video end to end (text, guided sampling at the model's steps, decode)
              with the default model's architecture (the default model if packaged, else
              random weights: bench/default_pipeline.py) loaded at precision fp32 and bf16:
              time per clip, and the bf16 clip's difference from the fp32 clip of the same
              seed (mean and max absolute difference in [-1, 1] units, PSNR). With random
              weights the difference says little about quality; the Shapes pass rate of the
              trained model in bf16 (bench/steps_equal_quality.py --precision bf16, or
              `kinema eval-model --precision bf16`) is the quality figure.

    python bench/precision.py [--clips 8] [--repeats 5] [--threads 1] [--out docs/precision.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchio import emit_json

PROMPT = "a large red circle moving right on a black background"


def psnr(a, b) -> float:
    import torch

    mse = float(((a.float() - b.float()) ** 2).mean())
    return float("inf") if mse == 0 else 10 * torch.log10(torch.tensor(4.0 / mse)).item()  # range [-1, 1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="pipeline dir for the clip timing (default: the default model, or a random one)")
    p.add_argument("--clips", type=int, default=8, help="Shapes clips for the decode PSNR")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path)
    args = p.parse_args()

    import torch

    from kinema import precision as prec
    from kinema.models.vae3d import VAE3D
    from kinema.pipeline import Pipeline
    from kinema.tasks.t2v import text_to_video
    from kinema.weights import DEFAULT_VAE_DIR
    from kinema.world.dataset import ShapesDataset

    sys.path.insert(0, str(Path(__file__).parent))
    from default_pipeline import model_or_default
    from dit_forward import cpu_model

    torch.set_num_threads(args.threads)
    result: dict = {
        "machine": {"cpu": cpu_model(), "threads": args.threads, "torch": torch.__version__,
                    "cpu_capability": torch.backends.cpu.get_cpu_capability()},
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "detection": {
            "amx_tile": prec._cpu_flag("_is_amx_tile_supported"),
            "avx512_bf16": prec._cpu_flag("_is_avx512_bf16_supported"),
            "probe_bf16_speedup": round(prec.bf16_probe_speedup("cpu"), 2),
            "auto_resolves_to": prec.precision_name(prec.resolve_precision("auto", "cpu")),
        },
    }
    print(json.dumps(result["detection"]), flush=True)

    with torch.inference_mode():
        vae = VAE3D.load(DEFAULT_VAE_DIR, ema=True).eval()
        vae_bf16 = copy.deepcopy(vae).decoder_to(torch.bfloat16)
        world = ShapesDataset(seed=20261202, frames=17, size=(64, 64))
        clips = torch.stack([world[i]["video"] for i in range(args.clips)])  # (N, 3, 17, 64, 64)
        z = vae.encode(clips)
        fp32, bf16 = vae.decode(z), vae_bf16.decode(z)
        times: dict = {"fp32": [], "bf16": []}
        one = z[:1]
        vae.decode(one), vae_bf16.decode(one)  # warm-up
        for _ in range(args.repeats):
            for name, v in (("fp32", vae), ("bf16", vae_bf16)):
                start = time.perf_counter()
                v.decode(one)
                times[name].append(time.perf_counter() - start)
        result["vae_decode"] = {
            "clips": args.clips, "psnr_bf16_vs_fp32_db": round(psnr(bf16, fp32), 2),
            "max_abs_diff": round(float((bf16 - fp32).abs().max()), 4),
            "psnr_vs_source_db": {"fp32": round(psnr(fp32, clips), 2), "bf16": round(psnr(bf16, clips), 2)},
            "ms_per_clip": {k: round(statistics.median(v) * 1e3, 1) for k, v in times.items()},
            "speedup_bf16": round(statistics.median(times["fp32"]) / statistics.median(times["bf16"]), 2),
        }
        print(json.dumps(result["vae_decode"]), flush=True)

        tmp = tempfile.TemporaryDirectory()
        model, weights = model_or_default(args.model, tmp.name)
        pipes = {name: Pipeline.load(model, precision=name) for name in ("fp32", "bf16")}
        clip_times: dict = {"fp32": [], "bf16": []}
        outs = {name: text_to_video(pipe, [PROMPT], seeds=0) for name, pipe in pipes.items()}  # warm-up
        for r in range(args.repeats):
            for name, pipe in pipes.items():
                start = time.perf_counter()
                text_to_video(pipe, [PROMPT], seeds=r)
                clip_times[name].append(time.perf_counter() - start)
        tmp.cleanup()
        diff = (outs["bf16"] - outs["fp32"]).abs()
        c = pipes["fp32"].config
        result["clip"] = {
            "model": weights, "steps": c.steps, "sampler": c.sampler, "guidance": c.guidance,
            "frames": c.frames, "size": [c.height, c.width],
            "s_per_clip": {k: round(statistics.median(v), 3) for k, v in clip_times.items()},
            "speedup_bf16": round(statistics.median(clip_times["fp32"]) / statistics.median(clip_times["bf16"]), 2),
            "bf16_vs_fp32": {"mean_abs": round(float(diff.mean()), 4), "max_abs": round(float(diff.max()), 4),
                             "psnr_db": round(psnr(outs["bf16"], outs["fp32"]), 2)},
        }
        print(json.dumps(result["clip"]), flush=True)
    emit_json(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
