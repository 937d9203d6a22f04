"""The one pipeline from jobs (videos, streams) to a network's outputs, without PyTorch: a producer thread decodes
and preprocesses the clips of each job into a bounded queue while the consumer batches them across jobs through an
engine and hands results back per job (in order) or per clip (see :class:`actionrec.engine.Engine`, whose ``map`` it
is). The engine is anything with ``run_batch(clips, output) -> ndarray``: :class:`actionrec.engine.Engine`, or the
compiled network of :mod:`actionrec.ready`, which runs without PyTorch."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ActionrecError

Clips = Callable[[Any], Iterable[tuple[Any, Any]]]  # job -> (meta, clip) pairs; a clip is a tensor or an array


@dataclass(frozen=True)
class JobResult:
    """The outputs of one job's clips: `metas[i]` describes the clip of `outputs[i]`."""

    job: Any
    metas: list
    outputs: np.ndarray


@dataclass(frozen=True)
class ClipResult:
    """The output of one clip (per-clip mode)."""

    job: Any
    meta: Any
    output: np.ndarray


def map_clips(
    engine: Any,
    jobs: Iterable,
    clips: Clips,
    *,
    output: str = "probs",
    batch_size: int = 4,
    per_clip: bool = False,
    on_error: Callable[[Any, str], None] | None = None,
    progress: Callable[[int], None] | None = None,
    live: bool = False,
    ahead: int | None = None,
    on_drop: Callable[[int], None] | None = None,
    stale: Callable[[Any], bool] | None = None,
    on_take: Callable[[Any], None] | None = None,
    stop: threading.Event | None = None,
) -> Iterator[JobResult] | Iterator[ClipResult]:
    """Run the clips of every job through `engine` (see the module doc).

    Yields a :class:`JobResult` per job in order, or with ``per_clip`` a :class:`ClipResult` per clip as soon as
    its batch ran. A job whose ``clips`` raise ActionrecError goes to ``on_error(job, message)`` (raised when
    None). ``progress(n)``: n more jobs (or clips, per clip) done. ``live``: drop the oldest waiting clip rather
    than wait (``on_drop(n)`` hears of it), and drop waiting clips for which ``stale(meta)`` holds (the newest is kept);
    at most ``ahead`` clips wait (default 2 batches). ``on_take(meta)``: a clip leaves the queue for a batch.
    ``stop`` ends it.
    """
    if batch_size < 1:
        raise ActionrecError(f"--batch-size must be at least 1, not {batch_size}")
    feed = _Feed(jobs, clips, ahead or 2 * batch_size, live, stale, stop)
    try:
        yield from _Batcher(engine, feed, output, batch_size, per_clip, on_error, progress, on_drop, on_take).run()
    finally:
        feed.close()


# ------------------------------------------------------------------------------------------ the producer side

_CLIP, _END, _FAIL, _DONE, _RAISE = range(5)


class _Feed:
    """A producer thread that pulls the clips of each job into a bounded queue (see Engine.map)."""

    def __init__(self, jobs: Iterable, clips: Clips, capacity: int, live: bool, stale: Callable | None,
                 stop: threading.Event | None):
        self.capacity, self.live, self.stale = max(1, capacity), live, stale
        self.stop = stop or threading.Event()
        self._closed = threading.Event()
        self._items: deque = deque()
        self._cond = threading.Condition()
        self.dropped = 0  # clips dropped so far (live)
        self._thread = threading.Thread(target=self._produce, args=(jobs, clips), name="actionrec-decode", daemon=True)
        self._thread.start()

    def _waiting_clips(self) -> int:
        return sum(1 for item in self._items if item[0] == _CLIP)

    def _put(self, item: tuple, bounded: bool = True) -> bool:
        with self._cond:
            while bounded and not self.live and self._waiting_clips() >= self.capacity:
                if self._closed.is_set() or self.stop.is_set():
                    return False
                self._cond.wait(0.1)
            if self._closed.is_set():
                return False
            if bounded and self.live and self._waiting_clips() >= self.capacity:
                for i, old in enumerate(self._items):  # drop the oldest waiting clip
                    if old[0] == _CLIP:
                        del self._items[i]
                        self.dropped += 1
                        break
            self._items.append(item)
            self._cond.notify_all()
            return True

    def _produce(self, jobs: Iterable, clips: Clips) -> None:
        try:
            for index, job in enumerate(jobs):
                source = None
                try:
                    source = iter(clips(job))
                    for meta, tensor in source:
                        if self.stop.is_set() or not self._put((_CLIP, index, job, meta, tensor)):
                            return
                except ActionrecError as err:
                    self._put((_FAIL, index, job, err), bounded=False)
                    continue
                finally:
                    close = getattr(source, "close", None)
                    if close is not None:
                        close()
                if self.stop.is_set() or not self._put((_END, index, job), bounded=False):
                    return
            self._put((_DONE,), bounded=False)
        except BaseException as err:  # raised again by the consumer
            self._put((_RAISE, err), bounded=False)

    def take(self, most: int, wait_for: int) -> list[tuple]:
        """Up to `most` items: waits until `wait_for` clips (or a marker) are there, or the stop is set."""
        with self._cond:
            while not self.stop.is_set():
                if self._waiting_clips() >= wait_for or any(item[0] != _CLIP for item in self._items):
                    break
                self._cond.wait(0.1)
            if self.live and self.stale is not None:
                self._drop_stale()
            out = []
            while self._items and (len(out) < most or self._items[0][0] != _CLIP):
                out.append(self._items.popleft())
            self._cond.notify_all()
            return out

    def _drop_stale(self) -> None:
        clips = [item for item in self._items if item[0] == _CLIP]
        for item in clips[:-1]:
            if self.stale(item[3]):
                self._items.remove(item)
                self.dropped += 1

    def close(self) -> None:
        self._closed.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout=5)  # a producer blocked on a silent stream ends at its next read


