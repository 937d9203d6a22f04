"""Live alerts: classify sliding windows of a camera, a network stream or a file as its frames arrive.

A reader thread takes the frames as the source delivers them (a frame's time is its number over the source's frame
rate), keeps only those that a window still open needs (resized), and hands each window on as soon as its last frame
is in. The main thread runs the model on the windows and feeds each alert rule's :class:`Debouncer`.

Latency: a live source (camera, ``rtsp://``, ``http://``... or a file with ``realtime=True``) is never held back. When
the model is slower than the stream, the windows that are more than ``max_latency`` seconds (of stream time) behind
the newest frame are dropped, and the drops are reported, so alerts stay close to real time instead of falling
further and further behind. A file read as fast as the model goes (the default for files) drops nothing.

Debouncing: an alert fires when the label's probability is at or above the threshold in ``confirm`` classified windows
in a row, and fires again only after it has stayed below for ``cooldown`` seconds of stream. Each alert carries the
stream time where the action was first seen, the time it was confirmed, the wall-clock time and the score.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from torch import nn

from ..data.transforms import preprocess
from ..data.video import cv2_path, display_path, quiet_opencv, resize_short_side
from ..engine import Engine, engine_for
from ..errors import ActionrecError
from ..models.pretrained import ModelInfo, check_classifier
from ..checks import probability, whole
from .calibration import resolve_labels
from .windows import default_stride, window_frames


__all__ = ["AlertRule", "Alert", "Debouncer", "WatchStats", "ExecAction", "WebhookAction", "parse_alert", "watch"]

DEFAULT_MAX_LATENCY = 2.0  # seconds of stream a window may wait before it is dropped (live sources)
DEFAULT_CONFIRM = 2  # windows in a row at or above the threshold to fire
DEFAULT_COOLDOWN = 3.0  # seconds below the threshold before the same alert can fire again
DEFAULT_FPS = 25.0  # frame rate assumed when a live source does not say
MAX_FPS = 240.0  # a source claiming more is not telling its frame rate
READ_TIMEOUT = 10.0  # a network stream that sends nothing for this long has ended
LATE_FRAMES = 4  # a live reader this many frames behind would lose frames (a camera driver buffers about 4)
LATENCIES_KEPT = 10_000  # latencies of the most recent windows kept for the summary
_EPS = 1e-6


@dataclass(frozen=True)
class AlertRule:
    label: str
    threshold: float


def parse_alert(text: str, categories: Sequence[str]) -> AlertRule:
    """``"Label>=0.8"`` -> AlertRule; the label must be one of the model's classes."""
    m = re.fullmatch(r"\s*(.+?)\s*>=\s*([0-9]*\.?[0-9]+)\s*", text or "")
    if not m:
        raise ActionrecError(f"--alert {text!r}: write LABEL>=PROBABILITY, e.g. --alert 'Spinning>=0.8'")
    threshold = probability(float(m.group(2)), f"--alert {text!r}: the threshold")
    (label,) = resolve_labels([m.group(1)], categories)
    return AlertRule(label, threshold)


@dataclass(frozen=True)
class Alert:
    label: str
    score: float  # probability in the window that fired
    threshold: float
    start: float  # stream seconds: start of the first window of the confirming run
    time: float  # stream seconds: end of the window that fired
    wall: str  # ISO 8601 local time when it fired
    source: str

    def to_dict(self) -> dict:
        return {"label": self.label, "score": round(self.score, 4), "threshold": self.threshold,
                "start": round(self.start, 3), "time": round(self.time, 3), "wall": self.wall, "source": self.source}

    def env(self) -> dict[str, str]:
        """Environment variables for --exec."""
        return {
            "ACTIONREC_LABEL": self.label,
            "ACTIONREC_SCORE": f"{self.score:.4f}",
            "ACTIONREC_THRESHOLD": f"{self.threshold:g}",
            "ACTIONREC_START": f"{self.start:.3f}",
            "ACTIONREC_TIME": f"{self.time:.3f}",
            "ACTIONREC_WALLTIME": self.wall,
            "ACTIONREC_SOURCE": self.source,
            "ACTIONREC_ALERT": json.dumps(self.to_dict()),
        }

    def line(self) -> str:
        return (f"{self.wall}  ALERT {self.label}  score {self.score:.2f} (>= {self.threshold:g})  "
                f"at {self.start:.1f} s of the stream (confirmed at {self.time:.1f} s)")


