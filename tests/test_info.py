"""`kinema info` and the FLOP counter under it (kinema.models.flops)."""

import json
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import kinema.cli
import kinema.models.flops as flops
from kinema.models.dit import PRESETS as DIT_PRESETS
from kinema.models.dit import VideoDiT
from kinema.models.flops import build_on_meta, forward_flops, param_counts
from kinema.models.registry import model_family
from kinema.models.unet3d import PRESETS as UNET_PRESETS
from kinema.models.unet3d import UNet3D
from kinema.models.vae3d import PRESETS as VAE_PRESETS
from kinema.models.vae3d import VAE3D
from kinema.pipeline import PipelineConfig
from kinema.train.config import load_run_config
from kinema.train.export import export_pipeline

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]


def info(capsys, *args: str) -> dict:
    assert kinema.cli.main(["info", *args, "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


# ----------------------------------------------------------------------------- the counter


@pytest.mark.parametrize("device", ["cpu", "meta"])
@pytest.mark.parametrize("shape", [(7, 12), (2, 5, 12)])
def test_linear_flops_are_two_per_multiply_add(device, shape):
    layer = nn.Linear(12, 9, device=device)
    tokens = torch.Size(shape[:-1]).numel()
    assert forward_flops(layer, torch.zeros(shape, device=device)) == 2 * 12 * 9 * tokens


def test_attention_is_counted_on_cpu_as_on_meta():
    """The CPU fused attention kernel has no FLOP formula; forward_flops must not lose it."""
    config = DIT_PRESETS["dit-tiny"]
    tokens, text = 3 * 4 * 4, 6  # (T, H/2, W/2) patches of a (3, 8, 8) clip; text tokens

    def inputs(dev):
        return (torch.zeros(1, 4, 3, 8, 8, device=dev), torch.zeros(1, device=dev)), \
            {"context": torch.zeros(1, text, config.text_dim, device=dev)}

    args, kw = inputs("meta")
    on_meta = forward_flops(build_on_meta(VideoDiT, config), *args, **kw)
    args, kw = inputs("cpu")
    net = VideoDiT(config).eval()
    on_cpu = forward_flops(net, *args, **kw)
    with torch.no_grad(), FlopCounterMode(display=False) as naive:
        net(*args, **kw)
    assert on_cpu == on_meta
    # What the naive count misses is exactly attention: QK^T and AV, 2 FLOPs per multiply-add,
    # over self-attention (tokens x tokens) and cross-attention (tokens x text) in every block.
    attention = config.depth * (4 * tokens * tokens * config.dim + 4 * tokens * text * config.dim)
    assert on_meta - naive.get_total_flops() == attention


def test_unet_flops_grow_linearly_with_frames():
    config = UNET_PRESETS["unet3d-tiny"]
    net = build_on_meta(UNet3D, config)

    def cost(frames: int) -> int:
        x = torch.zeros(1, config.in_channels, frames, 16, 16, device="meta")
        return forward_flops(net, x, torch.zeros(1, device="meta"), context=torch.zeros(1, 8, 32, device="meta"))

    costs = {t: cost(t) for t in (4, 8, 16)}
    assert costs[8] / costs[4] == pytest.approx(2.0, rel=0.03)
    assert costs[16] / costs[8] == pytest.approx(2.0, rel=0.03)


# ----------------------------------------------------------------------------- what info reports


@pytest.mark.parametrize("preset, cls", [("dit-tiny", VideoDiT), ("unet3d-tiny", UNet3D), ("vae-tiny", VAE3D)])
def test_parameter_counts_are_those_of_the_real_network(capsys, preset, cls):
    report = info(capsys, preset)
    real = cls(model_family(report["family"])[2][preset])
    assert report["params"]["total"] == sum(p.numel() for p in real.parameters())
    assert report["params"]["trainable"] == report["params"]["total"]


def test_param_counts_tell_frozen_from_trainable():
    net = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 5))
    net[0].requires_grad_(False)
    net.register_buffer("not_a_parameter", torch.zeros(100))
    assert param_counts(net) == (16 + 25, 25)


