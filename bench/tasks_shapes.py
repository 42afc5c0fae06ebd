"""The known-content tasks against the Shapes world's exact ground truth.

Each task runs on N rendered Shapes clips (one-object captions of the training split,
kinema.world.scene.prompt_set; clip i is rendered with rng [seed, i]) and, where the task
takes known content, once per method of keeping it ("trained", "replace", "guidance";
kinema.tasks.known). Objects are found in the generated frames by the judge's own
segmentation (kinema.eval.trajectory.track_object: largest region of the object's colour,
sub-pixel centroid from its anti-aliased coverage; exact to < 0.2 px on rendered clips).
A frame where the object is not found counts as missed (infinitely far). Every figure is
the mean over clips; targets are the issue's.

predict      From the first 5 frames (1 + 4k: the causal VAE's frame 0, then one group of
             4; `--context`), the model makes the clip's remaining frames.
             within_2px: share of predicted frames (5..T-1) whose object centroid is within
             2 px of the true trajectory (target >= 0.80); mean_err_px: over frames found.
interpolate  From the clip's first and last frames. within_2px / mean_err_px: over the
             generated frames 1..T-2 against the true trajectory (target: within_2px >=
             0.80, our choice of fraction). kinema.tasks.clips.interpolate samples a clip
             that arrives at the last keyframe by frame T - 4 (its last latent frame is
             encoded from that keyframe held for 4 frames) and retimes it to arrive at
             frame T - 1, so the true path is the one to follow.
i2v          Image-to-video from the clip's first frame, with its caption.
             first_psnr_db: PSNR of output frame 0 against the image (target >= 30 dB; 99 =
             identical: image_to_video puts the image itself in frame 0); first_psnr_raw_db:
             the same for the decoded sample before that, how close the VAE alone comes;
             judge_pass: share of clips the Shapes judge passes for the caption;
             within_2px: all frames against the true trajectory (the world fixes the speed).
inpaint      Object removal: the region is the object's bounding box in each frame,
             dilated by `--margin` px (`--region union`: one box around its whole path, in
             every frame, the shape of mask training's "boxes" task draws); the prompt is
             the Shapes grammar's background-only caption "an empty {background} background".
             psnr_outside_db: PSNR outside the region against the input (target >= 40 dB;
             99 = identical: inpaint pastes the input back outside the region);
             psnr_outside_raw_db: the same for the decoded sample before that paste, how
             far the model alone keeps the known pixels; removed: share of clips the judge
             passes as an empty background; object_px: share of region pixels still
             classified as the object's colour; region_dev_max: largest RGB distance
             (0..441) from the true background colour inside the region.
edit         editing at `--strength` (0.7) with the colour word changed (to a colour that
             keeps the object in the training split), by each of `--edit-methods` (SDEdit
             or FlowEdit), each told the rendered clip's caption as its source prompt.
             judge_pass: share of clips the judge passes for the new caption;
             within_2px: share of frames whose new-colour centroid is within 2 px of the
             original trajectory; old_color_frames: share of frames where an object of the
             old colour is still found.
long         extend() from the first `--context` frames of a clip rendered with the object
             at the side it moves away from, to `--long-frames` frames (161 = 1 + 10 x 16:
             ten times the 17-frame window's span), windows keeping `--window-context` latent
             frames (default: extend's, 3 of the default model's 5) shown at noise level
             `--context-sigma` (default 0.05). Measured while the object is fully inside
             the canvas by the true, extrapolated path (and not touching the border):
             boundary_jump_px: the largest departure at a chunk boundary of the
             step c_b - c_{b-1} from the expected per-frame displacement (0.4 * 64 / 16 =
             1.6 px) (target <= 2 px); other_step_px: the same over every other transition;
             within_2px: frames against the extrapolated path; boundaries: how many were
             measurable. After the object has left (by the true path, plus 2 frames' grace;
             exit_frame: the first frame it is gone): stray_px: the largest palette-coloured
             region (px) in any frame (stray_limit_px: the judge's limit for an empty frame,
             38.4 px at 64x64); empty_after: the judge's empty-check value (share of frames
             with no object). Drift: bg_drift: largest RGB distance of a frame's background
             colour from frame 0's; bg_err: from the true colour; color_drift / color_err:
             largest RGB distance of the object's median colour from its first measured
             frame's / from the palette colour; size_min/size_max: object area over its
             analytic area, over the measured frames. `--long-clips` clips (default 2).

    python bench/tasks_shapes.py [--model DIR] [--clips 16] [--steps S] [--methods trained,replace,guidance]
        [--tasks predict,interpolate,i2v,inpaint,edit,long] [--seed 0] [--out tasks_shapes.json]

Cost, measured on a random network of the default's architecture (9.3M-parameter DiT, the
default VAE), 20 steps, one thread on the shared 2-core machine: per clip and task about
1.8 s for "trained" and "replace" (clips are sampled in batches), 3.2 s for "guidance" (it
backpropagates through the network); a 161-frame long video (13 windows) about 25 s, 45 s
with "guidance" (extrapolated from 41 frames).
The default run (16 clips, 2 long clips, all methods) is then about 10 minutes; --steps 10
halves it, --methods trained or --tasks cut it further.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from kinema.eval.metrics import psnr
from kinema.eval.shapes import COLORS, classify, judge
from kinema.eval.trajectory import (
    boundary_jumps,
    centroid_errors,
    chunk_boundaries,
    empty_area_limit,
    fraction_within,
    masked_psnr,
    mean_finite,
    palette_region_area,
    step_errors,
    track_object,
)
from kinema.pipeline import Pipeline
from kinema.tasks import clips as tasks
from kinema.tasks.extend import extend
from kinema.tasks.known import METHODS
from kinema.weights import DEFAULT_PIPELINE_DIR
from kinema.world.dataset import video_to_tensor
from kinema.world.render import Rendering, displacement_px, object_area_px, render, start_bounds
from kinema.world.scene import (
    BACKGROUND_RGB,
    PALETTE,
    Scene,
    ShapeObject,
    format_caption,
    is_held_out,
    parse_caption,
    prompt_set,
)

TASKS = ("predict", "interpolate", "i2v", "inpaint", "edit", "long")
KNOWN_CONTENT_TASKS = ("predict", "interpolate", "i2v", "inpaint", "long")  # the ones that take a method
PSNR_CAP = 99.0  # identical pixels give inf; reported as 99 dB
# long: frames after the true path has left the canvas before "nothing appears" is checked, so
# that an object lagging by up to ~3 px (2 frames at 1.6 px) is not counted as a new one.
EXIT_GRACE = 2

# Long video's drift bounds (the issue asks us to state them): RGB distance (0..441) of the
# background from frame 0's and of the object's colour from its first measured frame's, and
# the object's area over its analytic area, over the frames it is fully inside the canvas.
DRIFT_BOUNDS = {"bg_drift": ("<=", 10.0), "color_drift": ("<=", 15.0), "size_min": (">=", 0.75),
                "size_max": ("<=", 1.25)}

# (task, figure) -> (comparison, threshold), checked on the mean over clips: the issue's
# targets (interpolate's fraction and the drift bounds are ours). Every long clip's stray_px
# must also stay under its stray_limit_px; the mean is the summary's check.
TARGETS: dict[tuple[str, str], tuple[str, float]] = {
    ("predict", "within_2px"): (">=", 0.80),
    ("interpolate", "within_2px"): (">=", 0.80),
    ("i2v", "first_psnr_db"): (">=", 30.0),
    ("inpaint", "psnr_outside_db"): (">=", 40.0),
    ("edit", "judge_pass"): (">=", 0.80),  # the share of clips, as prediction's share of frames
    ("long", "boundary_jump_px"): ("<=", 2.0),
    ("long", "stray_px"): ("<=", 38.4),  # the judge's empty-frame limit at 64x64 (empty_area_limit)
    **{("long", figure): bound for figure, bound in DRIFT_BOUNDS.items()},
}


# ----------------------------------------------------------------------------- clips


@dataclasses.dataclass(frozen=True)
class ShapesClip:
    """A rendered one-object clip: caption, scene, rendering and the video as (3, T, H, W) in [-1, 1]."""

    caption: str
    scene: Scene
    rendering: Rendering
    video: torch.Tensor

    @property
    def obj(self) -> ShapeObject:
        return self.scene.objects[0]

    @property
    def truth(self) -> np.ndarray:
        """(T, 2) the object's true centroid per frame."""
        return self.rendering.centers[0]

    @property
    def empty_caption(self) -> str:
        return format_caption(Scene((), self.scene.background))


