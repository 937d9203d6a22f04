"""Archives: `predict` or `timeline` over a folder of videos (or a text file listing them), resumable, shardable.

Each video's result goes to ``OUT/<path relative to the input>.json`` (written atomically) and one line to the
append-only ``OUT/index.jsonl`` (video, status, result or error, content key). A rerun skips every video whose index
line has the same content key, done or failed (a failed video is reported once, not retried forever; delete its
line to retry). Under torchrun each rank takes a shard balanced by duration (:func:`actionrec.distributed.balanced_shards`)
and appends its own lines (one ``write`` each, O_APPEND, so lines never interleave).
"""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..data.video import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, probe
from ..errors import ActionrecError
from ..files import write_json

if TYPE_CHECKING:
    from ..distributed import Ranks

INDEX = "index.jsonl"


@dataclass(frozen=True)
class Item:
    """One video of an archive: its path and where its result goes, relative to the archive's root."""

    video: str
    relative: str


def is_archive(path: str | os.PathLike) -> bool:
    """A folder that holds videos (not a folder of image frames, which is one video), or a .txt list of videos."""
    path = Path(path)
    if path.is_file():
        return path.suffix.lower() == ".txt"
    if not path.is_dir() or _is_frame_folder(path):
        return False
    return any(_is_video(Path(d) / f) for d, _, files in os.walk(path) for f in files)


