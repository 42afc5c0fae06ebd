"""EMA weights (kinema.train.ema) and training checkpoints (kinema.train.state): exact round
trips, strict refusal of corrupt or mismatched checkpoints, keep-last-K."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from torch import nn

from kinema.checkpoint import CheckpointError
from kinema.train.ema import EMA
from kinema.train.loop import make_optimizer
from kinema.train.config import OptimSpec
from kinema.train.state import (
    capture_rng,
    checkpoint_dirs,
    latest_checkpoint,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)

torch.set_num_threads(1)


class Net(nn.Module):
    def __init__(self, width: int = 4):
        super().__init__()
        self.lin = nn.Linear(width, width)
        self.norm = nn.BatchNorm1d(width)  # has buffers, one of them an integer
        self.width = width

    def forward(self, x):
        return self.norm(self.lin(x))


def test_ema_follows_the_warmed_up_decay_in_float32():
    torch.manual_seed(0)
    net = Net().to(torch.bfloat16)
    ema = EMA(net, decay=0.9)
    assert all(t.dtype == torch.float32 for t in ema.params.values())
    shadow = {n: p.detach().float().clone() for n, p in net.named_parameters()}
    for k in range(30):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
            net.norm.num_batches_tracked += 1
        ema.update(net, k)
        d = min(0.9, (1 + k) / (10 + k))
        for n, p in net.named_parameters():
            shadow[n] = d * shadow[n] + (1 - d) * p.detach().float()
    for n in shadow:
        torch.testing.assert_close(ema.params[n], shadow[n], rtol=1e-5, atol=1e-5)
    assert ema.decay_at(0) == pytest.approx(0.1) and ema.decay_at(1000) == 0.9
    assert set(ema.state_dict()) == set(net.state_dict())
    assert int(ema.buffers["norm.num_batches_tracked"]) == 30  # buffers are copied
    target = Net().to(torch.bfloat16)
    ema.copy_to(target)
    assert torch.equal(target.lin.weight, ema.params["lin.weight"].to(torch.bfloat16))


def _trained(seed: int = 0):
    torch.manual_seed(seed)
    net = Net()
    opt = make_optimizer(net, OptimSpec(lr=1e-2, weight_decay=0.1))
    ema = EMA(net, 0.9)
    for k in range(3):
        loss = net(torch.randn(8, 4)).square().mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
        ema.update(net, k)
    return net, opt, ema


def _save(run, step, net, opt, ema, keep=2, config=None):
    return save_checkpoint(run, step, model=net, ema=ema, optimizer=opt, model_config=config or {"width": 4},
                           run_config={"seed": 0}, lr_schedule={"lr": 0.01}, rng=[capture_rng()], keep=keep)


def _states(net, opt, ema):
    return ({k: v.clone() for k, v in net.state_dict().items()}, {k: v.clone() for k, v in ema.state_dict().items()},
            json.dumps(opt.state_dict()["param_groups"]), {k: {n: t.clone() for n, t in s.items()} for k, s in opt.state_dict()["state"].items()})


def _equal(a, b):
    net_a, ema_a, groups_a, opt_a = a
    net_b, ema_b, groups_b, opt_b = b
    return (all(torch.equal(net_a[k], net_b[k]) for k in net_a) and all(torch.equal(ema_a[k], ema_b[k]) for k in ema_a)
            and groups_a == groups_b and all(torch.equal(opt_a[i][n], opt_b[i][n]) for i in opt_a for n in opt_a[i]))


def test_checkpoint_round_trip_is_exact_and_training_continues_identically(tmp_path):
    net, opt, ema = _trained()
    path = _save(tmp_path, 3, net, opt, ema)
    assert path.name == "step-00000003" and latest_checkpoint(tmp_path) == path
    state = json.loads((path / "state.json").read_text())
    assert state["step"] == 3 and state["data"] == {"next_batch": 3} and state["rng"][0]["python"][0] == 3

    fresh_net, fresh_opt, fresh_ema = _trained(seed=1)  # different weights and moments
    resumed = load_checkpoint(path, model=fresh_net, ema=fresh_ema, optimizer=fresh_opt, model_config={"width": 4})
    assert resumed.step == 3 and resumed.run_config == {"seed": 0}
    assert _equal(_states(net, opt, ema), _states(fresh_net, fresh_opt, fresh_ema))
    # One more identical step from both gives identical weights: the optimizer state is whole.
    x = torch.randn(8, 4)
    for n, o in ((net, opt), (fresh_net, fresh_opt)):
        n(x).square().mean().backward()
        o.step()
    assert torch.equal(net.lin.weight, fresh_net.lin.weight)


def test_rng_states_round_trip(tmp_path):
    net, opt, ema = _trained()
    random.seed(5), np.random.seed(5), torch.manual_seed(5)
    path = _save(tmp_path, 1, net, opt, ema)
    expected = (random.random(), np.random.rand(), torch.rand(1))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    resumed = load_checkpoint(path, model=net, ema=ema, optimizer=opt, model_config={"width": 4})
    restore_rng(resumed.rng[0])
    assert (random.random(), np.random.rand()) == expected[:2] and torch.equal(torch.rand(1), expected[2])


def test_keeps_the_last_k_and_ignores_a_killed_save(tmp_path):
    net, opt, ema = _trained()
    for step in (2, 4, 6):
        _save(tmp_path, step, net, opt, ema, keep=2)
    assert [p.name for p in checkpoint_dirs(tmp_path)] == ["step-00000004", "step-00000006"]
    (tmp_path / "checkpoints" / ".step-00000008.abc.tmp").mkdir()  # what a SIGKILL mid-save leaves
    assert latest_checkpoint(tmp_path).name == "step-00000006"
    _save(tmp_path, 8, net, opt, ema, keep=2)
    assert not list((tmp_path / "checkpoints").glob(".step-*"))


@pytest.mark.parametrize("damage", ["truncate_model", "flip_optimizer_byte", "truncate_state_json", "delete_ema"])
def test_corrupt_checkpoint_is_refused_and_nothing_is_loaded(tmp_path, damage):
    net, opt, ema = _trained()
    path = _save(tmp_path, 3, net, opt, ema)
    if damage == "truncate_model":
        f = path / "model.safetensors"
        f.write_bytes(f.read_bytes()[:-20])
        message = "is corrupt: model.safetensors has"
    elif damage == "flip_optimizer_byte":
        f = path / "optimizer.safetensors"
        data = bytearray(f.read_bytes())
        data[-1] ^= 0xFF
        f.write_bytes(bytes(data))
        message = "is corrupt: optimizer.safetensors fails its SHA-256 check"
    elif damage == "truncate_state_json":
        f = path / "state.json"
        f.write_text(f.read_text()[:100])
        message = "is corrupt: state.json is unreadable"
    else:
        (path / "ema.safetensors").unlink()
        message = "is incomplete: ema.safetensors is missing"
    target = _trained(seed=1)
    before = _states(*target)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path, model=target[0], ema=target[2], optimizer=target[1], model_config={"width": 4})
    assert message in str(e.value) and str(path) in str(e.value) and "\n" not in str(e.value)
    assert _equal(before, _states(*target))


def test_mismatched_model_is_refused_and_nothing_is_loaded(tmp_path):
    net, opt, ema = _trained()
    path = _save(tmp_path, 3, net, opt, ema, config={"width": 4, "depth": 1})
    target = _trained(seed=1)
    before = _states(*target)
    with pytest.raises(CheckpointError, match=r"written for a different model \(depth: 1 in checkpoint vs 2 now\)"):
        load_checkpoint(path, model=target[0], ema=target[2], optimizer=target[1], model_config={"width": 4, "depth": 2})
    assert _equal(before, _states(*target))
    # Same recorded config but different tensors (a hand-edited config): refused by shape.
    torch.manual_seed(0)
    wide = Net(width=5)
    wide_opt, wide_ema = make_optimizer(wide, OptimSpec()), EMA(wide, 0.9)
    with pytest.raises(CheckpointError, match="do not match the model|has shape"):
        load_checkpoint(path, model=wide, ema=wide_ema, optimizer=wide_opt, model_config={"width": 4, "depth": 1})
