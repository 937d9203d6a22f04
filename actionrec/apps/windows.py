"""Per-window probabilities over a whole video, in one streaming pass through the inference engine, cached on disk.

:func:`actionrec.data.video.iter_windows` decodes the video once and holds only the frames of the windows still
open; the engine (:mod:`actionrec.engine`) decodes ahead, batches the windows and runs the fast forward; only the
per-window probabilities are kept (K floats per window), so memory stays flat however long the video is. They are
cached (keyed by the video's content, the model's identity, the window and the stride), so `actionrec flag` after
`actionrec timeline` on the same 2-hour file, or a second look with other thresholds, does not run the model again.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data.transforms import preprocess
from ..data.video import content_key, iter_windows, probe, sliding_windows
from ..engine import Engine, engine_for
from ..errors import ActionrecError
from ..files import atomic_write, home_dir
from ..defaults import DEFAULT_MIN_STRIDE, FRAMES_PER_BATCH, STEP_FRAMES
from ..models.network import has_step_logits
from ..models.pretrained import ModelInfo, check_classifier
from ..checks import MIN_FRAMES

CACHE_VERSION = 3  # 2: windows may come from per-step logits; 3: the one WindowProbs file format


def model_fps(info: ModelInfo, video_fps: float | None = None) -> float:
    """The frame rate the model's windows are sampled at (its training fps; the video's own when it has none)."""
    fps = info.spec.fps or video_fps
    if not fps:
        raise ActionrecError(f"{info.name}: no frame rate to sample windows at")
    return float(fps)


def window_frames(info: ModelInfo, window: float | None = None, video_fps: float | None = None) -> tuple[float, int]:
    """(window seconds, frames per window). By default the model's own window: the frames it predicts with (a run:
    the clip length it was trained on, 16; the Kinetics-400 model: 64) at its frame rate (25 fps), i.e. 0.64 s for a
    run and 2.56 s for i3d-kinetics400. A given window keeps the model's frame rate: frames = window x fps."""
    fps = model_fps(info, video_fps)
    if window is None:
        frames = info.predict_frames
        return frames / fps, frames
    if not (math.isfinite(window) and window > 0):
        raise ActionrecError(f"--window must be a positive number of seconds, not {window!r}")
    frames = int(round(window * fps))
    if frames < MIN_FRAMES:
        raise ActionrecError(
            f"--window {window:g} s is {frames} frames at {fps:g} fps; the model needs at least {MIN_FRAMES} "
            f"({MIN_FRAMES / fps:g} s)"
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
    warning: str | None = None  # the video decoded shorter than its container declares (damaged or cut short)

    @property
    def centres(self) -> np.ndarray:
        return (self.starts + self.ends) / 2


def _cache_path(root: Path, video: str, info: ModelInfo, window: float, stride: float, frames: int,
                per_step: bool) -> Path | None:
    if not info.cacheable:
        return None
    spec = info.spec
    recipe = {
        "version": CACHE_VERSION, "model": info.identity, "video": content_key(video), "window": round(window, 6),
        "stride": round(stride, 6), "frames": frames, "fps": spec.fps, "resize": spec.resize, "crop": spec.crop,
        "mean": list(spec.mean), "std": list(spec.std),
        "per_step": [STEP_FRAMES, CHUNK_STEPS, CONTEXT_STEPS] if per_step else None,
    }
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:32]
    return root / key[:2] / f"{key}.npz"


def _load_cached(path: Path, video: str, info: ModelInfo, window: float, stride: float, frames: int) -> WindowProbs | None:
    """The cached probabilities (named after `video` and the model), or None (a damaged entry is said in one line,
    removed and computed again)."""
    if not path.is_file():
        return None
    try:
        wp = load_window_probs(path)
    except ActionrecError as err:
        print(f"actionrec: warning: {err}; computing it again", file=sys.stderr)
        path.unlink(missing_ok=True)
        return None
    if wp.categories != tuple(info.categories):
        return None
    return replace(wp, video=video, model=info.name, window=window, stride=stride, frames=frames, from_cache=True)


def save_window_probs(path: str | os.PathLike, wp: WindowProbs) -> None:
    """`wp` as one .npz, written atomically: the one file format of per-window probabilities (the timeline cache, the
    page's stored results)."""
    with atomic_write(path) as f:
        np.savez(f, video=np.array(wp.video), model=np.array(wp.model), categories=np.array(wp.categories),
                 starts=wp.starts, ends=wp.ends, probs=wp.probs, duration=np.float64(wp.duration),
                 fps=np.float64(wp.fps), window=np.float64(wp.window), stride=np.float64(wp.stride),
                 frames=np.int64(wp.frames), warning=np.array(wp.warning or ""))


