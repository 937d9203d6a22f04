"""What to look at next: the stretches of long videos where a model disagrees with the labels, or is least sure.

The one function for reviewing a model's work (the CLI's `actionrec suggest`, the page's review, Python). For each
video, :func:`~actionrec.apps.timeline.timeline` gives the smoothed per-window probabilities and the model's segments
(one streaming pass, or the timeline cache); from those:

* **disagrees**: where a labelled segment overlaps a segment of the model's timeline with another label for at least
  :data:`MIN_STRETCH` seconds, and the model's label for that stretch (the top class of its windows' mean
  probabilities, ``none`` when under the class's threshold) reaches its threshold and differs from the segment's
  (a run trained on background has a class ``none``: a confident ``none`` over a labelled action disagrees too). Score
  ``1 + confidence``: every disagreement ranks above every uncertain stretch, the most confident first.
* **uncertain**: runs of windows with one decided label whose decision margin is under :data:`UNSURE_MARGIN` (gaps
  of one window bridged), at least :data:`MIN_STRETCH` seconds long. A window's margin (:func:`decision_margins`) is
  the smaller of the gap between its top two classes and the distance of its top class from that class's threshold
  (as a share of the way to 0 or 1): both say how close the decision came to going another way. A run never spans
  two decided labels, so the window or two at a cut between two confident actions is not suggested. Score: the
  stretch's mean ``1 - margin`` (below 1). Stretches mostly covered by a labelled segment
  with the model's label, or by a disagreement, are skipped: they are labelled already ("label these next").
* **unlabelled**: the model's confident segments (a class, not ``none``) over time no labelled segment covers, at least
  :data:`MIN_STRETCH` seconds, and not already an uncertain stretch: the model's own labels, which one key accepts.
  Score ``confidence - 1``: they rank after the other two kinds, the most confident first.

Suggestions of all the videos are ranked together; the top N come back.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from torch import nn

from ..engine import Engine, engine_for
from ..defaults import DEFAULT_SUGGESTIONS
from ..errors import ActionrecError
from ..models.info import check_classifier
from .calibration import resolve_labels, thresholds_for
from .timeline import NONE, Timeline, timeline

KINDS = ("disagrees", "uncertain", "unlabelled")
MIN_STRETCH = 1.0  # seconds: shorter stretches (a window or two at a cut between actions) are not suggested
UNSURE_MARGIN = 0.3  # a window whose decision margin is under this is uncertain


@dataclass(frozen=True)
class Suggestion:
    """A stretch of a video to review: where the model contradicts a label, or where it is least sure."""

    video: str
    start: float  # seconds
    end: float
    kind: str  # "disagrees" | "uncertain" | "unlabelled"
    label: str  # the model's label for the stretch ("none" under its threshold)
    confidence: float  # mean probability of that label over the stretch's windows
    score: float  # ranking key: higher first (disagreements > 1 > uncertain stretches > 0 > unlabelled ones)
    current: str | None  # the label of the labelled segment it overlaps most, if any

    @property
    def duration(self) -> float:
        return self.end - self.start

    def to_dict(self) -> dict:
        return {"video": self.video, "start": round(self.start, 3), "end": round(self.end, 3), "kind": self.kind,
                "label": self.label, "confidence": round(float(self.confidence), 4),
                "score": round(float(self.score), 4), "current": self.current}


Labelled = tuple[float, float, str]  # (start, end, label) of a labelled segment of one video


def suggest(
    model_or_run: nn.Module | Engine | str | os.PathLike,
    videos: Sequence[str | os.PathLike],
    segments: Iterable[object] = (),
    top: int = DEFAULT_SUGGESTIONS,
    *,
    cache: str | os.PathLike | bool | None = None,
    progress: Callable[[int, int], None] | None = None,
    on_error: Callable[[str, str], None] | None = None,
    **engine_options,
) -> list[Suggestion]:
    """The `top` stretches of `videos` most worth a look, best first (see the module doc).

    `model_or_run`: a loaded model, a weights name or a run directory (loaded once). `segments`: the labelled ranges,
    objects with ``.video``, ``.start``, ``.end`` (None: the whole video) and ``.label``, e.g. the samples of
    :func:`~actionrec.data.manifest.load_manifest`; those of other videos are ignored. `cache` as in
    :func:`~actionrec.apps.timeline.timeline`, and `engine_options` are its options by name (window, stride, labels,
    threshold, smooth, min_segment, batch_size). ``progress(done, total)``: thousandths of a video, 1000 per video.
    ``on_error(video, message)``: a video that cannot be read is reported there and the others go on (without it,
    the error is raised).
    """
    if not videos:
        raise ActionrecError("suggest needs at least one video: give video files or a manifest that lists them")
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ActionrecError(f"--top must be a whole number >= 1, not {top!r}")
    if not isinstance(model_or_run, (nn.Module, Engine)):
        from ..engine import load_model

        model_or_run = load_model(model_or_run)
    engine = engine_for(model_or_run)
    check_classifier(engine.info)
    chosen = resolve_labels(engine_options.get("labels"), engine.info.categories)  # wrong options: said once, first
    thresholds_for(engine.info, chosen, engine_options.get("threshold"))
    labelled = labelled_by_video(segments)
    found: list[Suggestion] = []
    for i, video in enumerate(videos):
        step = None if progress is None else _video_progress(progress, i, len(videos))
        try:
            tl = timeline(video, engine, cache=cache, progress=step, **engine_options)
        except ActionrecError as err:
            if on_error is None:
                raise
            on_error(os.fspath(video), str(err))
            continue
        found += suggestions_of(tl, labelled.get(_key(video), []))
    return sorted(found, key=lambda s: (-s.score, s.video, s.start))[:top]


def suggestions_of(tl: Timeline, labelled: Sequence[Labelled]) -> list[Suggestion]:
    """Every suggestion of one video's timeline, given its labelled segments (unranked)."""
    labelled = [(max(0.0, a), min(tl.duration, b), label) for a, b, label in labelled if b > a]
    disagreements = _disagreements(tl, labelled)
    uncertain = [s for s in _uncertain(tl, labelled) if not any(_overlap(s.start, s.end, d.start, d.end) * 2 > s.duration
                                                                 for d in disagreements)]
    unlabelled = [s for s in _unlabelled(tl, labelled) if not any(_overlap(s.start, s.end, u.start, u.end) * 2 > s.duration
                                                                  for u in uncertain)]
    return disagreements + uncertain + unlabelled


