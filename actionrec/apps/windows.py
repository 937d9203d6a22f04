"""Per-window probabilities over a whole video, in one streaming pass through the inference engine, cached on disk.

:func:`actionrec.data.video.iter_windows` decodes the video once and holds only the frames of the windows still
open; the engine (:mod:`actionrec.engine`) decodes ahead, batches the windows and runs the fast forward; only the
per-window probabilities are kept (K floats per window), so memory stays flat however long the video is. They are
cached (keyed by the video's content, the model's identity, the window and the stride), so `actionrec flag` after
`actionrec timeline` on the same 2-hour file, or a second look with other thresholds, does not run the model again.

A trained run whose only trained layer is its head (the few-shot and softmax head runs) is cached one step lower:
the pooled features of its frozen part per window (:class:`WindowFeatures`), keyed by what they depend on (the
backbone's weights, the run's cut, the engine's precision and backend, the video, the windows) and not by the run, so
the next run trained on the same backbone (a label added, the page's train -> timeline loop) gets its timeline as its
head over those features (:meth:`actionrec.engine.Engine.top`, the numbers the network path gives) without running
the network. :func:`window_probabilities_iter` runs many videos (an archive) as one engine stream.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import zipfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..data.transforms import preprocess_array
from ..data.video import content_key, iter_windows, probe, sliding_windows
from ..errors import ActionrecError
from ..files import atomic_write, home_dir
from ..defaults import DEFAULT_MIN_STRIDE, FRAMES_PER_BATCH, STEP_FRAMES
from ..models.info import ModelInfo, check_classifier
from ..checks import MIN_FRAMES
from ..ready import engine_of, softmax

if TYPE_CHECKING:
    from torch import nn

    from ..engine import Engine
    from ..ready import ReadyEngine

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


# -------------------------------------------------------------------------------------- cached pooled features

FEATURES_VERSION = 1  # bump when the meaning of a cached features entry changes


@dataclass
class WindowFeatures:
    """A trained run's frozen part over a whole video: one pooled feature row per window (``Engine.top``'s "features"
    output), shared by every run on the same backbone and cut that trained only its head."""

    starts: np.ndarray  # (N,) window start, seconds
    ends: np.ndarray  # (N,) window end, seconds
    features: np.ndarray  # (N, C) float32 pooled features
    duration: float
    fps: float
    warning: str | None = None


def save_window_features(path: str | os.PathLike, wf: WindowFeatures) -> None:
    """`wf` as one .npz with the sha256 of its values, written atomically: the one file format of cached per-window
    features (beside :func:`save_window_probs`)."""
    with atomic_write(path) as f:
        np.savez(f, starts=wf.starts, ends=wf.ends, features=wf.features, duration=np.float64(wf.duration),
                 fps=np.float64(wf.fps), warning=np.array(wf.warning or ""), sha256=np.array(_features_sha256(wf)))


def load_window_features(path: str | os.PathLike) -> WindowFeatures:
    """What :func:`save_window_features` wrote, checked against its checksum; one ActionrecError line when the file
    is missing, damaged or altered."""
    try:
        with np.load(path, allow_pickle=False) as z:
            wf = WindowFeatures(z["starts"], z["ends"], z["features"], float(z["duration"]), float(z["fps"]),
                                str(z["warning"]) or None)
            recorded = str(z["sha256"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise ActionrecError(f"{path}: the cached per-window features are missing or damaged ({type(err).__name__}); "
                             "they are computed again from the video") from None
    if _features_sha256(wf) != recorded:
        raise ActionrecError(f"{path}: the cached per-window features do not match their checksum (altered on disk)")
    return wf


def _features_sha256(wf: WindowFeatures) -> str:
    digest = hashlib.sha256()
    for array in (wf.starts, wf.ends, wf.features):
        digest.update(f"{array.dtype.str}|{array.shape};".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def shares_features(engine: Engine) -> bool:
    """Whether a model's windows can come from pooled features that other models share: a trained run whose only
    trained layer is its linear head (the few-shot and softmax head runs), so everything below its head is the
    pretrained backbone's, cut where the run's feature cache was. Fine-tuned runs, temporal heads, networks from
    random weights and pretrained weights keep their own per-window probabilities."""
    info = engine.info
    return (info.cut is not None and info.cacheable and not info.random_weights
            and list(info.run.get("trained_modules", ())) == ["head"]
            and getattr(engine.model, "temporal_head", None) is None)


def _features_path(root: Path, video: str, engine: Engine | ReadyEngine, window: float, stride: float, frames: int) -> Path:
    """Where the pooled features of a video's windows lie: keyed by what they depend on (the backbone's weights, the
    run's cut, the engine's precision and backend, the video's content, the windows, the preprocessing), not by run."""
    info, spec = engine.info, engine.info.spec
    recipe = {
        "version": FEATURES_VERSION, "weights": spec.name, "weights_sha256": info.weights_sha256, "cut": info.cut,
        # features of another precision or backend are other numbers: they never mix
        "precision": engine.precision, "backend": engine.backend,
        "video": content_key(video), "window": round(window, 6), "stride": round(stride, 6), "frames": frames,
        "fps": spec.fps, "resize": spec.resize, "crop": spec.crop, "mean": list(spec.mean), "std": list(spec.std),
    }
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:32]
    return root / "features" / key[:2] / f"{key}.npz"


