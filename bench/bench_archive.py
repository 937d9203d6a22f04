"""Archive mode against one `predict` call on the same real clips: clips per second, side by side in one run.

The clips: --clips real UCF101 clips from ../shared/ucf101_subset (spread evenly over its sorted list), written as a
.txt list (the archive mode's input). The model: i3d-kinetics400 at `predict`'s defaults (64 frames, the central clip,
batch 4), on the engine the CLI uses (backend and precision chosen from the CPU). It is loaded and compiled once, and
one clip is predicted first, so no way pays the compile.

Ways, each timed end to end, in turn, --rounds times (the machine may be shared: the load average is printed):

* predict: one `predict_iter` over all the clips (what `actionrec predict a.avi b.avi ...` runs);
* archive: `process_archive` on the list (what `actionrec predict list.txt --out OUT` runs): one engine stream for the
  whole list, each clip's JSON written and its index line appended as it completes, summary.json at the end;
* archive, per video: the same archive job with one `predict_iter` (one Engine.map) per video, as before the one
  stream: decode-ahead and batching stop at each video's end.

Run:  python bench/bench_archive.py [--clips 100] [--rounds 1] [--ways predict,archive,per-video]
      (prints a Markdown table and the ratio archive / predict)
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "ucf101_subset"


def real_clips(count: int) -> list[str]:
    """`count` real UCF101 clips, spread evenly over the sorted list of the subset."""
    videos = sorted(str(p) for p in DATA.rglob("*.avi"))
    if len(videos) < count:
        sys.exit(f"{DATA}: {len(videos)} clips, fewer than --clips {count}")
    step = len(videos) / count
    return [videos[int(k * step)] for k in range(count)]


def run_way(way: str, clips: list[str], listing: Path, model, workdir: Path) -> float:
    """Seconds for `way` over every clip."""
    from actionrec.apps.archive import one_at_a_time, process_archive
    from actionrec.apps.predict import predict_iter

    out = Path(tempfile.mkdtemp(prefix=f"{way}-", dir=workdir))
    start = time.perf_counter()
    if way == "predict":
        done = sum(1 for _ in predict_iter(clips, model))
    elif way == "archive":
        stream = lambda videos, on_error: ((p.video, p.to_dict()) for p in predict_iter(videos, model, on_error=on_error))  # noqa: E731
        done = process_archive(listing, out, stream, show_progress=False)["done"]
    else:
        done = process_archive(listing, out, one_at_a_time(lambda v: next(predict_iter([v], model)).to_dict()),
                               show_progress=False)["done"]
    seconds = time.perf_counter() - start
    if done != len(clips):
        sys.exit(f"{way}: {done} of {len(clips)} clips done")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--ways", default="predict,archive,per-video")
    args = parser.parse_args()

    from actionrec import load_model
    from actionrec.apps.predict import predict_iter

    clips = real_clips(args.clips)
    ways = args.ways.split(",")
    model = load_model("i3d-kinetics400")
    list(predict_iter(clips[:1], model))  # compile and warm up
    load_before = os.getloadavg()
    times: dict[str, list[float]] = {w: [] for w in ways}
    with tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp) / "clips.txt"
        listing.write_text("".join(f"{c}\n" for c in clips))
        for _ in range(args.rounds):
            for way in ways:
                times[way].append(run_way(way, clips, listing, model, Path(tmp)))
                print(f"{way}: {times[way][-1]:.1f} s", file=sys.stderr)
    load_after = os.getloadavg()
    engine = model.engine
    print(f"{len(clips)} real UCF101 clips, i3d-kinetics400 (64 frames, central clip, batch 4), {engine.backend} "
          f"{engine.precision}; {platform.processor() or platform.machine()}, {os.cpu_count()} cores; load average "
          f"(1 min) {load_before[0]:.1f} before, {load_after[0]:.1f} after\n")
    print("| way | seconds (best of rounds) | clips/s | vs predict |")
    print("|---|---|---|---|")
    best = {w: min(t) for w, t in times.items()}
    for way in ways:
        ratio = f"{best['predict'] / best[way]:.2f}" if "predict" in best else "-"
        print(f"| {way} | {best[way]:.1f} | {len(clips) / best[way]:.2f} | {ratio} |")


if __name__ == "__main__":
    main()