def _is_video(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS and not p.name.startswith(".")


def _is_frame_folder(p: Path) -> bool:
    return p.is_dir() and any(c.suffix.lower() in IMAGE_EXTENSIONS for c in p.iterdir()) and not any(_is_video(c) for c in p.iterdir())


def list_archive(source: str | os.PathLike) -> list[Item]:
    """The videos of a folder (recursively; a folder of image frames is one video) or of a text file (one path a
    line, relative to the file's folder; blank lines and # comments ignored), in a stable order."""
    source = Path(source)
    if source.is_file():
        base = source.parent
        lines = [l.strip() for l in source.read_text(encoding="utf-8", errors="surrogateescape").splitlines()]
        items = []
        for line in lines:
            if line and not line.startswith("#"):
                path = Path(line) if Path(line).is_absolute() else base / line
                items.append(Item(os.fspath(path), Path(line).as_posix().lstrip("/")))
        return items
    if not source.is_dir():
        raise ActionrecError(f"{source}: no such folder or list file; pass a folder of videos or a .txt list")
    items = []
    for dirpath, dirnames, filenames in os.walk(source):
        here = Path(dirpath)
        dirnames.sort()
        for d in list(dirnames):
            if _is_frame_folder(here / d):
                items.append(Item(os.fspath(here / d), (here / d).relative_to(source).as_posix()))
                dirnames.remove(d)
        items += [Item(os.fspath(here / f), (here / f).relative_to(source).as_posix()) for f in sorted(filenames)
                  if _is_video(here / f)]
    return sorted(items, key=lambda i: i.relative)


def _duration(item: Item) -> float:
    try:
        return probe(item.video).duration
    except ActionrecError:
        return 0.0  # an unreadable video costs nothing; it will be reported when processed


def read_index(out: Path) -> dict[str, dict]:
    """The last index line of each video (by its relative path); torn or foreign lines are ignored."""
    done: dict[str, dict] = {}
    try:
        lines = (out / INDEX).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return done
    for line in lines:
        try:
            entry = json.loads(line)
            done[entry["relative"]] = entry
        except (ValueError, KeyError, TypeError):
            continue
    return done


def _append(out: Path, entry: dict) -> None:
    line = (json.dumps(entry) + "\n").encode()
    fd = os.open(out / INDEX, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


Stream = Callable[[Iterable[str], Callable[[str, str], None]], Iterable[tuple[str, dict]]]
"""``process(videos, on_error)``: one pass over the videos (an iterable it pulls lazily), yielding ``(video, result)``
for each readable one and calling ``on_error(video, message)`` for each other, in the order of ``videos``: e.g. one
``Engine.map`` whose batches and decode-ahead cross video boundaries (:func:`actionrec.apps.predict.predict_iter`)."""


def one_at_a_time(process: Callable[[str], dict]) -> Stream:
    """A :data:`Stream` of a function of one video (a video whose processing raises ActionrecError goes to on_error)."""

    def stream(videos: Iterable[str], on_error: Callable[[str, str], None]) -> Iterator[tuple[str, dict]]:
        for video in videos:
            try:
                result = process(video)
            except ActionrecError as err:
                on_error(video, str(err))
                continue
            yield video, result

    return stream


def run_archive(
    items: list[Item],
    out: str | os.PathLike,
    process: Stream,
    key: Callable[[str], str],
    ranks: Ranks | None = None,
    on_error: Callable[[str, str], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> Iterator[dict]:
    """Process this rank's share of `items` not yet in the index, in one pass of ``process`` (a :data:`Stream`);
    yield each new index entry as its video completes (its result written to OUT/<relative>.json first).

    ``key(video)`` identifies a video's content; it is computed as the stream pulls the video (in the stream's decode
    thread), so the first results do not wait for every file to be hashed. A video that cannot be read (by ``key`` or
    by ``process``) is recorded as failed and reported once to ``on_error``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    done = read_index(out)
    if ranks is not None and ranks.distributed:
        from ..distributed import my_shard  # (PyTorch's; a single process never imports it)

        shard = my_shard(items, _duration, ranks)
    else:
        shard = items
    pending: deque[dict] = deque()  # entries of the videos handed to `process`, in its order
    skipped = [0, 0]  # videos found done (counted by `todo` on the stream's thread), and of those told to `progress`

    def todo() -> Iterator[str]:
        for item in shard:
            entry = {"video": item.video, "relative": item.relative}
            try:
                entry["key"] = key(item.video)
            except ActionrecError as err:
                entry["error"] = str(err)  # recorded in its turn, whatever `process` makes of the file
            previous = done.get(item.relative)
            if "key" in entry and previous is not None and previous.get("key") == entry["key"]:
                skipped[0] += 1
                continue
            pending.append(entry)
            yield item.video

    def advance(n: int) -> None:
        found = skipped[0]
        n, skipped[1] = n + found - skipped[1], found
        if progress and n:
            progress(n)

    def failed(video: str, message: str) -> None:
        finished.append((video, None, message))

    def record_finished() -> Iterator[dict]:
        while finished:
            yield _record(out, pending, *finished.popleft(), on_error)
            advance(1)

    finished: deque[tuple[str, dict | None, str | None]] = deque()  # what `process` said, not yet recorded
    for video, result in process(todo(), failed):
        finished.append((video, result, None))
        yield from record_finished()
    yield from record_finished()
    advance(0)


def _record(out: Path, pending: deque, video: str, result: dict | None, error: str | None,
            on_error: Callable[[str, str], None] | None) -> dict:
    """The index entry of the next pending video (`video`): its result written, or its error reported."""
    entry = pending.popleft()
    if entry["video"] != video:  # a stream that skips or reorders videos would misfile results: refuse it
        raise RuntimeError(f"archive stream out of order: got {video!r}, expected {entry['video']!r}")
    error = entry.pop("error", None) or error
    if error is None:
        write_json(out / f"{entry['relative']}.json", result)
        entry.update(status="ok", result=f"{entry['relative']}.json")
    else:
        entry.update(status="error", error=error)
        if on_error is not None:
            on_error(video, error)
    _append(out, entry)
    return entry


def summarize(out: str | os.PathLike) -> dict:
    """Over the whole archive (every rank's lines): videos done and failed, the failures, and for timelines the time
    per action summed over every video (the study's "minutes of each sport per broadcast", over a season)."""
    out = Path(out)
    entries = list(read_index(out).values())
    totals: dict[str, float] = {}
    duration = 0.0
    for entry in entries:
        if entry.get("status") != "ok":
            continue
        try:
            result = json.loads((out / entry["result"]).read_text())
        except (OSError, ValueError):
            continue
        duration += float(result.get("duration", 0.0))
        for label, seconds in (result.get("totals") or {}).items():
            totals[label] = totals.get(label, 0.0) + float(seconds)
    failed = [{"video": e["video"], "error": e.get("error", "")} for e in entries if e.get("status") != "ok"]
    return {"videos": len(entries), "done": len(entries) - len(failed), "failed": failed,
            "duration": round(duration, 3), "totals": {k: round(v, 3) for k, v in sorted(totals.items(), key=lambda kv: -kv[1])}}


def summary_table(summary: dict) -> str:
    """The summary as a few lines of text: counts, then minutes and share per action."""
    from .timeline import format_clock

    lines = [f"{summary['done']} of {summary['videos']} videos done, {len(summary['failed'])} failed"]
    if summary["totals"]:
        width = max(len(label) for label in summary["totals"])
        lines.append(f"  {'action':<{width}}  {'time':>10}  {'minutes':>8}  {'share':>6}")
        for label, seconds in summary["totals"].items():
            share = seconds / summary["duration"] * 100 if summary["duration"] else 0.0
            lines.append(f"  {label:<{width}}  {format_clock(seconds):>10}  {seconds / 60:8.2f}  {share:5.1f}%")
    for failure in summary["failed"]:
        lines.append(f"  failed: {failure['error']}")
    return "\n".join(lines)


def process_archive(source: str | os.PathLike, out: str | os.PathLike, process: Stream,
                    on_error: Callable[[str, str], None] | None = None, show_progress: bool = True) -> dict | None:
    """The whole archive job: list the videos, take this rank's share (torchrun), process what is not done, wait for
    the other ranks, and on rank 0 write OUT/summary.json and return the summary (other ranks return None). One
    progress bar, on rank 0, counts every rank's videos (from the shared index)."""
    from ..distributed import barrier, init, ranks_from_env
    from ..console import progress_bar
    from ..data.video import content_key

    ranks = ranks_from_env()
    init(ranks)
    items = list_archive(source)
    out = Path(out)
    bar = progress_bar("videos", "video", show_progress and ranks.is_main, total=len(items))

    def advance(n: int) -> None:
        bar.n = len(read_index(out)) if ranks.distributed else bar.n + n
        bar.refresh()

    try:
        for _ in run_archive(items, out, process, content_key, ranks, on_error, advance):
            pass
    finally:
        bar.close()
    barrier(ranks)
    if not ranks.is_main:
        return None
    summary = summarize(out)
    write_json(out / "summary.json", summary)
    return summary
