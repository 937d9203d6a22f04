"""UCF101: ``UCF-101/<Class>/v_<Class>_gXX_cXX.avi`` with the official ``ucfTrainTestlist`` split lists.

The annotation folder (``classInd.txt``, ``trainlist0N.txt``, ``testlist0N.txt``) sits beside or
inside the video root, or at an explicit path.  People usually extract only the classes they want:
without a class list, the classes are those that the chosen split's lists name *and* that have a
folder on disk (and the loader says which).
"""

from __future__ import annotations

import os
from typing import NamedTuple, Sequence

from ..errors import ActionrecError
from .samples import (
    Sample, Say, abspath, check_dir, did_you_mean, infer_group, listdir, names_list, parse_classes, read_lines,
    resolve_names,
)

__all__ = ["load_ucf101", "looks_like_ucf", "find_ucf", "ucf_class_index"]

_UCF_VIDEO_DIRS = ("UCF-101", "UCF101", "ucf101")
_UCF_ANNOTATION_DIRS = ("ucfTrainTestlist", "UCF101TrainTestSplits-RecognitionTask/ucfTrainTestlist")


class _Listed(NamedTuple):
    """One line of a split list."""

    label: str
    kind: str  # 'train' | 'test'
    where: str  # '<list file> line <n>', for messages
    index: str | None  # the class index a train list gives, if any


class _Layout(NamedTuple):
    root: str
    video_root: str
    ann: str  # the annotation folder
    split: int
    index: dict[str, int]  # classInd.txt

    @property
    def class_ind(self) -> str:
        return os.path.join(self.ann, "classInd.txt")


def load_ucf101(
    root: str | os.PathLike,
    classes: str | Sequence[str] | None,
    split: int = 1,
    annotations: str | os.PathLike | None = None,
    say: Say | None = None,
) -> list[Sample]:
    """Samples of a UCF101 tree, with ``split`` 'train' / 'test' fixed by the official lists.

    ``root`` is the folder holding ``UCF-101`` (and usually ``ucfTrainTestlist``), or the
    ``UCF-101`` folder itself; the annotation folder is looked for inside and beside it unless
    ``annotations`` names it.  ``classes`` is a subset of classInd.txt's names (a sequence, or
    ``"A,B,C"``; matched case-insensitively) or None: then the classes that the split's lists name
    and that have a folder under the video root are used, and ``say`` (if given) gets one line
    naming them.  ``split`` is 1, 2 or 3.
    The group of a clip ``v_<Class>_gXX_cXX`` is ``<Class>_gXX``: the official lists keep
    each group on one side, and so does :func:`make_splits` when it carves val from train.
    """
    root = abspath(root)
    check_dir(root, "UCF101")
    split = _check_split(root, split)
    video_root, ann = find_ucf(root, annotations)
    layout = _Layout(root, video_root, ann, split, ucf_class_index(os.path.join(ann, "classInd.txt")))
    listed = _read_split_lists(layout)
    folders = {n.lower(): n for n in listdir(video_root) if os.path.isdir(os.path.join(video_root, n))}
    wanted = parse_classes(classes)
    if wanted is None:
        chosen = _classes_on_disk(layout, listed, folders, say)
    else:
        chosen = _named_classes(layout, wanted, folders)
    return _samples(layout, listed, set(chosen), folders)


def _check_split(root: str, split: int | str) -> int:
    if isinstance(split, str) and split.strip().isdigit():
        split = int(split)
    if split not in (1, 2, 3) or isinstance(split, bool):
        raise ActionrecError(f"UCF101 at {root}: split must be 1, 2 or 3, not {split!r}")
    return int(split)


def _missing_folder(layout: _Layout, folder: str, label: str) -> ActionrecError:
    return ActionrecError(
        f"UCF101 class folder {os.path.join(layout.video_root, folder)} is missing: extract"
        f" '{label}' from UCF101.rar into {layout.video_root} or leave the class out"
    )


def _named_classes(layout: _Layout, wanted: list[str], folders: dict[str, str]) -> list[str]:
    """The classes the caller named, as spelled in classInd.txt; each must have its folder."""
    if not wanted:
        raise ActionrecError(f"UCF101 at {layout.root}: the class list is empty: name at least 2 classes")
    found, missing = resolve_names(wanted, layout.index)
    if missing:
        raise ActionrecError(
            f"unknown UCF101 class '{missing[0]}' (not in {layout.class_ind})"
            f"{did_you_mean(missing[0], layout.index)}: use the names in classInd.txt"
        )
    chosen = list(dict.fromkeys(found.values()))
    for label in chosen:
        if label.lower() not in folders:
            raise _missing_folder(layout, label, label)
    return chosen


def _classes_on_disk(layout: _Layout, listed: dict[str, _Listed], folders: dict[str, str], say: Say | None) -> list[str]:
    """Without a class list: the classes of classInd.txt that the split lists name and that are extracted."""
    in_lists = {x.label for x in listed.values()}
    named = [c for c in layout.index if c in in_lists]
    chosen = [c for c in named if c.lower() in folders]
    where = f"UCF101 at {layout.root}, split {layout.split}"
    if not chosen:
        raise ActionrecError(
            f"{where}: none of the {len(named)} classes its lists name has a folder in {layout.video_root}:"
            " extract the classes you want from UCF101.rar there, or give the folder that holds UCF-101"
        )
    if say is not None:
        left = len(named) - len(chosen)
        say(
            f"{where}: using the {len(chosen)} listed classes found on disk: {names_list(chosen, 10)}"
            + (f" ({left} more listed but not extracted)" if left else "")
            + "; name others with --classes"
        )
    return chosen


