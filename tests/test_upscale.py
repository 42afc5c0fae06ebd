"""The cascade's upscaling stages (kinema.tasks.upscale, kinema.models.sr3d): shapes, known
frames kept exactly, tiled/chunked inference equal to whole-clip inference, the CLI's
one-line errors, and a short `kinema train` run of a stage that lowers its loss."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from kinema.cli import main
from kinema.config import ConfigError
from kinema.diffusion.schedules import FlowSchedule
from kinema.errors import KinemaError
from kinema.models.sr3d import SR3D, SR3DConfig, sr3d_preset
from kinema.tasks import upscale as U
from kinema.train.config import load_run_config
from train_utils import CONFIGS, cli

torch.set_num_threads(1)


def random_stage(mode: str, preset: str = "sr3d-tiny", seed: int = 0, **changes) -> U.Upscaler:
    """A randomly initialized stage whose zero-initialized layers are made non-zero, so its
    output depends on its input everywhere (an untrained network would predict 0)."""
    torch.manual_seed(seed)
    net = SR3D(sr3d_preset(preset, **changes))
    with torch.no_grad():
        for p in net.parameters():
            if not p.abs().any():
                p.normal_(0, 0.2)
    config = U.UpscalerConfig(mode=mode, schedule=FlowSchedule().to_dict(), prediction="x0", steps=1)
    return U.Upscaler(config, net.eval(), FlowSchedule())


def clip_of(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# ----------------------------------------------------------------------------- the network


def test_sr3d_shapes_and_zero_start():
    net = SR3D(sr3d_preset("sr3d-tiny"))
    x, cond = torch.randn(2, 3, 4, 8, 12), torch.randn(2, 5, 4, 8, 12)
    for t in (torch.rand(2) * 1000, torch.rand(2, 4) * 1000):
        out = net(x, t, cond=cond)
        assert out.shape == (2, 3, 4, 8, 12)
        assert not out.any()  # zero-initialized output layer: a fresh stage predicts the naive upsampling
    with pytest.raises(KinemaError, match="cond must have shape"):
        net(x, torch.rand(2), cond=cond[:, :4])
    with pytest.raises(KinemaError, match="multiples of 2"):
        net(torch.randn(1, 3, 2, 7, 8), torch.rand(1), cond=torch.randn(1, 5, 2, 7, 8))
    with pytest.raises(ConfigError, match="base_channels"):
        SR3DConfig(base_channels=0)


@pytest.mark.parametrize("preset,changes", [("sr3d-tiny", {}), ("sr3d-tiny", {"channel_mults": (1, 2, 2)})])
def test_receptive_field_bounds_what_a_pixel_sees(preset, changes):
    """Changing the input just outside the stated receptive field changes nothing at the
    centre; changing it at the centre does."""
    stage = random_stage("spatial", preset, **changes)
    net, (rt, rs) = stage.net, stage.net.config.receptive_field
    frames, size = 2 * rt + 5, 2 * rs + 12
    x, cond, t = torch.randn(1, 3, frames, size, size), torch.randn(1, 5, frames, size, size), torch.full((1,), 500.0)
    c, ct = size // 2, frames // 2
    ref = net(x, t, cond=cond)[..., ct, c, c]
    far = x.clone()
    far[..., :, :, : c - rs] += 1  # every pixel more than rs to the left
    far[..., : ct - rt, :, :] += 1  # every frame more than rt before
    far[..., ct + rt + 1 :, :, :] += 1
    assert torch.allclose(net(far, t, cond=cond)[..., ct, c, c], ref, atol=1e-6)
    near = x.clone()
    near[..., ct, c, c] += 1
    assert not torch.allclose(net(near, t, cond=cond)[..., ct, c, c], ref, atol=1e-4)


# ----------------------------------------------------------------------------- naive resampling


def test_naive_resampling():
    clip = clip_of(2, 3, 4, 6, 8)
    assert U.downscale_space(clip).shape == (2, 3, 4, 3, 4)
    assert torch.allclose(U.downscale_space(clip)[..., 0, 0], clip[..., :2, :2].mean(dim=(-1, -2)))
    assert U.upsample_space(clip).shape == (2, 3, 4, 12, 16)
    blended = U.upsample_time(clip)
    assert blended.shape == (2, 3, 7, 6, 8)
    assert torch.equal(blended[:, :, ::2], clip)
    assert torch.allclose(blended[:, :, 3], (clip[:, :, 1] + clip[:, :, 2]) / 2)
    base, cond, mask = U.stage_inputs("temporal", clip, torch.tensor([0.0, 0.1]), torch.randn_like(clip))
    assert cond.shape == (2, 5, 7, 6, 8) and mask.shape == (2, 1, 7, 6, 8)
    assert torch.equal(mask[0, 0, :, 0, 0], torch.tensor([1.0, 0, 1, 0, 1, 0, 1]))
    assert torch.equal(base[0], blended[0])  # level 0: the clean input
    assert torch.allclose(cond[1, 4], torch.full((7, 6, 8), 0.1))


def shapes_tensor(caption: str, frames: int = 9, size: int = 64, seed: int = 1) -> torch.Tensor:
    """A rendered Shapes clip (1, 3, T, H, W) in [-1, 1]."""
    from kinema.world.render import render
    from kinema.world.scene import parse_caption

    video = render(parse_caption(caption), frames=frames, size=(size, size), rng=seed).video  # (T, H, W, 3) uint8
    return torch.from_numpy(video).permute(3, 0, 1, 2)[None].float() / 127.5 - 1


def test_flow_base_recovers_the_dropped_frames_of_moving_objects():
    """Every other frame of a rendered clip dropped: the flow midpoint is far closer to the
    true frames than blending (which shows two half-bright copies), and exact where nothing
    moves."""
    from kinema.tasks.interpolation import flow_midpoint

    clip = shapes_tensor("a large red circle moving right on a black background", frames=9)
    low = clip[:, :, ::2]
    flowed, blended = U.upsample_time(low, "flow"), U.upsample_time(low)
    assert flowed.shape == blended.shape == clip.shape
    assert torch.equal(flowed[:, :, ::2], low)
    err_flow = (flowed - clip)[:, :, 1::2].abs().mean()
    err_blend = (blended - clip)[:, :, 1::2].abs().mean()
    assert err_flow < 0.3 * err_blend, (float(err_flow), float(err_blend))
    still = np.full((8, 6, 3), 77.25, np.float32)  # smaller than DIS takes: padded for the flow
    assert np.allclose(flow_midpoint(still, still), still)
    base, cond, mask = U.stage_inputs("temporal", low, torch.zeros(1), torch.zeros_like(low), "flow")
    assert torch.equal(base, flowed) and torch.equal(cond[:, :3], flowed)
    with pytest.raises(KinemaError, match="temporal base"):
        U.stage_inputs("temporal", low, torch.zeros(1), torch.zeros_like(low), "optical")
    with pytest.raises(ConfigError, match="temporal_base"):
        U.UpscalerConfig.from_dict({"mode": "temporal", "schedule": FlowSchedule().to_dict(), "temporal_base": "optical"})


def test_training_inputs_are_crops_of_whole_frame_inputs():
    """The objective builds a stage's inputs on the whole frame, then crops: the crop's
    base is the whole-frame base's crop, not a base computed from the crop alone."""
    from kinema.train.objectives import build_objective

    config = load_run_config(CONFIGS / "upscale-temporal.toml", [
        "data.frames=5", "upscale.crop=16", "upscale.downscale_prob=0.0", "upscale.noise_aug_prob=0.0",
        'upscale.temporal_base="flow"'])
    objective = build_objective(config, torch.device("cpu"))
    clip = shapes_tensor("a large red square moving left on a black background", frames=5)
    prepared = objective.prepare({"x": clip, "seeds": [7]})
    base = U.stage_inputs("temporal", clip[:, :, ::2], torch.zeros(1), torch.zeros_like(clip[:, :, ::2]), "flow")[0]
    residual = prepared["x0"] / config.upscale.residual_scale  # (1, 3, 5, 16, 16) = crop of (clip - base)
    found = [(y, x) for y in range(64 - 15) for x in range(64 - 15)
             if torch.allclose(prepared["cond"][:, :3], base[..., y : y + 16, x : x + 16])]
    assert len(found) >= 1
    y, x = found[0]
    assert torch.allclose(residual, (clip - base)[..., y : y + 16, x : x + 16], atol=1e-6)
    assert torch.equal(prepared["weight"][0, 0, :, 0, 0], torch.tensor([0.0, 1, 0, 1, 0]))


