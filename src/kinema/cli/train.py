"""`kinema train CONFIG`: run (or resume) a training run described by a TOML config.

Data-parallel: `torchrun --nproc_per_node=N -m kinema train CONFIG` (every rank runs this
command; rank 0 writes the run directory).
"""

from __future__ import annotations

import argparse

from kinema.cli.arguments import positive_int


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a model from a TOML run config",
        description="Train a model from a TOML run config (see configs/). Writes checkpoints, "
        "metrics.jsonl, loss.png and final/ in the run directory.",
    )
    p.add_argument("config", help="run config: a .toml file, or the config.json of an earlier run")
    p.add_argument("--out", metavar="DIR", help="run directory (default: runs/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in the run directory")
    p.add_argument("--steps", type=positive_int, metavar="N", help="total optimizer steps (overrides train.steps)")
    p.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set optim.lr=3e-4 --set model.overrides.depth=4 (repeatable)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from kinema.train.config import load_run_config
    from kinema.train.loop import train

    config = load_run_config(args.config, args.assignments, steps=args.steps)
    config_path = Path(args.config)
    name = config_path.parent.name if config_path.name == "config.json" else config_path.stem
    out = Path(args.out) if args.out else Path("runs") / name
    final = train(config, out, resume=args.resume)
    print(f"kinema train: done; model in {final}")
    return 0
