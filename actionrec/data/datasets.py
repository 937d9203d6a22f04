"""Datasets: where the labelled clips come from, and how they are split honestly.

This is the entry module; each kind of source has its own (:mod:`.folders`, :mod:`.ucf101`,
:mod:`.manifest`, :mod:`.hmdb51`, :mod:`.kinetics`, :mod:`.activitynet`), the splitting is in :mod:`.splits` and
:class:`Sample` in :mod:`.samples`.  These kinds of source, all turned into a flat list of :class:`Sample`:

* **Class folders** (:func:`scan_class_folders`): ``root/<Label>/<clip>.<ext>``.  The
  sub-folder's name is the label, so adding a class is adding a folder.  Only *files* with a
  video extension directly inside a class folder are samples; sub-folders (for instance a
  folder of image frames) and hidden files are not scanned there -- list frame folders in a
  CSV manifest instead.
* **UCF101** (:func:`load_ucf101`): ``UCF-101/<Class>/v_<Class>_gXX_cXX.avi`` with the
  ``ucfTrainTestlist`` annotation folder (``classInd.txt``, ``trainlist0N.txt``,
  ``testlist0N.txt``) beside or inside the video root, or at an explicit path.  A class subset
  and the official split 1, 2 or 3 fix which clips are train and which are test.
* **A CSV manifest** (:func:`load_manifest`): ``path,label[,start,end][,group][,split]``; a header
  row is optional but recommended; paths are relative to the CSV's folder or absolute.  A row with
  a start and an end labels that range of a long video (a *segment*, see :mod:`.segments`); the
  reserved label ``none`` marks background, and ``path,none`` marks a video fully labelled.
* **HMDB51** (:mod:`.hmdb51`): ``hmdb51_org/<class>/*.avi`` with ``testTrainMulti_7030_splits`` beside or inside;
  the official split 1, 2 or 3.
* **A Kinetics annotation CSV** (:mod:`.kinetics`, recognised by its ``youtube_id`` column) pointing at downloaded
  clips or whole videos (their time range becomes a segment).
* **An ActivityNet / THUMOS JSON** (:mod:`.activitynet`): temporal annotations as labelled segments.
* **A mix** (:func:`load_dataset`): any number of the above, unioned -- e.g. UCF101 classes plus
  a folder holding the user's own class.

Groups.  Clips cut from one source recording are near duplicates; if some land in training and
others in the test set, the test accuracy is inflated (the original study shuffled clips freely
and had this leak).  Every sample therefore carries a ``group`` and :func:`make_splits` assigns
whole groups to train / val / test.  Groups come from UCF101's ``gXX``, a manifest's group column,
every segment of one video shares the video's group unless the manifest names one, and for files
without one the group comes from the file name (see :func:`infer_group`):

1. ``v_<Class>_g<NN>_c<NN>`` (UCF101 naming) -> group ``<Class>_g<NN>``;
2. ``<stem>_c<NN>`` / ``<stem>_clip<NN>`` (also with ``-`` as separator, e.g. ``match3-clip07``)
   -> group ``<label>/<stem>`` (clips of one source are assumed to sit in one class folder);
3. otherwise each file is its own group.

A bare ``<stem>-<NN>`` / ``<stem>_<NN>`` suffix is deliberately *not* a grouping rule: names
such as ``video-1 .. video-40`` or ``IMG_0001`` are usually separate recordings, and lumping
a whole class into one group would make it impossible to split.  Declare such groups with a
manifest's group column, or name the clips ``<source>_c<NN>``.

The class ``none``.  Background segments are the class ``none`` (the name the timeline gives time no class
claims); it trains as an ordinary class.  A class folder or UCF101 class called ``none`` (any case) means the same
and is merged with it, spelled ``none``; it is kept when ``classes`` names others, as it is not one of them.
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
from collections import defaultdict
from dataclasses import replace
from typing import Sequence

from ..errors import ActionrecError
from .activitynet import activitynet_classes, load_activitynet_json
from .folders import scan_class_folders
from .hmdb51 import hmdb51_classes, load_hmdb51, looks_like_hmdb51
from .kinetics import is_kinetics_csv, kinetics_classes, load_kinetics_csv
from .manifest import load_manifest
from .samples import (
    NONE_LABEL, SPLIT_NAMES, Sample, Say, abspath, check_dir, class_dirs, did_you_mean, ext_list, infer_group, parse_classes,
    resolve_names,
)
from .splits import Splits, make_splits
from .ucf101 import find_ucf, load_ucf101, looks_like_ucf, ucf_class_index

__all__ = [
    "Sample",
    "Splits",
    "infer_group",
    "scan_class_folders",
    "load_ucf101",
    "load_manifest",
    "load_dataset",
    "make_splits",
    "same_clip_in_two_classes",
    "SPLIT_NAMES",
]

Sources = str | os.PathLike | Sequence[str | os.PathLike]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def load_dataset(
    sources: Sources,
    classes: str | Sequence[str] | None = None,
    split: int = 1,
    test_dir: Sources | None = None,
    annotations: str | os.PathLike | None = None,
    say: Say = _stderr,
) -> list[Sample]:
    """The union of one or more sources, limited to ``classes`` if given.

    Each source's kind is detected: a ``.csv`` file is a manifest (whole videos, or segments of long ones), or a
    Kinetics annotation CSV when its header names ``youtube_id``; a ``.json`` file holds ActivityNet / THUMOS
    temporal annotations; a folder holding ``ucfTrainTestlist`` or ``UCF-101`` (or a ``UCF-101`` folder with its
    lists beside it) is UCF101 (official ``split`` 1-3, ``annotations`` to name the list folder); a folder with
    HMDB51's split files in or beside it is HMDB51 (official ``split`` 1-3); any other folder holds one sub-folder
    per class.  ``classes`` (a sequence or ``"A,B,C"``) may draw on several
    sources, e.g. UCF101 classes plus a folder with the user's own class; every name must be found
    somewhere.  Samples of the same label from several sources are merged.  ``test_dir`` (any
    kind of source, or several) supplies the held-out test set: its samples get ``split='test'``
    and its classes must also have training videos.  ``say`` gets one-line notes (which UCF101
    classes were chosen by default) and warnings (the same clip in two classes; default: stderr).
    Returns samples sorted by (label, path).
    """
    srcs = _as_list(sources)
    if not srcs:
        raise ActionrecError("no dataset given: name a folder with one sub-folder per class, a UCF101 folder or a .csv manifest")
    for s in srcs:
        if not os.path.exists(s):
            raise ActionrecError(f"{s} does not exist: check the dataset path")
    wanted = parse_classes(classes)
    where = ", ".join(srcs)
    if wanted is not None and not wanted:
        raise ActionrecError(f"the class list for {where} is empty: name at least 2 classes")

    canonical: dict[str, str] = {NONE_LABEL: NONE_LABEL}  # lower-case label -> the first spelling seen
    samples: list[Sample] = []
    for s in srcs:
        samples += _load_source(s, wanted, split, annotations, say)
        for x in samples:
            canonical.setdefault(x.label.lower(), x.label)
    samples = _relabel(samples, canonical)
    _check_all_found(samples, wanted, srcs, annotations)
    for t in _as_list(test_dir):
        samples += _test_samples(t, samples, wanted, canonical, where, split, annotations, say)
    samples = _merge(samples)
    labels = sorted({s.label for s in samples})
    if len(labels) < 2:
        raise ActionrecError(
            f"only one class ('{labels[0]}') found in {where}: transfer learning needs at least 2"
            " classes: add a folder of another class's videos"
        )
    _warn_same_clips(samples, say)
    return samples


def _as_list(sources: Sources | None) -> list[str]:
    if sources is None:
        return []
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    return [abspath(s) for s in sources]


def _load_source(src: str, wanted: list[str] | None, split: int, annotations, say: Say | None) -> list[Sample]:
    """One source, limited to the wanted classes that it has (others may be in other sources)."""
    if os.path.isfile(src):
        samples = _load_file(src, say, wanted)
        if wanted is not None:  # the background (none) is kept: it is not one of the classes
            found, _ = resolve_names(wanted, {s.label for s in samples})
            samples = [s for s in samples if s.label in set(found.values()) | {NONE_LABEL}]
        return samples
    check_dir(src, "dataset")
    if looks_like_ucf(src):
        if wanted is None:
            return load_ucf101(src, None, split, annotations, say=say)
        found, _ = resolve_names(wanted, _available_labels(src, annotations, strict=True))
        return load_ucf101(src, list(dict.fromkeys(found.values())), split, annotations) if found else []
    if looks_like_hmdb51(src):
        if wanted is None:
            return load_hmdb51(src, None, split, say=say)
        found, _ = resolve_names(wanted, hmdb51_classes(src, split))
        return load_hmdb51(src, list(dict.fromkeys(found.values())), split) if found else []
    if wanted is None:
        return scan_class_folders(src)
    found, _ = resolve_names(wanted, class_dirs(src))
    return scan_class_folders(src, list(dict.fromkeys(found.values()))) if found else []


def _load_file(src: str, say: Say | None, wanted: list[str] | None = None) -> list[Sample]:
    """A file source: a Kinetics annotation CSV, a CSV manifest, or an ActivityNet / THUMOS JSON (the last two
    look for the videos of the ``wanted`` classes only)."""
    low = src.lower()
    if low.endswith(".json"):
        return load_activitynet_json(src, say, wanted)
    if low.endswith(".csv"):
        return load_kinetics_csv(src, say, wanted) if is_kinetics_csv(src) else load_manifest(src)
    raise ActionrecError(
        f"{src} is a file but not a .csv manifest or a .json of temporal annotations: give a folder with one"
        " sub-folder per class, a UCF101 or HMDB51 folder, a .csv manifest or a Kinetics CSV"
    )


def _available_labels(src: str, annotations, strict: bool = False) -> set[str]:
    """Every class name a source offers; errors are swallowed (for suggestions) unless ``strict``."""
    try:
        if os.path.isfile(src) and src.lower().endswith(".json"):
            return activitynet_classes(src)
        if os.path.isfile(src) and is_kinetics_csv(src):
            return kinetics_classes(src)
        if os.path.isfile(src):
            return {s.label for s in load_manifest(src)}
        if looks_like_ucf(src):
            _, ann = find_ucf(src, annotations)
            return set(ucf_class_index(os.path.join(ann, "classInd.txt")))
        if looks_like_hmdb51(src):
            return set(hmdb51_classes(src))
        return set(class_dirs(src))
    except ActionrecError:
        if strict:
            raise
        return set()


def _relabel(samples: list[Sample], canonical: dict[str, str]) -> list[Sample]:
    """Labels that differ only in case (e.g. folders Jump and jump) become one spelling."""
    return [
        x if canonical.get(x.label.lower(), x.label) == x.label
        else replace(x, label=canonical[x.label.lower()])
        for x in samples
    ]


def _check_all_found(samples: list[Sample], wanted: list[str] | None, srcs: list[str], annotations) -> None:
    """Every wanted class was found in some source; some video was found at all."""
    where = ", ".join(srcs)
    if wanted is not None:
        _, missing = resolve_names(wanted, {s.label for s in samples})
        if missing:
            everything: set[str] = set()
            for s in srcs:
                everything |= _available_labels(s, annotations)
            raise ActionrecError(
                f"class '{missing[0]}' not found in {where}{did_you_mean(missing[0], everything)}:"
                " fix the name or add a folder of its videos"
            )
    if not samples:
        raise ActionrecError(f"no videos found in {where}: add class sub-folders holding videos ({ext_list()})")


def _test_samples(
    test: str, samples: list[Sample], wanted: list[str] | None, canonical: dict[str, str], where: str,
    split: int, annotations, say: Say | None,
) -> list[Sample]:
    """The samples of one test folder, all with split 'test'; its classes must have training videos."""
    if not os.path.exists(test):
        raise ActionrecError(f"test folder {test} does not exist: check the path")
    train_labels = sorted({s.label for s in samples})
    got = _load_source(test, wanted if wanted is not None else train_labels, split, annotations, say)
    if wanted is None:
        extra = sorted(x for x in _available_labels(test, annotations) if x.lower() not in canonical)
        if extra:
            raise ActionrecError(
                f"class '{extra[0]}' of test folder {test} has no training videos in {where}:"
                " add them or remove the class from the test folder"
            )
    if not got:
        raise ActionrecError(f"test folder {test} holds no videos of the chosen classes: add some or drop the test folder")
    origin = f"test folder {test}"
    return [Sample(x.path, x.label, x.group, "test", origin) for x in _relabel(got, canonical)]


def _merge(samples: list[Sample]) -> list[Sample]:
    """One sample per path (a fixed split wins over none), sorted by (label, path); a path in two classes is an error."""
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
    return sorted(by_path.values(), key=lambda x: (x.label, x.path))


# ----------------------------------------------------------------------------- the same clip twice

_HEAD_BYTES = 1 << 16  # bytes read from each end of a file to compare two files of the same size


def same_clip_in_two_classes(samples: Sequence[Sample]) -> list[tuple[Sample, Sample]]:
    """Pairs of samples of different classes that are the same file (a link) or byte-identical copies.

    Cheap: one ``stat`` per sample; only files of the same size are read, and only their first and
    last 64 KiB.  Unreadable files are left out (the decoder reports them).
    """
    by_size: dict[int, list[tuple[tuple[int, int], Sample]]] = defaultdict(list)
    for s in samples:
        try:
            st = os.stat(s.path)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            by_size[st.st_size].append(((st.st_dev, st.st_ino), s))
    pairs: list[tuple[Sample, Sample]] = []
    for same_size in by_size.values():
        if len({s.label for _, s in same_size}) < 2:
            continue
        first: dict[object, Sample] = {}
        for inode, s in same_size:
            key = _content_key(s.path, inode)
            prev = first.setdefault(key, s)
            if prev is not s and prev.label != s.label:
                pairs.append((prev, s))
    return pairs


def _content_key(path: str, inode: tuple[int, int]) -> object:
    """The file's first and last bytes (same size already known); its inode if it cannot be read."""
    try:
        with open(path, "rb") as f:
            head = f.read(_HEAD_BYTES)
            f.seek(max(0, os.fstat(f.fileno()).st_size - _HEAD_BYTES))
            return hashlib.sha256(head + f.read(_HEAD_BYTES)).hexdigest()
    except OSError:
        return inode


def _warn_same_clips(samples: list[Sample], say: Say | None) -> None:
    pairs = same_clip_in_two_classes(samples)
    if pairs and say is not None:
        a, b = pairs[0]
        more = f" (and {len(pairs) - 1} more such pair(s))" if len(pairs) > 1 else ""
        say(
            f"warning: {a.path} ({a.label}) and {b.path} ({b.label}) are the same clip in two classes{more}:"
            " keep each clip in one class, or the model learns contradictory labels"
        )