# ----------------------------------------------------------------------------- stages


def test_spatial_stage_shapes_including_sizes_that_need_padding():
    stage = random_stage("spatial", channel_mults=(1, 2, 2))  # takes multiples of 4: 2 x 5 = 10 is padded
    out = U.upscale_stage(stage, clip_of(2, 3, 3, 5, 7))
    assert out.shape == (2, 3, 3, 10, 14)
    assert out.min() >= -1 and out.max() <= 1
    one = U.upscale_stage(stage, clip_of(1, 3, 1, 8, 8))  # an image is a one-frame clip
    assert one.shape == (1, 3, 1, 16, 16)


def test_temporal_stage_keeps_the_given_frames_exactly():
    stage = random_stage("temporal")
    clip = clip_of(2, 3, 5, 12, 10)
    for steps, sampler in ((1, "euler"), (3, "ddpm")):
        out = U.upscale_stage(stage, clip, steps=steps, sampler=sampler, noise_aug=0.1)
        assert out.shape == (2, 3, 9, 12, 10)
        assert torch.equal(out[:, :, ::2], clip)
        assert not torch.allclose(out[:, :, 1::2], U.upsample_time(clip)[:, :, 1::2], atol=1e-3)  # it did something
    with pytest.raises(KinemaError, match="at least 2 frames"):
        U.upscale_stage(stage, clip[:, :, :1])


