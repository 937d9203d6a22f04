"""What the annotation formats of downloaded datasets (:mod:`.kinetics`, :mod:`.activitynet`) share.

* Videos found by name: the common downloaders write one file per YouTube id (or per clip of one) into a folder,
  a folder per split or per class; :func:`video_index` maps every video's file name (without extension) under the
  annotation file's folder to its path, so any of those layouts is found.
* The official subsets as splits (:func:`subset_splits`): a dataset's own train / validation / test subsets,
  ordered; the last one present is the held-out test set (papers report Kinetics and ActivityNet on their
  validation sets, whose test labels were withheld; THUMOS trains on its validation videos and tests on its test
  videos), the first the training set, a middle one the validation set.  A training subset alone fixes nothing, so
  test and val are held out from it by whole groups, as for class folders.
* A range of a whole video checked against its length (:func:`fit_range`), and one line saying what was skipped:
  downloads always miss some videos, so a missing or unreadable file is skipped and counted, never a crash.
"""

from __future__ import annotations

import os
from collections import defaultdict

from ..errors import ActionrecError
from .samples import Say, is_video_file, names_list, video_extensions
from .video import probe

__all__ = ["SUBSETS", "video_index", "search_root", "subset_splits", "fit_range", "Skipped"]

# A dataset's subset names (lower case) -> the split names of :class:`Sample`.
SUBSETS = {"train": "train", "training": "train", "val": "val", "valid": "val", "validate": "val",
           "validation": "val", "test": "test", "testing": "test"}
_ANNOTATION_DIRS = ("annotations", "annotation", "labels")  # a folder of annotation files beside the videos' folders
_DEPTH = 3  # root/<split>/<class>/<video>
_SHORTEST = 0.1  # seconds of a range that must lie inside the video; a range ending after the video's end is cut there


def search_root(annotation_file: str) -> str:
    """Where the videos of an annotation file are looked for: its folder, or the folder above an ``annotations``
    folder (``kinetics400/annotations/train.csv`` with ``kinetics400/train/``)."""
    folder = os.path.dirname(annotation_file)
    return os.path.dirname(folder) if os.path.basename(folder).lower() in _ANNOTATION_DIRS else folder


def video_index(root: str) -> dict[str, str]:
    """{file name without extension: path} of the videos under ``root``, at most 3 folders deep (hidden folders
    skipped); where two files share a name, the first in sorted order."""
    exts = video_extensions()
    found: dict[str, str] = {}
    for folder, dirs, files in os.walk(root):
        depth = os.path.relpath(folder, root).count(os.sep) + (folder != root)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if depth < _DEPTH else []
        for name in sorted(files):
            if is_video_file(name, exts):
                found.setdefault(os.path.splitext(name)[0], os.path.join(folder, name))
    return found


def subset_splits(present: set[str]) -> dict[str, str | None]:
    """The split each official subset (train / val / test) becomes, given the subsets that hold labelled videos."""
    order = [s for s in ("train", "val", "test") if s in present]
    if order == ["train"]:
        return {"train": None}
    if len(order) == 1:
        return {order[0]: "test"}
    if len(order) == 2:
        return {order[0]: "train", order[1]: "test"}
    return {"train": "train", "val": "val", "test": "test"}


class Skipped:
    """Entries left out for a reason (no video file, unreadable, ...), said in one line at the end."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.by_reason: dict[str, list[str]] = defaultdict(list)

    def add(self, reason: str, what: str) -> None:
        self.by_reason[reason].append(what)

    def say(self, total: int, root: str, say: Say | None) -> None:
        """One line: how many of ``total`` entries were skipped, why, the first few of each, and what to do."""
        if not self.by_reason or say is None:
            return
        n = sum(len(v) for v in self.by_reason.values())
        reasons = "; ".join(f"{len(v)} {reason} ({names_list(v, 3)})" for reason, v in self.by_reason.items())
        say(f"{self.source}: {n} of {total} entries skipped: {reasons}; videos are looked for by name under {root}"
            " (downloads always miss some): download them again, or go on without them")


def fit_range(video: str, start: float, end: float, lengths: dict[str, float | None],
              skipped: Skipped, what: str) -> tuple[float, float] | None:
    """``(start, end)`` cut to the video's length (read once per video into ``lengths``; a download may be shorter
    than the original), or None (and counted in ``skipped``) when the video cannot be read or the range starts after
    its end."""
    if video not in lengths:
        try:
            lengths[video] = probe(video).duration
        except ActionrecError:
            lengths[video] = None
    length = lengths[video]
    if length is None:
        skipped.add("unreadable", what)
        return None
    if start >= length - _SHORTEST:
        skipped.add("starting after the video's end", what)
        return None
    return round(start, 3), round(min(end, length), 3)
