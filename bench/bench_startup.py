"""How fast `actionrec` starts: whole commands timed from outside (start to exit), this checkout against a baseline.

Commands (each run in a fresh interpreter, warm file caches; the first run of each is a warm-up, not counted):

* `import torch` alone (the floor a command that imports it cannot go below), `import openvino` alone;
* `actionrec --help` and the help of commands whose defaults live in different layers: `weights`, `predict`,
  `train`, `timeline`, `watch` (tests/test_startup.py checks every command's help imports neither library);
* `actionrec predict CLIP` (one real clip, i3d-kinetics400, warm: the weights, the compiled network and its card
  are cached by the warm-up run, so it runs without PyTorch: actionrec/ready.py);
* `actionrec timeline CLIP --no-cache --quiet --out TMP` (the same clip as a short video, its windows computed: warm
  weights and compiled network, no cached probabilities);
* the floor of a warm one-clip `predict` (this checkout only; not a product path, a measurement): the same clip
  decoded and preprocessed by the library (data.video, data.transforms.preprocess_array) and run by OpenVINO from
  the IR the engine cached, in a process that imports nothing else (no CLI, no card, no decode thread); it must
  give predict's top-1. What `predict` adds to it is the command line, the card's checks and the pipeline.

With --baseline DIR (a checkout of the code to compare with, e.g. `git archive BASE actionrec | tar -x -C DIR`) each
command runs alternately on this checkout and on DIR (A B A B ...), so that a change in the machine's load hits both;
the table gives the median wall seconds of each and their ratio. The load average is printed: the machine may be
shared.

Run:  python bench/bench_startup.py [--runs 5] [--baseline DIR] [--clip VIDEO]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
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


FLOOR = """
import json, sys, types
import numpy as np
import openvino
from actionrec.data.sampling import central_clip
from actionrec.data.transforms import preprocess_array
from actionrec.data.video import probe, read_clips
a = json.loads(sys.argv[1])
spec = types.SimpleNamespace(**a["spec"])
meta = probe(a["clip"])
clip = read_clips(a["clip"], [central_clip(meta.num_frames, meta.fps, n=a["frames"], target_fps=spec.fps)], short_side=spec.resize)[0]
core = openvino.Core()
network = core.read_model(a["ir"])
network.reshape([-1, 3, a["frames"], spec.crop, spec.crop])
logits = core.compile_model(network, "CPU", a["config"])(preprocess_array(clip.frames, spec)[None])[1][0]
top = a["categories"][int(np.argmax(logits))]
assert "torch" not in sys.modules and top == a["top"], (top, a["top"])
"""


def floor_argv(clip: str) -> list[str]:
    """`python -c FLOOR ARGS` for `clip` (see the module doc): the engine's cached IR and its settings, read here."""
    sys.path.insert(0, str(ROOT))
    from actionrec import load_model, predict
    from actionrec.models.backends import HEAD, OpenVINONet

    model = load_model("i3d-kinetics400")
    info, engine = model.info, model.engine
    net = OpenVINONet(engine.model, engine.precision)
    spec = {k: getattr(info.spec, k) for k in ("fps", "resize", "crop", "mean", "std")}
    args = {"clip": clip, "frames": info.predict_frames, "spec": spec, "categories": list(info.categories),
            "ir": str(net.ir_path(HEAD, (3, info.predict_frames, info.spec.crop, info.spec.crop))),
            "config": net.config(), "top": predict(clip, model)[0].top(1)[0][0]}
    return ["-c", FLOOR, json.dumps(args)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--baseline", type=Path, default=None, help="a checkout to compare with (its actionrec/ folder's parent)")
    parser.add_argument("--clip", default=None)
    args = parser.parse_args()
    clip = args.clip or default_clip()
    out = tempfile.mkdtemp(prefix="bench_startup_")  # timeline's files (not the checkout)
    commands = {
        "import torch": ["-c", "import torch"],
        "import openvino": ["-c", "import openvino"],
        "actionrec --help": ["-m", "actionrec", "--help"],
        **{f"actionrec {c} --help": ["-m", "actionrec", c, "--help"] for c in ("weights", "predict", "train", "timeline", "watch")},
        f"actionrec predict {Path(clip).name}": ["-m", "actionrec", "predict", clip],
        f"actionrec timeline {Path(clip).name} --no-cache": ["-m", "actionrec", "timeline", clip, "--no-cache", "--quiet",
                                                            "--out", out],
    }
    floor = f"floor: {Path(clip).name} through the cached IR, no PyTorch (see the module doc)"
    commands[floor] = floor_argv(clip)
    every = {"this": ROOT} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
    load_before = os.getloadavg()[0]
    rows = []
    for name, argv in commands.items():
        trees = {"this": ROOT} if name == floor else every
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
        if args.baseline and "baseline" not in median:
            line += " - | - |"
        elif args.baseline:
            line += (f" {median['baseline']:.2f} ({spread['baseline'][0]:.2f}-{spread['baseline'][1]:.2f}) |"
                     f" {median['this'] / median['baseline']:.2f} |")
        print(line)


if __name__ == "__main__":
    main()