@pytest.mark.parametrize("mode", ["spatial", "temporal"])
def test_tiled_and_chunked_inference_equals_whole_clip_inference(mode):
    stage = random_stage(mode)
    clip = clip_of(1, 3, 7, 18, 22)
    for steps, sampler in ((1, "euler"), (3, "ddpm")):
        whole = U.upscale_stage(stage, clip, steps=steps, sampler=sampler, tile=4096, chunk=4096, seed=5)
        tiled = U.upscale_stage(stage, clip, steps=steps, sampler=sampler, tile=8, chunk=2, seed=5)
        assert torch.allclose(tiled, whole, atol=1e-5), (tiled - whole).abs().max()
    # The margins matter: windows narrower than the receptive field give another result.
    up = stage.net.config.receptive_field
    base, cond, _ = U.stage_inputs(mode, clip, torch.zeros(1), torch.zeros_like(clip))
    x, sigma = torch.randn_like(base), torch.full((1,), 0.7, dtype=torch.float64)
    full = stage.denoiser(x, sigma, cond=cond)
    exact = U.Tiled(stage.denoiser, cond, chunk=2, tile=8, reach=up, multiple=2)(x, sigma)
    short = U.Tiled(stage.denoiser, cond, chunk=2, tile=8, reach=(0, 2), multiple=2)(x, sigma)
    assert torch.allclose(exact, full, atol=1e-5)
    assert not torch.allclose(short, full, atol=1e-3)


def test_cascade_chains_2x_stages_for_4x():
    stages = {"spatial": random_stage("spatial"), "temporal": random_stage("temporal", seed=1)}
    clip = clip_of(1, 3, 3, 6, 4)
    out = U.upscale(clip, stages, scale=4, fps_multiplier=4)
    assert out.shape == (1, 3, 4 * (3 - 1) + 1, 24, 16)
    assert U.stages_for(2, 4) == ["temporal", "temporal", "spatial"]
    for bad in ((3, 1), (1, 8), (0, 1)):
        with pytest.raises(KinemaError, match="unsupported"):
            U.stages_for(*bad)
    with pytest.raises(KinemaError, match="needs a temporal upscaler"):
        U.upscale(clip, {"spatial": stages["spatial"]}, fps_multiplier=2)


