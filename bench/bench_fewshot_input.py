"""What the backbone sees, for the few-shot head (issue 17, item 3): crop, whole frame, frame rate, clip length.

On ``../shared/ucf101_subset`` (391 real UCF101 clips, 3 classes, official splits 1-3), the same draws of training
videos as bench_fewshot.py (1, 2, 3, 5 and 10 per class from distinct groups), today's few-shot head
(fewshot.fit_head, logistic, on the 4 clips of fewshot.training_views: central, 1/4, 3/4, central mirrored), each test
video scored from its 2 test views. Only the input changes from one policy to the next:

    crop224   frames resized to a short side of 256, the 224 centre (I3D's spec: the trainer's input until now)
    crop256   the same frames, their whole 256 height: a 256 square (fewshot.crop_for's default now)
    full224   the whole frame, short side 224 (4:3 UCF101: 224 x 299; no crop)
    full256   the whole frame, short side 256 (256 x 341)
    fps12.5   crop224, 16 frames 2 apart (1.28 s instead of 0.64 s)
    fps12.5-full224, frames64 (crop224, 64 frames: 2.56 s)

Each policy's pooled features (the engine's ``forward_features``: Mixed_5c averaged, at this machine's --precision
auto) are computed once and kept in bench/out/fewshot_input/POLICY/pooled.npz (2-20 min each on 2 cores).

    python bench/bench_fewshot_input.py extract --inputs crop224,crop256
    python bench/bench_fewshot_input.py run --inputs crop224,crop256,full256 --splits 1,2,3 --draws 20

The first policy named is the reference: every cell gives the mean (worst draw; paired difference to the reference
on the same draws); below the table, per size, the paired difference +- its standard error and wins / losses.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_fewshot as bf  # noqa: E402  (the draws, the data and the scoring are bench_fewshot's)

OUT = bf.ROOT / "bench" / "out" / "fewshot_input"
TRAIN_VIEWS = (0, "u0of2", "u1of2", "0m")  # fewshot.training_views(): central, the 2 test views, central mirrored


class Policy(NamedTuple):
    """How a clip becomes the network's input: `crop` None is the whole frame at `short_side`."""

    frames: int = 16
    fps: float | None = 25.0
    short_side: int = 256
    crop: int | None = 224


POLICIES = {
    "crop224": Policy(), "crop256": Policy(crop=256), "full224": Policy(short_side=224, crop=None),
    "full256": Policy(crop=None), "fps12.5": Policy(fps=12.5), "fps12.5-full224": Policy(fps=12.5, short_side=224, crop=None),
    "frames64": Policy(frames=64),
}


def network_input(frames: np.ndarray, policy: Policy, flip: bool = False) -> np.ndarray:
    """uint8 (T, H, W, 3) frames already at `policy.short_side` -> the network input (3, T, h, w): a crop through the
    trainer's own preprocess_array; the whole frame (crop None) with the same scaling, the spec's mean and std."""
    from dataclasses import replace

    from actionrec.data.transforms import preprocess_array
    from actionrec.models.i3d import I3D_KINETICS400 as SPEC

    if policy.crop is not None:
        return preprocess_array(frames, replace(SPEC, resize=policy.short_side, crop=policy.crop), flip=flip)
    x = np.ascontiguousarray((frames[:, :, ::-1] if flip else frames).transpose(3, 0, 1, 2), dtype=np.float32)
    x /= np.float32(255.0)
    x -= np.asarray(SPEC.mean, np.float32).reshape(3, 1, 1, 1)
    x /= np.asarray(SPEC.std, np.float32).reshape(3, 1, 1, 1)
    return x