def _load_features(path: Path) -> WindowFeatures | None:
    """The cached features, or None (a damaged entry is said in one line, removed and computed again)."""
    if not path.is_file():
        return None
    try:
        wf = load_window_features(path)
    except ActionrecError as err:
        print(f"actionrec: warning: {err}; computing them again", file=sys.stderr)
        path.unlink(missing_ok=True)
        return None
    try:
        os.utime(path)  # last used: `actionrec cache --older-than` prunes what has not been used for a while
    except OSError:
        pass  # a read-only cache is still read
    return wf


# ----------------------------------------------------------------------------------------------- the stream


def window_probabilities(
    video: str | os.PathLike,
    model: nn.Module | Engine | ReadyEngine,
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
    ``$ACTIONREC_HOME/timelines``; False: none); a run that trained only its head keeps there the pooled features
    of its frozen part instead (:func:`shares_features`), so the next run on the same backbone and cut runs no
    network over the video. ``progress(done, total)`` is called after each pass.
    """
    (wp,) = window_probabilities_iter([video], model, window, stride, batch_size=batch_size, cache=cache,
                                      progress=progress, per_step=per_step)
    return wp


def window_probabilities_iter(
    videos: Iterable[str | os.PathLike],
    model: nn.Module | Engine | ReadyEngine,
    window: float | None = None,
    stride: float | None = None,
    *,
    batch_size: int | None = None,
    cache: str | os.PathLike | bool | None = None,
    progress: Callable[[int, int], None] | None = None,
    per_step: bool | None = None,
    on_error: Callable[[str, str], None] | None = None,
) -> Iterator[WindowProbs]:
    """:func:`window_probabilities` of each video, in order, in one engine stream: decoding runs ahead and batches
    cross video boundaries; each video's result is yielded as soon as its last window ran. A cached video runs no
    network. A video that cannot be read goes to ``on_error(video, message)`` (raised when None); ``videos`` is
    pulled lazily (by the decode thread). ``progress(done, total)``: windows of the current video."""
    engine = engine_of(model)
    check_classifier(engine.info)
    stream = _Stream(engine, window, stride, per_step, batch_size, cache)
    if engine.info.spec.fps is None and window is not None:  # windows of other frame counts never share a batch
        for video in videos:
            yield from stream.run([os.fspath(video)], progress, on_error)
        return
    yield from stream.run((os.fspath(v) for v in videos), progress, on_error)


@dataclass
class _Job:
    """One video of a stream: planned and decoded by the decode thread, completed by the consumer in order."""

    video: str
    window: float = 0.0
    stride: float = 0.0
    frames: int = 0
    total: int = 0  # windows the video is expected to give
    probed: Any = None  # the video as probed (VideoInfo)
    seen: dict = field(default_factory=dict)  # "info": the video as decoded, once all is read
    probs_file: Path | None = None
    features_file: Path | None = None
    cached: WindowProbs | WindowFeatures | None = None
    error: str | None = None
    clips: int = 0  # clips the decode thread handed to the engine
    decoded: bool = False  # all of them are handed over (or it failed, or it came from a cache)
    rows: list = field(default_factory=list)  # (meta, output) of each clip run, in order


class _Stream:
    """The settings of one pass over videos (see :func:`window_probabilities_iter`)."""

    def __init__(self, engine: Engine | ReadyEngine, window: float | None, stride: float | None, per_step: bool | None,
                 batch_size: int | None, cache: str | os.PathLike | bool | None):
        self.engine, self.info = engine, engine.info
        self.window, self.stride = window, stride
        if window is not None and (self.info.spec.fps or not (math.isfinite(window) and window > 0)):
            window_frames(self.info, window, 25.0)  # said once, before any video is read
        if stride is not None and not (math.isfinite(stride) and stride > 0):
            raise ActionrecError(f"--stride must be a positive number of seconds, not {stride!r}")
        # per-step logits are the linear head's: a run with a temporal head classifies whole windows
        linear = engine.has_step_logits
        if per_step and not linear:
            raise ActionrecError(f"{self.info.name}: per-step logits need I3D with its linear head; this model "
                                 "classifies whole windows")
        if per_step is None and linear:  # once per frame only where it is less work: windows overlap more than chunks' context costs
            own_window, _ = window_frames(self.info, window)  # I3D has its frame rate
            own_stride = default_stride(own_window) if stride is None else float(stride)
            per_step = own_window / own_stride > (CHUNK_STEPS + 2 * CONTEXT_STEPS) / CHUNK_STEPS
        self.per_step = bool(per_step)
        self.root = None if cache is False else default_cache_root() if cache in (None, True) else Path(cache)
        self.features = self.root is not None and not self.per_step and shares_features(engine)
        self.output = "step_logits" if self.per_step else "features" if self.features else "probs"
        if self.per_step:
            self.batch_size = 1  # chunks differ in length at each video's end
        elif batch_size is None:
            self.batch_size = max(1, FRAMES_PER_BATCH // (self.info.predict_frames if window is None
                                                          else int(round(window * model_fps(self.info, 25.0)))))
        else:
            self.batch_size = int(batch_size)  # checked by the engine

    def run(self, videos: Iterable[str], progress: Callable | None, on_error: Callable | None) -> Iterator[WindowProbs]:
        """Each video's WindowProbs, in order, from one Engine.map (see the module doc)."""
        started: deque[_Job] = deque()

        def jobs() -> Iterator[_Job]:
            for video in videos:
                job = _Job(video)
                started.append(job)
                yield job

        def failed(job: _Job, message: str) -> None:
            job.error = job.error or message

        def finished() -> Iterator[WindowProbs]:
            while started and started[0].decoded and (started[0].error or len(started[0].rows) >= started[0].clips):
                job = started.popleft()
                if job.error is not None:
                    if on_error is None:
                        raise ActionrecError(job.error)
                    on_error(job.video, job.error)
                else:
                    yield self._result(job, progress)

        for result in self.engine.map(jobs(), self._clips, output=self.output, batch_size=self.batch_size,
                                      per_clip=True, on_error=failed):
            job = result.job
            job.rows.append((result.meta, result.output))
            if progress:
                progress(*self._done(job))
            yield from finished()
        yield from finished()

    def _clips(self, job: _Job) -> Iterator[tuple[Any, np.ndarray]]:
        """The decode thread's part of a job: plan it, look it up in the caches, else decode its clips."""
        try:
            self._plan(job)
            if job.cached is None:
                if self.per_step:
                    source = _step_chunks(job.video, self.info.spec, model_fps(self.info), job.seen)
                else:
                    source = _window_clips(job, self.info.spec)
                for clip in source:
                    job.clips += 1
                    yield clip
        except ActionrecError as err:
            job.error = str(err)
            raise
        finally:
            job.decoded = True

    def _plan(self, job: _Job) -> None:
        """The job's windows and cache entries; a cached result when there is one."""
        job.probed = meta = probe(job.video)
        job.window, job.frames = window_frames(self.info, self.window, meta.fps)
        job.stride = default_stride(job.window) if self.stride is None else float(self.stride)
        job.total = len(sliding_windows(meta.num_frames, meta.fps, job.window, job.stride, job.frames))
        if self.root is None:
            return
        if self.features:
            job.features_file = _features_path(self.root, job.video, self.engine, job.window, job.stride, job.frames)
            job.cached = _load_features(job.features_file)
        else:
            job.probs_file = _cache_path(self.root, job.video, self.info, job.window, job.stride, job.frames,
                                         self.per_step)
            if job.probs_file is not None:
                job.cached = _load_cached(job.probs_file, job.video, self.info, job.window, job.stride, job.frames)

    def _done(self, job: _Job) -> tuple[int, int]:
        """(windows done, windows in all) of a job being computed (per step: in proportion to its steps done)."""
        if not self.per_step:
            return len(job.rows), max(job.total, len(job.rows))
        meta = job.probed
        total_steps = max(1, int(math.ceil(meta.num_frames / meta.fps * model_fps(self.info) / STEP_FRAMES)))
        steps = sum(len(own) for (_, own), _ in job.rows)
        return min(job.total, steps * job.total // total_steps), job.total

    def _result(self, job: _Job, progress: Callable | None) -> WindowProbs:
        """A finished job's WindowProbs (from its rows or its cache entry), its computed entry saved."""
        if isinstance(job.cached, WindowProbs):
            wp = job.cached
        elif isinstance(job.cached, WindowFeatures):
            wp = self._from_features(job, job.cached, from_cache=True)
        else:
            wp = self._computed(job)
        if progress:
            progress(len(wp.starts), len(wp.starts))
        return wp

    def _computed(self, job: _Job) -> WindowProbs:
        """WindowProbs from the rows the network gave (features become probabilities through the run's head)."""
        if not job.rows:
            raise ActionrecError(f"{job.video}: no window could be read")
        if self.per_step:
            starts, ends, logits = _steps_of(job.rows)
            starts, ends, out = _windows_from_steps(starts, ends, logits, job)
        else:
            starts = np.array([m[0] for m, _ in job.rows], np.float64)
            ends = np.array([m[1] for m, _ in job.rows], np.float64)
            out = np.stack([o for _, o in job.rows]).astype(np.float32)
        decoded = job.seen.get("info", job.probed)
        if decoded.truncated:  # windows past the real end were never made: keep those within the decoded span
            keep = starts < decoded.duration
            starts, ends, out = starts[keep], np.minimum(ends[keep], decoded.duration), out[keep]
        warning = decoded.truncation_warning()
        if self.features:
            wf = WindowFeatures(starts, ends, out, float(ends.max()), float(job.probed.fps), warning)
            _save_quietly(save_window_features, job.features_file, wf)
            return self._from_features(job, wf, from_cache=False)
        wp = WindowProbs(job.video, self.info.name, tuple(self.info.categories), starts, ends, out, float(ends.max()),
                         float(job.probed.fps), job.window, job.stride, job.frames, warning=warning)
        if job.probs_file is not None:
            _save_quietly(save_window_probs, job.probs_file, wp)
        return wp

    def _from_features(self, job: _Job, wf: WindowFeatures, from_cache: bool) -> WindowProbs:
        """The run's probabilities from its frozen part's pooled features: its head (Engine.top)."""
        import torch  # (a run's head: this engine is the PyTorch-built one)

        probs = self.engine.top(torch.from_numpy(np.ascontiguousarray(wf.features)), "probs", pooled=True)
        return WindowProbs(job.video, self.info.name, tuple(self.info.categories), wf.starts, wf.ends,
                           probs.numpy().astype(np.float32), wf.duration, wf.fps, job.window, job.stride, job.frames,
                           from_cache=from_cache, warning=wf.warning)


def _save_quietly(save: Callable, path: Path | None, value: Any) -> None:
    if path is None:
        return
    try:
        save(path, value)
    except OSError:
        pass  # a read-only cache only costs the next run its time


def _window_clips(job: _Job, spec) -> Iterator[tuple[tuple[float, float], np.ndarray]]:
    """Each window a clip of its own: ((start, end), input); `job.seen["info"]` is the video as decoded."""
    stream = iter_windows(job.video, job.window, job.stride, n=job.frames, short_side=spec.resize)
    for clip in stream:
        yield (clip.span.start_sec, clip.span.end_sec), preprocess_array(clip.frames, spec)
    job.seen["info"] = stream.info


# ----------------------------------------------------------------------------------------------- once per frame

CHUNK_STEPS = 16  # new steps per pass (128 frames)
CONTEXT_STEPS = 4  # steps of real frames on each side of a chunk (32 frames), so its borders see real context


def _step_chunks(video: str, spec, fps: float, seen: dict) -> Iterator[tuple[tuple[int, list], np.ndarray]]:
    """The video at the model's frame rate in chunks of CHUNK_STEPS steps, each with up to CONTEXT_STEPS steps of the
    frames before and after it: ((steps of context before, [(start, end) of each own step]), input).
    `seen["info"]` is the video as decoded, once all is read."""
    step_sec = STEP_FRAMES / fps
    stream = iter_windows(video, step_sec, step_sec, n=STEP_FRAMES, short_side=spec.resize)
    steps = ((c.span.start_sec, c.span.end_sec, preprocess_array(c.frames, spec)) for c in stream)
    left: list = []
    pending: list = []
    for step in steps:
        pending.append(step)
        if len(pending) == CHUNK_STEPS + CONTEXT_STEPS:
            core, right = pending[:CHUNK_STEPS], pending[CHUNK_STEPS:]
            yield (len(left), [s[:2] for s in core]), np.concatenate([s[2] for s in left + core + right], axis=1)
            left, pending = core[-CONTEXT_STEPS:], right
    if pending:
        yield (len(left), [s[:2] for s in pending]), np.concatenate([s[2] for s in left + pending], axis=1)
    seen["info"] = stream.info


def _steps_of(rows: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(starts, ends, logits) per step from the chunks' (meta, output) rows: each chunk's own steps, its context's
    outputs dropped."""
    times = [t for (_, own), _ in rows for t in own]
    logits = [out[before : before + len(own)] for (before, own), out in rows]
    return (np.array([t[0] for t in times], np.float64), np.array([t[1] for t in times], np.float64),
            np.concatenate(logits).astype(np.float32))


def step_logits(video: str, engine: Engine | ReadyEngine, progress: Callable[[int], None] | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The network once over the whole video: (starts, ends, logits) per step of STEP_FRAMES frames at the model's
    frame rate (0.32 s at 25 fps). Chunks of CHUNK_STEPS steps run with CONTEXT_STEPS steps of real frames on each
    side, whose own outputs are dropped; memory holds one chunk's frames and K floats per step."""
    fps = model_fps(engine.info)
    rows: list = []
    for result in engine.map([video], lambda v: _step_chunks(v, engine.info.spec, fps, {}), output="step_logits",
                             batch_size=1, per_clip=True):
        rows.append((result.meta, result.output))
        if progress:
            progress(sum(len(own) for (_, own), _ in rows))
    if not rows:
        raise ActionrecError(f"{video}: no frame could be read")
    return _steps_of(rows)


def _windows_from_steps(starts: np.ndarray, ends: np.ndarray, logits: np.ndarray, job: _Job
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each window of the job's video: the softmax of the mean logits of the steps centred in it (the nearest step
    when none is)."""
    meta = job.probed
    spans = sliding_windows(meta.num_frames, meta.fps, job.window, job.stride, job.frames)
    centres = (starts + ends) / 2
    probs = np.empty((len(spans), logits.shape[1]), np.float32)
    for k, span in enumerate(spans):
        inside = (centres >= span.start_sec) & (centres < span.end_sec)
        if not inside.any():
            inside[np.argmin(np.abs(centres - (span.start_sec + span.end_sec) / 2))] = True
        probs[k] = softmax(logits[inside].mean(0))
    return (np.array([s.start_sec for s in spans], np.float64), np.array([s.end_sec for s in spans], np.float64), probs)
