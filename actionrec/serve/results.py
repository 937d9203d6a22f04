"""A long video's stored per-window probabilities, and everything the page derives from them without the network:
the timeline at another threshold, flagged ranges, the downloads, and the payload the page relabels from."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from ..apps.flag import flag_ranges
from ..apps.timeline import DEFAULT_SMOOTH, NONE, Timeline, build_timeline
from ..apps.windows import WindowProbs
from ..errors import ActionrecError
from ..files import atomic_write

SLIDER_RANGE = (0.05, 0.95)  # the page's threshold slider; a class whose probability never reaches its low end is
# never labelled on the page, so its column is not sent
DOWNLOADS = {"json": "timeline.json", "csv": "segments.csv", "windows.csv": "windows.csv", "srt": "srt", "png": "timeline.png"}
_png_lock = threading.Lock()  # matplotlib's pyplot is not thread-safe


def save_windows(path: Path, wp: WindowProbs) -> None:
    with atomic_write(path) as f:
        np.savez(f, video=np.array(wp.video), model=np.array(wp.model), categories=np.array(wp.categories),
                 starts=wp.starts, ends=wp.ends, probs=wp.probs,
                 numbers=np.array([wp.duration, wp.fps, wp.window, wp.stride, wp.frames], np.float64))


def load_windows(path: Path) -> WindowProbs:
    try:
        with np.load(path, allow_pickle=False) as z:
            duration, fps, window, stride, frames = z["numbers"].tolist()
            return WindowProbs(str(z["video"]), str(z["model"]), tuple(str(c) for c in z["categories"]),
                               z["starts"], z["ends"], z["probs"], duration, fps, window, stride, int(frames))
    except (OSError, ValueError, KeyError):
        raise ActionrecError(f"{path}: the stored window probabilities are missing or broken; analyse the video again") from None


def thresholds_at(labels: list[str], stored: dict[str, float], source: str, threshold: float | None) -> tuple[dict[str, float], str]:
    """The thresholds of `labels`: `threshold` for every class, else those the job was analysed with (`stored`)."""
    if threshold is None:
        return {l: float(stored[l]) for l in labels}, source
    if not 0.0 <= threshold <= 1.0:
        raise ActionrecError(f"threshold must be a probability between 0 and 1, not {threshold!r}")
    return {l: float(threshold) for l in labels}, f"{threshold:g} for every class (chosen on the page)"


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
    """The file of download `kind` (see DOWNLOADS) for `timeline`, written into `folder`."""
    if kind not in DOWNLOADS:
        raise ActionrecError(f"unknown download {kind!r}; choose one of {', '.join(DOWNLOADS)}")
    path = folder / f"{stem}.{DOWNLOADS[kind]}"
    if kind == "json":
        timeline.write_json(path)
    elif kind == "csv":
        timeline.write_segments_csv(path)
    elif kind == "windows.csv":
        timeline.write_windows_csv(path)
    elif kind == "srt":
        timeline.write_srt(path)
    else:
        with _png_lock:
            timeline.write_png(path)
    return path
