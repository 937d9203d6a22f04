"""Datasets: where the labelled clips come from, and how they are split honestly.

Four kinds of source, all turned into a flat list of :class:`Sample`:

* **Class folders** (:func:`scan_class_folders`): ``root/<Label>/<clip>.<ext>``.  The
  sub-folder's name is the label, so adding a class is adding a folder.  Only *files* with a
  video extension directly inside a class folder are samples; sub-folders (for instance a
  folder of image frames) and hidden files are not scanned there -- list frame folders in a
  CSV manifest instead.
* **UCF101** (:func:`load_ucf101`): ``UCF-101/<Class>/v_<Class>_gXX_cXX.avi`` with the
  ``ucfTrainTestlist`` annotation folder (``classInd.txt``, ``trainlist0N.txt``,
  ``testlist0N.txt``) beside or inside the video root, or at an explicit path.  A class subset
  and the official split 1, 2 or 3 fix which clips are train and which are test.
* **A CSV manifest** (:func:`load_manifest`): ``path,label[,group][,split]``; a header row is
  optional but recommended; paths are relative to the CSV's folder or absolute.
* **A mix** (:func:`load_dataset`): any number of the above, unioned -- e.g. UCF101 classes plus
  a folder holding the user's own class.

Groups.  Clips cut from one source recording are near duplicates; if some land in training and
others in the test set, the test accuracy is inflated (the original study shuffled clips freely
and had this leak).  Every sample therefore carries a ``group`` and :func:`make_splits` assigns
whole groups to train / val / test.  Groups come from UCF101's ``gXX``, a manifest's group column,
or, for files without one, from the file name (see :func:`infer_group`):

1. ``v_<Class>_g<NN>_c<NN>`` (UCF101 naming) -> group ``<Class>_g<NN>``;
2. ``<stem>_c<NN>`` / ``<stem>_clip<NN>`` (also with ``-`` as separator, e.g. ``match3-clip07``)
   -> group ``<label>/<stem>`` (clips of one source are assumed to sit in one class folder);
3. otherwise each file is its own group.

A bare ``<stem>-<NN>`` / ``<stem>_<NN>`` suffix is deliberately *not* a grouping rule: names
such as ``video-1 .. video-40`` or ``IMG_0001`` are usually separate recordings, and lumping
a whole class into one group would make it impossible to split.  Declare such groups with a
manifest's group column, or name the clips ``<source>_c<NN>``.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import os
import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from typing import Iterable, Sequence

from ..errors import ActionrecError

__all__ = [
    "Sample",
    "Splits",
    "infer_group",
    "scan_class_folders",
    "load_ucf101",
    "load_manifest",
    "load_dataset",
    "make_splits",
    "SPLIT_NAMES",
]

SPLIT_NAMES = ("train", "val", "test")

# Used when actionrec.video (which owns the real list) cannot be imported.
_VIDEO_EXTENSIONS = (
    ".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".gif",
    ".3gp", ".ogv",
)

_UCF_VIDEO_DIRS = ("UCF-101", "UCF101", "ucf101")
_UCF_ANNOTATION_DIRS = ("ucfTrainTestlist", "UCF101TrainTestSplits-RecognitionTask/ucfTrainTestlist")

_UCF_NAME = re.compile(r"^v_(?P<cls>.+)_g(?P<g>\d+)_c(?P<c>\d+)$", re.IGNORECASE)
_CLIP_NAME = re.compile(r"^(?P<stem>.*[^_\-\s])[_\-](?:c|clip)[_\-]?(?P<n>\d+)$", re.IGNORECASE)


# ----------------------------------------------------------------------------- samples


@dataclass(frozen=True)
class Sample:
    """One labelled clip (a video file, or a folder of frames when listed in a manifest)."""

    path: str  # absolute path of the video
    label: str
    group: str  # samples sharing a group never straddle splits
    split: str | None = None  # 'train' | 'val' | 'test' when the source fixes it, else None
    # Where a fixed split came from, for the split policy sentence (e.g. "official UCF101
    # split 1"); not part of a sample's identity.
    origin: str | None = field(default=None, compare=False, repr=False)


def _video_extensions() -> tuple[str, ...]:
    """The accepted video extensions (lower case, with dot); actionrec.video's list if present."""
    try:
        from .video import VIDEO_EXTENSIONS  # imported lazily: video.py may not exist yet
    except ImportError:
        return _VIDEO_EXTENSIONS
    exts = {str(e).lower() if str(e).startswith(".") else "." + str(e).lower() for e in VIDEO_EXTENSIONS}
    return tuple(sorted(exts)) or _VIDEO_EXTENSIONS


def _ext_list() -> str:
    return " ".join(_video_extensions())


def _is_video_file(name: str, exts: tuple[str, ...]) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in exts