def test_save_and_load_round_trip(tmp_path):
    blend = random_stage("temporal")
    stage = U.Upscaler(blend.config.replace(temporal_base="flow"), blend.net, blend.schedule)
    stage.save(tmp_path / "t")
    loaded = U.Upscaler.load(tmp_path / "t")
    assert loaded.config == stage.config and loaded.config.temporal_base == "flow"
    clip = clip_of(1, 3, 3, 8, 8)
    assert torch.equal(U.upscale_stage(loaded, clip), U.upscale_stage(stage, clip))
    assert not torch.allclose(U.upscale_stage(loaded, clip), U.upscale_stage(blend, clip))  # the base is used
    with pytest.raises(KinemaError, match="upscaler not found"):
        U.Upscaler.load(tmp_path / "nothing")
    with pytest.raises(KinemaError, match="a spatial one is needed"):
        U.load_upscalers(2, 1, spatial=tmp_path / "t")


# ----------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def stage_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("stages")
    random_stage("spatial").save(root / "spatial")
    random_stage("temporal", seed=1).save(root / "temporal")
    clip = root / "clip.npy"
    np.save(clip, (np.random.default_rng(0).random((5, 12, 10, 3)) * 255).astype(np.uint8))
    return root


def test_cli_upscale_writes_the_upscaled_clip(stage_dirs, tmp_path):
    models = ["--spatial-model", str(stage_dirs / "spatial"), "--temporal-model", str(stage_dirs / "temporal")]
    out = tmp_path / "out.npy"
    assert main(["upscale", str(stage_dirs / "clip.npy"), "--scale", "2", "--fps-multiplier", "2", "-o", str(out), *models]) == 0
    got = np.load(out)
    assert got.shape == (9, 24, 20, 3)
    out4 = tmp_path / "out4.npy"
    assert main(["upscale", str(stage_dirs / "clip.npy"), "--fps-multiplier", "4", "-o", str(out4), *models,
                 "--tile", "8", "--chunk", "3"]) == 0
    got4 = np.load(out4)
    assert got4.shape == (17, 12, 10, 3)
    assert np.array_equal(got4[::4], np.load(stage_dirs / "clip.npy"))  # given frames, untouched


