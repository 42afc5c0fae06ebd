"""The Shapes world: captions, held-out rule, renderer geometry, seeded dataset (SHAPES.md)."""

import itertools

import numpy as np
import pytest
import torch

from kinema.errors import KinemaError
from kinema.world.dataset import ShapesDataset
from kinema.world.render import object_area_px, render, start_bounds
from kinema.world.scene import (
    ALL_OBJECTS,
    DIRECTION_VECTORS,
    BACKGROUND_RGB,
    BACKGROUNDS,
    COLORS,
    DIRECTIONS,
    HELD_OUT_OBJECTS,
    PALETTE,
    SHAPES,
    SIZES,
    CaptionError,
    Scene,
    ShapeObject,
    format_caption,
    is_held_out,
    parse_caption,
    prompt_set,
    random_scene,
)

torch.set_num_threads(1)


# ----------------------------------------------------------------------------- captions


def test_every_one_object_caption_round_trips():
    captions = [f"a {s} {c} {sh} moving {d} on a {b} background"
                for s, c, sh, d, b in itertools.product(SIZES, COLORS, SHAPES, DIRECTIONS, BACKGROUNDS)]
    assert len(captions) == 2 * 6 * 3 * 4 * 3
    for caption in captions:
        scene = parse_caption(caption)
        assert len(scene.objects) == 1
        assert format_caption(scene) == caption


def test_empty_and_two_object_captions_round_trip():
    for b in BACKGROUNDS:
        assert parse_caption(f"an empty {b} background") == Scene((), b)
        assert format_caption(Scene((), b)) == f"an empty {b} background"
    objects = [ShapeObject(*w) for w in itertools.product(SIZES, COLORS, SHAPES, DIRECTIONS)]
    rng = np.random.default_rng(0)
    for _ in range(2000):
        a, b = (objects[i] for i in rng.choice(len(objects), 2, replace=False))
        if a.color == b.color:
            continue
        scene = Scene((a, b), BACKGROUNDS[rng.integers(3)])
        caption = format_caption(scene)
        assert caption.count(" and a ") == 1
        assert parse_caption(caption) == scene


def test_parser_tolerates_outer_whitespace_and_a_final_period():
    scene = parse_caption("  a small red circle moving left on a black background.\n")
    assert scene == Scene((ShapeObject("small", "red", "circle", "left"),), "black")


@pytest.mark.parametrize("caption", [
    "",
    "A small red circle moving left on a black background",
    "a small red circle moving left on a black background please",
    "a small red circle moving left",
    "a tiny red circle moving left on a black background",
    "a small purple circle moving left on a black background",
    "a small red hexagon moving left on a black background",
    "a small red circle moving sideways on a black background",
    "a small red circle moving left on a blue background",
    "a small red circle moving left on black background",
    "a red small circle moving left on a black background",
    "a small red circle moving left and a large red square moving up on a black background",
    "a small red circle moving left and a large blue square moving up and a small green triangle moving down"
    " on a black background",
    "an empty background",
    "an empty gray background with a circle",
    "a small red circle moving left on a black background..",
])
def test_parser_rejects_malformed_captions(caption):
    with pytest.raises(CaptionError, match="grammar"):
        parse_caption(caption)


def test_caption_error_is_a_one_line_kinema_error_naming_the_bad_word():
    with pytest.raises(KinemaError) as info:
        parse_caption("a small purple circle moving left on a black background")
    message = str(info.value)
    assert "\n" not in message and "'purple'" in message and "red|green|blue" in message


def test_scene_validation():
    with pytest.raises(CaptionError):
        ShapeObject("small", "purple", "circle", "left")
    with pytest.raises(CaptionError, match="distinct colours"):
        Scene((ShapeObject("small", "red", "circle", "left"), ShapeObject("large", "red", "square", "up")), "gray")
    with pytest.raises(CaptionError):
        Scene((), "pink")


# ----------------------------------------------------------------------------- held-out rule


