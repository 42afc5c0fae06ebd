"""Training data (kinema.train.data, kinema.train.cache): batches as a pure function of
(seed, step, rank), clip windows, joint image-video batches, and the latent cache."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from kinema.errors import KinemaError
from kinema.media import write_image, write_video
from kinema.train import distributed
from kinema.train.config import DataSpec, SourceSpec
from kinema.train.data import ClipSource, TrainBatches, batch_loader, build_source, plan_sample, read_index, step_frames
from train_utils import TINY_DIT, tiny

torch.set_num_threads(1)
SHAPES = DataSpec(frames=5, height=16, width=16)


def test_batches_are_a_pure_function_of_seed_and_step():
    a = TrainBatches(SHAPES, seed=3, batch_size=4, grad_accum=2)
    b = TrainBatches(SHAPES, seed=3, batch_size=4, grad_accum=2)
    for j in (0, 5, 1):
        x, y = a[j], b[j]
        assert torch.equal(x["x"], y["x"]) and x["captions"] == y["captions"] and torch.equal(x["seeds"], y["seeds"])
        assert x["x"].shape == (2, 3, 5, 16, 16) and x["step"] == j // 2
    other = TrainBatches(SHAPES, seed=4, batch_size=4, grad_accum=2)[0]
    assert not torch.equal(other["seeds"], a[0]["seeds"])
    # The loader walks micro-batches from a step on: resuming at step 2 starts at micro-batch 4,
    # and worker processes change nothing.
    for workers in (0, 2):
        got = list(batch_loader(a, 2, 4, workers=workers, pin=False))
        assert [g["step"] for g in got] == [2, 2, 3, 3]
        assert all(torch.equal(g["x"], a[4 + k]["x"]) and g["captions"] == a[4 + k]["captions"] for k, g in enumerate(got))


def test_ranks_split_the_global_batch_of_one_process():
    """2 ranks x 1 micro-batch of 2 == 1 process x 2 micro-batches of 2, sample for sample."""
    one = TrainBatches(SHAPES, seed=0, batch_size=4, grad_accum=2)
    ranks = [TrainBatches(SHAPES, seed=0, batch_size=4, grad_accum=1, rank=r, world_size=2) for r in (0, 1)]
    for step in (0, 1):
        single = [one[2 * step], one[2 * step + 1]]
        for r in (0, 1):
            assert torch.equal(ranks[r][step]["x"], single[r]["x"])
            assert ranks[r][step]["captions"] == single[r]["captions"]
            assert torch.equal(ranks[r][step]["seeds"], single[r]["seeds"])
    with pytest.raises(KinemaError, match="divisible by world size x grad_accum = 2 x 2"):
        TrainBatches(SHAPES, seed=0, batch_size=2, grad_accum=2, world_size=2)


def test_image_batches_are_whole_batches_of_single_frames():
    data = DataSpec(frames=5, height=16, width=16, image_prob=0.3)
    kinds = [step_frames(data, 0, k) for k in range(400)]
    assert set(kinds) == {1, 5} and abs(kinds.count(1) / 400 - 0.3) < 0.08
    batches = TrainBatches(data, seed=0, batch_size=2, grad_accum=1)
    image_step = kinds.index(1)
    assert batches[image_step]["x"].shape == (2, 3, 1, 16, 16)
    assert batches[kinds.index(5)]["x"].shape == (2, 3, 5, 16, 16)


def test_mixture_weights_choose_sources_in_proportion(tmp_path):
    clip = tmp_path / "c.npy"
    np.save(clip, np.zeros((6, 8, 8, 3), np.uint8))
    (tmp_path / "i.jsonl").write_text(json.dumps({"path": "c.npy", "caption": "zeros"}) + "\n")
    data = DataSpec(frames=3, height=8, width=8, sources=(
        SourceSpec(type="shapes", weight=3.0), SourceSpec(type="clips", index=str(tmp_path / "i.jsonl"), weight=1.0)))
    batches = TrainBatches(data, seed=0, batch_size=40, grad_accum=1)
    captions = [c for j in range(3) for c in batches[j]["captions"]]
    share = captions.count("zeros") / len(captions)
    assert 0.12 < share < 0.38  # 1/4 expected


def test_batches_carry_each_samples_source_task_weights():
    data = DataSpec(frames=3, height=8, width=8, sources=(
        SourceSpec(type="shapes", weight=1.0),
        SourceSpec(type="shapes", weight=1.0, exits=True, world_seed=1, tasks={"first_frames": 1.0})))
    batch = TrainBatches(data, seed=0, batch_size=32, grad_accum=1)[0]
    plans = [plan_sample(np.array([0.5, 0.5]), [2**62, 2**62], 0, 0, g) for g in range(32)]
    assert batch["tasks"] == [None if src == 0 else {"first_frames": 1.0} for src, _, _ in plans]
    assert None in batch["tasks"] and {"first_frames": 1.0} in batch["tasks"]


def _numbered_clip(n: int, value_step: int = 10) -> np.ndarray:
    """uint8 (n, 8, 8, 3) whose frame k is the uniform grey level k * value_step."""
    return np.stack([np.full((8, 8, 3), k * value_step, np.uint8) for k in range(n)])


def _frame_levels(video: torch.Tensor) -> list[int]:
    """(C, T, H, W) in [-1, 1] -> each frame's grey level in 0..255."""
    return [round(float((f.mean() + 1) * 127.5)) for f in video.unbind(1)]


