"""Long videos: per-window probabilities over the whole video, a labelled timeline, time per class, flagged ranges.

One streaming pass (:func:`window_probabilities`): :func:`actionrec.video.iter_windows` decodes the video once and
holds only the frames of the windows still open, a thread decodes and preprocesses the next windows while the model
runs a batch, and only the per-window probabilities are kept (K floats per window), so memory stays flat however long
the video is. The probabilities are cached on disk (keyed by the video's content, the model, the window and the
stride), so `actionrec flag` after `actionrec timeline` on the same 2-hour file, or a second look with other
thresholds, does not run the model again.

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

Flagging (:func:`flag_ranges`) marks the time ranges where any chosen class reaches its threshold (no smoothing by
default, padded, nearby ranges merged) and :func:`censor_video` writes a copy with those ranges blacked out or blurred,
the audio copied packet for packet (so it stays in sync) and the duration unchanged. Censoring needs PyAV at run time.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import queue
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .errors import ActionrecError

__all__ = [
    "DEFAULT_THRESHOLD",
    "WindowProbs",
    "Segment",
    "Timeline",
    "FlagRange",
    "check_classifier",
    "window_frames",
    "default_stride",
    "window_probabilities",
    "resolve_labels",
    "thresholds_for",
    "calibrate",
    "build_timeline",
    "timeline",
    "flag_ranges",
    "censor_video",
    "require_av",
    "format_clock",
]

NONE = "none"
DEFAULT_THRESHOLD = 0.5  # a class is named only when it holds at least half the probability mass
MIN_CALIBRATION_CLIPS = 3  # validation clips of a class needed to calibrate its threshold
CALIBRATION_RANGE = (0.2, 0.95)  # calibrated thresholds are kept in this range
DEFAULT_SMOOTH = 1.0  # seconds of windows (centred running median) before deciding
DEFAULT_MIN_STRIDE = 0.5  # seconds: the default stride is max(this, window / 2)
MIN_WINDOW_FRAMES = 8  # I3D downsamples time by 8: fewer frames are not a window
FRAMES_PER_BATCH = 128  # default batch: 8 windows of 16 frames, 2 of 64 (the activations' memory stays the same)
CACHE_VERSION = 1


# ----------------------------------------------------------------------------------------------- windows


def model_fps(model: nn.Module, video_fps: float | None = None) -> float:
    """The frame rate the model's windows are sampled at (its training fps; the video's own when it has none)."""
    fps = model.spec.fps or video_fps
    if not fps:
        raise ActionrecError(f"{getattr(model, 'name', 'model')}: no frame rate to sample windows at")
    return float(fps)


def check_classifier(model: nn.Module) -> None:
    """Refuse a model without output classes (backbone-only weights) in one line."""
    if not tuple(getattr(model, "categories", ()) or ()):
        name = getattr(model, "name", None) or model.spec.name
        raise ActionrecError(f"{name}: these weights have no classes to recognise; train a run on them first "
                             f"(`actionrec train DATA --backbone {model.spec.arch} --weights {model.spec.name}`) and pass --run RUN")


def window_frames(model: nn.Module, window: float | None = None, video_fps: float | None = None) -> tuple[float, int]:
    """(window seconds, frames per window). By default the model's own window: the frames it predicts with (a run:
    the clip length it was trained on, 16; the Kinetics-400 model: 64) at its frame rate (25 fps), i.e. 0.64 s for a
    run and 2.56 s for i3d-kinetics400. A given window keeps the model's frame rate: frames = window x fps."""
    fps = model_fps(model, video_fps)
    if window is None:
        frames = int(getattr(model, "predict_frames", None) or model.spec.predict_frames)
        return frames / fps, frames
    if not (math.isfinite(window) and window > 0):
        raise ActionrecError(f"--window must be a positive number of seconds, not {window!r}")
    frames = int(round(window * fps))
    if frames < MIN_WINDOW_FRAMES:
        raise ActionrecError(
            f"--window {window:g} s is {frames} frames at {fps:g} fps; the model needs at least {MIN_WINDOW_FRAMES} "
            f"({MIN_WINDOW_FRAMES / fps:g} s)"
        )
    return float(window), frames


def default_stride(window: float) -> float:
    """max(0.5 s, window / 2): every frame is seen by one or two windows, and labels change at most every 0.5 s."""
    return max(DEFAULT_MIN_STRIDE, window / 2)


