"""Decoding videos into clips.

Everything a model needs from a video goes through this module:

* :func:`probe` reads the metadata (fps, frame count, size after rotation) of a video file or of a
  folder of image frames, and checks that at least one frame decodes.
* The samplers (:func:`central_clip`, :func:`uniform_clips`, :func:`random_clip`,
  :func:`sliding_windows`, in :mod:`.sampling` and re-exported here) are pure functions of
  ``(num_frames, fps)``: they say *which* source frames make a clip (a :class:`ClipSpan`).
* :func:`read_clips` decodes the frames of any number of spans in one sequential pass, keeping only
  the frames some span needs (resized as soon as they are decoded), so memory does not grow with the
  length of the video. :func:`iter_windows` streams sliding windows over a long video.

Decoding uses OpenCV's FFmpeg backend (``cv2.VideoCapture``), which also reads animated GIFs and
applies the display-matrix rotation of phone videos. Pillow is a fallback for GIFs OpenCV cannot open,
and a folder of frames is read with ``cv2.imdecode``. Frames come out as uint8 RGB, upright.
OpenCV crashes on a file name that is not valid UTF-8 (such names exist on real disks): every open
goes through :func:`cv2_path`, which hands OpenCV a temporary link with a plain name instead, and
messages show such names with ``\\xNN`` escapes (:func:`display_path`).

Frame counts stored in containers can be wrong (Matroska/WebM only store a duration, edit lists, files
cut short...). The reader never trusts them blindly: when the decode runs out of frames before a
requested index, the spans are re-fitted onto the frames that really exist (looping if needed) and
the missing frames are fetched in a second pass, so the result is always made of real frames. A
video clearly shorter than its container declares (damaged or cut short) is flagged on the
:class:`VideoInfo` that comes with every clip (``truncated``, ``truncation_warning()``); finding
that out costs nothing more than the decode the caller asked for.

Frames are counted in decode order, frame ``i`` being at time ``i / fps``. Long gaps between needed
frames are skipped by seeking, but only when the seek can be checked: after a seek the timestamps of
a few frames must land exactly on the expected frame numbers, otherwise the reader falls back to a
plain sequential decode from the start (correct, only slower).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
import weakref
from collections import Counter, deque
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Generator, Iterator, NamedTuple, Sequence

import cv2
import numpy as np

from ..errors import ActionrecError
from .sampling import _EPS, ClipSpan, _fit_span, central_clip, random_clip, sliding_windows, uniform_clips

__all__ = [
    "VIDEO_EXTENSIONS",
    "IMAGE_EXTENSIONS",
    "DEFAULT_FOLDER_FPS",
    "VideoError",
    "VideoInfo",
    "ClipSpan",
    "Clip",
    "WindowStream",
    "probe",
    "central_clip",
    "uniform_clips",
    "random_clip",
    "sliding_windows",
    "read_clips",
    "read_clip",
    "iter_windows",
    "resized_shape",
    "resize_short_side",
    "list_frame_files",
    "display_path",
    "cv2_path",
    "unreadable_error",
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
# A video whose decode ends more than this many frames (or this share of them) before the count its
# container declares is reported as cut short (estimated counts are often a frame or two off).
_SHORTFALL_FRAMES = 2
_SHORTFALL_SHARE = 0.05



class VideoError(ActionrecError):
    """A video (or frame folder) that cannot be read; the message is one line naming the path."""


# --------------------------------------------------------------------------------------------------
# File names: what OpenCV can be given, what a message can show
# --------------------------------------------------------------------------------------------------


def display_path(path: str | bytes | os.PathLike) -> str:
    """``path`` as text that prints and encodes anywhere: bytes that are not UTF-8 become ``\\xNN``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def unreadable_error(
    path: str | bytes | os.PathLike, exc: OSError, what: str = "", error: type[ActionrecError] = VideoError
) -> ActionrecError:
    """The one-line error for a file or folder the system refuses to read (a permission problem says so)."""
    shown = f"{what}{display_path(path)}"
    if isinstance(exc, PermissionError):
        return error(f"{shown}: cannot be read: permission denied; check its permissions")
    return error(f"{shown}: cannot be read ({exc.strerror or exc}); check the disk and the path")