def test_clip_source_reads_strided_windows_and_stills(tmp_path):
    np.save(tmp_path / "a.npy", _numbered_clip(20))
    write_image(tmp_path / "still.png", np.full((8, 8, 3), 77, np.uint8))
    (tmp_path / "index.csv").write_text("path,caption\na.npy,counting up\nstill.png,a still\n")
    entries = read_index(tmp_path / "index.csv", None)
    assert [(p.name, c) for p, c in entries] == [("a.npy", "counting up"), ("still.png", "a still")]
    spec = SourceSpec(type="clips", index=str(tmp_path / "index.csv"), stride=3)
    src = ClipSource("clips", entries, spec, DataSpec(frames=4, height=8, width=8))
    starts = set()
    for i in range(12):
        video, caption = src.get(i, 4)
        levels = _frame_levels(video)
        assert caption == "counting up" and video.shape == (3, 4, 8, 8)
        assert np.diff(levels).tolist() == [30, 30, 30]  # stride 3 of a clip counting in 10s
        assert levels[0] % 10 == 0 and levels[-1] <= 190
        starts.add(levels[0])
        assert torch.equal(src.get(i, 4)[0], video)  # an item is a pure function of its index
    assert len(starts) > 3  # windows start at random places
    # One-frame items come from the stills and from the clips' frames.
    stills = {_frame_levels(src.get(i, 1)[0])[0] for i in range(10)}
    assert 77 in stills and len(stills) > 1


def test_short_clips_shrink_the_stride_then_repeat_the_last_frame(tmp_path):
    np.save(tmp_path / "s.npy", _numbered_clip(4))
    (tmp_path / "i.jsonl").write_text('{"path": "s.npy"}\n')
    spec = SourceSpec(type="clips", index=str(tmp_path / "i.jsonl"), stride=4)
    src = build_source(spec, DataSpec(frames=3, height=8, width=8))
    assert _frame_levels(src.get(0, 3)[0]) == [0, 10, 20] or _frame_levels(src.get(0, 3)[0]) == [10, 20, 30]
    src5 = build_source(spec, DataSpec(frames=6, height=8, width=8))
    assert _frame_levels(src5.get(0, 6)[0]) == [0, 10, 20, 30, 30, 30]


def test_clip_source_decodes_video_files(tmp_path):
    write_video(tmp_path / "v.mp4", _numbered_clip(12, 20))
    (tmp_path / "i.jsonl").write_text(json.dumps({"path": str(tmp_path / "v.mp4"), "caption": "grey"}) + "\n")
    src = build_source(SourceSpec(type="clips", index=str(tmp_path / "i.jsonl"), stride=2), DataSpec(frames=3, height=8, width=8))
    levels = _frame_levels(src.get(5, 3)[0])
    assert all(abs(d - 40) <= 3 for d in np.diff(levels))  # stride 2 of a clip counting in 20s (lossy codec)


def test_bad_index_files_are_clear_errors(tmp_path):
    (tmp_path / "i.jsonl").write_text('{"caption": "no path"}\n')
    with pytest.raises(KinemaError, match="must be an object with 'path'"):
        read_index(tmp_path / "i.jsonl", None)
    (tmp_path / "i.csv").write_text("file,caption\na,b\n")
    with pytest.raises(KinemaError, match="header with 'path'"):
        read_index(tmp_path / "i.csv", None)
    with pytest.raises(KinemaError, match="clip index not found"):
        read_index(tmp_path / "missing.jsonl", None)


def test_dev_source_gives_clips_and_photos():
    src = build_source(SourceSpec(type="dev", stride=2), DataSpec(frames=5, height=16, width=16))
    video, caption = src.get(2, 5)  # carphone: a short, small clip
    assert video.shape == (3, 5, 16, 16) and caption == "" and -1 <= video.min() < video.max() <= 1
    assert any(src.entries[i][0].suffix == ".png" for i in range(len(src.entries)))
    photo_index = next(i for i, (p, _) in enumerate(src.entries) if p.suffix == ".png")
    assert src.get(photo_index, 1)[0].shape == (3, 1, 16, 16)


# ----------------------------------------------------------------------------- cache


@pytest.fixture(scope="module")
def tiny_vae_dir(tmp_path_factory):
    from kinema.models.vae3d import PRESETS, VAE3D

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("vae") / "vae"
    VAE3D(PRESETS["vae-tiny"]).save(path)
    return path