def test_held_out_rule_hand_checked():
    # red=0 circle=0 left=0: 0 % 7 == 0
    assert is_held_out(ShapeObject("small", "red", "circle", "left"))
    # blue=2 square=1 right=1: 2 + 2 + 3 = 7
    assert is_held_out(ShapeObject("large", "blue", "square", "right"))
    # magenta=5 triangle=2 down=3: 5 + 4 + 9 = 18 -> 4
    assert not is_held_out(ShapeObject("small", "magenta", "triangle", "down"))
    # red circle right: 3
    assert not is_held_out(ShapeObject("small", "red", "circle", "right"))
    # square moving up gives 2 + 6 = 8 = 1 (mod 7): no colour index reaches 6, so none is held out
    assert not any(o.shape == "square" and o.direction == "up" for o in HELD_OUT_OBJECTS)
    # 11 (colour, shape, direction) triples x 2 sizes
    assert len(HELD_OUT_OBJECTS) == 22
    assert all(is_held_out(o) for o in HELD_OUT_OBJECTS)


def test_random_scene_splits():
    rng = np.random.default_rng(0)
    for _ in range(2000):
        scene = random_scene(rng, split="train")
        assert not any(is_held_out(o) for o in scene.objects)
        held = random_scene(rng, split="heldout")
        assert len(held.objects) == 1 and is_held_out(held.objects[0])
    any_scenes = [random_scene(rng, split="any") for _ in range(1000)]
    assert any(is_held_out(o) for s in any_scenes for o in s.objects)
    with pytest.raises(KinemaError, match="split"):
        random_scene(rng, split="test")


def test_prompt_set_is_deterministic_and_covers_held_out_evenly():
    prompts = prompt_set("heldout", 132, seed=3)
    assert prompts == prompt_set("heldout", 132, seed=3)
    assert prompts != prompt_set("heldout", 132, seed=4)
    counts = {p: prompts.count(p) for p in prompts}
    assert len(counts) == 22 * 3 and set(counts.values()) == {2}  # every held-out object x background twice
    for p in prompts:
        scene = parse_caption(p)
        assert len(scene.objects) == 1 and is_held_out(scene.objects[0])
    first = prompt_set("heldout", 50, seed=3)
    assert first == prompts[:50] and len(set(first)) == 50
    assert not any(is_held_out(parse_caption(p).objects[0]) for p in prompt_set("train", 400, seed=0))


# ----------------------------------------------------------------------------- renderer


def _coverage_of(video: np.ndarray, color: str, background: str) -> np.ndarray:
    """Per-pixel coverage (T, H, W) of a single object, recovered from the blend colours."""
    c = np.array(PALETTE[color], dtype=np.float64)
    b = np.array(BACKGROUND_RGB[background], dtype=np.float64)
    return ((video - b) @ (c - b)) / ((c - b) @ (c - b))


def test_pixel_convention_on_an_aligned_square():
    # size 40: small = 10 px; centre (15, 25) puts the square on columns 10..19, rows 20..29 exactly
    obj = ShapeObject("small", "green", "square", "right")
    r = render(Scene((obj,), "black"), frames=1, size=(40, 40), starts=[(15.0, 25.0)])
    mask = np.zeros((40, 40), bool)
    mask[20:30, 10:20] = True
    assert (r.video[0][mask] == PALETTE["green"]).all()
    assert (r.video[0][~mask] == 0).all()


