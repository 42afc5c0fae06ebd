"""`kinema eval`, `kinema check` and `kinema eval-model`: measure clips and models.

  kinema eval CLIP [--prompt P] [--reference REF] [--json] [--report DIR]
  kinema check CLIP [--json]
  kinema eval-model MODEL --prompts shapes:train|shapes:heldout|FILE --n N [--report DIR]
                    [--steps S] [--guidance G] [--sampler NAME] [--seed N] [--batch-size B]
                    [--precision auto|bf16|fp32] [--json]

`eval` prints the clip's temporal metrics, its drift, PSNR/SSIM against a reference and,
for a Shapes caption, the Shapes judgement; `--report` writes a page to look at. `check` is
the QA gate: exit 0 when the clip is clean, 1 with one line per problem. `eval-model`
generates a prompt set with a model and scores it (the code training's validation runs).
Unreadable or corrupt input: one line on stderr, exit 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from kinema.cli.arguments import GUIDANCE_INTERVAL_HELP, non_negative_float, parse_interval, positive_int
from kinema.cli.clip_tasks import add_precision_option

EXIT_CLEAN, EXIT_PROBLEMS = 0, 1


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("eval", help="measure a clip: temporal metrics, reference PSNR/SSIM, Shapes adherence",
                              description="Measure a clip and print its metrics; --report writes a page to look at.")
    p.add_argument("clip", help="a video file, a directory of frames, a .npy or an image")
    p.add_argument("--prompt", help="the clip's prompt; a Shapes caption is also judged for adherence")
    p.add_argument("--reference", metavar="REF", help="a reference clip for PSNR/SSIM (resized to the clip's size)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--report", metavar="DIR", help="write index.html, contact_sheet.png and metrics.png into DIR")
    p.set_defaults(func=_eval)

    p = subparsers.add_parser("check", help="QA gate: exit 0 if a clip is clean, 1 listing its problems",
                              description="The QA gate: exit 0 when the clip is clean, exit 1 with one line "
                                          "per problem (which frames, which metric, by how much), 2 for bad input.")
    p.add_argument("clip", help="a video file, a directory of frames, a .npy or an image")
    p.add_argument("--json", action="store_true", help="print the gate's verdict as one JSON object")
    p.set_defaults(func=_check)

    p = subparsers.add_parser("eval-model", help="generate a prompt set with a model and score it",
                              description="Generate N clips for a prompt set with a pipeline, judge and gate "
                                          "each one, and print a table of pass rates.")
    p.add_argument("model", metavar="MODEL", help="a pipeline dir")
    p.add_argument("--prompts", required=True, metavar="SET",
                   help="shapes:train, shapes:heldout, or a text file with one prompt per line")
    p.add_argument("--n", type=positive_int, required=True, help="number of clips")
    p.add_argument("--steps", type=positive_int, help="sampler steps (default: the model's)")
    p.add_argument("--guidance", type=non_negative_float, help="classifier-free guidance scale (default: the model's)")
    p.add_argument("--guidance-interval", type=parse_interval, metavar="LO:HI", help=GUIDANCE_INTERVAL_HELP)
    p.add_argument("--sampler", help="ddpm, ddim, euler, heun or dpmpp_2m (default: the model's)")
    p.add_argument("--seed", type=int, default=0, help="clip k uses seed SEED + k (and picks the Shapes prompts)")
    p.add_argument("--batch-size", type=positive_int, default=8, help="clips generated at once (default 8)")
    add_precision_option(p)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--report", metavar="DIR", help="write index.html, pass_rates.png and clips.png into DIR")
    p.set_defaults(func=_eval_model)


# ----------------------------------------------------------------------------- helpers

def _jsonable(x: Any) -> Any:
    """numpy scalars/arrays -> Python; non-finite floats -> None (JSON has no inf or NaN)."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if hasattr(x, "tolist"):  # numpy array or scalar
        return _jsonable(x.tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _note(message: str) -> None:
    print(f"kinema: note: {message}", file=sys.stderr)


def _read_clip(path: str):
    """uint8 (T, H, W, 3) with T >= 2 (temporal metrics compare neighbouring frames)."""
    from kinema.errors import KinemaError
    from kinema.media import read_frames

    frames = read_frames(path)
    if len(frames) < 2:
        raise KinemaError(f"{path} has {len(frames)} frame; temporal metrics need a clip of at least 2 frames")
    return frames


def _compare_reference(frames, ref_path: str, notes: list[str]) -> dict:
    """PSNR/SSIM of the clip against REF: REF is resized to the clip's size when they
    differ, and only the common prefix of frames is compared when their lengths differ."""
    from kinema.eval.metrics import psnr, ssim
    from kinema.media import read_frames, resize_frames

    ref = read_frames(ref_path)
    resized = ref.shape[1:3] != frames.shape[1:3]
    if resized:
        (rh, rw), (h, w) = ref.shape[1:3], frames.shape[1:3]
        notes.append(f"the reference ({rh}x{rw}) was resized to the clip's size ({h}x{w})")
        ref = resize_frames(ref, frames.shape[1:3], fit="stretch")
    t = min(len(ref), len(frames))
    if len(ref) != len(frames):
        notes.append(f"the clip has {len(frames)} frames and the reference {len(ref)}; comparing the first {t}")
    psnr_clip, psnr_frames = psnr(ref[:t], frames[:t], per_frame=True)
    ssim_clip, ssim_frames = ssim(ref[:t], frames[:t], per_frame=True)
    return {"path": ref_path, "frames_compared": t, "resized": bool(resized), "psnr": psnr_clip, "ssim": ssim_clip,
            "psnr_per_frame": psnr_frames, "ssim_per_frame": ssim_frames}


def _judge_prompt(frames, prompt: str, notes: list[str]):
    """The Shapes judgement for a Shapes caption; None (with a note) for any other prompt."""
    from kinema.eval.shapes import judge
    from kinema.world.scene import CaptionError, parse_caption

    try:
        scene = parse_caption(prompt)
    except CaptionError as e:
        notes.append(f"the prompt is not a Shapes caption, so there is no Shapes adherence check ({e})")
        return None
    return judge(frames, scene)


def _print_table(title: str, values: dict, docs: dict | None = None) -> None:
    print(title)
    for name, value in values.items():
        text = f"{value:.4f}" if isinstance(value, float) else str(value)
        doc = (docs or {}).get(name, "")
        print(f"  {name:<24}{text:>12}" + (f"  {doc}" if doc else ""))


# ----------------------------------------------------------------------------- eval

def _eval(args: argparse.Namespace) -> int:
    from kinema.eval.gate import check
    from kinema.eval.temporal import METRIC_DOCS, drift

    frames = _read_clip(args.clip)
    notes: list[str] = []
    reference = _compare_reference(frames, args.reference, notes) if args.reference else None
    judgement = _judge_prompt(frames, args.prompt, notes) if args.prompt is not None else None
    gate = check(frames)
    temporal = gate.metrics.summary()
    drifts = drift(frames)
    for note in notes:
        _note(note)

    report = None
    if args.report:
        report = _write_clip_report(args, frames, gate, temporal, drifts, reference, judgement, notes, METRIC_DOCS)

    t, h, w, _ = frames.shape
    if args.json:
        data = {"clip": args.clip, "frames": t, "height": h, "width": w, "temporal": temporal, "drift": drifts,
                "reference": reference, "shapes": None if judgement is None else judgement.to_dict(),
                "gate": gate.to_dict(), "notes": notes, "report": None if report is None else str(report)}
        print(json.dumps(_jsonable(data)))
        return 0
    print(f"{args.clip}: {t} frames, {h}x{w}")
    _print_table("temporal", temporal, METRIC_DOCS)
    extra_drift = {k: v for k, v in drifts.items() if k not in temporal}  # the summary holds drift's keys too
    if extra_drift:
        _print_table("drift", extra_drift, METRIC_DOCS)
    if reference is not None:
        _print_table(f"reference {args.reference} ({reference['frames_compared']} frames)",
                     {"psnr_db": reference["psnr"], "ssim": reference["ssim"]})
    if judgement is not None:
        print(f"shapes: {judgement.summary()}")
    print("gate: clean" if gate.clean else f"gate: {len(gate.problems)} problem(s)")
    for problem in gate.problems:
        print(f"  {problem.message()}")
    if report is not None:
        print(f"report: {report}")
    return 0


def _write_clip_report(args, frames, gate, temporal, drifts, reference, judgement, notes, docs) -> Path:
    import numpy as np

    from kinema.eval.report import write_clip_report

    series = dict(gate.metrics.per_frame())
    tables = {"Temporal metrics": temporal, "Drift": drifts}
    if reference is not None:
        for name in ("psnr", "ssim"):  # an identical frame's PSNR is inf: left out of the plot
            values = np.asarray(reference[f"{name}_per_frame"], dtype=np.float64)
            series[f"{name} vs ref"] = np.concatenate([np.where(np.isfinite(values), values, np.nan),
                                                        np.full(len(frames) - len(values), np.nan)])
        tables[f"Reference: {args.reference}"] = {"psnr_db": reference["psnr"], "ssim": reference["ssim"],
                                                  "frames_compared": reference["frames_compared"]}
    return write_clip_report(args.report, frames, gate, title=f"kinema eval: {args.clip}", tables=tables,
                             series=series, judgement=judgement, notes=notes, docs=docs) / "index.html"


# ----------------------------------------------------------------------------- check

def _check(args: argparse.Namespace) -> int:
    from kinema.eval.gate import check

    frames = _read_clip(args.clip)
    gate = check(frames)
    if args.json:
        print(json.dumps(_jsonable(gate.to_dict())))
    elif gate.clean:
        print(f"clean: {args.clip} ({len(frames)} frames)")
    else:
        for problem in gate.problems:
            print(problem.message())
    return EXIT_CLEAN if gate.clean else EXIT_PROBLEMS


# ----------------------------------------------------------------------------- eval-model

def _eval_model(args: argparse.Namespace) -> int:
    from kinema.diffusion.samplers import get_sampler
    from kinema.eval.model import evaluate_model, load_prompts
    from kinema.pipeline import Pipeline

    prompts = load_prompts(args.prompts, args.n, args.seed)  # a bad set fails before the model loads
    if args.sampler is not None:
        get_sampler(args.sampler)
    pipe = Pipeline.load(args.model, precision=args.precision)
    progress = None if args.json else (lambda done, total: print(f"kinema: {done}/{total} clips", file=sys.stderr))
    result = evaluate_model(pipe, prompts, n=args.n, seed=args.seed, steps=args.steps, guidance=args.guidance,
                            guidance_interval=args.guidance_interval, sampler=args.sampler, batch_size=args.batch_size, on_batch=progress)
    result.settings = {"model": args.model, "prompt_set": args.prompts, "precision": args.precision,
                       **result.settings}
    report = None
    if args.report:
        from kinema.eval.report import write_model_report

        report = write_model_report(args.report, result, title=f"kinema eval-model: {args.model}") / "index.html"
    if args.json:
        print(json.dumps(_jsonable({**result.to_dict(), "report": None if report is None else str(report)})))
    else:
        print(result.table())
        if report is not None:
            print(f"report: {report}")
    return 0
