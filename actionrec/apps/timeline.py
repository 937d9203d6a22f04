"""A labelled timeline of a long video: smoothed per-window probabilities, segments, time per class, writers.

The per-window probabilities come from :mod:`actionrec.apps.windows` (one streaming pass through the engine).
Decisions (:func:`build_timeline`), all from those probabilities:

* smoothing: a centred running median over ``smooth`` seconds of windows (default 1 s: 3 windows at a 0.5 s stride),
  which removes one-window flickers without moving the cuts;
* labels: each window gets the class with the highest smoothed probability among those at or above their threshold,
  or ``none`` when no class reaches its threshold. Thresholds are per class: calibrated on the run's validation clips
  when the run recorded their probabilities (``val_probs``/``val_labels`` in metrics.json, see :func:`calibrate`), else
  :data:`DEFAULT_THRESHOLD`;
* segments: runs of windows with the same label; runs shorter than ``min_segment`` (default 1.5 strides: a one-window
  blip) are given to their neighbours. A cut between two segments is placed where the deciding score (p_A - p_B, or
  p_A - threshold next to ``none``) crosses the level halfway between its typical values on either side, interpolated
  between window centres: a window straddling a cut scores roughly in proportion to its frames on each side, so this
  finds the cut to a fraction of the stride (and always within one stride);
* totals: seconds per label, ``none`` included; they add up to the duration.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..defaults import DEFAULT_SMOOTH
from ..errors import ActionrecError
from ..models.info import check_classifier
from ..ready import engine_of
from .calibration import DEFAULT_THRESHOLD, resolve_labels, thresholds_for
from .categories import Groups
from .windows import WindowProbs, window_probabilities_iter

if TYPE_CHECKING:
    from torch import nn

    from ..engine import Engine
    from ..ready import ReadyEngine

NONE = "none"
# A timeline's files, by kind: `<video stem>.<suffix>` (the CLI's --out folder, the page's downloads)
DOWNLOADS = {"json": "timeline.json", "csv": "segments.csv", "windows.csv": "windows.csv", "srt": "srt", "png": "timeline.png"}


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    label: str
    confidence: float

    @property
    def duration(self) -> float:
        return self.end - self.start

    def to_dict(self) -> dict:
        return {"start": round(self.start, 3), "end": round(self.end, 3), "label": self.label,
                "confidence": round(float(self.confidence), 4)}


@dataclass
class Timeline:
    """A labelled video: segments, time per label, and the per-window traces they were decided from."""

    video: str
    model: str
    duration: float
    window: float
    stride: float
    labels: tuple[str, ...]  # reported classes, in the order of the columns of `smoothed`
    thresholds: dict[str, float]
    threshold_source: str
    starts: np.ndarray
    ends: np.ndarray
    probs: np.ndarray  # (N, L) raw probabilities of the reported classes
    smoothed: np.ndarray  # (N, L)
    window_labels: list[str]  # decision per window
    segments: list[Segment]
    totals: dict[str, float] = field(default_factory=dict)
    from_cache: bool = False
    warning: str | None = None  # the video decoded shorter than its container declares
    windows: WindowProbs | None = None  # the per-window probabilities of every class it was decided from

    @property
    def centres(self) -> np.ndarray:
        return (self.starts + self.ends) / 2

    def to_dict(self) -> dict:
        return {
            "video": self.video,
            "duration": round(self.duration, 3),
            "segments": [s.to_dict() for s in self.segments],
            "totals": {k: round(v, 3) for k, v in self.totals.items()},
            "model": self.model,
            "window": round(self.window, 4),
            "stride": round(self.stride, 4),
            "thresholds": {k: round(v, 4) for k, v in self.thresholds.items()},
            **({"warning": self.warning} if self.warning else {}),
        }

    # -- files

    def write_json(self, path: str | os.PathLike) -> Path:
        return _write_text(path, json.dumps(self.to_dict(), indent=1) + "\n")

    def write_segments_csv(self, path: str | os.PathLike) -> Path:
        rows = [["start", "end", "duration", "label", "confidence"]]
        rows += [[f"{s.start:.3f}", f"{s.end:.3f}", f"{s.duration:.3f}", s.label, f"{s.confidence:.4f}"] for s in self.segments]
        return _write_csv(path, rows)

    def write_windows_csv(self, path: str | os.PathLike) -> Path:
        """One row per window: its span, the decided label and the raw probability of each reported class."""
        rows = [["start", "end", "label", *self.labels]]
        for k in range(len(self.starts)):
            rows.append([f"{self.starts[k]:.3f}", f"{self.ends[k]:.3f}", self.window_labels[k],
                         *(f"{p:.4f}" for p in self.probs[k])])
        return _write_csv(path, rows)

    def write_srt(self, path: str | os.PathLike) -> Path:
        """A subtitle per labelled segment (``none`` is left out): "Label (0.93)"."""
        blocks = []
        for s in (s for s in self.segments if s.label != NONE):
            blocks.append(f"{len(blocks) + 1}\n{_srt_time(s.start)} --> {_srt_time(s.end)}\n{s.label} ({s.confidence:.2f})\n")
        return _write_text(path, "\n".join(blocks))

    def write_png(self, path: str | os.PathLike, max_traces: int = 10) -> Path:
        """Smoothed probability traces with the thresholds (top) over the bar of segments (bottom)."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
        from matplotlib.patches import Patch

        shown = [l for l in self.labels if any(s.label == l for s in self.segments)]
        if len(self.labels) <= max_traces:
            shown = list(self.labels)
        else:
            extra = [self.labels[i] for i in np.argsort(-self.smoothed.max(0)) if self.labels[i] not in shown]
            shown = (shown + extra)[:max_traces]
        colours = {l: plt.get_cmap("tab10")(i % 10) for i, l in enumerate(shown)}
        width = float(np.clip(6 + self.duration / 60, 8, 24))
        fig, (ax, bar) = plt.subplots(2, 1, figsize=(width, 4.2), sharex=True, gridspec_kw={"height_ratios": [4, 1]})
        x = self.centres
        for l in shown:
            i = self.labels.index(l)
            ax.plot(x, self.smoothed[:, i], color=colours[l], lw=1.4, label=l)
            ax.axhline(self.thresholds[l], color=colours[l], lw=0.7, ls="--", alpha=0.6)
        ax.set_ylim(0, 1.02)
        ax.set_ylabel("probability")
        ax.set_title(f"{Path(self.video).name}: {self.model} (window {self.window:g} s, stride {self.stride:g} s)", fontsize=9)
        ax.legend(loc="upper right", fontsize=7, ncol=min(len(shown), 5), framealpha=0.8)
        for s in self.segments:
            colour = colours.get(s.label, (0.75, 0.75, 0.75, 1.0) if s.label == NONE else (0.4, 0.4, 0.4, 1.0))
            bar.axvspan(s.start, s.end, color=colour, lw=0)
        bar.set_yticks([])
        bar.set_xlim(0, self.duration)
        bar.set_xlabel("time (s)")
        bar.legend(handles=[Patch(color=(0.75, 0.75, 0.75), label=NONE)], loc="upper right", fontsize=7)
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path

    def write(self, kind: str, folder: str | os.PathLike, stem: str | None = None) -> Path:
        """The file of `kind` (one of :data:`DOWNLOADS`) in `folder`, named `<stem>.<suffix>` (default stem: the
        video's)."""
        if kind not in DOWNLOADS:
            raise ActionrecError(f"unknown timeline file {kind!r}; choose one of {', '.join(DOWNLOADS)}")
        writer = {"json": self.write_json, "csv": self.write_segments_csv, "windows.csv": self.write_windows_csv,
                  "srt": self.write_srt, "png": self.write_png}[kind]
        return writer(Path(folder) / f"{stem or Path(self.video).stem or 'video'}.{DOWNLOADS[kind]}")

    def write_all(self, folder: str | os.PathLike, stem: str | None = None) -> dict[str, Path]:
        """Every file of :data:`DOWNLOADS` (segments CSV, windows CSV, JSON, SRT and PNG) in `folder`, by kind."""
        return {kind: self.write(kind, folder, stem) for kind in DOWNLOADS}

    def summary(self) -> str:
        """Time per label (minutes:seconds and share of the video) for the labels that took time (and `none`), with how
        many took none (the files keep every label), then the thresholds."""
        lines = [
            f"{self.video}: {format_clock(self.duration)} ({self.duration / 60:.2f} min), {len(self.starts)} windows of "
            f"{self.window:g} s every {self.stride:g} s, {len(self.segments)} segments",
        ]
        shown = [l for l in self.totals if l == NONE or any(s.label == l for s in self.segments)]
        width = max(len(l) for l in shown + ["label"])
        lines.append(f"  {'label':<{width}}  {'time':>9}  {'minutes':>8}  {'share':>6}  segments")
        order = sorted(shown, key=lambda l: (l == NONE, -self.totals[l]))
        for label in order:
            seconds = self.totals[label]
            count = sum(1 for s in self.segments if s.label == label)
            share = seconds / self.duration * 100 if self.duration else 0.0
            lines.append(f"  {label:<{width}}  {format_clock(seconds):>9}  {seconds / 60:8.2f}  {share:5.1f}%  {count}")
        omitted = len(self.totals) - len(shown)
        if omitted:
            lines.append(f"  ({omitted} other label{'s' if omitted != 1 else ''} took no time: omitted here, kept in the files)")
        lines.append(f"thresholds: {self.threshold_source}")
        return "\n".join(lines)


