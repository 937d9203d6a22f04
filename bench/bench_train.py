"""The study's workload end to end on this machine, and the study's way (backbone recomputed every epoch) as a ratio.

Workload shape (UCF101's BabyCrawling / IceDancing / SkateBoarding as the study used them): 3 classes, 410 clips of
320x240 at 25 fps, ~7 s each; 20 head epochs, then 5 of fine-tuning. UCF101 is not reachable here, so the clips are
the demo's synthetic scenes rendered at that size and length (decoding cost is what matters, not the content).

The study's way: a Keras model with a frozen base recomputes the backbone for every clip in every epoch. It is
measured on a subset, side by side with ours on the same subset, and both are extrapolated per epoch.

    python bench/bench_train.py              # full workload (~5-10 min on 2 cores)
    python bench/bench_train.py --clips 48   # quicker

The real workload: `--data ../shared/ucf101_subset` (391 real UCF101 clips of 3 classes, official splits), cold
caches, per split, setting (`--settings`: the defaults, 1 test view, the previous defaults, the temporal head) and
precision of `--precision` (default: the engine's choice on this CPU), each with a cold feature cache (the engine's
compiled graphs are kept: they are made once per machine):

    python bench/bench_train.py --data ../shared/ucf101_subset --splits 1,2,3 --settings defaults,1-view
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from actionrec.data.datasets import load_dataset, make_splits
from actionrec.data.demo import write_demo_dataset
from actionrec.data.transforms import preprocess
from actionrec.training.trainer import TrainConfig, train
from actionrec.data.video import read_clip


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def study_way_epoch_seconds(backbone: str, samples, classes, frames: int, finetune: bool) -> float:
    """One epoch the study's way: decode + preprocess + frozen backbone forward for every clip, then the head step."""
    from actionrec.training.trainer import BACKBONE_DEFAULTS, TrainConfig, backbone_for, cut_endpoint

    model = backbone_for(TrainConfig(backbone=backbone).resolved(), say=lambda m: None, explicit=False)
    model.reset_classifier(len(classes))
    top = BACKBONE_DEFAULTS[backbone]["unfreeze"] if finetune else ()
    cut = cut_endpoint(model, BACKBONE_DEFAULTS[backbone]["unfreeze"])
    params = list(model.head.parameters()) + [p for name in top for p in getattr(model, name).parameters()]
    opt = torch.optim.SGD(params, lr=1e-3, momentum=0.9)
    t0 = time.perf_counter()
    for sample in samples:
        clip = read_clip(sample.path, n=frames, short_side=model.info.spec.resize, target_fps=model.info.spec.fps)
        x = preprocess(clip.frames, model.info.spec)[None]
        y = torch.tensor([classes.index(sample.label)])
        if finetune:
            with torch.no_grad():
                act = model.forward_until(x, cut)
            logits = model.forward_head(model.forward_features(act, start=cut))
        else:
            with torch.no_grad():
                feats = model.forward_features(x)
            logits = model.forward_head(feats)
        opt.zero_grad()
        F.cross_entropy(logits, y).backward()
        opt.step()
    return time.perf_counter() - t0


REAL_SETTINGS = {  # --settings: what the real workload is trained with
    "defaults": {},  # the command's defaults: 2 test views
    "1-view": {"test_views": 1},  # the same, each test video scored from its central clip only
    "study": {"epochs": 20, "patience": 5, "test_views": 1},  # the previous defaults: 20 + 5 epochs, early stopping
    "temporal": {"head": "temporal"},  # the temporal head on 64-frame clips
}


