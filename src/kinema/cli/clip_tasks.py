"""The commands that start from given content: predict, edit, inpaint, interpolate, extend.

  kinema predict CLIP -o OUT [--context K] [--frames N] [--prompt P]
  kinema edit CLIP --prompt P [--strength S] -o OUT
  kinema inpaint CLIP --mask MASK [--prompt P] -o OUT
  kinema interpolate --first A.png --last B.png -o OUT [--frames N] [--prompt P] [--passes N]
  kinema extend (CLIP | --prompt P) --frames N -o OUT

Inputs of another size than the model's are scaled and centre-cropped to it, and a clip
longer than needed is cut, each with a notice on stderr; a length the model cannot take is
cut to the nearest one it can (1 + 4k frames).
"""

from __future__ import annotations

import argparse
import sys

from kinema.cli.arguments import GUIDANCE_INTERVAL_HELP, non_negative_float, parse_interval, positive_int

METHOD_HELP = "how known content is kept: trained (default), replace or guidance"


def add_sampling_options(parser: argparse.ArgumentParser, *, fast: bool = False, negative: bool = True) -> None:
    """Options every generating command shares; `fast` adds --fast (generate only: the
    distilled model is measured on text-to-video); `negative` adds --negative-prompt (edit
    has --source-prompt instead)."""
    parser.add_argument("-o", "--out", required=True, help="output: .mp4, .gif, .npy or a directory of PNG frames")
    model = parser.add_mutually_exclusive_group()
    model.add_argument("--model", metavar="DIR", help="a pipeline dir (default: the shipped default model)")
    if fast:
        model.add_argument("--fast", action="store_true",
                           help="the shipped default model guidance-distilled: one network evaluation per step, 8 steps")
    parser.add_argument("--steps", type=positive_int, help="sampler steps (default: the model's)")
    parser.add_argument("--guidance", type=non_negative_float, help="classifier-free guidance scale (default: the model's)")
    parser.add_argument("--guidance-interval", type=parse_interval, metavar="LO:HI", help=GUIDANCE_INTERVAL_HELP)
    if negative:
        parser.add_argument("--negative-prompt", metavar="P",
                            help="what the clip should not show: guidance steers away from it (default: none)")
    parser.add_argument("--sampler", help="ddpm, ddim, euler, heun or dpmpp_2m (default: the model's)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same clip")
    add_precision_option(parser)


def add_precision_option(parser: argparse.ArgumentParser) -> None:
    """--precision: what Pipeline.load casts the network and the VAE's decoder to."""
    from kinema.precision import DEFAULT_PRECISION, PRECISIONS  # no torch import

    parser.add_argument("--precision", choices=PRECISIONS, default=DEFAULT_PRECISION,
                        help="network and VAE-decoder precision: auto (bf16 where this machine runs it fast), "
                             f"bf16 or fp32 (default {DEFAULT_PRECISION})")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("predict", help="continue a clip", description="Continue a clip: its first K frames are kept, the rest generated.")
    p.add_argument("clip", help="input clip (video file, PNG folder, .npy)")
    p.add_argument("--context", type=positive_int, default=5, help="context frames taken from the clip (1 + 4k; default 5)")
    p.add_argument("--frames", type=positive_int, help="frames in the output, context included (default: the model's)")
    p.add_argument("--prompt", default="", help="caption of the clip (default: none)")
    p.add_argument("--method", default="trained", help=METHOD_HELP)
    add_sampling_options(p)
    p.set_defaults(func=_predict)

    p = subparsers.add_parser("edit", help="restyle a clip under a new prompt (SDEdit or FlowEdit)",
                              description="Redo the last --strength share of the sampling trajectory: noise the clip and "
                                          "denoise it under --prompt (sdedit), or move it from --source-prompt to --prompt "
                                          "(flowedit); strength 0 returns the input.")
    p.add_argument("clip")
    p.add_argument("--prompt", required=True)
    p.add_argument("--strength", type=non_negative_float, default=0.7,
                   help="share of the sampling steps redone, as diffusers' img2img counts it: 0 keeps the input, "
                        "1 ignores it (default 0.7)")
    p.add_argument("--method", dest="edit_method", choices=("sdedit", "flowedit"), default="sdedit",
                   help="sdedit (default): noise the clip and regenerate it; flowedit: change only what "
                        "--prompt and --source-prompt disagree on (Kulikov et al. 2024)")
    p.add_argument("--source-prompt", help="what the input clip shows: sdedit guides away from it, flowedit moves "
                                           "from it to --prompt (default: the empty prompt)")
    p.add_argument("--source-guidance", type=non_negative_float, default=1.5,
                   help="flowedit: guidance on the source prompt (default 1.5)")
    p.add_argument("--frames", type=positive_int, help="frames taken from the clip (default: the model's)")
    add_sampling_options(p, negative=False)
    p.set_defaults(func=_edit)

    p = subparsers.add_parser("inpaint", help="regenerate a masked region of a clip",
                              description="Regenerate where MASK is white; elsewhere the output keeps the input.")
    p.add_argument("clip")
    p.add_argument("--mask", required=True, help="a mask image for every frame, or a mask clip (white = regenerate)")
    p.add_argument("--prompt", default="", help="what the region should show (default: none)")
    p.add_argument("--frames", type=positive_int, help="frames taken from the clip (default: the model's)")
    p.add_argument("--method", default="trained", help=METHOD_HELP)
    add_sampling_options(p)
    p.set_defaults(func=_inpaint)

    p = subparsers.add_parser("interpolate", help="fill the frames between two keyframes",
                              description="Generate a clip that starts at --first and ends at --last.")
    p.add_argument("--first", required=True, help="first keyframe (image)")
    p.add_argument("--last", required=True, help="last keyframe (image)")
    p.add_argument("--frames", type=positive_int, help="frames in the output (default: the model's)")
    p.add_argument("--prompt", default="", help="caption of the clip (default: none)")
    p.add_argument("--method", default="trained", help=METHOD_HELP)
    p.add_argument("--passes", type=positive_int, default=3,
                   help="sampling passes; each after the first refines the path into --last (default 3)")
    add_sampling_options(p)
    p.set_defaults(func=_interpolate)

    p = subparsers.add_parser("extend", help="a long clip, window by window",
                              description="Continue CLIP (or start from --prompt) to --frames frames, writing each window as it completes.")
    p.add_argument("clip", nargs="?", help="clip to continue (default: start from the prompt)")
    p.add_argument("--prompt", default="", help="caption (needed without a clip)")
    p.add_argument("--frames", type=positive_int, required=True, help="total frames, 1 + 4k")
    p.add_argument("--context", type=positive_int,
                   help="latent frames each window keeps from the last (default: just over half the window, "
                        "3 of the default model's 5)")
    p.add_argument("--context-noise", type=non_negative_float, default=0.05,
                   help="noise level the kept latents are shown at (default 0.05)")
    p.add_argument("--method", default="trained", help=METHOD_HELP)
    add_sampling_options(p)
    p.set_defaults(func=_extend)