def format_clock(seconds: float) -> str:
    """h:mm:ss.s or m:ss.s."""
    seconds = max(0.0, float(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{int(h)}:{int(m):02d}:{s:04.1f}" if h >= 1 else f"{int(m)}:{s:04.1f}"


def _srt_time(seconds: float) -> str:
    ms = int(round(max(0.0, seconds) * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d},{ms:03d}"


def _write_text(path: str | os.PathLike, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _write_csv(path: str | os.PathLike, rows: list[list]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    return path


def smooth_probs(probs: np.ndarray, centres: np.ndarray, seconds: float) -> np.ndarray:
    """Centred running median over the windows whose centres lie within ``seconds / 2`` of each window's centre.

    A median removes flickers shorter than half its span and, unlike a mean, leaves a step where it is: a confident
    class does not spill into a neighbouring stretch of ``none``.
    """
    if seconds <= 0 or len(probs) < 2:
        return probs.copy()
    half = seconds / 2 + 1e-9
    lo = np.searchsorted(centres, centres - half, side="left")
    hi = np.searchsorted(centres, centres + half, side="right")
    out = np.empty_like(probs)
    for k in range(len(probs)):
        out[k] = probs[k] if hi[k] - lo[k] < 3 else np.median(probs[lo[k] : hi[k]], axis=0)
    return out


def _decide(smoothed: np.ndarray, thr: np.ndarray) -> np.ndarray:
    """Index of the label of each window (-1: none): the highest score among the classes at their threshold."""
    masked = np.where(smoothed >= thr[None, :], smoothed, -np.inf)
    best = masked.argmax(1)
    best[~np.isfinite(masked.max(1))] = -1
    return best


def _score_diff(k: int, a: int, b: int, s: np.ndarray, thr: np.ndarray) -> float:
    """> 0 where label `a` wins over label `b` at window k (-1 is none): s_a - s_b, s_a - thr_a, or thr_b - s_b."""
    if a >= 0 and b >= 0:
        return float(s[k, a] - s[k, b])
    if a >= 0:
        return float(s[k, a] - thr[a])
    return float(thr[b] - s[k, b])


def _boundary(left: list[int], right: list[int], a: int, b: int, x: np.ndarray, s: np.ndarray, thr: np.ndarray) -> float:
    """Where label `a` (windows `left`) gives way to label `b` (windows `right`), from the raw (unsmoothed) scores `s`.

    A window straddling a cut scores about in proportion to how much of it lies on each side, so the cut is where the
    deciding score difference crosses the level halfway between its typical values on the two sides (the medians over
    each run): interpolated between window centres, near the last window of `a` and the first of `b`. Without such a
    crossing, the midpoint between those two centres.
    """
    g = {k: _score_diff(k, a, b, s, thr) for k in left[-3:] + right[:3]}
    ga = float(np.median([g[k] for k in left[-3:]]))
    gb = float(np.median([g[k] for k in right[:3]]))
    level = (ga + gb) / 2 if ga > gb else 0.0
    ks = sorted(g)
    pairs = [(i, j) for i, j in zip(ks[:-1], ks[1:]) if j == i + 1 and g[i] - level >= 0 > g[j] - level]
    if not pairs:
        return float((x[left[-1]] + x[right[0]]) / 2)
    i, j = min(pairs, key=lambda p: abs(p[0] - left[-1]))
    return cross_point(x[i], x[j], g[i] - level, g[j] - level)


def _runs(decided: np.ndarray) -> list[list]:
    """[label index, window indices] for each run of equal decisions."""
    runs: list[list] = []
    for k, label in enumerate(decided.tolist()):
        if runs and runs[-1][0] == label:
            runs[-1][1].append(k)
        else:
            runs.append([label, [k]])
    return runs


def _absorb_short(runs: list[list], x: np.ndarray, duration: float, min_segment: float) -> list[list]:
    """Give runs shorter than `min_segment` (boundaries at the midpoints between window centres) to their neighbours,
    shortest first: merged with neighbours of the same label on both sides, else split in two halves between them
    (all to the only neighbour at an edge)."""
    runs = [[label, list(ks)] for label, ks in runs]

    def length(run: list) -> float:
        ks = run[1]
        lo = 0.0 if ks[0] == 0 else (x[ks[0] - 1] + x[ks[0]]) / 2
        hi = duration if ks[-1] == len(x) - 1 else (x[ks[-1]] + x[ks[-1] + 1]) / 2
        return float(hi - lo)

    while len(runs) > 1:
        lengths = [length(r) for r in runs]
        i = int(np.argmin(lengths))
        if lengths[i] >= min_segment:
            break
        ks = runs[i][1]
        if 0 < i < len(runs) - 1:
            half = (len(ks) + 1) // 2 if lengths[i - 1] <= lengths[i + 1] else len(ks) // 2
            runs[i - 1][1] += ks[:half]
            runs[i + 1][1] = ks[half:] + runs[i + 1][1]
        elif i > 0:
            runs[i - 1][1] += ks
        else:
            runs[i + 1][1] = ks + runs[i + 1][1]
        del runs[i]
        merged = [runs[0]]
        for run in runs[1:]:
            if run[0] == merged[-1][0]:
                merged[-1][1] += run[1]
            else:
                merged.append(run)
        runs = merged
    return runs


def build_timeline(
    wp: WindowProbs,
    labels: Sequence[str] | None = None,
    thresholds: dict[str, float] | None = None,
    threshold_source: str = "",
    smooth: float = DEFAULT_SMOOTH,
    min_segment: float | None = None,
) -> Timeline:
    """Segments and totals from per-window probabilities (see the module doc). ``labels`` restricts the reported
    classes (the others fall into ``none``); ``min_segment`` defaults to 1.5 strides."""
    labels = tuple(labels) if labels is not None else tuple(wp.categories)
    columns = [wp.categories.index(l) for l in labels]
    thresholds = dict(thresholds) if thresholds is not None else {l: DEFAULT_THRESHOLD for l in labels}
    if min_segment is None:
        min_segment = 1.5 * wp.stride
    if smooth < 0 or min_segment < 0:
        raise ActionrecError("--smooth and --min-segment must be >= 0 seconds")
    probs = wp.probs[:, columns]
    x = wp.centres
    smoothed = smooth_probs(probs, x, smooth)
    thr = np.array([thresholds[l] for l in labels], np.float64)
    decided = _decide(smoothed, thr)
    final = _absorb_short(_runs(decided), x, wp.duration, min_segment)
    runs, start = [], 0.0
    for i, (idx, windows) in enumerate(final):
        if i + 1 < len(final):
            end = _boundary(windows, final[i + 1][1], idx, final[i + 1][0], x, probs, thr)
            end = min(max(end, start), wp.duration)
        else:
            end = wp.duration
        runs.append((start, end, idx, windows))
        start = end

    segments = []
    for start, end, idx, windows in runs:
        if idx >= 0:
            confidence = float(smoothed[windows, idx].mean()) if windows else 0.0
        else:
            confidence = float((1.0 - smoothed[windows].max(1)).mean()) if windows and smoothed.shape[1] else 1.0
        if end - start > 1e-9 or not segments:
            segments.append(Segment(float(start), float(end), labels[idx] if idx >= 0 else NONE, confidence))
    totals = {l: 0.0 for l in labels}
    totals[NONE] = 0.0
    for s in segments:
        totals[s.label] += s.duration
    window_labels = [NONE] * len(x)
    for idx, windows in final:
        for k in windows:
            window_labels[k] = labels[idx] if idx >= 0 else NONE
    return Timeline(wp.video, wp.model, wp.duration, wp.window, wp.stride, labels, thresholds, threshold_source,
                    wp.starts, wp.ends, probs, smoothed, window_labels, segments, totals, wp.from_cache, wp.warning, wp)


def timeline(
    video: str | os.PathLike,
    model: nn.Module | Engine | ReadyEngine | str,
    *,
    window: float | None = None,
    stride: float | None = None,
    labels: str | Sequence[str] | None = None,
    threshold: float | None = None,
    smooth: float = DEFAULT_SMOOTH,
    min_segment: float | None = None,
    batch_size: int | None = None,
    cache: str | os.PathLike | bool | None = None,
    progress: Callable[[int, int], None] | None = None,
    groups: Groups | None = None,
) -> Timeline:
    """The labelled timeline of a whole video: the one composition of `actionrec timeline`, the page and Python (labels
    resolved, thresholds calibrated or given, per-window probabilities in one streaming pass or from the cache, then
    :func:`build_timeline`). `model` is a loaded model, a weights name or a run directory; `cache` as in
    :func:`~actionrec.apps.windows.window_probabilities`. The result keeps the probabilities of every class
    (`Timeline.windows`), which the page stores to relabel. `groups` (:func:`~actionrec.apps.categories.load_groups`)
    sums each window's probabilities per group before smoothing, and `labels` then name groups; thresholds calibrated
    per class do not carry over to groups, so a group takes `threshold` or the default."""
    (tl,) = timeline_iter([video], model, window=window, stride=stride, labels=labels, threshold=threshold,
                          smooth=smooth, min_segment=min_segment, batch_size=batch_size, cache=cache, progress=progress,
                          groups=groups)
    return tl


def timeline_iter(
    videos: Iterable[str | os.PathLike],
    model: nn.Module | Engine | ReadyEngine | str,
    *,
    window: float | None = None,
    stride: float | None = None,
    labels: str | Sequence[str] | None = None,
    threshold: float | None = None,
    smooth: float = DEFAULT_SMOOTH,
    min_segment: float | None = None,
    batch_size: int | None = None,
    cache: str | os.PathLike | bool | None = None,
    progress: Callable[[int, int], None] | None = None,
    groups: Groups | None = None,
    on_error: Callable[[str, str], None] | None = None,
) -> Iterator[Timeline]:
    """:func:`timeline` of each video, in order, in one engine stream
    (:func:`~actionrec.apps.windows.window_probabilities_iter`: decode-ahead and batches cross video boundaries, a
    cached video runs no network); each is yielded as its last window ran. A video that cannot be read goes to
    ``on_error(video, message)`` (raised when None). An archive's stream (:data:`~actionrec.apps.archive.Stream`)."""
    if isinstance(model, (str, os.PathLike)):
        from ..engine import load_model

        model = load_model(model)
    engine = engine_of(model)
    check_classifier(engine.info)
    chosen = resolve_labels(labels, groups.names if groups else engine.info.categories)
    thresholds, source = thresholds_for(None if groups else engine.info, chosen, threshold)
    for wp in window_probabilities_iter(videos, engine, window, stride, batch_size=batch_size, cache=cache,
                                        progress=progress, on_error=on_error):
        yield build_timeline(groups.apply(wp) if groups else wp, chosen, thresholds, source, smooth=smooth,
                             min_segment=min_segment)


def cross_point(x0: float, x1: float, f0: float, f1: float) -> float:
    """Zero of the line through (x0, f0), (x1, f1), clipped to [x0, x1] (the midpoint when it is flat)."""
    if f0 == f1:
        return float((x0 + x1) / 2)
    return float(np.clip(x0 + (x1 - x0) * f0 / (f0 - f1), min(x0, x1), max(x0, x1)))
