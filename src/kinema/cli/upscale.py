"""`kinema upscale CLIP -o OUT`: the cascade's upscaling stages on a clip.

  kinema upscale CLIP --scale 2 -o OUT               2x the frame size
  kinema upscale CLIP --fps-multiplier 2 -o OUT      2x the frame rate (T -> 2T - 1 frames)
  kinema upscale CLIP --scale 4 --fps-multiplier 2 -o OUT

4x is two chained 2x stages. With no --spatial-model / --temporal-model the upscalers
shipped in the package are used (configs/upscale-*.toml; docs/UPSCALE.md has their
measured quality). Memory is bounded by --tile and --chunk, not by the clip.
"""

from __future__ import annotations

import argparse

from kinema.cli.arguments import non_negative_float, positive_int


def add_upscaler_options(parser: argparse.ArgumentParser) -> None:
    """The options `upscale` and `generate` share for the upscaling stages."""
    parser.add_argument("--spatial-model", metavar="DIR", help="spatial upscaler dir (default: the shipped one)")
    parser.add_argument("--temporal-model", metavar="DIR", help="temporal upscaler dir (default: the shipped one)")
    parser.add_argument("--upscale-steps", type=positive_int, metavar="S",
                        help="sampler steps per stage (default: the upscaler's, 1 = the posterior mean)")
    parser.add_argument("--noise-aug", type=non_negative_float, metavar="L",
                        help="conditioning-augmentation level of each stage's input (default: the upscaler's)")
    parser.add_argument("--tile", type=positive_int, metavar="PX", help="pixels per tile side per network call (default 128)")
    parser.add_argument("--chunk", type=positive_int, metavar="N", help="frames per network call (default 24)")


def stage_options(args: argparse.Namespace) -> dict:
    return {"steps": args.upscale_steps, "noise_aug": args.noise_aug, "tile": args.tile, "chunk": args.chunk}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("upscale", help="upscale a clip in size and/or frame rate",
                              description="Upscale CLIP 2x or 4x in size (--scale) and/or frame rate (--fps-multiplier).")
    p.add_argument("clip", help="input clip (video file, PNG folder, .npy or one image for --scale)")
    p.add_argument("-o", "--out", required=True, help="output: .mp4, .gif, .npy or a directory of PNG frames")
    p.add_argument("--scale", type=int, default=1, help="frame size multiplier: 1, 2 or 4 (default 1)")
    p.add_argument("--fps-multiplier", type=int, default=1, help="frame rate multiplier: 1, 2 or 4 (default 1)")
    p.add_argument("--frames", type=positive_int, help="use only the first N frames of the clip")
    p.add_argument("--seed", type=int, default=0, help="random seed (matters only with --upscale-steps > 1)")
    p.add_argument("--progress", action="store_true", help="show a progress bar per stage")
    add_upscaler_options(p)
    p.set_defaults(func=_upscale)


def check_factors(scale: int, fps_multiplier: int) -> None:
    from kinema.tasks.upscale import stages_for

    stages_for(scale, fps_multiplier)  # one-line error for an unsupported factor


def _upscale(args: argparse.Namespace) -> int:
    from kinema.errors import KinemaError
    from kinema.media import check_output_path

    check_output_path(args.out)
    check_factors(args.scale, args.fps_multiplier)
    if args.scale == 1 and args.fps_multiplier == 1:
        raise KinemaError("nothing to do: give --scale 2|4 and/or --fps-multiplier 2|4")

    from kinema.media import frames_to_tensor, probe, read_frames, write_video
    from kinema.tasks.upscale import load_upscalers, upscale

    upscalers = load_upscalers(args.scale, args.fps_multiplier, args.spatial_model, args.temporal_model)
    info = probe(args.clip)
    frames = read_frames(args.clip, count=args.frames)
    if args.fps_multiplier > 1 and len(frames) < 2:
        raise KinemaError(f"{args.clip} has {len(frames)} frame; raising the frame rate needs at least 2")
    video = upscale(frames_to_tensor(frames)[None], upscalers, scale=args.scale, fps_multiplier=args.fps_multiplier,
                    seed=args.seed, progress=args.progress, **stage_options(args))
    fps = (info.get("fps") or 8.0) * args.fps_multiplier
    print(write_video(args.out, video[0], fps=fps))
    return 0
