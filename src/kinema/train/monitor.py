"""What a run reports while it trains: a JSONL metrics log, a progress line, a loss curve.

The log (`metrics.jsonl`, one JSON object per line) is the record; the progress line on
stderr and the loss-curve PNG are views of it. On resume the log is cut back to the
checkpoint's step, so a killed-and-resumed run's log reads like an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from kinema.fileio import atomic_path, atomic_write_text

METRICS_FILE = "metrics.jsonl"
LOSS_CURVE_FILE = "loss.png"


class MetricsLog:
    """Append-only JSONL; each line has "step" and whatever the loop logs at that step."""

    def __init__(self, run_dir: Path, resume_step: int) -> None:
        self.path = run_dir / METRICS_FILE
        kept = [r for r in self.read() if r.get("step", 0) <= resume_step] if resume_step else []
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))

    def read(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        rows = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a kill
                continue
        return rows

    def write(self, row: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")


def plot_loss_curve(log: MetricsLog, run_dir: Path) -> Path | None:
    """loss.png: the logged loss against the step (log scale), written atomically."""
    rows = [r for r in log.read() if isinstance(r.get("loss"), (int, float)) and math.isfinite(r["loss"]) and r["loss"] > 0]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], linewidth=1)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    path = run_dir / LOSS_CURVE_FILE
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    """`step 120/1000 [##----] loss 0.1234 | 3.2 steps/s | ETA 04:35` on stderr.

    On a terminal the line redraws in place every step; otherwise (a log file, CI) one line
    is printed per `update(..., force=True)` call, i.e. per log interval.
    """

    def __init__(self, total: int, start: int, stream: TextIO | None = None, tty: bool | None = None) -> None:
        self.total, self.stream = total, stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.t0, self.s0 = time.perf_counter(), start
        self.loss: float | None = None

    def rate(self, step: int) -> float:
        elapsed = time.perf_counter() - self.t0
        return (step - self.s0) / elapsed if elapsed > 0 else 0.0

    def update(self, step: int, loss: float | None = None, force: bool = False) -> None:
        if loss is not None:
            self.loss = loss
        if not (self.tty or force):
            return
        rate = self.rate(step)
        eta = (self.total - step) / rate if rate > 0 else float("nan")
        filled = int(20 * step / self.total)
        loss_text = f"loss {self.loss:.4f}" if self.loss is not None else "loss -"
        eta_text = _duration(eta) if math.isfinite(eta) else "--:--"
        line = f"step {step}/{self.total} [{'#' * filled}{'-' * (20 - filled)}] {loss_text} | {rate:.2f} steps/s | ETA {eta_text}"
        self.stream.write(("\r" + line + "\033[K") if self.tty else line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