@pytest.mark.parametrize("size", [(64, 64), (96, 96)])
def test_rendered_area_and_centroid_match_ground_truth(size):
    rng = np.random.default_rng(1)
    for shape, obj_size, color, direction in itertools.product(SHAPES, SIZES, COLORS[:2], DIRECTIONS[::3]):
        obj = ShapeObject(obj_size, color, shape, direction)
        background = BACKGROUNDS[rng.integers(3)]
        r = render(Scene((obj,), background), frames=5, size=size, rng=rng)
        cover = _coverage_of(r.video, color, background)
        area = cover.sum((1, 2))
        np.testing.assert_allclose(area, object_area_px(obj, size), rtol=0.02)
        h, w = size
        cx = (cover.sum(1) * (np.arange(w) + 0.5)).sum(1) / area
        cy = (cover.sum(2) * (np.arange(h) + 0.5)).sum(1) / area
        # 4x4 supersampling places an edge to within 1/8 px, so the centroid is that close
        np.testing.assert_allclose(np.stack([cx, cy], 1), r.centers[0], atol=0.13)


def test_centres_move_exactly_forty_percent_of_the_extent():
    rng = np.random.default_rng(2)
    for direction, (ux, uy) in {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}.items():
        for frames, size in [(17, (64, 64)), (9, (32, 48)), (2, (48, 80))]:
            obj = ShapeObject("large", "red", "triangle", direction)
            r = render(Scene((obj,), "gray"), frames=frames, size=size, rng=rng)
            total = r.centers[0, -1] - r.centers[0, 0]
            np.testing.assert_allclose(total, [0.4 * size[1] * ux, 0.4 * size[0] * uy], atol=1e-9)
            steps = np.diff(r.centers[0], axis=0)
            np.testing.assert_allclose(steps, np.broadcast_to(total / (frames - 1), steps.shape), atol=1e-9)


def test_objects_stay_inside_the_canvas_and_starts_are_uniform():
    rng = np.random.default_rng(3)
    for seed in range(120):
        obj = ShapeObject(SIZES[seed % 2], "yellow", SHAPES[seed % 3], DIRECTIONS[seed % 4])
        size = [(64, 64), (32, 48)][seed % 2]
        r = render(Scene((obj,), "black"), frames=17, size=size, rng=rng)
        s = r.sizes_px[0]
        depth = s * (2 / 3 if obj.shape == "triangle" else 0.5)
        left, top = r.centers[0, :, 0] - s / 2, r.centers[0, :, 1] - depth
        assert (left >= -1e-9).all() and (left + s <= size[1] + 1e-9).all()
        assert (top >= -1e-9).all() and (top + s <= size[0] + 1e-9).all()
        # nothing is drawn outside the bounding box (rounded out to whole pixels)
        rows, cols = np.arange(size[0]) + 0.5, np.arange(size[1]) + 0.5  # pixel centres
        in_rows = (rows[None] > np.floor(top)[:, None]) & (rows[None] < np.ceil(top + s)[:, None])  # (T, H)
        in_cols = (cols[None] > np.floor(left)[:, None]) & (cols[None] < np.ceil(left + s)[:, None])  # (T, W)
        outside = ~(in_rows[:, :, None] & in_cols[:, None, :])  # (T, H, W)
        assert (r.video[outside] == 0).all()
    # uniform over the allowed range: draws of one object reach both ends of it
    obj, size = ShapeObject("small", "yellow", "circle", "right"), (64, 64)
    xs = np.array([render(Scene((obj,), "black"), size=size, rng=np.random.default_rng(i)).centers[0, 0, 0]
                   for i in range(200)])
    (x_lo, x_hi), _ = start_bounds(obj, 17, size)
    assert xs.min() >= x_lo and xs.max() <= x_hi
    quartiles = np.quantile(xs, [0.25, 0.5, 0.75])
    np.testing.assert_allclose(quartiles, x_lo + (x_hi - x_lo) * np.array([0.25, 0.5, 0.75]), atol=0.12 * (x_hi - x_lo))


def test_later_objects_are_drawn_over_earlier_ones():
    a = ShapeObject("large", "red", "square", "right")
    b = ShapeObject("small", "blue", "circle", "right")
    for scene, top in [(Scene((a, b), "white"), "blue"), (Scene((b, a), "white"), "red")]:
        r = render(scene, frames=3, size=(64, 64), starts=[(20.0, 32.0), (20.0, 32.0)])
        for t in range(3):  # same motion: the centres coincide in every frame
            x, y = r.centers[1, t]
            assert (r.video[t, int(y), int(x)] == PALETTE[top]).all()