@pytest.mark.parametrize("args,message", [
    (["--scale", "3"], "unsupported scale 3; expected one of 1, 2, 4"),
    (["--fps-multiplier", "8"], "unsupported fps multiplier 8"),
    ([], "nothing to do"),
    (["--scale", "2", "--spatial-model", "/nonexistent/up"], "upscaler not found: /nonexistent/up"),
    (["--fps-multiplier", "2", "--temporal-model", "SPATIAL"], "is a spatial upscaler, but a temporal one is needed"),
    (["--fps-multiplier", "2", "--temporal-model", "TEMPORAL", "--frames", "1"], "needs at least 2"),
])
def test_cli_upscale_errors_are_one_line_exit_2(stage_dirs, tmp_path, capsys, args, message):
    args = [a.replace("SPATIAL", str(stage_dirs / "spatial")).replace("TEMPORAL", str(stage_dirs / "temporal")) for a in args]
    assert main(["upscale", str(stage_dirs / "clip.npy"), "-o", str(tmp_path / "o.npy"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o.npy").exists()


def test_cli_upscale_bad_input_in_a_fresh_process(stage_dirs, tmp_path):
    """The installed command itself: one line on stderr, exit code 2."""
    proc = subprocess.run([sys.executable, "-m", "kinema", "upscale", str(stage_dirs / "clip.npy"), "-o",
                           str(tmp_path / "o.npy"), "--scale", "3"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and proc.stderr.strip() == "kinema: error: unsupported scale 3; expected one of 1, 2, 4"


def test_cli_generate_runs_the_cascade(stage_dirs, tmp_path, capsys):
    from pipeline_utils import make_pipeline_dir

    model = make_pipeline_dir(tmp_path / "m", text_encoder="none", frames=5)
    out = tmp_path / "g.npy"
    assert main(["generate", "a small red circle moving up on a black background", "--model", str(model), "-o", str(out),
                 "--steps", "2", "--upscale", "2", "--fps-multiplier", "2", "--spatial-model", str(stage_dirs / "spatial"),
                 "--temporal-model", str(stage_dirs / "temporal")]) == 0
    assert np.load(out).shape == (9, 32, 32, 3)
    capsys.readouterr()
    for args, message in ((["--upscale", "3"], "unsupported scale 3"),
                          (["--upscale", "2", "--spatial-model", str(tmp_path / "none")], "upscaler not found")):
        assert main(["generate", "a red circle", "--model", str(model), "-o", str(tmp_path / "x.npy"), *args]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err


# ----------------------------------------------------------------------------- training


def test_upscale_run_configs_are_checked():
    for name in ("upscale-spatial", "upscale-temporal"):
        config = load_run_config(CONFIGS / f"{name}.toml")
        assert config.objective == "upscale" and config.model.resolve().cond_channels == U.COND_CHANNELS
    with pytest.raises(ConfigError, match="odd data.frames"):
        load_run_config(CONFIGS / "upscale-temporal.toml", ["data.frames=8"])
    with pytest.raises(ConfigError, match="an upscaling stage is an sr3d model"):
        load_run_config(CONFIGS / "upscale-spatial.toml", ['model.family="unet3d"', "model.preset=\"unet3d-tiny\""])
    with pytest.raises(ConfigError, match="crop"):
        load_run_config(CONFIGS / "upscale-spatial.toml", ["upscale.crop=30"])


def test_clip_source_span_keeps_windows_inside(tmp_path):
    from kinema.train.config import DataSpec, SourceSpec
    from kinema.train.data import build_source

    frames = np.repeat(np.arange(40, dtype=np.uint8)[:, None, None, None] * 5, 8, axis=1).repeat(8, axis=2).repeat(3, axis=3)
    np.save(tmp_path / "c.npy", frames)
    (tmp_path / "index.jsonl").write_text(json.dumps({"path": "c.npy", "caption": ""}) + "\n")
    spec = SourceSpec(type="clips", index=str(tmp_path / "index.jsonl"), span=(0.5, 1.0))
    source = build_source(spec, DataSpec(frames=5, height=8, width=8, sources=(spec,)))
    starts = {round((float(source.get(i, 5)[0][0, 0, 0, 0]) + 1) * 127.5 / 5) for i in range(30)}
    assert min(starts) >= 20 and max(starts) <= 35 and len(starts) > 3
    with pytest.raises(ConfigError, match="span"):
        SourceSpec(type="dev", span=(0.5, 0.5))


def test_kinema_train_a_tiny_stage_lowers_the_loss(tmp_path):
    """Through the one training loop: the stage's loss falls, and final/ is a loadable upscaler."""
    run = tmp_path / "run"
    sets = ['model.preset="sr3d-tiny"', "data.height=32", "data.width=32", "data.frames=3", "upscale.crop=16",
            "upscale.downscale_prob=0.0", "train.batch_size=4", "train.log_every=1", "train.checkpoint_every=0",
            "optim.lr=5e-3", "optim.warmup_steps=0", "train.ema_decay=0.9", "upscale.density=\"uniform\"", "train.bf16=false"]
    args = ["train", str(CONFIGS / "upscale-spatial.toml"), "--out", str(run), "--steps", "100"]
    for s in sets:
        args += ["--set", s]
    args += ["--set", "data.sources=[{type=\"shapes\"}]"]
    proc = cli(*args)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 100
    stage = U.Upscaler.load(run / "final")
    # The objective on batches training never drew (another seed), with the same noise
    # levels and noise for both networks: the trained stage against a fresh one (which
    # predicts 0, the naive upsampling). Per-step logged losses are too noisy to compare.
    from kinema.train.data import TrainBatches
    from kinema.train.objectives import build_objective

    config = load_run_config(run / "config.json")
    objective = build_objective(config, torch.device("cpu"))
    batches = TrainBatches(config.data, seed=12345, batch_size=16, grad_accum=1)
    fresh = SR3D(config.model.resolve()).eval()
    with torch.no_grad():
        trained_loss = sum(float(objective.loss(stage.net, objective.prepare(batches[j]))[0]) for j in range(3))
        fresh_loss = sum(float(objective.loss(fresh, objective.prepare(batches[j]))[0]) for j in range(3))
    assert trained_loss < 0.8 * fresh_loss, (trained_loss, fresh_loss)
    assert stage.config.mode == "spatial"
    assert U.upscale_stage(stage, clip_of(1, 3, 2, 8, 8)).shape == (1, 3, 2, 16, 16)
