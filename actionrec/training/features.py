"""The feature cache: the frozen part of a backbone runs once per clip and view, and its output is kept on disk.

An entry is keyed by the video's content (a sha256 over every byte of the file, or of every file of a folder of
frames, so a copied dataset reuses its entries and a file damaged anywhere is a new one), the weights, the endpoint
it was cut at, the sampling, the preprocessing and the engine's precision and backend, so any change to one of them
is a new entry. A whole video's entry is named by its content key and the view (``KEY-0``, ``KEY-u1of2``); a clip of
a range of a video (a sample ``VIDEO#t=A,B[&clip=KofN]``, see data.samples) by its content key and the clip's
position: its first source frame and a digest of all its frames and its augmentation (``KEY-f1234-<digest>``), so
relabelling a range, or adding one, computes only the clips that were not there before, and two ranges that cut the
same clip share its entry. The clips of one video are decoded in one pass. Each entry is an
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

from ..data.samples import parse_address
from ..data.sampling import ClipSpan, central_clip, random_clip, range_clip, uniform_clips
from ..data.transforms import preprocess
from ..console import stderr_line
from ..data.video import VideoInfo, content_key, probe, read_clips  # content_key: also importable from here
from ..engine import Engine, engine_for
from ..errors import ActionrecError
from ..files import atomic_write, home_dir

CACHE_VERSION = 2  # bump when the meaning of a cached entry changes (2: whole-content keys, checksummed .npz)
ENTRY_SUFFIX = ".npz"


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
MIRRORED = "m"  # a view named with this suffix is the left-right mirror image of the view it names ("0m", "u1of2m")


def mirrored(view: View) -> View:
    """The mirror image of a view (the same frames, flipped left-right): a training clip's extra example."""
    return f"{view}{MIRRORED}"


def _unmirrored(view: View) -> tuple[View, bool]:
    """The view a mirrored view names, and whether it is mirrored."""
    if isinstance(view, str) and view.endswith(MIRRORED):
        base = view[: -len(MIRRORED)]
        return (int(base) if base.isdigit() else base), True
    return view, False


def test_views(count: int) -> list[View]:
    """The views a video is scored from at test time: its central clip for 1, else `count` clips spread evenly over
    the whole video (clip k centred on the middle of the k-th of `count` equal parts), whose probabilities are averaged."""
    return [0] if count == 1 else [f"u{k}of{count}" for k in range(count)]


def uniform_view(view: View) -> tuple[int, int] | None:
    """(k, n) of a uniform test view (mirrored or not), None for the others."""
    view = _unmirrored(view)[0]
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