@dataclass
class WindowProbs:
    """The model's output over a whole video: one softmax row per window."""

    video: str
    model: str
    categories: tuple[str, ...]  # column order of `probs`
    starts: np.ndarray  # (N,) window start, seconds
    ends: np.ndarray  # (N,) window end, seconds
    probs: np.ndarray  # (N, K) float32 softmax over all the model's classes
    duration: float  # seconds covered (the end of the last window)
    fps: float  # the video's frame rate
    window: float
    stride: float
    frames: int  # frames per window
    from_cache: bool = False

    @property
    def centres(self) -> np.ndarray:
        return (self.starts + self.ends) / 2


def _model_identity(model: nn.Module) -> str | None:
    """A stable id of the weights for the cache: the pretrained weights' checksum, or a hash of the run's files."""
    config = getattr(model, "run_config", None)
    if config is not None:
        run = Path(model.name)
        digest = hashlib.sha256()
        for name in ("config.json", "model.safetensors"):
            try:
                digest.update((run / name).read_bytes())
            except OSError:
                return None
        return "run:" + digest.hexdigest()[:24]
    spec = getattr(model, "spec", None)
    weights = getattr(model, "weights_sha256", None) or getattr(spec, "sha256", "")
    if spec is not None and weights and getattr(model, "name", None) == spec.name:
        return f"weights:{spec.name}:{weights[:24]}"
    return getattr(model, "cache_id", None)


def _cache_path(root: Path, video: str, model: nn.Module, window: float, stride: float, frames: int) -> Path | None:
    from .features import content_key

    identity = _model_identity(model)
    if identity is None:
        return None
    spec = model.spec
    recipe = {
        "version": CACHE_VERSION, "model": identity, "video": content_key(video), "window": round(window, 6),
        "stride": round(stride, 6), "frames": frames, "fps": spec.fps, "resize": spec.resize, "crop": spec.crop,
        "mean": list(spec.mean), "std": list(spec.std),
    }
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:32]
    return root / key[:2] / f"{key}.npz"


def _load_cached(path: Path, video: str, model: nn.Module, window: float, stride: float, frames: int) -> WindowProbs | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            categories = tuple(str(c) for c in z["categories"])
            if categories != tuple(model.categories):
                return None
            return WindowProbs(video, _model_name(model), categories, z["starts"].astype(np.float64),
                               z["ends"].astype(np.float64), z["probs"].astype(np.float32), float(z["duration"]),
                               float(z["fps"]), window, stride, frames, from_cache=True)
    except (OSError, ValueError, KeyError):
        return None


def _save_cached(path: Path, wp: WindowProbs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, categories=np.array(wp.categories), starts=wp.starts, ends=wp.ends, probs=wp.probs,
                     duration=np.float64(wp.duration), fps=np.float64(wp.fps))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _model_name(model: nn.Module) -> str:
    return getattr(model, "name", None) or model.spec.name


def default_cache_root() -> Path:
    from .weights import home_dir

    return home_dir() / "timelines"


_END = object()


