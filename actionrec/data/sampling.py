"""Sampling in time: which source frames make a clip, as pure arithmetic on ``(num_frames, fps)``.

The samplers (:func:`central_clip`, :func:`uniform_clips`, :func:`random_clip`,
:func:`sliding_windows`) say *which* source frames make a clip (a :class:`ClipSpan`, with its
start and end in seconds) without decoding anything; :mod:`.video` decodes them.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

__all__ = ["ClipSpan", "central_clip", "uniform_clips", "random_clip", "range_clip", "sliding_windows"]

_EPS = 1e-6


class ClipSpan(NamedTuple):
    """Which source frames make one clip (returned by the samplers, no pixels)."""

    frame_indices: np.ndarray  # int64, source-frame indices, may repeat (looping, fps upsampling)
    start_sec: float
    end_sec: float
    looped: bool  # True when the video was shorter than the clip and was played again from the start



def _check_video(num_frames: int, fps: float) -> None:
    if int(num_frames) < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps}")


def _clip_offsets(n: int, fps: float, target_fps: float | None) -> np.ndarray:
    """Offsets (in source frames) of the n frames of a clip relative to its first frame."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if target_fps is None:
        return np.arange(n, dtype=np.int64)
    if not (math.isfinite(target_fps) and target_fps > 0):
        raise ValueError(f"target_fps must be a positive number or None, got {target_fps}")
    # Frame j is at time j / target_fps after the clip start: the source frame showing at that time
    # is the nearest earlier one (floor); the epsilon keeps exact ratios from flooring down.
    return np.floor(np.arange(n) * (fps / target_fps) + _EPS).astype(np.int64)


def _clip_length_sec(n: int, fps: float, target_fps: float | None) -> float:
    return n / (fps if target_fps is None else target_fps)


def _span_from(start: int, offsets: np.ndarray, num_frames: int, fps: float, length_sec: float) -> ClipSpan:
    footprint = int(offsets[-1]) + 1
    if footprint > num_frames:
        # Too short: play the video in a loop (in time, so the frame spacing stays right).
        return ClipSpan(offsets % num_frames, 0.0, num_frames / fps, True)
    start_sec = start / fps
    return ClipSpan(start + offsets, start_sec, start_sec + length_sec, False)


