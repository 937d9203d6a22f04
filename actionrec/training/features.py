"""The feature cache: the frozen part of a backbone runs once per clip and view, and its output is kept on disk.

An entry is keyed by the video's content (a sha256 over every byte of the file, or of every file of a folder of
frames, so a copied dataset reuses its entries and a file damaged anywhere is a new one), the weights, the endpoint
it was cut at, the sampling, the preprocessing and the engine's precision and backend, so any change to one of them
is a new entry. Each entry is an
``.npz`` holding the activations and the sha256 of their values: it is written whole or not at all (a killed run
leaves no partial entry and a rerun resumes where it stopped), and checked when read, so a truncated, garbled or
overwritten entry is computed again (one warning line), never trusted. Extraction takes a work list and a (rank,
world) pair, so it can be sharded over processes without shared state.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data.sampling import central_clip, random_clip, uniform_clips
from ..data.transforms import preprocess
from ..data.video import probe, read_clips
from ..engine import Engine, engine_for
from ..errors import ActionrecError
from ..files import atomic_write
from ..models.weights import home_dir
from .console import stderr_line

CACHE_VERSION = 2  # bump when the meaning of a cached entry changes (2: whole-content keys, checksummed .npz)
ENTRY_SUFFIX = ".npz"
_BLOCK = 1 << 20  # files are hashed 1 MiB at a time


@dataclass(frozen=True)
class Sampling:
    """How clips are cut from a video, for every view."""

    frames: int = 16  # frames per clip (the study: 16 central frames)
    views: int = 1  # view 0 is the central clip; views 1.. are augmented (random offset, flip, crop jitter)
    seed: int = 0  # seeds the augmented views
    crop_jitter: float = 0.8  # augmented views shift the crop by up to this fraction of the free margin


def cache_root(root: str | os.PathLike | None = None) -> Path:
    """The feature cache folder: `root`, or $ACTIONREC_HOME/features."""
    return Path(root) if root is not None else home_dir() / "features"


def _file_digest(path: str | os.PathLike, digest) -> None:
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_BLOCK), b""):
            digest.update(block)


def video_key(path: str | os.PathLike) -> str:
    """The content key of a file: a sha256 over all of its bytes (its name and times do not count)."""
    digest = hashlib.sha256()
    _file_digest(path, digest)
    return digest.hexdigest()[:32]


def _folder_key(path: str) -> str:
    """A folder of frames: a sha256 over its sorted file names and every file's content."""
    digest = hashlib.sha256(b"folder;")
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        digest.update(f"{name}:".encode())
        if os.path.isfile(full):
            _file_digest(full, digest)
        digest.update(b";")
    return digest.hexdigest()[:32]


def content_key(path: str) -> str:
    """What a cached result of `path` is keyed by: its content (see video_key), read in 1 MiB blocks."""
    try:
        return _folder_key(path) if os.path.isdir(path) else video_key(path)
    except OSError as err:
        raise ActionrecError(f"{path}: cannot be read ({err.strerror}); check the path") from None


class DamagedEntry(ActionrecError):
    """A cache entry that cannot be read or whose values do not match the checksum written with them."""


def _array_sha256(array: np.ndarray) -> str:
    digest = hashlib.sha256(f"{array.dtype.str}|{array.shape};".encode())
    digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def write_entry(path: Path, array: np.ndarray) -> None:
    """An entry (the array and its checksum), written whole or not at all."""
    with atomic_write(path) as f:
        np.savez(f, features=array, sha256=np.array(_array_sha256(array)))


