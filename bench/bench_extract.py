"""Feature extraction throughput with 1 process and with N torchrun ranks on this machine, and the arithmetic for many
machines: all of UCF101 (13,320 clips) and 1,000 hours of video, from the measured cost per clip and per frame.

Each run is the real command on a cold feature cache (`actionrec train` with 1 head epoch and no fine-tuning, so the
time is the extraction's): decoding, preprocessing and the frozen I3D on every clip, balanced over the ranks by
duration, each rank with cores / ranks threads. The clips are real UCF101 clips (../shared/ucf101_subset, 320x240
XVID at 25 fps), the first `--clips` of them in a stratified order. Other work on the machine skews the figures, so
the bench waits (up to --wait-min minutes) for the 1-minute load average to fall below --max-load and reports it.
Each run includes what every process pays once (loading the weights, the engine's first compile or its cached copy).

    python bench/bench_extract.py                      # 1 and 2 processes, 64 clips
    python bench/bench_extract.py --procs 1,2,4 --clips 128
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

UCF101_CLIPS = 13_320
HOURS = 1_000
FPS = 25  # I3D's frame rate: a long video is classified over every frame at 25 fps (timeline, archives)
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "ucf101_subset"


def load1() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def wait_for_quiet(max_load: float, minutes: float) -> float:
    """Wait until the 1-minute load is below `max_load` (at most `minutes`); the load when measuring starts."""
    deadline = time.monotonic() + minutes * 60
    while load1() >= max_load and time.monotonic() < deadline:
        print(f"load {load1():.2f} >= {max_load}: waiting", file=sys.stderr, flush=True)
        time.sleep(30)
    return load1()


def manifest(data: Path, clips: int, folder: Path) -> Path:
    """A CSV of the first `clips` videos, taken round-robin over the classes (so every class has some)."""
    by_class = {d.name: sorted(d.glob("*.avi")) for d in sorted((data / "UCF-101").iterdir()) if d.is_dir()}
    chosen = [(label, videos[i]) for i in range(max(map(len, by_class.values())))
              for label, videos in by_class.items() if i < len(videos)][:clips]
    path = folder / "clips.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "group"])
        for label, video in chosen:
            writer.writerow([str(video), label, video.stem.rsplit("_c", 1)[0]])
    return path


def run(procs: int, clips_csv: Path, folder: Path, frames: int) -> dict:
    """One cold-cache extraction with `procs` ranks; its wall time, the extraction's time and each rank's."""
    out, cache = folder / f"run{procs}", folder / f"cache{procs}"
    train = ["train", str(clips_csv), "--out", str(out), "--cache", str(cache), "--frames", str(frames),
             "--epochs", "1", "--finetune-epochs", "0", "--quiet", "--force"]
    launch = [sys.executable, "-m", "actionrec"] if procs == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(procs), "-m", "actionrec"]
    t0 = time.perf_counter()
    subprocess.run(launch + train, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    metrics = json.loads((out / "metrics.json").read_text())
    return {"procs": procs, "wall": wall, "features": metrics["timing"]["features"],
            "clips": metrics["feature_cache"]["backbone_clips"], "ranks": metrics["distributed"]["ranks"],
            "threads": metrics["distributed"]["threads_per_rank"]}


def span(seconds: float) -> str:
    """Minutes, hours or days, whichever reads best."""
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h" if seconds < 2 * 86400 else f"{seconds / 86400:.1f} d"


def report(results: list[dict], frames: int, loads: tuple[float, float], machines: list[int]) -> None:
    base = results[0]
    print(f"\nload (1 min) {loads[0]:.2f} before, {loads[1]:.2f} after; {os.cpu_count()} cores; {frames} frames per clip\n")
    print("| processes | threads each | clips | extraction s | clips/s | ms per frame | speed-up | job wall s |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        rate = r["clips"] / r["features"]
        print(f"| {r['procs']} | {r['threads']} | {r['clips']} | {r['features']:.1f} | {rate:.2f} | "
              f"{1000 / rate / frames:.1f} | {base['features'] / r['features']:.2f}x | {r['wall']:.1f} |")
    for r in results[1:]:
        print(f"\n{r['procs']} processes: " + "; ".join(
            f"rank {s['rank']} {s['videos']} videos ({s['duration']:.0f} s of video) in {s['seconds']:.1f} s" for s in r["ranks"]))
    best = max(results, key=lambda r: r["clips"] / r["features"])
    per_clip = best["features"] / best["clips"]  # seconds per clip on one such machine
    per_frame = per_clip / frames
    print(f"\nOn N machines like this one ({best['procs']} process(es) each, {per_clip:.2f} s per clip, "
          f"{per_frame * 1000:.1f} ms per frame):\n")
    print("| machines | UCF101, 13,320 clips (1 view) | 1,000 h of video, every frame at 25 fps |")
    print("|---:|---:|---:|")
    for n in machines:
        print(f"| {n} | {span(UCF101_CLIPS * per_clip / n)} | {span(HOURS * 3600 * FPS * per_frame / n)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the UCF101 subset folder")
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--procs", default="1,2", help="process counts to compare, the first is the baseline")
    parser.add_argument("--machines", default="1,2,4,8,16,64", help="machine counts for the arithmetic")
    parser.add_argument("--max-load", type=float, default=1.2)
    parser.add_argument("--wait-min", type=float, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-extract-") as tmp:
        folder = Path(tmp)
        clips_csv = manifest(args.data, args.clips, folder)
        before = wait_for_quiet(args.max_load, args.wait_min)
        results = [run(int(p), clips_csv, folder, args.frames) for p in args.procs.split(",")]
        report(results, args.frames, (before, load1()), [int(m) for m in args.machines.split(",")])


if __name__ == "__main__":
    main()