# ------------------------------------------------------------------------------------------ the consumer side


class _Batcher:
    """Batches the feed's clips through the engine and hands results back in order (see Engine.map)."""

    def __init__(self, engine: Any, feed: _Feed, output: str, batch_size: int, per_clip: bool,
                 on_error: Callable | None, progress: Callable | None, on_drop: Callable | None,
                 on_take: Callable | None):
        self.engine, self.feed, self.output = engine, feed, output
        self.batch_size, self.per_clip = batch_size, per_clip
        self.on_error, self.progress, self.on_drop, self.on_take = on_error, progress, on_drop, on_take
        self.batch: list[tuple] = []  # (index, job, meta, tensor) waiting for the forward
        self.results: dict[int, list] = {}  # job index -> [(meta, output)] computed so far
        self.ended: deque = deque()  # (index, job, error or None) in job order, waiting to be handed back
        self.reported_drops = 0

    def run(self) -> Iterator:
        finished = False
        while not finished:
            room = self.batch_size - len(self.batch)
            items = self.feed.take(room, 1 if self.feed.live else room)
            self._report_drops()
            if not items:  # stopped
                break
            for item in items:
                kind = item[0]
                if kind == _CLIP:
                    self.batch.append(item[1:])
                    if self.on_take is not None:
                        self.on_take(item[3])
                elif kind == _RAISE:
                    raise item[1]
                elif kind == _DONE:
                    finished = True
                else:
                    self.ended.append((item[1], item[2], item[3] if kind == _FAIL else None))
            if self.batch and (len(self.batch) >= self.batch_size or finished or self.feed.live):
                yield from self._flush()
            yield from self._hand_back()
        if self.batch and not self.feed.stop.is_set():
            yield from self._flush()
        yield from self._hand_back()

    def _report_drops(self) -> None:
        dropped = self.feed.dropped
        if dropped > self.reported_drops and self.on_drop is not None:
            self.on_drop(dropped - self.reported_drops)
        self.reported_drops = dropped

    def _flush(self) -> Iterator[ClipResult]:
        failed = {index for index, _, error in self.ended if error is not None}
        batch = [b for b in self.batch if b[0] not in failed]
        self.batch = []
        if not batch:
            return
        outputs = self.engine.run_batch([b[3] for b in batch], self.output)
        for (index, job, meta, _), out in zip(batch, outputs):
            if self.per_clip:
                yield ClipResult(job, meta, out)
            else:
                self.results.setdefault(index, []).append((meta, out))
        if self.per_clip and self.progress:
            self.progress(len(batch))

    def _hand_back(self) -> Iterator[JobResult]:
        pending = {b[0] for b in self.batch}
        while self.ended and self.ended[0][0] not in pending:
            index, job, error = self.ended.popleft()
            rows = self.results.pop(index, [])
            if self.progress and not self.per_clip:
                self.progress(1)
            if error is not None:
                if self.on_error is None:
                    raise error
                self.on_error(job, str(error))
                continue
            if not self.per_clip:
                outputs = np.stack([out for _, out in rows]) if rows else np.zeros((0,), np.float32)
                yield JobResult(job, [meta for meta, _ in rows], outputs)
