"""What every dataset source returns: :class:`Sample`, its group, and the helpers the sources share.

The sources (:mod:`.folders`, :mod:`.ucf101`, :mod:`.manifest`) turn what is on disk into a flat
list of samples; :mod:`.splits` assigns them to train / val / test; :mod:`.datasets` mixes
sources.  Groups (see :func:`infer_group`) keep clips cut from one recording on one side of a split.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

from ..errors import ActionrecError
from .video import VIDEO_EXTENSIONS, unreadable_error

__all__ = ["Sample", "SPLIT_NAMES", "NONE_LABEL", "infer_group", "did_you_mean", "Say", "clip_address", "parse_address"]

SPLIT_NAMES = ("train", "val", "test")
NONE_LABEL = "none"  # the reserved label of time that shows none of the classes (a manifest's background)

Say = Callable[[str], None]  # where a loader's one-line notes and warnings go

_UCF_NAME = re.compile(r"^v_(?P<cls>.+)_g(?P<g>\d+)_c(?P<c>\d+)$", re.IGNORECASE)
_CLIP_NAME = re.compile(r"^(?P<stem>.*[^_\-\s])[_\-](?:c|clip)[_\-]?(?P<n>\d+)$", re.IGNORECASE)
_ADDRESS = re.compile(
    r"^(?P<video>.+)#t=(?P<start>\d+(?:\.\d+)?),(?P<end>\d+(?:\.\d+)?)(?:&clip=(?P<k>\d+)of(?P<n>\d+))?$")


@dataclass(frozen=True)
class Sample:
    """One labelled video (a file, or a folder of frames when listed in a manifest), or a time range of one.

    ``path`` is what the feature cache and the trainer address the sample by: the video itself, or for a range
    ``VIDEO#t=START,END`` (seconds, the W3C media-fragment form), ending in ``&clip=KofN`` when the sample is the
    K-th of N clips spread over the range (see :mod:`.segments`). ``video``, ``start``, ``end`` and ``clip`` read
    it back; :func:`clip_address` writes it. Two clips of one video are thus two samples everywhere.
    """

    path: str  # absolute path of the video, with its range when the sample is one (see the class doc)
    label: str
    group: str  # samples sharing a group never straddle splits
    split: str | None = None  # 'train' | 'val' | 'test' when the source fixes it, else None
    # Where a fixed split came from, for the split policy sentence (e.g. "official UCF101
    # split 1"); not part of a sample's identity.
    origin: str | None = field(default=None, compare=False, repr=False)

    @property
    def video(self) -> str:
        """The video file (or frames folder) the sample is cut from."""
        return parse_address(self.path)[0]

    @property
    def start(self) -> float | None:
        """Where the labelled range starts, in seconds; None when the whole video is labelled."""
        return parse_address(self.path)[1]

    @property
    def end(self) -> float | None:
        """Where the labelled range ends, in seconds; None when the whole video is labelled."""
        return parse_address(self.path)[2]

    @property
    def clip(self) -> tuple[int, int] | None:
        """(k, n): the sample is the k-th (from 0) of n clips spread evenly over its range; None: the whole range."""
        return parse_address(self.path)[3]


def _seconds(x: float) -> str:
    return f"{x:.3f}".rstrip("0").rstrip(".")


def clip_address(video: str, start: float | None = None, end: float | None = None,
                 clip: tuple[int, int] | None = None) -> str:
    """The ``path`` of a sample: ``video``, or ``video#t=START,END[&clip=KofN]`` for a range (times kept to 1 ms)."""
    if start is None or end is None:
        return video
    address = f"{video}#t={_seconds(start)},{_seconds(end)}"
    return address + (f"&clip={clip[0]}of{clip[1]}" if clip is not None else "")


def parse_address(path: str) -> tuple[str, float | None, float | None, tuple[int, int] | None]:
    """(video, start, end, clip) of a sample's ``path`` (see :class:`Sample`); a plain path is the whole video."""
    m = _ADDRESS.match(path)
    if m is None:
        return path, None, None, None
    clip = (int(m["k"]), int(m["n"])) if m["k"] is not None else None
    return m["video"], float(m["start"]), float(m["end"]), clip


