"""Fewest denoiser evaluations to reach a Shapes pass rate: kinema's samplers against diffusers' loop.

Issue "Benchmarks", item 1, second half: at equal quality, the fewest steps each side needs to
reach the same Shapes pass rate with the default model's architecture (target: kinema needs
>= 2x fewer evaluations).

One model, one prompt set, one seed per prompt for every run (paired: run-to-run
differences come from the sampler and its step count, not from different noise or prompts).
The Shapes pass rate is kinema.eval.model.evaluate_model's: each clip is judged against its
caption (kinema.eval.shapes) as `kinema eval-model` does.

Samplers:
  kinema euler, heun, dpmpp_2m  kinema.diffusion.samplers on the pipeline's flow grid
  diffusers                     diffusers' FlowMatchEulerDiscreteScheduler drives the loop:
                                set_timesteps(N), then for each of its timesteps the model's
                                flow velocity (classifier-free guided, as WanPipeline combines
                                the two branches) and scheduler.step. The velocity comes from
                                the same network through kinema's guided denoiser:
                                v = (x - x0_hat) / sigma on the flow path, exactly the network's
                                own guided output (guidance is affine, so guiding x0 or v is the
                                same), evaluated at diffusers' timestep sigma * 1000.
  NAME,interval=LO:HI           a kinema sampler with guidance only at noise levels LO..HI
                                (kinema.diffusion.guidance, Kynkaanniemi et al. 2024): the
                                steps outside run the conditional branch alone. Without it a
                                sampler guides every step, whatever the model's own default.
  NAME,guidance=G               that sampler at guidance scale G (default: --guidance, else
                                the model's), so each side can run at its own best scale.
  NAME,distilled                that sampler on --distilled DIR, a guidance-distilled copy of
                                the model (same network; configs/default-t2v-distill.toml), at
                                guidance 1 unless guidance= says otherwise: one evaluation per
                                step. The reference still runs the model itself.
An evaluation is one network evaluation of one clip (NFE): a guided step costs 2 (the
conditional and the unconditional branch; kinema batches them into one forward, diffusers'
WanPipeline calls the transformer twice), an unguided step 1. They are counted with a hook on
the network (the batch each forward sees), not assumed (Heun takes 2N - 1 steps' worth).

The target pass rate: --target, or by default the pass rate of diffusers' loop at the most
steps asked for (what the reference reaches with its largest budget). For each sampler the
fewest evaluations at which it reaches the target is reported, and diffusers' fewest over
kinema's best sampler's fewest is the ratio. With n prompts a pass rate moves in steps of
1/n, so small differences between runs are noise; the table keeps every point.

The default model (src/kinema/weights/default) is needed for a meaningful figure; on a random
pipeline (--model DIR) the script only checks that everything runs.

    python bench/steps_equal_quality.py [--model DIR] [--distilled DIR] [--n 40] [--steps 4 6 8 10 15 20 30]
        [--samplers dpmpp_2m heun euler euler,interval=0.8:1,guidance=4 diffusers] [--prompts shapes:train] [--batch-size 8]
        [--precision fp32] [--threads 1] [--target RATE] [--out docs/steps_equal_quality.json]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

DIFFUSERS = "diffusers"


def diffusers_flow_euler(shift: float):
    """A sampler with kinema's signature whose loop is diffusers' FlowMatchEulerDiscreteScheduler.

    `sigmas` only gives the step count N (len - 1): the scheduler makes its own grid, as a
    diffusers pipeline would."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler

    def sample(denoiser, x, sigmas, *, generator=None, callback=None, progress=False):
        scheduler = FlowMatchEulerDiscreteScheduler(shift=shift)
        scheduler.set_timesteps(len(sigmas) - 1, device=x.device)
        for i, t in enumerate(scheduler.timesteps):
            sigma = scheduler.sigmas[i].double()
            x0 = denoiser(x, sigma.expand(x.shape[0]).to(x.device))
            velocity = (x - x0) / sigma.to(x.dtype)  # flow: x = x0 + sigma * velocity
            x = scheduler.step(velocity, t, x, return_dict=False)[0]
            if callback is not None:
                callback({"step": i, "x": x, "x0_hat": x0})
        return x

    return sample


def is_reference(spec: str) -> bool:
    """Whether a --samplers entry is diffusers' loop (the reference side)."""
    return spec.split(",")[0] == DIFFUSERS


