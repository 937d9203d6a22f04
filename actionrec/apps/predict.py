"""Per-class probabilities for whole videos: decode, sample windows, batch them through a model, average.

Importing this module imports no network library or decoder (the CLI's help reads its defaults); they are imported
when a video is predicted."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..checks import check_predict_options

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ..engine import Engine
    from ..models.info import ModelInfo
    from ..ready import ReadyEngine


@dataclass(frozen=True)
class Prediction:
    video: str  # the path as given
    model: str  # the model's name (weights name or run directory)
    labels: tuple[str, ...]  # class names, in the order of `probs`
    probs: np.ndarray  # (num_classes,) mean softmax over the test views
    views: int  # how many clips (test views) were averaged
    frames: int  # frames per clip
    looped: bool  # the video was shorter than a clip and was looped
    warning: str | None = None  # the video decoded shorter than its container declares (damaged or cut short)

    def top(self, k: int = 5) -> list[tuple[str, float]]:
        check_predict_options(top=k)
        order = np.argsort(-self.probs, kind="stable")[:k]
        return [(self.labels[i], float(self.probs[i])) for i in order]

    def to_dict(self, k: int = 5) -> dict:
        out = {"video": self.video, "model": self.model, "top": [{"label": l, "prob": p} for l, p in self.top(k)]}
        return {**out, "warning": self.warning} if self.warning else out


def _clips(video: str, info: ModelInfo, frames: int, views: int, chunk: int) -> Iterator[tuple[tuple, np.ndarray]]:
    """The test views of one video as ((looped, the video as decoded), input): `views` clips of `frames` frames spread
    evenly over it (1: the central one), decoded `chunk` clips at a time so that memory does not grow with `views`.
    Inputs are numpy arrays (`preprocess_array`: PyTorch's `preprocess` to the bit), so no engine needs PyTorch here."""
    from ..data.transforms import preprocess_array
    from ..data.video import central_clip, probe, read_clips, uniform_clips

    spec = info.spec
    meta = probe(video)
    if views == 1:
        spans = [central_clip(meta.num_frames, meta.fps, n=frames, target_fps=spec.fps)]
    else:
        spans = uniform_clips(meta.num_frames, meta.fps, n=frames, count=views, target_fps=spec.fps)
    for start in range(0, len(spans), chunk):
        for clip in read_clips(video, spans[start : start + chunk], short_side=spec.resize):
            yield (clip.span.looped, clip.video), preprocess_array(clip.frames, spec)


def predict_iter(
    videos: Iterable[str | os.PathLike],
    model: nn.Module | Engine | ReadyEngine,
    *,
    frames: int | None = None,
    test_views: int | None = None,
    batch_size: int = 4,
    on_error: Callable[[str, str], None] | None = None,
) -> Iterator[Prediction]:
    """Yield a Prediction per readable video, in order: the mean probabilities of `test_views` clips of `frames` frames
    spread over it (defaults: the model's; a trained run's are those of its test phase). A video that cannot be read
    goes to `on_error(video, message)` (or raises when `on_error` is None). One engine stream over all of them: decoding
    runs ahead of the model and batches cross video boundaries; `videos` is pulled lazily (by the decode thread).
    `model` may be a :class:`actionrec.ready.ReadyEngine` (a compiled network run without PyTorch)."""
    from ..models.info import check_classifier
    from ..ready import engine_of

    check_predict_options(frames=frames, test_views=test_views, batch_size=batch_size)
    engine = engine_of(model)
    info = engine.info
    frames = info.predict_frames if frames is None else frames
    views = info.test_views if test_views is None else test_views
    check_classifier(info)
    for result in engine.map((os.fspath(v) for v in videos), lambda v: _clips(v, info, frames, views, batch_size),
                             batch_size=batch_size, on_error=on_error):
        decoded = result.metas[-1][1]
        yield Prediction(result.job, info.name, tuple(info.categories), result.outputs.mean(0), len(result.outputs),
                         frames, any(looped for looped, _ in result.metas),
                         decoded.truncation_warning() if decoded is not None else None)


def predict(videos: str | os.PathLike | Sequence[str | os.PathLike], model: nn.Module | str = "i3d-kinetics400", **kwargs) -> list[Prediction]:
    """Per-class probabilities for each video. `model` is a loaded model, a weights name or a trained run directory."""
    from ..engine import load_model

    if isinstance(videos, (str, os.PathLike)):
        videos = [videos]
    if isinstance(model, (str, os.PathLike)):
        model = load_model(model)
    return list(predict_iter(videos, model, **kwargs))