def entry_start(obj: ShapeObject, frames: int, size: tuple[int, int], rng: np.random.Generator) -> tuple[float, float]:
    """A frame-0 centroid 1 px inside the side the object moves away from (so it crosses the
    whole canvas), uniform across the motion axis."""
    (x_lo, x_hi), (y_lo, y_hi) = start_bounds(obj, frames, size)
    x, y = float(rng.uniform(x_lo, x_hi)), float(rng.uniform(y_lo, y_hi))
    if obj.direction == "right":
        x = min(x_lo + 1.0, x_hi)
    elif obj.direction == "left":
        x = max(x_hi - 1.0, x_lo)
    elif obj.direction == "down":
        y = min(y_lo + 1.0, y_hi)
    else:
        y = max(y_hi - 1.0, y_lo)
    return x, y


def shapes_clips(n: int, seed: int = 0, *, frames: int = 17, size: tuple[int, int] = (64, 64),
                 entry: bool = False) -> list[ShapesClip]:
    """`n` clips of one-object training-split captions; clip i from rng [seed, i] (entry=True:
    the object starts at the side it moves away from, see `entry_start`)."""
    out = []
    for i, caption in enumerate(prompt_set("train", n, seed)):
        scene = parse_caption(caption)
        rng = np.random.default_rng([seed, i])
        starts = [entry_start(scene.objects[0], frames, size, rng)] if entry else None
        r = render(scene, frames=frames, size=size, rng=rng, starts=starts)
        out.append(ShapesClip(caption, scene, r, video_to_tensor(r.video)))
    return out


