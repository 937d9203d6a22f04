"""A long video's stored per-window probabilities, and everything the page derives from them without the network:
the timeline at another threshold, flagged ranges, the downloads, and the payload the page relabels from. The
library's own functions do the work (:func:`~actionrec.apps.windows.load_window_probs`,
:func:`~actionrec.apps.calibration.thresholds_for`, :meth:`~actionrec.apps.timeline.Timeline.write`)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from ..apps.calibration import thresholds_for
from ..apps.flag import flag_ranges
from ..apps.timeline import DEFAULT_SMOOTH, DOWNLOADS, NONE, Timeline, build_timeline
from ..apps.windows import WindowProbs, load_window_probs, save_window_probs
from ..errors import ActionrecError

__all__ = ["DOWNLOADS", "SLIDER_RANGE", "load_windows", "thresholds_at", "relabel", "windows_payload", "flagged",
           "write_download"]

SLIDER_RANGE = (0.05, 0.95)  # the page's threshold slider; a class whose probability never reaches its low end is
# never labelled on the page, so its column is not sent
_png_lock = threading.Lock()  # matplotlib's pyplot is not thread-safe


def load_windows(path: Path) -> WindowProbs:
    """A job's stored windows.npz; one written by an older server (its numbers in one array) is read once and
    rewritten in the library's format."""
    try:
        return load_window_probs(path)
    except ActionrecError:
        old = _load_old_windows(path)
        if old is None:
            raise
        save_window_probs(path, old)
        return old


def _load_old_windows(path: Path) -> WindowProbs | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            duration, fps, window, stride, frames = z["numbers"].tolist()
            return WindowProbs(str(z["video"]), str(z["model"]), tuple(str(c) for c in z["categories"]),
                               z["starts"], z["ends"], z["probs"], duration, fps, window, stride, int(frames))
    except (OSError, ValueError, KeyError, EOFError):
        return None


def thresholds_at(labels: list[str], stored: dict[str, float], source: str, threshold: float | None) -> tuple[dict[str, float], str]:
    """The thresholds of `labels`: `threshold` for every class, else those the job was analysed with (`stored`)."""
    return thresholds_for(None, labels, threshold, stored=stored, stored_source=source, option="threshold",
                          chosen_by="chosen on the page")


def relabel(wp: WindowProbs, labels: list[str], stored: dict[str, float], source: str, threshold: float | None) -> Timeline:
    """The timeline at `threshold` (None: the job's own thresholds), decided exactly as `actionrec timeline` does."""
    thresholds, how = thresholds_at(labels, stored, source, threshold)
    return build_timeline(wp, labels, thresholds, how, smooth=DEFAULT_SMOOTH)


def windows_payload(wp: WindowProbs, timeline: Timeline) -> dict:
    """What the page relabels from: per-window raw probabilities of the reported classes that reach the slider's
    low end somewhere (the others can never be labelled), with the parameters of :func:`build_timeline`."""
    columns = [i for i, label in enumerate(timeline.labels) if timeline.probs[:, i].max(initial=0.0) >= SLIDER_RANGE[0]]
    probs = timeline.probs[:, columns]
    return {
        "labels": [timeline.labels[i] for i in columns],
        "thresholds": {timeline.labels[i]: round(timeline.thresholds[timeline.labels[i]], 4) for i in columns},
        "threshold_source": timeline.threshold_source,
        "starts": [round(float(v), 4) for v in wp.starts],
        "ends": [round(float(v), 4) for v in wp.ends],
        "probs": [[round(float(v), 6) for v in row] for row in probs],
        "duration": wp.duration, "window": wp.window, "stride": wp.stride,
        "smooth": DEFAULT_SMOOTH, "min_segment": 1.5 * wp.stride, "none": NONE, "slider": list(SLIDER_RANGE),
    }


def flagged(wp: WindowProbs, labels: list[str], stored: dict[str, float], threshold: float | None) -> list[dict]:
    """The ranges `actionrec flag` finds for `labels` (some of the job's) at `threshold`."""
    if not labels:
        raise ActionrecError("choose one or more actions to flag")
    unknown = [l for l in labels if l not in stored]
    if unknown:
        raise ActionrecError(f"{', '.join(unknown)}: not among this job's classes")
    thresholds, _ = thresholds_at(labels, stored, "", threshold)
    return [r.to_dict() for r in flag_ranges(wp, labels, thresholds)]


def write_download(timeline: Timeline, kind: str, folder: Path, stem: str) -> Path:
    """The file of download `kind` (see DOWNLOADS) for `timeline`, written into `folder` (the library's writer)."""
    if kind != "png":
        return timeline.write(kind, folder, stem)
    with _png_lock:
        return timeline.write(kind, folder, stem)