def infer_group(path: str | os.PathLike, label: str) -> str:
    """The group of a clip that its source did not give one (see :mod:`actionrec.data.datasets`)."""
    path = os.fspath(path)
    stem = os.path.splitext(os.path.basename(path.rstrip("/\\")))[0]
    m = _UCF_NAME.match(stem)
    if m:
        return f"{m['cls']}_g{int(m['g']):02d}"
    m = _CLIP_NAME.match(stem)
    if m:
        return f"{label}/{m['stem'].lower()}"
    return os.path.abspath(path)


# ----------------------------------------------------------------------------- names


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """' (did you mean A, B?)': up to three close matches, compared case-insensitively, or ''."""
    by_lower: dict[str, str] = {}
    for c in candidates:
        by_lower.setdefault(c.lower(), c)
    hits = difflib.get_close_matches(name.lower(), list(by_lower), n=3, cutoff=0.6)
    hits += [low for low in by_lower if name.lower() in low and low not in hits][: 3 - len(hits)]
    return f" (did you mean {', '.join(by_lower[h] for h in hits)}?)" if hits else ""


def parse_classes(classes: str | Sequence[str] | None) -> list[str] | None:
    """Accept ``"A,B,C"`` or a sequence of names; strip, drop blanks and repeats."""
    if classes is None:
        return None
    if isinstance(classes, str):
        classes = classes.split(",")
    out: list[str] = []
    for c in classes:
        c = str(c).strip()
        if c and c not in out:
            out.append(c)
    return out


def resolve_names(wanted: Sequence[str], available: Iterable[str]) -> tuple[dict[str, str], list[str]]:
    """Map each wanted class name to an available one (exact, else case-insensitive).

    Returns ({wanted: available}, [wanted names that matched nothing]).
    """
    available = list(available)
    exact = set(available)
    lower: dict[str, str] = {}
    for a in available:
        lower.setdefault(a.lower(), a)
    found: dict[str, str] = {}
    missing: list[str] = []
    for w in wanted:
        if w in exact:
            found[w] = w
        elif w.lower() in lower:
            found[w] = lower[w.lower()]
        else:
            missing.append(w)
    return found, missing


def names_list(xs: Iterable[str], most: int = 5) -> str:
    """'A, B, C and 4 more': sorted names for a one-line message."""
    xs = sorted(xs)
    return ", ".join(xs[:most]) + (f" and {len(xs) - most} more" if len(xs) > most else "")


# ----------------------------------------------------------------------------- files and folders


def abspath(p: str | os.PathLike) -> str:
    return os.path.abspath(os.path.expanduser(os.fspath(p)))


def video_extensions() -> tuple[str, ...]:
    """The accepted video extensions (lower case, with dot)."""
    return tuple(sorted({e.lower() for e in VIDEO_EXTENSIONS}))


def ext_list() -> str:
    return " ".join(video_extensions())


def is_video_file(name: str, exts: tuple[str, ...]) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in exts


def listdir(folder: str) -> list[str]:
    """``os.listdir``, with an unreadable folder as one clear line."""
    try:
        return os.listdir(folder)
    except OSError as exc:
        raise unreadable_error(folder, exc, "folder ", ActionrecError) from None


def check_dir(root: str, what: str) -> None:
    if not os.path.exists(root):
        raise ActionrecError(f"{root} does not exist: check the {what} path")
    if not os.path.isdir(root):
        raise ActionrecError(
            f"{root} is a file, not a folder: give the folder that holds one sub-folder per class"
            " (or a .csv manifest)"
        )


def class_dirs(root: str) -> list[str]:
    """Visible sub-folders of ``root`` (one per class), sorted."""
    return sorted(
        n for n in listdir(root)
        if not n.startswith(".") and n != "__MACOSX" and os.path.isdir(os.path.join(root, n))
    )


def read_lines(path: str) -> list[tuple[int, str]]:
    """Non-blank, stripped lines of a text file with their 1-based line numbers."""
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as f:
            return [(i, ln.strip()) for i, ln in enumerate(f, 1) if ln.strip()]
    except OSError as e:
        raise unreadable_error(path, e, "", ActionrecError) from None