def infer_group(path: str | os.PathLike, label: str) -> str:
    """The group of a clip that its source did not give one (see the module docstring)."""
    path = os.fspath(path)
    stem = os.path.splitext(os.path.basename(path.rstrip("/\\")))[0]
    m = _UCF_NAME.match(stem)
    if m:
        return f"{m['cls']}_g{int(m['g']):02d}"
    m = _CLIP_NAME.match(stem)
    if m:
        return f"{label}/{m['stem'].lower()}"
    return os.path.abspath(path)


def _abspath(p: str | os.PathLike) -> str:
    return os.path.abspath(os.path.expanduser(os.fspath(p)))


def _close(name: str, candidates: Iterable[str]) -> str:
    """' (did you mean A, B?)' -- close matches, case-insensitively, or ''."""
    candidates = list(candidates)
    by_lower: dict[str, str] = {}
    for c in candidates:
        by_lower.setdefault(c.lower(), c)
    hits = difflib.get_close_matches(name.lower(), list(by_lower), n=3, cutoff=0.6)
    hits += [low for low in by_lower if name.lower() in low and low not in hits][: 3 - len(hits)]
    return f" (did you mean {', '.join(by_lower[h] for h in hits)}?)" if hits else ""


def _parse_classes(classes: str | Sequence[str] | None) -> list[str] | None:
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


def _resolve_names(wanted: Sequence[str], available: Iterable[str]) -> tuple[dict[str, str], list[str]]:
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


# ----------------------------------------------------------------------------- class folders


def _check_dir(root: str, what: str) -> None:
    if not os.path.exists(root):
        raise ActionrecError(f"{root} does not exist: check the {what} path")
    if not os.path.isdir(root):
        raise ActionrecError(
            f"{root} is a file, not a folder: give the folder that holds one sub-folder per class"
            " (or a .csv manifest)"
        )


def _class_dirs(root: str) -> list[str]:
    return sorted(
        e.name
        for e in os.scandir(root)
        if e.is_dir() and not e.name.startswith(".") and e.name not in ("__MACOSX",)
    )


def scan_class_folders(
    root: str | os.PathLike, classes: str | Sequence[str] | None = None
) -> list[Sample]:
    """Samples of ``root/<Label>/<video>``: one sub-folder per class, its name the label.

    Only files with a video extension directly inside a class folder count (hidden files and
    sub-folders, e.g. folders of frames, are skipped).  ``classes`` limits the scan to those
    sub-folders (matched case-insensitively).  One class is allowed here, so that a folder with
    a single extra class can be mixed with other sources; :func:`load_dataset` and
    :func:`make_splits` insist on two.  Splits are not fixed (``split=None``).
    """
    root = _abspath(root)
    _check_dir(root, "dataset folder")
    exts = _video_extensions()
    dirs = _class_dirs(root)
    wanted = _parse_classes(classes)
    if wanted is not None:
        found, missing = _resolve_names(wanted, dirs)
        if missing:
            raise ActionrecError(
                f"{root} has no class sub-folder '{missing[0]}'{_close(missing[0], dirs)}:"
                " create it with videos of that class or fix the class name"
            )
        dirs = sorted(set(found.values()))
    if not dirs:
        loose = [n for n in os.listdir(root) if _is_video_file(n, exts)]
        if loose:
            raise ActionrecError(
                f"{root} holds videos but no class sub-folders: move each class's videos into a"
                f" sub-folder named after the class (e.g. {os.path.join(root, 'Jump', loose[0])})"
            )
        raise ActionrecError(
            f"no class sub-folders with videos found in {root}: make one sub-folder per class"
            f" holding videos ({_ext_list()})"
        )
    samples: list[Sample] = []
    for label in dirs:
        folder = os.path.join(root, label)
        names = sorted(n for n in os.listdir(folder) if _is_video_file(n, exts) and os.path.isfile(os.path.join(folder, n)))
        if not names:
            has_sub = any(e.is_dir() for e in os.scandir(folder))
            hint = (
                " (sub-folders, such as folders of frames, are not scanned here: list them in a"
                " CSV manifest)"
                if has_sub
                else ""
            )
            raise ActionrecError(
                f"class folder {folder} has no videos ({_ext_list()}): add videos of"
                f" '{label}' to it or remove the folder{hint}"
            )
        for n in names:
            p = os.path.join(folder, n)
            samples.append(Sample(p, label, infer_group(p, label)))
    return samples


# ----------------------------------------------------------------------------- UCF101


