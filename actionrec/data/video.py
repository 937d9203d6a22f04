"""Decoding videos and sampling clips from them.

Everything a model needs from a video goes through this module:

* :func:`probe` reads the metadata (fps, frame count, size after rotation) of a video file or of a
  folder of image frames, and checks that at least one frame decodes.
* The samplers (:func:`central_clip`, :func:`uniform_clips`, :func:`random_clip`,
  :func:`sliding_windows`) are pure functions of ``(num_frames, fps)``: they say *which* source frames
  make a clip (a :class:`ClipSpan`) without decoding anything.
* :func:`read_clips` decodes the frames of any number of spans in one sequential pass, keeping only
  the frames some span needs (resized as soon as they are decoded), so memory does not grow with the
  length of the video. :func:`iter_windows` streams sliding windows over a long video.

Decoding uses OpenCV's FFmpeg backend (``cv2.VideoCapture``), which also reads animated GIFs and
applies the display-matrix rotation of phone videos. Pillow is a fallback for GIFs OpenCV cannot open,
and a folder of frames is read with ``cv2.imdecode``. Frames come out as uint8 RGB, upright.

Frame counts stored in containers can be wrong (Matroska/WebM only store a duration, edit lists, files
cut short...). The reader never trusts them blindly: when the decode runs out of frames before a
requested index, the spans are re-fitted onto the frames that really exist (looping if needed) and
the missing frames are fetched in a second pass, so the result is always made of real frames.

Frames are counted in decode order, frame ``i`` being at time ``i / fps``. Long gaps between needed
frames are skipped by seeking, but only when the seek can be checked: after a seek the timestamps of
a few frames must land exactly on the expected frame numbers, otherwise the reader falls back to a
plain sequential decode from the start (correct, only slower).
"""

from __future__ import annotations

import math
import os
import re
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, NamedTuple, Sequence

import cv2
import numpy as np

from ..errors import ActionrecError

__all__ = [
    "VIDEO_EXTENSIONS",
    "IMAGE_EXTENSIONS",
    "DEFAULT_FOLDER_FPS",
    "VideoError",
    "VideoInfo",
    "ClipSpan",
    "Clip",
    "probe",
    "central_clip",
    "uniform_clips",
    "random_clip",
    "sliding_windows",
    "read_clips",
    "read_clip",
    "iter_windows",
    "resized_shape",
    "list_frame_files",
]

# FFmpeg (inside OpenCV) prints its complaints about damaged files straight to stderr; our VideoError
# says the same thing in one line. OpenCV reads this variable when its FFmpeg backend is first used,
# so it only takes effect if no VideoCapture was created before this module was imported. A value the
# user set is kept (e.g. OPENCV_FFMPEG_LOGLEVEL=32 to see FFmpeg's messages again).
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

VIDEO_EXTENSIONS: tuple[str, ...] = (
    ".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv",
    ".3gp", ".ogv", ".ts", ".mts", ".m2ts", ".gif",
)
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
DEFAULT_FOLDER_FPS = 25.0

# Containers whose frame count OpenCV can only estimate from the duration: for files up to
# _COUNT_PACKETS_MAX_BYTES the video packets are counted instead (demuxing only, no decoding).
_ESTIMATED_COUNT_EXTENSIONS = (
    ".mkv", ".webm", ".flv", ".ts", ".mts", ".m2ts", ".mpg", ".mpeg", ".ogv", ".wmv",
)
_COUNT_PACKETS_MAX_BYTES = 256 * 1024 * 1024

# Skip ahead by seeking only when the next needed frame is more than this many frames away: below
# that, decoding the gap costs about as much as a seek (which lands on a key frame and decodes
# forward from there) and sequential decoding is certainly exact.
SEEK_MIN_GAP = 500
# Number of frames before the target whose timestamps must match after a seek.
_SEEK_CHECK_FRAMES = 3
_MAX_FPS = 1000.0
_EPS = 1e-6


