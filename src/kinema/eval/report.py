"""Reports a person can look at: a contact sheet of frames, per-frame metric plots and an
HTML page that ties them together, with the frames the QA gate flagged marked in each.

A clip report (`kinema eval --report DIR`) is DIR/index.html + contact_sheet.png +
metrics.png; a model report (`kinema eval-model --report DIR`) is DIR/index.html +
pass_rates.png + clips.png. Each directory is written whole or not at all
(kinema.fileio.atomic_dir). Images are drawn with numpy and written by kinema.media (the
one module that touches PIL); plots use matplotlib's Agg canvas, imported only when a plot
is drawn, without pyplot's global state.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

import numpy as np

from kinema.fileio import atomic_dir

if TYPE_CHECKING:
    from kinema.eval.gate import GateResult
    from kinema.eval.model import ModelEval
    from kinema.eval.shapes import Judgement

# Contact sheet geometry, in pixels. Small frames are enlarged (nearest neighbour) to about
# MIN_CELL so a 16 px clip is still visible; large ones are subsampled to at most MAX_CELL.
MIN_CELL = 96
MAX_CELL = 256
BORDER = 3  # the frame's outline: red when the gate flagged the frame
GAP = 4  # space between cells
GLYPH_SCALE = 2  # the 3x5 digit font drawn at 6x10
LABEL_HEIGHT = 5 * GLYPH_SCALE + 4  # the strip above each frame holding its index
COLUMNS = 8
MAX_SHEET_FRAMES = 32  # longer clips show evenly spaced frames (and every flagged one)

FLAG_RGB = (230, 40, 40)
PLAIN_RGB = (70, 70, 70)
LABEL_RGB = (235, 235, 235)
SHEET_RGB = (20, 20, 20)

# Plots: a fixed figure size (no tight bbox) so the PNG size is known: width x height px.
PLOT_DPI = 100
PLOT_WIDTH_IN = 9.0
PLOT_ROW_IN = 1.8

CLIP_FILES = ("index.html", "contact_sheet.png", "metrics.png")
MODEL_FILES = ("index.html", "pass_rates.png", "clips.png")

# A 3x5 bitmap font for frame numbers: no font files, no PIL text drawing.
_GLYPHS = {
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111", "3": "111001111001111",
    "4": "101101111001001", "5": "111100111001111", "6": "111100111101111", "7": "111001010010010",
    "8": "111101111101111", "9": "111101111001111", "-": "000000111000000", ".": "000000000000010",
}


# ----------------------------------------------------------------------------- contact sheets

def _glyph(char: str) -> np.ndarray:
    """One character as a bool (5*S, 3*S) mask."""
    bits = np.array([c == "1" for c in _GLYPHS[char]]).reshape(5, 3)
    return bits.repeat(GLYPH_SCALE, 0).repeat(GLYPH_SCALE, 1)


def _draw_text(image: np.ndarray, text: str, top: int, left: int, rgb: tuple[int, int, int]) -> None:
    """Draw digits (and '-', '.') into uint8 (H, W, 3) `image` in place, clipped at its edges."""
    for char in text:
        mask = _glyph(char)
        h = min(mask.shape[0], image.shape[0] - top)
        w = min(mask.shape[1], image.shape[1] - left)
        if h <= 0 or w <= 0:
            return
        image[top:top + h, left:left + w][mask[:h, :w]] = rgb
        left += mask.shape[1] + GLYPH_SCALE


def cell_scale(height: int, width: int) -> tuple[int, int]:
    """(up, down): frames are enlarged `up` times, then every `down`-th pixel kept, so the
    larger side lands between MIN_CELL and MAX_CELL where it can."""
    side = max(height, width)
    up = max(1, math.ceil(MIN_CELL / side))
    down = max(1, math.ceil(side * up / MAX_CELL))
    return up, down


def _fit_cell(frame: np.ndarray, up: int, down: int) -> np.ndarray:
    """uint8 (h, w, 3) -> nearest-neighbour resized (h*up/down, w*up/down, 3)."""
    return frame.repeat(up, 0).repeat(up, 1)[::down, ::down]


def sheet_size(n: int, frame_size: tuple[int, int], columns: int = COLUMNS) -> tuple[int, int]:
    """(H, W) of the contact sheet of `n` cells of frames of `frame_size` (H, W)."""
    up, down = cell_scale(*frame_size)
    h, w = (-(-s * up // down) for s in frame_size)  # ceil: the length of [::down]
    cols = max(1, min(columns, n))
    rows = max(1, -(-n // cols))
    cell_h, cell_w = LABEL_HEIGHT + h + 2 * BORDER, w + 2 * BORDER
    return rows * cell_h + (rows + 1) * GAP, cols * cell_w + (cols + 1) * GAP


def _grid(cells: Sequence[tuple[np.ndarray, str, bool]], columns: int) -> np.ndarray:
    """(frame, label, flagged) cells, all frames one size -> uint8 sheet (H, W, 3), row-major."""
    frame_size = cells[0][0].shape[:2]
    up, down = cell_scale(*frame_size)
    sheet = np.empty((*sheet_size(len(cells), frame_size, columns), 3), np.uint8)
    sheet[:] = SHEET_RGB
    cols = max(1, min(columns, len(cells)))
    for k, (frame, label, flagged) in enumerate(cells):
        image = _fit_cell(frame, up, down)
        h, w = image.shape[:2]
        top = GAP + (k // cols) * (LABEL_HEIGHT + h + 2 * BORDER + GAP)
        left = GAP + (k % cols) * (w + 2 * BORDER + GAP)
        color = FLAG_RGB if flagged else LABEL_RGB
        _draw_text(sheet, label, top + 2, left + BORDER, color)
        y = top + LABEL_HEIGHT
        sheet[y:y + h + 2 * BORDER, left:left + w + 2 * BORDER] = FLAG_RGB if flagged else PLAIN_RGB
        sheet[y + BORDER:y + BORDER + h, left + BORDER:left + BORDER + w] = image
    return sheet


def sheet_frames(t: int, flagged: Iterable[int] = (), max_frames: int = MAX_SHEET_FRAMES) -> list[int]:
    """The frame indices a sheet shows: all of a short clip; for a long one, evenly spaced
    frames plus every flagged one (flagged frames are never dropped), in order."""
    flagged = sorted({int(f) for f in flagged if 0 <= f < t})
    if t <= max_frames:
        return list(range(t))
    spaced = np.linspace(0, t - 1, max(2, max_frames - len(flagged))).round().astype(int)
    return sorted(set(spaced.tolist()) | set(flagged))


def contact_sheet(frames: np.ndarray, flagged: Iterable[int] = (), *, columns: int = COLUMNS,
                  max_frames: int = MAX_SHEET_FRAMES) -> np.ndarray:
    """uint8 (T, H, W, 3) -> one uint8 image (H', W', 3): the frames in a grid, each under
    its index; flagged frames get a red outline and a red index."""
    flagged = set(int(f) for f in flagged)
    shown = sheet_frames(len(frames), flagged, max_frames)
    return _grid([(frames[i], str(i), i in flagged) for i in shown], columns)


def clips_sheet(clips: Sequence[np.ndarray], failed: Sequence[bool], *, frames_per_clip: int = 6) -> np.ndarray:
    """Several clips, one row each: `frames_per_clip` evenly spaced frames, each labelled
    "clip.frame"; a failed clip's row is outlined in red. Clips must share a frame size."""
    frames_per_clip = max(1, min(frames_per_clip, max(len(clip) for clip in clips)))
    cells = []
    for c, (clip, bad) in enumerate(zip(clips, failed)):
        picks = np.linspace(0, len(clip) - 1, min(frames_per_clip, len(clip))).round().astype(int)
        picks = list(picks) + [None] * (frames_per_clip - len(picks))  # short clips: blank cells
        for i in picks:
            frame = clip[i] if i is not None else np.zeros_like(clip[0])
            cells.append((frame, f"{c}.{i}" if i is not None else "", bool(bad) and i is not None))
    return _grid(cells, frames_per_clip)


