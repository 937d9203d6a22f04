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
from typing import TYPE_CHECKING

import numpy as np

from ..data.transforms import preprocess
from ..data.video import READ_TIMEOUT, LiveSource, live_windows, open_live
from ..errors import ActionrecError
from ..checks import probability, whole
from .calibration import resolve_labels

if TYPE_CHECKING:  # annotations only: importing this module (the CLI's help reads WatchOptions) imports no PyTorch
    from torch import nn

    from ..engine import Engine
    from ..models.info import ModelInfo


__all__ = ["AlertRule", "Alert", "Debouncer", "WatchStats", "ExecAction", "WebhookAction", "parse_alert", "watch"]

DEFAULT_MAX_LATENCY = 2.0  # seconds of stream a window may wait before it is dropped (live sources)
DEFAULT_CONFIRM = 2  # windows in a row at or above the threshold to fire
DEFAULT_COOLDOWN = 3.0  # seconds below the threshold before the same alert can fire again
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
    from ..engine import engine_for
    from ..models.info import check_classifier
    from .windows import default_stride, window_frames

    engine = engine_for(model)
    info = engine.info
    check_classifier(info)
    if not rules:
        raise ActionrecError("watch needs at least one --alert LABEL>=PROBABILITY")
    if not (options.max_latency > 0):
        raise ActionrecError(f"--max-latency must be a positive number of seconds, not {options.max_latency}")
    src = open_live(source, options.fps, options.read_timeout, realtime=options.realtime)
    kind, src_fps, shown = src.kind, src.fps, src.shown
    try:
        window, frames = window_frames(info, options.window, src_fps)
        stride = default_stride(window) if options.stride is None else float(options.stride)
        if not (math.isfinite(stride) and stride > 0):
            raise ActionrecError(f"--stride must be a positive number of seconds, not {stride!r}")
        batch_size = whole(options.batch_size, "--batch-size", 1) if options.batch_size is not None else (1 if src.live else 8)
        debouncers = [Debouncer(r, options.confirm, options.cooldown) for r in rules]
        _prepare(engine, info, frames)
    except BaseException:
        src.close()
        raise
    stats = WatchStats(shown, kind, src_fps)
    ahead = max(batch_size, int(math.ceil(options.max_latency / stride)) + 1) if src.live else 2 * batch_size
    results = engine.map([src], lambda s: _windows(s, info, window, stride, frames),
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


def _windows(src: LiveSource, info: ModelInfo, window: float, stride: float, frames: int):
    """The source's windows as ((start, end, arrival), network input), read by :func:`actionrec.data.video.live_windows`
    (in the engine's producer thread)."""
    for start, end, arrival, clip in live_windows(src, window, stride, frames, info.spec.resize):
        yield (start, end, arrival), preprocess(clip, info.spec)


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