class VideoError(ActionrecError):
    """A video (or frame folder) that cannot be read; the message is one line naming the path."""


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` found out about a video.

    ``width`` and ``height`` are those of the frames as they come out (after rotation);
    ``rotation`` is the clockwise rotation in degrees from the container's metadata (0 if none),
    already applied to the frames. ``num_frames`` is the container's count (or, for Matroska/WebM
    and similar, the number of video packets) and can still be an estimate: the readers cope.
    """

    path: str
    fps: float
    num_frames: int
    width: int
    height: int
    rotation: int

    @property
    def duration(self) -> float:
        """Length in seconds (``num_frames / fps``)."""
        return self.num_frames / self.fps


class ClipSpan(NamedTuple):
    """Which source frames make one clip (returned by the samplers, no pixels)."""

    frame_indices: np.ndarray  # int64, source-frame indices, may repeat (looping, fps upsampling)
    start_sec: float
    end_sec: float
    looped: bool  # True when the video was shorter than the clip and was played again from the start


class Clip(NamedTuple):
    frames: np.ndarray  # (n, H, W, 3) uint8 RGB
    span: ClipSpan


# --------------------------------------------------------------------------------------------------
# Samplers: pure arithmetic on (num_frames, fps)
# --------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------
# Frame processing
# --------------------------------------------------------------------------------------------------


def resized_shape(height: int, width: int, short_side: int | None) -> tuple[int, int]:
    """(height, width) after resizing so the shorter side is ``short_side`` (aspect kept)."""
    if short_side is None:
        return height, width
    if short_side < 1:
        raise ValueError(f"short_side must be >= 1, got {short_side}")
    if height <= width:
        return short_side, max(1, int(width * short_side / height + 0.5))
    return max(1, int(height * short_side / width + 0.5)), short_side


def resize_short_side(frame: np.ndarray, short_side: int | None, size: tuple[int, int] | None = None) -> np.ndarray:
    """`frame` resized so that its shorter side is `short_side` (or to `size` = (height, width)); INTER_AREA when
    shrinking, INTER_LINEAR when growing; unchanged when it already has that size."""
    h, w = frame.shape[:2]
    out_h, out_w = size or resized_shape(h, w, short_side)
    if (h, w) == (out_h, out_w):
        return frame
    interpolation = cv2.INTER_AREA if out_h * out_w < h * w else cv2.INTER_LINEAR
    return cv2.resize(frame, (out_w, out_h), interpolation=interpolation)


def _processor(info: VideoInfo, short_side: int | None) -> Callable[[np.ndarray], np.ndarray]:
    """BGR frame as decoded -> RGB frame of the output size."""
    size = resized_shape(info.height, info.width, short_side)
    return lambda bgr: cv2.cvtColor(resize_short_side(bgr, short_side, size), cv2.COLOR_BGR2RGB)


# --------------------------------------------------------------------------------------------------
# Sources: a video file through OpenCV, a GIF through Pillow, a folder of image frames
# --------------------------------------------------------------------------------------------------


class _Source:
    """Yields wanted frames (BGR, as decoded) in increasing index order.

    After :meth:`frames` is exhausted, ``end`` is None if every wanted frame was delivered, else the
    number of frames that really exist (the decode ran out before the last wanted index).
    """

    info: VideoInfo
    end: int | None = None

    def frames(self, wanted: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> "_Source":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _open_capture(path: str) -> "cv2.VideoCapture":
    logging = getattr(getattr(cv2, "utils", None), "logging", None)
    previous = None
    if logging is not None:  # OpenCV warns on stderr about files it cannot open; we raise instead
        previous = logging.getLogLevel()
        logging.setLogLevel(logging.LOG_LEVEL_ERROR)
    try:
        cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
    finally:
        if logging is not None:
            logging.setLogLevel(previous)
    if not cap.isOpened():
        cap.release()
        raise VideoError(
            f"{path}: cannot be opened as a video (not a video file, damaged or truncated, or an "
            "unsupported codec); check that it plays in a video player, or re-encode it, e.g. "
            "`ffmpeg -i IN -c:v libx264 OUT.mp4`"
        )
    return cap


def _no_frames_error(path: str) -> VideoError:
    return VideoError(
        f"{path}: no video frame could be decoded (empty, damaged or truncated file); "
        "re-download or re-encode the video, or use another file"
    )


def _count_packets(path: str) -> int:
    """Number of video packets (demuxing only, no decoding); 0 if this OpenCV cannot do it."""
    try:
        cap = _open_capture(path)
    except VideoError:
        return 0
    try:
        if not cap.set(cv2.CAP_PROP_FORMAT, -1):
            return 0
        count = 0
        while cap.grab():
            count += 1
        return count
    finally:
        cap.release()


def _count_decoded(path: str) -> int:
    cap = _open_capture(path)
    try:
        count = 0
        while cap.grab():
            count += 1
        return count
    finally:
        cap.release()


_MANUAL_ROTATION = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}


class _CvSource(_Source):
    """A video file decoded by OpenCV's FFmpeg backend."""

    def __init__(self, path: str, fps_hint: float | None = None, auto_rotate: bool = True):
        self.path = path
        self._auto_rotate = auto_rotate
        self.seeks = 0  # successful seeks (for tests)
        self._seekable = True
        cap = self._open()
        try:
            first = self._first_frame
            fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
            if not (math.isfinite(fps) and 0 < fps <= _MAX_FPS):
                fps = float(fps_hint) if fps_hint else DEFAULT_FOLDER_FPS
            count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            ext = os.path.splitext(path)[1].lower()
            if count <= 0 or (
                ext in _ESTIMATED_COUNT_EXTENSIONS and os.path.getsize(path) <= _COUNT_PACKETS_MAX_BYTES
            ):
                packets = _count_packets(path)
                if packets > 0:
                    count = packets
            if count <= 0:  # neither the container nor the demuxer knows: decode everything once
                count = _count_decoded(path)
            rotation = int(round(cap.get(cv2.CAP_PROP_ORIENTATION_META) or 0)) % 360
        except Exception:
            cap.release()
            raise
        self._rotate_code = None if auto_rotate else _MANUAL_ROTATION.get(rotation)
        first = self._rotate(first)
        height, width = first.shape[:2]
        self.info = VideoInfo(path, fps, max(count, 1), width, height, rotation)

    def _open(self) -> "cv2.VideoCapture":
        cap = _open_capture(self.path)
        cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1 if self._auto_rotate else 0)
        ok = cap.grab()
        frame = cap.retrieve()[1] if ok else None
        if frame is None or frame.size == 0:
            cap.release()
            raise _no_frames_error(self.path)
        self._cap = cap
        self._pos = 0  # index of the frame last grabbed (retrievable)
        self._first_frame = frame
        self._ms0 = cap.get(cv2.CAP_PROP_POS_MSEC)
        return cap

    def _rotate(self, frame: np.ndarray) -> np.ndarray:
        return frame if getattr(self, "_rotate_code", None) is None else cv2.rotate(frame, self._rotate_code)

    def close(self) -> None:
        cap = getattr(self, "_cap", None)
        if cap is not None:
            cap.release()
            self._cap = None

    def _reopen(self) -> None:
        self.close()
        self._open()

    def _frame_number_from_time(self) -> int | None:
        ms = self._cap.get(cv2.CAP_PROP_POS_MSEC)
        if not math.isfinite(ms):
            return None
        return int(round((ms - self._ms0) * self.info.fps / 1000.0))

    def _try_seek(self, target: int) -> None:
        """Jump to just before ``target`` if that can be verified; else leave a sequential decoder."""
        first = max(target - _SEEK_CHECK_FRAMES, 1)
        cap = self._cap
        ok = bool(cap.set(cv2.CAP_PROP_POS_FRAMES, first))
        k = first
        while ok and k < target:
            ok = cap.grab() and self._frame_number_from_time() == k
            k += 1
        if ok:
            self._pos = target - 1
            self.seeks += 1
            return
        # Timestamps do not give exact frame numbers here (variable frame rate, odd timestamps...):
        # decode this file sequentially from now on.
        self._seekable = False
        self._reopen()

    def frames(self, wanted: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        self.end = None
        if getattr(self, "_cap", None) is None:
            self._open()
        for target in np.asarray(wanted, dtype=np.int64).tolist():
            if target < self._pos:
                self._reopen()
            if self._seekable and target - self._pos > SEEK_MIN_GAP:
                self._try_seek(target)
            cap = self._cap
            while self._pos < target:
                if not cap.grab():
                    self.end = self._pos + 1
                    return
                self._pos += 1
            ok, frame = cap.retrieve()
            if not ok or frame is None or frame.size == 0:
                self.end = self._pos
                return
            yield target, self._rotate(frame)


class _PillowGifSource(_Source):
    """Animated GIF through Pillow: only used when OpenCV cannot open the file."""

    def __init__(self, path: str):
        from PIL import Image, UnidentifiedImageError

        self.path = path
        try:
            self._im = Image.open(path)
            self._im.seek(0)
            first = np.asarray(self._im.convert("RGB"))
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            reason = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise VideoError(
                f"{path}: cannot be read as an animated GIF ({reason}); re-export the GIF or convert it to a video"
            ) from None
        count = int(getattr(self._im, "n_frames", 1))
        delay_ms = self._im.info.get("duration") or 100  # browsers show 0-delay GIFs at 10 fps
        height, width = first.shape[:2]
        self.info = VideoInfo(path, 1000.0 / float(delay_ms), max(count, 1), width, height, 0)

    def frames(self, wanted: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        self.end = None
        for target in np.asarray(wanted, dtype=np.int64).tolist():
            try:
                self._im.seek(target)
            except EOFError:
                self.end = getattr(self._im, "n_frames", target)
                return
            yield target, np.ascontiguousarray(np.asarray(self._im.convert("RGB"))[:, :, ::-1])

    def close(self) -> None:
        self._im.close()


def _natural_key(name: str) -> tuple:
    """Sort key where digit runs compare as numbers: frame2.png < frame10.png."""
    parts = re.split(r"(\d+)", name)
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p.lower()) for p in parts) + ((2, 0, name),)


def list_frame_files(folder: str | os.PathLike) -> list[Path]:
    """Image files of a frame folder in frame order (file names sorted with numbers compared as numbers)."""
    folder = Path(folder)
    files = [
        p for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file()
    ]
    return sorted(files, key=lambda p: _natural_key(p.name))


def _read_image(path: Path) -> np.ndarray:
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError:
        data = None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data is not None and data.size else None
    if image is None:
        raise VideoError(
            f"{path}: cannot read this image frame (damaged or not an image); replace or delete the file"
        )
    return image


class _FolderSource(_Source):
    """A folder of image frames, in file-name order, at a caller-given fps."""

    def __init__(self, path: str, fps: float | None):
        self.path = path
        fps = DEFAULT_FOLDER_FPS if fps is None else float(fps)
        if not (math.isfinite(fps) and fps > 0):
            raise ValueError(f"fps must be a positive number, got {fps}")
        try:
            self.files = list_frame_files(path)
        except OSError as exc:
            raise VideoError(f"{path}: cannot list the folder ({exc.strerror}); check its permissions") from None
        if not self.files:
            raise VideoError(
                f"{path}: folder contains no image frames ({', '.join(IMAGE_EXTENSIONS)}); "
                "put the frames there (e.g. frame_00001.png ...) or pass a video file"
            )
        first = _read_image(self.files[0])
        self.info = VideoInfo(path, fps, len(self.files), first.shape[1], first.shape[0], 0)

    def frames(self, wanted: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        self.end = None
        for target in np.asarray(wanted, dtype=np.int64).tolist():
            if target >= len(self.files):
                self.end = len(self.files)
                return
            image = _read_image(self.files[target])
            if image.shape[:2] != (self.info.height, self.info.width):
                raise VideoError(
                    f"{self.files[target]}: frame is {image.shape[1]}x{image.shape[0]} but the first frame "
                    f"of the folder is {self.info.width}x{self.info.height}; make all frames the same size"
                )
            yield target, image


def _open_source(path: str | os.PathLike, fps: float | None = None) -> _Source:
    shown = os.fspath(path)
    if not os.path.exists(shown):
        raise VideoError(f"{shown}: no such file or folder; check the path")
    if os.path.isdir(shown):
        return _FolderSource(shown, fps)
    if os.path.getsize(shown) == 0:
        raise VideoError(f"{shown}: the file is empty (0 bytes); re-download or re-export the video")
    try:
        return _CvSource(shown, fps)
    except VideoError:
        if os.path.splitext(shown)[1].lower() != ".gif":
            raise
    return _PillowGifSource(shown)


# --------------------------------------------------------------------------------------------------
# Public readers
# --------------------------------------------------------------------------------------------------


def probe(path: str | os.PathLike, fps: float | None = None) -> VideoInfo:
    """Metadata of a video file or frame folder.

    ``fps`` is the frame rate of a frame folder (default 25); for a video file it is only used if the
    container gives no usable frame rate (then 25 if not given). Decodes the first frame to make sure
    the file is readable; raises :class:`VideoError` otherwise.
    """
    with _open_source(path, fps) as source:
        return source.info


def _as_span(span: ClipSpan) -> ClipSpan:
    idx = np.asarray(span.frame_indices, dtype=np.int64).reshape(-1)
    if idx.size == 0:
        raise ValueError("a ClipSpan needs at least one frame index")
    if int(idx.min()) < 0:
        raise ValueError("frame indices must be >= 0")
    return ClipSpan(idx, float(span.start_sec), float(span.end_sec), bool(span.looped))


def _read_spans(
    source: _Source,
    spans: Sequence[ClipSpan],
    short_side: int | None,
    respan: Callable[[int], list[ClipSpan]] | None = None,
) -> list[Clip]:
    spans = [_as_span(s) for s in spans]
    if not spans:
        return []
    process = _processor(source.info, short_side)
    kept: dict[int, np.ndarray] = {}
    wanted = np.unique(np.concatenate([s.frame_indices for s in spans]))
    for i, frame in source.frames(wanted):
        kept[i] = process(frame)

    if source.end is not None:  # the video has fewer frames than its container said
        real = source.end
        if real < 1:
            raise _no_frames_error(source.info.path)
        if respan is not None:
            spans = [_as_span(s) for s in respan(real)]
        else:
            ref = max(source.info.num_frames, int(wanted[-1]) + 1)
            spans = [_fit_span(s, real, ref, source.info.fps) for s in spans]
        needed = np.unique(np.concatenate([s.frame_indices for s in spans]))
        missing = needed[~np.isin(needed, np.fromiter(kept, dtype=np.int64, count=len(kept)))]
        if missing.size:
            for i, frame in source.frames(missing):
                kept[i] = process(frame)
            if source.end is not None:
                raise VideoError(
                    f"{source.info.path}: the video decodes differently on each pass (damaged file); "
                    "re-encode it, e.g. `ffmpeg -i IN -c:v libx264 OUT.mp4`"
                )
    return [Clip(np.stack([kept[i] for i in s.frame_indices.tolist()]), s) for s in spans]


def read_clips(
    path: str | os.PathLike,
    spans: Sequence[ClipSpan],
    short_side: int | None = None,
    fps: float | None = None,
) -> list[Clip]:
    """Decode the frames of all ``spans`` in one sequential pass.

    Only frames some span needs are kept, each resized as soon as it is decoded so that its shorter
    side is ``short_side`` (if given; INTER_AREA when shrinking, aspect ratio kept). ``fps`` is the
    frame rate of a frame folder. If the video turns out to have fewer frames than the spans ask
    for, those spans are re-fitted onto the real frames (see the module doc) and the returned
    ``Clip.span`` says which frames were used.
    """
    with _open_source(path, fps) as source:
        return _read_spans(source, spans, short_side)


def read_clip(
    path: str | os.PathLike,
    n: int = 16,
    short_side: int | None = None,
    target_fps: float | None = None,
    fps: float | None = None,
) -> Clip:
    """The central clip of n frames (see :func:`central_clip`); ``fps`` is for frame folders."""
    with _open_source(path, fps) as source:
        info = source.info
        span = central_clip(info.num_frames, info.fps, n, target_fps)
        return _read_spans(
            source, [span], short_side, respan=lambda real: [central_clip(real, info.fps, n, target_fps)]
        )[0]


def iter_windows(
    path: str | os.PathLike,
    window_sec: float,
    stride_sec: float,
    n: int = 16,
    short_side: int | None = None,
    fps: float | None = None,
) -> Iterator[Clip]:
    """Stream the :func:`sliding_windows` clips of a video, in order, in one decode pass.

    Only the frames of windows still open are held, so memory stays bounded however long the video
    is. The file is opened (and errors raised) when this is called, before the first clip.
    """
    source = _open_source(path, fps)
    try:
        info = source.info
        windows = sliding_windows(info.num_frames, info.fps, window_sec, stride_sec, n)
        process = _processor(info, short_side)
    except BaseException:
        source.close()
        raise
    return _stream_windows(source, windows, process, window_sec, stride_sec, n)


def _stream_windows(
    source: _Source,
    windows: list[ClipSpan],
    process: Callable[[np.ndarray], np.ndarray],
    window_sec: float,
    stride_sec: float,
    n: int,
) -> Iterator[Clip]:
    try:
        info = source.info
        pending = deque(windows)
        users: dict[int, int] = {}  # frame index -> number of pending windows using it
        for w in windows:
            for i in np.unique(w.frame_indices).tolist():
                users[i] = users.get(i, 0) + 1
        held: dict[int, np.ndarray] = {}
        last_start: float | None = None

        def emit(w: ClipSpan) -> Clip:
            return Clip(np.stack([held[i] for i in w.frame_indices.tolist()]), w)

        wanted = np.fromiter(sorted(users), dtype=np.int64, count=len(users))
        for i, frame in source.frames(wanted):
            held[i] = process(frame)
            while pending and int(pending[0].frame_indices.max()) <= i:
                w = pending.popleft()
                yield emit(w)
                last_start = w.start_sec
                for j in np.unique(w.frame_indices).tolist():
                    users[j] -= 1
                    if users[j] == 0:
                        del users[j]
                        held.pop(j, None)

        if source.end is None:
            return
        # Fewer frames than announced: the windows still to come are those of the real length.
        real = source.end
        if real < 1:
            raise _no_frames_error(info.path)
        rest = [
            w for w in sliding_windows(real, info.fps, window_sec, stride_sec, n)
            if last_start is None or w.start_sec > last_start + _EPS
        ]
        needed = set(np.unique(np.concatenate([w.frame_indices for w in rest])).tolist()) if rest else set()
        for j in list(held):
            if j not in needed:
                del held[j]
        missing = np.array(sorted(needed - held.keys()), dtype=np.int64)
        if missing.size:
            for i, frame in source.frames(missing):
                held[i] = process(frame)
            if source.end is not None:
                raise VideoError(
                    f"{info.path}: the video decodes differently on each pass (damaged file); "
                    "re-encode it, e.g. `ffmpeg -i IN -c:v libx264 OUT.mp4`"
                )
        for w in rest:
            yield emit(w)
    finally:
        source.close()
