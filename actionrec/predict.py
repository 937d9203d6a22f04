"""Per-class probabilities for whole videos: decode, sample windows, batch them through a model, average."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .accel import optimize_for_inference
from .errors import ActionrecError
from .models import preprocess
from .video import central_clip, decode_ahead, probe, read_clips, uniform_clips


@dataclass(frozen=True)
class Prediction:
    video: str  # the path as given
    model: str  # the model's name (weights name or run directory)
    labels: tuple[str, ...]  # class names, in the order of `probs`
    probs: np.ndarray  # (num_classes,) mean softmax over the windows
    windows: int  # how many windows were averaged
    frames: int  # frames per window
    looped: bool  # the video was shorter than a window and was looped

    def top(self, k: int = 5) -> list[tuple[str, float]]:
        order = np.argsort(-self.probs, kind="stable")[:k]
        return [(self.labels[i], float(self.probs[i])) for i in order]

    def to_dict(self, k: int = 5) -> dict:
        return {"video": self.video, "model": self.model, "top": [{"label": l, "prob": p} for l, p in self.top(k)]}


def model_name(model: nn.Module) -> str:
    return getattr(model, "name", None) or model.spec.name


def _windows(video: str, model: nn.Module, frames: int, windows: int) -> tuple[torch.Tensor, bool]:
    spec = model.spec
    info = probe(video)
    if windows == 1:
        spans = [central_clip(info.num_frames, info.fps, n=frames, target_fps=spec.fps)]
    else:
        spans = uniform_clips(info.num_frames, info.fps, n=frames, count=windows, target_fps=spec.fps)
    clips = read_clips(video, spans, short_side=spec.resize)
    return torch.stack([preprocess(c.frames, spec) for c in clips]), any(c.span.looped for c in clips)


def predict_iter(
    videos: Sequence[str | os.PathLike],
    model: nn.Module,
    *,
    frames: int | None = None,
    windows: int = 1,
    batch_size: int = 4,
    on_error: Callable[[str, str], None] | None = None,
) -> Iterator[Prediction]:
    """Yield a Prediction per readable video, in order. A video that cannot be read goes to `on_error(video, message)`
    (or raises when `on_error` is None). The next video is decoded while the model runs."""
    frames = frames or getattr(model, "predict_frames", model.spec.predict_frames)
    labels = tuple(model.categories)
    if not labels:
        raise ActionrecError(f"{model_name(model)}: backbone-only weights have no classes to predict; "
                             f"train a head on them first with `actionrec train DATA --backbone {model.spec.arch} --weights {model.spec.name}`")
    name = model_name(model)
    device = next(model.parameters()).device
    fast = optimize_for_inference(model)
    videos = [str(v) for v in videos]

    pending: list[tuple[str, torch.Tensor, bool]] = []  # (video, its windows, looped) waiting for a batch

    def run(batch: list[tuple[str, torch.Tensor, bool]]) -> Iterator[Prediction]:
        inputs = torch.cat([w for _, w, _ in batch]).to(device)
        with torch.inference_mode():
            probs = torch.cat([fast(chunk).softmax(-1) for chunk in inputs.split(batch_size)]).float().cpu().numpy()
        start = 0
        for video, w, looped in batch:
            p = probs[start : start + len(w)].mean(0)
            start += len(w)
            yield Prediction(video, name, labels, p, len(w), frames, looped)

    def skip(video: str, err: ActionrecError) -> None:
        on_error(video, str(err))

    for video, (clip_windows, looped) in decode_ahead(videos, lambda v: _windows(v, model, frames, windows), skip if on_error else None):
        pending.append((video, clip_windows, looped))
        if sum(len(w) for _, w, _ in pending) >= batch_size:
            yield from run(pending)
            pending = []
    if pending:
        yield from run(pending)


def predict(videos: str | os.PathLike | Sequence[str | os.PathLike], model: nn.Module | str = "i3d-kinetics400", **kwargs) -> list[Prediction]:
    """Per-class probabilities for each video. `model` is a loaded model, a weights name or a trained run directory."""
    from . import load_model

    if isinstance(videos, (str, os.PathLike)):
        videos = [videos]
    if not isinstance(model, nn.Module):
        model = load_model(model)
    return list(predict_iter(videos, model, **kwargs))
