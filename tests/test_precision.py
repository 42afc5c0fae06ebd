"""bf16 inference: the precision switch, its run-time detection and fallback, and agreement with fp32."""

import numpy as np
import pytest
import torch

from kinema import precision as prec
from kinema.cli import main
from kinema.diffusion.denoiser import Denoiser, prediction_to_x0
from kinema.diffusion.schedules import FlowSchedule
from kinema.errors import KinemaError
from kinema.models.vae3d import PRESETS as VAE_PRESETS
from kinema.models.vae3d import VAE3D
from kinema.pipeline import Pipeline
from kinema.tasks.extend import extend
from kinema.tasks.t2v import text_to_video

from pipeline_utils import make_pipeline_dir

PROMPT = "a small blue square moving up on a gray background"
# Stated tolerance: on the tiny random pipeline (3 flow steps, guidance 3, clips in [-1, 1])
# a bf16 clip stays within 0.02 mean and 0.15 max absolute difference of the fp32 clip
# (measured: 0.005 mean, 0.04 max).
MEAN_TOL, MAX_TOL = 0.02, 0.15


@pytest.fixture(scope="module")
def pipe_dir(tmp_path_factory):
    return make_pipeline_dir(tmp_path_factory.mktemp("prec") / "model")


@pytest.fixture(scope="module")
def task_pipe_dir(tmp_path_factory):
    return make_pipeline_dir(tmp_path_factory.mktemp("prec") / "tasks", text_encoder="none", frames=9,
                             cond_channels=5)


@pytest.fixture
def fresh_detection():
    prec._fast_bf16.cache_clear()
    yield
    prec._fast_bf16.cache_clear()


def test_resolve_names_and_errors():
    assert prec.resolve_precision("fp32") == torch.float32
    assert prec.resolve_precision("bf16") == torch.bfloat16
    assert prec.precision_name(torch.bfloat16) == "bf16" and prec.precision_name(torch.float32) == "fp32"
    with pytest.raises(KinemaError, match="unknown precision 'fp16'"):
        prec.resolve_precision("fp16")
    assert prec.DEFAULT_PRECISION in prec.PRECISIONS


@pytest.mark.parametrize("instructions, speedup, expected", [
    (False, 4.0, torch.float32),   # no native bf16: never probed, fall back
    (True, 0.3, torch.float32),    # flags say yes, but bf16 is emulated (slower): fall back
    (True, 3.5, torch.bfloat16),   # native and faster: bf16
])
def test_auto_detects_at_run_time_and_falls_back(monkeypatch, fresh_detection, instructions, speedup, expected):
    probed = []
    monkeypatch.setattr(prec, "cpu_has_bf16_instructions", lambda: instructions)
    monkeypatch.setattr(prec, "bf16_probe_speedup", lambda device="cpu": probed.append(device) or speedup)
    assert prec.resolve_precision("auto", "cpu") == expected
    assert prec.resolve_precision("auto", "cpu") == expected
    assert len(probed) == (1 if instructions else 0)  # probed once per process, only with the flags
    assert prec.resolve_precision("bf16", "cpu") == torch.bfloat16  # asked for explicitly: honoured


def test_auto_fallback_loads_a_float32_pipeline(monkeypatch, fresh_detection, pipe_dir):
    monkeypatch.setattr(prec, "cpu_has_bf16_instructions", lambda: False)
    pipe = Pipeline.load(pipe_dir, precision="auto")
    assert pipe.dtype == torch.float32 and pipe.vae.decoder.conv_in.weight.dtype == torch.float32
    reference = text_to_video(Pipeline.load(pipe_dir, precision="fp32"), [PROMPT], seeds=2)
    assert torch.equal(text_to_video(pipe, [PROMPT], seeds=2), reference)


def test_probe_measures_something():
    assert prec.bf16_probe_speedup("cpu") > 0


def test_bf16_pipeline_agrees_with_fp32_within_tolerance(pipe_dir):
    fp32 = Pipeline.load(pipe_dir, precision="fp32")
    bf16 = Pipeline.load(pipe_dir, precision="bf16")
    assert bf16.dtype == torch.bfloat16 and fp32.dtype == torch.float32
    # the decoder computes in bf16, the encoder stays float32 (no bf16 avg_pool3d on CPU)
    assert bf16.vae.decoder.conv_in.weight.dtype == torch.bfloat16
    assert bf16.vae.encoder.conv_in.weight.dtype == torch.float32
    a = text_to_video(fp32, [PROMPT, "an empty black background"], seeds=[3, 4])
    b = text_to_video(bf16, [PROMPT, "an empty black background"], seeds=[3, 4])
    assert b.dtype == torch.float32 and b.shape == a.shape
    diff = (a - b).abs()
    assert 0 < diff.mean() < MEAN_TOL and diff.max() < MAX_TOL


