"""From labelled segments to a model's timeline, on long videos stitched from real UCF101 clips (issue 17).

Two measurements, both through the CLI (`python -m actionrec`, one process per command, as a user runs it):

1. **Speed**: the time from "segments saved" to "timeline of a 5-minute video with the new model". The video is
   stitched from real clips of ../shared/ucf101_subset (3 classes in turn, training groups of split 1); its first
   `--labelled-seconds` are labelled as segments (one per clip). Cold: empty feature and timeline caches, `actionrec
   train labels.csv` then `actionrec timeline VIDEO --run RUN`. Warm (`--warm-rounds`, 2 by default, each after the
   one before): one more segment is labelled (the next clip), and the same two commands run again with the feature and timeline caches of the first round (only the new
   segment's clips are computed; the new model trained only its head, so its timeline is its head over the pooled
   features the first model's timeline cached: no window goes through the network). Each phase's seconds are
   reported, with the trainer's own split (features / head / fine-tuning / evaluate), the head it chose, whether the
   timeline came from cached features, and the machine's load.
2. **Timeline experiment**: a model trained from the labelled segments of two long stitched real videos (3 classes,
   4 clips per class each, training groups 8-25, with real footage of other actions from ../shared/realclips as
   background gaps) labels a third (test groups 1-7, other background); its time per class is compared with the
   truth. Settings: (a) the training videos marked fully labelled (`path,none` rows: their gaps become clips of the
   class `none`), (b) no background, only the run's thresholds say `none` (calibrated when the run recorded
   validation probabilities; the table says which). The timeline defaults and a few
   variants (smoothing, minimum segment) are scored from the same per-window probabilities (no second pass).

Run:  python bench/bench_label.py [--work DIR] [--minutes 5] [--labelled-seconds 90] [--warm-rounds 2] [--skip-speed] [--skip-experiment]
      (stitched videos are kept in --work between runs; a JSON of the results is written there)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

SHARED = ROOT.parent / "shared"
UCF = SHARED / "ucf101_subset" / "UCF-101"
REAL = SHARED / "realclips"
CLASSES = ("ApplyEyeMakeup", "ApplyLipstick", "BabyCrawling")
TRAIN_GROUPS = range(8, 26)  # split 1 tests groups 1-7
TEST_GROUPS = range(1, 8)
TOLERANCE = 3.0  # seconds: the target for the time per class


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def ucf_clips(cls: str, groups: range, per_group: int = 1) -> list[Path]:
    """The first `per_group` clips of each group of `cls`, group by group."""
    out = []
    for g in groups:
        out += sorted((UCF / cls).glob(f"v_{cls}_g{g:02d}_c*.avi"))[:per_group]
    return out


def interleave(per_class: dict[str, list[Path]], count: int) -> list[tuple[Path, str]]:
    """`count` clips of each class, the classes in turn."""
    return [(per_class[c][k], c) for k in range(count) for c in CLASSES]


def stitched(path: Path, clips: list[tuple[Path, str]]) -> list[tuple[str, float, float]]:
    """The video at `path` (made once, kept) and its true (label, start, end) of each clip."""
    from videos import stitch

    truth_file = path.with_suffix(".truth.json")
    if path.is_file() and truth_file.is_file():
        return [tuple(t) for t in json.loads(truth_file.read_text())]
    truth = stitch(path, [(str(c), label) for c, label in clips])
    truth_file.write_text(json.dumps(truth))
    return truth


def cli(*args: str) -> float:
    """Seconds `python -m actionrec ARGS` took (it must succeed)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "actionrec", *args], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(f"actionrec {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds


def write_manifest(path: Path, video: str, truth: list[tuple[str, float, float]], fully: bool = False) -> Path:
    rows = ["path,label,start,end"] + [f"{video},{label},{a:.2f},{b:.2f}" for label, a, b in truth if label in CLASSES]
    if fully:
        rows.append(f"{video},none,,")
    path.write_text("\n".join(rows) + "\n")
    return path


# ----------------------------------------------------------------------------------------------- 1. speed


def speed(work: Path, minutes: float, labelled_seconds: float, warm_rounds: int = 2) -> dict:
    per_class = {c: ucf_clips(c, TRAIN_GROUPS, 3) for c in CLASSES}
    clips = []
    for k in range(max(len(v) for v in per_class.values())):
        for c in CLASSES:
            if k < len(per_class[c]):
                clips.append((per_class[c][k], c))
    video = work / "five_minutes.mp4"
    truth = stitched(video, clips_until(clips, minutes * 60))
    duration = truth[-1][2]
    first = [t for t in truth if t[2] <= labelled_seconds]
    rounds = {}
    caches = work / "speed"
    shutil.rmtree(caches, ignore_errors=True)
    caches.mkdir()
    rounds_labelled = [("cold", first)] + [(f"warm {k + 1}" if warm_rounds > 1 else "warm", truth[: len(first) + 1 + k])
                                           for k in range(warm_rounds)]  # each warm round: one segment more
    for name, labelled in rounds_labelled:
        labels = write_manifest(work / f"labels_{name.replace(' ', '')}.csv", video.name, labelled)
        load_before = load()
        run = caches / f"run_{name.replace(' ', '')}"
        t_train = cli("train", str(labels), "--out", str(run), "--cache", str(caches / "features"), "--quiet")
        t_timeline = cli("timeline", str(video), "--run", str(run), "--cache", str(caches / "timelines"),
                         "--out", str(caches / f"timeline_{name.replace(' ', '')}"), "--quiet", "--json")
        metrics = json.loads((run / "metrics.json").read_text())
        config = json.loads((run / "config.json").read_text())
        rounds[name] = {"segments": len(labelled), "labelled_seconds": round(labelled[-1][2], 1),
                        "head": (metrics.get("head_fit") or {}).get("head"), "trained": config["trained_modules"],
                        "features_cached": _features_entries(caches / "timelines"),
                        "train": round(t_train, 1), "timeline": round(t_timeline, 1),
                        "total": round(t_train + t_timeline, 1),
                        "trainer": {k: round(v, 1) for k, v in metrics["timing"].items()},
                        "load": f"{load_before} -> {load()}"}
        print(f"speed {name}: {rounds[name]}", flush=True)
    return {"video_seconds": round(duration, 1), "clips": len(truth), "rounds": rounds}


def _features_entries(root: Path) -> int:
    """Entries of cached per-window features under a timeline cache (apps.windows)."""
    return len(list((root / "features").rglob("*.npz"))) if (root / "features").is_dir() else 0


def clips_until(clips: list[tuple[Path, str]], seconds: float, fps: float = 25.0) -> list[tuple[Path, str]]:
    """The first clips that add up to at least `seconds` (frame counts read from the files)."""
    from actionrec.data.video import probe

    out, total = [], 0.0
    for clip in clips:
        out.append(clip)
        total += probe(str(clip[0])).num_frames / fps
        if total >= seconds:
            return out
    raise SystemExit(f"only {total:.0f} s of clips for a {seconds:.0f} s video")


# ----------------------------------------------------------------------------------------------- 2. experiment


def experiment_videos(work: Path) -> dict[str, tuple[Path, list]]:
    """Two training videos and a test video: 4 clips per class in turn, background clips of other actions between."""
    train = {c: ucf_clips(c, TRAIN_GROUPS) for c in CLASSES}
    test = {c: ucf_clips(c, TEST_GROUPS) for c in CLASSES}
    backgrounds = {"train_a": REAL / "archery.avi", "train_b": REAL / "arm_wrestling.mp4",
                   "test": REAL / "cricket_shot_224.gif"}
    picks = {"train_a": interleave({c: v[0:4] for c, v in train.items()}, 4),
             "train_b": interleave({c: v[4:8] for c, v in train.items()}, 4),
             "test": interleave(test, 4)}
    out = {}
    for name, clips in picks.items():
        background = (backgrounds[name], "none")
        clips = clips[:4] + [background] + clips[4:9] + [background] + clips[9:]
        path = work / f"{name}.mp4"
        out[name] = (path, stitched(path, clips))
    return out


def totals_of(truth: list[tuple[str, float, float]]) -> dict[str, float]:
    out = {c: 0.0 for c in (*CLASSES, "none")}
    for label, a, b in truth:
        out[label] += b - a
    return out


def experiment(work: Path) -> dict:
    from actionrec.apps.timeline import build_timeline
    from actionrec.apps.windows import window_probabilities
    from actionrec.engine import load_model
    from actionrec.apps.calibration import thresholds_for

    videos = experiment_videos(work)
    test_video, test_truth = videos["test"]
    truth = totals_of(test_truth)
    base = work / "experiment"
    base.mkdir(exist_ok=True)
    manifest = base / "labels.csv"
    results = {"truth": {k: round(v, 2) for k, v in truth.items()}, "settings": {}}
    for setting, fully in (("a: background as none clips", True), ("b: no background, the run's thresholds", False)):
        rows = []
        for name in ("train_a", "train_b"):
            path, t = videos[name]
            rows += write_manifest(base / "part.csv", str(path), t, fully).read_text().splitlines()[1:]
        manifest.write_text("path,label,start,end\n" + "\n".join(rows) + "\n")
        run = base / ("run_a" if fully else "run_b")
        shutil.rmtree(run, ignore_errors=True)
        t_train = cli("train", str(manifest), "--out", str(run), "--cache", str(base / "features"), "--quiet")
        model = load_model(run)
        wp = window_probabilities(test_video, model, cache=base / "timelines")
        labels = tuple(model.info.categories)
        thresholds, source = thresholds_for(model.info, labels)
        variants = {}
        for variant, options in (("defaults", {}), ("smooth 2 s", {"smooth": 2.0}), ("smooth 3 s", {"smooth": 3.0}),
                                 ("smooth 2 s, min segment 2 s", {"smooth": 2.0, "min_segment": 2.0})):
            tl = build_timeline(wp, labels, thresholds, source, **options)
            got = {k: tl.totals.get(k, 0.0) for k in truth}
            errors = {k: round(got[k] - truth[k], 2) for k in truth}
            variants[variant] = {"totals": {k: round(v, 2) for k, v in got.items()}, "errors": errors,
                                 "worst_class_error": round(max(abs(errors[c]) for c in CLASSES), 2),
                                 "within_3s": all(abs(errors[c]) <= TOLERANCE for c in CLASSES)}
        metrics = json.loads((run / "metrics.json").read_text())
        results["settings"][setting] = {"train_seconds": round(t_train, 1), "classes": metrics["classes"],
                                        "thresholds": {k: round(v, 3) for k, v in thresholds.items()},
                                        "threshold_source": source, "split_policy": metrics["splits"]["policy"],
                                        "head": metrics.get("head"), "head_fit": metrics.get("head_fit"),
                                        "variants": variants}
        print(f"experiment {setting}: {json.dumps(results['settings'][setting]['variants']['defaults'])}", flush=True)
    return results


# ----------------------------------------------------------------------------------------------- tables


def speed_table(s: dict) -> str:
    lines = [f"5-minute video: {s['video_seconds']} s, {s['clips']} real clips",
             "| round | segments | head | train (features / head / fine-tune / evaluate) | timeline | **total** | load |",
             "|---|---:|---|---|---:|---:|---|"]
    for name, r in s["rounds"].items():
        t = r["trainer"]
        split = " / ".join(str(t.get(k, "-")) for k in ("features", "head", "finetune", "evaluate"))
        head = f"{r.get('head')} ({'+'.join(r.get('trained', []))})"
        lines.append(f"| {name} | {r['segments']} ({r['labelled_seconds']} s) | {head} | {r['train']} ({split}) | "
                     f"{r['timeline']} | **{r['total']}** | {r['load']} |")
    return "\n".join(lines)


def experiment_table(e: dict) -> str:
    classes = [*CLASSES, "none"]
    lines = ["| setting | variant | " + " | ".join(classes) + " | worst class error | within 3 s |",
             "|---|---|" + "---:|" * len(classes) + "---:|---|",
             "| truth | | " + " | ".join(f"{e['truth'][c]:.1f}" for c in classes) + " | | |"]
    for setting, r in e["settings"].items():
        for variant, v in r["variants"].items():
            cells = " | ".join(f"{v['totals'][c]:.1f} ({v['errors'][c]:+.1f})" for c in classes)
            lines.append(f"| {setting} | {variant} | {cells} | {v['worst_class_error']:.1f} | {'yes' if v['within_3s'] else 'no'} |")
    for setting, r in e["settings"].items():
        fit = r.get("head_fit") or {}
        how = f"{fit.get('head')} ({fit.get('chosen_by')})" if fit else r["head"]
        lines.append(f"\n{setting}: head {how}, thresholds {r['threshold_source']}, train {r['train_seconds']} s")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "actionrec-bench-label")
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--labelled-seconds", type=float, default=90.0)
    ap.add_argument("--warm-rounds", type=int, default=2, help="warm rounds after the cold one (one more segment each)")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-experiment", action="store_true")
    args = ap.parse_args()
    if not UCF.is_dir():
        raise SystemExit(f"{UCF} is absent: this bench needs ../shared/ucf101_subset beside the checkout")
    args.work.mkdir(parents=True, exist_ok=True)
    results = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores", "load_start": load()}
    if not args.skip_speed:
        results["speed"] = speed(args.work, args.minutes, args.labelled_seconds, args.warm_rounds)
    if not args.skip_experiment:
        results["experiment"] = experiment(args.work)
    results["load_end"] = load()
    (args.work / "results.json").write_text(json.dumps(results, indent=1))
    print(f"\nmachine: {results['machine']}; load {results['load_start']} at start, {results['load_end']} at the end")
    if "speed" in results:
        print("\n" + speed_table(results["speed"]))
    if "experiment" in results:
        print("\n" + experiment_table(results["experiment"]))
    print(f"\nresults: {args.work / 'results.json'}")


if __name__ == "__main__":
    main()
