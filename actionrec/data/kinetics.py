"""Kinetics-style annotation CSVs: ``label,youtube_id,time_start,time_end,split`` pointing at downloaded videos.

The official files (Kinetics-400/600/700, e.g. ``kinetics400/train.csv``, ``validate.csv``) have that header, some
with an extra ``is_cc`` column (ignored).  The videos are the common downloaders' files, looked for by name under the
CSV's folder (or the folder above ``annotations/``), in the split folder or a class sub-folder:

* ``<youtube_id>_<start:06d>_<end:06d>.<ext>``: the clip already trimmed to the labelled 10 s (ActivityNet's
  Kinetics crawler, mmaction2's download script, the CVDF archives): used whole;
* ``<youtube_id>.<ext>``: the whole YouTube video (``yt-dlp -o '%(id)s.%(ext)s'``): the row's time range of it becomes
  a segment (``VIDEO#t=START,END``, see :mod:`.segments`), cut to the video's length.

Rows whose video is missing (downloads always miss some) or unreadable are skipped and counted in one line.  The
split column becomes the split as :func:`.downloads.subset_splits` says (a ``validate.csv`` alone: the test set).
Each malformed row is one ActionrecError naming the file, the line and the fix.
"""

from __future__ import annotations

import csv
import os
from typing import NamedTuple, Sequence

from ..errors import ActionrecError
from .downloads import SUBSETS, Skipped, fit_range, search_root, subset_splits, video_index
from .samples import Sample, Say, abspath, clip_address, parse_classes, resolve_names
from .video import unreadable_error

__all__ = ["load_kinetics_csv", "is_kinetics_csv", "kinetics_classes"]

_REQUIRED = ("label", "youtube_id", "time_start", "time_end")


class _Row(NamedTuple):
    no: int
    label: str
    youtube_id: str
    start: float
    end: float
    subset: str | None  # 'train' | 'val' | 'test' (SUBSETS' names), None when the row gives none
    raw_subset: str