def test_denoiser_preset_input_shape_and_flops(capsys):
    report = info(capsys, "dit-tiny", "--frames", "9", "--size", "32x48", "--batch", "2", "--text-len", "7")
    assert report["family"] == "dit" and report["source"] == "preset"
    assert report["input"]["x"] == [2, 4, 3, 4, 6]  # 4 latent channels, (9 frames, 32x48) / (4, 8, 8)
    assert report["input"]["space"] == "latent"
    assert report["input"]["vae_geometry"] == {"time": 4, "space": 8, "assumed": True}
    assert report["input"]["context"] == [2, 7, 32] and report["input"]["cond"] is None
    config = DIT_PRESETS["dit-tiny"]
    direct = forward_flops(VideoDiT(config).eval(), torch.zeros(2, 4, 3, 4, 6), torch.zeros(2),
                           context=torch.zeros(2, 7, 32))
    assert report["flops"]["forward"] == direct and report["counted_on"] == "meta"


def test_vae_reports_encode_and_decode_apart(capsys):
    report = info(capsys, "vae-tiny", "--frames", "5", "--size", "16x16")
    assert report["input"] == {"clip": [1, 3, 5, 16, 16], "latent": [1, 4, 2, 2, 2]}
    vae = VAE3D(VAE_PRESETS["vae-tiny"]).eval()  # on CPU its 3D convolutions call aten.mkldnn_convolution,
    x = torch.zeros(1, 3, 5, 16, 16)  # which forward_flops must count as the meta path's aten.convolution
    assert report["flops"]["encode"] == forward_flops(vae.encode, x)
    assert report["flops"]["decode"] == forward_flops(vae.decode, torch.zeros(1, 4, 2, 2, 2))
    assert report["flops"]["decode"] > report["flops"]["encode"] > 0


def test_falls_back_to_a_real_forward_when_meta_cannot_run(capsys, monkeypatch):
    expected = info(capsys, "dit-tiny", "--frames", "5", "--size", "16x16")["flops"]["forward"]
    real_build = flops.build_on_meta

    class MetaUnsupported(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *args, **kwargs):
            raise NotImplementedError("an op with no meta kernel")

    monkeypatch.setattr(flops, "build_on_meta", lambda cls, config: MetaUnsupported(real_build(cls, config)))
    report = info(capsys, "dit-tiny", "--frames", "5", "--size", "16x16")
    assert report["counted_on"] == "cpu" and report["flops"]["forward"] == expected


def test_config_json_and_component_dir(capsys, tmp_path):
    config = UNET_PRESETS["unet3d-tiny"].replace(in_channels=3, text_dim=None)  # a pixel-space, text-free U-Net
    (tmp_path / "unet.json").write_text(config.to_json())
    from_file = info(capsys, str(tmp_path / "unet.json"), "--frames", "4", "--size", "16x16")
    assert from_file["source"] == "config file" and from_file["family"] == "unet3d"
    assert from_file["input"]["x"] == [1, 3, 4, 16, 16] and from_file["input"]["space"] == "pixels"
    assert from_file["input"]["context"] is None

    UNet3D(config).save(tmp_path / "unet")
    from_dir = info(capsys, str(tmp_path / "unet"), "--frames", "4", "--size", "16x16")
    assert from_dir["source"] == "component dir"
    assert (from_dir["params"], from_dir["flops"]) == (from_file["params"], from_file["flops"])


def test_pipeline_dir_uses_the_vae_geometry_and_reports_the_vae(capsys, tmp_path):
    vae = VAE3D(VAE_PRESETS["vae-tiny"].replace(channel_mults=(1, 2, 2), temporal_downsample=(True, False)))
    net_config = DIT_PRESETS["dit-tiny"]
    pipe = PipelineConfig(network="dit", schedule={"kind": "flow", "shift": 1.0}, prediction="flow",
                          text_encoder="none")
    net = VideoDiT(net_config)
    export_pipeline(tmp_path / "final", pipe, network_config=net_config, weights=net.state_dict(),
                    ema=net.state_dict(), vae=vae)
    report = info(capsys, str(tmp_path / "final"), "--frames", "9", "--size", "16x16")
    assert report["source"] == "pipeline dir" and report["family"] == "dit"
    assert report["input"]["x"] == [1, 4, 5, 4, 4]
    assert report["input"]["vae_geometry"] == {"time": 2, "space": 4, "assumed": False}
    assert report["input"]["context"] is None  # text_encoder "none": an unconditional model
    assert report["vae"]["params"]["total"] == sum(p.numel() for p in vae.parameters())
    assert report["vae"]["input"] == {"clip": [1, 3, 9, 16, 16], "latent": [1, 4, 5, 4, 4]}
    assert report["vae"]["flops"]["encode"] > 0 and report["vae"]["flops"]["decode"] > 0
    assert info(capsys, str(tmp_path / "final" / "model.json"), "--frames", "9", "--size", "16x16") == report


