"""How fast `kinema generate` is: end to end, and sampling + decoding on their own.

Targets (issue "Training system and the embedded default text-to-video model"): 17 frames
at 64x64 with the default model, process start to file written within 5 s on the
project's 2-core CPU, of which sampling plus decoding within 1.5 s.

End to end runs the real command in fresh processes (`python -m kinema generate ...`), so
it counts interpreter start, imports, model and text-encoder loading and the mp4 encode.
The in-process part loads the pipeline once, warms up, then times each stage separately
over several seeds: text encoding, the sampler's loop (guided: two network calls a step),
and the VAE decode.

    python bench/generate_speed.py [--model DIR] [--runs 5] [--out docs/generate_speed.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPT = "a large red circle moving right on a black background"


def end_to_end(model: str | None, runs: int) -> list[float]:
    """Wall seconds of `kinema generate` in a fresh process, `runs` times."""
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(runs):
            cmd = [sys.executable, "-m", "kinema", "generate", PROMPT, "-o", f"{tmp}/clip{i}.mp4", "--seed", str(i)]
            if model:
                cmd += ["--model", model]
            start = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            times.append(time.perf_counter() - start)
    return times


def stages(model: str | None, runs: int, steps: int | None) -> dict[str, list[float]]:
    """Seconds per stage (text, sampling, decode) in one process, after a warm-up run."""
    import torch

    from kinema.diffusion.samplers import generators, get_sampler, randn
    from kinema.pipeline import Pipeline
    from kinema.tasks.t2v import empty_conditioning, guided_denoiser
    from kinema.weights import DEFAULT_PIPELINE_DIR

    pipe = Pipeline.load(model or DEFAULT_PIPELINE_DIR)
    c = pipe.config
    steps = steps or c.steps
    sample = get_sampler(c.sampler)
    out: dict[str, list[float]] = {"text": [], "sampling": [], "decode": []}
    with torch.inference_mode():
        for i in range(runs + 1):
            t0 = time.perf_counter()
            shape = pipe.latent_shape(1, c.frames, (c.height, c.width))
            denoiser = guided_denoiser(pipe, [PROMPT], c.guidance, empty_conditioning(pipe, shape, "cpu"),
                                       c.guidance_interval)
            t1 = time.perf_counter()
            gens = generators([i])
            x = randn(shape, generator=gens)
            latents = sample(denoiser, x, pipe.schedule.sigmas(steps), generator=gens)
            t2 = time.perf_counter()
            pipe.decode(latents)
            t3 = time.perf_counter()
            if i:  # the first run warms up allocators and oneDNN's kernel caches
                out["text"].append(t1 - t0)
                out["sampling"].append(t2 - t1)
                out["decode"].append(t3 - t2)
    out["config"] = {"frames": c.frames, "size": [c.height, c.width], "steps": steps, "sampler": c.sampler,
                     "guidance": c.guidance, "guidance_interval": c.guidance_interval,
                     "threads": torch.get_num_threads()}
    return out


def summary(xs: list[float]) -> dict[str, float]:
    return {"median_s": round(statistics.median(xs), 3), "min_s": round(min(xs), 3), "max_s": round(max(xs), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="pipeline dir (default: the shipped default model)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--steps", type=int, help="sampler steps (default: the model's)")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()

    staged = stages(args.model, args.runs, args.steps)
    result = {
        "end_to_end": summary(end_to_end(args.model, args.runs)),
        **{k: summary(v) for k, v in staged.items() if k != "config"},
        "config": staged["config"],
    }
    result["sampling_plus_decode_median_s"] = round(result["sampling"]["median_s"] + result["decode"]["median_s"], 3)
    result["targets"] = {"end_to_end_s": 5.0, "sampling_plus_decode_s": 1.5}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
