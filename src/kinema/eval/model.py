"""Evaluate a text-to-video model on a prompt set: generate, judge, gate, tabulate.

`kinema eval-model` and training's Shapes validation (kinema.train.validate) both run
`evaluate_model`, so a pass rate in a training log means the same as one in a report.
Each clip is judged against its caption by the Shapes evaluator (when the prompt is a
Shapes caption) and checked by the QA gate (kinema.eval.gate) for temporal faults.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from kinema.errors import KinemaError

if TYPE_CHECKING:
    from kinema.eval.gate import GateResult
    from kinema.eval.shapes import Judgement
    from kinema.pipeline import Pipeline

SHAPES_SETS = {"shapes:train": "train", "shapes:heldout": "heldout"}


def load_prompts(spec: str, n: int, seed: int = 0) -> list[str]:
    """`n` prompts from a prompt-set name or file.

    "shapes:train" / "shapes:heldout": one-object Shapes captions of that split
    (kinema.world.scene.prompt_set, a pure function of split, n and seed). Anything else is
    a UTF-8 text file with one prompt per line (blank lines and lines starting with '#' are
    skipped), cycled in file order until there are `n`.
    """
    if n < 1:
        raise KinemaError(f"the number of clips must be >= 1, got {n}")
    if spec in SHAPES_SETS:
        from kinema.world.scene import prompt_set

        return prompt_set(SHAPES_SETS[spec], n, seed=seed)
    path = Path(spec)
    if not path.is_file():
        raise KinemaError(f"prompt set {spec!r} is neither {' nor '.join(SHAPES_SETS)} nor a readable file")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise KinemaError(f"cannot read prompt file {path}: {e}") from None
    prompts = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not prompts:
        raise KinemaError(f"prompt file {path} holds no prompts (one per line; '#' lines are comments)")
    return [prompts[k % len(prompts)] for k in range(n)]


def _check_kind(name: str) -> str:
    """"object2.motion" -> "motion": two-object captions prefix each object's checks."""
    return name.rsplit(".", 1)[-1]


@dataclass(frozen=True)
class ClipResult:
    """One generated clip's verdicts. `judgement` is None when the prompt is not a Shapes
    caption (nothing to check adherence against); the gate always runs."""

    prompt: str
    seed: int
    judgement: Judgement | None
    gate: GateResult

    @property
    def ok(self) -> bool:
        """Adherent (or not judged) and free of temporal faults."""
        return (self.judgement is None or self.judgement.passed) and self.gate.clean

    def failed_checks(self) -> list[str]:
        return [] if self.judgement is None else [n for n, c in self.judgement.checks.items() if not c.passed]

    def to_dict(self) -> dict:
        return {"prompt": self.prompt, "seed": self.seed,
                "shapes": None if self.judgement is None else self.judgement.to_dict(),
                "gate": self.gate.to_dict()}


def _rate(flags: Sequence[bool]) -> float:
    return sum(flags) / len(flags) if flags else math.nan


@dataclass
class ModelEval:
    """Every clip's verdicts, and the rates over them.

    rows: one per generated clip, in prompt order; clips: uint8 (T, H, W, 3) frames of the
    first few clips (for a report's contact sheet); settings: what was generated and how.
    """

    rows: list[ClipResult]
    settings: dict = field(default_factory=dict)
    clips: list[np.ndarray] = field(default_factory=list)

    def check_pass_rates(self) -> dict[str, float]:
        """Per check kind (presence, shape, ...), the fraction of judged checks that passed;
        a two-object clip contributes one trial per object."""
        trials: dict[str, list[bool]] = {}
        for row in self.rows:
            for name, check in (row.judgement.checks.items() if row.judgement else ()):
                trials.setdefault(_check_kind(name), []).append(bool(check.passed))
        return {name: _rate(flags) for name, flags in trials.items()}

    @property
    def pass_rate(self) -> float:
        """The fraction of judged clips that passed every Shapes check (NaN if none was judged)."""
        return _rate([r.judgement.passed for r in self.rows if r.judgement is not None])

    @property
    def gate_clean_rate(self) -> float:
        """The fraction of clips the QA gate found clean."""
        return _rate([r.gate.clean for r in self.rows])

    def rates(self) -> dict[str, float]:
        """The check rates, then "overall" (all checks passed) and "gate_clean"."""
        return {**self.check_pass_rates(), "overall": self.pass_rate, "gate_clean": self.gate_clean_rate}

    def table(self) -> str:
        """The rates, then one line per clip: plain text for a terminal."""
        judged = sum(r.judgement is not None for r in self.rows)
        counts = {name: 0 for name in self.check_pass_rates()}
        for row in self.rows:
            for name in (row.judgement.checks if row.judgement else ()):
                counts[_check_kind(name)] += 1
        counts.update(overall=judged, gate_clean=len(self.rows))
        lines = [f"{'rate':<14}{'value':>7}{'trials':>8}"]
        for name, value in self.rates().items():
            lines.append(f"{name:<14}{'n/a' if math.isnan(value) else f'{value:.3f}':>7}{counts[name]:>8}")
        lines.append("")
        lines.append(f"{'#':>3}  {'seed':>5}  {'shapes':<6}  {'gate':<7}  prompt")
        for k, r in enumerate(self.rows):
            verdict = "-" if r.judgement is None else "PASS" if r.judgement.passed else "FAIL"
            failed = r.failed_checks()
            problems = sorted({p.kind for p in r.gate.problems})
            notes = ([f"failed: {', '.join(failed)}"] if failed else []) + ([f"gate: {', '.join(problems)}"] if problems else [])
            line = f"{k:>3}  {r.seed:>5}  {verdict:<6}  {'clean' if r.gate.clean else 'flagged':<7}  {r.prompt}"
            lines.append(line + (f"  ({'; '.join(notes)})" if notes else ""))
        return "\n".join(lines)

    def to_dict(self) -> dict:
        nan_free = {k: None if math.isnan(v) else v for k, v in self.rates().items()}
        return {"settings": dict(self.settings), "rates": nan_free, "clips": [r.to_dict() for r in self.rows]}