def labelled_by_video(segments: Iterable[object]) -> dict[str, list[Labelled]]:
    """(start, end, label) of each segment by its video (resolved path); a whole-video segment spans all of it."""
    out: dict[str, list[Labelled]] = {}
    for s in segments:
        try:
            video, start, end, label = s.video, s.start, s.end, s.label
        except AttributeError:
            raise ActionrecError(f"a labelled segment needs .video, .start, .end and .label, not {s!r}") from None
        start = 0.0 if start is None else float(start)
        end = float("inf") if end is None else float(end)
        out.setdefault(_key(video), []).append((start, end, str(label)))
    return out


# ----------------------------------------------------------------------------------------------- the three kinds


def _disagreements(tl: Timeline, labelled: Sequence[Labelled]) -> list[Suggestion]:
    """Overlaps of labelled segments with the model's segments of another label, where the model names a class."""
    out = []
    for a, b, current in labelled:
        for seg in tl.segments:
            start, end = max(a, seg.start), min(b, seg.end)
            if seg.label == current or end - start < MIN_STRETCH:
                continue
            label, confidence, confident = _stretch_label(tl, _windows_in(tl, start, end))
            if label != current and confident:
                out.append(Suggestion(tl.video, start, end, "disagrees", label, confidence, 1.0 + confidence, current))
    return out


def _uncertain(tl: Timeline, labelled: Sequence[Labelled]) -> list[Suggestion]:
    """Runs of windows under :data:`UNSURE_MARGIN`, except those labelled already with the model's label."""
    margin = decision_margins(tl)
    edges = _window_edges(tl)
    out = []
    for ks in _runs(np.flatnonzero(margin < UNSURE_MARGIN), tl.window_labels):
        start, end = float(edges[ks[0]]), float(edges[ks[-1] + 1])
        if end - start < MIN_STRETCH:
            continue
        label, confidence, _ = _stretch_label(tl, ks)
        current = _most_overlapped(labelled, start, end)
        if current is not None and current[2] == label and _overlap(start, end, current[0], current[1]) * 2 > end - start:
            continue
        score = float(np.mean(1.0 - margin[ks]))
        out.append(Suggestion(tl.video, start, end, "uncertain", label, confidence, score, current and current[2]))
    return out