def recoloured(clip: ShapesClip, rng: np.random.Generator) -> str:
    """The clip's caption with another colour word, chosen so the object stays in the training split."""
    obj = clip.obj
    choices = [c for c in COLORS if c != obj.color and not is_held_out(dataclasses.replace(obj, color=c))]
    new = dataclasses.replace(obj, color=choices[int(rng.integers(len(choices)))])
    return format_caption(Scene((new,), clip.scene.background))


def removal_region(clip: ShapesClip, margin: int, union: bool = False) -> torch.Tensor:
    """(1, T, H, W) float: per frame, the object's pixel bounding box (every pixel that is not
    background) grown by `margin` px on each side; `union`: the box around all frames' pixels,
    in every frame."""
    frames = clip.rendering.video
    t, h, w = frames.shape[:3]
    drawn = (frames != np.array(BACKGROUND_RGB[clip.scene.background], dtype=np.uint8)).any(-1)  # (T, H, W)
    if union:
        drawn = np.broadcast_to(drawn.any(0), drawn.shape)
    region = torch.zeros(1, t, h, w)
    for f in range(t):
        rows, cols = np.flatnonzero(drawn[f].any(1)), np.flatnonzero(drawn[f].any(0))
        if rows.size:
            top, left = max(0, rows[0] - margin), max(0, cols[0] - margin)
            region[0, f, top:rows[-1] + margin + 1, left:cols[-1] + margin + 1] = 1
    return region


# ----------------------------------------------------------------------------- measuring


@contextlib.contextmanager
def captured_decodes(pipe: Pipeline) -> Iterator[list[torch.Tensor]]:
    """Record what pipe.decode returns while inside (to see a task's sample before it pastes
    anything), without changing what the task computes."""
    seen: list[torch.Tensor] = []
    original = pipe.decode

    def decode(latents):
        out = original(latents)
        seen.append(out)
        return out

    pipe.decode = decode  # an instance attribute shadows the method
    try:
        yield seen
    finally:
        del pipe.decode


