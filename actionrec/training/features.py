"""The feature cache: the frozen part of a backbone runs once per clip and view, and its output is kept on disk.

An entry is keyed by the video's content (size, mtime and a hash of its first and last 64 KiB), the weights, the
endpoint it was cut at, the sampling and the preprocessing, so any change to one of them is a new entry. Entries are
written to a temporary file and renamed, so a killed run leaves no corrupt entry and a rerun resumes where it stopped.
Extraction takes a work list and a (rank, world) pair, so it can be sharded over processes without shared state.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import ActionrecError
from ..data.transforms import preprocess
from ..data.video import central_clip, probe, random_clip, read_clips
from ..engine import Engine, engine_for
from ..models.weights import home_dir

CACHE_VERSION = 1  # bump when the meaning of a cached array changes


@dataclass(frozen=True)
class Sampling:
    """How clips are cut from a video, for every view."""

    frames: int = 16  # frames per clip (the study: 16 central frames)
    views: int = 1  # view 0 is the central clip; views 1.. are augmented (random offset, flip, crop jitter)
    seed: int = 0  # seeds the augmented views
    crop_jitter: float = 0.8  # augmented views shift the crop by up to this fraction of the free margin


def video_key(path: str | os.PathLike) -> str:
    """A cheap content key: size, mtime and a hash of the first and last 64 KiB."""
    stat = os.stat(path)
    digest = hashlib.sha256(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
    with open(path, "rb") as f:
        digest.update(f.read(65536))
        if stat.st_size > 65536:
            f.seek(max(stat.st_size - 65536, 65536))
            digest.update(f.read(65536))
    return digest.hexdigest()[:32]


def _folder_key(path: str) -> str:
    """A folder of frames: the key of its sorted file list and their stats."""
    digest = hashlib.sha256()
    for name in sorted(os.listdir(path)):
        stat = os.stat(os.path.join(path, name))
        digest.update(f"{name}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest()[:32]


def content_key(path: str) -> str:
    try:
        return _folder_key(path) if os.path.isdir(path) else video_key(path)
    except OSError as err:
        raise ActionrecError(f"{path}: cannot be read ({err.strerror}); check the path") from None


@dataclass(frozen=True)
class ViewPlan:
    """What one view of one video is: the source frames and the augmentation."""

    view: int
    crop_shift: tuple[float, float]
    flip: bool


class FeatureCache:
    """Backbone activations at `endpoint`, one float16 .npy file per (video, view), under `root`."""

    def __init__(self, model: nn.Module | Engine, endpoint: str, sampling: Sampling, root: str | os.PathLike | None = None):
        self.engine, self.endpoint, self.sampling = engine_for(model), endpoint, sampling
        self.root = Path(root) if root is not None else home_dir() / "features"
        spec = self.engine.info.spec
        recipe = {
            "version": CACHE_VERSION,
            "weights": spec.name,
            "weights_sha256": self.engine.info.weights_sha256,
            "endpoint": endpoint,
            "fps": spec.fps,
            "resize": spec.resize,
            "crop": spec.crop,
            "mean": spec.mean,
            "std": spec.std,
            "frames": sampling.frames,
            "seed": sampling.seed,
            "crop_jitter": sampling.crop_jitter,
        }
        self.recipe_key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
        self._calls_before = self.engine.clips_run

    def path(self, video_key_: str, view: int) -> Path:
        name = f"{video_key_}-{view}.npy"
        return self.root / self.recipe_key / name[:2] / name

    def put(self, video_key_: str, view: int, array: np.ndarray) -> None:
        path = self.path(video_key_, view)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, array)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def plan(self, video_key_: str, view: int) -> ViewPlan:
        if view == 0:
            return ViewPlan(0, (0.0, 0.0), False)
        rng = np.random.default_rng([self.sampling.seed, view, int(video_key_[:12], 16)])
        jitter = self.sampling.crop_jitter
        shift = (float(rng.uniform(-jitter, jitter)), float(rng.uniform(-jitter, jitter)))
        return ViewPlan(view, shift, bool(rng.random() < 0.5))

    def _decode(self, video: str, key: str, views: Sequence[int]) -> list[tuple[int, torch.Tensor]]:
        spec, n = self.engine.info.spec, self.sampling.frames
        info = probe(video)
        spans = []
        for view in views:
            if view == 0:
                spans.append(central_clip(info.num_frames, info.fps, n=n, target_fps=spec.fps))
            else:
                rng = np.random.default_rng([self.sampling.seed, view, int(key[:12], 16), 1])
                spans.append(random_clip(info.num_frames, info.fps, n=n, rng=rng, target_fps=spec.fps))
        clips = read_clips(video, spans, short_side=spec.resize)
        for view, clip in zip(views, clips):
            plan = self.plan(key, view)
            yield view, preprocess(clip.frames, spec, crop_shift=plan.crop_shift, flip=plan.flip)

    def extract(
        self,
        videos: Sequence[str],
        views: Sequence[int] | Callable[[str], Sequence[int]] = (0,),
        batch_size: int = 4,
        rank: int = 0,
        world: int = 1,
        on_error: Callable[[str, str], None] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> dict[tuple[str, int], Path]:
        """Cache the activations of each (video, view) not cached yet; return where each entry lies on disk.

        `views` may depend on the video. Only this process's share of the work list (`videos[rank::world]`) is
        handled. Unreadable videos go to `on_error(video, message)` and are skipped. Nothing is kept in memory.
        """
        work = list(videos)[rank::world]
        result: dict[tuple[str, int], Path] = {}
        todo: list[tuple[str, str, list[int]]] = []
        for video in work:
            wanted = list(views(video) if callable(views) else views)
            try:
                key = content_key(video)
            except ActionrecError as err:
                if on_error is None:
                    raise
                on_error(video, str(err))
                continue
            missing = []
            for view in wanted:
                if self.path(key, view).exists():
                    result[(video, view)] = self.path(key, view)
                else:
                    missing.append(view)
            if missing:
                todo.append((video, key, missing))
            elif progress:
                progress(1)
        for video, key, arrays in (self._compute(todo, batch_size, on_error, progress) if todo else ()):
            for view, array in arrays.items():
                self.put(key, view, array)
                result[(video, view)] = self.path(key, view)
        return result

    def _compute(self, todo, batch_size, on_error, progress) -> Iterator[tuple[str, str, dict[int, np.ndarray]]]:
        for result in self.engine.map(todo, lambda item: self._decode(*item), output=self.endpoint,
                                      batch_size=batch_size, on_error=(lambda item, message: on_error(item[0], message)) if on_error else None,
                                      progress=progress):
            video, key, _ = result.job
            yield video, key, {view: act.astype(np.float16) for view, act in zip(result.metas, result.outputs)}

    @property
    def backbone_calls(self) -> int:
        """Clips run through the backbone since this cache was made (tests check reuse with it)."""
        return self.engine.clips_run - self._calls_before

    def describe(self) -> dict:
        return {"root": str(self.root), "recipe": self.recipe_key, "endpoint": self.endpoint, **asdict(self.sampling)}
