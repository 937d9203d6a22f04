"""Issue #20's ratio targets, side by side in one run: `timeline` with the Kinetics model at its defaults and the
study's workload (`actionrec train ../shared/ucf101_subset --split 1`, cold feature cache, defaults), each against
the fp32 compute limit, at --precision auto (int8 where assets/precision.json says so) and float (the previous choice).

    python bench/bench_targets.py [--seconds 30] [--rounds 3] [--split 1] [--precisions auto,float] [--skip-train]

The fp32 compute limit is what a compute-bound fp32 conv3d (bench_i3d.py's probe, 256->256 3x3x3 on 8x28x28,
measured in this process before and after) would take for the network's work:
* timeline: the work of computing each frame once (I3D's GFLOP per 16-frame clip / 16, at 25 fps), so the limit's
  real-time factor is probe GFLOP/s / (GFLOP per frame x 25); the ratio is the measured RTF over it (target >= 1.2).
* the study's workload: the clips it computes (metrics.json's backbone_clips) x GFLOP per clip / probe GFLOP/s; the
  ratio is the wall time over it (target <= 0.8).
Where timeline's time goes: decode alone (the same frames read and resized by the library's decoder, a separate
pass), the network (the engine's forwards, timed inside the pass: they overlap the decode thread), and the rest;
the timeline passes of each precision are interleaved, medians reported.
The study's workload runs with a temporary $ACTIONREC_HOME: the weights and the compiled networks (a one-time
per-machine cost) are linked from the real one, the feature cache is empty.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import actionrec  # noqa: E402
from actionrec.engine import Engine  # noqa: E402
from actionrec.apps.timeline import timeline  # noqa: E402
from bench_i3d import probes, rounds  # noqa: E402

UCF = Path(__file__).resolve().parents[2] / "shared" / "ucf101_subset"


def probe_gflops() -> float:
    jobs, gflop = probes()
    return gflop["probe fp32"] / rounds({"probe fp32": jobs["probe fp32"]}, 7)["probe fp32"]


class ForwardClock:
    """Seconds spent in Engine.forward (the network) while it is installed."""

    def __enter__(self):
        self.seconds, self._forward = 0.0, Engine.forward

        def timed(engine, *args, **kwargs):
            start = time.perf_counter()
            try:
                return self._forward(engine, *args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        Engine.forward = timed
        return self

    def __exit__(self, *exc):
        Engine.forward = self._forward


def timeline_rows(video: Path, seconds: float, precisions: list[str], limit_rtf: float, out: Path, n: int) -> list[str]:
    """`n` timed passes per precision, interleaved (the order rotating), after one untimed pass each (compiles its
    shapes once: warm per machine, like a second run); medians of wall and network seconds."""
    models = {p: actionrec.load_model("i3d-kinetics400", precision=p) for p in precisions}
    for model in models.values():
        timeline(video, model, cache=False)
    walls, networks = {p: [] for p in precisions}, {p: [] for p in precisions}
    for r in range(n):
        for p in precisions[r % len(precisions):] + precisions[: r % len(precisions)]:
            with ForwardClock() as clock:
                start = time.perf_counter()
                timeline(video, models[p], cache=False).write_all(out / p)
                walls[p].append(time.perf_counter() - start)
            networks[p].append(clock.seconds)
    rows = []
    for p, model in models.items():
        wall, network = statistics.median(walls[p]), statistics.median(networks[p])
        rtf = seconds / wall
        rows.append(f"| timeline, i3d-kinetics400 defaults, {seconds:.0f} s video | {p} -> {model.engine.precision} | "
                    f"{wall:.1f} s: network {network:.1f}, rest {wall - network:.1f} | RTF {rtf:.2f} | "
                    f"limit RTF {limit_rtf:.2f} | **{rtf / limit_rtf:.2f}** of the limit |")
    return rows


def decode_seconds(video: Path, frames: int) -> float:
    from actionrec.data.video import read_clip

    start = time.perf_counter()
    read_clip(video, n=frames, short_side=256, target_fps=25.0)
    return time.perf_counter() - start


def study_row(split: int, precision: str, probe: float) -> str:
    from actionrec.data.datasets import load_dataset
    from actionrec.data.splits import make_splits
    from actionrec.training.trainer import TrainConfig, train

    real_home = Path(os.environ.get("ACTIONREC_HOME") or Path.home() / ".cache" / "actionrec")
    home = Path(tempfile.mkdtemp(prefix="bench-targets-home-"))
    for name in ("weights", "compiled"):
        (home / name).symlink_to(real_home / name)
    saved = {k: os.environ.get(k) for k in ("ACTIONREC_HOME", "ACTIONREC_PRECISION")}
    os.environ["ACTIONREC_HOME"], os.environ["ACTIONREC_PRECISION"] = str(home), precision
    try:
        parts = make_splits(load_dataset(str(UCF), split=split, say=lambda m: None), seed=0)
        start = time.perf_counter()
        metrics = train(parts, home / "run", TrainConfig(), say=lambda m: None, progress=False)
        wall = time.perf_counter() - start
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
        shutil.rmtree(home, ignore_errors=True)
    clips, gflop = metrics["feature_cache"]["backbone_clips"], metrics["model"]["gflops_per_clip"]
    limit = clips * gflop / probe
    timing = metrics["timing"]
    phases = ", ".join(f"{k} {timing[k]:.1f}" for k in ("features", "head", "finetune", "evaluate", "int8_check") if k in timing)
    check = metrics.get("int8_check") or {}
    checked = (f"; validation int8 {100 * check['int8_val_accuracy']:.1f} % / {check['float_precision']} "
               f"{100 * check['float_val_accuracy']:.1f} %" if check.get("checked") else "")
    return (f"| train ucf101_subset split {split}, defaults, cold cache | {precision} -> {metrics['engine']['precision']} | "
            f"{wall:.1f} s: {phases} | {clips} clips x {gflop} GFLOP | limit {limit:.1f} s | **{wall / limit:.2f}x** the "
            f"limit | test {100 * metrics['test_accuracy']:.1f} %{checked} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--split", type=int, default=1)
    parser.add_argument("--precisions", default="auto,float")
    parser.add_argument("--rounds", type=int, default=3, help="timed timeline passes per precision")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--skip-timeline", action="store_true")
    args = parser.parse_args()
    from bench_timeline import make_video
    from actionrec.training.trainer import gflops_per_clip

    precisions = args.precisions.split(",")
    work = Path(tempfile.mkdtemp(prefix="bench-targets-"))
    print(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())} at start; {time.strftime('%Y-%m-%d %H:%M')}")
    probe = probe_gflops()
    print(f"fp32 conv3d probe: {probe:.0f} GFLOP/s", flush=True)
    try:
        if not args.skip_timeline:
            video = make_video(work / "video.mp4", args.seconds, (320, 240))
            network = actionrec.load_model("i3d-kinetics400", fast=False)
            per_frame = gflops_per_clip(network, 16) / 16
            limit_rtf = probe / (per_frame * 25.0)
            print(f"| decode alone ({args.seconds:.0f} s, 320x240 to 256 short side) | - | "
                  f"{decode_seconds(video, int(args.seconds * 25)):.1f} s | | | |", flush=True)
            for row in timeline_rows(video, args.seconds, precisions, limit_rtf, work / "out", args.rounds):
                print(row, flush=True)
        if not args.skip_train:
            for precision in precisions:
                print(study_row(args.split, precision, probe), flush=True)
        print(f"fp32 conv3d probe again: {probe_gflops():.0f} GFLOP/s; load average "
              f"{' '.join(f'{v:.2f}' for v in os.getloadavg())} at the end")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