@dataclass(frozen=True)
class _Item:
    """One (sample, view) to look up or compute: its entry's name, its source frames and its augmentation."""

    address: str  # the sample's path: a video, or a range of one
    view: View
    name: str  # the entry's file name without the suffix
    span: ClipSpan | None  # the source frames of a range's clip; None: a whole video's view, cut when decoded
    plan: ViewPlan


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
        """Where the entry of a whole video's view lies."""
        return self._entry(f"{video_key_}-{view}")

    def _entry(self, name: str) -> Path:
        name += ENTRY_SUFFIX
        return self.root / self.recipe_key / name[:2] / name

    def put(self, video_key_: str, view: View, array: np.ndarray) -> None:
        self._put(f"{video_key_}-{view}", array)

    def _put(self, name: str, array: np.ndarray) -> None:
        try:
            write_entry(self._entry(name), array)
        except OSError as err:
            raise ActionrecError(f"{self.root}: cannot write to the feature cache ({err.strerror or err}); free some "
                                 "space or pass --cache DIR on a writable disk") from None

    def _cached(self, video: str, name: str, view: View) -> bool:
        """Whether a whole, unaltered entry is on disk; a damaged one is said on one line and computed again."""
        path = self._entry(name)
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

    def plan(self, video_key_: str, view: View, at: int = 0) -> ViewPlan:
        """The augmentation of a view: none for the central and uniform views; seeded by the video's content, the view
        and `at` (a range's first frame, so the clips of different ranges differ) for the others."""
        base, flip = _unmirrored(view)
        if base == 0 or uniform_view(base):
            return ViewPlan(view, (0.0, 0.0), flip)
        seeds = [self.sampling.seed, base, int(video_key_[:12], 16)] + ([at] if at else [])
        rng = np.random.default_rng(seeds)
        jitter = self.sampling.crop_jitter
        shift = (float(rng.uniform(-jitter, jitter)), float(rng.uniform(-jitter, jitter)))
        return ViewPlan(view, shift, bool(rng.random() < 0.5) != flip)

    def _whole_span(self, info: VideoInfo, key: str, view: View) -> ClipSpan:
        """The source frames of a whole video's view."""
        spec, n = self.engine.info.spec, self.sampling.frames
        view = _unmirrored(view)[0]
        uniform = uniform_view(view)
        if uniform:
            k, count = uniform
            return uniform_clips(info.num_frames, info.fps, n=n, count=count, target_fps=spec.fps)[k]
        if view == 0:
            return central_clip(info.num_frames, info.fps, n=n, target_fps=spec.fps)
        rng = np.random.default_rng([self.sampling.seed, view, int(key[:12], 16), 1])
        return random_clip(info.num_frames, info.fps, n=n, rng=rng, target_fps=spec.fps)

    def _item(self, address: str, key: str, view: View, info: Callable[[], VideoInfo]) -> _Item:
        """What (address, view) is: a whole video's view, or a clip of a range placed by its frames (see the module
        doc): view 0 and uniform views are the range's clip (the k-th of its n parts for ``&clip=kofn``, else the
        central or uniform ones), augmented views start at a random frame of that part."""
        _, start, end, clip = parse_address(address)
        if start is None or end is None:
            return _Item(address, view, f"{key}-{view}", None, self.plan(key, view))
        video_info, spec = info(), self.engine.info.spec
        part = clip or uniform_view(view) or (0, 1)
        at = int(round(start * 1000)) + 1
        base = _unmirrored(view)[0]
        rng = None if base == 0 or uniform_view(base) else np.random.default_rng(
            [self.sampling.seed, base, int(key[:12], 16), at, part[0]])
        span = range_clip(video_info.num_frames, video_info.fps, start, end, n=self.sampling.frames,
                          target_fps=spec.fps, part=part, rng=rng)
        plan = self.plan(key, view, at + part[0])
        digest = hashlib.sha256(np.ascontiguousarray(span.frame_indices, dtype=np.int64).tobytes())
        digest.update(f"|{plan.crop_shift[0]!r},{plan.crop_shift[1]!r},{plan.flip}".encode())
        return _Item(address, view, f"{key}-f{int(span.frame_indices[0])}-{digest.hexdigest()[:12]}", span, plan)

    def _decode(self, video: str, key: str, items: Sequence[_Item]) -> Iterator[tuple[_Item, torch.Tensor]]:
        """The clips of one video's items, decoded in one pass and preprocessed."""
        spec = self.engine.info.spec
        info = probe(video) if any(item.span is None for item in items) else None
        spans = [item.span or self._whole_span(info, key, item.view) for item in items]
        for item, clip in zip(items, read_clips(video, spans, short_side=spec.resize)):
            yield item, preprocess(clip.frames, spec, crop_shift=item.plan.crop_shift, flip=item.plan.flip)

    def _plan_work(self, work: Sequence[str], views, on_error, progress, result: dict) -> dict[str, dict]:
        """The entries already on disk go to `result`; returns the missing ones by video: {video: {"key", "items"
        (by entry name, each computed once), "asked" [(address, view, name)]}}."""
        keys: dict[str, str] = {}  # video -> content key, hashed once per call
        infos: dict[str, VideoInfo] = {}  # video -> probed once per call (ranges only)
        todo: dict[str, dict] = {}
        for address in work:
            video = parse_address(address)[0]
            wanted = list(views(address) if callable(views) else views)

            def info(video: str = video) -> VideoInfo:
                if video not in infos:
                    infos[video] = probe(video)
                return infos[video]

            try:
                key = keys[video] = keys.get(video) or content_key(video)
                items = [self._item(address, key, view, info) for view in wanted]
            except ActionrecError as err:
                if on_error is None:
                    raise
                on_error(address, str(err))
                continue
            missing = []
            for item in items:
                if self._cached(address, item.name, item.view):
                    result[(address, item.view)] = self._entry(item.name)
                else:
                    missing.append(item)
            if not missing:
                if progress:
                    progress(1)
                continue
            job = todo.setdefault(video, {"key": key, "items": {}, "asked": []})
            for item in missing:
                job["items"].setdefault(item.name, item)
                job["asked"].append((address, item.view, item.name))
        return todo

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

        `videos` are samples' paths: videos, or ranges of videos (see the module doc). `views` may depend on the
        video. Only this process's share of the work list (`videos[rank::world]`) is handled. Unreadable videos go
        to `on_error(video, message)` and are skipped. Every entry found is checked (read_entry); a damaged one is
        computed again. `progress(n)`: n more of `videos` done. Nothing is kept in memory.
        """
        result: dict[tuple[str, View], Path] = {}
        todo = self._plan_work(list(videos)[rank::world], views, on_error, progress, result)
        if not todo:
            return result

        def addresses(video: str) -> list[str]:
            return list(dict.fromkeys(address for address, _, _ in todo[video]["asked"]))

        def failed(job: tuple, message: str) -> None:
            for address in addresses(job[0]):
                on_error(address, message)
            if progress:
                progress(len(addresses(job[0])))

        jobs = [(video, job["key"], list(job["items"].values())) for video, job in todo.items()]
        for run in self.engine.map(jobs, lambda job: self._decode(*job), output=self.endpoint, batch_size=batch_size,
                                   on_error=failed if on_error else None):
            video = run.job[0]
            for item, array in zip(run.metas, run.outputs):
                self._put(item.name, array.astype(np.float16))
            for address, view, name in todo[video]["asked"]:
                result[(address, view)] = self._entry(name)
            if progress:
                progress(len(addresses(video)))
        return result

    @property
    def backbone_calls(self) -> int:
        """Clips run through the backbone since this cache was made (tests check reuse with it)."""
        return self.engine.clips_run - self._calls_before

    def describe(self) -> dict:
        return {"root": str(self.root), "recipe": self.recipe_key, "endpoint": self.endpoint, **asdict(self.sampling)}