class _CvName:
    """A name OpenCV can open for ``path``: the path itself when it is valid UTF-8, else a temporary
    symbolic link with a plain name (removed by :meth:`close`, or at the latest when collected)."""

    def __init__(self, path: str | bytes | os.PathLike):
        raw = os.fsencode(path)
        self._cleanup = None
        try:
            self.name = raw.decode("utf-8")
            return
        except UnicodeDecodeError:
            pass
        folder = tempfile.mkdtemp(prefix="actionrec-name-")
        self._cleanup = weakref.finalize(self, shutil.rmtree, folder, True)
        ext = os.path.splitext(display_path(raw))[1]
        self.name = os.path.join(folder, "video" + (ext if re.fullmatch(r"\.[A-Za-z0-9]{1,8}", ext) else ""))
        try:
            os.symlink(os.path.abspath(raw), os.fsencode(self.name))
        except OSError as exc:
            self.close()
            raise VideoError(
                f"{display_path(raw)}: its name is not valid UTF-8 and no temporary link to it could be made"
                f" ({exc.strerror or exc}); rename the file"
            ) from None

    def close(self) -> None:
        if self._cleanup is not None:
            self._cleanup()


@contextmanager
def cv2_path(path: str | bytes | os.PathLike) -> Iterator[str]:
    """``with cv2_path(p) as name: cv2.VideoCapture(name, ...)``: a name that is safe to give OpenCV.

    OpenCV crashes (segmentation fault) on a ``str`` holding surrogate escapes, which is how Python
    spells file names that are not valid UTF-8. Such a path is opened through a temporary symbolic
    link with a plain name (the file's extension kept), removed when the block ends; other paths are
    given as they are. Also for a file about to be written (the link may dangle until then).
    """
    alias = _CvName(path)
    try:
        yield alias.name
    finally:
        alias.close()


# --------------------------------------------------------------------------------------------------
# What a reader returns
# --------------------------------------------------------------------------------------------------


