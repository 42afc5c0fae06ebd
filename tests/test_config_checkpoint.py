"""Strict configs, atomic writes and component directories."""

import dataclasses
import json
import os
from pathlib import Path

import pytest
import torch

from kinema.checkpoint import CheckpointError, load_component, save_component
from kinema.config import Config, ConfigError
from kinema.fileio import atomic_dir, atomic_path, atomic_write_text


@dataclasses.dataclass(frozen=True)
class Inner(Config):
    kind = "inner"
    width: int = 4


@dataclasses.dataclass(frozen=True)
class Toy(Config):
    kind = "toy"
    width: int = 8
    scale: float = 1.0
    name: str = "a"
    mults: tuple[int, ...] = (1, 2)
    patch: tuple[int, int, int] = (1, 2, 2)
    inner: Inner = Inner()
    stats: tuple[float, ...] | None = None
    flag: bool = False


class ToyNet(torch.nn.Module):
    def __init__(self, config: Toy):
        super().__init__()
        self.config = config
        self.lin = torch.nn.Linear(config.width, config.width)


def test_config_json_round_trip():
    c = Toy(width=3, scale=2, mults=(1, 2, 4), inner=Inner(7), stats=(0.5, 1.5), flag=True)
    back = Toy.from_json(c.to_json())
    assert back == c
    assert isinstance(back.scale, float) and isinstance(back.mults, tuple)
    assert json.loads(c.to_json())["kind"] == "toy"


@pytest.mark.parametrize(
    "data, message",
    [
        ({"width": 3, "depth": 2}, "unknown key(s) depth"),
        ({"kind": "dit"}, "of kind 'dit', expected 'toy'"),
        ({"width": "3"}, "toy.width: expected an integer"),
        ({"width": True}, "toy.width: expected an integer"),
        ({"patch": [1, 2]}, "expected 3 items"),
        ({"version": 99}, "newer than this kinema reads"),
        ({"inner": {"width": 1, "x": 2}}, "inner config: unknown key(s) x"),
    ],
)
def test_config_rejects_bad_input(data, message):
    with pytest.raises(ConfigError) as e:
        Toy.from_dict(data)
    assert message in str(e.value)


def test_config_load_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        Toy.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        Toy.load(bad)


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("encoder died")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_atomic_dir_replaces_whole_or_nothing(tmp_path):
    target = tmp_path / "frames"
    with atomic_dir(target) as d:
        (d / "a.png").write_bytes(b"1")
    assert [p.name for p in target.iterdir()] == ["a.png"]
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as d:
            (d / "b.png").write_bytes(b"2")
            raise RuntimeError("boom")
    assert [p.name for p in target.iterdir()] == ["a.png"]
    with atomic_dir(target) as d:
        (d / "c.png").write_bytes(b"3")
    assert [p.name for p in target.iterdir()] == ["c.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]


def test_component_round_trip_and_strictness(tmp_path):
    torch.manual_seed(0)
    net = ToyNet(Toy(width=4))
    ema = {k: v + 1 for k, v in net.state_dict().items()}
    save_component(tmp_path / "m", net.config, net.state_dict(), ema)
    loaded = load_component(tmp_path / "m", Toy, ToyNet)
    x = torch.randn(2, 4)
    assert torch.equal(loaded.lin(x), net.lin(x))
    loaded_ema = load_component(tmp_path / "m", Toy, ToyNet, ema=True)
    assert torch.equal(loaded_ema.lin.bias, net.lin.bias + 1)

    # A config that no longer matches the weights is refused, not half-loaded.
    (tmp_path / "m" / "config.json").write_text(Toy(width=5).to_json())
    with pytest.raises(CheckpointError, match="shape"):
        load_component(tmp_path / "m", Toy, ToyNet)


def test_component_corrupt_and_missing(tmp_path):
    net = ToyNet(Toy())
    save_component(tmp_path / "m", net.config, net.state_dict())
    weights = tmp_path / "m" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: len(weights.read_bytes()) // 2])
    with pytest.raises(CheckpointError, match="corrupt weights file"):
        load_component(tmp_path / "m", Toy, ToyNet)
    with pytest.raises(CheckpointError, match="model directory not found"):
        load_component(tmp_path / "nope", Toy, ToyNet)
    os.remove(weights)
    with pytest.raises(CheckpointError, match="weights file not found"):
        load_component(tmp_path / "m", Toy, ToyNet)


def test_component_extra_tensor_refused(tmp_path):
    net = ToyNet(Toy())
    state = dict(net.state_dict(), extra=torch.zeros(1))
    save_component(tmp_path / "m", net.config, state)
    with pytest.raises(CheckpointError, match="unexpected 1 tensor"):
        load_component(tmp_path / "m", Toy, ToyNet)


def test_atomic_outputs_get_ordinary_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "f.txt", "x")
        with atomic_dir(tmp_path / "d") as d:
            (d / "a").write_text("y")
    finally:
        os.umask(mask)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755