# ----------------------------------------------------------------------------- plots

def _figure(rows: int, width_in: float = PLOT_WIDTH_IN):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, PLOT_ROW_IN * rows + 0.6), dpi=PLOT_DPI)
    FigureCanvasAgg(fig)
    return fig


def plot_size(rows: int) -> tuple[int, int]:
    """(H, W) in pixels of a plot with `rows` panels."""
    return round((PLOT_ROW_IN * rows + 0.6) * PLOT_DPI), round(PLOT_WIDTH_IN * PLOT_DPI)


def plot_series(path: str | Path, series: Mapping[str, np.ndarray], frames: int, flagged: Iterable[int] = ()) -> Path:
    """One panel per metric against the frame index, flagged frames shaded red in every panel.

    A series of length L < `frames` measures transitions, so it is drawn centred between
    the frames it spans (x = k + (frames - L) / 2): a frame difference sits between its two
    frames. A (L, 3) series (the per-frame mean colour) is drawn as R, G and B lines.
    """
    flagged = sorted(set(int(f) for f in flagged))
    fig = _figure(max(1, len(series)))
    axes = fig.subplots(max(1, len(series)), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (name, values) in zip(axes, series.items()):
        values = np.asarray(values, dtype=np.float64)
        x = np.arange(len(values)) + (frames - len(values)) / 2
        if values.ndim == 2:
            for j, color in enumerate(("tab:red", "tab:green", "tab:blue")[:values.shape[1]]):
                ax.plot(x, values[:, j], color=color, lw=1.2, marker=".")
        else:
            ax.plot(x, values, color="tab:blue", lw=1.2, marker=".")
        for f in flagged:
            ax.axvspan(f - 0.5, f + 0.5, color="red", alpha=0.2, lw=0)
        ax.set_ylabel(name, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("frame" + (f" (red: flagged {', '.join(map(str, flagged))})" if flagged else ""), fontsize=8)
    axes[-1].set_xlim(-0.5, frames - 0.5)
    height_in = PLOT_ROW_IN * len(axes) + 0.6
    fig.subplots_adjust(left=0.1, right=0.98, top=1 - 0.1 / height_in, bottom=0.5 / height_in, hspace=0.15)
    fig.savefig(path, dpi=PLOT_DPI)
    return Path(path)


def plot_pass_rates(path: str | Path, rates: Mapping[str, float]) -> Path:
    """A horizontal bar per rate in [0, 1], its value written at the bar's end."""
    fig = _figure(max(1, math.ceil(len(rates) / 3)))
    ax = fig.add_subplot(1, 1, 1)
    names = list(rates)[::-1]  # top to bottom in the given order
    values = [0.0 if not math.isfinite(rates[n]) else rates[n] for n in names]
    ax.barh(names, values, color=["tab:green" if v >= 0.5 else "tab:orange" for v in values])
    for y, (name, v) in enumerate(zip(names, values)):
        ax.text(min(v, 0.9) + 0.01, y, "n/a" if not math.isfinite(rates[name]) else f"{v:.2f}", va="center", fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("pass rate", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.grid(axis="x", alpha=0.3)
    height_in = fig.get_figheight()
    fig.subplots_adjust(left=0.22, right=0.97, top=1 - 0.2 / height_in, bottom=0.5 / height_in)
    fig.savefig(path, dpi=PLOT_DPI)
    return Path(path)


# ----------------------------------------------------------------------------- HTML

_STYLE = ("body{font-family:sans-serif;margin:1.5em;max-width:1100px}table{border-collapse:collapse;margin:0.5em 0 1em}"
          "td,th{border:1px solid #ccc;padding:2px 8px;text-align:left;font-size:14px}.fail{color:#c00;font-weight:bold}"
          ".pass{color:#080}img{max-width:100%;image-rendering:pixelated}")


def _fmt(value: object) -> str:
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "no", None: "n/a"}[value]
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def _table(header: Sequence[str], rows: Iterable[Sequence[object]], classes: Sequence[str] | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for k, row in enumerate(rows):
        cls = f' class="{classes[k]}"' if classes and classes[k] else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _page(title: str, parts: Sequence[str]) -> str:
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body>\n<h1>{html.escape(title)}</h1>\n" + "\n".join(parts) + "\n</body></html>\n")


def _judgement_html(judgement: Judgement) -> str:
    verdict = "PASS" if judgement.passed else "FAIL"
    rows = [(name, c.passed, c.value, c.threshold, c.detail) for name, c in judgement.checks.items()]
    return (f"<h2>Shapes adherence: <span class=\"{verdict.lower()}\">{verdict}</span></h2>"
            f"<p>{html.escape(judgement.caption)}</p>"
            + _table(("check", "passed", "value", "threshold", "detail"), rows,
                     ["" if c.passed else "fail" for c in judgement.checks.values()]))


def flagged_frames(gate: GateResult) -> list[int]:
    """Every frame any of the gate's problems names, sorted."""
    return sorted({int(f) for p in gate.problems for f in p.frames})


def _gate_html(gate: GateResult) -> str:
    if gate.clean:
        return "<h2>QA gate: <span class=\"pass\">clean</span></h2>"
    flagged = flagged_frames(gate)
    rows = [(p.kind, p.metric, ", ".join(map(str, p.frames)), p.value, p.threshold) for p in gate.problems]
    return (f"<h2>QA gate: <span class=\"fail\">{len(gate.problems)} problem(s)</span></h2>"
            f"<p>Flagged frames: <span class=\"fail\">{', '.join(map(str, flagged))}</span></p>"
            + "<ul>" + "".join(f"<li>{html.escape(p.message())}</li>" for p in gate.problems) + "</ul>"
            + _table(("kind", "metric", "frames", "value", "threshold"), rows))


def write_clip_report(out_dir: str | Path, frames: np.ndarray, gate: GateResult, *, title: str,
                      tables: Mapping[str, Mapping[str, object]] = {},
                      series: Mapping[str, np.ndarray] | None = None,
                      judgement: Judgement | None = None, notes: Sequence[str] = (),
                      docs: Mapping[str, str] = {}) -> Path:
    """Write a clip's report into `out_dir` (replacing it whole): index.html, contact_sheet.png
    (frames, flagged ones outlined red) and metrics.png (`series`, default the gate's per-frame
    metrics, flagged frames shaded). `tables` are name -> {metric: value} sections; `docs`
    explains metric names in a column beside them. Returns `out_dir`."""
    from kinema.media import write_image

    flagged = flagged_frames(gate)
    series = dict(gate.metrics.per_frame() if series is None else series)
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        write_image(tmp / "contact_sheet.png", contact_sheet(frames, flagged))
        plot_series(tmp / "metrics.png", series, len(frames), flagged)
        t, h, w, _ = frames.shape
        parts = [f"<p>{t} frames, {h}x{w}</p>"]
        parts += [f"<p><em>{html.escape(n)}</em></p>" for n in notes]
        parts.append(_gate_html(gate))
        if judgement is not None:
            parts.append(_judgement_html(judgement))
        for name, values in tables.items():
            rows = [(k, v, docs.get(k, "")) for k, v in values.items()]
            parts.append(f"<h2>{html.escape(name)}</h2>" + _table(("metric", "value", "meaning"), rows))
        parts.append("<h2>Frames</h2><img src=\"contact_sheet.png\" alt=\"contact sheet\">")
        parts.append("<h2>Per-frame metrics</h2><img src=\"metrics.png\" alt=\"per-frame metrics\">")
        (tmp / "index.html").write_text(_page(title, parts), encoding="utf-8")
    return out_dir


def write_model_report(out_dir: str | Path, result: ModelEval, *, title: str, max_clips: int = 8) -> Path:
    """Write a model evaluation's report into `out_dir` (replacing it whole): index.html with
    the pass-rate table and one row per generated clip, pass_rates.png (a bar per check, the
    overall rate and the gate's clean rate) and clips.png (the first `max_clips` kept clips,
    one row each, failed ones outlined red). Returns `out_dir`."""
    from kinema.media import write_image

    rates = result.rates()
    clips = result.clips[:max_clips]
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        plot_pass_rates(tmp / "pass_rates.png", rates)
        if clips:
            write_image(tmp / "clips.png", clips_sheet(clips, [not r.ok for r in result.rows[:len(clips)]]))
        settings = {k: v for k, v in result.settings.items()}
        parts = [_table(("setting", "value"), settings.items()),
                 "<h2>Pass rates</h2>" + _table(("rate", "value"), rates.items()),
                 "<img src=\"pass_rates.png\" alt=\"pass rates\">",
                 "<h2>Clips</h2>" + _table(
                     ("#", "prompt", "seed", "shapes", "failed checks", "gate", "gate problems"),
                     [(k, r.prompt, r.seed, None if r.judgement is None else r.judgement.passed,
                       ", ".join(r.failed_checks()), "clean" if r.gate.clean else "flagged",
                       "; ".join(p.message() for p in r.gate.problems)) for k, r in enumerate(result.rows)],
                     ["" if r.ok else "fail" for r in result.rows])]
        if clips:
            parts.append(f"<h2>First {len(clips)} clips</h2><p>Row k is clip #k; cells are labelled clip.frame.</p>"
                         "<img src=\"clips.png\" alt=\"generated clips\">")
        (tmp / "index.html").write_text(_page(title, parts), encoding="utf-8")
    return out_dir


__all__ = ["contact_sheet", "clips_sheet", "sheet_size", "sheet_frames", "plot_series", "plot_pass_rates",
           "plot_size", "flagged_frames", "write_clip_report", "write_model_report"]
