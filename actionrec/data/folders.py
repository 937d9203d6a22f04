"""Class folders: ``root/<Label>/<clip>.<ext>``, the sub-folder's name being the label."""

from __future__ import annotations

import os
from typing import Sequence

from ..errors import ActionrecError
from .samples import (
    Sample, abspath, check_dir, class_dirs, did_you_mean, ext_list, infer_group, is_video_file, listdir,
    parse_classes, resolve_names, video_extensions,
)

__all__ = ["scan_class_folders"]


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
    root = abspath(root)
    check_dir(root, "dataset folder")
    dirs = _chosen_dirs(root, parse_classes(classes))
    samples: list[Sample] = []
    for label in dirs:
        for p in _class_videos(os.path.join(root, label), label):
            samples.append(Sample(p, label, infer_group(p, label)))
    return samples


def _chosen_dirs(root: str, wanted: list[str] | None) -> list[str]:
    """The class sub-folders to scan: all of them, or those named in ``wanted``."""
    dirs = class_dirs(root)
    if wanted is not None:
        found, missing = resolve_names(wanted, dirs)
        if missing:
            raise ActionrecError(
                f"{root} has no class sub-folder '{missing[0]}'{did_you_mean(missing[0], dirs)}:"
                " create it with videos of that class or fix the class name"
            )
        dirs = sorted(set(found.values()))
    if dirs:
        return dirs
    loose = [n for n in listdir(root) if is_video_file(n, video_extensions())]
    if loose:
        raise ActionrecError(
            f"{root} holds videos but no class sub-folders: move each class's videos into a"
            f" sub-folder named after the class (e.g. {os.path.join(root, 'Jump', loose[0])})"
        )
    raise ActionrecError(
        f"no class sub-folders with videos found in {root}: make one sub-folder per class"
        f" holding videos ({ext_list()})"
    )


def _class_videos(folder: str, label: str) -> list[str]:
    """Paths of the videos directly inside one class folder, sorted; an error if there are none."""
    exts = video_extensions()
    entries = listdir(folder)
    names = sorted(n for n in entries if is_video_file(n, exts) and os.path.isfile(os.path.join(folder, n)))
    if names:
        return [os.path.join(folder, n) for n in names]
    has_sub = any(os.path.isdir(os.path.join(folder, n)) for n in entries)
    hint = (
        " (sub-folders, such as folders of frames, are not scanned here: list them in a CSV manifest)"
        if has_sub
        else ""
    )
    raise ActionrecError(
        f"class folder {folder} has no videos ({ext_list()}): add videos of '{label}' to it or remove the folder{hint}"
    )