def test_fp32_path_casts_nothing(pipe_dir):
    """At fp32 the network gets the sampler's own tensors (no copy) and the denoiser output is
    exactly the parameterization formula applied to the raw network output: bit-identical to
    the code before precision existed."""
    pipe = Pipeline.load(pipe_dir)
    assert pipe.dtype == torch.float32
    seen = []
    pipe.net.register_forward_hook(lambda m, args, kwargs, out: seen.append((args[0], kwargs)), with_kwargs=True)
    x = torch.randn(1, 4, 2, 2, 2)
    cond = {"context": torch.randn(1, 3, 384), "context_mask": torch.ones(1, 3, dtype=torch.bool)}
    sigma = torch.tensor([0.7], dtype=torch.float64)
    out = pipe.denoiser(x, sigma, **cond)
    assert seen[0][0] is x and seen[0][1]["context"] is cond["context"]
    pred = pipe.net(x, pipe.schedule.timestep(sigma).float(), **cond)
    assert torch.equal(out, prediction_to_x0(pipe.schedule.path, "flow", pred, x, sigma).to(x.dtype))


def test_denoiser_casts_inputs_to_a_bf16_network():
    seen = {}

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(()))

        def forward(self, x, t, cond=None, mask=None):
            seen.update(x=x.dtype, t=t.dtype, cond=cond.dtype, mask=mask.dtype)
            return x * self.w

    den = Denoiser(Net().to(torch.bfloat16), FlowSchedule(), "x0")
    x = torch.randn(2, 3)
    out = den(x, torch.tensor([0.5, 0.5], dtype=torch.float64), cond=torch.randn(2, 3),
              mask=torch.ones(2, dtype=torch.bool))
    assert seen == {"x": torch.bfloat16, "t": torch.float32, "cond": torch.bfloat16, "mask": torch.bool}
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, x, atol=1e-2, rtol=1e-2)


def test_vae_decoder_in_bf16_streams_and_keeps_the_latents_dtype():
    torch.manual_seed(0)
    vae = VAE3D(VAE_PRESETS["vae-tiny"]).eval()
    clip = torch.rand(1, 3, 9, 16, 16) * 2 - 1
    z = vae.encode(clip)
    reference = vae.decode(z)
    vae.decoder_to(torch.bfloat16)
    whole = vae.decode(z, chunk_latents=None)
    streamed = vae.decode(z, chunk_latents=1)
    assert whole.dtype == torch.float32
    torch.testing.assert_close(streamed, whole, atol=2e-2, rtol=0)  # the causal cache works in bf16
    assert (whole - reference).abs().max() < 0.05
    torch.testing.assert_close(vae.encode(clip), z)  # encoding untouched


def test_extend_runs_in_bf16_and_agrees_with_fp32(task_pipe_dir):
    runs = {}
    for name in ("fp32", "bf16"):
        pieces = []
        count = extend(Pipeline.load(task_pipe_dir, precision=name), "", 17, on_frames=pieces.append, context=1,
                       steps=2)
        runs[name] = torch.cat(pieces, dim=2)
        assert count == 17 and runs[name].dtype == torch.float32
    diff = (runs["fp32"] - runs["bf16"]).abs()
    assert diff.mean() < MEAN_TOL and diff.max() < 2 * MAX_TOL


def test_generate_cli_precision_flag(pipe_dir, tmp_path, capsys):
    out = {}
    for name in ("fp32", "bf16", "auto"):
        path = tmp_path / f"{name}.npy"
        assert main(["generate", PROMPT, "--model", str(pipe_dir), "-o", str(path), "--seed", "1",
                     "--precision", name]) == 0
        out[name] = np.load(path).astype(np.int16)
    assert np.abs(out["fp32"] - out["bf16"]).mean() < 255 * MEAN_TOL
    expected = "bf16" if prec.fast_bf16("cpu") else "fp32"
    assert np.array_equal(out["auto"], out[expected])
    with pytest.raises(SystemExit) as e:
        main(["generate", PROMPT, "--model", str(pipe_dir), "-o", str(tmp_path / "x.npy"), "--precision", "fp16"])
    assert e.value.code == 2
    assert "invalid choice: 'fp16'" in capsys.readouterr().err


def test_unet_denoiser_in_bf16_agrees_with_fp32():
    """The default model is a 3D U-Net: its bf16 denoiser (weights cast as Pipeline.load does)
    stays within 2% (relative norm) of the fp32 one on random weights."""
    import copy

    from kinema.models.unet3d import PRESETS as UNET_PRESETS
    from kinema.models.unet3d import UNet3D

    torch.manual_seed(0)
    net = UNet3D(UNET_PRESETS["unet3d-tiny"].replace(in_channels=4, text_dim=32)).eval()
    with torch.no_grad():  # zero-initialized layers get values, so the output is not trivially 0
        for p in net.parameters():
            if p.ndim > 1 and not p.any():
                p.normal_(0, 0.05)
    fp32 = Denoiser(net, FlowSchedule(), "flow")
    bf16 = Denoiser(copy.deepcopy(net).to(torch.bfloat16), FlowSchedule(), "flow")
    x = torch.randn(2, 4, 3, 16, 16)
    sigma = torch.tensor([0.9, 0.3], dtype=torch.float64)
    cond = {"context": torch.randn(2, 5, 32), "context_mask": torch.ones(2, 5, dtype=torch.bool)}
    with torch.no_grad():
        a, b = fp32(x, sigma, **cond), bf16(x, sigma, **cond)
    assert b.dtype == torch.float32
    assert 0 < (a - b).norm() / a.norm() < 0.02
