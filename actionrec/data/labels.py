"""A dataset folder's labels: ``FOLDER/labels.csv``, the segment manifest ``actionrec train FOLDER/labels.csv`` trains
from (rows ``path,label,start,end``; ``path,none`` marks a video fully labelled, see :mod:`.manifest`), edited one
operation at a time.

Every edit (:meth:`LabelStore.add`, :meth:`~LabelStore.replace`, :meth:`~LabelStore.overwrite`,
:meth:`~LabelStore.remove`, :meth:`~LabelStore.mark_fully_labelled`) takes a lock on the folder (``.labels.lock``, across threads and
processes), re-reads the file as it is now, applies the one change, checks the whole result with the manifest's own
checks (:func:`~.manifest.load_manifest`) and replaces the file atomically; so two editors (two tabs of the page, the
page and a script) never lose each other's segments, and a refused edit leaves the file as it was. Replacing or
removing a segment that is no longer there is a :class:`Conflict`. Video paths in the file are relative to the
folder (``/`` separated).
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import ActionrecError
from .manifest import load_manifest
from .samples import NONE_LABEL
from .segments import parse_time

__all__ = ["LABELS_FILE", "LabelSegment", "LabelStore", "Conflict"]

LABELS_FILE = "labels.csv"
HEADER = ["path", "label", "start", "end", "group", "split"]
MIN_PIECE = 0.1  # seconds: a piece of a segment cut by :meth:`LabelStore.overwrite` shorter than this is dropped


class Conflict(ActionrecError):
    """An edit names a segment that is no longer in the file (another editor changed it): reload and try again."""


@dataclass(frozen=True)
class LabelSegment:
    """One labelled range: `video` relative to the dataset folder, times in seconds (kept to 1 ms)."""

    video: str
    label: str
    start: float
    end: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", round(float(self.start), 3))
        object.__setattr__(self, "end", round(float(self.end), 3))

    def to_dict(self) -> dict:
        return {"video": self.video, "label": self.label, "start": self.start, "end": self.end}

    def row(self) -> list[str]:
        return [self.video, self.label, _seconds(self.start), _seconds(self.end)]


def _seconds(x: float) -> str:
    return f"{x:.3f}".rstrip("0").rstrip(".")


@dataclass
class _Rows:
    """The file as rows: the segments, the fully labelled videos, and any other row kept as it was written."""

    segments: list[LabelSegment]
    fully: list[str]
    other: list[list[str]]

    def text(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(HEADER)
        writer.writerows(s.row() for s in self.segments)
        writer.writerows([v, NONE_LABEL] for v in self.fully)
        writer.writerows(self.other)
        return out.getvalue()


class LabelStore:
    """The labels of the dataset in `folder` (its ``labels.csv``; created empty by :meth:`create`)."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.path = self.folder / LABELS_FILE

    def create(self) -> LabelStore:
        """The folder and an empty labels.csv (the header alone); an existing file is kept."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with self._locked():
            if not self.path.exists():
                self._write(_Rows([], [], []), check=False)
        return self

    # ------------------------------------------------------------------------------------------ reading

    def segments(self, video: str | None = None) -> list[LabelSegment]:
        """The segments (of one `video`, relative to the folder), in the file's order."""
        return [s for s in self._read().segments if video is None or s.video == video]

    def fully_labelled(self) -> list[str]:
        """The videos marked fully labelled."""
        return list(self._read().fully)

    def labels(self) -> list[str]:
        """The labels in use, sorted (``none`` left out)."""
        return sorted({s.label for s in self._read().segments if s.label != NONE_LABEL})

    def videos(self) -> list[str]:
        """The videos the file names, in first-seen order."""
        rows = self._read()
        return list(dict.fromkeys([s.video for s in rows.segments] + rows.fully + [r[0] for r in rows.other]))

    # ------------------------------------------------------------------------------------------ editing

    def add(self, segment: LabelSegment) -> LabelSegment:
        """Add `segment`; refused (one line, the file unchanged) when the result is not a valid manifest."""
        segment = self._checked(segment)
        with self._edit() as rows:
            rows.segments.append(segment)
        return segment

    def replace(self, old: LabelSegment, new: LabelSegment) -> LabelSegment:
        """`old` changed into `new` (moved edges, another label); Conflict when `old` is no longer there."""
        new = self._checked(new)
        with self._edit() as rows:
            rows.segments[self._index(rows, old)] = new
        return new

    def overwrite(self, segment: LabelSegment) -> LabelSegment:
        """Add `segment` over whatever its video had there: the parts of other segments it covers are cut away (a
        segment split in two when it is covered in its middle), and a segment of the same label it overlaps is merged
        into it. Accepting or correcting a suggestion is this one edit."""
        segment = self._checked(segment)
        with self._edit() as rows:
            kept = []
            start, end = segment.start, segment.end
            for s in rows.segments:
                if s.video != segment.video or s.end <= segment.start or s.start >= segment.end:
                    kept.append(s)
                elif s.label == segment.label:
                    start, end = min(start, s.start), max(end, s.end)
                else:
                    kept += [LabelSegment(s.video, s.label, a, b) for a, b in ((s.start, segment.start), (segment.end, s.end))
                             if b - a >= MIN_PIECE]
            segment = LabelSegment(segment.video, segment.label, start, end)
            rows.segments = kept + [segment]
        return segment

    def remove(self, segment: LabelSegment) -> None:
        """Remove `segment`; Conflict when it is no longer there."""
        with self._edit() as rows:
            del rows.segments[self._index(rows, segment)]

    def mark_fully_labelled(self, video: str, fully: bool = True) -> None:
        """Mark `video` fully labelled (its time outside every segment is ``none``), or take the mark away."""
        video = self._video(video)
        with self._edit() as rows:
            rows.fully = [v for v in rows.fully if v != video] + ([video] if fully else [])

    # ------------------------------------------------------------------------------------------ inside

    def _checked(self, segment: LabelSegment) -> LabelSegment:
        label = segment.label.strip()
        if not label or any(c in label for c in "\n\r"):
            raise ActionrecError(f"{self.path}: a segment needs a label (one line of text): type one")
        if label.lower() == NONE_LABEL:
            label = NONE_LABEL
        if not 0 <= segment.start < segment.end:
            raise ActionrecError(f"{self.path}: the segment {segment.start:g}-{segment.end:g} s of {segment.video} must start "
                                 "at or after 0 and before its end: fix the range")
        return LabelSegment(self._video(segment.video), label, segment.start, segment.end)

    def _video(self, video: str) -> str:
        rel = (video or "").replace("\\", "/").strip()
        if not rel or os.path.isabs(rel) or "\x00" in rel:
            raise ActionrecError(f"{self.path}: video {video!r}: give a path relative to the dataset folder")
        return rel

    def _index(self, rows: _Rows, segment: LabelSegment) -> int:
        try:
            return rows.segments.index(LabelSegment(segment.video, segment.label, segment.start, segment.end))
        except ValueError:
            raise Conflict(f"{self.path}: the segment {segment.label} {segment.start:g}-{segment.end:g} s of "
                           f"{segment.video} is no longer there (changed elsewhere?): reload the labels") from None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / ".labels.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def _edit(self) -> Iterator[_Rows]:
        """Under the lock: the file as it is now, changed by the caller, checked whole and written atomically."""
        with self._locked():
            rows = self._read()
            yield rows
            self._write(rows, check=True)

    def _read(self) -> _Rows:
        if not self.path.is_file():
            raise ActionrecError(f"{self.path} does not exist: create the dataset first")
        try:
            with open(self.path, encoding="utf-8-sig", newline="") as f:
                table = [row for row in csv.reader(f) if any(c.strip() for c in row) and not row[0].lstrip().startswith("#")]
        except (OSError, UnicodeDecodeError, csv.Error) as err:
            raise ActionrecError(f"{self.path}: cannot be read ({err}); fix or remove the file") from None
        columns = HEADER
        if table and {"path", "label"} <= {c.strip().lower() for c in table[0]}:
            columns, table = [c.strip().lower() for c in table[0]], table[1:]
        rows = _Rows([], [], [])
        for cells in table:
            rec = dict(zip(columns, (c.strip() for c in cells)))
            extra = any(rec.get(k) for k in ("group", "split")) or len(cells) > len(columns)
            if rec.get("start") and rec.get("end") and not extra:
                try:
                    rows.segments.append(LabelSegment(rec.get("path", ""), rec.get("label", ""),
                                                      parse_time(rec["start"]), parse_time(rec["end"])))
                    continue
                except ValueError:
                    pass
            if rec.get("label", "").lower() == NONE_LABEL and not rec.get("start") and not extra:
                rows.fully.append(rec.get("path", ""))
            else:  # kept as written, in the store's columns
                rows.other.append([rec.get(k, "") for k in HEADER])
        return rows

    def _write(self, rows: _Rows, check: bool) -> None:
        """`rows` written to a temporary file beside labels.csv, checked as a manifest, then renamed over it."""
        fd, temp = tempfile.mkstemp(prefix=".labels-", suffix=".csv", dir=self.folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
                f.write(rows.text())
                f.flush()
                os.fsync(f.fileno())
            if check and (rows.segments or rows.fully or rows.other):
                try:
                    load_manifest(temp)
                except ActionrecError as err:
                    raise ActionrecError(str(err).replace(temp, str(self.path))) from None
            os.chmod(temp, 0o644)
            os.replace(temp, self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
