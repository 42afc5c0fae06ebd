"""The task-conditioning interface (kinema.tasks.conditioning) and training with a task mix."""

from __future__ import annotations

import pytest
import torch

from kinema.config import ConfigError
from kinema.errors import KinemaError
from kinema.tasks.conditioning import (
    TASKS,
    check_task_weights,
    frame_sigmas,
    known_frames,
    make_cond,
    sample_task,
    task_mask,
)
from train_utils import TINY_DIT, tiny

torch.set_num_threads(1)
SHAPE = (5, 4, 6)  # latent (t, h, w)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_each_task_knows_what_it_says():
    t = SHAPE[0]
    assert task_mask("text", SHAPE, gen()).sum() == 0
    first = task_mask("first_frame", SHAPE, gen())
    assert first[:, 0].min() == 1 and first[:, 1:].max() == 0
    first_last = task_mask("first_last", SHAPE, gen())
    assert known_frames(first_last[None]).tolist() == [[True, False, False, False, True]]
    for seed in range(40):
        k = known_frames(task_mask("first_frames", SHAPE, gen(seed))[None])[0]
        n = int(k.sum())
        assert 1 <= n < t and k[:n].all() and not k[n:].any()  # a prefix, never the whole clip
        keys = task_mask("keyframes", SHAPE, gen(seed))
        assert keys.amax(dim=(2, 3)).sum() >= 1 and set(keys.unique().tolist()) <= {0.0, 1.0}
        box = task_mask("boxes", SHAPE, gen(seed))
        hole = box[0, 0] == 0
        assert hole.any() and not known_frames(box[None]).any()
        assert (box == box[:, :1]).all()  # the same region in every frame
        rows, cols = hole.any(dim=1).nonzero().flatten(), hole.any(dim=0).nonzero().flatten()
        assert hole[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all()  # one rectangle


def test_masks_are_reproducible_per_generator():
    for task in TASKS:
        assert torch.equal(task_mask(task, SHAPE, gen(3)), task_mask(task, SHAPE, gen(3)))


def test_task_mix_follows_the_weights():
    g = gen()
    draws = [sample_task({"text": 3.0, "boxes": 1.0, "first_frame": 0.0}, g) for _ in range(2000)]
    assert "first_frame" not in draws
    assert abs(draws.count("text") / 2000 - 0.75) < 0.04


def test_bad_task_weights_are_refused():
    with pytest.raises(KinemaError, match="unknown task"):
        check_task_weights({"txt": 1.0})
    with pytest.raises(KinemaError, match="positive sum"):
        check_task_weights({"text": 0.0})
    with pytest.raises(KinemaError, match="unknown task"):
        task_mask("paint", SHAPE, gen())
    with pytest.raises(ConfigError, match="diffusion.tasks"):
        tiny(TINY_DIT, "diffusion.tasks={text=-1.0}")


def test_cond_channels_and_frame_sigmas():
    known = torch.randn(2, 3, *SHAPE)
    mask = torch.stack([task_mask("first_frame", SHAPE, gen()), task_mask("text", SHAPE, gen())])
    cond = make_cond(known, mask)
    assert cond.shape == (2, 4, *SHAPE)
    torch.testing.assert_close(cond[0, :3, 0], known[0, :, 0])
    assert cond[0, :3, 1:].abs().max() == 0 and cond[1].abs().max() == 0  # unknown content is hidden
    assert torch.equal(cond[:, 3:], mask)
    sig = frame_sigmas(torch.tensor([0.7, 0.4]), mask, context_sigma=torch.tensor([0.05, 0.05]))
    assert sig.dtype == torch.float64 and sig.shape == (2, 5)
    assert sig[0].tolist() == pytest.approx([0.05, 0.7, 0.7, 0.7, 0.7]) and sig[1].tolist() == pytest.approx([0.4] * 5)
    per_frame = torch.full((2, 5), 0.9, dtype=torch.float64)
    assert frame_sigmas(per_frame, mask)[0].tolist() == pytest.approx([0.0, 0.9, 0.9, 0.9, 0.9])


def test_objective_task_inputs_hide_nothing_they_should_not():
    from kinema.train.objectives import build_objective

    c = tiny(TINY_DIT, "diffusion.text_encoder='none'", "model.overrides.cond_channels=4",
             "diffusion.tasks={first_frame=1.0}", "diffusion.context_noise=0.2")
    objective = build_objective(c, torch.device("cpu"))
    x0, noise = torch.randn(3, 3, 5, 8, 8), torch.randn(3, 3, 5, 8, 8)
    sigma = torch.tensor([0.9, 0.5, 0.3], dtype=torch.float64)
    frames, cond, weight = objective._task_inputs(x0, noise, sigma, [gen(s) for s in range(3)], [None] * 3)
    assert frames.shape == (3, 5) and torch.equal(frames[:, 1:], sigma[:, None].expand(3, 4))
    ctx = frames[:, 0]
    assert ((ctx >= 0) & (ctx < 0.2)).all() and (ctx == 0).any() and (ctx > 0).any()  # noised on some samples
    expected = objective.schedule.path.add_noise(x0[:, :, :1], noise[:, :, :1], ctx)
    torch.testing.assert_close(cond[:, :3, :1], expected)  # the context as the sampler will see it
    assert cond[:, :3, 1:].abs().max() == 0 and weight[:, :, 0].max() == 0 and weight[:, :, 1:].min() == 1


def test_a_sources_own_task_weights_replace_the_runs_for_its_samples():
    from kinema.train.objectives import build_objective

    c = tiny(TINY_DIT, "diffusion.text_encoder='none'", "model.overrides.cond_channels=4", "diffusion.tasks={text=1.0}")
    objective = build_objective(c, torch.device("cpu"))
    x0 = noise = torch.zeros(4, 3, 5, 8, 8)
    sigma = torch.full((4,), 0.5, dtype=torch.float64)
    tasks = [None, {"first_last": 1.0}, None, {"first_last": 1.0}]
    _, cond, _ = objective._task_inputs(x0, noise, sigma, [gen(s) for s in range(4)], tasks)
    known_frames = cond[:, 3, :, 0, 0]  # (B, t) the mask channel
    assert known_frames[[0, 2]].max() == 0  # the run's text-only mix: nothing known
    assert known_frames[[1, 3]].tolist() == [[1, 0, 0, 0, 1]] * 2  # first and last frame known


def test_training_with_tasks_end_to_end(tmp_path):
    """A tiny run with a task mix exports a pipeline whose text-to-video feeds the empty
    mask; a network without the cond channels is refused before training."""
    from kinema.pipeline import Pipeline
    from kinema.tasks.t2v import text_to_video
    from kinema.train.loop import train

    base = ("model.overrides.depth=1", "train.checkpoint_every=0", "train.log_every=1", "diffusion.text_encoder='none'")
    with pytest.raises(KinemaError, match="cond_channels is 0 but must be 4"):
        train(tiny(TINY_DIT, *base, "train.steps=1", "diffusion.tasks={first_frame=1.0}"), tmp_path / "bad", progress=False)
    c = tiny(TINY_DIT, *base, "train.steps=2", "model.overrides.cond_channels=4",
             "diffusion.tasks={first_frame=1.0, text=1.0}", "diffusion.context_noise=0.1")
    pipe = Pipeline.load(train(c, tmp_path / "run", progress=False))
    assert pipe.net.config.cond_channels == 4
    video = text_to_video(pipe, [""], steps=2, frames=c.data.frames, size=(c.data.height, c.data.width))
    assert video.shape[:3] == (1, 3, c.data.frames) and torch.isfinite(video).all()