def pipeline_dir(args: argparse.Namespace):
    """--model DIR, else the shipped default, or its guidance-distilled copy with --fast."""
    from kinema.weights import DEFAULT_FAST_PIPELINE_DIR, DEFAULT_PIPELINE_DIR

    if args.model:
        return args.model
    return DEFAULT_FAST_PIPELINE_DIR if getattr(args, "fast", False) else DEFAULT_PIPELINE_DIR


def load_pipeline(args: argparse.Namespace):
    """The pipeline named by --model / --fast (or the default), after cheap checks of the options."""
    from kinema.diffusion.samplers import get_sampler
    from kinema.media import check_output_path
    from kinema.pipeline import Pipeline
    from kinema.tasks.known import check_method

    check_output_path(args.out)
    if getattr(args, "sampler", None) is not None:
        get_sampler(args.sampler)
    if getattr(args, "method", None) is not None:
        check_method(args.method)
    return Pipeline.load(pipeline_dir(args), precision=args.precision)


def notice(message: str) -> None:
    print(f"kinema: {message}", file=sys.stderr)


def read_clip(path: str, pipe, frames: int | None, what: str = "clip", exact: bool = False):
    """The first `frames` frames (default: the model's) of `path` at the model's size, as a
    (1, 3, T, H, W) tensor in [-1, 1], with notices for what was changed. A shorter clip is
    cut to the longest 1 + 4k frames it has, unless `exact` asks for all of them."""
    from kinema.errors import KinemaError
    from kinema.media import frames_to_tensor, probe, read_frames
    from kinema.tasks.clips import context_frames

    c, f = pipe.config, pipe.vae.config.temporal_factor
    want = c.frames if frames is None else frames
    info = probe(path)
    if (info["height"], info["width"]) != (c.height, c.width):
        notice(f"{what} is {info['height']}x{info['width']}; scaled and centre-cropped to the model's {c.height}x{c.width}")
    frames_read = read_frames(path, count=want, size=(c.height, c.width), fit="crop")
    if exact and len(frames_read) < want:
        raise KinemaError(f"{path} has {len(frames_read)} frames; {want} asked for")
    if info["frames"] is not None and info["frames"] > want:
        notice(f"{what} has {info['frames']} frames; using the first {want}")
    n = context_frames(len(frames_read), f)
    if n != len(frames_read):
        notice(f"{what} cut to {n} frames (this model takes 1 + {f}k)")
    return frames_to_tensor(frames_read[:n])[None]