def _find_ucf(root: str, annotations: str | os.PathLike | None) -> tuple[str, str]:
    """(video root, annotation folder) of a UCF101 layout at ``root``."""
    video_root = root
    for d in _UCF_VIDEO_DIRS:
        if os.path.isdir(os.path.join(root, d)):
            video_root = os.path.join(root, d)
            break
    if annotations is not None:
        ann = _abspath(annotations)
        if not os.path.exists(ann):
            raise ActionrecError(f"UCF101 annotation folder {ann} does not exist: check the path")
        if os.path.isfile(ann):
            ann = os.path.dirname(ann)  # e.g. the path of classInd.txt itself
        for cand in (ann, *(os.path.join(ann, d) for d in _UCF_ANNOTATION_DIRS)):
            if os.path.isfile(os.path.join(cand, "classInd.txt")):
                return video_root, cand
        raise ActionrecError(
            f"no classInd.txt in {ann}: give the ucfTrainTestlist folder from"
            " UCF101TrainTestSplits-RecognitionTask.zip"
        )
    looked: list[str] = []
    bases = [root, video_root, os.path.dirname(root), os.path.dirname(video_root)]
    for base in bases:
        for cand in (*(os.path.join(base, d) for d in _UCF_ANNOTATION_DIRS), base):
            if cand in looked:
                continue
            looked.append(cand)
            if os.path.isfile(os.path.join(cand, "classInd.txt")):
                return video_root, cand
    raise ActionrecError(
        f"no UCF101 annotations (ucfTrainTestlist/classInd.txt) found for {root}; looked in "
        + ", ".join(looked)
        + ": unzip UCF101TrainTestSplits-RecognitionTask.zip beside UCF-101 or give the"
        " annotation folder's path"
    )


def _looks_like_ucf(root: str) -> bool:
    """A folder holding ucfTrainTestlist or UCF-101 (or a UCF-101 folder with its lists beside)."""
    if os.path.isfile(os.path.join(root, "classInd.txt")):
        return True
    for d in (*_UCF_ANNOTATION_DIRS, *_UCF_VIDEO_DIRS):
        if os.path.isdir(os.path.join(root, d)):
            return True
    if os.path.basename(root) in _UCF_VIDEO_DIRS:
        parent = os.path.dirname(root)
        return any(os.path.isfile(os.path.join(parent, d, "classInd.txt")) for d in _UCF_ANNOTATION_DIRS)
    return False


def _read_lines(path: str) -> list[tuple[int, str]]:
    """Non-blank, stripped lines with their 1-based line numbers."""
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as f:
            return [(i, ln.strip()) for i, ln in enumerate(f, 1) if ln.strip()]
    except OSError as e:
        raise ActionrecError(f"cannot read {path}: {e.strerror or e}") from None


def _ucf_class_index(path: str) -> dict[str, int]:
    """classInd.txt: ``1 ApplyEyeMakeup`` -> {'ApplyEyeMakeup': 1}."""
    index: dict[str, int] = {}
    for no, line in _read_lines(path):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise ActionrecError(
                f"{path} line {no}: expected '<index> <ClassName>' (e.g. '1 ApplyEyeMakeup'),"
                f" got {line!r}: restore the original classInd.txt"
            )
        index[parts[1]] = int(parts[0])
    if not index:
        raise ActionrecError(f"{path} is empty: restore the original classInd.txt")
    return index


