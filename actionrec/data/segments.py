"""Segments: labelled ranges of long videos, the clips each one yields, and the background of a fully labelled video.

A manifest row ``path,label,start,end`` labels a range of a video (:mod:`.manifest`). For training, a segment
becomes the clips that fit in it (:func:`segment_clips`): one per :data:`SECONDS_PER_CLIP` seconds, at most
:data:`MAX_CLIPS_PER_SEGMENT`, clip k centred in the k-th of n equal parts of the segment, so one long segment does
not outweigh the others. A segment shorter than one clip gives one clip centred in it whose frames are the segment's,
played in a loop (as a video shorter than a clip is), so a clip never shows time outside its label.

A row ``path,none`` with no range marks the video *fully labelled*: its time outside every other segment is
background, i.e. segments of the reserved class ``none`` (:func:`background_ranges`), capped like any segment.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from typing import Sequence

from .samples import Sample, clip_address

__all__ = [
    "SECONDS_PER_CLIP", "MAX_CLIPS_PER_SEGMENT", "MIN_BACKGROUND_SECONDS", "parse_time", "format_time",
    "clips_in", "segment_clips", "background_ranges",
]

SECONDS_PER_CLIP = 1.0  # a segment yields one clip per this many seconds (a 16-frame clip at 25 fps is 0.64 s) ...
MAX_CLIPS_PER_SEGMENT = 8  # ... and at most this many, so one long segment does not outweigh the others
MIN_BACKGROUND_SECONDS = 1.0  # gaps between the segments of a fully labelled video shorter than this are not background

_TIME = re.compile(r"^(?:(?:(?P<h>\d+):)?(?P<m>\d+):)?(?P<s>\d+(?:\.\d*)?|\.\d+)$")


def parse_time(text: str) -> float:
    """Seconds from ``12.5``, ``m:ss.s`` (``1:05.5``) or ``h:mm:ss.s`` (``1:02:03.5``); ValueError saying the forms."""
    m = _TIME.match(text.strip())
    if m is None or (m["m"] is not None and float(m["s"]) >= 60) or (m["h"] is not None and int(m["m"]) >= 60):
        raise ValueError(f"'{text.strip()}' is not a time: write seconds (75.5), m:ss.s (1:15.5)"
                         " or h:mm:ss.s (0:01:15.5)")
    return int(m["h"] or 0) * 3600 + int(m["m"] or 0) * 60 + float(m["s"])


def format_time(seconds: float) -> str:
    """``m:ss.s`` (``h:mm:ss.s`` from an hour): the form a manifest written for people uses; parse_time reads it."""
    tenths = round(seconds * 10)
    h, rest = divmod(tenths, 36000)
    m, rest = divmod(rest, 600)
    s = f"{rest // 10:02d}.{rest % 10}"
    return f"{h}:{m:02d}:{s}" if h else f"{m}:{s}"


def clips_in(length: float, per_clip: float = SECONDS_PER_CLIP, most: int = MAX_CLIPS_PER_SEGMENT) -> int:
    """How many clips a segment of ``length`` seconds yields: one per ``per_clip`` seconds, at least 1, at most
    ``most``."""
    return max(1, min(most, int(math.floor(length / per_clip + 1e-6))))


def segment_clips(samples: Sequence[Sample], per_clip: float = SECONDS_PER_CLIP,
                  most: int = MAX_CLIPS_PER_SEGMENT) -> list[Sample]:
    """Each segment sample as the clips it yields (``VIDEO#t=A,B&clip=KofN``, same label, group and split); samples of
    whole videos and single clips are kept as they are."""
    out: list[Sample] = []
    for s in samples:
        if s.start is None or s.end is None or s.clip is not None:
            out.append(s)
            continue
        n = clips_in(s.end - s.start, per_clip, most)
        out += [replace(s, path=clip_address(s.video, s.start, s.end, (k, n))) for k in range(n)]
    return out


def background_ranges(duration: float, labelled: Sequence[tuple[float, float]],
                      shortest: float = MIN_BACKGROUND_SECONDS) -> list[tuple[float, float]]:
    """The stretches of [0, duration] outside every labelled (start, end) range, those at least ``shortest`` long."""
    out, at = [], 0.0
    for start, end in sorted(labelled) + [(duration, duration)]:
        if start - at >= shortest:
            out.append((at, start))
        at = max(at, end)
    return out
