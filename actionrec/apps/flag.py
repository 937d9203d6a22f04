"""Flagging (:func:`flag_ranges`) marks the time ranges where any chosen class reaches its threshold (no smoothing by
default, padded, nearby ranges merged) and :func:`censor_video` writes a copy with those ranges blacked out or blurred,
the audio copied packet for packet (so it stays in sync) and the duration unchanged. Censoring needs PyAV at run time.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ActionrecError

if TYPE_CHECKING:  # annotations only: importing this module (the CLI's help reads its defaults) imports no PyTorch
    from .windows import WindowProbs


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
    from .timeline import cross_point, smooth_probs

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
            start = 0.0 if k == 0 else cross_point(x[k - 1], x[k], s[k - 1] - t, s[k] - t)
            end = wp.duration if j == len(s) - 1 else cross_point(x[j], x[j + 1], s[j] - t, s[j + 1] - t)
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



def flag_result(wp: WindowProbs, labels: Sequence[str], thresholds: Mapping[str, float], ranges: Sequence[FlagRange],
                censored_to: str | os.PathLike | None = None, censored: Mapping[str, int] | None = None) -> dict:
    """`actionrec flag --json`'s object (one schema for the CLI, the page and Python): the video, its duration, the
    labels and thresholds, the ranges and their total seconds, and the censored copy if one was made."""
    return {
        "video": wp.video, "duration": round(wp.duration, 3), "labels": list(labels),
        "thresholds": {k: round(v, 4) for k, v in thresholds.items()},
        "ranges": [r.to_dict() for r in ranges], "flagged": round(sum(r.end - r.start for r in ranges), 3),
        "censored": os.fspath(censored_to) if censored_to else None,
        "censored_frames": censored["censored"] if censored else None,
    }


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
    from ..data.video import probe

    video, out = os.fspath(video), Path(out)
    _check_censor_args(video, out, style, crf)
    info = probe(video)
    schedule = _Schedule(ranges, float(fps or info.fps))
    try:
        inp = av.open(video)
    except av.error.FFmpegError as err:
        raise ActionrecError(f"{video}: PyAV cannot open it ({err}); re-encode it, e.g. `ffmpeg -i IN -c:v libx264 OUT.mp4`") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.stem}.", suffix=out.suffix.lower())
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with inp:
            if not inp.streams.video:
                raise ActionrecError(f"{video}: has no video stream")
            counts = _recode(av, inp, tmp, out, schedule, style, crf, info.rotation)
        os.replace(tmp, out)
    except av.error.FFmpegError as err:
        raise ActionrecError(
            f"{out}: writing failed ({err}); if the audio does not fit this container, write a .mkv (Matroska holds any codec)"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
    return counts


def _check_censor_args(video: str, out: Path, style: str, crf: int) -> None:
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


class _Schedule:
    """Which frames to censor: frame i (shown from i / fps to (i + 1) / fps) when it overlaps a range; frames are
    asked for in order, so the search resumes where it stopped."""

    def __init__(self, ranges: Sequence[FlagRange | tuple[float, float]], fps: float):
        self.fps, self.spans, self.position = fps, [], 0
        pairs = ((float(r.start), float(r.end)) if isinstance(r, FlagRange) else (float(r[0]), float(r[1])) for r in ranges)
        for a, b in sorted(pairs):
            if self.spans and a <= self.spans[-1][1]:
                self.spans[-1][1] = max(self.spans[-1][1], b)
            elif b > a:
                self.spans.append([a, b])

    def censored(self, i: int) -> bool:
        a, b = i / self.fps, (i + 1) / self.fps
        while self.position < len(self.spans) and self.spans[self.position][1] <= a:
            self.position += 1
        return self.position < len(self.spans) and self.spans[self.position][0] < b


def _video_stream(av, container, vin, ext: str, crf: int, fps: float, rotation: int):
    """The output video stream: the input's size and rate, the codec and quality of `ext`."""
    rate = vin.average_rate or vin.guessed_rate or Fraction(fps).limit_denominator(1001)
    codec = _VIDEO_CODECS[ext]
    width, height = vin.codec_context.width, vin.codec_context.height
    options = {"crf": str(int(crf)), "preset": "veryfast"} if codec == "libx264" else {}
    if codec == "libvpx-vp9":
        options = {"crf": str(int(crf)), "deadline": "realtime", "cpu-used": "8", **({"lossless": "1"} if int(crf) == 0 else {})}
    vout = container.add_stream(codec, rate=rate, options=options)
    vout.width, vout.height = width, height
    vout.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
    if codec in ("mpeg4", "libvpx-vp9"):
        vout.bit_rate = max(2_000_000, width * height * 30)
    if rotation:
        try:
            vout.set_display_rotation((360 - rotation) % 360)
        except AttributeError:
            pass
    return vout, rate


def _recode(av, inp, tmp: Path, out: Path, schedule: _Schedule, style: str, crf: int, rotation: int) -> dict:
    """Re-encode the first video stream of `inp` into `tmp`, censoring scheduled frames; audio packets are copied."""
    vin = inp.streams.video[0]
    try:
        container = av.open(str(tmp), "w", format=_muxer(out.suffix.lower()))
    except av.error.FFmpegError as err:
        raise ActionrecError(f"{out}: cannot be written ({err})") from None
    with container:
        vout, rate = _video_stream(av, container, vin, out.suffix.lower(), crf, schedule.fps, rotation)
        copy = getattr(container, "add_stream_from_template", None)  # PyAV >= 14 names it so
        audio = {a.index: copy(a) if copy else container.add_stream(template=a) for a in inp.streams.audio}
        # The video keeps its start offset (in output ticks) so it stays aligned with the copied audio.
        offset = int(round(float(vin.start_time * vin.time_base) * float(rate))) if vin.start_time else 0
        counts = {"frames": 0, "censored": 0, "audio_streams": len(audio)}
        try:
            _copy_streams(av, inp, vin, container, vout, audio, schedule, style, offset, rate, counts)
        except _InputDamaged as err:
            from ..data.video import display_path

            print(f"actionrec: warning: {display_path(inp.name)}: decoding stopped at damaged data after "
                  f"{counts['frames']} frames ({err}); the censored copy ends there: re-encode the input to keep the rest",
                  file=sys.stderr)
        container.mux(vout.encode(None))
    return counts


def _copy_streams(av, inp, vin, container, vout, audio: dict, schedule: _Schedule, style: str, offset: int, rate,
                  counts: dict) -> None:
    """Demux the input: audio packets are copied, video frames censored as scheduled and encoded."""
    for packet in _input(av, lambda: inp.demux(vin, *inp.streams.audio)):
        if packet.stream.index in audio:
            if packet.dts is not None:
                packet.stream = audio[packet.stream.index]
                container.mux(packet)
            continue
        for frame in _input(av, packet.decode):
            if schedule.censored(counts["frames"]):
                frame = _censor_frame(av, frame, style)
                counts["censored"] += 1
            if frame.format.name != vout.pix_fmt:
                frame = frame.reformat(format=vout.pix_fmt)
            frame.pts, frame.time_base = offset + counts["frames"], 1 / Fraction(rate)
            container.mux(vout.encode(frame))
            counts["frames"] += 1


class _InputDamaged(Exception):
    """The input stopped decoding at damaged data."""


def _input(av, read):
    """The items of `read()`; damage in the input ends them with _InputDamaged (not blamed on the output)."""
    try:
        yield from read()
    except av.error.FFmpegError as err:
        raise _InputDamaged(str(err)) from None


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
