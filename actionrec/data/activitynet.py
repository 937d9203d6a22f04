"""Temporal annotations in the ActivityNet / THUMOS JSON layout, as labelled segments of the videos they annotate.

``{"database": {"<id>": {"subset": "training", "annotations": [{"segment": [12.3, 45.6], "label": "..."}]}}}``
(ActivityNet 1.2/1.3's ``activity_net.v1-3.min.json``; THUMOS'14 converted to the same layout, with subsets
``validation`` and ``test``).  Each annotation becomes a segment sample ``VIDEO#t=START,END`` (see :mod:`.segments`),
its group the video, its split from the entry's subset as :func:`.downloads.subset_splits` says (ActivityNet:
training trains, validation tests; THUMOS: validation trains, test tests).  Entries without annotations (ActivityNet's
testing subset) give nothing.

Videos are looked for by id under the JSON's folder (or the folder above ``annotations/``), up to 3 folders deep:
``v_<id>.<ext>`` (ActivityNet's crawler) or ``<id>.<ext>``.  Missing and unreadable videos, segments starting after
their video's end, and a range given two different labels are skipped and counted in one line; the same segment
twice with one label counts once.  Each malformed entry is one ActionrecError naming the file, the entry and the fix.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, NamedTuple, Sequence

from ..errors import ActionrecError
from .downloads import SUBSETS, Skipped, fit_range, search_root, subset_splits, video_index
from .samples import Sample, Say, abspath, clip_address, parse_classes, resolve_names
from .video import unreadable_error

__all__ = ["load_activitynet_json", "activitynet_classes"]


class _Segment(NamedTuple):
    video_id: str
    start: float
    end: float
    label: str
    subset: str  # SUBSETS' names
    raw_subset: str


def load_activitynet_json(json_path: str | os.PathLike, say: Say | None = None,
                          classes: str | Sequence[str] | None = None) -> list[Sample]:
    """Labelled segments of an ActivityNet / THUMOS JSON whose videos are under its folder (see the module doc).

    ``classes`` keeps only those labels (case-insensitive; names the file lacks are left to the caller), so only
    their videos are looked for; ``say`` gets one line counting what was skipped."""
    json_path = abspath(json_path)
    segments = _read(json_path)
    splits = subset_splits({s.subset for s in segments})
    if classes is not None:
        found, _ = resolve_names(parse_classes(classes) or [], {s.label for s in segments})
        segments = [s for s in segments if s.label in set(found.values())]
        if not segments:
            return []
    total = len(segments)
    root = search_root(json_path)
    index = video_index(root)
    skipped = Skipped(json_path)
    segments = _one_label_per_range(segments, skipped)
    lengths: dict[str, float | None] = {}
    samples: list[Sample] = []
    for s in segments:
        what = f"{s.video_id} {s.start:g}-{s.end:g}"
        video = index.get(f"v_{s.video_id}") or index.get(s.video_id)
        if video is None:
            skipped.add("with no video file", what)
            continue
        fitted = fit_range(video, s.start, s.end, lengths, skipped, what)
        if fitted is None:
            continue
        split = splits.get(s.subset)
        origin = f"the {s.raw_subset} subset of {os.path.basename(json_path)}" if split else None
        samples.append(Sample(clip_address(video, *fitted), s.label, video, split, origin))
    skipped.say(total, root, say)
    if not samples:
        raise ActionrecError(
            f"none of the {len({s.video_id for s in segments})} annotated videos of {json_path} was found under"
            f" {root}: put the downloaded files (v_<id>.mp4 or <id>.mp4) in the JSON's folder or a folder under it"
        )
    return samples


def activitynet_classes(json_path: str | os.PathLike) -> set[str]:
    """The labels an ActivityNet / THUMOS JSON names (its videos are not looked for)."""
    return {s.label for s in _read(abspath(json_path))}


def _one_label_per_range(segments: list[_Segment], skipped: Skipped) -> list[_Segment]:
    """The same range of a video listed twice: once when the labels agree, skipped when they differ (a clip has one
    label; THUMOS labels some CliffDiving ranges Diving as well)."""
    labels: dict[tuple[str, float, float], set[str]] = {}
    for s in segments:
        labels.setdefault((s.video_id, s.start, s.end), set()).add(s.label)
    out, seen = [], set()
    for s in segments:
        key = (s.video_id, s.start, s.end)
        if key in seen:
            continue
        seen.add(key)
        if len(labels[key]) > 1:
            skipped.add("labelled twice, differently", f"{s.video_id} {s.start:g}-{s.end:g}")
            continue
        out.append(s)
    return out


def _read(json_path: str) -> list[_Segment]:
    """Every annotation of every entry, each checked."""
    try:
        with open(json_path, encoding="utf-8-sig") as f:
            data = json.load(f)
    except UnicodeDecodeError:
        raise ActionrecError(f"{json_path} is not UTF-8 text: save it as UTF-8 JSON") from None
    except json.JSONDecodeError as e:
        raise ActionrecError(f"{json_path}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno}): restore"
                             " the original file") from None
    except OSError as e:
        raise unreadable_error(json_path, e, "", ActionrecError) from None
    database = data.get("database") if isinstance(data, dict) else None
    if not isinstance(database, dict):
        raise ActionrecError(f"{json_path} has no \"database\" object: give an annotation file in the ActivityNet"
                             ' layout {"database": {"<id>": {"subset": ..., "annotations": [...]}}}')
    segments = [seg for vid, entry in database.items() for seg in _entry(json_path, str(vid), entry)]
    if not segments:
        raise ActionrecError(f"{json_path}: none of its {len(database)} entries has annotations: give the file of the"
                             " annotated subsets (training, validation)")
    return segments


def _entry(json_path: str, vid: str, entry: Any) -> list[_Segment]:
    """The annotations of one database entry."""
    where = f"{json_path}: entry '{vid}'"
    if not isinstance(entry, dict):
        raise ActionrecError(f"{where} is not an object: give it {{\"subset\": ..., \"annotations\": [...]}}")
    annotations = entry.get("annotations", [])
    if not isinstance(annotations, list):
        raise ActionrecError(f"{where}: \"annotations\" is not a list: make it a list of"
                             ' {"segment": [start, end], "label": ...}')
    if not annotations:
        return []
    raw = entry.get("subset")
    subset = SUBSETS.get(raw.strip().lower()) if isinstance(raw, str) else None
    if subset is None:
        raise ActionrecError(f"{where}: subset {raw!r} is not training, validation or testing: fix it")
    return [_annotation(f"{where} annotation {k}", vid, a, subset, raw.strip()) for k, a in enumerate(annotations)]


def _annotation(where: str, vid: str, a: Any, subset: str, raw_subset: str) -> _Segment:
    """One annotation: a label and a segment [start, end] in seconds, start before end."""
    if not isinstance(a, dict):
        raise ActionrecError(f"{where} is not an object: give it {{\"segment\": [start, end], \"label\": ...}}")
    label = a.get("label")
    if not isinstance(label, str) or not label.strip():
        raise ActionrecError(f"{where} has no label: add \"label\": \"<class>\" or remove the annotation")
    seg = a.get("segment")
    ok = (isinstance(seg, list) and len(seg) == 2
          and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in seg))
    if not ok:
        raise ActionrecError(f"{where}: segment {seg!r} is not [start, end] in seconds: fix it")
    start, end = float(seg[0]), float(seg[1])
    if start < 0 or start >= end:
        raise ActionrecError(f"{where}: segment [{start:g}, {end:g}] is empty or negative: the start must be at least"
                             " 0 and before the end; fix it")
    return _Segment(vid, round(start, 3), round(end, 3), label.strip(), subset, raw_subset)