def _clip_psnr(value: float) -> float:
    return min(value, PSNR_CAP) if not math.isnan(value) else value


def _judged(video: torch.Tensor, caption: str) -> bool:
    return bool(judge(video, caption).passed)


def measure_predict(pipe, batch, method, sampling, *, context=5, **_):
    video = torch.stack([c.video for c in batch])
    k = tasks.context_frames(context, pipe.vae.config.temporal_factor)
    out = tasks.predict(pipe, [c.caption for c in batch], video[:, :, :k], frames=video.shape[2], method=method,
                        **sampling)
    rows = []
    for c, v in zip(batch, out):
        err = centroid_errors(track_object(v, c.obj, c.scene.background).centers, c.truth)[k:]
        rows.append({"within_2px": fraction_within(err), "mean_err_px": mean_finite(err)})
    return rows


def measure_interpolate(pipe, batch, method, sampling, **_):
    video = torch.stack([c.video for c in batch])
    out = tasks.interpolate(pipe, [c.caption for c in batch], video[:, :, 0], video[:, :, -1], frames=video.shape[2],
                            method=method, **sampling)
    rows = []
    for c, v in zip(batch, out):
        err = centroid_errors(track_object(v, c.obj, c.scene.background).centers, c.truth)[1:-1]
        rows.append({"within_2px": fraction_within(err), "mean_err_px": mean_finite(err)})
    return rows


def measure_i2v(pipe, batch, method, sampling, **_):
    video = torch.stack([c.video for c in batch])
    image = video[:, :, 0]
    with captured_decodes(pipe) as decoded:
        out = tasks.image_to_video(pipe, [c.caption for c in batch], image, frames=video.shape[2], method=method,
                                   **sampling)
    raw = decoded[-1]  # before the image replaces frame 0
    rows = []
    for c, im, v, r in zip(batch, image, out, raw):
        err = centroid_errors(track_object(v, c.obj, c.scene.background).centers, c.truth)
        rows.append({"first_psnr_db": _clip_psnr(psnr(im[:, None], v[:, :1])),
                     "first_psnr_raw_db": _clip_psnr(psnr(im[:, None], r[:, :1])),
                     "judge_pass": float(_judged(v, c.caption)), "within_2px": fraction_within(err)})
    return rows


