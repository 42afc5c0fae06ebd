"""`kinema generate PROMPT -o OUT`: a clip for a prompt from a text-to-video pipeline.

  kinema generate PROMPT -o OUT [--model DIR | --fast] [--frames N] [--size HxW] [--steps S]
                  [--guidance G] [--sampler NAME] [--seed N] [--image FIRST.png [--method M]]
                  [--upscale 2|4] [--fps-multiplier 2|4]

With --image, the clip starts from that image (image-to-video). --upscale and
--fps-multiplier run the cascade (kinema.tasks.upscale) on the generated clip.

With no --model it uses the default pipeline shipped inside the package (trained on the
Shapes world: configs/default-t2v.toml); --fast its guidance-distilled copy
(configs/default-t2v-distill.toml), which needs one network evaluation per step. The same seed gives the same clip. Unset options
take the pipeline's own defaults (model.json).
"""

from __future__ import annotations

import argparse

from kinema.cli.arguments import parse_size, positive_int
from kinema.cli.clip_tasks import add_sampling_options, sampling_kwargs
from kinema.cli.upscale import add_upscaler_options, check_factors, stage_options


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("generate", help="generate a clip for a prompt",
                                   description="Generate a clip for a prompt and write it to OUT.")
    parser.add_argument("prompt", help="e.g. 'a large red circle moving right on a black background'")
    add_sampling_options(parser, fast=True)
    parser.add_argument("--frames", type=positive_int, help="clip length (default: the model's, 17)")
    parser.add_argument("--size", type=parse_size, metavar="HxW", help="frame size (default: the model's, 64x64)")
    parser.add_argument("--image", metavar="FIRST", help="image-to-video: the clip's first frame")
    parser.add_argument("--method", default="trained", help="with --image, how it is kept: trained (default), replace or guidance")
    parser.add_argument("--progress", action="store_true", help="show a progress bar")
    parser.add_argument("--upscale", type=int, default=1, metavar="N", help="cascade: frame size multiplier, 1, 2 or 4 (default 1)")
    parser.add_argument("--fps-multiplier", type=int, default=1, metavar="N",
                        help="cascade: frame rate multiplier, 1, 2 or 4 (default 1)")
    add_upscaler_options(parser)
    parser.set_defaults(func=_generate)


def _generate(args: argparse.Namespace) -> int:
    from kinema.media import check_output_path

    check_output_path(args.out)  # fail before any loading
    check_factors(args.upscale, args.fps_multiplier)

    import torch

    from kinema.diffusion.samplers import get_sampler
    from kinema.media import write_video
    from kinema.pipeline import Pipeline
    from kinema.cli.clip_tasks import pipeline_dir, read_keyframe
    from kinema.tasks.clips import image_to_video
    from kinema.tasks.known import check_method
    from kinema.tasks.t2v import text_to_video

    if args.sampler is not None:
        get_sampler(args.sampler)  # an unknown name fails before the model loads
    check_method(args.method)
    upscalers = {}
    if args.upscale > 1 or args.fps_multiplier > 1:  # a missing upscaler fails before generation
        from kinema.tasks.upscale import load_upscalers

        upscalers = load_upscalers(args.upscale, args.fps_multiplier, args.spatial_model, args.temporal_model)
    pipe = Pipeline.load(pipeline_dir(args), precision=args.precision)
    options = dict(frames=args.frames, progress=args.progress, **sampling_kwargs(args))
    with torch.no_grad():  # not inference_mode: reconstruction guidance needs autograd
        if args.image is not None:
            size = args.size or (pipe.config.height, pipe.config.width)
            image = read_keyframe(args.image, size, "image")
            video = image_to_video(pipe, [args.prompt], image, method=args.method, **options)
        else:
            video = text_to_video(pipe, [args.prompt], size=args.size, **options)
    if upscalers:
        from kinema.tasks.upscale import upscale

        video = upscale(video, upscalers, scale=args.upscale, fps_multiplier=args.fps_multiplier, seed=args.seed,
                        progress=args.progress, **stage_options(args))
    print(write_video(args.out, video[0], fps=pipe.config.fps * args.fps_multiplier))
    return 0