def load_ucf101(
    root: str | os.PathLike,
    classes: str | Sequence[str] | None,
    split: int = 1,
    annotations: str | os.PathLike | None = None,
) -> list[Sample]:
    """Samples of a UCF101 tree, with ``split`` 'train' / 'test' fixed by the official lists.

    ``root`` is the folder holding ``UCF-101`` (and usually ``ucfTrainTestlist``), or the
    ``UCF-101`` folder itself; the annotation folder is looked for inside and beside it unless
    ``annotations`` names it.  ``classes`` is a subset of classInd.txt's names (a sequence, or
    ``"A,B,C"``; matched case-insensitively) or None for all of them.  ``split`` is 1, 2 or 3.
    The group of a clip ``v_<Class>_gXX_cXX`` is ``<Class>_gXX``: the official lists keep
    each group on one side, and so does :func:`make_splits` when it carves val from train.
    """
    root = _abspath(root)
    _check_dir(root, "UCF101")
    if isinstance(split, str) and split.strip().isdigit():
        split = int(split)
    if split not in (1, 2, 3) or isinstance(split, bool):
        raise ActionrecError(f"UCF101 at {root}: split must be 1, 2 or 3, not {split!r}")
    video_root, ann = _find_ucf(root, annotations)
    class_ind_path = os.path.join(ann, "classInd.txt")
    index = _ucf_class_index(class_ind_path)
    by_lower = {name.lower(): name for name in index}

    wanted = _parse_classes(classes)
    if wanted is None:
        chosen = list(index)
    else:
        if not wanted:
            raise ActionrecError(f"UCF101 at {root}: the class list is empty: name at least 2 classes")
        found, missing = _resolve_names(wanted, index)
        if missing:
            raise ActionrecError(
                f"unknown UCF101 class '{missing[0]}' (not in {class_ind_path})"
                f"{_close(missing[0], index)}: use the names in classInd.txt"
            )
        chosen = list(dict.fromkeys(found.values()))
    chosen_set = set(chosen)
    origin = f"official UCF101 split {split}"
    top = {n.lower(): n for n in os.listdir(video_root)}
    for label in chosen:
        real = top.get(label.lower())
        if real is None or not os.path.isdir(os.path.join(video_root, real)):
            raise ActionrecError(
                f"UCF101 class folder {os.path.join(video_root, label)} is missing: extract"
                f" '{label}' from UCF101.rar into {video_root} or leave the class out"
            )

    listed: dict[str, tuple[str, str, str]] = {}  # rel path -> (label, split, where)
    for kind in ("train", "test"):
        list_path = os.path.join(ann, f"{kind}list0{split}.txt")
        if not os.path.isfile(list_path):
            raise ActionrecError(
                f"missing {list_path} (looked in {ann}): restore it from"
                " UCF101TrainTestSplits-RecognitionTask.zip"
            )
        for no, line in _read_lines(list_path):
            parts = line.replace("\\", "/").split()
            rel = parts[0].lstrip("/")
            folder = rel.split("/", 1)[0] if "/" in rel else ""
            label = by_lower.get(folder.lower(), folder)
            if not folder or len(parts) > 2 or (kind == "test" and len(parts) != 1):
                shape = "<Class>/<video>.avi <index>" if kind == "train" else "<Class>/<video>.avi"
                raise ActionrecError(
                    f"{list_path} line {no}: expected '{shape}', got {line!r}: restore the"
                    " original file"
                )
            if label not in chosen_set:
                continue
            if kind == "train" and len(parts) == 2 and parts[1].isdigit() and int(parts[1]) != index[label]:
                raise ActionrecError(
                    f"{list_path} line {no}: class index {parts[1]} does not match {label}'s"
                    f" index {index[label]} in {class_ind_path}: use matching annotation files"
                )
            where = f"{list_path} line {no}"
            if rel in listed and listed[rel][1] != kind:
                raise ActionrecError(
                    f"{rel} is in both {listed[rel][2]} and {where}: restore the original lists"
                )
            listed[rel] = (label, kind, where)

    # Resolve files, one directory listing per class (case-insensitive fallback).
    listings: dict[str, tuple[str, dict[str, str]]] = {}
    samples: list[Sample] = []
    missing_files: list[str] = []
    for rel, (label, kind, _) in sorted(listed.items()):
        cls_dir_name, fname = rel.split("/", 1)
        if cls_dir_name not in listings:
            real = top.get(cls_dir_name.lower())
            if real is None or not os.path.isdir(os.path.join(video_root, real)):
                raise ActionrecError(
                    f"UCF101 class folder {os.path.join(video_root, cls_dir_name)} is missing:"
                    f" extract '{label}' from UCF101.rar into {video_root} or leave the class out"
                )
            d = os.path.join(video_root, real)
            listings[cls_dir_name] = (d, {n.lower(): n for n in os.listdir(d)})
        d, names = listings[cls_dir_name]
        real_name = fname if os.path.isfile(os.path.join(d, fname)) else names.get(fname.lower())
        if real_name is None:
            missing_files.append(os.path.join(d, fname))
            continue
        p = os.path.join(d, real_name)
        samples.append(Sample(p, label, infer_group(p, label), kind, origin))
    if missing_files:
        raise ActionrecError(
            f"{len(missing_files)} video(s) listed in {ann} are missing under {video_root}"
            f" (first: {missing_files[0]}): re-extract UCF101.rar or choose other classes"
        )
    for label in chosen:
        if not any(s.label == label for s in samples):
            raise ActionrecError(
                f"UCF101 class '{label}' has no videos listed in {ann} for split {split}:"
                " restore the original trainlist/testlist files"
            )
    return samples


# ----------------------------------------------------------------------------- CSV manifest

_COLUMNS = {"path": "path", "video": "path", "file": "path", "label": "label", "class": "label",
            "group": "group", "split": "split"}


