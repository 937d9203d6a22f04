"""HMDB51 as distributed: ``hmdb51_org/<class>/*.avi`` with the ``testTrainMulti_7030_splits`` split files.

``test_train_splits.rar`` unpacks to ``testTrainMulti_7030_splits/<class>_test_split<N>.txt`` (N = 1, 2, 3), one
line per clip of the class: ``<video>.avi <T>`` with T = 1 train, 2 test, 0 not used in that split.
``hmdb51_org.rar`` holds one rar per class, each unpacking to ``<class>/*.avi``.  The split folder is looked for
inside and beside the video root (also as mmaction2 keeps it: ``annotations/``, its files moved up or not).
As for UCF101, people often extract only some classes: without a class list, the classes are those that have both
split files and a folder on disk (and the loader says which).

Groups: HMDB51's clips are cut from movies and web videos, several from one source, named
``<source>_<class>_<tags>_<N>.avi``; the clips of one class sharing everything but the final ``_<N>`` are one group,
so the validation set carved from the official training clips never holds a clip of a training source.
"""

from __future__ import annotations

import os
import re
from typing import NamedTuple, Sequence

from ..errors import ActionrecError
from .samples import (
    Sample, Say, abspath, check_dir, class_dirs, did_you_mean, listdir, names_list, parse_classes, read_lines,
    resolve_names,
)

__all__ = ["load_hmdb51", "looks_like_hmdb51", "hmdb51_classes"]

_SPLIT_DIRS = ("testTrainMulti_7030_splits", "test_train_splits", "annotations",
               os.path.join("annotations", "testTrainMulti_7030_splits"), "splits")
_VIDEO_DIRS = ("hmdb51_org", "hmdb51", "HMDB51", "videos")
_SPLIT_FILE = re.compile(r"^(?P<cls>.+)_test_split(?P<n>[123])\.txt$")
_TAGS = {"0": None, "1": "train", "2": "test"}  # None: not used in this split
_CLIP_NUMBER = re.compile(r"^(?P<source>.+)_\d+$")


class _Layout(NamedTuple):
    root: str
    video_root: str
    splits_dir: str
    split: int
    files: dict[str, str]  # class -> its split file for this split


def load_hmdb51(root: str | os.PathLike, classes: str | Sequence[str] | None = None, split: int = 1,
                say: Say | None = None) -> list[Sample]:
    """Samples of an HMDB51 tree, ``split`` (1, 2 or 3) 'train' / 'test' fixed by the official split files.

    ``root`` is the folder holding ``hmdb51_org`` (and usually ``testTrainMulti_7030_splits``), or the folder of
    class folders itself.  ``classes`` names a subset (a sequence or ``"A,B"``, case-insensitive) or None: the
    classes with split files and a folder on disk, named to ``say``.  Clips tagged 0 (unused in this split) are left
    out.  A malformed line, a class folder or a listed video that is missing: one line naming the file and the fix.
    """
    root = abspath(root)
    check_dir(root, "HMDB51")
    layout = _find_layout(root, _check_split(root, split))
    folders = {n.lower(): n for n in class_dirs(layout.video_root)}
    wanted = parse_classes(classes)
    if wanted is None:
        chosen = _classes_on_disk(layout, folders, say)
    else:
        found, missing = resolve_names(wanted, layout.files)
        if missing:
            raise ActionrecError(
                f"unknown HMDB51 class '{missing[0]}' (no {missing[0]}_test_split{layout.split}.txt in"
                f" {layout.splits_dir}){did_you_mean(missing[0], layout.files)}: use the split files' class names"
            )
        chosen = list(dict.fromkeys(found.values()))
    samples: list[Sample] = []
    for label in chosen:
        samples += _class_samples(layout, label, folders)
    return samples


def hmdb51_classes(root: str | os.PathLike, split: int = 1) -> list[str]:
    """The class names the split files of ``root``'s HMDB51 layout name (for suggestions)."""
    root = abspath(root)
    return sorted(_find_layout(root, _check_split(root, split)).files)


def looks_like_hmdb51(root: str) -> bool:
    """A folder with HMDB51's split files (``<class>_test_split<N>.txt``) inside or beside it and a folder of a class
    they name."""
    splits_dir = _splits_dir(root)
    if splits_dir is None:
        return False
    named = {_SPLIT_FILE.match(n)["cls"].lower() for n in _split_files(splits_dir)}
    try:
        return any(n.lower() in named for n in os.listdir(_video_root(root, splits_dir)))
    except OSError:
        return False


def _check_split(root: str, split: int | str) -> int:
    if isinstance(split, str) and split.strip().isdigit():
        split = int(split)
    if split not in (1, 2, 3) or isinstance(split, bool):
        raise ActionrecError(f"HMDB51 at {root}: split must be 1, 2 or 3, not {split!r}")
    return int(split)