def test_run_configs_toml_and_json(capsys, tmp_path):
    dit = info(capsys, str(ROOT / "configs" / "tiny-dit.toml"), "--frames", "5", "--size", "16x16")
    assert dit["source"] == "run config" and dit["family"] == "dit"
    assert dit["input"]["x"] == [1, 3, 5, 16, 16] and dit["input"]["space"] == "pixels"  # diffusion.vae unset
    assert dit["input"]["vae_geometry"] is None
    assert dit["input"]["context"] == [1, 16, 384]
    vae = info(capsys, str(ROOT / "configs" / "tiny-vae.toml"), "--frames", "5", "--size", "16x16")
    assert vae["family"] == "vae3d" and vae["params"] == info(capsys, "vae-tiny")["params"]

    run = load_run_config(ROOT / "configs" / "tiny-dit.toml").resolved()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text(run.to_json())  # what a run dir holds
    again = info(capsys, str(tmp_path / "run"), "--frames", "5", "--size", "16x16")
    assert (again["params"], again["flops"]) == (dit["params"], dit["flops"])


def test_run_config_with_a_vae_takes_its_geometry_once_it_exists(capsys, tmp_path):
    vae_dir = tmp_path / "vae"
    text = (ROOT / "configs" / "tiny-dit.toml").read_text().replace("in_channels = 3", "in_channels = 4")
    (tmp_path / "latent.toml").write_text(text.replace("[diffusion]\n", f'[diffusion]\nvae = "{vae_dir}"\n'))
    before = info(capsys, str(tmp_path / "latent.toml"), "--frames", "9", "--size", "16x16")
    assert before["input"]["vae_geometry"]["assumed"] and "vae" not in before  # not trained yet
    VAE3D(VAE_PRESETS["vae-tiny"].replace(temporal_downsample=(False, False, True))).save(vae_dir)
    after = info(capsys, str(tmp_path / "latent.toml"), "--frames", "9", "--size", "16x16")
    assert after["input"]["vae_geometry"] == {"time": 2, "space": 8, "assumed": False}
    assert after["input"]["x"] == [1, 4, 5, 2, 2] and after["vae"]["input"]["latent"] == [1, 4, 5, 2, 2]


def test_text_report_says_what_was_counted(capsys):
    assert kinema.cli.main(["info", "vae-tiny"]) == 0
    out = capsys.readouterr().out
    assert "vae-tiny: vae3d (preset)" in out and "clip (1, 3, 17, 64, 64) <-> latent (1, 4, 5, 8, 8)" in out
    assert "encode: " in out and "decode: " in out and "FlopCounterMode" in out
    assert kinema.cli.main(["info", "unet3d-tiny"]) == 0
    out = capsys.readouterr().out
    assert "input: x (1, 4, 5, 8, 8) in latents (VAE assumed: 4x time, 8x space)" in out and "forward: " in out


@pytest.mark.parametrize(
    "make, args, message",
    [
        (None, ["no/such/dir"], "is not a file, a directory or a preset name"),
        (None, ["dit-xxl"], "presets: dit-tiny"),
        ("bad.json", ["{bad.json}"], "not valid JSON"),
        ("gan.json", ["{gan.json}"], "unknown kind 'gan'"),
        ("notes.txt", ["{notes.txt}"], "expected a model dir, a config .json"),
        ("empty", ["{empty}"], "has no config.json"),
        (None, ["vae-tiny", "--frames", "6"], "1 + 4k frames"),
        (None, ["dit-s", "--size", "60x64"], "multiples of the VAE's 8"),
        (None, ["unet3d-tiny", "--frames", "5", "--size", "8x8"], "multiples of 2"),  # 1x1 latents, 2 levels
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, make, args, message):
    if make == "bad.json":
        (tmp_path / make).write_text("{not json")
    elif make == "gan.json":
        (tmp_path / make).write_text('{"kind": "gan"}')
    elif make == "notes.txt":
        (tmp_path / make).write_text("hello")
    elif make == "empty":
        (tmp_path / make).mkdir()
    args = [a.replace("{", str(tmp_path) + "/").replace("}", "") for a in args]
    code = kinema.cli.main(["info", *args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("kinema: error: ") and message in err, err


def test_bad_flag_values_are_usage_errors(capsys):
    for flag, value in (("--size", "64by64"), ("--frames", "0"), ("--batch", "-1")):
        with pytest.raises(SystemExit) as exit_info:
            kinema.cli.main(["info", "dit-tiny", flag, value])
        assert exit_info.value.code == 2
        assert capsys.readouterr().err.count("\n") == 1
