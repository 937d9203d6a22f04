"""The error gallery of report.html: every misclassified test clip, with frames from it, so a user sees why it failed.

Each entry shows a strip of frames spread over the whole video, or over the labelled range of a segment (decoded by the project's own decoder and inlined as
one base64 JPEG, so the report stays a single file), the true and the predicted class, and the probability of every
class. Entries are ordered by how sure the model was of its wrong answer: a clip it was very sure about is often
mislabelled. A clip that cannot be decoded any more keeps its entry, with one line saying why.
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ActionrecError

STRIP_FRAMES = 6  # frames per thumbnail strip, one at the middle of each sixth of the video
THUMB_HEIGHT = 72  # pixels
MAX_SHOWN = 100  # entries with thumbnails; the rest are listed without (the report stays small)
JPEG_QUALITY = 80

_STYLE = """<style>
.gallery .miss{border:1px solid #d0d7de;border-radius:6px;padding:8px 10px;margin:10px 0}
.gallery .strip{display:block;max-width:100%;margin:6px 0}
.gallery .bar{display:inline-block;height:9px;background:#8c959f;vertical-align:middle}
.gallery .true .bar{background:#1a7f37}.gallery .pred .bar{background:#cf222e}
.gallery td{padding:1px 8px 1px 0}
</style>"""


@dataclass(frozen=True)
class Miss:
    """One misclassified clip: its file, true and predicted class, and the probability of every class."""

    video: str
    true: str
    predicted: str
    probs: Mapping[str, float]

    @property
    def confidence(self) -> float:
        return float(self.probs[self.predicted])


def misclassified(videos: Sequence[str], labels: Sequence[int], probs: np.ndarray, classes: Sequence[str]) -> list[Miss]:
    """The clips whose most probable class is not their label, most confident mistakes first."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.shape != (len(videos), len(classes)) or len(labels) != len(videos):
        raise ActionrecError(f"error gallery: {len(videos)} clips, {len(labels)} labels and probabilities of shape "
                             f"{probs.shape} for {len(classes)} classes do not match")
    misses = []
    for video, label, row in zip(videos, labels, probs):
        predicted = int(np.argmax(row))
        if predicted != int(label):
            misses.append(Miss(os.fspath(video), classes[int(label)], classes[predicted],
                               {c: float(p) for c, p in zip(classes, row)}))
    return sorted(misses, key=lambda m: -m.confidence)


def thumbnail_strip(video: str | os.PathLike, frames: int = STRIP_FRAMES, height: int = THUMB_HEIGHT) -> bytes:
    """A JPEG of `frames` frames side by side, one from the middle of each equal part of the video, `height` high.
    A sample's address ``VIDEO#t=START,END[&clip=KofN]`` (data.segments) gives frames from inside its range (the
    k-th of its N equal parts for a clip)."""
    from PIL import Image

    from ..data.samples import parse_address
    from ..data.sampling import range_clip, uniform_clips
    from ..data.video import probe, read_clips

    path, start, end, clip = parse_address(os.fspath(video))
    info = probe(path)
    if start is None or end is None:
        spans = uniform_clips(info.num_frames, info.fps, n=1, count=frames)
    else:
        if clip is not None:
            part = (end - start) / clip[1]
            start, end = start + clip[0] * part, start + (clip[0] + 1) * part
        spans = [range_clip(info.num_frames, info.fps, start, end, n=1, part=(k, frames)) for k in range(frames)]
    images = [c.frames[0] for c in read_clips(path, spans, short_side=height)]
    strip = np.concatenate(images, axis=1)
    buf = io.BytesIO()
    Image.fromarray(strip).save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def _probs_table(miss: Miss) -> str:
    rows = []
    for name, p in sorted(miss.probs.items(), key=lambda kv: -kv[1]):
        role = "true" if name == miss.true else "pred" if name == miss.predicted else ""
        tag = " (true)" if role == "true" else " (predicted)" if role == "pred" else ""
        rows.append(f'<tr class="{role}"><td>{html.escape(name)}{tag}</td><td class="n">{100 * p:.1f} %</td>'
                    f'<td><span class="bar" style="width:{max(1, round(120 * p))}px"></span></td></tr>')
    return "<table>" + "".join(rows) + "</table>"


def _entry(miss: Miss, with_strip: bool) -> str:
    name = html.escape(os.path.basename(miss.video))
    head = (f'<div class="miss"><b title="{html.escape(miss.video)}">{name}</b>: true <b>{html.escape(miss.true)}</b>, '
            f"predicted <b>{html.escape(miss.predicted)}</b> ({100 * miss.confidence:.1f} %)")
    picture = ""
    if with_strip:
        try:
            data = base64.b64encode(thumbnail_strip(miss.video)).decode("ascii")
            picture = (f'<img class="strip" alt="frames of {name}" src="data:image/jpeg;base64,{data}">')
        except (ActionrecError, OSError, ValueError) as err:
            picture = f'<p class="muted">no thumbnails: {html.escape(str(err).splitlines()[0][:200])}</p>'
    return head + picture + _probs_table(miss) + "</div>"


def gallery_section(misses: Sequence[Miss], total: int | None = None, max_shown: int = MAX_SHOWN) -> str:
    """The HTML section (heading included) for report.html; `total` is the number of test videos."""
    out = ['<section class="gallery">', _STYLE, "<h2>Misclassified test videos</h2>"]
    of = f" of {total}" if total is not None else ""
    if not misses:
        out.append(f"<p>None: every test video{of} was classified correctly.</p></section>")
        return "".join(out)
    out.append(f"<p>{len(misses)} video(s){of} misclassified, the most confident mistakes first (a very confident one "
               "is worth checking for a wrong label). Frames are spread over the whole video (a segment: over its range).</p>")
    out += [_entry(m, i < max_shown) for i, m in enumerate(misses)]
    if len(misses) > max_shown:
        out.append(f'<p class="muted">{len(misses) - max_shown} more shown without frames (the report stays small).</p>')
    out.append("</section>")
    return "".join(out)