class Debouncer:
    """Rising-edge alerts for one rule: ``confirm`` windows in a row at or above the threshold fire once; the rule is
    re-armed after the score has stayed below the threshold for ``cooldown`` seconds of stream."""

    def __init__(self, rule: AlertRule, confirm: int = DEFAULT_CONFIRM, cooldown: float = DEFAULT_COOLDOWN):
        if confirm < 1:
            raise ActionrecError(f"--confirm must be at least 1 window, not {confirm}")
        if cooldown < 0:
            raise ActionrecError(f"--cooldown must be >= 0 seconds, not {cooldown}")
        self.rule, self.confirm, self.cooldown = rule, confirm, cooldown
        self.armed = True
        self.run = 0
        self.run_start = 0.0
        self.last_above = -math.inf

    def update(self, start: float, end: float, score: float) -> tuple[float, float, float] | None:
        """Feed one classified window; returns (start, time, score) when the alert fires."""
        if score >= self.rule.threshold:
            self.last_above = end
            if not self.armed:
                return None
            if self.run == 0:
                self.run_start = start
            self.run += 1
            if self.run >= self.confirm:
                self.armed, self.run = False, 0
                return self.run_start, end, score
            return None
        self.run = 0
        if not self.armed and end - self.last_above >= self.cooldown - _EPS:
            self.armed = True
        return None


@dataclass
class WatchStats:
    source: str
    kind: str  # camera | stream | file
    fps: float
    frames: int = 0  # frames read
    windows: int = 0  # windows classified
    dropped: int = 0  # windows dropped to stay within the latency bound
    alerts: int = 0
    seconds: float = 0.0  # stream seconds read
    max_lag: float = 0.0  # largest stream-time lag of a classified window behind the newest frame
    latencies: deque = field(default_factory=lambda: deque(maxlen=LATENCIES_KEPT))  # live: s from last frame to result
    read_lag: float = 0.0  # file read in real time: largest delay of a frame's read behind its time in the stream
    late_frames: int = 0  # ... frames read LATE_FRAMES or more frame periods late (a camera would have lost them)
    stopped: str = "end of stream"
    alert_list: list[Alert] = field(default_factory=list)
    last_drop_note: float = -math.inf  # monotonic time drops were last reported

    def summary(self) -> str:
        drop = (f", {self.dropped} dropped ({self.dropped * 100 / max(self.dropped + self.windows, 1):.0f} %: the model "
                f"is slower than the stream)") if self.dropped else ", none dropped"
        latency = ""
        if self.latencies:
            ms = np.asarray(self.latencies) * 1000
            latency = f" (latency mean {ms.mean():.0f} ms, p95 {np.percentile(ms, 95):.0f} ms)"
        late = f"; {self.late_frames} frames read late" if self.late_frames else ""
        return (f"watch {self.source}: {self.stopped} after {self.seconds:.1f} s of {self.kind} at {self.fps:g} fps; "
                f"{self.windows} windows classified{latency}{drop}{late}; "
                f"{self.alerts} alert{'s' if self.alerts != 1 else ''}")


# ----------------------------------------------------------------------------------------------- actions