def load_manifest(csv_path: str | os.PathLike) -> list[Sample]:
    """Samples listed in a CSV: ``path,label[,group][,split]``, one clip a line.

    A header row naming the columns (``path,label,group,split`` in any order) is optional but
    recommended; without it the columns are positional, so a third column is the group.  Blank
    lines and lines starting with ``#`` are skipped.  Paths are relative to the CSV's folder or
    absolute, and may name a folder of frames.  ``split`` is train, val, test or empty (let
    :func:`make_splits` choose); an empty group is inferred from the file name
    (:func:`infer_group`).  A group whose rows name two different splits is an error.
    """
    csv_path = _abspath(csv_path)
    if not os.path.exists(csv_path):
        raise ActionrecError(f"manifest {csv_path} does not exist: check the path")
    if not os.path.isfile(csv_path):
        raise ActionrecError(f"manifest {csv_path} is a folder, not a CSV file: give the .csv file")
    base = os.path.dirname(csv_path)
    try:
        with open(csv_path, encoding="utf-8-sig", newline="") as f:
            rows = [(r, no) for r, no in _numbered_rows(csv.reader(f))]
    except UnicodeDecodeError:
        raise ActionrecError(f"manifest {csv_path} is not UTF-8 text: save it as UTF-8 CSV") from None
    except csv.Error as e:
        raise ActionrecError(f"manifest {csv_path}: not valid CSV ({e}): fix the quoting") from None
    except OSError as e:
        raise ActionrecError(f"cannot read manifest {csv_path}: {e.strerror or e}") from None

    columns = ["path", "label", "group", "split"]
    if rows:
        first = [c.strip().lower() for c in rows[0][0]]
        if "path" in first or "label" in first or all(c in _COLUMNS for c in first if c):
            for c in first:
                if c not in _COLUMNS:
                    raise ActionrecError(
                        f"{csv_path} line {rows[0][1]}: unknown column '{c}'"
                        f"{_close(c, ['path', 'label', 'group', 'split'])}: the columns are"
                        " path,label[,group][,split]"
                    )
            columns = [_COLUMNS[c] for c in first]
            if "path" not in columns or "label" not in columns or len(set(columns)) != len(columns):
                raise ActionrecError(
                    f"{csv_path} line {rows[0][1]}: the header must name path and label once"
                    " each (path,label[,group][,split])"
                )
            rows = rows[1:]
    if not rows:
        raise ActionrecError(f"manifest {csv_path} lists no videos: add lines path,label[,group][,split]")

    samples: list[Sample] = []
    seen: dict[str, int] = {}
    group_split: dict[str, tuple[str, int]] = {}
    origin = f"the split column of {csv_path}"
    for cells, no in rows:
        if len(cells) > len(columns):
            raise ActionrecError(
                f"{csv_path} line {no}: {len(cells)} columns, expected at most {len(columns)}"
                f" ({','.join(columns)}): quote paths that contain commas"
            )
        rec = dict(zip(columns, (c.strip() for c in cells)))
        raw_path, label = rec.get("path", ""), rec.get("label", "")
        if not raw_path or not label:
            raise ActionrecError(f"{csv_path} line {no}: needs both a path and a label: fix or remove the line")
        p = os.path.expanduser(raw_path)
        p = os.path.abspath(p if os.path.isabs(p) else os.path.join(base, p))
        if not os.path.exists(p):
            raise ActionrecError(
                f"{csv_path} line {no}: video {raw_path} not found (looked at {p}): fix the path"
                " (relative paths start at the CSV's folder) or remove the line"
            )
        split = rec.get("split", "").lower() or None
        if split is not None and split not in SPLIT_NAMES:
            raise ActionrecError(
                f"{csv_path} line {no}: split '{rec['split']}' is not train, val or test:"
                " fix it or leave it empty"
            )
        if p in seen:
            raise ActionrecError(f"{csv_path} line {no}: {raw_path} is already listed on line {seen[p]}: remove one")
        seen[p] = no
        group = rec.get("group", "") or infer_group(p, label)
        if split is not None:
            if group in group_split and group_split[group][0] != split:
                other, other_no = group_split[group]
                raise ActionrecError(
                    f"{csv_path} line {no}: group '{group}' is {split} here but {other} on line"
                    f" {other_no}: clips of one source must share a split; fix the split column"
                )
            group_split.setdefault(group, (split, no))
        samples.append(Sample(p, label, group, split, origin if split else None))
    return samples


def _numbered_rows(reader) -> Iterable[tuple[list[str], int]]:
    """CSV rows that are not blank or '#' comments, with the line number where each starts."""
    line = 1
    for row in reader:
        start, line = line, reader.line_num + 1
        if not any(c.strip() for c in row) or row[0].lstrip().startswith("#"):
            continue
        yield row, start


# ----------------------------------------------------------------------------- mixing sources


def _load_source(src: str, wanted: list[str] | None, split: int, annotations) -> list[Sample]:
    """One source, limited to the wanted classes that it has (others may be in other sources)."""
    if os.path.isfile(src):
        if not src.lower().endswith(".csv"):
            raise ActionrecError(
                f"{src} is a file but not a .csv manifest: give a folder with one sub-folder per"
                " class, a UCF101 folder or a .csv manifest"
            )
        samples = load_manifest(src)
        if wanted is not None:
            found, _ = _resolve_names(wanted, {s.label for s in samples})
            keep = set(found.values())
            samples = [s for s in samples if s.label in keep]
        return samples
    _check_dir(src, "dataset")
    if _looks_like_ucf(src):
        if wanted is None:
            return load_ucf101(src, None, split, annotations)
        _, ann = _find_ucf(src, annotations)
        found, _ = _resolve_names(wanted, _ucf_class_index(os.path.join(ann, "classInd.txt")))
        if not found:
            return []
        return load_ucf101(src, list(dict.fromkeys(found.values())), split, annotations)
    if wanted is None:
        return scan_class_folders(src)
    found, _ = _resolve_names(wanted, _class_dirs(src))
    return scan_class_folders(src, list(dict.fromkeys(found.values()))) if found else []


def _as_list(sources) -> list[str]:
    if sources is None:
        return []
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    return [_abspath(s) for s in sources]