def _verdicts(frames: np.ndarray, prompt: str, seed: int) -> ClipResult:
    from kinema.eval.gate import check
    from kinema.eval.shapes import judge
    from kinema.world.scene import CaptionError, parse_caption

    try:
        scene = parse_caption(prompt)
    except CaptionError:
        scene = None  # free text: no Shapes adherence to check
    return ClipResult(prompt, seed, None if scene is None else judge(frames, scene), check(frames))


def _interval(interval: tuple[float, float] | None) -> list[float] | None:
    """A guidance interval as JSON can hold it: None for guidance at every step."""
    if interval is None or (interval[0] <= 0 and math.isinf(interval[1])):
        return None
    return [float(interval[0]), float(interval[1])]


def evaluate_model(
    pipe: Pipeline,
    prompts: Sequence[str] | str,
    *,
    n: int | None = None,
    seed: int = 0,
    steps: int | None = None,
    guidance: float | None = None,
    guidance_interval: tuple[float, float] | None = None,
    sampler: str | None = None,
    frames: int | None = None,
    size: tuple[int, int] | None = None,
    batch_size: int = 8,
    keep_clips: int = 8,
    on_batch: Callable[[int, int], None] | None = None,
) -> ModelEval:
    """Generate a clip per prompt and judge each one.

    `prompts` is a list, or a prompt-set spec for load_prompts ("shapes:train",
    "shapes:heldout" or a file); `n` clips are made (default: one per listed prompt; a list
    is cycled to `n`). Clip k is generated from seed `seed + k`, the same noise
    text_to_video(pipe, prompts, seeds=seed) would give it in one batch, so batch_size
    changes speed and memory, never results. Unset generation options take the pipeline's
    defaults. `on_batch(done, total)` is called after each batch.
    """
    import torch

    from kinema.media import tensor_to_frames
    from kinema.tasks.t2v import text_to_video

    if isinstance(prompts, str):
        prompts = load_prompts(prompts, 1 if n is None else n, seed)
    prompts = list(prompts)
    if not prompts:
        raise KinemaError("no prompts to evaluate")
    n = len(prompts) if n is None else n
    if n < 1 or batch_size < 1:
        raise KinemaError(f"the number of clips and the batch size must be >= 1, got {n} and {batch_size}")
    prompts = [prompts[k % len(prompts)] for k in range(n)]
    c = pipe.config
    settings = {"prompts": n, "seed": seed, "steps": c.steps if steps is None else steps,
                "guidance": c.guidance if guidance is None else guidance,
                "guidance_interval": _interval(c.guidance_interval if guidance_interval is None else guidance_interval),
                "sampler": c.sampler if sampler is None else sampler,
                "frames": c.frames if frames is None else frames,
                "size": list((c.height, c.width) if size is None else size)}
    rows: list[ClipResult] = []
    clips: list[np.ndarray] = []
    for start in range(0, n, batch_size):
        batch = prompts[start:start + batch_size]
        seeds = [seed + start + b for b in range(len(batch))]
        with torch.inference_mode():
            videos = text_to_video(pipe, batch, seeds=seeds, steps=steps, guidance=guidance, sampler=sampler,
                                   guidance_interval=guidance_interval, frames=frames, size=size)  # (B, 3, T, H, W) in [-1, 1]
        for video, prompt, s in zip(videos, batch, seeds):
            clip = tensor_to_frames(video)  # (T, H, W, 3) uint8
            rows.append(_verdicts(clip, prompt, s))
            if len(clips) < keep_clips:
                clips.append(clip)
        if on_batch is not None:
            on_batch(len(rows), n)
    return ModelEval(rows=rows, settings=settings, clips=clips)


__all__ = ["ClipResult", "ModelEval", "evaluate_model", "load_prompts", "SHAPES_SETS"]
