"""Argument types shared by the subcommands (each error is a one-line usage message)."""

from __future__ import annotations

import argparse
import re


def parse_size(text: str) -> tuple[int, int]:
    """'HxW' (e.g. '64x64') -> (H, W), both positive integers."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match or int(match.group(1)) < 1 or int(match.group(2)) < 1:
        raise argparse.ArgumentTypeError(f"expected HxW with positive integers, e.g. 64x64, got {text!r}")
    return int(match.group(1)), int(match.group(2))


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0.0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


GUIDANCE_INTERVAL_HELP = "noise levels LO:HI (sigma) where guidance applies, e.g. 0.8:1, or 'all' (default: the model's)"


def parse_interval(text: str) -> tuple[float, float]:
    """'LO:HI' (noise levels, 0 <= LO <= HI) -> (LO, HI); 'all' -> (0, inf)."""
    if text.strip().lower() == "all":
        return 0.0, float("inf")
    try:
        lo, hi = (float(part) for part in text.split(":"))
    except ValueError:
        lo, hi = -1.0, -1.0
    if not 0.0 <= lo <= hi:
        raise argparse.ArgumentTypeError(f"expected LO:HI with 0 <= LO <= HI (e.g. 0.8:1) or 'all', got {text!r}")
    return lo, hi