def load_dataset(
    sources: str | os.PathLike | Sequence[str | os.PathLike],
    classes: str | Sequence[str] | None = None,
    split: int = 1,
    test_dir: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    annotations: str | os.PathLike | None = None,
) -> list[Sample]:
    """The union of one or more sources, limited to ``classes`` if given.

    Each source's kind is detected: a ``.csv`` file is a manifest; a folder holding
    ``ucfTrainTestlist`` or ``UCF-101`` (or a ``UCF-101`` folder with its lists beside it) is
    UCF101 (official ``split`` 1-3, ``annotations`` to name the list folder); any other folder
    holds one sub-folder per class.  ``classes`` (a sequence or ``"A,B,C"``) may draw on several
    sources, e.g. UCF101 classes plus a folder with the user's own class; every name must be found
    somewhere.  Samples of the same label from several sources are merged.  ``test_dir`` (any
    kind of source, or several) supplies the held-out test set: its samples get ``split='test'``
    and its classes must also have training videos.  Returns samples sorted by (label, path).
    """
    srcs = _as_list(sources)
    if not srcs:
        raise ActionrecError("no dataset given: name a folder with one sub-folder per class, a UCF101 folder or a .csv manifest")
    for s in srcs:
        if not os.path.exists(s):
            raise ActionrecError(f"{s} does not exist: check the dataset path")
    wanted = _parse_classes(classes)
    where = ", ".join(srcs)
    if wanted is not None and not wanted:
        raise ActionrecError(f"the class list for {where} is empty: name at least 2 classes")

    samples: list[Sample] = []
    canonical: dict[str, str] = {}  # lower-case label -> the first spelling seen
    for s in srcs:
        samples += _load_source(s, wanted, split, annotations)
        for x in samples:
            canonical.setdefault(x.label.lower(), x.label)
    samples = _relabel(samples, canonical)
    labels = sorted({s.label for s in samples})
    if wanted is not None:
        _, missing = _resolve_names(wanted, labels)
        if missing:
            everything: set[str] = set()
            for s in srcs:
                everything |= _available_labels(s, annotations)
            raise ActionrecError(
                f"class '{missing[0]}' not found in {where}{_close(missing[0], everything)}:"
                " fix the name or add a folder of its videos"
            )
    if not samples:
        raise ActionrecError(f"no videos found in {where}: add class sub-folders holding videos ({_ext_list()})")

    tests = _as_list(test_dir)
    if tests:
        train_labels = set(labels)
        for t in tests:
            if not os.path.exists(t):
                raise ActionrecError(f"test folder {t} does not exist: check the path")
            got = _load_source(t, wanted if wanted is not None else sorted(train_labels), split, annotations)
            if wanted is None:
                extra = sorted(x for x in _available_labels(t, annotations) if x.lower() not in canonical)
                if extra:
                    raise ActionrecError(
                        f"class '{extra[0]}' of test folder {t} has no training videos in {where}:"
                        " add them or remove the class from the test folder"
                    )
            if not got:
                raise ActionrecError(f"test folder {t} holds no videos of the chosen classes: add some or drop the test folder")
            origin = f"test folder {t}"
            samples += [Sample(x.path, x.label, x.group, "test", origin) for x in _relabel(got, canonical)]

    by_path: dict[str, Sample] = {}
    for smp in samples:
        prev = by_path.get(smp.path)
        if prev is None:
            by_path[smp.path] = smp
        elif prev.label != smp.label or (prev.split and smp.split and prev.split != smp.split):
            raise ActionrecError(
                f"{smp.path} is listed twice, as {prev.label}/{prev.split or 'any split'} and"
                f" {smp.label}/{smp.split or 'any split'}: keep it in one source only"
            )
        elif prev.split is None and smp.split is not None:
            by_path[smp.path] = smp
    samples = sorted(by_path.values(), key=lambda x: (x.label, x.path))
    labels = sorted({s.label for s in samples})
    if len(labels) < 2:
        raise ActionrecError(
            f"only one class ('{labels[0]}') found in {where}: transfer learning needs at least 2"
            " classes: add a folder of another class's videos"
        )
    return samples


def _relabel(samples: list[Sample], canonical: dict[str, str]) -> list[Sample]:
    """Labels that differ only in case (e.g. folders Jump and jump) become one spelling."""
    return [
        x if canonical.get(x.label.lower(), x.label) == x.label
        else replace(x, label=canonical[x.label.lower()])
        for x in samples
    ]


def _available_labels(src: str, annotations) -> set[str]:
    """Every class name a source offers (for suggestions); errors are swallowed."""
    try:
        if os.path.isfile(src):
            return {s.label for s in load_manifest(src)}
        if _looks_like_ucf(src):
            _, ann = _find_ucf(src, annotations)
            return set(_ucf_class_index(os.path.join(ann, "classInd.txt")))
        return set(_class_dirs(src))
    except ActionrecError:
        return set()


# ----------------------------------------------------------------------------- splitting


