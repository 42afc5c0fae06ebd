"""The training loop (kinema.train.loop) on tiny configs: schedule, accumulation, precision,
checkpointing flag, hooks, the final export, and the resume rules."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from kinema.checkpoint import load_component, load_tensors
from kinema.errors import KinemaError
from kinema.models.dit import DiTConfig, VideoDiT
from kinema.train.config import OptimSpec
from kinema.train.export import PipelineConfig
from kinema.train.loop import build_network, lr_at, train
from train_utils import TINY_DIT, TINY_VAE, tiny

torch.set_num_threads(1)

# The tiny DiT run, smaller still and without the text encoder where text is not the point.
FAST = ("model.overrides.depth=1", "train.checkpoint_every=0", "train.log_every=1")


def test_lr_warms_up_linearly_then_follows_a_cosine_to_the_floor():
    o = OptimSpec(lr=1.0, warmup_steps=4, min_lr_ratio=0.1)
    lrs = [lr_at(k, o, 14) for k in range(14)]
    assert lrs[:4] == [0.25, 0.5, 0.75, 1.0]
    assert lrs[4] == 1.0 and lrs[-1] == pytest.approx(0.1)
    assert lrs[9] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 5 / 9)))
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:]))
    assert lr_at(0, OptimSpec(lr=2.0), 1) == 2.0


def _weights(run) -> dict[str, torch.Tensor]:
    return load_tensors(run / "final" / "model.safetensors")


def test_gradient_accumulation_matches_the_whole_batch(tmp_path):
    """batch 4 in 2 micro-batches of 2 == batch 4 at once: per-sample noise, mean of means."""
    runs = {}
    for accum in (1, 2):
        c = tiny(TINY_DIT, *FAST, "train.steps=2", f"train.grad_accum={accum}", "diffusion.text_encoder='none'",
                 "optim.weight_decay=0.0")
        runs[accum] = _weights(train(c, tmp_path / f"a{accum}", progress=False).parent)
    for name, w in runs[1].items():
        torch.testing.assert_close(runs[2][name], w, rtol=1e-5, atol=1e-6)
    assert any(not torch.equal(w, torch.zeros_like(w)) for w in runs[1].values())


def test_tiny_dit_run_exports_a_pipeline_dir_with_text_and_hooks(tmp_path):
    c = tiny(TINY_DIT, *FAST, "train.steps=2", "train.sample_every=2", "train.validate_every=2", "train.checkpoint_every=1",
             "train.keep_checkpoints=1")
    final = train(c, tmp_path / "run", progress=False)
    run = final.parent
    # Final: component dir of the denoiser + model.json.
    pipeline = PipelineConfig.load(final / "model.json")
    assert pipeline.network == "dit" and pipeline.vae is None and pipeline.text_encoder == "minilm"
    assert pipeline.schedule["kind"] == "flow_schedule" and pipeline.prediction == "flow"
    assert (pipeline.frames, pipeline.height, pipeline.width) == (5, 16, 16)
    net = load_component(final, DiTConfig, VideoDiT, ema=True)
    assert net.config == c.model.resolve()
    ckpt = run / "checkpoints" / "step-00000002"
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-00000002"]  # keep_checkpoints = 1
    for file in ("model.safetensors", "ema.safetensors"):
        saved, final_t = load_tensors(ckpt / file), load_tensors(final / file)
        assert all(torch.equal(saved[k], final_t[k]) for k in saved)
    # Hooks: a GIF grid of the 4 sample prompts (2 x 2 tiles of 16 x 16), and pass rates.
    from kinema.media import read_frames

    gif = read_frames(run / "samples" / "step-00000002.gif")
    assert gif.shape == (5, 32, 32, 3)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in rows if "val_train_pass" in r]
    assert len(val) == 1 and val[0]["step"] == 2 and 0 <= val[0]["val_heldout_pass"] <= 1
    logged = [r for r in rows if "loss" in r]
    assert [r["step"] for r in logged] == [1, 2]
    assert all(set(r) >= {"loss", "lr", "grad_norm", "steps_per_s", "time"} and math.isfinite(r["loss"]) for r in logged)
    assert (run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    """A short tiny-VAE run (shared by the tests below) on one smooth synthetic clip, rather
    than the config's dev clips: decoding 720p video would dominate the test's time, and a
    tiny VAE fits one clip in a few steps, which makes learning measurable."""
    folder = tmp_path_factory.mktemp("vae")
    yy, xx = np.mgrid[0:16, 0:16]
    clip = np.stack([np.stack([(xx * 12 + 8 * t) % 256, yy * 12, np.full_like(xx, 100 + 10 * t)], -1) for t in range(8)])
    np.save(folder / "clip.npy", clip.astype(np.uint8))
    (folder / "clips.jsonl").write_text(json.dumps({"path": "clip.npy", "caption": ""}) + "\n")
    c = tiny(TINY_VAE, "train.steps=16", "train.checkpoint_every=0", "train.log_every=1", "optim.lr=3e-3",
             f"data.sources=[{{type='clips', index='{folder / 'clips.jsonl'}'}}]")
    train(c, folder / "run", progress=False)
    return c, folder / "run"


def test_vae_run_learns_and_exports_latent_statistics(vae_run):
    from kinema.models.vae3d import VAE3D
    from kinema.train.data import TrainBatches

    c, run = vae_run
    losses = [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert np.mean(losses[-4:]) < 0.6 * np.mean(losses[:2]), losses
    vae = VAE3D.load(run / "final", ema=True)
    assert vae.config.latent_mean is not None and len(vae.config.latent_std) == 4
    # The EMA weights reconstruct the clip better than the initialization (same seed as the run).
    torch.manual_seed(c.train.seed)
    init = build_network("vae3d", c.model.resolve()).eval()
    x = TrainBatches(c.data.replace(image_prob=0.0), seed=99, batch_size=2, grad_accum=1)[0]["x"]
    errors = [float((v.decode(v.encode(x)) - x).abs().mean()) for v in (init, vae)]
    assert errors[1] < 0.8 * errors[0], errors
    # The statistics make the training clips' latents unit-scale (DESIGN rule 9).
    batches = TrainBatches(c.data, seed=c.train.seed, batch_size=2, grad_accum=1)
    z = torch.cat([vae.encode(batches[j]["x"]).flatten(2) for j in range(c.vae.stats_batches)], dim=2)  # (B, C, N)
    std = z.transpose(0, 1).flatten(1).std(dim=1)
    mean = z.transpose(0, 1).flatten(1).mean(dim=1)
    assert torch.allclose(mean, torch.zeros(4), atol=0.05) and torch.allclose(std, torch.ones(4), atol=0.05)


def test_latent_dit_run_with_a_cache_copies_its_vae_into_the_pipeline_dir(vae_run, tmp_path):
    from kinema.models.vae3d import VAE3D

    _, vae_dir = vae_run
    c = tiny(TINY_DIT, *FAST, "train.steps=2", f"diffusion.vae='{vae_dir / 'final'}'", "model.overrides.in_channels=4",
             "diffusion.text_encoder='none'", f"data.cache='{tmp_path / 'cache'}'", "data.sources=[{type='shapes', items=8}]")
    final = train(c, tmp_path / "run", progress=False)
    assert len(json.loads((tmp_path / "cache" / "index.json").read_text())["items"]) == 16  # 8 clips, 8 stills
    assert PipelineConfig.load(final / "model.json").vae == "vae"
    copied = VAE3D.load(final / "vae")
    original = VAE3D.load(vae_dir / "final", ema=True)  # the weights the run trained on
    assert copied.config == original.config
    assert all(torch.equal(a, b) for a, b in zip(copied.state_dict().values(), original.state_dict().values()))


def test_release_keeps_only_the_ema_weights_and_generates_the_same(vae_run, tmp_path):
    from kinema.pipeline import Pipeline
    from kinema.tasks.t2v import text_to_video
    from kinema.train.export import main as export_main

    _, vae_dir = vae_run
    c = tiny(TINY_DIT, *FAST, "train.steps=3", f"diffusion.vae='{vae_dir / 'final'}'", "model.overrides.in_channels=4",
             "diffusion.text_encoder='none'", "train.ema_decay=0.5")
    final = train(c, tmp_path / "run", progress=False)
    export_main([str(final), str(tmp_path / "release"), "steps=3", "sampler=heun"])
    release = tmp_path / "release"
    assert sorted(p.name for p in release.rglob("*.safetensors")) == ["model.safetensors", "model.safetensors"]
    assert not (release / "ema.safetensors").exists()
    run_pipe, rel_pipe = Pipeline.load(final, ema=True), Pipeline.load(release)
    assert (rel_pipe.config.steps, rel_pipe.config.sampler) == (3, "heun")
    raw = load_tensors(final / "model.safetensors")
    ema = load_tensors(final / "ema.safetensors")
    assert any(not torch.equal(raw[k], ema[k]) for k in raw)  # the run's EMA differs from its raw weights
    assert all(torch.equal(ema[k], v) for k, v in rel_pipe.net.state_dict().items())
    a = text_to_video(run_pipe, [""], steps=3, sampler="heun", frames=5, size=(16, 16))
    b = text_to_video(rel_pipe, [""], frames=5, size=(16, 16))
    assert torch.equal(a, b)

    # Half-width storage: float16 on disk, float32 modules after loading, the same clip
    # within float16's rounding; the VAE is copied untouched.
    export_main([str(final), str(tmp_path / "half"), "steps=3", "sampler=heun", "dtype=float16"])
    stored = load_tensors(tmp_path / "half" / "model.safetensors")
    assert {v.dtype for v in stored.values() if v.is_floating_point()} == {torch.float16}
    assert (tmp_path / "half" / "model.safetensors").stat().st_size < 0.6 * (release / "model.safetensors").stat().st_size
    half_pipe = Pipeline.load(tmp_path / "half")
    assert all(p.dtype == torch.float32 for p in half_pipe.net.parameters())
    assert all(torch.equal(x, y) for x, y in zip(half_pipe.vae.state_dict().values(), rel_pipe.vae.state_dict().values()))
    c = text_to_video(half_pipe, [""], frames=5, size=(16, 16))
    assert not torch.equal(b, c) and (b - c).abs().max() < 0.05
    with pytest.raises(KinemaError, match="release dtype must be one of float32, float16, not 'int8'"):
        export_main([str(final), str(tmp_path / "bad"), "dtype=int8"])
    assert not (tmp_path / "bad").exists()

    # shift=S moves the sampling grid's levels only: the same network, the grid of FlowSchedule(S).
    from kinema.diffusion.schedules import FlowSchedule

    export_main([str(final), str(tmp_path / "shifted"), "steps=3", "sampler=heun", "shift=6"])
    shifted = Pipeline.load(tmp_path / "shifted")
    assert shifted.config.schedule["shift"] == 6.0 and rel_pipe.config.schedule["shift"] != 6.0
    assert torch.equal(shifted.schedule.sigmas(3), FlowSchedule(shift=6.0).sigmas(3))
    assert all(torch.equal(x, y) for x, y in zip(shifted.net.state_dict().values(), rel_pipe.net.state_dict().values()))
    with pytest.raises(KinemaError, match="shift must be positive"):
        export_main([str(final), str(tmp_path / "bad"), "shift=0"])
    assert not (tmp_path / "bad").exists()


def test_wrong_channels_or_text_width_are_clear_errors(tmp_path):
    with pytest.raises(KinemaError, match="in_channels is 4 but the data has 3 pixel channels"):
        train(tiny(TINY_DIT, "model.overrides.in_channels=4"), tmp_path / "a", progress=False)
    with pytest.raises(KinemaError, match="text_dim is 32 but the minilm text encoder gives 384"):
        train(tiny(TINY_DIT, "model.overrides.text_dim=32"), tmp_path / "b", progress=False)


def test_bf16_autocast_and_the_unet_family(tmp_path):
    c = tiny(TINY_DIT, *FAST, "train.steps=2", "train.bf16=true", "diffusion.text_encoder='none'")
    final = train(c, tmp_path / "bf16", progress=False)
    weights = _weights(final.parent)
    assert all(w.dtype == torch.float32 and torch.isfinite(w).all() for w in weights.values())
    u = tiny(TINY_DIT, *FAST, "train.steps=2", "model.family='unet3d'", "model.preset='unet3d-tiny'",
             "model.overrides={in_channels=3, text_dim=384}", "data.image_prob=0.5", "diffusion.prediction='v'",
             "diffusion.schedule='vp'", "diffusion.density='uniform'", "diffusion.per_frame_noise=true")
    final = train(u, tmp_path / "unet", progress=False)
    assert json.loads((final / "config.json").read_text())["kind"] == "unet3d"


def test_gradient_checkpointing_gives_the_same_gradients():
    from kinema.train.data import TrainBatches
    from kinema.train.objectives import build_objective

    c = tiny(TINY_DIT, "diffusion.text_encoder='none'")
    objective = build_objective(c, torch.device("cpu"))
    inputs = objective.prepare(TrainBatches(c.data, seed=0, batch_size=2, grad_accum=1)[1])
    grads = []
    for flag in (False, True):
        torch.manual_seed(0)
        net = build_network("dit", c.model.resolve(), flag).train()
        assert net.config.gradient_checkpointing is flag
        loss, _ = objective.loss(net, {**inputs, "gens": [torch.Generator().manual_seed(i) for i in range(2)]})
        loss.backward()
        grads.append({n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for n in grads[0]:
        torch.testing.assert_close(grads[1][n], grads[0][n], rtol=1e-5, atol=1e-7)
    with pytest.raises(KinemaError, match="vae3d networks do not support it"):
        from kinema.models.vae3d import PRESETS

        build_network("vae3d", PRESETS["vae-tiny"], True)


def test_resume_rules(tmp_path):
    c = tiny(TINY_DIT, *FAST, "train.steps=1", "diffusion.text_encoder='none'")
    with pytest.raises(KinemaError, match="has no checkpoint to resume from"):
        train(c, tmp_path / "run", resume=True, progress=False)
    train(c, tmp_path / "run", progress=False)
    with pytest.raises(KinemaError, match="already holds checkpoints; pass --resume"):
        train(c, tmp_path / "run", progress=False)
    # Resuming a finished run with more steps continues from its last checkpoint.
    more = c.replace(train=c.train.replace(steps=2))
    train(more, tmp_path / "run", resume=True, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    # A different model is refused with one line.
    other = tiny(TINY_DIT, "train.steps=3", "diffusion.text_encoder='none'", "model.overrides.depth=2")
    with pytest.raises(KinemaError, match=r"written for a different model \(depth: 1 in checkpoint vs 2 now\)"):
        train(other, tmp_path / "run", resume=True, progress=False)


def test_resuming_from_a_checkpoint_repeats_the_steps_exactly_with_dropout_and_hooks(tmp_path):
    """Global-RNG users (dropout) and the sample hook's extra network must not make a resumed
    run drift from an uninterrupted one."""
    c = tiny(TINY_DIT, "train.steps=4", "train.checkpoint_every=2", "train.sample_every=1", "model.family='unet3d'",
             "model.preset='unet3d-tiny'", "model.overrides={in_channels=3, dropout=0.2}", "diffusion.text_encoder='none'",
             "sample.steps=1", "sample.prompts=['a']")
    straight = train(c, tmp_path / "a", progress=False)
    redo = tmp_path / "b"
    train(c, redo, progress=False)
    import shutil

    shutil.rmtree(redo / "checkpoints" / "step-00000004")
    shutil.rmtree(redo / "final")
    train(c, redo, resume=True, progress=False)
    for name in ("model.safetensors", "ema.safetensors"):
        assert (redo / "final" / name).read_bytes() == (straight / name).read_bytes()


def test_model_init_starts_a_new_run_from_earlier_weights(tmp_path):
    """model.init: a run's final/ (its EMA weights) or a float16 release starts a fine-tune;
    another network is refused with the field that differs."""
    from kinema.checkpoint import CheckpointError
    from kinema.train.export import release_pipeline

    base = (*FAST, "diffusion.text_encoder='none'", "optim.weight_decay=0.0")
    first = train(tiny(TINY_DIT, *base, "train.steps=2"), tmp_path / "a", progress=False)
    ema = load_tensors(first / "ema.safetensors")
    # lr 1e-12: one step barely moves the weights, so they show where the run started
    still = (*base, "train.steps=1", "optim.lr=1e-12")
    fine = train(tiny(TINY_DIT, *still, f"model.init='{first}'"), tmp_path / "b", progress=False)
    started = load_tensors(fine / "model.safetensors")
    for name, w in ema.items():
        torch.testing.assert_close(started[name], w, rtol=0, atol=1e-6)
    scratch = load_tensors(train(tiny(TINY_DIT, *still), tmp_path / "c", progress=False) / "model.safetensors")
    assert any((scratch[n] - w).abs().max() > 1e-3 for n, w in ema.items())
    release = release_pipeline(first, tmp_path / "release", dtype="float16")
    half = train(tiny(TINY_DIT, *still, f"model.init='{release}'"), tmp_path / "d", progress=False)
    for name, w in load_tensors(half / "model.safetensors").items():
        torch.testing.assert_close(w, ema[name], rtol=1e-3, atol=1e-3)
    with pytest.raises(CheckpointError, match=r"holds a different network \(depth: 1 there vs 2 in this run\)"):
        train(tiny(TINY_DIT, *still, "model.overrides.depth=2", f"model.init='{first}'"), tmp_path / "e", progress=False)


def test_guidance_distillation_learns_the_teachers_guided_prediction(tmp_path):
    """diffusion.teacher: a student that starts as the teacher has zero loss at guidance 1 or
    where no noise level lies in the interval; otherwise its target moves from the conditional
    prediction by (w - 1) * (cond - uncond), so the loss grows as (w - 1)^2. Known frames
    (sigma 0, the tasks) keep a finite, masked target."""
    from kinema.train.objectives import DiffusionObjective
    from kinema.train.data import TrainBatches

    tasks = ("model.overrides.cond_channels=4", "diffusion.tasks={first_frame=1.0, text=1.0}", "train.batch_size=4",
             "train.grad_accum=1")
    first = train(tiny(TINY_DIT, *FAST, *tasks, "train.steps=2"), tmp_path / "teacher", progress=False)

    def loss(*assignments):
        c = tiny(TINY_DIT, *FAST, *tasks, f"diffusion.teacher='{first}'", *assignments).resolved()
        objective = DiffusionObjective(c.diffusion, c.data, torch.device("cpu"))
        config = c.model.resolve()
        objective.attach_teacher(c.model.family, config)
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():  # 2 steps leave the zero-initialized text path silent: give it a voice
            for p in objective.teacher.net.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=g))
        student = build_network(c.model.family, config)
        student.load_state_dict(objective.teacher.net.state_dict())
        batch = TrainBatches(c.data, seed=3, batch_size=4, grad_accum=1)[1]
        assert batch["x"].shape[2] == 5  # a clip batch (batch 0 is of images, every frame known in first_frame)
        return float(objective.loss(student, objective.prepare(batch))[0].detach())

    assert loss("diffusion.teacher_guidance=1.0") < 1e-12
    assert loss("diffusion.teacher_guidance=3.0", "diffusion.teacher_interval=[2.0, 3.0]") < 1e-12
    two, three = loss("diffusion.teacher_guidance=2.0"), loss("diffusion.teacher_guidance=3.0")
    assert two > 1e-8 and math.isfinite(three)
    assert three / two == pytest.approx(4.0, rel=1e-3)
    # the teacher must predict the same quantity on the same schedule
    with pytest.raises(KinemaError, match="diffusion.teacher .* predicts flow"):
        loss("diffusion.shift=3.0")
    with pytest.raises(KinemaError, match=r"diffusion.teacher .* holds a different network \(depth: 1 there vs 2"):
        loss("model.overrides.depth=2")
    from kinema.train.config import ConfigError

    with pytest.raises(ConfigError, match="teacher_interval"):
        tiny(TINY_DIT, "diffusion.teacher_interval=[0.9, 0.8]")
    with pytest.raises(ConfigError, match="needs a text encoder"):
        tiny(TINY_DIT, f"diffusion.teacher='{first}'", "diffusion.text_encoder='none'")