def test_one_frame_clips_and_start_validation():
    obj = ShapeObject("small", "cyan", "circle", "left")
    r = render(Scene((obj,), "gray"), frames=1, size=(32, 48), rng=0)
    assert r.video.shape == (1, 32, 48, 3) and r.video.dtype == np.uint8 and r.centers.shape == (1, 1, 2)
    empty = render(Scene((), "white"), frames=4, size=(16, 24), rng=0)
    assert (empty.video == 255).all() and empty.centers.shape == (0, 4, 2)
    with pytest.raises(ValueError, match="leaves the canvas"):
        # moving left by 0.4 * 64 from x = 10 leaves the canvas
        render(Scene((obj,), "gray"), frames=17, size=(64, 64), starts=[(10.0, 32.0)])
    (x_lo, x_hi), (y_lo, y_hi) = start_bounds(obj, 17, (64, 64))
    r = render(Scene((obj,), "gray"), frames=17, size=(64, 64), starts=[(x_hi, y_lo)])
    np.testing.assert_allclose(r.centers[0, -1], [x_hi - 0.4 * 64, y_lo])


def test_render_is_deterministic_given_a_seed():
    scene = parse_caption("a large magenta triangle moving up and a small green square moving left"
                          " on a black background")
    a, b = render(scene, rng=7), render(scene, rng=7)
    assert np.array_equal(a.video, b.video) and np.array_equal(a.centers, b.centers)
    assert not np.array_equal(a.video, render(scene, rng=8).video)


# ----------------------------------------------------------------------------- dataset


def test_dataset_items_are_pure_functions_of_seed_and_index():
    ds = ShapesDataset(seed=5, frames=5, size=(32, 32))
    item = ds[12]
    assert item["video"].shape == (3, 5, 32, 32) and item["video"].dtype == torch.float32
    assert item["video"].min() >= -1 and item["video"].max() <= 1
    again = ShapesDataset(seed=5, frames=5, size=(32, 32))[12]
    assert torch.equal(item["video"], again["video"]) and item["caption"] == again["caption"]
    other_seed = ShapesDataset(seed=6, frames=5, size=(32, 32))[12]
    assert not torch.equal(item["video"], other_seed["video"]) or item["caption"] != other_seed["caption"]
    # the tensor is the renderer's uint8 clip mapped to [-1, 1]
    frames = ((item["video"].permute(1, 2, 3, 0) + 1) * 127.5).round()
    rng = np.random.default_rng([5, 12])
    scene = random_scene(rng, split="train")
    assert format_caption(scene) == item["caption"]
    expected = render(scene, frames=5, size=(32, 32), rng=rng).video
    assert np.array_equal(frames.numpy().astype(np.uint8), expected)


def test_dataset_iterate_shards_by_rank_and_resumes_from_a_position():
    ds = ShapesDataset(seed=1, frames=2, size=(16, 16))
    captions = [ds[i]["caption"] for i in range(40)]
    for rank in range(3):
        it = ds.iterate(start=4, rank=rank, world_size=3)
        got = [next(it)["caption"] for _ in range(8)]
        assert got == [captions[4 + rank + 3 * m] for m in range(8)]
    assert [x["caption"] for x in itertools.islice(iter(ds), 5)] == captions[:5]
    shard = ShapesDataset(seed=1, frames=2, size=(16, 16), start=2, rank=1, world_size=2)
    assert [x["caption"] for x in itertools.islice(iter(shard), 4)] == [captions[i] for i in (3, 5, 7, 9)]


def test_dataset_workers_split_a_rank_without_overlap():
    ds = ShapesDataset(seed=2, frames=1, size=(16, 16), rank=1, world_size=2)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
    got = [x["caption"] for x in itertools.islice(iter(loader), 8)]
    reference = [ds[1 + 2 * m]["caption"] for m in range(8)]  # this rank's indices, in order
    assert got == reference


