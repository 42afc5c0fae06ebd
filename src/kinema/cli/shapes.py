"""`kinema shapes`: render a Shapes-world caption to a clip, or judge a clip against a caption.

  kinema shapes render CAPTION -o OUT [--seed N] [--frames N] [--size HxW]
  kinema shapes judge CAPTION CLIP [--json]

judge exits 0 when the clip passes every check, 1 when it does not, and 2 (like every
kinema command) for a bad caption or an unreadable clip.
"""

from __future__ import annotations

import argparse

from kinema.cli.arguments import parse_size, positive_int

EXIT_PASS, EXIT_FAIL = 0, 1


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("shapes", help="render or judge clips of the Shapes world",
                                   description="The Shapes world: render a caption, or judge a clip against one.")
    commands = parser.add_subparsers(dest="shapes_command", metavar="ACTION")
    commands.required = True

    render = commands.add_parser("render", help="render a caption to a clip with exact ground truth",
                                 description="Render a Shapes caption (see SHAPES.md) and write it; prints the path.")
    render.add_argument("caption", help="e.g. 'a small red circle moving left on a black background'")
    render.add_argument("-o", "--out", required=True, help="output: .mp4, .gif, .npy or a directory of PNG frames")
    render.add_argument("--seed", type=int, default=0, help="seed for the start positions (default 0)")
    render.add_argument("--frames", type=positive_int, default=17, help="clip length T (default 17)")
    render.add_argument("--size", type=parse_size, default=(64, 64), metavar="HxW", help="frame size (default 64x64)")
    render.set_defaults(func=_render)

    judge = commands.add_parser("judge", help="check a clip against a caption",
                                description="Judge a clip against a Shapes caption: exit 0 if it passes, 1 if not.")
    judge.add_argument("caption", help="the caption the clip should show")
    judge.add_argument("clip", help="a video file, .npy, image or directory of frames")
    judge.add_argument("--json", action="store_true", help="print the judgement as JSON")
    judge.set_defaults(func=_judge)


def _render(args: argparse.Namespace) -> int:
    from kinema.media import write_video
    from kinema.world.render import render
    from kinema.world.scene import parse_caption

    scene = parse_caption(args.caption)
    rendering = render(scene, frames=args.frames, size=args.size, rng=args.seed)
    path = write_video(args.out, rendering.video, fps=8)
    print(path)
    return 0


def _judge(args: argparse.Namespace) -> int:
    import json

    from kinema.eval.shapes import judge
    from kinema.media import read_frames
    from kinema.world.scene import parse_caption

    scene = parse_caption(args.caption)  # before reading: a bad caption fails fast
    judgement = judge(read_frames(args.clip), scene)
    if args.json:
        print(json.dumps(judgement.to_dict(), indent=2))
    else:
        for name, check in judgement.checks.items():
            value = f"{check.value:6.2f}" if check.value == check.value else "     -"  # NaN: not judged
            print(f"{'pass' if check.passed else 'FAIL'}  {name:<22} {value}  {check.detail}")
        print(f"{'PASS' if judgement.passed else 'FAIL'}: {judgement.caption}")
    return EXIT_PASS if judgement.passed else EXIT_FAIL
