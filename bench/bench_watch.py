"""`actionrec watch` on a real-time 25 fps 320x240 stream at its defaults, quiet and with a competing load, and the
engine's graceful degradation under load (with OpenVINO thread settings side by side).

    python bench/bench_watch.py [--seconds 120] [--video V] [--run RUN] [--models i3d,run] [--no-busy]
                                [--engine-rounds 3] [--no-variants] [--wait 900]

The stream: real UCF101 footage (../shared/ucf101_subset, 320x240 at 25 fps), clips of its three classes stitched
in turn into one `--seconds` long MPEG-4 file under /tmp (made once, reused), or `--video`. `watch` reads it with
``realtime=True`` (paced at 25 fps like a camera) at its defaults (window, stride, batch, max latency, engine), for
i3d-kinetics400 (64-frame windows every 1.28 s) and a trained run (16-frame windows every 0.5 s; `--run`, else one is
trained once on the UCF101 subset into /tmp/bench_watch_run, head only: the network is the same as a fine-tuned run's).

Each watch row runs in a fresh process (its own peak RSS) and reports: windows classified and dropped, frames read
late (4+ frame periods behind their time: a camera would have lost them), latency from a window's last frame to its
probabilities (mean, p95), CPU use of the process (% of all cores), the engine's busy fraction (seconds in forward
over seconds of stream: 1 - real-time headroom), mean seconds per forward, the warm-up (watch's first forward,
which compiles the network before the first frame is read; CPU and busy fraction are counted after it) and peak
RSS. The loaded rows run the same while bench_i3d.py's competing process (a 2-thread numpy matmul loop) shares the cores; "kept" is windows
classified per stream second under load over quiet, measured one after the other in this run.

Engine section (one process, side by side): clips/s of the default engine at batch 1 on 16-frame clips and on the
I3D watch window, and of OpenVINO config variants on 16-frame clips, timed quiet and under the competing load in
alternating phases (`--engine-rounds`, medians); "kept" = loaded / quiet. Every number is labelled with the load
average (1 min) when it was taken; before each measurement the bench waits (up to `--wait` seconds in all) for the
1-minute load average to fall below 1.0 (other processes on the machine).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
_inductor = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
from bench_i3d import busy_process  # noqa: E402  (the same competing load as bench_i3d.py --busy)

if _inductor is None:  # bench_i3d makes an empty inductor cache folder for its own cold compiles: not needed here
    os.rmdir(os.environ.pop("TORCHINDUCTOR_CACHE_DIR"))

UCF = ROOT.parent / "shared" / "ucf101_subset" / "UCF-101"
WORK = Path(tempfile.gettempdir()) / "bench_watch"
DEFAULT_RUN = Path(tempfile.gettempdir()) / "bench_watch_run"
FPS, SIZE = 25.0, (320, 240)
QUIET_LOAD = 1.0


# ------------------------------------------------------------------------------------------ the stream


def make_stream(seconds: float, seed: int = 0) -> Path:
    """Real UCF101 clips of the subset's classes, in turn (shuffled within each class), stitched into one 25 fps
    320x240 MPEG-4 file of `seconds` under /tmp (made once per length)."""
    import cv2

    out = WORK / f"ucf101_stitched_{seconds:g}s.mp4"
    if out.is_file():
        return out
    rng = random.Random(seed)
    classes = [sorted(d.glob("*.avi")) for d in sorted(UCF.iterdir()) if d.is_dir()]
    if not classes:
        raise SystemExit(f"{UCF} is absent: pass --video (a 25 fps 320x240 video)")
    for clips in classes:
        rng.shuffle(clips)
    WORK.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".part.mp4")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), FPS, SIZE)
    need, k = int(seconds * FPS), 0
    while need > 0:
        clips = classes[k % len(classes)]
        cap = cv2.VideoCapture(str(clips[k // len(classes) % len(clips)]))
        while need > 0:
            ok, frame = cap.read()
            if not ok:
                break
            writer.write(cv2.resize(frame, SIZE) if frame.shape[1::-1] != SIZE else frame)
            need -= 1
        cap.release()
        k += 1
    writer.release()
    os.replace(tmp, out)
    return out


def ensure_run(run: Path) -> Path:
    """A trained run (head only, on the UCF101 subset), trained once into `run`."""
    if not (run / "model.safetensors").is_file():
        subprocess.run([sys.executable, "-m", "actionrec", "train", str(UCF.parent), "--out", str(run),
                        "--finetune-epochs", "0", "--quiet", "--force"], check=True)
    return run


# ------------------------------------------------------------------------------------------ load average


class Loadwatch:
    """Waits for a quiet machine (1-min load average < 1.0), up to `budget` seconds over the whole bench."""

    def __init__(self, budget: float):
        self.budget = budget

    def wait(self) -> float:
        while os.getloadavg()[0] >= QUIET_LOAD and self.budget > 0:
            print(f"  (load average {os.getloadavg()[0]:.2f}: waiting for < {QUIET_LOAD:g}, "
                  f"{self.budget:.0f} s of waiting left)", file=sys.stderr, flush=True)
            time.sleep(min(30.0, self.budget))
            self.budget -= 30.0
        return os.getloadavg()[0]


# ------------------------------------------------------------------------------------------ one watch (child)


def timed_engine(model):
    """The default engine of `model`, counting the seconds spent in forward after the first call (watch's warm-up,
    which compiles the network), and noting when and with how much CPU time that first call ended."""
    from actionrec.engine import Engine

    class TimedEngine(Engine):
        busy, calls, warmup, warm_at, warm_cpu = 0.0, 0, 0.0, 0.0, 0.0

        def forward(self, x, output="probs"):
            start = time.perf_counter()
            try:
                return super().forward(x, output)
            finally:
                end = time.perf_counter()
                if self.calls == 0:
                    self.warmup, self.warm_at, self.warm_cpu = end - start, end, _cpu_seconds()
                else:
                    self.busy += end - start
                self.calls += 1

    return TimedEngine(model)


def watch_once(name: str, video: Path) -> dict:
    """`watch` over `video` in real time at the defaults (in this process): its figures as a dict."""
    import numpy as np

    import actionrec
    from actionrec.apps.watch import AlertRule, WatchOptions, watch

    model = actionrec.load_model(name)
    engine = timed_engine(model)
    notes: list[str] = []
    load0 = os.getloadavg()[0]
    stats = watch(str(video), engine, [AlertRule(model.info.categories[0], 0.99)], WatchOptions(realtime=True),
                  say=notes.append)
    wall, cpu = time.perf_counter() - engine.warm_at, _cpu_seconds() - engine.warm_cpu  # after the warm-up
    ms = np.asarray(stats.latencies) * 1000
    return {
        "model": name, "backend": engine.backend, "precision": engine.precision, "stream_s": stats.seconds,
        "frames": stats.frames, "windows": stats.windows, "dropped": stats.dropped, "late_frames": stats.late_frames,
        "read_lag_s": stats.read_lag, "latency_mean_ms": float(ms.mean()) if len(ms) else None,
        "latency_p95_ms": float(np.percentile(ms, 95)) if len(ms) else None, "max_lag_s": stats.max_lag,
        "cpu_pct": 100 * cpu / wall / os.cpu_count(), "busy_fraction": engine.busy / wall,
        "forward_s": engine.busy / max(engine.calls - 1, 1), "warmup_s": engine.warmup, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "wall_s": wall, "load_start": load0, "load_end": os.getloadavg()[0], "summary": stats.summary(), "notes": notes,
    }


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def watch_row(name: str, video: Path, busy_for: float | None) -> dict:
    """watch_once in a fresh process, with the competing load alongside when `busy_for` is given."""
    busy = busy_process(busy_for) if busy_for else None
    try:
        out = subprocess.run([sys.executable, __file__, "--child", name, "--video", str(video)],
                             check=True, capture_output=True, text=True).stdout
    finally:
        if busy is not None:
            busy.terminate()
            busy.wait()
    return json.loads(out.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------ the engine alone


def openvino_variants(model, precision: str) -> dict:
    """Forwards (batch -> logits) of OpenVINO config variants, each its own compiled model."""
    from actionrec.models.backends import OpenVINONet

    class Variant(OpenVINONet):
        def __init__(self, extra: dict[str, str]):
            super().__init__(model, precision)
            self.extra = extra

        def config(self) -> dict[str, str]:
            return {**super().config(), **self.extra}

    settings = {
        "OpenVINO LATENCY, 1 thread": {"INFERENCE_NUM_THREADS": "1"},
        "OpenVINO LATENCY, no CPU pinning": {"ENABLE_CPU_PINNING": "NO"},
        "OpenVINO LATENCY, 1 thread, no CPU pinning": {"INFERENCE_NUM_THREADS": "1", "ENABLE_CPU_PINNING": "NO"},
        "OpenVINO THROUGHPUT hint": {"PERFORMANCE_HINT": "THROUGHPUT"},
        "OpenVINO THROUGHPUT hint, no CPU pinning": {"PERFORMANCE_HINT": "THROUGHPUT", "ENABLE_CPU_PINNING": "NO"},
    }
    return {label: (lambda x, net=Variant(extra): net(x, "logits")) for label, extra in settings.items()}


def engine_degradation(name: str, rounds: int, variants: bool, busy_for: float, loadwatch: Loadwatch) -> list[str]:
    """Clips/s quiet and under the competing load, in alternating phases in this one process: table lines."""
    import torch

    import actionrec
    from actionrec.apps.windows import window_frames
    from actionrec.engine import Engine

    model = actionrec.load_model(name)
    engine = Engine(model)
    spec = model.info.spec
    clip = torch.randn(1, 3, 16, spec.crop, spec.crop)
    window = torch.randn(1, 3, window_frames(model.info)[1], spec.crop, spec.crop)
    jobs = {f"default engine ({engine.backend} {engine.precision}), 16-frame clip": (lambda: engine.forward(clip), 1),
            f"default engine, {window.shape[2]}-frame watch window": (lambda: engine.forward(window), window.shape[2] / 16)}
    if variants and engine.backend == "openvino":
        jobs.update({k: (lambda f=f: f(clip), 1) for k, f in openvino_variants(engine.model, engine.precision).items()})
    for job, _ in jobs.values():  # compile and warm up
        job()
        job()
    times: dict[str, dict[str, list[float]]] = {k: {"quiet": [], "loaded": []} for k in jobs}
    loads = {"quiet": [], "loaded": []}
    for r in range(rounds):
        for phase in ("quiet", "loaded"):
            if phase == "quiet":
                loadwatch.wait()
            busy = busy_process(busy_for) if phase == "loaded" else None
            try:
                if busy is not None:
                    time.sleep(1.0)
                loads[phase].append(os.getloadavg()[0])
                names = list(jobs)
                for label in names[r % len(names):] + names[: r % len(names)]:
                    times[label][phase].append(_per_call(jobs[label][0], 0.8))
            finally:
                if busy is not None:
                    busy.terminate()
                    busy.wait()
    lines = [f"\n**The engine alone, {name}, batch 1** ({rounds} rounds of alternating quiet / loaded phases; "
             f"load average (1 min) {min(loads['quiet']):.2f}-{max(loads['quiet']):.2f} quiet, "
             f"{min(loads['loaded']):.2f}-{max(loads['loaded']):.2f} loaded, read 1 s after the competing process started: "
             "the 1-minute average lags it):\n",
             "| variant | quiet clips/s | loaded clips/s | kept |", "|---|---:|---:|---:|"]
    for label, (_, clips) in jobs.items():
        quiet, loaded = (clips / statistics.median(times[label][p]) for p in ("quiet", "loaded"))
        lines.append(f"| {label} | {quiet:.2f} | {loaded:.2f} | {loaded / quiet:.2f} |")
    lines.append("\n(clips/s: 16-frame clips per second; a watch window counts as its frames / 16 clips)")
    return lines


def _per_call(job, at_least: float) -> float:
    """Mean seconds per call of `job`, over calls for at least `at_least` seconds (2 calls at least)."""
    start, n = time.perf_counter(), 0
    while n < 2 or time.perf_counter() - start < at_least:
        job()
        n += 1
    return (time.perf_counter() - start) / n


# ------------------------------------------------------------------------------------------ report


def row_line(label: str, r: dict, quiet: dict | None) -> str:
    kept = "" if quiet is None else f"{(r['windows'] / r['stream_s']) / (quiet['windows'] / quiet['stream_s']):.2f}"
    return (f"| {label} | {r['load_start']:.2f} / {r['load_end']:.2f} | {r['stream_s']:.0f} | {r['windows']} | "
            f"{r['dropped']} | {r['late_frames']} ({r['read_lag_s']:.2f} s) | {r['latency_mean_ms']:.0f} / "
            f"{r['latency_p95_ms']:.0f} | {r['cpu_pct']:.0f} % | {r['busy_fraction']:.2f} ({1 - r['busy_fraction']:.2f}) | "
            f"{r['forward_s']:.3f} | {r['warmup_s']:.1f} | {r['peak_rss_mib']:.0f} | {kept} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="length of the stitched stream (default: %(default)s)")
    parser.add_argument("--video", type=Path, default=None, help="a 25 fps 320x240 video instead of the stitched one")
    parser.add_argument("--run", type=Path, default=None, help=f"a trained run (default: one trained once into {DEFAULT_RUN})")
    parser.add_argument("--models", default="i3d,run", help="watch rows: i3d, run or both (default: %(default)s; none: '')")
    parser.add_argument("--no-busy", action="store_true", help="no rows under the competing load")
    parser.add_argument("--engine-rounds", type=int, default=3, help="rounds of the engine section (0: skip it)")
    parser.add_argument("--no-variants", action="store_true", help="engine section: the default engine only")
    parser.add_argument("--wait", type=float, default=900.0, help="seconds in all to wait for a quiet machine")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(watch_once(args.child, args.video)))
        return 0
    t_start, loadwatch = time.perf_counter(), Loadwatch(args.wait)
    video = args.video or make_stream(args.seconds)
    names = {"i3d": "i3d-kinetics400", "run": str(ensure_run(args.run or DEFAULT_RUN))}
    from actionrec.models.backends import cpu_model

    print(f"# `watch` on a real-time 25 fps stream ({video.name}), defaults, {cpu_model()}, {os.cpu_count()} cores, "
          f"{time.strftime('%Y-%m-%d %H:%M')}\n")
    print("| model, load | load avg start / end | stream s | windows classified | windows dropped | frames read late "
          "(max lag) | latency mean / p95 ms | CPU (all cores) | engine busy (headroom) | s per forward | warm-up s | "
          "peak RSS MiB | kept |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    notes = []
    for key in [k for k in args.models.split(",") if k]:
        loadwatch.wait()
        quiet = watch_row(names[key], video, None)
        print(row_line(f"{key} ({quiet['backend']} {quiet['precision']}), quiet", quiet, None), flush=True)
        notes += [f"{key} quiet: {quiet['summary']}"] + quiet["notes"]
        if not args.no_busy:
            loaded = watch_row(names[key], video, quiet["wall_s"] + 60)
            print(row_line(f"{key}, with a 2-thread matmul process", loaded, quiet), flush=True)
            notes += [f"{key} loaded: {loaded['summary']}"] + loaded["notes"]
    print("\n" + "\n".join(f"- {n}" for n in notes))
    if args.engine_rounds:
        print("\n".join(engine_degradation("i3d-kinetics400", args.engine_rounds, not args.no_variants, 600, loadwatch)))
    print(f"\n(total bench time {time.perf_counter() - t_start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