def _cut_short(real: int, declared: int) -> bool:
    """Whether ``real`` decodable frames are clearly fewer than the ``declared`` count."""
    return declared > 0 and declared - real > max(_SHORTFALL_FRAMES, _SHORTFALL_SHARE * declared)


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` (and then the decode) found out about a video.

    ``width`` and ``height`` are those of the frames as they come out (after rotation);
    ``rotation`` is the clockwise rotation in degrees from the container's metadata (0 if none),
    already applied to the frames. ``num_frames`` is the container's count (or, for Matroska/WebM
    and similar, the number of video packets) and can still be an estimate: the readers cope, and
    the info that comes with a decoded clip has the real count when the decode ran out early.
    ``declared_frames`` is set when the video holds clearly fewer frames than its container
    declares (a damaged or cut-short file): then it is the declared count and ``truncated`` is True.
    """

    path: str
    fps: float
    num_frames: int
    width: int
    height: int
    rotation: int
    declared_frames: int | None = None

    @property
    def duration(self) -> float:
        """Length in seconds (``num_frames / fps``): of the part that decodes, once that is known."""
        return self.num_frames / self.fps

    @property
    def truncated(self) -> bool:
        """True when the video was found clearly shorter than its container declares."""
        return self.declared_frames is not None

    @property
    def declared_duration(self) -> float:
        """The length in seconds that the container declares."""
        return (self.declared_frames or self.num_frames) / self.fps

    def truncation_warning(self) -> str | None:
        """One line naming the file and the span that decodes, for a truncated video; else None."""
        if not self.truncated:
            return None
        return (
            f"{display_path(self.path)}: only 0-{self.duration:.2f} s of the {self.declared_duration:.2f} s its"
            f" container declares decode ({self.num_frames} of {self.declared_frames} frames; damaged or cut"
            " short); results cover that part only: re-download or re-encode the video for the rest"
        )

    def _ran_out_at(self, real: int) -> "VideoInfo":
        """This info for a video whose decode ended after ``real`` frames."""
        declared = self.declared_frames or self.num_frames
        return replace(self, num_frames=real, declared_frames=declared if _cut_short(real, declared) else None)


class Clip(NamedTuple):
    frames: np.ndarray  # (n, H, W, 3) uint8 RGB
    span: ClipSpan
    video: VideoInfo | None = None  # the video as known when the clip was decoded (see VideoInfo.truncated)


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


def _error(path: str, problem: str) -> VideoError:
    """``<path>: <problem>; <fix>`` as one line, the path shown safely."""
    return VideoError(f"{display_path(path)}: {problem}")


@contextmanager
def quiet_opencv() -> Iterator[None]:
    """OpenCV's own WARN lines off inside the block (it warns on stderr about sources it cannot open or read; we say
    so ourselves, in one line)."""
    logging = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging is None:
        yield
        return
    previous = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_ERROR)
    try:
        yield
    finally:
        logging.setLogLevel(previous)


def _open_capture(name: str, path: str) -> "cv2.VideoCapture":
    """A capture of ``name`` (a :func:`cv2_path` name); errors name ``path``."""
    with quiet_opencv():
        cap = cv2.VideoCapture(name, cv2.CAP_FFMPEG)
    if not cap.isOpened():
        cap.release()
        raise _error(
            path,
            "cannot be opened as a video (not a video file, damaged or truncated, or an unsupported codec); check"
            " that it plays in a video player, or re-encode it, e.g. `ffmpeg -i IN -c:v libx264 OUT.mp4`",
        )
    return cap


def _no_frames_error(path: str) -> VideoError:
    return _error(
        path,
        "no video frame could be decoded (empty, damaged or truncated file); "
        "re-download or re-encode the video, or use another file",
    )


def _decodes_differently(path: str) -> VideoError:
    return _error(
        path,
        "the video decodes differently on each pass (damaged file); re-encode it, e.g. "
        "`ffmpeg -i IN -c:v libx264 OUT.mp4`",
    )


def _count_grabs(name: str, path: str, packets_only: bool) -> int:
    """Frames a plain pass grabs (decoding them, or with ``packets_only`` only demuxing: 0 if unsupported)."""
    cap = _open_capture(name, path)
    try:
        if packets_only and not cap.set(cv2.CAP_PROP_FORMAT, -1):
            return 0
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
        self._cap = None
        self._rotate_code = None
        self._name = _CvName(path)
        try:
            self.info = self._probe(fps_hint)
        except BaseException:
            self.close()
            raise

    def _probe(self, fps_hint: float | None) -> VideoInfo:
        cap = self._open()
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if not (math.isfinite(fps) and 0 < fps <= _MAX_FPS):
            fps = float(fps_hint) if fps_hint else DEFAULT_FOLDER_FPS
        declared = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        count = declared
        ext = os.path.splitext(self.path)[1].lower()
        if count <= 0 or (ext in _ESTIMATED_COUNT_EXTENSIONS and os.path.getsize(self.path) <= _COUNT_PACKETS_MAX_BYTES):
            try:
                count = _count_grabs(self._name.name, self.path, packets_only=True) or count
            except VideoError:
                pass
        if count <= 0:  # neither the container nor the demuxer knows: decode everything once
            count = _count_grabs(self._name.name, self.path, packets_only=False)
        rotation = int(round(cap.get(cv2.CAP_PROP_ORIENTATION_META) or 0)) % 360
        self._rotate_code = None if self._auto_rotate else _MANUAL_ROTATION.get(rotation)
        height, width = self._rotate(self._first_frame).shape[:2]
        # A Matroska-like file whose packets fall clearly short of its declared duration was cut short.
        claimed = declared if _cut_short(count, declared) else None
        return VideoInfo(self.path, fps, max(count, 1), width, height, rotation, claimed)

    def _open(self) -> "cv2.VideoCapture":
        cap = _open_capture(self._name.name, self.path)
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
        return frame if self._rotate_code is None else cv2.rotate(frame, self._rotate_code)

    def _release(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def close(self) -> None:
        self._release()
        self._name.close()

    def _reopen(self) -> None:
        self._release()
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
        if self._cap is None:
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
            raise _error(
                path, f"cannot be read as an animated GIF ({reason}); re-export the GIF or convert it to a video"
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
    except OSError as exc:
        raise unreadable_error(path, exc, "image frame ") from None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise _error(str(path), "cannot read this image frame (damaged or not an image); replace or delete the file")
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
            raise unreadable_error(path, exc, "folder ") from None
        if not self.files:
            raise _error(
                path,
                f"folder contains no image frames ({', '.join(IMAGE_EXTENSIONS)}); "
                "put the frames there (e.g. frame_00001.png ...) or pass a video file",
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
                raise _error(
                    str(self.files[target]),
                    f"frame is {image.shape[1]}x{image.shape[0]} but the first frame of the folder is"
                    f" {self.info.width}x{self.info.height}; make all frames the same size",
                )
            yield target, image


def _open_source(path: str | bytes | os.PathLike, fps: float | None = None) -> _Source:
    shown = os.fsdecode(os.fspath(path))
    if not os.path.exists(shown):
        raise _error(shown, "no such file or folder; check the path")
    if os.path.isdir(shown):
        return _FolderSource(shown, fps)
    try:
        with open(shown, "rb") as f:
            empty = not f.read(1)
    except OSError as exc:
        raise unreadable_error(shown, exc) from None
    if empty:
        raise _error(shown, "the file is empty (0 bytes); re-download or re-export the video")
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


def _ran_out(source: _Source) -> int:
    """After a decode that ended early: the real frame count, now also on ``source.info``."""
    real = source.end
    if real is None or real < 1:
        raise _no_frames_error(source.info.path)
    source.info = source.info._ran_out_at(real)
    return real


def _fetch(source: _Source, missing: np.ndarray, process: Callable, into: dict[int, np.ndarray]) -> None:
    """Decode the frames ``missing`` after a re-fit (a second pass); they must all exist now."""
    if not missing.size:
        return
    for i, frame in source.frames(missing):
        into[i] = process(frame)
    if source.end is not None:
        raise _decodes_differently(source.info.path)


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
        ref = max(source.info.num_frames, int(wanted[-1]) + 1)
        real = _ran_out(source)
        if respan is not None:
            spans = [_as_span(s) for s in respan(real)]
        else:
            spans = [_fit_span(s, real, ref, source.info.fps) for s in spans]
        needed = np.unique(np.concatenate([s.frame_indices for s in spans]))
        _fetch(source, needed[~np.isin(needed, np.fromiter(kept, dtype=np.int64, count=len(kept)))], process, kept)
    return [Clip(np.stack([kept[i] for i in s.frame_indices.tolist()]), s, source.info) for s in spans]


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
    ``Clip.span`` says which frames were used; ``Clip.video`` then has the real count (and says
    whether the video is ``truncated``).
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
) -> "WindowStream":
    """Stream the :func:`sliding_windows` clips of a video, in order, in one decode pass.

    Only the frames of windows still open are held, so memory stays bounded however long the video
    is. The file is opened (and errors raised) when this is called, before the first clip. The
    returned :class:`WindowStream` iterates over the clips; its ``info`` is final once they are
    all read (``info.truncated`` for a video cut short).
    """
    source = _open_source(path, fps)
    try:
        return WindowStream(source, window_sec, stride_sec, n, short_side)
    except BaseException:
        source.close()
        raise


class WindowStream(Iterator[Clip]):
    """The clips of :func:`iter_windows`, in order.

    ``info`` is the video's :class:`VideoInfo`; when the decode finds the video shorter than its
    container said, ``info`` (and the ``video`` of the clips from then on) has the real count, and
    the windows still to come are those of the real length.
    """

    def __init__(self, source: _Source, window_sec: float, stride_sec: float, n: int, short_side: int | None):
        self.info = source.info
        self._source = source
        self._sliding = lambda num_frames: sliding_windows(num_frames, source.info.fps, window_sec, stride_sec, n)
        self._windows = self._sliding(source.info.num_frames)
        self._process = _processor(source.info, short_side)
        self._held: dict[int, np.ndarray] = {}
        self._clips = self._stream()

    def __next__(self) -> Clip:
        return next(self._clips)

    def close(self) -> None:
        """Stop early and release the video."""
        self._clips.close()
        self._source.close()

    def _emit(self, w: ClipSpan) -> Clip:
        return Clip(np.stack([self._held[i] for i in w.frame_indices.tolist()]), w, self.info)

    def _stream(self) -> Iterator[Clip]:
        try:
            last_start = yield from self._planned()
            if self._source.end is not None:
                yield from self._rest(last_start)
        finally:
            self._source.close()

    def _planned(self) -> Generator[Clip, None, float | None]:
        """The planned windows while the frames last; returns the start of the last one emitted."""
        pending = deque(self._windows)
        users: Counter[int] = Counter()  # frame index -> number of pending windows using it
        for w in self._windows:
            users.update(np.unique(w.frame_indices).tolist())
        last_start: float | None = None
        wanted = np.fromiter(sorted(users), dtype=np.int64, count=len(users))
        for i, frame in self._source.frames(wanted):
            self._held[i] = self._process(frame)
            while pending and int(pending[0].frame_indices.max()) <= i:
                w = pending.popleft()
                yield self._emit(w)
                last_start = w.start_sec
                for j in np.unique(w.frame_indices).tolist():
                    users[j] -= 1
                    if users[j] == 0:
                        del users[j]
                        self._held.pop(j, None)
        return last_start

    def _rest(self, last_start: float | None) -> Iterator[Clip]:
        """Fewer frames than announced: the windows still to come are those of the real length."""
        real = _ran_out(self._source)
        self.info = self._source.info
        rest = [w for w in self._sliding(real) if last_start is None or w.start_sec > last_start + _EPS]
        needed = set(np.unique(np.concatenate([w.frame_indices for w in rest])).tolist()) if rest else set()
        for j in [j for j in self._held if j not in needed]:
            del self._held[j]
        _fetch(self._source, np.array(sorted(needed - self._held.keys()), dtype=np.int64), self._process, self._held)
        for w in rest:
            yield self._emit(w)


# --------------------------------------------------------------------------------------------------
# Live sources: a camera, a network stream or a file read as a stream (actionrec watch)
# --------------------------------------------------------------------------------------------------

DEFAULT_FPS = 25.0  # frame rate assumed when a live source does not say
MAX_FPS = 240.0  # a source claiming more is not telling its frame rate
READ_TIMEOUT = 10.0  # a network stream that sends nothing for this long has ended
LATE_FRAMES = 4  # a live reader this many frames behind would lose frames (a camera driver buffers about 4)


@dataclass
class LiveSource:
    """An open live source and what the reader has seen of it (shared with the engine's producer thread)."""

    cap: object  # cv2.VideoCapture
    kind: str  # "camera", "stream" or "file"
    fps: float
    shown: str  # the name to show (a path shown safely)
    live: bool  # never held back (a camera, a stream, a file read in real time)
    realtime: bool = False  # a file paced at its frame rate
    newest: float = 0.0  # stream time of the newest frame read
    frames: int = 0
    read_lag: float = 0.0  # realtime file: largest delay of a read behind the frame's time
    late_frames: int = 0  # realtime file: frames read LATE_FRAMES periods late or more

    def close(self) -> None:
        self.cap.release()


def open_live(source: str | int, fps: float | None = None, read_timeout: float = READ_TIMEOUT,
              realtime: bool = False) -> LiveSource:
    """A camera index (a number or a device file), a stream (``scheme://...``) or a file read as a stream (paced at its
    frame rate with `realtime`); `fps` for a source that does not say its frame rate (else :data:`DEFAULT_FPS`).
    One line when it cannot be opened."""
    shown = display_path(source) if not isinstance(source, int) else str(source)
    if fps is not None and not (math.isfinite(fps) and 0 < fps <= MAX_FPS):
        raise ActionrecError(f"--fps must be a frame rate between 0 and {MAX_FPS:g}, not {fps!r}")
    with quiet_opencv():
        kind, cap = _capture(source, shown, read_timeout)
    if not cap.isOpened():
        cap.release()
        what = {"camera": "camera", "stream": "stream", "file": "video"}[kind]
        raise ActionrecError(f"{shown}: cannot open this {what} (check the index, URL or path, and that nothing else holds it)")
    rate = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    if not (math.isfinite(rate) and 0 < rate <= MAX_FPS):  # the source does not say: --fps, else the default
        rate = float(fps or DEFAULT_FPS)
    return LiveSource(cap, kind, rate, shown, live=kind != "file" or realtime, realtime=realtime and kind == "file")


def _capture(source: str | int, shown: str, read_timeout: float):
    """(kind, cv2.VideoCapture) of a camera index, a stream URL or a file (opened under a name OpenCV can take)."""
    text = str(source) if isinstance(source, int) else os.fsdecode(source)
    if isinstance(source, int) or text.isdigit():
        return "camera", cv2.VideoCapture(int(text))
    if "://" in text:
        params: list[int] = []
        for name in ("CAP_PROP_OPEN_TIMEOUT_MSEC", "CAP_PROP_READ_TIMEOUT_MSEC"):
            if hasattr(cv2, name):
                params += [getattr(cv2, name), int(read_timeout * 1000)]
        return "stream", cv2.VideoCapture(text, cv2.CAP_FFMPEG, params)
    if not os.path.exists(text):
        raise ActionrecError(f"{shown}: no such file, camera index or stream URL")
    kind = "file" if os.path.isfile(text) else "camera"
    with cv2_path(text) as name:
        return kind, cv2.VideoCapture(name, cv2.CAP_FFMPEG if kind == "file" else cv2.CAP_ANY)


class StreamWindower:
    """Cuts a frame sequence into sliding windows as the frames come (the streaming form of :func:`sliding_windows`:
    window k starts at k * stride, frame j of it is the one shown at start + (j + 0.5) * window / n); holds only the
    frames an open window needs."""

    def __init__(self, fps: float, window: float, stride: float, n: int):
        self.fps, self.window, self.stride = fps, window, stride
        self.rel = (np.arange(n) + 0.5) * (window / n)
        self.next_k = 0
        self.open: deque = deque()  # (k, indices, set of indices)
        self.held: dict[int, np.ndarray] = {}

    def _indices(self, k: int) -> np.ndarray:
        return np.floor((k * self.stride + self.rel) * self.fps + _EPS).astype(np.int64)

    def wanted(self, i: int) -> bool:
        """Whether frame i belongs to a window (opens the windows that start by then)."""
        while True:
            idx = self._indices(self.next_k)
            if idx[0] > i:
                break
            self.open.append((self.next_k, idx, set(idx.tolist())))
            self.next_k += 1
        return any(i in s for _, _, s in self.open)

    def add(self, i: int, frame: np.ndarray) -> list[tuple[float, float, np.ndarray]]:
        """Keep frame i; return the windows it completes as (start, end, frames)."""
        self.held[i] = frame
        done = []
        while self.open and int(self.open[0][1][-1]) <= i:
            k, idx, _ = self.open.popleft()
            start = k * self.stride
            done.append((start, start + self.window, np.stack([self.held[j] for j in idx.tolist()])))
        low = int(self.open[0][1][0]) if self.open else i + 1
        for j in [j for j in self.held if j < low]:
            del self.held[j]
        return done


def live_windows(src: LiveSource, window: float, stride: float, n: int, short_side: int | None
                 ) -> Iterator[tuple[float, float, float, np.ndarray]]:
    """The source's windows as (start, end, arrival, RGB frames (n, H, W, 3)) as their last frame arrives: frames are
    grabbed as the source delivers them and only those an open window needs are decoded and resized. A realtime file
    is paced at its frame rate (a frame's arrival is then its due time, else the monotonic time it was read).
    Releases the source when done."""
    import time

    windower = StreamWindower(src.fps, window, stride, n)
    t0, i = time.monotonic(), 0
    try:
        while True:
            due = t0 + i / src.fps
            if src.realtime:
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                elif -delay >= LATE_FRAMES / src.fps:
                    src.late_frames += 1
                src.read_lag = max(src.read_lag, -delay)
            wanted = windower.wanted(i)
            with quiet_opencv():  # a stream's hiccups are OpenCV WARN lines; its end is said in the summary
                if not src.cap.grab():
                    return
                ok, frame = src.cap.retrieve() if wanted else (True, None)
            done = []
            if wanted:
                if not ok or frame is None or frame.size == 0:
                    return
                done = windower.add(i, cv2.cvtColor(resize_short_side(frame, short_side), cv2.COLOR_BGR2RGB))
            src.newest, src.frames = (i + 1) / src.fps, i + 1
            arrival = due if src.realtime else time.monotonic()
            for start, end, clip in done:
                yield start, end, arrival, clip
            i += 1
    finally:
        src.close()


def thumbnail_jpeg(path: str | os.PathLike, seconds: float, width: int, quality: int = 80) -> bytes:
    """A JPEG of the frame shown at `seconds`, `width` pixels wide, through the same decoder as everything else (frame
    folders, GIFs, non-UTF-8 names); one VideoError line when the video has no frame there."""
    with _open_source(path) as source:
        info = source.info
        index = int(math.floor(max(seconds, 0.0) * info.fps + _EPS))
        if index >= info.num_frames:
            raise _error(os.fsdecode(os.fspath(path)), f"no frame at {seconds:g} s (the video is {info.duration:g} s long)")
        for _, frame in source.frames(np.array([index], np.int64)):
            height = max(1, round(frame.shape[0] * width / frame.shape[1]))
            small = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
            return cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])[1].tobytes()
    raise _error(os.fsdecode(os.fspath(path)), f"no frame at {seconds:g} s (the video decodes shorter than it says)")


# --------------------------------------------------------------------------------------------------
# Content keys: what a cached result of a video is keyed by
# --------------------------------------------------------------------------------------------------

_KEY_BLOCK = 1 << 20  # files are hashed 1 MiB at a time


def _digest_file(path: str | os.PathLike, digest) -> None:
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_KEY_BLOCK), b""):
            digest.update(block)


def content_key(path: str | os.PathLike) -> str:
    """The content key of a video: a sha256 over every byte of the file (its name and times do not count), or, for a
    folder of frames, over its sorted file names and every file's content; one line when it cannot be read. The
    feature cache, the timeline cache and the archives key on it."""
    import hashlib

    path = os.fspath(path)
    try:
        if not os.path.isdir(path):
            digest = hashlib.sha256()
            _digest_file(path, digest)
            return digest.hexdigest()[:32]
        digest = hashlib.sha256(b"folder;")
        for name in sorted(os.listdir(path)):
            full = os.path.join(path, name)
            digest.update(f"{name}:".encode())
            if os.path.isfile(full):
                _digest_file(full, digest)
            digest.update(b";")
        return digest.hexdigest()[:32]
    except OSError as err:
        raise ActionrecError(f"{display_path(path)}: cannot be read ({err.strerror}); check the path") from None