def _split_files(folder: str) -> list[str]:
    try:
        return [n for n in os.listdir(folder) if _SPLIT_FILE.match(n)]
    except OSError:
        return []


def _splits_dir(root: str) -> str | None:
    """The folder holding the split files, looked for in and beside ``root`` and its video folder."""
    bases = [root, os.path.dirname(root)] + [os.path.join(root, d) for d in _VIDEO_DIRS]
    for base in bases:
        for cand in (base, *(os.path.join(base, d) for d in _SPLIT_DIRS)):
            if _split_files(cand):
                return cand
    return None


def _video_root(root: str, splits_dir: str) -> str:
    """The folder of class folders: ``hmdb51_org`` (or a similar name) inside ``root``, else ``root`` itself."""
    for d in _VIDEO_DIRS:
        cand = os.path.join(root, d)
        if os.path.isdir(cand) and os.path.abspath(cand) != os.path.abspath(splits_dir):
            return cand
    return root


def _find_layout(root: str, split: int) -> _Layout:
    splits_dir = _splits_dir(root)
    if splits_dir is None:
        raise ActionrecError(
            f"no HMDB51 split files (<class>_test_split1.txt) found in or beside {root}: unpack test_train_splits.rar"
            " beside hmdb51_org"
        )
    files: dict[str, str] = {}
    for name in sorted(_split_files(splits_dir)):
        m = _SPLIT_FILE.match(name)
        if int(m["n"]) == split:
            files[m["cls"]] = os.path.join(splits_dir, name)
    if not files:
        raise ActionrecError(
            f"{splits_dir} has no split {split} files (<class>_test_split{split}.txt): restore them from"
            " test_train_splits.rar"
        )
    return _Layout(root, _video_root(root, splits_dir), splits_dir, split, files)


def _classes_on_disk(layout: _Layout, folders: dict[str, str], say: Say | None) -> list[str]:
    """Without a class list: the classes with a split file and a folder under the video root."""
    chosen = [c for c in layout.files if c.lower() in folders]
    where = f"HMDB51 at {layout.root}, split {layout.split}"
    if not chosen:
        raise ActionrecError(
            f"{where}: none of the {len(layout.files)} classes of {layout.splits_dir} has a folder in"
            f" {layout.video_root}: unrar the classes you want (e.g. brush_hair.rar) there"
        )
    if say is not None:
        left = len(layout.files) - len(chosen)
        say(f"{where}: using the {len(chosen)} classes found on disk: {names_list(chosen, 10)}"
            + (f" ({left} more in the split files but not extracted)" if left else "") + "; name others with --classes")
    return chosen


def _class_samples(layout: _Layout, label: str, folders: dict[str, str]) -> list[Sample]:
    """The clips of one class that the split file tags train (1) or test (2), found in the class folder."""
    list_path = layout.files[label]
    folder = folders.get(label.lower())
    if folder is None:
        raise ActionrecError(
            f"HMDB51 class folder {os.path.join(layout.video_root, label)} is missing: unrar {label}.rar into"
            f" {layout.video_root} or leave the class out"
        )
    d = os.path.join(layout.video_root, folder)
    names = {n.lower(): n for n in listdir(d)}
    origin = f"official HMDB51 split {layout.split}"
    samples: list[Sample] = []
    missing: list[str] = []
    for no, line in read_lines(list_path):
        parts = line.split()
        if len(parts) != 2 or parts[1] not in _TAGS or not parts[0].lower().endswith(".avi"):
            raise ActionrecError(
                f"{list_path} line {no}: expected '<video>.avi <0|1|2>' (0 unused, 1 train, 2 test), got {line!r}:"
                " restore the original file from test_train_splits.rar"
            )
        kind = _TAGS[parts[1]]
        if kind is None:
            continue
        real = names.get(parts[0].lower())
        if real is None:
            missing.append(os.path.join(d, parts[0]))
            continue
        p = os.path.join(d, real)
        samples.append(Sample(p, label, _group(label, real), kind, origin))
    if missing:
        raise ActionrecError(
            f"{len(missing)} video(s) listed in {list_path} are missing (first: {missing[0]}): unrar {label}.rar"
            f" into {layout.video_root} again or leave the class out"
        )
    if not samples:
        raise ActionrecError(f"{list_path} tags no video 1 (train) or 2 (test): restore the original file")
    return samples


def _group(label: str, name: str) -> str:
    """Clips of one source: the file name without its final ``_<N>``."""
    stem = os.path.splitext(name)[0]
    m = _CLIP_NUMBER.match(stem)
    return f"hmdb51/{label}/{(m['source'] if m else stem).lower()}"