class ExecAction:
    """Runs a shell command per alert, with the alert in ACTIONREC_* environment variables (not in the command line,
    so no value is ever parsed by the shell). Commands run in the background; :meth:`close` waits for them."""

    def __init__(self, command: str, say: Callable[[str], None], timeout: float = 30.0):
        self.command, self.say, self.timeout = command, say, timeout
        self.running: list[subprocess.Popen] = []

    def __call__(self, alert: Alert) -> None:
        try:
            self.running.append(subprocess.Popen(self.command, shell=True, env={**os.environ, **alert.env()}))
        except OSError as err:
            self.say(f"warning: --exec {self.command!r} could not start: {err}")

    def close(self) -> None:
        for proc in self.running:
            try:
                code = proc.wait(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                self.say(f"warning: --exec {self.command!r} still running after {self.timeout:g} s; left running")
                continue
            if code:
                self.say(f"warning: --exec {self.command!r} exited with status {code}")
        self.running = []


class WebhookAction:
    """POSTs each alert as JSON to a URL, in order, from a background thread (a slow server never delays the model).
    A failed POST is reported as a warning line and does not stop the watch."""

    def __init__(self, url: str, say: Callable[[str], None], timeout: float = 5.0):
        if not re.match(r"^https?://", url or ""):
            raise ActionrecError(f"--webhook {url!r}: give an http:// or https:// URL")
        self.url, self.say, self.timeout = url, say, timeout
        self.queue: deque = deque()
        self.cond = threading.Condition()
        self.closing = False
        self.thread = threading.Thread(target=self._run, name="actionrec-webhook", daemon=True)
        self.thread.start()

    def __call__(self, alert: Alert) -> None:
        with self.cond:
            self.queue.append(alert)
            self.cond.notify()

    def _run(self) -> None:
        while True:
            with self.cond:
                while not self.queue and not self.closing:
                    self.cond.wait()
                if not self.queue:
                    return
                alert = self.queue.popleft()
            body = json.dumps(alert.to_dict()).encode()
            request = urllib.request.Request(self.url, data=body, method="POST",
                                             headers={"Content-Type": "application/json", "User-Agent": "actionrec"})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    response.read()
            except (urllib.error.URLError, OSError, ValueError) as err:
                self.say(f"warning: --webhook {self.url}: {getattr(err, 'reason', err)}")

    def close(self, timeout: float = 10.0) -> None:
        with self.cond:
            self.closing = True
            self.cond.notify()
        self.thread.join(timeout)


# ----------------------------------------------------------------------------------------------- sources


def open_source(source: str | int, fps: float | None = None, read_timeout: float = READ_TIMEOUT):
    """(cv2.VideoCapture, kind, fps, shown name). A number is a camera index, ``scheme://...`` a network stream,
    anything else a file (a device file such as /dev/video0 is a camera)."""
    import cv2

    shown = display_path(source) if not isinstance(source, int) else str(source)
    if fps is not None and not (math.isfinite(fps) and 0 < fps <= MAX_FPS):
        raise ActionrecError(f"--fps must be a frame rate between 0 and {MAX_FPS:g}, not {fps!r}")
    with quiet_opencv():
        kind, cap = _capture(source, shown, read_timeout)
    if not cap.isOpened():
        cap.release()
        what = {"camera": "camera", "stream": "stream", "file": "video"}[kind]
        raise ActionrecError(f"{shown}: cannot open this {what} (check the index, URL or path, and that nothing else holds it)")
    rate = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    if not (math.isfinite(rate) and 0 < rate <= MAX_FPS):  # the source does not say: --fps, else the default
        rate = float(fps or DEFAULT_FPS)
    return cap, kind, rate, shown


def _capture(source: str | int, shown: str, read_timeout: float):
    """(kind, cv2.VideoCapture) of a camera index, a stream URL or a file (opened under a name OpenCV can take)."""
    import cv2

    text = str(source) if isinstance(source, int) else os.fsdecode(source)
    if isinstance(source, int) or text.isdigit():
        return "camera", cv2.VideoCapture(int(text))
    if "://" in text:
        params: list[int] = []
        for name in ("CAP_PROP_OPEN_TIMEOUT_MSEC", "CAP_PROP_READ_TIMEOUT_MSEC"):
            if hasattr(cv2, name):
                params += [getattr(cv2, name), int(read_timeout * 1000)]
        return "stream", cv2.VideoCapture(text, cv2.CAP_FFMPEG, params)
    if not os.path.exists(text):
        raise ActionrecError(f"{shown}: no such file, camera index or stream URL")
    kind = "file" if os.path.isfile(text) else "camera"
    with cv2_path(text) as name:
        return kind, cv2.VideoCapture(name, cv2.CAP_FFMPEG if kind == "file" else cv2.CAP_ANY)


class _Windower:
    """Cuts a frame sequence into sliding windows as the frames come (the streaming form of
    :func:`actionrec.video.sliding_windows`: window k starts at k * stride, frame j of it is the one shown at
    start + (j + 0.5) * window / n); holds only the frames an open window needs."""

    def __init__(self, fps: float, window: float, stride: float, n: int):
        self.fps, self.window, self.stride = fps, window, stride
        self.rel = (np.arange(n) + 0.5) * (window / n)
        self.next_k = 0
        self.open: deque = deque()  # (k, indices, set of indices)
        self.held: dict[int, np.ndarray] = {}

    def _indices(self, k: int) -> np.ndarray:
        return np.floor((k * self.stride + self.rel) * self.fps + _EPS).astype(np.int64)

    def wanted(self, i: int) -> bool:
        """Whether frame i belongs to a window (opens the windows that start by then)."""
        while True:
            idx = self._indices(self.next_k)
            if idx[0] > i:
                break
            self.open.append((self.next_k, idx, set(idx.tolist())))
            self.next_k += 1
        return any(i in s for _, _, s in self.open)

    def add(self, i: int, frame: np.ndarray) -> list[tuple[float, float, np.ndarray]]:
        """Keep frame i; return the windows it completes as (start, end, frames)."""
        self.held[i] = frame
        done = []
        while self.open and int(self.open[0][1][-1]) <= i:
            k, idx, _ = self.open.popleft()
            start = k * self.stride
            done.append((start, start + self.window, np.stack([self.held[j] for j in idx.tolist()])))
        low = int(self.open[0][1][0]) if self.open else i + 1
        for j in [j for j in self.held if j < low]:
            del self.held[j]
        return done


# ----------------------------------------------------------------------------------------------- watch


@dataclass(frozen=True)
class WatchOptions:
    """How a source is watched; the CLI's defaults come from here."""

    window: float | None = None  # seconds per window (None: the model's)
    stride: float | None = None  # seconds between windows (None: max(0.5, window / 2))
    max_latency: float = DEFAULT_MAX_LATENCY  # live: windows further behind the newest frame are dropped
    realtime: bool = False  # pace a file at its frame rate as if it were live
    batch_size: int | None = None  # windows per forward (None: 1 live, 8 for a file read at full speed)
    confirm: int = DEFAULT_CONFIRM  # windows in a row at the threshold to fire
    cooldown: float = DEFAULT_COOLDOWN  # seconds below the threshold before the same alert again
    fps: float | None = None  # frame rate of a source that does not say
    read_timeout: float = READ_TIMEOUT  # a network stream silent this long has ended


@dataclass
class _Source:
    """An open source and what the reader has seen of it (shared with the engine's producer thread)."""

    cap: object
    kind: str
    fps: float
    shown: str
    live: bool
    newest: float = 0.0  # stream time of the newest frame read
    frames: int = 0
    read_lag: float = 0.0  # realtime file: largest delay of a read behind the frame's time
    late_frames: int = 0  # realtime file: frames read LATE_FRAMES periods late or more


def _read_windows(src: _Source, info: ModelInfo, window: float, stride: float, frames: int, realtime: bool):
    """The source's windows as (start, end, arrival) and network input, as their last frame arrives (runs in the
    engine's producer thread; a file with `realtime` is paced at its frame rate, and a frame's arrival is then its
    due time, else the monotonic time it was read). Releases the source when done."""
    import cv2

    windower = _Windower(src.fps, window, stride, frames)
    t0, i = time.monotonic(), 0
    paced = realtime and src.kind == "file"
    try:
        while True:
            due = t0 + i / src.fps
            if paced:
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                elif -delay >= LATE_FRAMES / src.fps:
                    src.late_frames += 1
                src.read_lag = max(src.read_lag, -delay)
            wanted = windower.wanted(i)
            with quiet_opencv():  # a stream's hiccups are OpenCV WARN lines; its end is said in the summary
                if not src.cap.grab():
                    return
                ok, frame = src.cap.retrieve() if wanted else (True, None)
            done = []
            if wanted:
                if not ok or frame is None or frame.size == 0:
                    return
                done = windower.add(i, cv2.cvtColor(resize_short_side(frame, info.spec.resize), cv2.COLOR_BGR2RGB))
            src.newest, src.frames = (i + 1) / src.fps, i + 1
            arrival = due if paced else time.monotonic()
            for start, end, clip in done:
                yield (start, end, arrival), preprocess(clip, info.spec)
            i += 1
    finally:
        src.cap.release()


def watch(
    source: str | int,
    model: nn.Module | Engine,
    rules: Sequence[AlertRule],
    options: WatchOptions = WatchOptions(),
    *,
    on_alert: Callable[[Alert], None] | None = None,
    on_window: Callable[[float, float, dict[str, float]], None] | None = None,
    say: Callable[[str], None] = lambda m: print(m, file=sys.stderr),
    stop: threading.Event | None = None,
) -> WatchStats:
    """Classify windows of `source` as they arrive and raise the alerts of `rules` (see the module doc).

    Returns at the end of the stream, when `stop` is set, or on Ctrl-C (KeyboardInterrupt), always after closing the
    source. ``on_window(start, end, {label: probability})`` sees every classified window.
    """
    engine = engine_for(model)
    info = engine.info
    check_classifier(info)
    if not rules:
        raise ActionrecError("watch needs at least one --alert LABEL>=PROBABILITY")
    if not (options.max_latency > 0):
        raise ActionrecError(f"--max-latency must be a positive number of seconds, not {options.max_latency}")
    cap, kind, src_fps, shown = open_source(source, options.fps, options.read_timeout)
    src = _Source(cap, kind, src_fps, shown, live=kind != "file" or options.realtime)
    try:
        window, frames = window_frames(info, options.window, src_fps)
        stride = default_stride(window) if options.stride is None else float(options.stride)
        if not (math.isfinite(stride) and stride > 0):
            raise ActionrecError(f"--stride must be a positive number of seconds, not {stride!r}")
        batch_size = whole(options.batch_size, "--batch-size", 1) if options.batch_size is not None else (1 if src.live else 8)
        debouncers = [Debouncer(r, options.confirm, options.cooldown) for r in rules]
        _prepare(engine, info, frames)
    except BaseException:
        cap.release()
        raise
    stats = WatchStats(shown, kind, src_fps)
    ahead = max(batch_size, int(math.ceil(options.max_latency / stride)) + 1) if src.live else 2 * batch_size
    results = engine.map([src], lambda s: _read_windows(s, info, window, stride, frames, options.realtime),
                         batch_size=batch_size, per_clip=True, live=src.live, ahead=ahead,
                         on_drop=lambda n: _note_drops(stats, n, options.max_latency, say), stop=stop,
                         stale=lambda span: src.newest - span[1] > options.max_latency,
                         on_take=lambda span: _note_lag(stats, src.newest - span[1]))
    try:
        for result in results:
            (start, end, arrival), probs = result.meta, result.output
            if src.live:
                stats.latencies.append(time.monotonic() - arrival)
            _classified(stats, debouncers, info, start, end, probs, shown, on_alert, on_window)
        if stop is not None and stop.is_set():
            stats.stopped = "stopped"
    except KeyboardInterrupt:
        stats.stopped = "interrupted (Ctrl-C)"
    except (OSError, RuntimeError, ValueError) as err:  # cv2.error is an Exception subclass too
        raise ActionrecError(f"{shown}: reading failed ({type(err).__name__}: {err})") from None
    finally:
        results.close()
        stats.frames, stats.seconds = src.frames, src.frames / src_fps
        stats.read_lag, stats.late_frames = src.read_lag, src.late_frames
    return stats


def _prepare(engine: Engine, info: ModelInfo, frames: int) -> None:
    """Run the network once on a window of zeros before the first frame is read: its first forward at a new input
    shape compiles it (OpenVINO: 0.1-0.5 s from the saved IR, seconds when exported for the first time on this
    machine), which a stream running meanwhile would pay for with dropped windows."""
    import torch

    engine.forward(torch.zeros(1, 3, frames, info.spec.crop, info.spec.crop))


def _note_lag(stats: WatchStats, lag: float) -> None:
    stats.max_lag = max(stats.max_lag, lag)


def _note_drops(stats: WatchStats, n: int, max_latency: float, say: Callable[[str], None]) -> None:
    first = stats.dropped == 0 or time.monotonic() - stats.last_drop_note > 10
    stats.dropped += n
    if first:
        say(f"watch: the model is slower than the stream: dropped {stats.dropped} windows so far to stay "
            f"within {max_latency:g} s of the newest frame")
        stats.last_drop_note = time.monotonic()


def _classified(stats: WatchStats, debouncers: list[Debouncer], info: ModelInfo, start: float, end: float,
                probs: np.ndarray, shown: str, on_alert: Callable | None, on_window: Callable | None) -> None:
    """One classified window: feed the debouncers, fire their alerts."""
    stats.windows += 1
    scores = {d.rule.label: float(probs[info.categories.index(d.rule.label)]) for d in debouncers}
    if on_window is not None:
        on_window(start, end, scores)
    for d in debouncers:
        fired = d.update(start, end, scores[d.rule.label])
        if fired is not None:
            alert = Alert(d.rule.label, fired[2], d.rule.threshold, fired[0], fired[1],
                          datetime.now().astimezone().isoformat(timespec="seconds"), shown)
            stats.alerts += 1
            stats.alert_list.append(alert)
            if on_alert is not None:
                on_alert(alert)