def central_clip(num_frames: int, fps: float, n: int = 16, target_fps: float | None = None) -> ClipSpan:
    """The n frames in the middle of the video.

    ``target_fps=None`` takes n consecutive source frames; a number spaces the clip's frames
    1/target_fps seconds apart (each mapped to the nearest earlier source frame). A video shorter
    than the clip is looped (``looped=True``).
    """
    _check_video(num_frames, fps)
    offsets = _clip_offsets(n, fps, target_fps)
    footprint = int(offsets[-1]) + 1
    start = max(0, (int(num_frames) - footprint) // 2)
    return _span_from(start, offsets, int(num_frames), fps, _clip_length_sec(n, fps, target_fps))


def uniform_clips(
    num_frames: int, fps: float, n: int = 16, count: int = 3, target_fps: float | None = None
) -> list[ClipSpan]:
    """``count`` clips of n frames evenly spaced over the video.

    The video is cut into ``count`` equal segments and clip k is centred on the middle of segment k
    (shifted inwards if it would stick out), so ``count=1`` gives :func:`central_clip`. Clips may
    overlap when the video is short; a video shorter than one clip gives ``count`` looped clips.
    """
    _check_video(num_frames, fps)
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    num_frames = int(num_frames)
    offsets = _clip_offsets(n, fps, target_fps)
    footprint = int(offsets[-1]) + 1
    length_sec = _clip_length_sec(n, fps, target_fps)
    spans = []
    for k in range(count):
        centre = (k + 0.5) * num_frames / count
        start = int(math.floor(centre - footprint / 2 + _EPS))
        start = min(max(start, 0), max(num_frames - footprint, 0))
        spans.append(_span_from(start, offsets, num_frames, fps, length_sec))
    return spans


def random_clip(
    num_frames: int, fps: float, n: int, rng: np.random.Generator, target_fps: float | None = None
) -> ClipSpan:
    """n frames starting at a uniformly random frame (training augmentation); seeded by ``rng``."""
    _check_video(num_frames, fps)
    num_frames = int(num_frames)
    offsets = _clip_offsets(n, fps, target_fps)
    footprint = int(offsets[-1]) + 1
    start = int(rng.integers(0, num_frames - footprint + 1)) if footprint <= num_frames else 0
    return _span_from(start, offsets, num_frames, fps, _clip_length_sec(n, fps, target_fps))


def range_clip(
    num_frames: int, fps: float, start: float, end: float, n: int = 16, target_fps: float | None = None,
    part: tuple[int, int] = (0, 1), rng: np.random.Generator | None = None,
) -> ClipSpan:
    """A clip inside the range [start, end) seconds of a video, cut as the samplers cut one from a whole video whose
    frames are the range's: centred in the k-th of ``count`` equal parts of the range (``part=(k, count)``, as
    :func:`uniform_clips`; ``(0, 1)``: the central clip), or with ``rng`` starting at a random frame of that part
    (the clip kept inside the range). A range shorter than the clip is played in a loop (``looped=True``), so a clip
    never shows frames outside its range."""
    _check_video(num_frames, fps)
    num_frames = int(num_frames)
    first = min(max(int(round(start * fps)), 0), num_frames - 1)
    length = max(1, min(int(round(end * fps)), num_frames) - first)
    k, count = part
    if not 0 <= k < count:
        raise ValueError(f"part must be (k, count) with 0 <= k < count, got {part}")
    offsets = _clip_offsets(n, fps, target_fps)
    footprint = int(offsets[-1]) + 1
    if rng is None or footprint > length:
        span = uniform_clips(length, fps, n, count, target_fps)[k]
    else:
        last = length - footprint  # the last start that keeps the clip inside the range
        lo = min(int(k * length / count), last)
        hi = max(lo, min(int((k + 1) * length / count) - 1, last))
        span = _span_from(int(rng.integers(lo, hi + 1)), offsets, length, fps, _clip_length_sec(n, fps, target_fps))
    return ClipSpan(span.frame_indices + first, span.start_sec + first / fps, span.end_sec + first / fps, span.looped)


def sliding_windows(
    num_frames: int, fps: float, window_sec: float, stride_sec: float, n: int = 16
) -> list[ClipSpan]:
    """Windows of ``window_sec`` seconds every ``stride_sec`` seconds, n frames evenly spread over each.

    Windows start at 0, stride, 2*stride, ... as long as they fit; if the last of those does not end
    at the end of the video, one more window is added that does, so the whole video is covered.
    Frame j of a window starting at ``a`` is the source frame shown at ``a + (j + 0.5) * window_sec / n``.
    A video shorter than the window gives a single window played in a loop (``looped=True``).
    """
    _check_video(num_frames, fps)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not (math.isfinite(window_sec) and window_sec > 0):
        raise ValueError(f"window_sec must be a positive number, got {window_sec}")
    if not (math.isfinite(stride_sec) and stride_sec > 0):
        raise ValueError(f"stride_sec must be a positive number, got {stride_sec}")
    num_frames = int(num_frames)
    duration = num_frames / fps
    rel = (np.arange(n) + 0.5) * (window_sec / n)

    if window_sec > duration + _EPS:
        idx = np.floor(rel * fps + _EPS).astype(np.int64) % num_frames
        return [ClipSpan(idx, 0.0, duration, True)]

    count = int(math.floor((duration - window_sec) / stride_sec + _EPS)) + 1
    starts = [k * stride_sec for k in range(count)]
    if duration - (starts[-1] + window_sec) > _EPS:
        starts.append(duration - window_sec)
    spans = []
    for a in starts:
        idx = np.floor((a + rel) * fps + _EPS).astype(np.int64)
        np.clip(idx, 0, num_frames - 1, out=idx)
        spans.append(ClipSpan(idx, float(a), float(a + window_sec), False))
    return spans


def _fit_span(span: ClipSpan, num_frames: int, ref_frames: int, fps: float) -> ClipSpan:
    """Re-fit a span computed for ``ref_frames`` frames onto a video that really has ``num_frames``.

    Spans that only use existing frames are kept. Others keep their frame spacing and their relative
    position in the video (a central clip stays central), shifted inwards to fit; a span longer than
    the video is looped.
    """
    idx = np.asarray(span.frame_indices, dtype=np.int64)
    if idx.size == 0 or int(idx.max()) < num_frames:
        return span
    # Undo a previous looping (index going back) so the spacing pattern is kept.
    add = np.zeros_like(idx)
    if idx.size > 1:
        back = np.flatnonzero(np.diff(idx) < 0)
        add[back + 1] = idx[back] - idx[back + 1] + 1
    unrolled = idx + np.cumsum(add)
    offsets = unrolled - unrolled[0]
    footprint = int(offsets.max()) + 1
    if footprint > num_frames:
        return ClipSpan(offsets % num_frames, 0.0, num_frames / fps, True)
    start = int(round(int(unrolled[0]) * num_frames / max(ref_frames, 1)))
    start = min(max(start, 0), num_frames - footprint)
    length = span.end_sec - span.start_sec
    return ClipSpan(start + offsets, start / fps, start / fps + length, False)