def is_kinetics_csv(path: str) -> bool:
    """A ``.csv`` whose header row names a ``youtube_id`` column."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            for row in csv.reader(f):
                if any(c.strip() for c in row):
                    return "youtube_id" in {c.strip().lower() for c in row}
    except (OSError, UnicodeDecodeError, csv.Error):
        return False
    return False


def load_kinetics_csv(csv_path: str | os.PathLike, say: Say | None = None,
                      classes: str | Sequence[str] | None = None) -> list[Sample]:
    """Samples of a Kinetics-style CSV whose videos are downloaded under its folder (see the module doc).

    ``classes`` keeps only those labels (case-insensitive; names the CSV lacks are left to the caller), so only
    their videos are looked for.  Missing and unreadable videos are skipped, and ``say`` gets one line counting
    them.  Groups are the YouTube ids, so clips of one YouTube video never straddle splits.
    """
    csv_path = abspath(csv_path)
    rows = _read(csv_path)
    splits = subset_splits({r.subset for r in rows if r.subset})
    if classes is not None:
        found, _ = resolve_names(parse_classes(classes) or [], {r.label for r in rows})
        rows = [r for r in rows if r.label in set(found.values())]
        if not rows:
            return []
    root = search_root(csv_path)
    index = video_index(root)
    skipped = Skipped(csv_path)
    lengths: dict[str, float | None] = {}
    samples: list[Sample] = []
    for r in rows:
        sample = _sample(csv_path, r, splits, index, lengths, skipped)
        if sample is not None:
            samples.append(sample)
    skipped.say(len(rows), root, say)
    if not samples:
        raise ActionrecError(
            f"none of the {len(rows)} videos of {csv_path} was found under {root}: put the downloaded files"
            " (<youtube_id>_<start:06d>_<end:06d>.mp4 or <youtube_id>.mp4) in the CSV's folder, a folder per split"
            " or per class under it"
        )
    return samples


def kinetics_classes(csv_path: str | os.PathLike) -> set[str]:
    """The labels a Kinetics-style CSV names (its videos are not looked for)."""
    return {r.label for r in _read(abspath(csv_path))}


def _sample(csv_path: str, r: _Row, splits: dict[str, str | None], index: dict[str, str],
            lengths: dict[str, float | None], skipped: Skipped) -> Sample | None:
    """A row as a Sample: the trimmed clip whole, or the range of the whole video; None when there is no video."""
    split = splits.get(r.subset) if r.subset else None
    origin = f"the {r.raw_subset} subset of {os.path.basename(csv_path)}" if split else None
    trimmed = index.get(f"{r.youtube_id}_{int(r.start):06d}_{int(r.end):06d}")
    if trimmed is not None:
        return Sample(trimmed, r.label, f"youtube/{r.youtube_id}", split, origin)
    whole = index.get(r.youtube_id)
    what = f"{r.youtube_id}_{int(r.start):06d}_{int(r.end):06d}"
    if whole is None:
        skipped.add("with no video file", what)
        return None
    fitted = fit_range(whole, r.start, r.end, lengths, skipped, what)
    if fitted is None:
        return None
    return Sample(clip_address(whole, *fitted), r.label, f"youtube/{r.youtube_id}", split, origin)


def _read(csv_path: str) -> list[_Row]:
    """The data rows, each checked on its own, and no clip listed twice."""
    try:
        with open(csv_path, encoding="utf-8-sig", newline="") as f:
            lines = [(row, no) for no, row in enumerate(csv.reader(f), 1) if any(c.strip() for c in row)]
    except UnicodeDecodeError:
        raise ActionrecError(f"{csv_path} is not UTF-8 text: save it as UTF-8 CSV") from None
    except csv.Error as e:
        raise ActionrecError(f"{csv_path}: not valid CSV ({e}): restore the original file") from None
    except OSError as e:
        raise unreadable_error(csv_path, e, "", ActionrecError) from None
    if not lines:
        raise ActionrecError(f"{csv_path} is empty: give a Kinetics annotation CSV (label,youtube_id,time_start,"
                             "time_end,split)")
    columns = {c.strip().lower(): i for i, c in enumerate(lines[0][0])}
    absent = [c for c in _REQUIRED if c not in columns]
    if absent:
        fix = (" (a test list without labels cannot train: give the labelled CSVs)" if absent == ["label"] else "")
        raise ActionrecError(f"{csv_path} line 1: the header has no {', '.join(absent)} column{fix}: the columns are"
                             " label,youtube_id,time_start,time_end[,split] as in the official files")
    rows = [_parse(csv_path, columns, cells, no) for cells, no in lines[1:]]
    if not rows:
        raise ActionrecError(f"{csv_path} lists no videos: add rows label,youtube_id,time_start,time_end,split")
    first: dict[tuple[str, float, float], int] = {}
    for r in rows:
        prev = first.setdefault((r.youtube_id, r.start, r.end), r.no)
        if prev != r.no:
            raise ActionrecError(f"{csv_path} line {r.no}: {r.youtube_id} {r.start:g}-{r.end:g} is already listed on"
                                 f" line {prev}: remove one")
    return rows


def _parse(csv_path: str, columns: dict[str, int], cells: list[str], no: int) -> _Row:
    """One data row; one line naming the file, the line and the fix for each kind of bad cell."""
    if len(cells) < len(columns):
        raise ActionrecError(f"{csv_path} line {no}: {len(cells)} cells, the header names {len(columns)}: restore the"
                             " row (quote labels that contain commas)")
    cell = {name: cells[i].strip() for name, i in columns.items()}
    if not cell["label"] or not cell["youtube_id"]:
        raise ActionrecError(f"{csv_path} line {no}: needs a label and a youtube_id: fix or remove the row")
    try:
        start, end = float(cell["time_start"]), float(cell["time_end"])
    except ValueError:
        raise ActionrecError(f"{csv_path} line {no}: time_start {cell['time_start']!r} and time_end"
                             f" {cell['time_end']!r} must be seconds (e.g. 14 and 24): fix them") from None
    if start < 0 or start >= end:
        raise ActionrecError(f"{csv_path} line {no}: the range {start:g}-{end:g} s is empty or negative: the start"
                             " must be at least 0 and before the end; fix it")
    raw = cell.get("split", "")
    subset = SUBSETS.get(raw.lower()) if raw else None
    if raw and subset is None:
        raise ActionrecError(f"{csv_path} line {no}: split '{raw}' is not train, val(idate) or test: fix it or leave"
                             " it empty")
    return _Row(no, cell["label"], cell["youtube_id"], start, end, subset, raw)