def window_probabilities(
    video: str | os.PathLike,
    model: nn.Module,
    window: float | None = None,
    stride: float | None = None,
    *,
    batch_size: int | None = None,
    cache: str | os.PathLike | bool | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> WindowProbs:
    """Per-window softmax over the whole video in one streaming decode pass.

    Windows of ``window`` seconds (default: the model's, see :func:`window_frames`) start every ``stride`` seconds
    (default :func:`default_stride`); see :func:`actionrec.video.sliding_windows` for where their frames come from.
    A thread decodes and preprocesses the next windows (at most one batch ahead) while the model runs ``batch_size``
    windows at a time (default: :data:`FRAMES_PER_BATCH` frames per pass). ``cache``: a folder for the probabilities (None: ``$ACTIONREC_HOME/timelines``; False: none).
    ``progress(done, total)`` is called after each batch.
    """
    from .models import preprocess
    from .video import iter_windows, probe, sliding_windows

    video = os.fspath(video)
    check_classifier(model)
    info = probe(video)
    window, frames = window_frames(model, window, info.fps)
    batch_size = max(1, FRAMES_PER_BATCH // frames) if batch_size is None else int(batch_size)
    if batch_size < 1:
        raise ActionrecError(f"--batch-size must be at least 1, not {batch_size}")
    stride = default_stride(window) if stride is None else float(stride)
    if not (math.isfinite(stride) and stride > 0):
        raise ActionrecError(f"--stride must be a positive number of seconds, not {stride!r}")

    cache_file = None
    if cache is not False:
        root = default_cache_root() if cache in (None, True) else Path(cache)
        cache_file = _cache_path(root, video, model, window, stride, frames)
        if cache_file is not None and cache_file.is_file():
            cached = _load_cached(cache_file, video, model, window, stride, frames)
            if cached is not None:
                if progress:
                    progress(len(cached.starts), len(cached.starts))
                return cached

    spec = model.spec
    total = len(sliding_windows(info.num_frames, info.fps, window, stride, frames))
    clips = iter_windows(video, window, stride, n=frames, short_side=spec.resize)
    ahead: queue.Queue = queue.Queue(maxsize=batch_size)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                ahead.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for clip in clips:
                if not put((clip.span.start_sec, clip.span.end_sec, preprocess(clip.frames, spec))):
                    return
            put(_END)
        except BaseException as err:  # handed to the consumer, raised there
            put(err)
        finally:
            clips.close()

    device = next(model.parameters()).device
    starts: list[float] = []
    ends: list[float] = []
    rows: list[np.ndarray] = []
    producer = threading.Thread(target=produce, name="actionrec-decode", daemon=True)
    producer.start()
    try:
        finished = False
        while not finished:
            batch = []
            while len(batch) < batch_size:
                item = ahead.get()
                if item is _END:
                    finished = True
                    break
                if isinstance(item, BaseException):
                    raise item
                batch.append(item)
            if not batch:
                break
            x = torch.stack([b[2] for b in batch]).to(device)
            with torch.inference_mode():
                p = model(x).float().softmax(-1).cpu().numpy()
            del x
            rows.append(p.astype(np.float32))
            starts.extend(b[0] for b in batch)
            ends.extend(b[1] for b in batch)
            del batch
            if progress:
                progress(len(starts), max(total, len(starts)))
    finally:
        stop.set()
        producer.join()
    if not starts:
        raise ActionrecError(f"{video}: no window could be read")
    wp = WindowProbs(
        video, _model_name(model), tuple(model.categories), np.array(starts, np.float64), np.array(ends, np.float64),
        np.concatenate(rows), float(max(ends)), float(info.fps), window, stride, frames,
    )
    if cache_file is not None:
        try:
            _save_cached(cache_file, wp)
        except OSError:
            pass  # a read-only cache only costs the next run its time
    return wp


# ----------------------------------------------------------------------------------------------- thresholds


def resolve_labels(requested: str | Sequence[str] | None, categories: Sequence[str]) -> tuple[str, ...]:
    """The classes to report: all of the model's, or the requested ones (checked, in the order given)."""
    if requested is None:
        return tuple(categories)
    names = [n.strip() for n in (requested.split(",") if isinstance(requested, str) else requested)]
    names = [n for n in names if n]
    if not names:
        raise ActionrecError("--labels is empty; name one or more classes, e.g. --labels 'playing tennis,skiing'")
    known = {c.lower(): c for c in categories}
    out = []
    for name in names:
        if name in categories:
            out.append(name)
        elif name.lower() in known:
            out.append(known[name.lower()])
        else:
            import difflib

            close = difflib.get_close_matches(name, list(categories), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else f"; it knows {', '.join(list(categories)[:8])}{', ...' if len(categories) > 8 else ''}"
            raise ActionrecError(f"--labels: the model has no class {name!r}{hint}")
    return tuple(dict.fromkeys(out))


def calibrate(
    probs: np.ndarray, labels: Sequence[int], classes: Sequence[str], default: float = DEFAULT_THRESHOLD
) -> tuple[dict[str, float], dict[str, str]]:
    """Per-class thresholds from the validation clips' softmax rows ``probs`` (n, K) and true class indices.

    For class c, a window is labelled c when c has the highest score among the classes at their thresholds, so the
    clips that can be labelled c are those whose top class is c: the true ones are hits, the others false alarms, and
    true clips of c with another top class are misses whatever the threshold. The threshold is the one that maximises
    F1 over the validation clips, taken in the middle of the widest interval of scores that reaches that F1 (the
    largest margin on both sides), kept within :data:`CALIBRATION_RANGE`. A class with fewer than
    :data:`MIN_CALIBRATION_CLIPS` validation clips, or none of them on top, keeps ``default``.
    Returns (thresholds, how each was chosen).
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if probs.ndim != 2 or probs.shape[1] != len(classes) or len(labels) != len(probs):
        raise ValueError(f"probs must be (n, {len(classes)}) with one label per row")
    top = probs.argmax(1) if len(probs) else np.zeros(0, np.int64)
    lo_clamp, hi_clamp = CALIBRATION_RANGE
    thresholds, how = {}, {}
    for c, name in enumerate(classes):
        positives = int((labels == c).sum())
        if positives < MIN_CALIBRATION_CLIPS:
            thresholds[name], how[name] = default, f"default (only {positives} validation clips)"
            continue
        candidates = top == c
        hits_scores = probs[candidates & (labels == c), c]
        false_scores = probs[candidates & (labels != c), c]
        if hits_scores.size == 0:
            thresholds[name], how[name] = default, "default (no validation clip of it ranked first)"
            continue
        # F1 is constant between consecutive scores: evaluate it inside each interval, join neighbouring intervals of
        # equal F1, and take the middle of the best (widest on ties).
        edges = np.unique(np.concatenate([[1.0 / len(classes)], hits_scores, false_scores, [1.0]]))
        groups: list[list[float]] = []  # [lo, hi, f1]
        for lo, hi in zip(edges[:-1], edges[1:]):
            t = (lo + hi) / 2
            tp = int((hits_scores >= t).sum())
            fp = int((false_scores >= t).sum())
            f1 = 2 * tp / (2 * tp + fp + (positives - tp)) if tp else 0.0
            if groups and math.isclose(groups[-1][2], f1):
                groups[-1][1] = hi
            else:
                groups.append([lo, hi, f1])
        lo, hi, f1 = max(groups, key=lambda g: (round(g[2], 9), g[1] - g[0]))
        best = (f1, hi - lo, (lo + hi) / 2)
        t = float(np.clip(best[2], lo_clamp, hi_clamp))
        thresholds[name] = t
        how[name] = f"calibrated on {len(probs)} validation clips (F1 {best[0]:.2f})"
    return thresholds, how


def _run_calibration(model: nn.Module) -> tuple[np.ndarray, np.ndarray] | None:
    """The validation probabilities a run recorded in its metrics.json (``val_probs``, ``val_labels``), if any."""
    if getattr(model, "run_config", None) is None:
        return None
    try:
        metrics = json.loads((Path(model.name) / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    probs, labels = metrics.get("val_probs"), metrics.get("val_labels")
    if not probs or labels is None or len(probs) != len(labels):
        return None
    classes = list(model.categories)
    try:
        labels = [classes.index(l) if isinstance(l, str) else int(l) for l in labels]
        probs = np.asarray(probs, dtype=np.float64)
    except (ValueError, TypeError):
        return None
    if probs.ndim != 2 or probs.shape[1] != len(classes):
        return None
    return probs, np.asarray(labels, np.int64)


def thresholds_for(
    model: nn.Module, labels: Sequence[str], threshold: float | None = None
) -> tuple[dict[str, float], str]:
    """The threshold of each reported class and one line saying where they come from.

    ``threshold`` (the user's) applies to every class; else the run's calibration (see :func:`calibrate`), else
    :data:`DEFAULT_THRESHOLD`.
    """
    if threshold is not None:
        if not (0.0 <= threshold <= 1.0):
            raise ActionrecError(f"--threshold must be a probability between 0 and 1, not {threshold!r}")
        return {l: float(threshold) for l in labels}, f"{threshold:g} for every class (--threshold)"
    recorded = _run_calibration(model)
    if recorded is not None:
        per_class, how = calibrate(recorded[0], recorded[1], model.categories)
        calibrated = sum(1 for l in labels if how[l].startswith("calibrated"))
        source = f"calibrated on the run's {len(recorded[1])} validation clips ({calibrated} of {len(labels)} classes)"
        return {l: per_class[l] for l in labels}, source
    note = "the run recorded no validation probabilities" if getattr(model, "run_config", None) is not None else "no validation set"
    return {l: DEFAULT_THRESHOLD for l in labels}, f"default {DEFAULT_THRESHOLD:g} ({note})"


# ----------------------------------------------------------------------------------------------- timeline


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

    def write_all(self, folder: str | os.PathLike, stem: str | None = None) -> dict[str, Path]:
        """segments CSV, windows CSV, JSON, SRT and PNG in `folder`, named after the video."""
        folder = Path(folder)
        stem = stem or Path(self.video).stem or "video"
        return {
            "segments_csv": self.write_segments_csv(folder / f"{stem}.segments.csv"),
            "windows_csv": self.write_windows_csv(folder / f"{stem}.windows.csv"),
            "json": self.write_json(folder / f"{stem}.timeline.json"),
            "srt": self.write_srt(folder / f"{stem}.srt"),
            "png": self.write_png(folder / f"{stem}.timeline.png"),
        }

    def summary(self) -> str:
        """Time per label (minutes:seconds and share of the video), then the thresholds."""
        lines = [
            f"{self.video}: {format_clock(self.duration)} ({self.duration / 60:.2f} min), {len(self.starts)} windows of "
            f"{self.window:g} s every {self.stride:g} s, {len(self.segments)} segments",
        ]
        width = max(len(l) for l in list(self.totals) + ["label"])
        lines.append(f"  {'label':<{width}}  {'time':>9}  {'minutes':>8}  {'share':>6}  segments")
        order = sorted(self.totals, key=lambda l: (l == NONE, -self.totals[l]))
        for label in order:
            seconds = self.totals[label]
            count = sum(1 for s in self.segments if s.label == label)
            share = seconds / self.duration * 100 if self.duration else 0.0
            lines.append(f"  {label:<{width}}  {format_clock(seconds):>9}  {seconds / 60:8.2f}  {share:5.1f}%  {count}")
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
    return _cross(x[i], x[j], g[i] - level, g[j] - level)


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
                    wp.starts, wp.ends, probs, smoothed, window_labels, segments, totals, wp.from_cache)


def timeline(
    video: str | os.PathLike,
    model: nn.Module | str,
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
) -> Timeline:
    """The labelled timeline of a whole video; `model` is a loaded model, a weights name or a run directory."""
    if not isinstance(model, nn.Module):
        from . import load_model

        model = load_model(model)
    check_classifier(model)
    chosen = resolve_labels(labels, model.categories)
    thresholds, source = thresholds_for(model, chosen, threshold)
    wp = window_probabilities(video, model, window, stride, batch_size=batch_size, cache=cache, progress=progress)
    return build_timeline(wp, chosen, thresholds, source, smooth=smooth, min_segment=min_segment)


# ----------------------------------------------------------------------------------------------- flagging


@dataclass(frozen=True)
class FlagRange:
    start: float
    end: float
    labels: tuple[str, ...]  # the classes that reached their threshold in this range
    score: float  # the highest probability of those classes in it

    def to_dict(self) -> dict:
        return {"start": round(self.start, 3), "end": round(self.end, 3), "labels": list(self.labels),
                "score": round(float(self.score), 4)}


def flag_ranges(
    wp: WindowProbs,
    labels: Sequence[str],
    thresholds: dict[str, float],
    smooth: float = 0.0,
    pad: float = 0.25,
    merge_gap: float = 1.0,
) -> list[FlagRange]:
    """Time ranges where any of ``labels`` reaches its threshold (the union over the labels).

    A run of windows at or above the threshold covers from where the score crosses the threshold before it to where
    it crosses back after it (interpolated between window centres; the video's start and end at the edges). No
    smoothing by default (a short scene is not averaged away). Each range is widened by ``pad`` seconds on both
    sides (within the video), and ranges less than ``merge_gap`` seconds apart are merged.
    """
    if pad < 0 or merge_gap < 0 or smooth < 0:
        raise ActionrecError("--pad, --merge-gap and --smooth must be >= 0 seconds")
    x = wp.centres
    found: list[tuple[float, float, str, float]] = []
    for label in labels:
        col = wp.categories.index(label)
        s = smooth_probs(wp.probs[:, [col]], x, smooth)[:, 0]
        t = thresholds[label]
        above = s >= t
        k = 0
        while k < len(s):
            if not above[k]:
                k += 1
                continue
            j = k
            while j + 1 < len(s) and above[j + 1]:
                j += 1
            start = 0.0 if k == 0 else _cross(x[k - 1], x[k], s[k - 1] - t, s[k] - t)
            end = wp.duration if j == len(s) - 1 else _cross(x[j], x[j + 1], s[j] - t, s[j + 1] - t)
            found.append((start, end, label, float(s[k : j + 1].max())))
            k = j + 1
    found = [(max(0.0, a - pad), min(wp.duration, b + pad), l, p) for a, b, l, p in found]
    found.sort()
    merged: list[list] = []
    for a, b, l, p in found:
        if merged and a <= merged[-1][1] + merge_gap:
            m = merged[-1]
            m[1] = max(m[1], b)
            if l not in m[2]:
                m[2].append(l)
            m[3] = max(m[3], p)
        else:
            merged.append([a, b, [l], p])
    return [FlagRange(a, b, tuple(sorted(ls, key=list(labels).index)), p) for a, b, ls, p in merged]


def _cross(x0: float, x1: float, f0: float, f1: float) -> float:
    """Zero of the line through (x0, f0), (x1, f1), clipped to [x0, x1] (the midpoint when it is flat)."""
    if f0 == f1:
        return float((x0 + x1) / 2)
    return float(np.clip(x0 + (x1 - x0) * f0 / (f0 - f1), min(x0, x1), max(x0, x1)))


# ----------------------------------------------------------------------------------------------- censoring

_VIDEO_CODECS = {".mp4": "libx264", ".m4v": "libx264", ".mov": "libx264", ".mkv": "libx264", ".avi": "mpeg4",
                 ".webm": "libvpx-vp9"}


def require_av():
    try:
        import av
    except ImportError:
        raise ActionrecError("censoring needs PyAV, which is not installed: `pip install av`") from None
    return av


def censor_video(
    video: str | os.PathLike,
    ranges: Sequence[FlagRange | tuple[float, float]],
    out: str | os.PathLike,
    style: str = "black",
    crf: int = 18,
    fps: float | None = None,
) -> dict:
    """Write a copy of ``video`` to ``out`` with the frames shown during ``ranges`` blacked out or blurred.

    The video is re-encoded (H.264 for .mp4/.mov/.mkv, MPEG-4 for .avi, VP9 for .webm; ``crf`` sets the quality of
    H.264 and VP9, 0 being lossless), frame for frame at the same rate, so the duration is unchanged; frames outside
    the ranges are passed to the encoder as decoded. Audio streams are copied packet for packet with their timestamps,
    so they stay in sync; other streams (subtitles, data) are left out. Frame
    ``i`` is shown from ``i / fps`` to ``(i + 1) / fps`` (``fps``: the probed frame rate, as the timeline uses) and is
    censored when that interval overlaps a range. The file is written beside ``out`` and renamed when complete.
    Returns counts (frames, censored, audio streams).
    """
    av = require_av()
    from .video import probe

    video, out = os.fspath(video), Path(out)
    if style not in ("black", "blur"):
        raise ActionrecError(f"--style must be black or blur, not {style!r}")
    if os.path.isdir(video):
        raise ActionrecError(f"{video}: a folder of frames cannot be censored; give a video file")
    ext = out.suffix.lower()
    if ext not in _VIDEO_CODECS:
        raise ActionrecError(f"{out}: unsupported output type {ext or '(none)'}; use one of {', '.join(_VIDEO_CODECS)}")
    if out.resolve() == Path(video).resolve():
        raise ActionrecError(f"{out}: the output would overwrite the input; choose another file name")
    if not (0 <= int(crf) <= 51):
        raise ActionrecError(f"--crf must be between 0 (lossless) and 51, not {crf}")
    info = probe(video)
    fps = float(fps or info.fps)
    spans: list[list[float]] = []  # sorted, overlaps merged
    for a, b in sorted((float(r.start), float(r.end)) if isinstance(r, FlagRange) else (float(r[0]), float(r[1])) for r in ranges):
        if spans and a <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], b)
        elif b > a:
            spans.append([a, b])
    position = [0]  # frames come in order: the first span that does not end before the current frame

    def censored(i: int) -> bool:
        a, b = i / fps, (i + 1) / fps
        j = position[0]
        while j < len(spans) and spans[j][1] <= a:
            j += 1
        position[0] = j
        return j < len(spans) and spans[j][0] < b

    try:
        inp = av.open(video)
    except av.error.FFmpegError as err:
        raise ActionrecError(f"{video}: PyAV cannot open it ({err}); re-encode it, e.g. `ffmpeg -i IN -c:v libx264 OUT.mp4`") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.stem}.", suffix=ext)
    os.close(fd)
    tmp = Path(tmp_name)
    counts = {"frames": 0, "censored": 0, "audio_streams": 0}
    try:
        with inp:
            if not inp.streams.video:
                raise ActionrecError(f"{video}: has no video stream")
            vin = inp.streams.video[0]
            rate = vin.average_rate or vin.guessed_rate
            if not rate:
                rate = Fraction(fps).limit_denominator(1001)
            codec = _VIDEO_CODECS[ext]
            width, height = vin.codec_context.width, vin.codec_context.height
            pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
            options = {"crf": str(int(crf)), "preset": "veryfast"} if codec == "libx264" else {}
            if codec == "libvpx-vp9":
                options = {"crf": str(int(crf)), "deadline": "realtime", "cpu-used": "8"}
                if int(crf) == 0:
                    options["lossless"] = "1"
            try:
                container = av.open(str(tmp), "w", format=_muxer(ext))
            except av.error.FFmpegError as err:
                raise ActionrecError(f"{out}: cannot be written ({err})") from None
            with container:
                vout = container.add_stream(codec, rate=rate, options=options)
                vout.width, vout.height, vout.pix_fmt = width, height, pix_fmt
                if codec in ("mpeg4", "libvpx-vp9"):
                    vout.bit_rate = max(2_000_000, width * height * 30)
                if info.rotation:
                    try:
                        vout.set_display_rotation((360 - info.rotation) % 360)
                    except AttributeError:
                        pass
                audio = {}
                for a in inp.streams.audio:  # PyAV >= 14 names it add_stream_from_template
                    copy = getattr(container, "add_stream_from_template", None)
                    audio[a.index] = copy(a) if copy else container.add_stream(template=a)
                counts["audio_streams"] = len(audio)
                # The video keeps its start offset (in output ticks) so it stays aligned with the copied audio.
                tick = 1 / float(rate)
                time_base = 1 / Fraction(rate)
                offset = int(round(float(vin.start_time * vin.time_base) / tick)) if vin.start_time else 0
                index = 0

                def encode(frame) -> None:
                    for packet in vout.encode(frame):
                        container.mux(packet)

                for packet in inp.demux(vin, *inp.streams.audio):
                    if packet.stream.index in audio:
                        if packet.dts is None:
                            continue
                        packet.stream = audio[packet.stream.index]
                        container.mux(packet)
                        continue
                    for frame in packet.decode():
                        if censored(index):
                            frame = _censor_frame(av, frame, style)
                            counts["censored"] += 1
                        if frame.format.name != pix_fmt:
                            frame = frame.reformat(format=pix_fmt)
                        frame.pts = offset + index
                        frame.time_base = time_base
                        encode(frame)
                        index += 1
                encode(None)
                counts["frames"] = index
        os.replace(tmp, out)
    except av.error.FFmpegError as err:
        raise ActionrecError(
            f"{out}: writing failed ({err}); if the audio does not fit this container, write a .mkv (Matroska holds any codec)"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
    return counts


def _muxer(ext: str) -> str | None:
    return {".mkv": "matroska", ".webm": "webm", ".mov": "mov", ".mp4": "mp4", ".m4v": "mp4", ".avi": "avi"}.get(ext)


def _censor_frame(av, frame, style: str):
    rgb = frame.to_ndarray(format="rgb24")
    if style == "black":
        rgb = np.zeros_like(rgb)
    else:  # pixelate to about 12 blocks across, then blur the blocks away: nothing recognisable is left
        import cv2

        h, w = rgb.shape[:2]
        block = max(1, w // 12)
        small = cv2.resize(rgb, (max(1, w // block), max(1, h // block)), interpolation=cv2.INTER_AREA)
        rgb = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
        k = max(3, (min(h, w) // 8) | 1)
        rgb = cv2.GaussianBlur(rgb, (k, k), 0)
    new = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    return new
