"""Shared by the tests/test_train_*.py files: the tiny configs and a `kinema train` runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from kinema.train.config import RunConfig, load_run_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
TINY_DIT = CONFIGS / "tiny-dit.toml"
TINY_VAE = CONFIGS / "tiny-vae.toml"

# `kinema train ...` in a fresh process, whether or not the lead has registered the command yet.
RUNNER = (
    "import sys, kinema.cli as c\n"
    "c.COMMAND_MODULES = c.COMMAND_MODULES + (() if 'train' in c.COMMAND_MODULES else ('train',))\n"
    "sys.exit(c.main(sys.argv[1:]))\n"
)


def tiny(path: Path = TINY_DIT, *assignments: str) -> RunConfig:
    """A tiny config with `section.key=value` overrides (as `kinema train --set`)."""
    return load_run_config(path, assignments)


def env() -> dict[str, str]:
    """One thread per process: deterministic and polite on a shared 2-core machine."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def cli(*args: str, **kwargs) -> subprocess.Popen:
    """Start `kinema <args>` as a subprocess with captured output."""
    return subprocess.Popen([sys.executable, "-c", RUNNER, *args], env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)