def extract(name: str) -> None:
    """The pooled features of every video's 4 clips (central, its mirror image, the 2 test views) under `name`."""
    import torch

    from actionrec.data.sampling import central_clip, uniform_clips
    from actionrec.data.video import content_key, probe, read_clips
    from actionrec.engine import load_model

    policy, model = POLICIES[name], load_model(bf.WEIGHTS)
    videos = sorted(s.path for s in bf.all_samples(bf.DATA))
    store, t0 = {}, time.perf_counter()
    for i, video in enumerate(videos):
        info = probe(video)
        spans = [central_clip(info.num_frames, info.fps, policy.frames, policy.fps),
                 *uniform_clips(info.num_frames, info.fps, policy.frames, 2, policy.fps)]
        clips = [c.frames for c in read_clips(video, spans, short_side=policy.short_side)]
        x = np.stack([network_input(c, policy) for c in clips] + [network_input(clips[0], policy, flip=True)])
        with torch.no_grad():
            feats = model.forward_features(torch.from_numpy(x)).numpy()
        key = content_key(video)
        store.update({f"{key}|{view}": f for view, f in zip(TRAIN_VIEWS, feats)})
        if i % 50 == 0:
            bf.say(f"{name}: {i}/{len(videos)} videos, {time.perf_counter() - t0:.0f} s")
    (OUT / name).mkdir(parents=True, exist_ok=True)
    np.savez(OUT / name / "pooled.npz", keys=np.array(list(store)), feats=np.stack(list(store.values())))
    bf.say(f"{name}: {len(videos)} videos in {time.perf_counter() - t0:.0f} s -> {OUT / name / 'pooled.npz'}")


def accuracies(names: Sequence[str], splits: Sequence[int], ns: Sequence[int], count: int) -> dict:
    """{policy: {n: [accuracy of each draw]}}, every policy on the same draws, scored as bench_fewshot scores."""
    from actionrec.training.fewshot import fit_head

    feats = {name: bf.Features(OUT / name) for name in names}
    out: dict = {name: {n: [] for n in ns} for name in names}
    for split in splits:
        for n in ns:
            for draw in bf.draws(bf.DATA, split, n, count):
                classes = sorted({s.label for s in draw.train})
                for name in names:
                    x, y, groups = bf.rows(feats[name], draw.train, classes, TRAIN_VIEWS)
                    fit = fit_head(x, y, groups, len(classes), head="logistic")
                    out[name][n].append(bf.test_accuracy(fit.logits, feats[name], draw, classes))
            bf.say(f"split {split}, {n} per class: " + ", ".join(f"{m} {100 * np.mean(out[m][n][-count:]):.1f}" for m in names))
    return out


def report(results: dict, ns: Sequence[int]) -> str:
    names = list(results)
    ref = names[0]
    lines = ["| input | " + " | ".join(f"{n} per class" for n in ns) + " | mean over sizes |",
             "|---|" + "---:|" * (len(ns) + 1)]
    for name in names:
        cells = []
        for n in ns:
            a, b = np.array(results[name][n]), np.array(results[ref][n])
            cells.append(f"{100 * a.mean():.1f} ({100 * a.min():.1f}; {100 * (a - b).mean():+.1f})")
        mean = 100 * np.mean([np.mean(results[name][n]) for n in ns])
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {mean:.2f} |")
    for name in names[1:]:
        diffs = []
        for n in ns:
            d = np.array(results[name][n]) - np.array(results[ref][n])
            diffs.append(f"{n}: {100 * d.mean():+.2f} +- {100 * d.std(ddof=1) / np.sqrt(len(d)):.2f} "
                         f"({int((d > 1e-9).sum())} / {int((d < -1e-9).sum())})")
        lines.append(f"\n{name} - {ref}, paired (wins / losses): " + "; ".join(diffs))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=("extract", "run"))
    p.add_argument("--inputs", default="crop224,crop256", help=f"policies, the first the reference: {', '.join(POLICIES)}")
    p.add_argument("--splits", default="1,2,3")
    p.add_argument("--n", default="1,2,3,5,10", help="training videos per class")
    p.add_argument("--draws", type=int, default=20, help="draws per split and size")
    args = p.parse_args(argv)
    names = args.inputs.split(",")
    unknown = [n for n in names if n not in POLICIES]
    if unknown:
        p.error(f"unknown input {unknown[0]!r}; choose from {', '.join(POLICIES)}")
    if args.what == "extract":
        for name in names:
            extract(name)
        return
    from actionrec.training.fewshot import training_views

    assert list(TRAIN_VIEWS) == training_views(), "extract computes today's training clips: update TRAIN_VIEWS with them"
    ns, splits = [int(n) for n in args.n.split(",")], [int(s) for s in args.splits.split(",")]
    results = accuracies(names, splits, ns, args.draws)
    (OUT / f"results-{'_'.join(names)}-{'_'.join(map(str, splits))}.json").write_text(json.dumps(results))
    print(report(results, ns))


if __name__ == "__main__":
    main()