@dataclass(frozen=True)
class Splits:
    """Train / val / test samples, the class order, and how they were chosen."""

    train: list[Sample]
    val: list[Sample]
    test: list[Sample]
    classes: list[str]  # sorted label names; the model's output order
    policy: str  # one sentence: how test and val were chosen

    def counts(self) -> dict[str, dict[str, int]]:
        """{label: {"train": n, "val": n, "test": n}} for every class."""
        out = {c: {k: 0 for k in SPLIT_NAMES} for c in self.classes}
        for name in SPLIT_NAMES:
            for s in getattr(self, name):
                out[s.label][name] += 1
        return out

    def summary(self) -> str:
        """A small table of the counts, then the policy."""
        width = max([len(c) for c in self.classes] + [5])
        lines = [f"{'class':<{width}}  {'train':>6} {'val':>6} {'test':>6}"]
        counts = self.counts()
        for c in self.classes:
            n = counts[c]
            lines.append(f"{c:<{width}}  {n['train']:>6} {n['val']:>6} {n['test']:>6}")
        lines.append(
            f"{'total':<{width}}  {len(self.train):>6} {len(self.val):>6} {len(self.test):>6}"
        )
        lines.append(self.policy)
        return "\n".join(lines)


def _rng(seed: int, *parts: str) -> random.Random:
    """A generator that depends only on the seed and the names (not on other classes)."""
    h = hashlib.sha256("\x00".join([str(seed), *parts]).encode()).digest()
    return random.Random(int.from_bytes(h[:8], "big"))


def _pct(f: float) -> str:
    return f"{f * 100:g} %"


def _names(xs: Iterable[str]) -> str:
    xs = sorted(xs)
    return ", ".join(xs[:5]) + (f" and {len(xs) - 5} more" if len(xs) > 5 else "")


