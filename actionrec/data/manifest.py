"""A CSV manifest: ``path,label[,start,end][,group][,split]``, one video or one labelled range of a video a line."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from typing import Iterable

from ..errors import ActionrecError
from .samples import NONE_LABEL, SPLIT_NAMES, Sample, abspath, clip_address, did_you_mean, infer_group
from .segments import background_ranges, format_time, parse_time
from .video import probe, unreadable_error

__all__ = ["load_manifest"]

_COLUMNS = {"path": "path", "video": "path", "file": "path", "label": "label", "class": "label",
            "start": "start", "end": "end", "group": "group", "split": "split"}
_DEFAULT_COLUMNS = ["path", "label", "group", "split"]
_RANGE_COLUMNS = ["path", "label", "start", "end", "group", "split"]  # a headerless row whose 4th cell is a time
_FORMS = "path,label[,start,end][,group][,split]"
_PAST_END = 0.25  # seconds a range may end after the video's end (players and containers round); it is cut there

Row = tuple[list[str], int]  # cells, line number


def load_manifest(csv_path: str | os.PathLike) -> list[Sample]:
    """Samples listed in a CSV: ``path,label[,start,end][,group][,split]``, one video or one range of a video a line.

    A header row naming the columns (``path,label,start,end,group,split`` in any order, all but path and label
    optional) is recommended; without it the columns are positional: ``path,label[,group][,split]``, or
    ``path,label,start,end[,group][,split]`` when the fourth cell is a time.  Blank lines and lines starting with
    ``#`` are skipped.  Paths are relative to the CSV's folder or absolute, and may name a folder of frames.
    ``split`` is train, val, test or empty (let :func:`make_splits` choose).

    A row with ``start`` and ``end`` (seconds, ``m:ss.s`` or ``h:mm:ss.s``) labels that range of the video (a
    segment; its ``path`` is ``VIDEO#t=START,END``, see :class:`Sample`); its empty group is the video, so every
    segment of one video stays on one side of a split.  The reserved label ``none`` with a range marks background;
    ``path,none`` without one marks the video fully labelled: its time outside every other segment becomes segments
    of ``none`` (see :mod:`.segments`).  An empty group of a whole-video row is inferred from the file name
    (:func:`infer_group`).  Each bad row is one ActionrecError naming the file, the line and the fix: a missing
    video, an unreadable one (ranges), start >= end, a range past the video's end, an empty label, the same video or
    range twice, overlapping ranges of different labels, a group in two splits.
    """
    csv_path = abspath(csv_path)
    rows = _read_rows(csv_path)
    columns, rows = _columns(csv_path, rows)
    if not rows:
        raise ActionrecError(f"manifest {csv_path} lists no videos: add lines {_FORMS}")
    parsed = [_parse_row(csv_path, columns, cells, no) for cells, no in rows]
    _check_rows(csv_path, parsed)
    lengths: dict[str, float] = {}  # video -> seconds, read once per file
    samples = [_sample(csv_path, r, lengths) for r in parsed if not r.marks_fully_labelled]
    samples += _background(csv_path, parsed, lengths)
    group_split: dict[str, tuple[str, int]] = {}  # group -> (split, line)
    for sample, no in samples:
        if sample.split is not None:
            other, other_no = group_split.setdefault(sample.group, (sample.split, no))
            if other != sample.split:
                raise ActionrecError(
                    f"{csv_path} line {no}: group '{sample.group}' is {sample.split} here but {other} on line"
                    f" {other_no}: clips of one source must share a split; fix the split column"
                )
    return [s for s, _ in samples]


def _read_rows(csv_path: str) -> list[Row]:
    if not os.path.exists(csv_path):
        raise ActionrecError(f"manifest {csv_path} does not exist: check the path")
    if not os.path.isfile(csv_path):
        raise ActionrecError(f"manifest {csv_path} is a folder, not a CSV file: give the .csv file")
    try:
        with open(csv_path, encoding="utf-8-sig", newline="") as f:
            return list(_numbered_rows(csv.reader(f)))
    except UnicodeDecodeError:
        raise ActionrecError(f"manifest {csv_path} is not UTF-8 text: save it as UTF-8 CSV") from None
    except csv.Error as e:
        raise ActionrecError(f"manifest {csv_path}: not valid CSV ({e}): fix the quoting") from None
    except OSError as e:
        raise unreadable_error(csv_path, e, "manifest ", ActionrecError) from None


def _numbered_rows(reader) -> Iterable[Row]:
    """CSV rows that are not blank or '#' comments, with the line number where each starts."""
    line = 1
    for row in reader:
        start, line = line, reader.line_num + 1
        if not any(c.strip() for c in row) or row[0].lstrip().startswith("#"):
            continue
        yield row, start


def _columns(csv_path: str, rows: list[Row]) -> tuple[list[str], list[Row]]:
    """The column names (from the header row if there is one) and the data rows."""
    if not rows:
        return list(_DEFAULT_COLUMNS), rows
    first = [c.strip().lower() for c in rows[0][0]]
    if not ("path" in first or "label" in first or all(c in _COLUMNS for c in first if c)):
        return list(_DEFAULT_COLUMNS), rows
    for c in first:
        if c not in _COLUMNS:
            raise ActionrecError(
                f"{csv_path} line {rows[0][1]}: unknown column '{c}'{did_you_mean(c, _DEFAULT_COLUMNS)}:"
                f" the columns are {_FORMS}"
            )
    columns = [_COLUMNS[c] for c in first]
    if "path" not in columns or "label" not in columns or len(set(columns)) != len(columns):
        raise ActionrecError(
            f"{csv_path} line {rows[0][1]}: the header must name path and label once each ({_FORMS})"
        )
    return columns, rows[1:]


@dataclass(frozen=True)
class _Row:
    """One data row, checked on its own: the video's absolute path, the range if any, and where it stands."""

    no: int  # line number
    raw_path: str  # as written
    video: str  # absolute
    label: str
    start: float | None
    end: float | None
    group: str
    split: str | None

    @property
    def marks_fully_labelled(self) -> bool:
        return self.label == NONE_LABEL and self.start is None

    def where(self) -> str:
        return f"{format_time(self.start)}-{format_time(self.end)}" if self.start is not None else "the whole video"


def _parse_row(csv_path: str, columns: list[str], cells: list[str], no: int) -> _Row:
    """One data row (path made absolute and checked, times read, split checked)."""
    if columns == _DEFAULT_COLUMNS and len(cells) >= 4 and _is_time(cells[3]) and _is_time(cells[2]):
        columns = _RANGE_COLUMNS
    if len(cells) > len(columns):
        raise ActionrecError(
            f"{csv_path} line {no}: {len(cells)} columns, expected at most {len(columns)}"
            f" ({','.join(columns)}): quote paths that contain commas"
        )
    rec = dict(zip(columns, (c.strip() for c in cells)))
    raw_path, label = rec.get("path", ""), rec.get("label", "")
    if not raw_path or not label:
        raise ActionrecError(f"{csv_path} line {no}: needs both a path and a label: fix or remove the line")
    if label.lower() == NONE_LABEL:
        label = NONE_LABEL
    p = os.path.expanduser(raw_path)
    p = os.path.abspath(p if os.path.isabs(p) else os.path.join(os.path.dirname(csv_path), p))
    if not os.path.exists(p):
        raise ActionrecError(
            f"{csv_path} line {no}: video {raw_path} not found (looked at {p}): fix the path"
            " (relative paths start at the CSV's folder) or remove the line"
        )
    split = rec.get("split", "").lower() or None
    if split is not None and split not in SPLIT_NAMES:
        raise ActionrecError(
            f"{csv_path} line {no}: split '{rec['split']}' is not train, val or test: fix it or leave it empty"
        )
    start, end = _range(csv_path, no, rec.get("start", ""), rec.get("end", ""))
    return _Row(no, raw_path, p, label, start, end, rec.get("group", ""), split)


def _is_time(text: str) -> bool:
    try:
        parse_time(text)
        return True
    except ValueError:
        return False


def _range(csv_path: str, no: int, start: str, end: str) -> tuple[float | None, float | None]:
    """(start, end) in seconds, or (None, None) for a whole video; one line for a half-given or backward range."""
    if not start and not end:
        return None, None
    if not start or not end:
        raise ActionrecError(f"{csv_path} line {no}: a range needs both a start and an end: give both, or neither"
                             " to label the whole video")
    try:
        a, b = parse_time(start), parse_time(end)
    except ValueError as err:
        raise ActionrecError(f"{csv_path} line {no}: {err}") from None
    if a >= b:
        raise ActionrecError(f"{csv_path} line {no}: the range starts at {start} but ends at {end}: the start must be"
                             " before the end; swap or fix them")
    return round(a, 3), round(b, 3)


def _check_rows(csv_path: str, rows: list[_Row]) -> None:
    """Rows that contradict each other: the same video or range twice, a video labelled whole and by ranges,
    overlapping ranges of different labels."""
    by_video: dict[str, list[_Row]] = {}
    for r in rows:
        by_video.setdefault(r.video, []).append(r)
    for same in by_video.values():
        whole = [r for r in same if r.start is None and not r.marks_fully_labelled]
        ranged = [r for r in same if r.start is not None or r.marks_fully_labelled]
        if len(whole) > 1:
            raise ActionrecError(f"{csv_path} line {whole[1].no}: {whole[1].raw_path} is already listed on line"
                                 f" {whole[0].no}: remove one")
        if whole and ranged:
            first, second = sorted((whole[0], ranged[0]), key=lambda x: x.no)
            raise ActionrecError(
                f"{csv_path} line {second.no}: {second.raw_path} is labelled whole on line {whole[0].no} and by ranges"
                f" on line {ranged[0].no}: label the whole video in one line, or ranges of it (start,end), not both"
            )
        ranged = sorted((r for r in ranged if r.start is not None), key=lambda r: (r.start, r.end, r.no))
        for i, r in enumerate(ranged):
            for q in ranged[i + 1:]:
                if q.start >= r.end:
                    break
                _refuse_overlap(csv_path, r, q)


def _refuse_overlap(csv_path: str, r: _Row, q: _Row) -> None:
    """Two ranges of one video that overlap: the same range twice, or different labels (a moment has one label)."""
    first, second = sorted((r, q), key=lambda x: x.no)
    if (r.start, r.end) == (q.start, q.end):
        raise ActionrecError(f"{csv_path} line {second.no}: the range {second.where()} of {second.raw_path} is already"
                             f" listed on line {first.no}: remove one")
    if r.label != q.label:
        raise ActionrecError(
            f"{csv_path} line {second.no}: {second.where()} ({second.label}) overlaps {first.where()} ({first.label})"
            f" on line {first.no}: one moment has one label; move an edge so the ranges do not overlap"
        )


def _duration(csv_path: str, r: _Row, lengths: dict[str, float]) -> float:
    """The video's length in seconds, read from the container once per file (kept in ``lengths``); one line when it
    cannot be read."""
    if r.video not in lengths:
        try:
            lengths[r.video] = probe(r.video).duration
        except ActionrecError as err:
            raise ActionrecError(f"{csv_path} line {r.no}: {err}") from None
    return lengths[r.video]


def _sample(csv_path: str, r: _Row, lengths: dict[str, float]) -> tuple[Sample, int]:
    """A row as a Sample (a range checked against the video's length) and its line number."""
    origin = f"the split column of {csv_path}" if r.split else None
    if r.start is None:
        return Sample(r.video, r.label, r.group or infer_group(r.video, r.label), r.split, origin), r.no
    length = _duration(csv_path, r, lengths)
    if r.end > length + _PAST_END:
        raise ActionrecError(
            f"{csv_path} line {r.no}: the range {r.where()} ends after the end of {r.raw_path}"
            f" ({format_time(length)}, {length:.2f} s): fix the end, or the path"
        )
    end = min(r.end, round(length, 3))
    if r.start >= end:
        raise ActionrecError(f"{csv_path} line {r.no}: the range {r.where()} starts after the end of {r.raw_path}"
                             f" ({length:.2f} s): fix the range, or the path")
    return Sample(clip_address(r.video, r.start, end), r.label, r.group or r.video, r.split, origin), r.no


def _background(csv_path: str, rows: list[_Row], lengths: dict[str, float]) -> list[tuple[Sample, int]]:
    """The ``none`` segments of each fully labelled video: its time outside every other range of it."""
    out = []
    for mark in (r for r in rows if r.marks_fully_labelled):
        length = _duration(csv_path, mark, lengths)
        ranges = [(r.start, r.end) for r in rows if r.video == mark.video and r.start is not None]
        origin = f"the split column of {csv_path}" if mark.split else None
        for start, end in background_ranges(length, ranges):
            address = clip_address(mark.video, round(start, 3), round(end, 3))
            out.append((Sample(address, NONE_LABEL, mark.group or mark.video, mark.split, origin), mark.no))
    return out