def load_window_probs(path: str | os.PathLike) -> WindowProbs:
    """What :func:`save_window_probs` wrote; one ActionrecError line when the file is missing or damaged."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return WindowProbs(str(z["video"]), str(z["model"]), tuple(str(c) for c in z["categories"]),
                               z["starts"].astype(np.float64), z["ends"].astype(np.float64),
                               z["probs"].astype(np.float32), float(z["duration"]), float(z["fps"]), float(z["window"]),
                               float(z["stride"]), int(z["frames"]), warning=str(z["warning"]) or None)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise ActionrecError(f"{path}: the per-window probabilities are missing or damaged ({type(err).__name__}); "
                             "analyse the video again") from None


def default_cache_root() -> Path:
    return home_dir() / "timelines"


def window_probabilities(
    video: str | os.PathLike,
    model: nn.Module | Engine,
    window: float | None = None,
    stride: float | None = None,
    *,
    batch_size: int | None = None,
    cache: str | os.PathLike | bool | None = None,
    progress: Callable[[int, int], None] | None = None,
    per_step: bool | None = None,
) -> WindowProbs:
    """Per-window softmax over the whole video in one streaming decode pass.

    Windows of ``window`` seconds (default: the model's, see :func:`window_frames`) start every ``stride`` seconds
    (default :func:`default_stride`); see :func:`actionrec.data.video.sliding_windows` for where their frames come from.
    ``per_step`` runs the network once over the whole video in chunks and averages its per-step logits over each
    window (see :func:`step_logits`), so each frame goes through the network once however much windows overlap (plus
    the chunks' context: 1.5x); by default for networks convolutional in time (I3D) when the windows overlap more than
    that (i3d-kinetics400's 2.56 s every 1.28 s: 2x), else each window is a clip of its own (``batch_size`` windows per
    pass, default :data:`FRAMES_PER_BATCH` frames). ``cache``: a folder for the probabilities (None:
    ``$ACTIONREC_HOME/timelines``; False: none). ``progress(done, total)`` is called after each pass.
    """
    video = os.fspath(video)
    engine = engine_for(model)
    info = engine.info
    check_classifier(info)
    meta = probe(video)
    window, frames = window_frames(info, window, meta.fps)
    stride = default_stride(window) if stride is None else float(stride)
    if not (math.isfinite(stride) and stride > 0):
        raise ActionrecError(f"--stride must be a positive number of seconds, not {stride!r}")
    # per-step logits are the linear head's: a run with a temporal head classifies whole windows
    linear = has_step_logits(engine.model)
    if per_step is None:  # once per frame only where it is less work: windows overlap more than chunks' context costs
        per_step = linear and window / stride > (CHUNK_STEPS + 2 * CONTEXT_STEPS) / CHUNK_STEPS
    elif per_step and not linear:
        raise ActionrecError(f"{info.name}: per-step logits need I3D with its linear head; this model classifies whole windows")
    cache_file = None
    if cache is not False:
        root = default_cache_root() if cache in (None, True) else Path(cache)
        cache_file = _cache_path(root, video, info, window, stride, frames, per_step)
        cached = _load_cached(cache_file, video, info, window, stride, frames) if cache_file is not None else None
        if cached is not None:
            if progress:
                progress(len(cached.starts), len(cached.starts))
            return cached
    spans = sliding_windows(meta.num_frames, meta.fps, window, stride, frames)
    seen: dict = {}
    if per_step:
        starts, ends, probs = _windows_from_steps(video, engine, spans, progress, seen)
    else:
        starts, ends, probs = _windowed(video, engine, window, stride, frames, len(spans), batch_size, progress, seen)
    decoded = seen.get("info", meta)
    if decoded.truncated:  # windows past the real end were never made: keep those within the decoded span
        keep = starts < decoded.duration
        starts, ends, probs = starts[keep], np.minimum(ends[keep], decoded.duration), probs[keep]
    wp = WindowProbs(video, info.name, tuple(info.categories), starts, ends, probs, float(ends.max()), float(meta.fps),
                     window, stride, frames, warning=decoded.truncation_warning())
    if cache_file is not None:
        try:
            save_window_probs(cache_file, wp)
        except OSError:
            pass  # a read-only cache only costs the next run its time
    return wp


def _windowed(video: str, engine: Engine, window: float, stride: float, frames: int, total: int,
              batch_size: int | None, progress: Callable | None, seen: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each window a clip of its own through the network: (starts, ends, probs); `seen["info"]` is the video as
    decoded."""
    batch_size = max(1, FRAMES_PER_BATCH // frames) if batch_size is None else int(batch_size)  # checked by the engine
    spec = engine.info.spec
    rows: list[tuple[float, float, np.ndarray]] = []

    def clips(path: str) -> Iterator[tuple[tuple[float, float], torch.Tensor]]:
        stream = iter_windows(path, window, stride, n=frames, short_side=spec.resize)
        for clip in stream:
            yield (clip.span.start_sec, clip.span.end_sec), preprocess(clip.frames, spec)
        seen["info"] = stream.info

    def done(n: int) -> None:
        if progress:
            progress(len(rows), max(total, len(rows)))

    for result in engine.map([video], clips, batch_size=batch_size, per_clip=True, progress=done):
        rows.append((*result.meta, result.output))
    if not rows:
        raise ActionrecError(f"{video}: no window could be read")
    return (np.array([r[0] for r in rows], np.float64), np.array([r[1] for r in rows], np.float64),
            np.stack([r[2] for r in rows]).astype(np.float32))


# ----------------------------------------------------------------------------------------------- once per frame

CHUNK_STEPS = 16  # new steps per pass (128 frames)
CONTEXT_STEPS = 4  # steps of real frames on each side of a chunk (32 frames), so its borders see real context


def _step_chunks(video: str, spec, fps: float, seen: dict) -> Iterator[tuple[tuple[int, list], torch.Tensor]]:
    """The video at the model's frame rate in chunks of CHUNK_STEPS steps, each with up to CONTEXT_STEPS steps of the
    frames before and after it: ((steps of context before, [(start, end) of each own step]), input).
    `seen["info"]` is the video as decoded, once all is read."""
    step_sec = STEP_FRAMES / fps
    stream = iter_windows(video, step_sec, step_sec, n=STEP_FRAMES, short_side=spec.resize)
    steps = ((c.span.start_sec, c.span.end_sec, preprocess(c.frames, spec)) for c in stream)
    left: list = []
    pending: list = []
    for step in steps:
        pending.append(step)
        if len(pending) == CHUNK_STEPS + CONTEXT_STEPS:
            core, right = pending[:CHUNK_STEPS], pending[CHUNK_STEPS:]
            yield (len(left), [s[:2] for s in core]), torch.cat([s[2] for s in left + core + right], dim=1)
            left, pending = core[-CONTEXT_STEPS:], right
    if pending:
        yield (len(left), [s[:2] for s in pending]), torch.cat([s[2] for s in left + pending], dim=1)
    seen["info"] = stream.info


def step_logits(video: str, engine: Engine, progress: Callable[[int], None] | None = None, seen: dict | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The network once over the whole video: (starts, ends, logits) per step of STEP_FRAMES frames at the model's
    frame rate (0.32 s at 25 fps). Chunks of CHUNK_STEPS steps run with CONTEXT_STEPS steps of real frames on each
    side, whose own outputs are dropped; memory holds one chunk's frames and K floats per step. `seen["info"]` is
    the video as decoded."""
    fps = model_fps(engine.info)
    seen = {} if seen is None else seen
    times: list[tuple[float, float]] = []
    rows: list[np.ndarray] = []
    for result in engine.map([video], lambda v: _step_chunks(v, engine.info.spec, fps, seen), output="step_logits",
                             batch_size=1, per_clip=True):
        before, own = result.meta
        times += own
        rows.append(result.output[before : before + len(own)])
        if progress:
            progress(len(times))
    if not times:
        raise ActionrecError(f"{video}: no frame could be read")
    return (np.array([t[0] for t in times], np.float64), np.array([t[1] for t in times], np.float64),
            np.concatenate(rows).astype(np.float32))


def _windows_from_steps(video: str, engine: Engine, spans: list, progress: Callable | None, seen: dict
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each window's softmax of the mean logits of the steps centred in it (the nearest step when none is)."""
    total_steps = max(1, int(math.ceil(spans[-1].end_sec * model_fps(engine.info) / STEP_FRAMES)))

    def done(steps: int) -> None:
        if progress:
            progress(min(len(spans), steps * len(spans) // total_steps), len(spans))

    starts, ends, logits = step_logits(video, engine, done, seen)
    centres = (starts + ends) / 2
    probs = np.empty((len(spans), logits.shape[1]), np.float32)
    for k, span in enumerate(spans):
        inside = (centres >= span.start_sec) & (centres < span.end_sec)
        if not inside.any():
            inside[np.argmin(np.abs(centres - (span.start_sec + span.end_sec) / 2))] = True
        probs[k] = torch.from_numpy(logits[inside].mean(0)).softmax(-1).numpy()
    if progress:
        progress(len(spans), len(spans))
    return (np.array([s.start_sec for s in spans], np.float64), np.array([s.end_sec for s in spans], np.float64), probs)