def measure_inpaint(pipe, batch, method, sampling, *, margin=3, region="frame", **_):
    video = torch.stack([c.video for c in batch])
    region = torch.stack([removal_region(c, margin, union=region == "union") for c in batch])  # (B, 1, T, H, W)
    with captured_decodes(pipe) as decoded:
        out = tasks.inpaint(pipe, [c.empty_caption for c in batch], video, region, method=method, **sampling)
    raw = decoded[-1]
    rows = []
    for c, v, r, m in zip(batch, out, raw, region):
        inside = m[0].bool().numpy()  # (T, H, W)
        frames = ((v.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 3, 0).numpy()  # (T, H, W, 3)
        bg = np.array(BACKGROUND_RGB[c.scene.background], dtype=np.float64)
        dev = np.linalg.norm(frames[inside].astype(np.float64) - bg, axis=-1)
        rows.append({
            "psnr_outside_db": _clip_psnr(masked_psnr(c.video, v, ~inside)),
            "psnr_outside_raw_db": _clip_psnr(masked_psnr(c.video, r, ~inside)),
            "removed": float(_judged(v, c.empty_caption)),
            "object_px": float((classify(frames)[inside] == COLORS.index(c.obj.color)).mean()),
            "region_dev_max": float(dev.max()),
        })
    return rows


def measure_edit(pipe, batch, method, sampling, *, strength=0.7, seed=0, index=0, **_):
    video = torch.stack([c.video for c in batch])
    captions = [recoloured(c, np.random.default_rng([seed, index + i, 7])) for i, c in enumerate(batch)]
    out = tasks.edit(pipe, captions, video, strength=strength, method=method,
                     source_prompts=[c.caption for c in batch], **sampling)
    rows = []
    for c, caption, v in zip(batch, captions, out):
        new = parse_caption(caption).objects[0]
        err = centroid_errors(track_object(v, new, c.scene.background).centers, c.truth)
        old = track_object(v, c.obj, c.scene.background).visible
        rows.append({"caption": caption, "judge_pass": float(_judged(v, caption)), "within_2px": fraction_within(err),
                     "old_color_frames": float(old.mean())})
    return rows


def truth_box_offsets(clip: ShapesClip) -> np.ndarray:
    """(4,) pixel bounding box of the object in frame 0 (left, top, right, bottom edges, px)
    minus its centroid (x, y, x, y): shifting the centroid shifts the box."""
    drawn = (clip.rendering.video[0] != np.array(BACKGROUND_RGB[clip.scene.background], dtype=np.uint8)).any(-1)
    rows, cols = np.flatnonzero(drawn.any(1)), np.flatnonzero(drawn.any(0))
    cx, cy = clip.truth[0]
    return np.array([cols[0] - cx, rows[0] - cy, cols[-1] + 1 - cx, rows[-1] + 1 - cy], dtype=np.float64)


def measure_long(pipe, batch, method, sampling, *, context=5, long_frames=161, window_context=None,
                 context_sigma=0.05, **_):
    """One clip at a time (extend makes one video); sampling's "seeds" becomes extend's "seed"."""
    rows = []
    options = {k: v for k, v in sampling.items() if k != "seeds"}
    seeds = sampling.get("seeds", 0)
    for i, c in enumerate(batch):
        seed = seeds[i] if isinstance(seeds, list) else seeds + i
        k = tasks.context_frames(context, pipe.vae.config.temporal_factor)
        chunks: list[torch.Tensor] = []
        extend(pipe, c.caption, long_frames, clip=c.video[None, :, :k], on_frames=chunks.append, method=method,
               context=window_context, context_sigma=context_sigma, seed=seed, **options)
        v = torch.cat(chunks, dim=2)[0]  # (3, N, H, W)
        n, (h, w) = v.shape[1], v.shape[2:]
        window = c.rendering.video.shape[0]
        velocity = displacement_px(c.obj, window, (h, w)) / (window - 1)
        truth = c.truth[0] + np.arange(n)[:, None] * velocity  # (N, 2) extrapolated
        box = np.concatenate([truth, truth], axis=1) + truth_box_offsets(c)  # (N, 4) left, top, right, bottom
        inside = (box[:, 0] >= 1) & (box[:, 1] >= 1) & (box[:, 2] <= w - 1) & (box[:, 3] <= h - 1)
        gone = (box[:, 2] <= 0) | (box[:, 3] <= 0) | (box[:, 0] >= w) | (box[:, 1] >= h)
        track = track_object(v, c.obj, c.scene.background)
        usable = inside & track.visible & ~track.edge
        centers = np.where(usable[:, None], track.centers, np.nan)
        boundaries = chunk_boundaries([x.shape[2] for x in chunks])
        jumps = boundary_jumps(centers, boundaries, velocity)
        steps = step_errors(centers, velocity)
        other = np.delete(steps, [b - 1 for b in boundaries if 1 <= b <= len(steps)])
        err = centroid_errors(track.centers, truth)[inside]
        exit_frame = int(np.argmax(gone)) if gone.any() else n
        after = v[:, exit_frame + EXIT_GRACE:]
        measured = np.flatnonzero(usable)
        bg_ok = np.isfinite(track.background).all(1)
        bgs = track.background[bg_ok]
        true_bg = np.array(BACKGROUND_RGB[c.scene.background], dtype=np.float64)
        colors, areas = track.color[measured], track.area[measured] / object_area_px(c.obj, (h, w))
        rows.append({
            "frames": n,
            "boundary_jump_px": float(np.nanmax(jumps)) if np.isfinite(jumps).any() else float("nan"),
            "boundaries": int(np.isfinite(jumps).sum()),
            "other_step_px": float(np.nanmax(other)) if np.isfinite(other).any() else float("nan"),
            "within_2px": fraction_within(err),
            "exit_frame": exit_frame,
            "stray_px": float(palette_region_area(after).max()) if after.shape[1] else float("nan"),
            "stray_limit_px": empty_area_limit((h, w)),
            "empty_after": (float(judge(after, c.empty_caption).checks["empty"].value)
                            if after.shape[1] else float("nan")),
            "bg_drift": float(np.linalg.norm(bgs - bgs[0], axis=1).max()) if len(bgs) else float("nan"),
            "bg_err": float(np.linalg.norm(bgs - true_bg, axis=1).max()) if len(bgs) else float("nan"),
            "color_drift": float(np.linalg.norm(colors - colors[0], axis=1).max()) if len(colors) else float("nan"),
            "color_err": (float(np.linalg.norm(colors - np.array(PALETTE[c.obj.color]), axis=1).max())
                          if len(colors) else float("nan")),
            "size_min": float(areas.min()) if len(areas) else float("nan"),
            "size_max": float(areas.max()) if len(areas) else float("nan"),
        })
    return rows


MEASURES: dict[str, Callable[..., list[dict]]] = {
    "predict": measure_predict, "interpolate": measure_interpolate, "i2v": measure_i2v,
    "inpaint": measure_inpaint, "edit": measure_edit, "long": measure_long,
}


def run_task(pipe: Pipeline, task: str, clips: list[ShapesClip], method: str | None, *, steps: int | None = None,
             guidance: float | None = None, seed: int = 0, batch: int = 8, **options: Any) -> list[dict]:
    """Per-clip figures (dicts, in clip order, each with its "caption") of `task` by `method`
    (an edit method for edit). Clip i samples with seed `seed + i`, so every method sees the same noise."""
    rows = []
    for start in range(0, len(clips), batch):
        part = clips[start:start + batch]
        sampling = {"steps": steps, "guidance": guidance, "seeds": [seed + start + i for i in range(len(part))]}
        found = MEASURES[task](pipe, part, method, sampling, seed=seed, index=start, **options)
        rows += [{"caption": c.caption, **r} for c, r in zip(part, found)]
    return rows


def summarize(rows: list[dict]) -> dict[str, float]:
    """Mean over clips of each numeric figure, ignoring NaN (a figure measurable on no clip is NaN)."""
    keys = [k for k, v in rows[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    out = {}
    for k in keys:
        values = np.array([r[k] for r in rows], dtype=np.float64)
        finite = values[~np.isnan(values)]
        out[k] = float(finite.mean()) if finite.size else float("nan")
    return out


def verdict(task: str, figure: str, value: float) -> str:
    target = TARGETS.get((task, figure))
    if target is None:
        return ""
    op, threshold = target
    if math.isnan(value):
        return f"{op} {threshold:g}: n/a"
    return f"{op} {threshold:g}: {'PASS' if meets(value, op, threshold) else 'FAIL'}"


def meets(value: float, op: str, threshold: float) -> bool:
    """value >= threshold or value <= threshold, as `op` says."""
    return value >= threshold if op == ">=" else value <= threshold


# ----------------------------------------------------------------------------- main


def _json_safe(x):
    if isinstance(x, float):
        return None if math.isnan(x) else x
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_json_safe(v) for v in x]
    return x


def _names(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in names if s not in allowed]
    if bad or not names:
        raise SystemExit(f"unknown {what} {', '.join(bad) or '(none)'}; expected some of {', '.join(allowed)}")
    return names


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=str(DEFAULT_PIPELINE_DIR),
                   help="pipeline dir (default: the shipped default model)")
    p.add_argument("--clips", type=int, default=16, help="rendered clips per task (default 16)")
    p.add_argument("--long-clips", type=int, default=2, help="clips for the long-video task (default 2)")
    p.add_argument("--long-frames", type=int, default=161, help="frames of each long video, 1 + 4k (default 161)")
    p.add_argument("--steps", type=int, help="sampler steps (default: the model's)")
    p.add_argument("--guidance", type=float, help="classifier-free guidance (default: the model's)")
    p.add_argument("--methods", default=",".join(METHODS), help="known-content methods (default: all three)")
    p.add_argument("--tasks", default=",".join(TASKS), help=f"subset of {','.join(TASKS)} (default: all)")
    p.add_argument("--seed", type=int, default=0, help="clip and sampling seed (default 0)")
    p.add_argument("--context", type=int, default=5, help="given frames for predict and long, 1 + 4k (default 5)")
    p.add_argument("--window-context", type=int,
                   help="long: latent frames each window keeps from the one before (default: extend's, "
                        "3 for the default model)")
    p.add_argument("--context-sigma", type=float, default=0.05,
                   help="long: noise level the kept latent frames are shown at (default 0.05)")
    p.add_argument("--strength", type=float, default=0.7, help="edit strength (default 0.7)")
    p.add_argument("--edit-methods", default="sdedit",
                   help=f"edit methods, some of {','.join(tasks.EDIT_METHODS)} (each is told the rendered caption as "
                        "its source; default sdedit)")
    p.add_argument("--margin", type=int, default=3,
                   help="px the removal region extends past the object's box (default 3)")
    p.add_argument("--region", choices=("frame", "union"), default="frame",
                   help="removal region: the object's box per frame, or one box around its path (default frame)")
    p.add_argument("--batch", type=int, default=8, help="clips sampled together (default 8)")
    p.add_argument("--out", help="write the figures as JSON here")
    args = p.parse_args(argv)
    if args.clips < 1 or args.long_clips < 1:
        raise SystemExit("--clips and --long-clips must be at least 1")
    chosen_tasks = _names(args.tasks, TASKS, "task")
    methods = _names(args.methods, METHODS, "method")
    edit_methods = _names(args.edit_methods, tasks.EDIT_METHODS, "edit method")

    torch.manual_seed(0)
    pipe = Pipeline.load(args.model)
    c = pipe.config
    size = (c.height, c.width)
    clips = shapes_clips(args.clips, args.seed, frames=c.frames, size=size)
    long_clips = shapes_clips(args.long_clips, args.seed, frames=c.frames, size=size, entry=True)
    options = {"steps": args.steps, "guidance": args.guidance, "seed": args.seed, "batch": args.batch,
               "context": args.context, "strength": args.strength, "margin": args.margin, "region": args.region,
               "long_frames": args.long_frames, "window_context": args.window_context,
               "context_sigma": args.context_sigma}
    results: dict[str, dict] = {}
    table = []
    for task in chosen_tasks:
        results[task] = {}
        for method in (methods if task in KNOWN_CONTENT_TASKS else edit_methods):
            t0 = time.perf_counter()
            rows = run_task(pipe, task, long_clips if task == "long" else clips, method, **options)
            seconds = time.perf_counter() - t0
            summary = summarize(rows)
            results[task][method or "-"] = {"summary": summary, "per_clip": rows, "seconds": round(seconds, 1)}
            print(f"{task} {method or '-'}: {len(rows)} clips in {seconds:.1f} s", file=sys.stderr)
            for figure, value in summary.items():
                table.append((task, method or "-", figure, value, verdict(task, figure, value)))

    print(f"model {args.model}: {c.frames} frames {c.height}x{c.width}, steps {args.steps or c.steps}, "
          f"clips {args.clips} (long {args.long_clips} x {args.long_frames} frames), seed {args.seed}")
    print(f"{'task':<12} {'method':<9} {'figure':<20} {'mean':>9}  target")
    for task, method, figure, value, check in table:
        print(f"{task:<12} {method:<9} {figure:<20} {value:>9.3f}  {check}")
    if args.out:
        report = {"model": args.model, "frames": c.frames, "size": list(size), "steps": args.steps or c.steps,
                  "guidance": args.guidance if args.guidance is not None else c.guidance, "clips": args.clips,
                  "long_clips": args.long_clips, "long_frames": args.long_frames, "seed": args.seed,
                  "methods": methods, "edit_methods": edit_methods,
                  "options": {k: options[k] for k in ("context", "strength", "margin", "region", "window_context",
                                                         "context_sigma")},
                  "targets": {f"{t}.{f}": f"{op} {v:g}" for (t, f), (op, v) in TARGETS.items()},
                  "results": results}
        Path(args.out).write_text(json.dumps(_json_safe(report), indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