def make_splits(
    samples: Sequence[Sample],
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> Splits:
    """Split samples into train / val / test by whole groups, stratified by class, seeded.

    * Test: samples whose source fixes ``split='test'`` (official UCF101 split, a manifest's
      split column, a test folder) are the test set of their class.  A class with no such
      sample gets a held-out ``test_fraction`` of its clips, chosen among its unfixed groups.
    * Val: ``val_fraction`` of each class's remaining (training) clips, unless its source fixes
      val samples.  Fixed 'train' samples are not put in test but may be chosen for val.
    * Groups are assigned whole: clips of a group without a fixed split follow the group's
      fixed split (if any), and a group whose fixed splits disagree is an error.  Per class
      the groups are shuffled with a generator seeded by (seed, class) and taken while that
      brings the count closer to the target, so each class gets close to the fraction;
      then at least one group is taken if the class still has one to spare.
    * Every class keeps at least one training group; a class that needs a held-out test but
      has a single group is an error, and val is skipped (and said so in the policy) for a
      class with one training group.
    * Deterministic for a seed whatever the order of ``samples``.
    """
    for name, frac in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 <= frac < 1:
            raise ActionrecError(f"{name} must be at least 0 and below 1, not {frac!r}")
    # Sort and drop exact duplicates, so the listing order cannot matter.
    uniq: dict[str, Sample] = {}
    for s in sorted(samples, key=lambda x: (x.path, x.label, x.group, x.split or "")):
        prev = uniq.get(s.path)
        if prev is not None and (prev.label != s.label or prev.group != s.group or prev.split != s.split):
            raise ActionrecError(f"{s.path} appears twice with different labels, groups or splits: keep one")
        uniq.setdefault(s.path, s)
    items = list(uniq.values())
    if not items:
        raise ActionrecError("no videos to split: add class folders with videos")
    classes = sorted({s.label for s in items})
    if len(classes) < 2:
        raise ActionrecError(
            f"only one class ('{classes[0]}', in {os.path.dirname(items[0].path)}) to split:"
            " transfer learning needs at least 2 classes: add a folder of another class's videos"
        )

    # Groups and their fixed split.
    members: dict[str, list[Sample]] = defaultdict(list)
    for s in items:
        members[s.group].append(s)
    fixed: dict[str, str | None] = {}
    for g, ms in members.items():
        got = sorted({m.split for m in ms if m.split})
        if len(got) > 1:
            a = next(m for m in ms if m.split == got[0])
            b = next(m for m in ms if m.split == got[1])
            raise ActionrecError(
                f"group '{g}' has {a.path} in {a.split} and {b.path} in {b.split}: clips cut"
                " from one source must share a split; fix the split of one"
            )
        fixed[g] = got[0] if got else None
    group_counts = {g: Counter(m.label for m in ms) for g, ms in members.items()}
    by_class: dict[str, list[str]] = defaultdict(list)
    for g in sorted(members):
        for c in group_counts[g]:
            by_class[c].append(g)
    n_class = Counter(s.label for s in items)
    folder = {c: os.path.dirname(next(s.path for s in items if s.label == c)) for c in classes}

    assign: dict[str, str] = {g: fixed[g] for g in members if fixed[g] in ("test", "val")}
    # 'train'-fixed and free groups are still open for val; only free groups are open for test.
    fixed_test_classes = {c for c in classes if any(assign.get(g) == "test" for g in by_class[c])}
    fixed_val_classes = {c for c in classes if any(assign.get(g) == "val" for g in by_class[c])}
    # side[c]: how many of c's groups are still on the training side (not val/test).
    side = {c: sum(1 for g in by_class[c] if g not in assign) for c in classes}

    for c in classes:
        if side[c] == 0:
            raise ActionrecError(
                f"class '{c}' ({folder[c]}) has no training clips: all {n_class[c]} are fixed to"
                " val/test by its source; give it training videos"
            )

    want_val = {c for c in classes if val_fraction > 0 and c not in fixed_val_classes}
    need_test = [c for c in classes if test_fraction > 0 and c not in fixed_test_classes]
    for c in need_test:
        has_free = any(fixed[g] is None for g in by_class[c] if g not in assign)
        if has_free and side[c] < 2:
            k = sum(group_counts[g][c] for g in by_class[c] if g not in assign)
            raise ActionrecError(
                f"class '{c}' ({folder[c]}) has only 1 group of clips for training ({k} clip(s))"
                " but needs at least 2 groups (3 to also get a validation clip) to hold out a"
                " test set: add"
                f" videos of '{c}' from other recordings (clips named <source>_c<NN> or"
                " v_<Class>_g<NN>_c<NN> count as one group per source)"
            )

    def pick(phase: str, c: str, target: float, open_groups: set[str], reserve: dict[str, int]) -> None:
        """Assign open groups holding class c to `phase` until c's count is close to target."""

        def allowed(g: str) -> bool:
            # Taking g must leave each of its classes enough groups on the training side.
            return all(side[d] - 1 >= reserve.get(d, 1) for d in group_counts[g])

        def take(g: str) -> None:
            assign[g] = phase
            for d in group_counts[g]:
                side[d] -= 1

        cands = [g for g in by_class[c] if g in open_groups and g not in assign]
        _rng(seed, phase, c).shuffle(cands)
        cur = sum(group_counts[g][c] for g in by_class[c] if assign.get(g) == phase)
        for g in cands:
            n = group_counts[g][c]
            if cur + n / 2 < target and allowed(g):
                take(g)
                cur += n
        if cur == 0:
            spare = [g for g in cands if g not in assign and allowed(g)]
            if spare:  # at least one group when the class can spare it; the smallest one
                take(min(spare, key=lambda x: group_counts[x][c]))

    # Held-out test for classes whose source does not fix one.
    free_groups = {g for g in members if fixed[g] is None}
    reserve_test = {c: 2 if c in want_val and side[c] >= 3 else 1 for c in classes}
    for c in need_test:
        pick("test", c, test_fraction * n_class[c], free_groups, reserve_test)

    # Validation from each class's training side.
    open_val = {g for g in members if g not in assign}
    rest = {c: sum(group_counts[g][c] for g in by_class[c] if g in open_val) for c in classes}
    for c in sorted(want_val):
        pick("val", c, val_fraction * rest[c], open_val, {})
    for g in members:
        assign.setdefault(g, "train")

    parts: dict[str, list[Sample]] = {k: [] for k in SPLIT_NAMES}
    for g, ms in members.items():
        parts[assign[g]].extend(ms)
    for k in parts:
        parts[k].sort(key=lambda x: (x.label, x.path))
    splits_of = {c: {k for k in SPLIT_NAMES if any(s.label == c for s in parts[k])} for c in classes}
    assert all("train" in v for v in splits_of.values())

    # The policy sentence.
    test_bits: list[str] = []
    fixed_origins = sorted({s.origin or "the source's split" for s in parts["test"] if s.split == "test"})
    heldout = [c for c in need_test if "test" in splits_of[c]]
    if fixed_origins:
        test_bits.append(" and ".join(fixed_origins))
    if heldout:
        bit = f"a seeded {_pct(test_fraction)} of whole groups held out per class"
        if fixed_origins:
            bit += f" for {_names(heldout)}"
        test_bits.append(bit)
    no_test = [c for c in classes if "test" not in splits_of[c]]
    if not test_bits:
        test_bits.append("none" + (" (test_fraction=0)" if test_fraction == 0 else ""))
    elif no_test:
        test_bits.append(f"no test clips for {_names(no_test)}")
    val_bits: list[str] = []
    if want_val:
        val_bits.append(f"{_pct(val_fraction)} of train, stratified by class")
    val_origins = sorted({s.origin or "the source's split" for s in parts["val"] if s.split == "val"})
    if val_origins:
        val_bits.append(" and ".join(val_origins) + (f" for {_names(fixed_val_classes)}" if want_val else ""))
    if not val_bits:
        val_bits.append("none (val_fraction=0)")
    no_val = [c for c in want_val if "val" not in splits_of[c]]
    if no_val:
        val_bits.append(f"no val clips for {_names(no_val)} (only one training group)")
    policy = (
        f"test: {', '.join(test_bits)}; val: {', '.join(val_bits)}; whole groups (clips cut from"
        f" one source) never straddle train/val/test; seed {seed}"
    )
    return Splits(parts["train"], parts["val"], parts["test"], classes, policy)
