"""A CSV manifest: ``path,label[,group][,split]``, one clip a line."""

from __future__ import annotations

import csv
import os
from typing import Iterable

from ..errors import ActionrecError
from .samples import SPLIT_NAMES, Sample, abspath, did_you_mean, infer_group
from .video import unreadable_error

__all__ = ["load_manifest"]

_COLUMNS = {"path": "path", "video": "path", "file": "path", "label": "label", "class": "label",
            "group": "group", "split": "split"}
_DEFAULT_COLUMNS = ["path", "label", "group", "split"]

Row = tuple[list[str], int]  # cells, line number


def load_manifest(csv_path: str | os.PathLike) -> list[Sample]:
    """Samples listed in a CSV: ``path,label[,group][,split]``, one clip a line.

    A header row naming the columns (``path,label,group,split`` in any order) is optional but
    recommended; without it the columns are positional, so a third column is the group.  Blank
    lines and lines starting with ``#`` are skipped.  Paths are relative to the CSV's folder or
    absolute, and may name a folder of frames.  ``split`` is train, val, test or empty (let
    :func:`make_splits` choose); an empty group is inferred from the file name
    (:func:`infer_group`).  A group whose rows name two different splits is an error.
    """
    csv_path = abspath(csv_path)
    rows = _read_rows(csv_path)
    columns, rows = _columns(csv_path, rows)
    if not rows:
        raise ActionrecError(f"manifest {csv_path} lists no videos: add lines path,label[,group][,split]")
    samples: list[Sample] = []
    seen: dict[str, int] = {}  # path -> line
    group_split: dict[str, tuple[str, int]] = {}  # group -> (split, line)
    for cells, no in rows:
        sample = _row_sample(csv_path, columns, cells, no)
        if sample.path in seen:
            raise ActionrecError(
                f"{csv_path} line {no}: {cells[columns.index('path')].strip()} is already listed on line"
                f" {seen[sample.path]}: remove one"
            )
        seen[sample.path] = no
        if sample.split is not None:
            other, other_no = group_split.setdefault(sample.group, (sample.split, no))
            if other != sample.split:
                raise ActionrecError(
                    f"{csv_path} line {no}: group '{sample.group}' is {sample.split} here but {other} on line"
                    f" {other_no}: clips of one source must share a split; fix the split column"
                )
        samples.append(sample)
    return samples


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
                " the columns are path,label[,group][,split]"
            )
    columns = [_COLUMNS[c] for c in first]
    if "path" not in columns or "label" not in columns or len(set(columns)) != len(columns):
        raise ActionrecError(
            f"{csv_path} line {rows[0][1]}: the header must name path and label once each (path,label[,group][,split])"
        )
    return columns, rows[1:]


def _row_sample(csv_path: str, columns: list[str], cells: list[str], no: int) -> Sample:
    """One data row as a Sample (path made absolute and checked, split checked, group inferred if empty)."""
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
    origin = f"the split column of {csv_path}" if split else None
    return Sample(p, label, rec.get("group", "") or infer_group(p, label), split, origin)
