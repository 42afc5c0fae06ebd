"""The `kinema` command: parse arguments, build a config, call the library.

Each subcommand lives in its own module here with a `register(subparsers)` function that
adds its parser and sets `func`; those modules import heavy libraries inside `func`, so
`kinema --help` stays fast. Every user-fixable problem surfaces as a KinemaError and
becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from kinema import __version__
from kinema.errors import KinemaError

# Subcommand modules, in the order their commands appear in --help.
COMMAND_MODULES: tuple[str, ...] = ("generate", "clip_tasks", "upscale", "shapes", "train", "info", "vae", "evaluate")

EXIT_USAGE = 2
EXIT_INTERNAL = 70  # EX_SOFTWARE: a bug, kept apart from 1, which commands use for "checked and failed"


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are a single line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="kinema", description="kinema: video diffusion that tells the truth about its output.")
    parser.add_argument("--version", action="version", version=f"kinema {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f"kinema.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except KinemaError as e:
        print(f"kinema: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("kinema: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug, not bad input: still one line unless asked for more
        if os.environ.get("KINEMA_DEBUG"):
            raise
        print(f"kinema: internal error: {type(e).__name__}: {e} (set KINEMA_DEBUG=1 for a traceback)", file=sys.stderr)
        return EXIT_INTERNAL
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