def test_dataset_never_yields_held_out_objects_and_mixes_counts_at_the_configured_rates():
    ds = ShapesDataset(seed=0, frames=1, size=(8, 8), p_empty=0.05, p_two=0.3)
    n = 2500
    scenes = [parse_caption(ds[i]["caption"]) for i in range(n)]
    assert not any(is_held_out(o) for scene in scenes for o in scene.objects)
    rates = np.bincount([len(scene.objects) for scene in scenes], minlength=3) / n
    # binomial standard errors are 0.0044 and 0.0092: these bounds are over 4 of them
    assert abs(rates[0] - 0.05) < 0.02 and abs(rates[2] - 0.3) < 0.04
    seen = {(o.color, o.shape, o.direction) for scene in scenes for o in scene.objects}
    assert len(seen) == 72 - 11  # every training combination appears


def test_dataset_object_filters_draw_only_those_objects_of_the_split():
    ds = ShapesDataset(seed=0, frames=1, size=(8, 8), shapes=("square",), sizes=("small",))
    scenes = [parse_caption(ds[i]["caption"]) for i in range(400)]
    objects = [o for scene in scenes for o in scene.objects]
    assert {(o.shape, o.size) for o in objects} == {("square", "small")}
    assert not any(is_held_out(o) for o in objects)
    assert any(len(s.objects) == 0 for s in scenes) and any(len(s.objects) == 2 for s in scenes)
    with pytest.raises(KinemaError, match="unknown shape"):
        ShapesDataset(shapes=("hexagon",))


def test_exit_clips_leave_the_canvas_and_stay_gone():
    """exits=True: the object is past the furthest in-canvas start along its direction, so it
    is cut by the border in the last frame or gone; some clips show it leaving (there at
    frame 0, gone at the end), some are empty throughout, none brings it back."""
    size, frames = (32, 32), 9
    leaving = empty = 0
    for seed in range(60):
        obj = ALL_OBJECTS[seed % len(ALL_OBJECTS)]
        scene = Scene((obj,), "black")
        r = render(scene, frames=frames, size=size, rng=seed, exits=True)
        colour = np.mean(PALETTE[obj.color])
        visible = r.video.mean(-1).sum(axis=(1, 2)) / colour  # (T,) object area (px) on black, rims included
        full = object_area_px(obj, size)
        (x_lo, x_hi), (y_lo, y_hi) = start_bounds(obj, frames, size)
        u = np.array(DIRECTION_VECTORS[obj.direction])
        furthest = np.array([x_hi if u[0] > 0 else x_lo, y_hi if u[1] > 0 else y_lo])
        assert (r.centers[0, 0] - furthest) @ u > 0  # past every in-canvas start along its way
        assert all(b <= a + 4 for a, b in zip(visible, visible[1:]))  # never grows back (rounded rims: +-3 px)
        leaving += visible[0] > 0.9 * full and visible[-1] < 0.5
        empty += visible.max() < 0.5
    assert leaving >= 5 and empty >= 5
    with pytest.raises(ValueError, match="leaves the canvas"):
        render(Scene((ALL_OBJECTS[0],), "black"), frames=frames, size=size, starts=[(-40.0, 16.0)])
    ds = ShapesDataset(seed=3, frames=frames, size=size, exits=True)
    assert torch.equal(ds[5]["video"], ShapesDataset(seed=3, frames=frames, size=size, exits=True)[5]["video"])


def test_dataset_rejects_bad_configuration():
    with pytest.raises(KinemaError, match="split"):
        ShapesDataset(split="validation")
    with pytest.raises(KinemaError):
        ShapesDataset(p_empty=0.8, p_two=0.5)
    with pytest.raises(KinemaError):
        ShapesDataset(rank=2, world_size=2)