def read_entry(path: str | os.PathLike) -> np.ndarray:
    """The array of an entry, checked against the checksum written with it (DamagedEntry when it does not match)."""
    try:
        with np.load(path, allow_pickle=False) as entry:
            array, recorded = entry["features"], str(entry["sha256"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, AttributeError, TypeError) as err:
        raise DamagedEntry(f"feature cache entry {path} is not readable ({str(err)[:80] or type(err).__name__})") from None
    if _array_sha256(array) != recorded:
        raise DamagedEntry(f"feature cache entry {path} does not match its checksum (altered on disk)")
    return array


View = int | str  # 0: the central clip; 1, 2, ...: augmented training clips; "u{k}of{n}": uniform test clip k of n


def test_views(count: int) -> list[View]:
    """The views a video is scored from at test time: its central clip for 1, else `count` clips spread evenly over
    the whole video (clip k centred on the middle of the k-th of `count` equal parts), whose probabilities are averaged."""
    return [0] if count == 1 else [f"u{k}of{count}" for k in range(count)]


def _uniform_view(view: View) -> tuple[int, int] | None:
    """(k, n) of a uniform test view, None for the others."""
    if isinstance(view, str) and view.startswith("u") and "of" in view:
        k, n = view[1:].split("of")
        return int(k), int(n)
    return None


@dataclass(frozen=True)
class ViewPlan:
    """What one view of one video is: the source frames and the augmentation."""

    view: View
    crop_shift: tuple[float, float]
    flip: bool


class FeatureCache:
    """Backbone activations at `endpoint`, one checksummed float16 entry per (video, view), under `root`."""

    def __init__(self, model: nn.Module | Engine, endpoint: str, sampling: Sampling, root: str | os.PathLike | None = None,
                 say: Callable[[str], None] = stderr_line):
        self.engine, self.endpoint, self.sampling, self.say = engine_for(model), endpoint, sampling, say
        self.root = cache_root(root)
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
            # features of another precision or backend are other numbers: they never mix (machines may differ)
            "precision": self.engine.precision,
            "backend": self.engine.backend,
        }
        self.recipe_key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
        self._calls_before = self.engine.clips_run

    def path(self, video_key_: str, view: View) -> Path:
        name = f"{video_key_}-{view}{ENTRY_SUFFIX}"
        return self.root / self.recipe_key / name[:2] / name

    def put(self, video_key_: str, view: View, array: np.ndarray) -> None:
        try:
            write_entry(self.path(video_key_, view), array)
        except OSError as err:
            raise ActionrecError(f"{self.root}: cannot write to the feature cache ({err.strerror or err}); free some "
                                 "space or pass --cache DIR on a writable disk") from None

    def _cached(self, video: str, key: str, view: View) -> bool:
        """Whether a whole, unaltered entry is on disk; a damaged one is said on one line and computed again."""
        path = self.path(key, view)
        if not path.exists():
            return False
        try:
            read_entry(path)
        except DamagedEntry as err:
            self.say(f"warning: {err}; computing {video} (view {view}) again")
            return False
        try:
            os.utime(path)  # last used: `actionrec cache --older-than` prunes what has not been used for a while
        except OSError:
            pass  # a read-only cache is still read
        return True

    def plan(self, video_key_: str, view: View) -> ViewPlan:
        if view == 0 or _uniform_view(view):
            return ViewPlan(view, (0.0, 0.0), False)
        rng = np.random.default_rng([self.sampling.seed, view, int(video_key_[:12], 16)])
        jitter = self.sampling.crop_jitter
        shift = (float(rng.uniform(-jitter, jitter)), float(rng.uniform(-jitter, jitter)))
        return ViewPlan(view, shift, bool(rng.random() < 0.5))

    def _decode(self, video: str, key: str, views: Sequence[View]) -> Iterator[tuple[View, torch.Tensor]]:
        spec, n = self.engine.info.spec, self.sampling.frames
        info = probe(video)
        spans = []
        for view in views:
            uniform = _uniform_view(view)
            if uniform:
                k, count = uniform
                spans.append(uniform_clips(info.num_frames, info.fps, n=n, count=count, target_fps=spec.fps)[k])
            elif view == 0:
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
        views: Sequence[View] | Callable[[str], Sequence[View]] = (0,),
        batch_size: int = 4,
        rank: int = 0,
        world: int = 1,
        on_error: Callable[[str, str], None] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> dict[tuple[str, View], Path]:
        """Cache the activations of each (video, view) not cached yet; return where each entry lies on disk.

        `views` may depend on the video. Only this process's share of the work list (`videos[rank::world]`) is
        handled. Unreadable videos go to `on_error(video, message)` and are skipped. Every entry found is checked
        (read_entry); a damaged one is computed again. Nothing is kept in memory.
        """
        work = list(videos)[rank::world]
        result: dict[tuple[str, View], Path] = {}
        todo: list[tuple[str, str, list[View]]] = []
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
                if self._cached(video, key, view):
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

    def _compute(self, todo, batch_size, on_error, progress) -> Iterator[tuple[str, str, dict[View, np.ndarray]]]:
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
