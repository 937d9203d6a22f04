"""`actionrec timeline` on this CPU: real-time factor (seconds of video per second of wall time) and peak memory.

Videos are generated: camera-like texture (tests/videos.textured_frames, 320x240 by default, like UCF101) at 25 fps,
MPEG-4 in .mp4 (OpenCV's writer), as long as asked. Each measurement runs in a fresh process, so that its peak RSS
(getrusage ru_maxrss) is its own; RSS (/proc/self/status VmRSS) is also sampled every 0.1 s during the pass (the table shows the
highest value in each quarter of the windows, and while the segments and output files are made), to show whether memory grows with the length of the video.

Rows:

* RTF, a run's defaults: I3D on 16-frame windows (0.64 s at 25 fps) every 0.5 s, 8 windows per pass. A run is I3D with
  a small head, so i3d-kinetics400 with --window 0.64 costs the same (or pass --run RUN to time a real run).
* RTF, i3d-kinetics400's defaults: 64-frame windows (2.56 s) every 1.28 s, 2 windows per pass.
* Memory for each --memory-minutes: the same streaming pass (decode thread, preprocessing to 3x16x224x224, batches,
  per-window probabilities, segments, all output files) with I3D replaced by a stub that returns 400 logits at once
  (--memory-model stub, the default: the pass then runs at decode speed, so a 10-minute video takes a minute or two
  instead of most of an hour here). --memory-model i3d uses the real network (slow: RTF ~0.25 on 2 cores).

The 1-hour line extrapolates the growth inside the longest memory pass (its 2nd quarter to its last, after warm-up).

Each RTF row is measured for several paths in the same run (``--paths``): the engine's default (backend and precision
chosen from the CPU; I3D run once per frame, per-step logits averaged into windows), the same engine with each window
a clip of its own, and the plain eager fp32 forward, so the gains are measured side by side, not remembered.

Run:  python bench/bench_timeline.py [--rtf-seconds 30] [--memory-minutes 2,10] [--memory-model stub|i3d] [--run RUN] [--paths fast,windowed,eager]
      (about 10 minutes on 2 busy cores with the defaults; prints a Markdown table)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def make_video(path: Path, seconds: float, size: tuple[int, int], fps: float = 25.0) -> Path:
    """A camera-like video of `seconds` (a 5 s loop of texture, so generation stays fast), MPEG-4 in .mp4."""
    import cv2
    import numpy as np

    from videos import textured_frames

    if path.exists():
        return path
    loop = textured_frames(int(5 * fps), size[1], size[0])[:, :, :, ::-1]
    loop = [np.ascontiguousarray(f) for f in loop]
    tmp = path.with_suffix(".part.mp4")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    if not writer.isOpened():
        raise SystemExit("OpenCV cannot write mp4v here")
    for i in range(int(round(seconds * fps))):
        writer.write(loop[i % len(loop)])
    writer.release()
    os.replace(tmp, path)
    return path


# ----------------------------------------------------------------------------------------------- one measurement


def child(config: dict) -> dict:
    import torch
    from torch import nn

    from actionrec import load_model
    from actionrec.apps.timeline import build_timeline
    from actionrec.apps.windows import window_probabilities

    t0 = time.perf_counter()
    if config["model"] == "stub":
        from actionrec.models.i3d import I3D_KINETICS400
        from actionrec.models.info import ModelInfo

        class Stub(nn.Module):
            def __init__(self):
                super().__init__()
                self.info = ModelInfo(name="stub", spec=I3D_KINETICS400, categories=I3D_KINETICS400.categories,
                                      weights_sha256="", predict_frames=16, identity="")
                self.w = nn.Parameter(torch.zeros(1), requires_grad=False)

            def forward(self, x):
                return x.mean(dim=(1, 2, 3, 4))[:, None] * 0 + torch.zeros(x.shape[0], len(self.info.categories))

        model = Stub()
    else:
        model = load_model(config["model"])
    from actionrec.engine import Engine

    path = config.get("path", "fast")  # fast: the engine's default; windowed: the same, each window a clip; eager: plain fp32
    engine = Engine(model, fast=path != "eager")
    load_s = time.perf_counter() - t0
    rss_loaded = rss_mib()
    import threading

    quarter = [0]  # which quarter of the windows is being computed (set by the progress callback)
    peaks = [0.0, 0.0, 0.0, 0.0, 0.0]  # highest RSS seen in each quarter, then while writing the outputs (every 0.1 s)
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.1):
            peaks[quarter[0]] = max(peaks[quarter[0]], rss_mib())

    def progress(finished: int, total: int) -> None:
        quarter[0] = min(3, int(4 * finished / max(total, 1)))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    torch.set_num_threads(int(config.get("threads") or torch.get_num_threads()))
    t0 = time.perf_counter()
    wp = window_probabilities(config["video"], engine, config.get("window"), config.get("stride"),
                              batch_size=config.get("batch_size"), cache=False, progress=progress,
                              per_step=False if path == "windowed" else None)
    quarter[0] = 4
    tl = build_timeline(wp)
    with tempfile.TemporaryDirectory() as out:
        tl.write_all(out)
    wall = time.perf_counter() - t0
    done.set()
    sampler.join()
    return {
        "windows": len(wp.starts), "window": wp.window, "stride": wp.stride, "frames": wp.frames,
        "duration": wp.duration, "wall": wall, "rtf": wp.duration / wall, "load_s": load_s,
        "rss_loaded": rss_loaded, "rss_quarters": peaks[:4], "rss_outputs": peaks[4], "probs_mib": wp.probs.nbytes / 2**20,
        "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "threads": torch.get_num_threads(),
    }


def measure(config: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(config)], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"measurement failed: {config}\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rtf-seconds", type=float, default=30.0, help="video length for the real-time factor rows (default: 30)")
    parser.add_argument("--memory-minutes", default="2,10", help="video lengths for the memory rows (default: 2,10)")
    parser.add_argument("--memory-model", choices=("stub", "i3d"), default="stub", help="network in the memory rows (default: stub)")
    parser.add_argument("--run", default=None, help="a trained run directory for the first RTF row (default: i3d-kinetics400 at --window 0.64)")
    parser.add_argument("--size", default="320x240", help="frame size of the generated videos (default: 320x240)")
    parser.add_argument("--paths", default="fast,windowed,eager",
                        help="paths for the RTF rows, measured side by side: fast (the engine's default: backend and precision "
                             "by CPU, I3D once per frame), windowed (the same engine, each window a clip of its own), eager (the "
                             "plain fp32 PyTorch forward) (default: fast,windowed,eager)")
    parser.add_argument("--skip-rtf", action="store_true")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return

    import torch

    size = tuple(int(v) for v in args.size.lower().split("x"))
    minutes = [float(m) for m in args.memory_minutes.split(",") if m.strip()]
    cache = Path(tempfile.gettempdir()) / "actionrec-bench-timeline"
    cache.mkdir(exist_ok=True)
    rows = []
    if not args.skip_rtf:
        video = make_video(cache / f"rtf_{args.rtf_seconds:g}s_{args.size}.mp4", args.rtf_seconds, size)
        first = {"model": args.run, "video": str(video)} if args.run else {"model": "i3d-kinetics400", "window": 0.64, "video": str(video)}
        for path in [p.strip() for p in args.paths.split(",") if p.strip()]:
            rows.append((f"a run's defaults{'' if args.run else ' (i3d-kinetics400, --window 0.64)'}, {path}", args.rtf_seconds / 60,
                         measure({**first, "path": path})))
            rows.append((f"i3d-kinetics400 defaults, {path}", args.rtf_seconds / 60,
                         measure({"model": "i3d-kinetics400", "video": str(video), "path": path})))
    for m in minutes:
        video = make_video(cache / f"mem_{m:g}min_{args.size}.mp4", m * 60, size)
        model = "stub" if args.memory_model == "stub" else "i3d-kinetics400"
        config = {"model": model, "video": str(video)}
        if model != "stub":
            config["window"] = 0.64
        rows.append((f"memory: {'stub network' if model == 'stub' else 'I3D'}, run defaults", m, measure(config)))

    print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} cores (load {os.getloadavg()[0]:.1f}), "
          f"torch {torch.__version__}, video {args.size} at 25 fps\n")
    print("| pass | video | windows (frames, window, stride) | wall | RTF (video s / wall s) | RSS after load | max RSS in each quarter of the windows | max RSS writing the outputs | peak RSS |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, mins, r in rows:
        quarters = " / ".join(f"{q:.0f}" if q else "-" for q in r["rss_quarters"])
        print(f"| {name} | {mins:g} min | {r['windows']} ({r['frames']}, {r['window']:.2f} s, {r['stride']:.2f} s) | {r['wall']:.1f} s "
              f"| {r['rtf']:.2f} | {r['rss_loaded']:.0f} MiB | {quarters} MiB | {r['rss_outputs']:.0f} MiB | {r['peak']:.0f} MiB |")
    mem = [(mins, r) for name, mins, r in rows if name.startswith("memory")]
    if mem:
        mins, r = max(mem, key=lambda m: m[0])
        q = r["rss_quarters"]
        # Growth inside the longest pass, from its second quarter (after warm-up) to its last, per minute of video.
        slope = (q[3] - q[1]) / (mins / 2) if q[1] and q[3] else 0.0
        print(f"\nlongest pass ({mins:g} min): max RSS {q[1]:.0f} MiB in its 2nd quarter, {q[3]:.0f} MiB in its last: "
              f"{slope:+.2f} MiB per minute of video; the per-window probabilities themselves take "
              f"{r['probs_mib'] / mins:.2f} MiB per minute.")
        print(f"extrapolated to 60 min: peak RSS about {r['peak'] + max(slope, 0) * (60 - mins):.0f} MiB "
              f"(this pass's peak + max(growth, 0) x the extra minutes).")
        if len(mem) >= 2:
            print("peak RSS by video length: " + ", ".join(f"{m:g} min {x['peak']:.0f} MiB" for m, x in mem)
                  + " (separate processes; differences of ~100 MiB between processes are the allocator's, see the quarters)")
        rtf_rows = [x for name, _, x in rows if name.startswith("a run") and name.endswith(", fast")]
        if rtf_rows:
            print(f"a 1-hour video with a run's defaults takes about {1 / rtf_rows[0]['rtf']:.1f} h of wall time here.")

if __name__ == "__main__":
    main()