def parse_spec(spec: str, default_guidance: float | None) -> tuple[str, dict]:
    """"euler,interval=0.8:1,guidance=4" -> ("euler", {"guidance_interval": (0.8, 1.0), "guidance": 4.0}).
    Without interval= a sampler guides every step (whatever the model's default); without
    guidance= it takes --guidance (default: the model's)."""
    from kinema.cli.arguments import non_negative_float, parse_interval

    name, *options = spec.split(",")
    out = {"guidance_interval": (0.0, float("inf")), "guidance": default_guidance}
    distilled = "distilled" in options
    if distilled:
        options.remove("distilled")
        out["guidance"] = 1.0
    for option in options:
        key, _, value = option.partition("=")
        try:
            if key == "interval":
                out["guidance_interval"] = parse_interval(value)
            elif key == "guidance":
                out["guidance"] = non_negative_float(value)
            else:
                raise argparse.ArgumentTypeError(f"unknown option {key!r} (interval=LO:HI, guidance=G, distilled)")
        except argparse.ArgumentTypeError as e:
            raise SystemExit(f"sampler {spec!r}: {e}") from None
    if name == DIFFUSERS and out["guidance_interval"] != (0.0, float("inf")):
        raise SystemExit("the diffusers loop guides every step, as WanPipeline does; no interval= for it")
    if name == DIFFUSERS and distilled:
        raise SystemExit("the diffusers loop is the reference: it runs the model itself, not --distilled")
    return name, {**out, "distilled": distilled}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="pipeline dir (default: the shipped default model)")
    p.add_argument("--distilled", type=Path, help="a guidance-distilled copy of the model, for NAME,distilled samplers")
    p.add_argument("--n", type=int, default=40, help="prompts (one clip each) per run")
    p.add_argument("--prompts", default="shapes:train", help="prompt set, as kinema eval-model --prompts")
    p.add_argument("--steps", type=int, nargs="+", default=[4, 6, 8, 10, 15, 20, 30])
    p.add_argument("--samplers", nargs="+", default=["dpmpp_2m", "heun", "euler", DIFFUSERS])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--guidance", type=float, help="default: the model's")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--precision", default="fp32", choices=["auto", "bf16", "fp32"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--target", type=float, help="pass rate to reach (default: diffusers' at the most steps)")
    p.add_argument("--out", type=Path, help="write the results here as JSON")
    args = p.parse_args()

    import torch

    from kinema.diffusion import samplers
    from kinema.eval.model import evaluate_model, load_prompts
    from kinema.pipeline import Pipeline
    from kinema.weights import DEFAULT_PIPELINE_DIR

    sys.path.insert(0, str(Path(__file__).parent))
    from dit_forward import cpu_model

    torch.set_num_threads(args.threads)
    model = Path(args.model) if args.model else DEFAULT_PIPELINE_DIR
    if not (model / "model.json").is_file():
        raise SystemExit(f"no pipeline at {model} (the default model is not packaged yet); pass --model DIR")
    pipe = Pipeline.load(model, precision=args.precision)
    if any(is_reference(spec) for spec in args.samplers):
        shift = getattr(pipe.schedule, "shift", None)
        if pipe.config.prediction != "flow" or shift is None:
            raise SystemExit("the diffusers loop (FlowMatchEulerDiscreteScheduler) needs a flow-matching model")
        samplers.SAMPLERS[DIFFUSERS] = diffusers_flow_euler(shift)  # this process only
    prompts = load_prompts(args.prompts, args.n, args.seed)
    calls = []
    for spec in args.samplers:
        if parse_spec(spec, args.guidance)[1]["distilled"] and args.distilled is None:  # bad specs fail before sampling
            raise SystemExit(f"sampler {spec!r} needs --distilled DIR")
    pipes = {False: pipe, True: Pipeline.load(args.distilled, precision=args.precision) if args.distilled else None}
    for p_ in filter(None, pipes.values()):
        p_.net.register_forward_hook(lambda module, inputs, output: calls.append(inputs[0].shape[0]))

    def run(spec: str, steps: int) -> dict:
        sampler, options = parse_spec(spec, args.guidance)
        calls.clear()
        start = time.perf_counter()
        result = evaluate_model(pipes[options.pop("distilled")], prompts, n=args.n, seed=args.seed, steps=steps, sampler=sampler,
                                batch_size=args.batch_size, keep_clips=0, **options)
        row = {"sampler": spec, "steps": steps, "evaluations": round(sum(calls) / args.n, 2),
               "pass_rate": result.pass_rate, "gate_clean": result.gate_clean_rate,
               "checks": result.check_pass_rates(), "seconds": round(time.perf_counter() - start, 1)}
        print(f"{spec:<32}{steps:>6}{row['evaluations']:>6g}{row['pass_rate']:>8.3f}{row['gate_clean']:>8.3f}"
              f"{row['seconds']:>8.1f}", flush=True)
        return row

    print(f"{'sampler':<32}{'steps':>6}{'NFE':>6}{'pass':>8}{'clean':>8}{'sec':>8}", flush=True)
    order = sorted(args.samplers, key=lambda s: not is_reference(s))  # the reference first: it sets the target
    rows = [run(s, n) for s in order for n in sorted(args.steps, reverse=is_reference(s))]
    target = args.target
    if target is None:
        ref = [r for r in rows if is_reference(r["sampler"])] or rows
        target = max(ref, key=lambda r: r["steps"])["pass_rate"]
    fewest = {}
    for s in args.samplers:
        reached = [r["evaluations"] for r in rows if r["sampler"] == s and r["pass_rate"] >= target - 1e-9]
        fewest[s] = min(reached) if reached else None
    kinema_best = min((v, s) for s, v in fewest.items() if not is_reference(s) and v is not None) if any(
        v is not None for s, v in fewest.items() if not is_reference(s)) else (None, None)
    reference = min((v for s, v in fewest.items() if is_reference(s) and v is not None), default=None)
    ratio = None
    if reference and kinema_best[0]:
        ratio = reference / kinema_best[0]
    print(f"target pass rate {target:.3f}; fewest evaluations per clip to reach it: "
          + ", ".join(f"{s} {v if v is not None else 'not reached'}" for s, v in fewest.items()))
    if ratio is not None:
        print(f"diffusers / kinema ({kinema_best[1]}): {ratio:.2f}x fewer evaluations")
    result = {
        "machine": {"cpu": cpu_model(), "torch": torch.__version__, "threads": args.threads},
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "model": str(model), "distilled": None if args.distilled is None else str(args.distilled), "precision": args.precision, "prompts": args.prompts, "n": args.n, "seed": args.seed,
        "guidance": pipe.config.guidance if args.guidance is None else args.guidance,
        "target_pass_rate": target, "fewest_evaluations": fewest,
        "kinema_best": {"sampler": kinema_best[1], "evaluations": kinema_best[0]},
        "evaluations_ratio_diffusers_over_kinema": None if ratio is None else round(ratio, 2),
        "rows": rows,
    }
    if args.out:
        from benchio import emit_json

        emit_json(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