def real_workload(data: Path, precisions: list[str], splits: list[int], settings: list[str]) -> None:
    """The real dataset end to end (cold feature cache) per split, setting and precision: phases and test accuracy."""
    from actionrec.models.backends import openvino_version, resolve_precision

    print(f"{data}; load average {' '.join(f'{v:.2f}' for v in os.getloadavg())} at start; {time.strftime('%Y-%m-%d %H:%M')}\n")
    print("| split | setting | precision (backend) | features s | head s | finetune s | temporal s | evaluate s | total s "
          "| test accuracy | head only | linear head, same clips |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for split in splits:
        samples = load_dataset(str(data), split=split, say=lambda m: None)
        parts = make_splits(samples, seed=0)
        for setting in settings:
            for precision in precisions:
                os.environ["ACTIONREC_PRECISION"] = precision  # what "auto" means for the engine the trainer makes
                work = Path(tempfile.mkdtemp(prefix="bench-train-real-"))
                try:
                    t0 = time.perf_counter()
                    metrics = train(parts, work / "run", TrainConfig(**REAL_SETTINGS[setting]), cache_root=work / "cache",
                                    say=lambda m: None, progress=False)
                    total = time.perf_counter() - t0
                finally:
                    shutil.rmtree(work, ignore_errors=True)
                timing, backend = metrics["timing"], "openvino" if openvino_version() else "torch"
                phases = " | ".join(f"{timing.get(k, 0):.1f}" for k in ("features", "head", "finetune", "temporal", "evaluate"))
                print(f"| {split} | {setting} | {resolve_precision(precision)} ({backend}) | {phases} | **{total:.1f}** | "
                      f"{100 * metrics['test_accuracy']:.1f} | {100 * (metrics['head_test_accuracy'] or float('nan')):.1f} | "
                      f"{100 * (metrics['linear_test_accuracy'] or float('nan')):.1f} |", flush=True)
    print(f"\nload average {' '.join(f'{v:.2f}' for v in os.getloadavg())} at the end; peak RSS {peak_rss_gib():.2f} GiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=410, help="clips in all (default: %(default)s, as the study)")
    parser.add_argument("--subset", type=int, default=12, help="clips for the side-by-side with the study's way")
    parser.add_argument("--backbone", default="i3d", choices=("i3d", "c3d"), help="(default: %(default)s)")
    parser.add_argument("--keep", default=None, help="keep the generated videos in this folder (reused next time)")
    parser.add_argument("--data", type=Path, default=None, help="a real dataset instead (e.g. ../shared/ucf101_subset)")
    parser.add_argument("--splits", default="1", help="its official splits, comma-separated (default: %(default)s)")
    parser.add_argument("--settings", default="defaults,1-view", help=f"comma-separated, of: {', '.join(REAL_SETTINGS)} (default: %(default)s)")
    parser.add_argument("--precision", default="auto", help="comma-separated: auto, fp32, bf16 (default: %(default)s)")
    args = parser.parse_args()
    if args.data is not None:
        real_workload(args.data, args.precision.split(","), [int(k) for k in args.splits.split(",")], args.settings.split(","))
        return
    torch.set_num_threads(torch.get_num_threads())
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-train-"))
    classes = ["Bouncing", "Sliding", "Spinning"]
    per_class = -(-args.clips // len(classes))
    t0 = time.perf_counter()
    for stale in ("cache", "cache-subset", "run", "run-subset"):  # the point is to measure cold caches
        shutil.rmtree(work / stale, ignore_errors=True)
    data = write_demo_dataset(work / "data", clips_per_class=per_class, size=(320, 240), frames=175, fps=25.0, classes=classes)
    t_write = time.perf_counter() - t0
    samples = load_dataset(data)
    splits = make_splits(samples, seed=0)
    cfg = TrainConfig(backbone=args.backbone, epochs=20, finetune_epochs=5, patience=0)
    t0 = time.perf_counter()
    metrics = train(splits, work / "run", cfg, cache_root=work / "cache", say=lambda m: None, progress=False)
    t_ours = time.perf_counter() - t0
    rss = peak_rss_gib()
    timing = metrics["timing"]
    print(f"train command: {t_ours:.1f} s, {timing}, peak RSS {rss:.2f} GiB", flush=True)

    # Side by side on a subset: ours (fresh cache) vs the study's way, both per 20 + 5 epochs.
    subset = make_splits(samples, seed=1)
    by_class = [[s for s in subset.train if s.label == c] for c in subset.classes]
    sub_train = [s for group in zip(*by_class) for s in group][: args.subset]  # round-robin over the classes
    sub_splits = type(subset)(sub_train, subset.val[:4], subset.test[:4], subset.classes, subset.policy)
    t0 = time.perf_counter()
    train(sub_splits, work / "run-subset", cfg, cache_root=work / "cache-subset", say=lambda m: None, progress=False)
    ours_subset = time.perf_counter() - t0
    head_epoch = study_way_epoch_seconds(args.backbone, sub_train, list(subset.classes), cfg.resolved().frames, finetune=False)
    ft_epoch = study_way_epoch_seconds(args.backbone, sub_train, list(subset.classes), cfg.resolved().frames, finetune=True)
    study_subset = 20 * head_epoch + 5 * ft_epoch

    print(f"\nworkload: {len(samples)} clips of 320x240, 175 frames at 25 fps, {len(classes)} classes; "
          f"{metrics['splits']['clips']}; writing them took {t_write:.0f} s (not counted)\n")
    print("| phase | seconds |")
    print("|---|---:|")
    for phase in ("features", "head", "finetune", "evaluate"):
        print(f"| {phase} | {timing.get(phase, 0):.1f} |")
    print(f"| **total (train command)** | **{t_ours:.1f}** |")
    print(f"\npeak memory (RSS) {rss:.2f} GiB; test accuracy {metrics['test_accuracy']:.3f}, "
          f"before fine-tuning {metrics['head_test_accuracy']:.3f}\n")
    print(f"| on {len(sub_train)} training clips, 20 + 5 epochs | seconds | ratio |")
    print("|---|---:|---:|")
    print(f"| ours: cached features (extract once, then epochs on the cache) | {ours_subset:.1f} | 1.0 |")
    print(f"| the study's way: backbone recomputed every epoch ({head_epoch:.1f} s per head epoch, "
          f"{ft_epoch:.1f} s per fine-tuning epoch, measured) | {study_subset:.1f} | {study_subset / ours_subset:.1f} |")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