def _read_split_lists(layout: _Layout) -> dict[str, _Listed]:
    """Every line of the split's trainlist and testlist: {'<Class>/<video>.avi': _Listed}."""
    by_lower = {name.lower(): name for name in layout.index}
    listed: dict[str, _Listed] = {}
    for kind in ("train", "test"):
        list_path = os.path.join(layout.ann, f"{kind}list0{layout.split}.txt")
        if not os.path.isfile(list_path):
            raise ActionrecError(
                f"missing {list_path} (looked in {layout.ann}): restore it from"
                " UCF101TrainTestSplits-RecognitionTask.zip"
            )
        for no, line in read_lines(list_path):
            parts = line.replace("\\", "/").split()
            rel = parts[0].lstrip("/")
            folder = rel.split("/", 1)[0] if "/" in rel else ""
            if not folder or len(parts) > 2 or (kind == "test" and len(parts) != 1):
                shape = "<Class>/<video>.avi <index>" if kind == "train" else "<Class>/<video>.avi"
                raise ActionrecError(
                    f"{list_path} line {no}: expected '{shape}', got {line!r}: restore the original file"
                )
            where = f"{list_path} line {no}"
            if rel in listed and listed[rel].kind != kind:
                raise ActionrecError(f"{rel} is in both {listed[rel].where} and {where}: restore the original lists")
            label = by_lower.get(folder.lower(), folder)
            listed[rel] = _Listed(label, kind, where, parts[1] if len(parts) == 2 else None)
    return listed


def _check_index(layout: _Layout, x: _Listed) -> None:
    """A train list's class index must be classInd.txt's."""
    if x.index is not None and x.index.isdigit() and int(x.index) != layout.index[x.label]:
        raise ActionrecError(
            f"{x.where}: class index {x.index} does not match {x.label}'s"
            f" index {layout.index[x.label]} in {layout.class_ind}: use matching annotation files"
        )


def _samples(layout: _Layout, listed: dict[str, _Listed], chosen: set[str], folders: dict[str, str]) -> list[Sample]:
    """The listed clips of the chosen classes, found on disk (case-insensitive fallback)."""
    origin = f"official UCF101 split {layout.split}"
    listings: dict[str, tuple[str, dict[str, str]]] = {}  # list's folder name -> (real folder, {lower name: name})
    samples: list[Sample] = []
    missing_files: list[str] = []
    for rel, x in sorted(listed.items()):
        if x.label not in chosen:
            continue
        _check_index(layout, x)
        folder, fname = rel.split("/", 1)
        if folder not in listings:
            real = folders.get(folder.lower())
            if real is None:
                raise _missing_folder(layout, folder, x.label)
            d = os.path.join(layout.video_root, real)
            listings[folder] = (d, {n.lower(): n for n in listdir(d)})
        d, names = listings[folder]
        real_name = fname if os.path.isfile(os.path.join(d, fname)) else names.get(fname.lower())
        if real_name is None:
            missing_files.append(os.path.join(d, fname))
            continue
        p = os.path.join(d, real_name)
        samples.append(Sample(p, x.label, infer_group(p, x.label), x.kind, origin))
    if missing_files:
        raise ActionrecError(
            f"{len(missing_files)} video(s) listed in {layout.ann} are missing under {layout.video_root}"
            f" (first: {missing_files[0]}): re-extract UCF101.rar or choose other classes"
        )
    empty = sorted(chosen - {s.label for s in samples})
    if empty:
        raise ActionrecError(
            f"UCF101 class '{empty[0]}' has no videos listed in {layout.ann} for split {layout.split}:"
            " restore the original trainlist/testlist files"
        )
    return samples


# ----------------------------------------------------------------------------- finding the layout


def find_ucf(root: str, annotations: str | os.PathLike | None) -> tuple[str, str]:
    """(video root, annotation folder) of a UCF101 layout at ``root``."""
    video_root = root
    for d in _UCF_VIDEO_DIRS:
        if os.path.isdir(os.path.join(root, d)):
            video_root = os.path.join(root, d)
            break
    if annotations is not None:
        return video_root, _given_annotations(annotations)
    looked: list[str] = []
    for base in (root, video_root, os.path.dirname(root), os.path.dirname(video_root)):
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


def _given_annotations(annotations: str | os.PathLike) -> str:
    ann = abspath(annotations)
    if not os.path.exists(ann):
        raise ActionrecError(f"UCF101 annotation folder {ann} does not exist: check the path")
    if os.path.isfile(ann):
        ann = os.path.dirname(ann)  # e.g. the path of classInd.txt itself
    for cand in (ann, *(os.path.join(ann, d) for d in _UCF_ANNOTATION_DIRS)):
        if os.path.isfile(os.path.join(cand, "classInd.txt")):
            return cand
    raise ActionrecError(
        f"no classInd.txt in {ann}: give the ucfTrainTestlist folder from UCF101TrainTestSplits-RecognitionTask.zip"
    )


def looks_like_ucf(root: str) -> bool:
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


def ucf_class_index(path: str) -> dict[str, int]:
    """classInd.txt: ``1 ApplyEyeMakeup`` -> {'ApplyEyeMakeup': 1}."""
    index: dict[str, int] = {}
    for no, line in read_lines(path):
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
