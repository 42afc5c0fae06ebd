"""`kinema generate PROMPT -o OUT`: a clip for a prompt.

No trained default model ships yet, so for now this renders the Shapes world's ground
truth for a Shapes caption (SHAPES.md grammar) and says so on stderr; any other prompt is
refused with a one-line error rather than answered with something that is not a model's
output.
"""

from __future__ import annotations

import argparse
import sys

from kinema.cli.arguments import parse_size, positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("generate", help="generate a clip for a prompt",
                                   description="Generate a clip for a prompt and write it to OUT.")
    parser.add_argument("prompt", help="e.g. 'a large red circle moving right on a black background'")
    parser.add_argument("-o", "--out", required=True, help="output: .mp4, .gif, .npy or a directory of PNG frames")
    parser.add_argument("--frames", type=positive_int, default=17, help="clip length (default 17)")
    parser.add_argument("--size", type=parse_size, default=(64, 64), metavar="HxW", help="frame size (default 64x64)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same clip")
    parser.set_defaults(func=_generate)


def _generate(args: argparse.Namespace) -> int:
    from kinema.errors import KinemaError
    from kinema.media import check_output_path, write_video
    from kinema.world.render import render
    from kinema.world.scene import CaptionError, parse_caption

    check_output_path(args.out)
    try:
        scene = parse_caption(args.prompt)
    except CaptionError as e:
        raise KinemaError(
            f"no trained model is installed yet, so only Shapes captions can be rendered ({e})"
        ) from None
    print("kinema: no trained model is installed yet; writing the Shapes world's ground truth", file=sys.stderr)
    rendering = render(scene, frames=args.frames, size=args.size, rng=args.seed)
    print(write_video(args.out, rendering.video, fps=8))
    return 0