def test_cache_holds_the_latents_and_text_states_the_objective_would_compute(tmp_path, tiny_vae_dir):
    from kinema.train.cache import open_cache
    from kinema.train.objectives import build_objective

    config = tiny(TINY_DIT, f"diffusion.vae='{tiny_vae_dir}'", "model.overrides.in_channels=4", "data.frames=5",
                  "data.height=16", "data.width=16", "data.image_prob=0.5", f"data.cache='{tmp_path / 'cache'}'",
                  "data.sources=[{type='shapes', items=6}]").resolved()
    info = distributed.setup("cpu")
    objective = build_objective(config, torch.device("cpu"))
    cache = open_cache(config, objective, info)
    index = json.loads((tmp_path / "cache" / "index.json").read_text())
    assert len(index["items"]) == 12  # 6 items x (5 frames, 1 frame)
    plain = TrainBatches(config.data, seed=0, batch_size=2, grad_accum=1)
    cached = TrainBatches(config.data, seed=0, batch_size=2, grad_accum=1, cache=cache)
    for j in range(4):
        a, b = objective.prepare(plain[j]), objective.prepare(cached[j])
        assert torch.allclose(a["x0"], b["x0"], atol=1e-5) and b["x0"].shape[2] in (1, 2)
        assert torch.allclose(a["context"], b["context"], atol=1e-5) and torch.equal(a["context_mask"], b["context_mask"])
    # Reopening reuses it; different inputs are refused, not mixed in.
    mtime = (tmp_path / "cache" / "index.json").stat().st_mtime_ns
    open_cache(config, objective, info)
    assert (tmp_path / "cache" / "index.json").stat().st_mtime_ns == mtime
    other = config.replace(data=config.data.replace(height=32, width=32))
    with pytest.raises(KinemaError, match=r"built for other inputs \(differs in: height"):
        open_cache(other, objective, info)


def test_a_source_appended_to_the_mixture_is_added_to_the_cache(tmp_path, tiny_vae_dir):
    from kinema.train.cache import open_cache
    from kinema.train.objectives import build_objective

    base = (f"diffusion.vae='{tiny_vae_dir}'", "model.overrides.in_channels=4", "data.frames=5", "data.height=16",
            "data.width=16", f"data.cache='{tmp_path / 'cache'}'")
    first = tiny(TINY_DIT, *base, "data.sources=[{type='shapes', items=3}]").resolved()
    info = distributed.setup("cpu")
    objective = build_objective(first, torch.device("cpu"))
    open_cache(first, objective, info)
    shards = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "cache").glob("shard-*")}
    more = tiny(TINY_DIT, *base, "model.overrides.cond_channels=5", "diffusion.tasks={text=1.0}",
                "data.sources=[{type='shapes', items=3, weight=3.0}, "
                "{type='shapes', items=2, world_seed=1, exits=true, tasks={first_frames=1.0}}]").resolved()
    cache = open_cache(more, objective, info)
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "cache").glob("shard-r*")} == shards  # kept as they were
    assert sorted(cache.items) == sorted(f"{s}/{t}/{i}" for s, n in ((0, 3), (1, 2)) for t in (1, 5) for i in range(n))
    source = build_source(more.data.sources[1], more.data)
    for i in range(2):
        video, caption = source.get(i, 5)
        latents, cached_caption, _ = cache.get(1, i, 5)
        assert cached_caption == caption
        torch.testing.assert_close(latents, objective.encode_video(video[None])[0], atol=1e-5, rtol=0)
    mtime = (tmp_path / "cache" / "index.json").stat().st_mtime_ns
    open_cache(more, objective, info)  # now complete: reopened as it is
    assert (tmp_path / "cache" / "index.json").stat().st_mtime_ns == mtime
    prefix = tiny(TINY_DIT, *base, "data.sources=[{type='shapes', items=3, weight=0.5}]").resolved()
    assert sorted(open_cache(prefix, objective, info).items) == sorted(cache.items)  # the first source alone reads it
    assert (tmp_path / "cache" / "index.json").stat().st_mtime_ns == mtime
    fewer = tiny(TINY_DIT, *base, "data.sources=[{type='shapes', items=2}]").resolved()
    with pytest.raises(KinemaError, match=r"differs in: sources"):
        open_cache(fewer, objective, info)
    second = tiny(TINY_DIT, *base, "data.sources=[{type='shapes', items=2, world_seed=1, exits=true}]").resolved()
    with pytest.raises(KinemaError, match=r"differs in: sources"):
        open_cache(second, objective, info)


def test_cache_fingerprints_ignore_source_fields_left_at_their_defaults():
    """A source field added to SourceSpec later, at its default, keeps older caches valid;
    a field set to something else still tells the caches apart."""
    from kinema.train.cache import _comparable, _source_fields

    new = SourceSpec(type="shapes", items=10).to_dict()
    old = {k: v for k, v in new.items() if k not in ("exits", "tasks", "shapes", "sizes")}
    assert _comparable({"sources": [old]}) == _comparable({"sources": [new]})
    squares = SourceSpec(type="shapes", items=10, shapes=("square",)).to_dict()
    assert _comparable({"sources": [squares]}) != _comparable({"sources": [new]})
    assert _source_fields(new) == {"type": "shapes", "items": 10}
    assert _source_fields(SourceSpec(type="shapes", items=10, weight=2.0, tasks={"text": 1.0}).to_dict()) == \
        _source_fields(new)  # how often and for which task items are drawn is not what they are
