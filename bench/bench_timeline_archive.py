"""`timeline` over an archive: one engine stream for the whole list against one stream per video, side by side.

The clips: --clips real UCF101 clips from ../shared/ucf101_subset (spread evenly over its sorted list), written as a
.txt list (the archive mode's input). The model: i3d-kinetics400 at `timeline`'s defaults (2.56 s windows every
1.28 s from per-step logits), on the engine the CLI uses; no timeline cache (every clip computed). It is loaded
once, and every clip is run once first (untimed): OpenVINO compiles each new input shape once, and each clip's last
chunk of frames has a length of its own, so the way that ran first would pay every compile.

Ways, each a whole `process_archive` job (each clip's JSON written, its index line appended, summary.json at the end):

* stream: `timeline_iter` over the list, one engine stream (what `actionrec timeline list.txt --out OUT` runs now):
  decode-ahead and batches cross video boundaries;
* per-video: one `timeline` call (one Engine.map) per video, as before.

They run in the order stream, per-video, per-video, stream (--rounds 2, the default), so a load that drifts weighs
on both alike; the table gives each way's total over its runs.

Run:  python bench/bench_timeline_archive.py [--clips 20] [--rounds 2]
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
from bench_archive import real_clips  # noqa: E402  (the same clips as the predict archive bench)


def run_way(way: str, listing: Path, count: int, model, workdir: Path) -> float:
    """Seconds for `way` over every clip of the list."""
    from actionrec.apps.archive import one_at_a_time, process_archive
    from actionrec.apps.timeline import timeline, timeline_iter

    out = Path(tempfile.mkdtemp(prefix=f"{way}-", dir=workdir))
    start = time.perf_counter()
    if way == "stream":
        stream = lambda videos, on_error: ((t.video, t.to_dict()) for t in  # noqa: E731
                                           timeline_iter(videos, model, cache=False, on_error=on_error))
    else:
        stream = one_at_a_time(lambda v: timeline(v, model, cache=False).to_dict())
    done = process_archive(listing, out, stream, show_progress=False)["done"]
    seconds = time.perf_counter() - start
    if done != count:
        sys.exit(f"{way}: {done} of {count} clips done")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    from actionrec import load_model
    from actionrec.apps.timeline import timeline_iter

    clips = real_clips(args.clips)
    model = load_model("i3d-kinetics400")
    for _ in timeline_iter(clips, model, cache=False):  # compile every input shape (each clip's last chunk has its own)
        pass
    load_before = os.getloadavg()
    order = [("stream", "per-video") if k % 2 == 0 else ("per-video", "stream") for k in range(args.rounds)]
    times: dict[str, list[float]] = {"stream": [], "per-video": []}
    with tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp) / "clips.txt"
        listing.write_text("".join(f"{c}\n" for c in clips))
        for ways in order:
            for way in ways:
                times[way].append(run_way(way, listing, len(clips), model, Path(tmp)))
                print(f"{way}: {times[way][-1]:.1f} s (load {os.getloadavg()[0]:.1f})", file=sys.stderr)
    load_after = os.getloadavg()
    engine = model.engine
    print(f"{len(clips)} real UCF101 clips x {args.rounds} rounds, i3d-kinetics400 timeline defaults, {engine.backend} "
          f"{engine.precision}; {platform.processor() or platform.machine()}, {os.cpu_count()} cores; load average "
          f"(1 min) {load_before[0]:.1f} before, {load_after[0]:.1f} after\n")
    print("| way | seconds (all rounds) | clips/s | vs per-video |")
    print("|---|---:|---:|---:|")
    total = {w: sum(t) for w, t in times.items()}
    for way in ("stream", "per-video"):
        clips_done = len(clips) * len(times[way])
        print(f"| {way} | {total[way]:.1f} | {clips_done / total[way]:.2f} | {total['per-video'] / total[way]:.2f} |")


if __name__ == "__main__":
    main()
