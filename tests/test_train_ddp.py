"""Data parallel: 2 CPU processes under torchrun (gloo) take halves of the global batch and
end with the weights of one process training on the whole batch."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from kinema.checkpoint import load_tensors
from kinema.train.config import load_run_config
from kinema.train.loop import build_network
from train_utils import RUNNER, TINY_DIT, env

# Weight decay, clipping, text, caption dropout, image batches and EMA all on; 3 steps.
# (On CPU the two agree bit for bit: (g0 + g1) / 2 == g0 / 2 + g1 / 2 exactly; the
# tolerance leaves room for other reduction orders.)
ARGS = ("--set", "train.steps=3", "--set", "train.checkpoint_every=0", "--set", "train.log_every=1",
        "--set", "train.batch_size=4")


# The U-Net case has parameters that sit out steps (temporal layers on image batches; no
# text encoder, so no text layers at all), which DDP must tolerate and treat as one process does.
UNET = ("--set", "model.family='unet3d'", "--set", "model.preset='unet3d-tiny'", "--set", "model.overrides={in_channels=3}",
        "--set", "diffusion.text_encoder='none'", "--set", "data.image_prob=0.5")


@pytest.mark.slow
@pytest.mark.parametrize("family, extra", [("dit", ()), ("unet3d", UNET)])
def test_two_gloo_ranks_match_one_process_with_the_same_global_batch(tmp_path, family, extra):
    common = dict(env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # One process: two micro-batches of 2. Two ranks: one micro-batch of 2 each.
    one = subprocess.Popen([sys.executable, "-c", RUNNER, "train", str(TINY_DIT), "--out", str(tmp_path / "one"),
                            *ARGS, *extra, "--set", "train.grad_accum=2"], **common)
    two = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                            "--no-python", sys.executable, "-c", RUNNER, "train", str(TINY_DIT), "--out", str(tmp_path / "two"),
                            *ARGS, *extra, "--set", "train.grad_accum=1"], **common)
    one_err, two_err = one.communicate(timeout=300)[1], two.communicate(timeout=300)[1]
    assert one.returncode == 0, one_err[-2000:]
    assert two.returncode == 0, two_err[-3000:]
    assert "on 2 x cpu" in two_err
    assert len((tmp_path / "two" / "metrics.jsonl").read_text().splitlines()) == 3  # rank 0 alone logs
    for name in ("model.safetensors", "ema.safetensors"):
        a = load_tensors(tmp_path / "one" / "final" / name)
        b = load_tensors(tmp_path / "two" / "final" / name)
        assert a.keys() == b.keys()
        for k in a:
            scale = a[k].abs().max().clamp(min=1e-3)
            assert (a[k] - b[k]).abs().max() <= 1e-5 * scale, (name, k, float((a[k] - b[k]).abs().max()))
    # ... and training moved them: the comparison is not of two untouched initializations.
    torch.manual_seed(0)
    spec = load_run_config(TINY_DIT, [a for a in extra if a != "--set"]).model
    init = build_network(family, spec.resolve()).state_dict()
    trained = load_tensors(tmp_path / "two" / "final" / "model.safetensors")
    assert max(float((trained[k] - init[k]).abs().max()) for k in init) > 1e-3