def sampling_kwargs(args: argparse.Namespace) -> dict:
    negative = getattr(args, "negative_prompt", None)
    return {"steps": args.steps, "guidance": args.guidance, "sampler": args.sampler, "seeds": args.seed,
            "guidance_interval": args.guidance_interval, "negative_prompts": None if negative is None else [negative]}


def write(args: argparse.Namespace, pipe, video) -> int:
    from kinema.media import write_video

    print(write_video(args.out, video[0], fps=pipe.config.fps))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from kinema.errors import KinemaError
    from kinema.tasks.clips import predict

    pipe = load_pipeline(args)
    f = pipe.vae.config.temporal_factor
    if (args.context - 1) % f:
        raise KinemaError(f"--context must be 1 + {f}k frames (e.g. 1, 5, 9), got {args.context}")
    clip = read_clip(args.clip, pipe, args.context, what="context")
    return write(args, pipe, predict(pipe, [args.prompt], clip, frames=args.frames, method=args.method,
                                     **sampling_kwargs(args)))


def _edit(args: argparse.Namespace) -> int:
    from kinema.errors import KinemaError
    from kinema.tasks.clips import edit

    if args.strength > 1:
        raise KinemaError(f"--strength must be in [0, 1], got {args.strength}")
    options: dict = {"source_prompts": None if args.source_prompt is None else [args.source_prompt]}
    if args.edit_method == "flowedit":
        options["source_guidance"] = args.source_guidance
    pipe = load_pipeline(args)
    clip = read_clip(args.clip, pipe, args.frames, exact=args.frames is not None)
    return write(args, pipe, edit(pipe, [args.prompt], clip, strength=args.strength, method=args.edit_method,
                                  **options, **sampling_kwargs(args)))


def read_mask(path: str, pipe, frames: int):
    """White = regenerate: (1, 1, T, H, W) in {0, 1}, from one image (all frames) or a clip."""
    from kinema.errors import KinemaError
    from kinema.media import read_frames

    c = pipe.config
    masks = read_frames(path, count=frames, size=(c.height, c.width), fit="crop")
    if len(masks) not in (1, frames):
        raise KinemaError(f"mask {path} has {len(masks)} frames; give one image or a clip of at least {frames} frames")
    import torch

    region = torch.from_numpy(masks).float().mean(dim=-1) > 127.5  # (T, H, W)
    return region.expand(frames, -1, -1).float()[None, None]


def _inpaint(args: argparse.Namespace) -> int:
    from kinema.tasks.clips import inpaint

    pipe = load_pipeline(args)
    clip = read_clip(args.clip, pipe, args.frames, exact=args.frames is not None)
    region = read_mask(args.mask, pipe, clip.shape[2])
    return write(args, pipe, inpaint(pipe, [args.prompt], clip, region, method=args.method, **sampling_kwargs(args)))


def read_keyframe(path: str, size: tuple[int, int], what: str):
    """One image (or a clip's first frame) at `size` (H, W) as (1, 3, H, W) in [-1, 1], with a
    notice if resized."""
    from kinema.media import frames_to_tensor, probe, read_frames

    info = probe(path)
    if (info["height"], info["width"]) != tuple(size):
        notice(f"{what} is {info['height']}x{info['width']}; scaled and centre-cropped to {size[0]}x{size[1]}")
    return frames_to_tensor(read_frames(path, count=1, size=tuple(size), fit="crop"))[:, 0][None]


def _interpolate(args: argparse.Namespace) -> int:
    from kinema.tasks.clips import interpolate

    pipe = load_pipeline(args)
    size = (pipe.config.height, pipe.config.width)
    first, last = read_keyframe(args.first, size, "--first"), read_keyframe(args.last, size, "--last")
    return write(args, pipe, interpolate(pipe, [args.prompt], first, last, frames=args.frames, method=args.method,
                                         passes=args.passes, **sampling_kwargs(args)))


def _extend(args: argparse.Namespace) -> int:
    from kinema.errors import KinemaError
    from kinema.media import VideoWriter
    from kinema.tasks.extend import extend, latent_frames_needed

    if args.clip is None and not args.prompt:
        raise KinemaError("give a clip to continue or a --prompt to start from")
    pipe = load_pipeline(args)
    latent_frames_needed(pipe, args.frames)  # a clear error for a length the model cannot make
    clip = None
    if args.clip is not None:
        clip = read_clip(args.clip, pipe, None)
        if clip.shape[2] > args.frames:
            raise KinemaError(f"the clip already has {clip.shape[2]} frames; ask for more than that")
    options = {k: v for k, v in sampling_kwargs(args).items() if k != "seeds"}
    with VideoWriter(args.out, fps=pipe.config.fps) as writer:
        extend(pipe, args.prompt, args.frames, clip=clip, on_frames=lambda v: writer.write(v[0]), context=args.context,
               context_sigma=args.context_noise, method=args.method, seed=args.seed, **options)
    print(args.out)
    return 0