def _unlabelled(tl: Timeline, labelled: Sequence[Labelled]) -> list[Suggestion]:
    """The parts of the model's confident segments that no labelled segment covers."""
    out = []
    for seg in tl.segments:
        if seg.label == NONE:
            continue
        for start, end in _uncovered(seg.start, seg.end, labelled):
            if end - start < MIN_STRETCH:
                continue
            label, confidence, confident = _stretch_label(tl, _windows_in(tl, start, end))
            if confident and label != NONE:
                out.append(Suggestion(tl.video, start, end, "unlabelled", label, confidence, confidence - 1.0, None))
    return out


def _uncovered(start: float, end: float, labelled: Sequence[Labelled]) -> list[tuple[float, float]]:
    """[start, end) less every labelled segment, as ranges in order."""
    parts, at = [], start
    for a, b, _ in sorted(labelled):
        if b <= at or a >= end:
            continue
        if a > at:
            parts.append((at, a))
        at = max(at, b)
    return parts + ([(at, end)] if at < end else [])


def decision_margins(tl: Timeline) -> np.ndarray:
    """Per window, in [0, 1] from the smoothed probabilities: the smaller of (top - second probability) and the top
    class's distance from its threshold t as a share of the way to 1 (above it: (p - t) / (1 - t)) or to 0 (below
    it: (t - p) / t)."""
    p = tl.smoothed
    if p.shape[1] == 0:
        return np.ones(len(p))
    ordered = np.sort(p, axis=1)
    first = ordered[:, -1]
    second = ordered[:, -2] if p.shape[1] > 1 else np.zeros(len(p))
    t = np.array([tl.thresholds[l] for l in tl.labels])[p.argmax(1)]
    to_threshold = np.where(first >= t, (first - t) / np.maximum(1 - t, 1e-6), (t - first) / np.maximum(t, 1e-6))
    return np.minimum(first - second, to_threshold)


# ----------------------------------------------------------------------------------------------- helpers


def _stretch_label(tl: Timeline, ks: Sequence[int]) -> tuple[str, float, bool]:
    """(label, mean probability of it, whether a class reached its threshold) from the mean smoothed probabilities of
    windows `ks`: the top class, or ``none`` when that is under its threshold. A run trained on background has a
    class named ``none``: reaching its threshold is a confident ``none``."""
    mean = tl.smoothed[list(ks)].mean(0)
    i = int(mean.argmax())
    label = tl.labels[i]
    confident = bool(mean[i] >= tl.thresholds[label])
    return (label if confident else NONE), float(mean[i]), confident


def _windows_in(tl: Timeline, start: float, end: float) -> list[int]:
    """The windows centred in [start, end] (the nearest one when none is)."""
    x = tl.centres
    ks = np.flatnonzero((x >= start) & (x <= end)).tolist()
    return ks or [int(np.argmin(np.abs(x - (start + end) / 2)))]


def _window_edges(tl: Timeline) -> np.ndarray:
    """N + 1 edges: window k spans [edges[k], edges[k + 1]] (midpoints between centres, 0 and the duration)."""
    x = tl.centres
    return np.concatenate([[0.0], (x[:-1] + x[1:]) / 2, [tl.duration]])


def _runs(indices: np.ndarray, labels: Sequence[str], gap: int = 1) -> list[list[int]]:
    """Runs of sorted window indices with one label each, bridging gaps of up to `gap` windows of that label."""
    runs: list[list[int]] = []
    for k in indices.tolist():
        last = runs[-1][-1] if runs else None
        if last is not None and k - last <= gap + 1 and all(labels[j] == labels[k] for j in range(last, k)):
            runs[-1] += list(range(runs[-1][-1] + 1, k + 1))
        else:
            runs.append([k])
    return runs


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def _most_overlapped(labelled: Sequence[Labelled], start: float, end: float) -> Labelled | None:
    best = max(labelled, key=lambda s: _overlap(start, end, s[0], s[1]), default=None)
    return best if best is not None and _overlap(start, end, best[0], best[1]) > 0 else None


def _key(video: str | os.PathLike) -> str:
    return os.path.realpath(os.fspath(video))


def _video_progress(progress: Callable[[int, int], None], i: int, n: int) -> Callable[[int, int], None]:
    return lambda done, total: progress(1000 * i + 1000 * done // max(total, 1), 1000 * n)
