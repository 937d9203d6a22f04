"""How fast `actionrec` starts: whole commands timed from outside (start to exit), this checkout against a baseline.

Commands (each run in a fresh interpreter, warm file caches; the first run of each is a warm-up, not counted):

* `import torch` alone (the floor a command that imports it cannot go below);
* `actionrec --help`, `actionrec weights --help`, `actionrec predict --help`;
* `actionrec predict CLIP` (one real clip, i3d-kinetics400, warm: the weights and the compiled network are cached
  by the warm-up run).

With --baseline DIR (a checkout of the code to compare with, e.g. `git archive BASE actionrec | tar -x -C DIR`) each
command runs alternately on this checkout and on DIR (A B A B ...), so that a change in the machine's load hits both;
the table gives the median wall seconds of each and their ratio. The load average is printed: the machine may be
shared.

Run:  python bench/bench_startup.py [--runs 5] [--baseline DIR] [--clip VIDEO]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT.parent / "shared" / "realclips"


def default_clip() -> str:
    clips = sorted(p for p in CLIP.iterdir() if p.suffix.lower() in (".avi", ".mp4")) if CLIP.is_dir() else []
    if not clips:
        sys.exit(f"{CLIP}: no clip; pass --clip VIDEO")
    return str(clips[0])


def run_once(argv: list[str], tree: Path) -> float:
    """Wall seconds of `python ARGV` with `tree` first on the import path (exit status 0 required)."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    start = time.perf_counter()
    child = subprocess.run([sys.executable, *argv], env=env, cwd=tree, capture_output=True, timeout=600)
    seconds = time.perf_counter() - start
    if child.returncode != 0:
        sys.exit(f"{' '.join(argv)} in {tree}: exit {child.returncode}: {child.stderr.decode()[-500:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--baseline", type=Path, default=None, help="a checkout to compare with (its actionrec/ folder's parent)")
    parser.add_argument("--clip", default=None)
    args = parser.parse_args()
    clip = args.clip or default_clip()
    commands = {
        "import torch": ["-c", "import torch"],
        "actionrec --help": ["-m", "actionrec", "--help"],
        "actionrec weights --help": ["-m", "actionrec", "weights", "--help"],
        "actionrec predict --help": ["-m", "actionrec", "predict", "--help"],
        f"actionrec predict {Path(clip).name}": ["-m", "actionrec", "predict", clip],
    }
    trees = {"this": ROOT} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
    load_before = os.getloadavg()[0]
    rows = []
    for name, argv in commands.items():
        times: dict[str, list[float]] = {t: [] for t in trees}
        for tree in trees.values():
            run_once(argv, tree)  # warm-up
        for _ in range(args.runs):
            for label, tree in trees.items():
                times[label].append(run_once(argv, tree))
        rows.append((name, {t: statistics.median(v) for t, v in times.items()}, {t: (min(v), max(v)) for t, v in times.items()}))
        print(f"{name}: " + ", ".join(f"{t} {statistics.median(v):.2f} s" for t, v in times.items()), file=sys.stderr)
    print(f"{os.cpu_count()} cores, load average (1 min) {load_before:.1f} before, {os.getloadavg()[0]:.1f} after; "
          f"median of {args.runs} runs (min-max)\n")
    header = "| command | this checkout, s |" + (" baseline, s | this / baseline |" if args.baseline else "")
    print(header)
    print("|---|---|" + ("---|---|" if args.baseline else ""))
    for name, median, spread in rows:
        line = f"| `{name}` | {median['this']:.2f} ({spread['this'][0]:.2f}-{spread['this'][1]:.2f}) |"
        if args.baseline:
            line += (f" {median['baseline']:.2f} ({spread['baseline'][0]:.2f}-{spread['baseline'][1]:.2f}) |"
                     f" {median['this'] / median['baseline']:.2f} |")
        print(line)


if __name__ == "__main__":
    main()
