"""Kill -9 a training run after its first checkpoint, resume it, and get bit for bit the
weights of a run that was never interrupted (CPU, one thread per process)."""

from __future__ import annotations

import json
import signal
import time

import pytest

from train_utils import TINY_DIT, cli

# The tiny DiT with text, joint image-video batches and gradient accumulation; checkpoints
# every 2 of 10 steps, so a kill after the first one leaves most of the run to redo.
ARGS = ("--set", "train.steps=10", "--set", "train.checkpoint_every=2", "--set", "train.log_every=1")


def _finish(proc, timeout=300) -> None:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-2000:]


@pytest.mark.slow
def test_sigkill_then_resume_reaches_the_same_weights_bitwise(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    a = cli("train", str(TINY_DIT), "--out", str(straight), *ARGS)
    b = cli("train", str(TINY_DIT), "--out", str(killed), *ARGS)
    first = killed / "checkpoints" / "step-00000002"
    deadline = time.monotonic() + 240
    while not first.is_dir():
        assert b.poll() is None, b.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.01)
    b.send_signal(signal.SIGKILL)
    b.wait()
    assert b.returncode == -signal.SIGKILL
    assert not (killed / "final").exists(), "the run finished before it was killed; the test proved nothing"
    steps_done = max(json.loads(line)["step"] for line in (killed / "metrics.jsonl").read_text().splitlines() if line.strip())

    c = cli("train", str(TINY_DIT), "--out", str(killed), "--resume", *ARGS)
    _finish(c)
    _finish(a)
    for name in ("model.safetensors", "ema.safetensors"):
        assert (killed / "final" / name).read_bytes() == (straight / "final" / name).read_bytes(), name
    # The resumed log was cut back to the checkpoint and continued: it equals the straight one.
    def losses(run):
        return [(r["step"], r["loss"], r["lr"], r["grad_norm"]) for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())]
    assert losses(killed) == losses(straight) and len(losses(straight)) == 10
    assert steps_done < 10
