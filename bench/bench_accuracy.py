"""Accuracy on real footage (issue 13): the measurement of record behind the training defaults.

Runs on ``../shared/ucf101_subset`` (391 real UCF101 clips, 3 classes, official splits 1-3) with the pretrained
i3d-kinetics400 backbone. Every backbone pass is cached (the project's feature cache for clips cut at an endpoint,
a small store of per-step features for uniform test clips and whole videos), so a rerun only trains heads.

    python bench/bench_accuracy.py extract                             # the backbone passes (~1 h cold, 2 busy cores)
    python bench/bench_accuracy.py extract --extract uniform-all       # test views of splits 2 and 3 (~25 min)
    python bench/bench_accuracy.py defaults > results.md               # one table (seconds once extracted)
    python bench/bench_accuracy.py finetune --splits 1 --recipes 0,2   # fine-tuning recipes (1-5 min per run)

On 2 busy cores the tables took: defaults, views, lr ~1 min each; frames ~9 min; temporal ~75 min (the GRU over
whole videos); finetune 1-6 min per recipe, split and seed.

Tables: (a) head-only vs fine-tuning recipes, (b) test-time views, (c) training clip length and views,
(d) temporal head vs linear head on the same per-step inputs (real set and demo), (e) learning rate by range test,
timing (cold backbone time per test video of each test-time view), defaults (today's vs the proposed, every split).
Each accuracy is on the official test list of a split; the validation set is 20 % of training (whole groups).
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import actionrec
from actionrec.data.datasets import load_dataset, make_splits
from actionrec.data.sampling import uniform_clips
from actionrec.data.transforms import preprocess
from actionrec.data.video import probe, read_clips
from actionrec.engine import engine_for
from actionrec.files import atomic_write
from actionrec.training.features import FeatureCache, Sampling, content_key, read_entry
from actionrec.training.lr_range import lr_range_test
from actionrec.training.temporal import (
    StepSet,
    TemporalConfig,
    TemporalHead,
    fit_temporal,
    predict_temporal,
)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "ucf101_subset"
WEIGHTS = "i3d-kinetics400"
CUT = "Mixed_4f"  # the trainer's cut for the default fine-tuning (Mixed_5b, Mixed_5c)


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------- the data


def splits_of(data: Path, split: int, seed: int = 0):
    return make_splits(load_dataset(str(data), split=split, say=lambda m: None), seed=seed)


def all_videos(data: Path) -> list[str]:
    s = splits_of(data, 1)
    return sorted(x.path for x in s.train + s.val + s.test)


class Store:
    """Per-video arrays of one kind (uniform clips, whole videos) under ROOT/bench/<kind>/<content key>.npz."""

    def __init__(self, root: Path, kind: str):
        self.dir = root / "bench" / kind
        self.keys: dict[str, str] = {}

    def path(self, video: str) -> Path:
        if video not in self.keys:
            self.keys[video] = content_key(video)
        return self.dir / f"{self.keys[video]}.npz"

    def has(self, video: str) -> bool:
        return self.path(video).exists()

    def get(self, video: str) -> np.ndarray:
        with np.load(self.path(video)) as z:
            return z["steps"].astype(np.float32)

    def put(self, video: str, steps: np.ndarray) -> None:
        with atomic_write(self.path(video)) as f:
            np.savez(f, steps=steps.astype(np.float16))


# -------------------------------------------------------------------------------------------- the extractions


def clip_cache(model, frames: int, endpoint: str, views: int, cache: Path) -> FeatureCache:
    return FeatureCache(model, endpoint, Sampling(frames=frames, views=views, seed=0), root=cache, say=say)


def extract_clips(model, videos: Sequence[str], frames: int, endpoint: str, views: Callable | Sequence[int],
                  cache: Path) -> dict:
    t0 = time.perf_counter()
    top = max(views(videos[0]) if callable(views) else views) + 1
    entries = clip_cache(model, frames, endpoint, top, cache).extract(videos, views=views)
    say(f"clips {frames} frames at {endpoint}: {len(entries)} entries in {time.perf_counter() - t0:.0f} s")
    return entries


def extract_uniform(model, videos: Sequence[str], count: int, frames: int, cache: Path) -> Store:
    """`count` uniformly spaced clips of `frames` frames per video: per-step features (count, T', 1024)."""
    store = Store(cache, f"uniform{count}x{frames}")
    engine = engine_for(model)
    spec = engine.info.spec
    todo = [v for v in videos if not store.has(v)]

    def clips(video: str) -> Iterator[tuple[int, torch.Tensor]]:
        info = probe(video)
        spans = uniform_clips(info.num_frames, info.fps, n=frames, count=count, target_fps=spec.fps)
        for k, clip in enumerate(read_clips(video, spans, short_side=spec.resize)):
            yield k, preprocess(clip.frames, spec)

    t0 = time.perf_counter()
    for result in engine.map(todo, clips, output="steps", batch_size=4):
        store.put(result.job, result.outputs)
    say(f"uniform {count} x {frames} frames: {len(todo)} videos in {time.perf_counter() - t0:.0f} s")
    return store


def extract_whole(model, videos: Sequence[str], cache: Path) -> Store:
    """The whole video convolutionally, in the chunked pass of the timeline (each frame through the network once,
    chunks with real context): per-step features (T', 1024), one step per 8 frames."""
    from actionrec.apps.windows import _step_chunks, model_fps

    store = Store(cache, "whole")
    engine = engine_for(model)
    fps = model_fps(engine.info)
    t0 = time.perf_counter()
    for video in videos:
        if store.has(video):
            continue
        rows = []
        for result in engine.map([video], lambda v: _step_chunks(v, engine.info.spec, fps, {}), output="steps",
                                 batch_size=1, per_clip=True):
            before, own = result.meta
            rows.append(result.output[before : before + len(own)])
        store.put(video, np.concatenate(rows))
    say(f"whole videos: {len(videos)} in {time.perf_counter() - t0:.0f} s")
    return store



# ----------------------------------------------------------------------------------- per-video inputs for heads


def derived(model, cache: Path, kind: str, videos: Sequence[str]) -> dict[str, np.ndarray]:
    """Per-step features (views, T', 1024) of each video for clips cut at an endpoint: computed once from the feature
    cache's entries (Mixed_4f: Mixed_5b and Mixed_5c run here; Mixed_5c: averaged over space) and stored."""
    frames = int(kind.removeprefix("clip"))
    endpoint, views = (CUT, 3) if frames == 16 else ("Mixed_5c", 1)
    store = Store(cache, f"{kind}-steps")
    fc = None
    out = {}
    with torch.no_grad():
        for video in videos:
            if not store.has(video):
                fc = fc or clip_cache(model, frames, endpoint, views, cache)
                key = content_key(video)
                acts = torch.from_numpy(np.stack([read_entry(fc.path(key, v)) for v in range(views)])).float()
                steps = model.forward_steps(acts, start=CUT) if endpoint == CUT else acts.mean(dim=(3, 4)).transpose(1, 2)
                store.put(video, steps.numpy())
            out[video] = store.get(video)
    return out


def inputs(model, cache: Path, kind: str, videos: Sequence[str]) -> dict[str, np.ndarray]:
    """(views, T', 1024) per video: clip16/32/64 (central clip, clip16 also 2 augmented views), uniformN, whole."""
    if kind.startswith("clip"):
        return derived(model, cache, kind, videos)
    store = Store(cache, "whole" if kind == "whole" else f"{kind}x16")
    return {v: store.get(v)[None] if kind == "whole" else store.get(v) for v in videos}


def dm_pool(steps: np.ndarray) -> np.ndarray:
    """DeepMind's Logits pooling over time on per-step features (..., T', C): a 2-step average pool, then the mean
    (what the trainer's pooled feature is; the plain mean for T' = 2)."""
    if steps.shape[-2] < 2:
        return steps.mean(-2)
    return ((steps[..., 1:, :] + steps[..., :-1, :]) / 2).mean(-2)


# ------------------------------------------------------------------------------------------------ linear head


@dataclass(frozen=True)
class HeadRecipe:
    """The trainer's softmax head: SGD with momentum, L2, dropout, cosine schedule, early stopping on val loss."""

    lr: float = 0.05
    epochs: int = 20
    patience: int = 5
    batch_size: int = 32
    dropout: float = 0.5
    weight_decay: float = 1e-4
    seed: int = 0


def linear_head(dim: int, classes: int, dropout: float) -> nn.Module:
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, classes))


def fit_head(head: nn.Module, params: list, forward: Callable, train_y: torch.Tensor, validate: Callable,
             recipe: HeadRecipe, keep_start: bool = False) -> int:
    """The trainer's fit loop (phases.fit) for any `forward(idx) -> logits`; returns the best epoch (0: the start,
    only with keep_start)."""
    torch.manual_seed(recipe.seed)
    opt = torch.optim.SGD(params, lr=recipe.lr, momentum=0.9, weight_decay=recipe.weight_decay)
    n = len(train_y)
    per_epoch = math.ceil(n / recipe.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(recipe.epochs * per_epoch, 1))
    gen = torch.Generator().manual_seed(recipe.seed)
    snap = lambda: {k: v.clone() for k, v in head.state_dict().items()}
    best = (validate() if keep_start else math.inf, 0, snap())
    for epoch in range(1, recipe.epochs + 1):
        order = torch.randperm(n, generator=gen).tolist()
        for start in range(0, n, recipe.batch_size):
            idx = order[start : start + recipe.batch_size]
            loss = F.cross_entropy(forward(idx), train_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        score = validate()
        if score < best[0] - 1e-6:
            best = (score, epoch, snap())
        elif recipe.patience and epoch - best[1] >= recipe.patience:
            break
    head.load_state_dict(best[2])
    return best[1]


def train_linear(x: torch.Tensor, y: torch.Tensor, vx: torch.Tensor, vy: torch.Tensor, classes: int,
                 recipe: HeadRecipe = HeadRecipe()) -> nn.Module:
    torch.manual_seed(recipe.seed)
    head = linear_head(x.shape[1], classes, recipe.dropout)

    def forward(idx):
        head.train()
        return head(x[idx])

    def validate():
        head.eval()
        with torch.no_grad():
            return F.cross_entropy(head(vx), vy).item() if len(vy) else math.nan

    fit_head(head, list(head.parameters()), forward, y, validate, recipe)
    return head.eval()


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    return float((logits.argmax(1) == y).float().mean())


@dataclass
class Split:
    """One official split: videos and labels of train / val / test."""

    number: int
    classes: list[str]
    train: list[str]
    val: list[str]
    test: list[str]
    labels: dict[str, int]

    def y(self, part: str) -> torch.Tensor:
        return torch.tensor([self.labels[v] for v in getattr(self, part)])


def load_split(data: Path, k: int, seed: int = 0) -> Split:
    s = splits_of(data, k, seed)
    labels = {x.path: s.classes.index(x.label) for x in s.train + s.val + s.test}
    return Split(k, list(s.classes), [x.path for x in s.train], [x.path for x in s.val], [x.path for x in s.test], labels)


def pooled(feats: dict[str, np.ndarray], videos: Sequence[str], views: int = 1, pool: Callable = dm_pool
           ) -> tuple[torch.Tensor, list[int]]:
    """Pooled features of the first `views` views of each video, stacked; and the video index of each row."""
    rows, owner = [], []
    for i, v in enumerate(videos):
        for view in range(min(views, len(feats[v]))):
            rows.append(pool(feats[v][view]))
            owner.append(i)
    return torch.from_numpy(np.stack(rows)).float(), owner


def test_logits(head: nn.Module, feats: dict[str, np.ndarray], videos: Sequence[str], pool: Callable = dm_pool
                ) -> torch.Tensor:
    """Logits of each test video: the mean of the head's logits over all its views (clips)."""
    with torch.no_grad():
        return torch.stack([head(torch.from_numpy(pool(feats[v])).float()).mean(0) for v in videos])



# ------------------------------------------------------------------------------------------- (a) fine-tuning


@dataclass(frozen=True)
class Finetune:
    """A fine-tuning recipe on top of the head (the trainer's today: Mixed_5b+5c, lr 0.005, 5 epochs, BN frozen)."""

    name: str
    lr: float = 0.005
    epochs: int = 5
    blocks: tuple[str, ...] = ("Mixed_5b", "Mixed_5c")
    bn_train: bool = False  # BatchNorm of the tuned blocks in training mode (batch statistics, running stats move)
    keep_start: bool = False  # the head-only state competes on the validation loss (epoch 0)
    patience: int = 5
    train_views: int = 1


RECIPES = (
    Finetune("today: lr 0.005, 5 ep, 5b+5c, BN frozen"),
    Finetune("lr 0.001", lr=0.001),
    Finetune("lr 0.0005, 10 ep", lr=0.0005, epochs=10),
    Finetune("lr 0.005, 10 ep, no early stop", epochs=10, patience=0),
    Finetune("only Mixed_5c", blocks=("Mixed_5c",)),
    Finetune("BN in training mode", bn_train=True),
    Finetune("head-only state may win on val", keep_start=True),
    Finetune("lr 0.001 + 3 train views", lr=0.001, train_views=3),
)


def load_acts(model, cache: Path, videos: Sequence[str], views: int) -> dict[str, torch.Tensor]:
    """Mixed_4f activations of 16-frame clips (views, 832, 4, 14, 14), float16, in memory."""
    fc = clip_cache(model, 16, CUT, 3, cache)
    return {v: torch.from_numpy(np.stack([read_entry(fc.path(content_key(v), k)) for k in range(views)])) for v in videos}


def finetune_once(base, split: Split, acts: dict, head: nn.Module, recipe: Finetune, seed: int) -> tuple[float, float]:
    """Fine-tune a copy of `base` (its head set from `head`) by `recipe`; (test accuracy, seconds)."""
    import copy

    model = copy.deepcopy(base)
    model.reset_classifier(len(split.classes))
    model.head.load_state_dict(head[1].state_dict())
    model.drop.p = 0.5
    for p in model.parameters():
        p.requires_grad_(False)
    modules = [getattr(model, b) for b in recipe.blocks] + [model.head]
    params = [p for m in modules for p in m.parameters()]
    for p in params:
        p.requires_grad_(True)
    rows = [(v, k) for v in split.train for k in range(min(recipe.train_views, len(acts[v])))]
    train_y = torch.tensor([split.labels[v] for v, _ in rows])
    vx, vy = torch.stack([acts[v][0] for v in split.val]).float(), split.y("val")

    def forward(idx):
        model.eval()
        model.drop.train()
        if recipe.bn_train:
            for b in recipe.blocks:
                getattr(model, b).train()
        x = torch.stack([acts[rows[i][0]][rows[i][1]] for i in idx]).float()
        return model.forward_head(model.forward_features(x, start=CUT))

    def logits_of(x):
        model.eval()
        with torch.no_grad():
            return torch.cat([model.forward_head(model.forward_features(x[i : i + 32], start=CUT)) for i in range(0, len(x), 32)])

    def validate():
        return F.cross_entropy(logits_of(vx), vy).item()

    t0 = time.perf_counter()
    fit_head(model, params, forward, train_y, validate,
             HeadRecipe(lr=recipe.lr, epochs=recipe.epochs, patience=recipe.patience, seed=seed), recipe.keep_start)
    seconds = time.perf_counter() - t0
    tx = torch.stack([acts[v][0] for v in split.test]).float()
    return accuracy(logits_of(tx), split.y("test")), seconds


def table_finetune(model, data: Path, cache: Path, splits: Sequence[int], seeds: Sequence[int] = (0, 1, 2),
                   recipes: Sequence[Finetune] = RECIPES) -> str:
    """(a) Head-only vs fine-tuning recipes: test accuracy per split, mean over seeds (min-max)."""
    videos = all_videos(data)
    feats = inputs(model, cache, "clip16", videos)
    acts = load_acts(model, cache, videos, 3)
    lines = ["| recipe | " + " | ".join(f"split {k}" for k in splits) + " | mean | fine-tune s |",
             "|---|" + "---:|" * (len(splits) + 2)]
    results: dict[str, list[list[float]]] = {}
    seconds: dict[str, list[float]] = {}
    for k in splits:
        split = load_split(data, k)
        x, _ = pooled(feats, split.train)
        vx, _ = pooled(feats, split.val)
        for seed in seeds:
            head = train_linear(x, split.y("train"), vx, split.y("val"), len(split.classes), HeadRecipe(seed=seed))
            acc = accuracy(test_logits(head, {v: feats[v][:1] for v in split.test}, split.test), split.y("test"))
            results.setdefault("head only (20 ep, lr 0.05)", []).append([k, acc])
            for recipe in recipes:
                acc, sec = finetune_once(model, split, acts, head, recipe, seed)
                results.setdefault(recipe.name, []).append([k, acc])
                seconds.setdefault(recipe.name, []).append(sec)
                say(f"split {k} seed {seed} {recipe.name}: {acc:.4f} ({sec:.0f} s)")
    for name, rows in results.items():
        cells = []
        for k in splits:
            accs = [a for kk, a in rows if kk == k]
            cells.append(f"{100 * np.mean(accs):.1f} ({100 * min(accs):.1f}-{100 * max(accs):.1f})")
        sec = f"{np.mean(seconds[name]):.0f}" if name in seconds else "-"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {100 * np.mean([a for _, a in rows]):.2f} | {sec} |")
    return "\n".join(lines)



# ------------------------------------------------------------------------ (b) test-time views, (c) training clips


def mean_pool(steps: np.ndarray) -> np.ndarray:
    return steps.mean(-2)


def head_accuracy(feats_train: dict, feats_test: dict, split: Split, train_views: int = 1, seed: int = 0,
                  pool: Callable = dm_pool, recipe: HeadRecipe = HeadRecipe()) -> float:
    """The linear head trained on `feats_train` (first `train_views` views of each training video) and tested on
    every view of `feats_test` (logits averaged over the views of a video)."""
    x, owner = pooled(feats_train, split.train, train_views, pool)
    y = split.y("train")[owner]
    vx, _ = pooled(feats_train, split.val, 1, pool)
    head = train_linear(x, y, vx, split.y("val"), len(split.classes), replace(recipe, seed=seed))
    return accuracy(test_logits(head, feats_test, split.test, pool), split.y("test"))


def frames_per_video(kind: str, feats: dict, videos: Sequence[str]) -> float:
    """Frames through the network per test video (the whole video: its steps x 8, plus the chunks' context)."""
    if kind == "whole":
        return float(np.mean([feats[v].shape[1] * 8 for v in videos]))
    if kind.startswith("uniform"):
        return 16.0 * int(kind.removeprefix("uniform"))
    if kind == "clip16x3":
        return 48.0
    return float(kind.removeprefix("clip"))


TEST_VIEWS = ("clip16", "clip16x3", "uniform2", "uniform3", "uniform5", "uniform10", "whole", "clip32", "clip64")


def test_feats(model, cache: Path, kind: str, videos: Sequence[str]) -> dict | None:
    """Per-video test inputs of a kind (None when they were not extracted for all of `videos`)."""
    try:
        if kind == "clip16x3":
            return inputs(model, cache, "clip16", videos)
        feats = inputs(model, cache, kind, videos)
        return {v: f[:1] for v, f in feats.items()} if kind == "clip16" else feats
    except (FileNotFoundError, KeyError):
        return None


def table_views(model, data: Path, cache: Path, splits: Sequence[int], seeds: Sequence[int] = (0, 1, 2)) -> str:
    """(b) The default head (trained on central 16-frame clips) scored with several test-time views."""
    videos = all_videos(data)
    train = {v: f[:1] for v, f in inputs(model, cache, "clip16", videos).items()}
    lines = ["| test-time view | frames/video | " + " | ".join(f"split {k}" for k in splits) + " |",
             "|---|---:|" + "---:|" * len(splits)]
    for kind in TEST_VIEWS:
        cells, frames = [], "-"
        for k in splits:
            split = load_split(data, k)
            feats = test_feats(model, cache, kind, split.test)
            if feats is None:
                cells.append("n/a")
                continue
            frames = f"{frames_per_video(kind, feats, split.test):.0f}"
            accs = [head_accuracy(train, feats, split, seed=seed) for seed in seeds]
            cells.append(f"{100 * np.mean(accs):.1f}")
        lines.append(f"| {kind} | {frames} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


TRAIN_CLIPS = (("clip16", 1), ("clip16", 3), ("clip32", 1), ("clip64", 1), ("whole", 1))


def table_frames(model, data: Path, cache: Path, splits: Sequence[int], seeds: Sequence[int] = (0, 1, 2)) -> str:
    """(c) Training clips that see more: the head trained and tested on clips of each kind (test: central view, and
    the whole video)."""
    videos = all_videos(data)
    whole = test_feats(model, cache, "whole", videos)
    lines = ["| training clips | test: same central clip | test: whole video |", "|---|---:|---:|"]
    for kind, views in TRAIN_CLIPS:
        feats = inputs(model, cache, kind, videos)
        same, on_whole = [], []
        for k in splits:
            split = load_split(data, k)
            for seed in seeds:
                same.append(head_accuracy(feats, {v: feats[v][:1] for v in split.test}, split, views, seed))
                if whole is not None:
                    on_whole.append(head_accuracy(feats, whole, split, views, seed))
        name = f"{kind} x {views} views" if views > 1 else kind
        lines.append(f"| {name} | {100 * np.mean(same):.2f} | {100 * np.mean(on_whole) if on_whole else math.nan:.2f} |")
    return "\n".join(lines)



# ------------------------------------------------------------------------------------- (d) the temporal head


def temporal_accuracy(feats: dict, split: Split, cfg: TemporalConfig, crop: int | None = None) -> float:
    """A TemporalHead trained on the steps of the first view of each training video, tested on every test video's
    first view (whole sequences)."""
    train = StepSet.of([feats[v][0] for v in split.train], split.y("train").tolist())
    val = StepSet.of([feats[v][0] for v in split.val], split.y("val").tolist())
    test = StepSet.of([feats[v][0] for v in split.test], split.y("test").tolist())
    torch.manual_seed(cfg.seed)
    head = TemporalHead(train.x.shape[2], len(split.classes), cfg.kind, cfg.hidden, cfg.kernel, cfg.dropout)
    fit_temporal(head, train, val, replace(cfg, crop_steps=crop))
    return accuracy(predict_temporal(head, test.x, test.mask), test.labels)


HEADS = (
    ("linear on mean of steps (SGD, lr 0.05)", None),
    ("temporal conv k3 (AdamW 1e-3)", TemporalConfig(kind="conv")),
    ("temporal GRU (AdamW 1e-3)", TemporalConfig(kind="gru")),
)


def compare_heads(feats: dict, splits: Sequence[Split], seeds: Sequence[int], crop: int | None = None) -> list[str]:
    rows = []
    for name, cfg in HEADS:
        accs = []
        for split in splits:
            for seed in seeds:
                if cfg is None:
                    test = {v: feats[v][:1] for v in split.test}
                    accs.append(head_accuracy(feats, test, split, seed=seed, pool=mean_pool))
                else:
                    accs.append(temporal_accuracy(feats, split, replace(cfg, seed=seed), crop))
        per = [np.mean(accs[i * len(seeds) : (i + 1) * len(seeds)]) for i in range(len(splits))]
        rows.append(f"{name} | " + " | ".join(f"{100 * a:.1f}" for a in per) + f" | {100 * np.mean(accs):.2f}")
    return rows


def demo_feats(model, cache: Path, clips_per_class: int = 30) -> tuple[dict, list[Split]]:
    """The demo (classes differ in motion only) at 64 frames (8 steps), its steps, and 3 group splits."""
    from actionrec.data.demo import write_demo_dataset

    root = write_demo_dataset(cache / "demo64", clips_per_class=clips_per_class, frames=64)
    samples = load_dataset(str(root), say=lambda m: None)
    videos = sorted(s.path for s in samples)
    extract_clips(model, videos, 64, "Mixed_5c", (0,), cache)
    feats = derived(model, cache, "clip64", videos)
    splits = []
    for seed in (0, 1, 2):
        s = make_splits(samples, seed=seed)
        labels = {x.path: s.classes.index(x.label) for x in s.train + s.val + s.test}
        splits.append(Split(seed, list(s.classes), [x.path for x in s.train], [x.path for x in s.val],
                            [x.path for x in s.test], labels))
    return feats, splits


def table_temporal(model, data: Path, cache: Path, splits: Sequence[int], seeds: Sequence[int] = (0, 1, 2)) -> str:
    """(d) Temporal head vs the linear head on the same per-step inputs."""
    videos = all_videos(data)
    real = [load_split(data, k) for k in splits]
    head = "| inputs | head | " + " | ".join(f"split {k}" for k in splits) + " | mean |"
    lines = [head, "|---|---|" + "---:|" * (len(splits) + 1)]
    for kind, label in (("clip64", "real, central 64 frames (8 steps)"), ("whole", "real, whole video (11-65 steps)")):
        feats = test_feats(model, cache, kind, videos)
        if feats is not None:
            lines += [f"| {label} | {row} |" for row in compare_heads(feats, real, seeds)]
    feats, demo = demo_feats(model, cache)
    lines += [f"| demo, 64 frames (8 steps), 3 seeded splits | {row} |" for row in compare_heads(feats, demo, seeds)]
    return "\n".join(lines)


# --------------------------------------------------------------------------------- (e) learning rate by trials


def table_lr(model, data: Path, cache: Path, splits: Sequence[int], seeds: Sequence[int] = (0, 1, 2)) -> str:
    """(e) The linear head's lr by range test on the cached features vs the fixed 0.05."""
    videos = all_videos(data)
    feats = {v: f[:1] for v, f in inputs(model, cache, "clip16", videos).items()}
    lines = ["| split | chosen lr (steepest, diverges) | acc fixed 0.05 | acc chosen |", "|---|---|---:|---:|"]
    for k in splits:
        split = load_split(data, k)
        x, _ = pooled(feats, split.train)
        torch.manual_seed(0)
        found = lr_range_test(linear_head(x.shape[1], len(split.classes), 0.5), x, split.y("train"))
        test = {v: feats[v] for v in split.test}
        fixed = [head_accuracy(feats, test, split, seed=s) for s in seeds]
        chosen = [head_accuracy(feats, test, split, seed=s, recipe=HeadRecipe(lr=found.chosen)) for s in seeds]
        lines.append(f"| {k} | {found.chosen:.3g} ({found.steepest:.3g}, {found.diverged or math.nan:.3g}) | "
                     f"{100 * np.mean(fixed):.1f} | {100 * np.mean(chosen):.1f} |")
        if k == splits[0]:
            from actionrec.training.lr_range import curve_png

            (cache / "lr_range_split1.png").write_bytes(curve_png(found, f"linear head, split {k}"))
    return "\n".join(lines)



def table_timing(model, data: Path, cache: Path, splits: Sequence[int], seeds: Sequence[int] = (), videos: int = 24) -> str:
    """Cold backbone time per test video of each test-time view, back to back on the same `videos` test videos
    (a fresh cache folder; the machine's load is what it is: the ratio to the central clip is the figure to keep)."""
    import tempfile

    test = load_split(data, splits[0]).test[::max(1, len(load_split(data, splits[0]).test) // videos)][:videos]
    runs = {
        "clip16": lambda root: extract_clips(model, test, 16, CUT, (0,), root),
        "uniform2": lambda root: extract_uniform(model, test, 2, 16, root),
        "uniform3": lambda root: extract_uniform(model, test, 3, 16, root),
        "uniform5": lambda root: extract_uniform(model, test, 5, 16, root),
        "uniform10": lambda root: extract_uniform(model, test, 10, 16, root),
        "whole": lambda root: extract_whole(model, test, root),
        "clip32": lambda root: extract_clips(model, test, 32, "Mixed_5c", (0,), root),
        "clip64": lambda root: extract_clips(model, test, 64, "Mixed_5c", (0,), root),
    }
    extract_clips(model, test[:2], 16, CUT, (0,), Path(tempfile.mkdtemp()))  # warm up: compile the engine's shapes
    seconds = {}
    for name, run in runs.items():
        with tempfile.TemporaryDirectory() as root:
            t0 = time.perf_counter()
            run(Path(root))
            seconds[name] = (time.perf_counter() - t0) / len(test)
    lines = [f"| test-time view | s/video ({len(test)} videos, cold) | x central clip |", "|---|---:|---:|"]
    lines += [f"| {k} | {v:.2f} | {v / seconds['clip16']:.1f} |" for k, v in seconds.items()]
    return "\n".join(lines)



# ------------------------------------------------------------------------------------------ the chosen defaults

TODAY = HeadRecipe()  # the trainer's head before this measurement: 20 epochs, early stop after 5 without gain
PROPOSED = HeadRecipe(epochs=50, patience=0)  # 50 epochs, the best validation epoch kept, no early stop


def table_defaults(model, data: Path, cache: Path, splits: Sequence[int], seeds: Sequence[int] = (0, 1, 2, 3, 4)) -> str:
    """Today's defaults and the proposed ones on every split: test accuracy (mean over seeds) and test errors."""
    videos = all_videos(data)
    train = {v: f[:1] for v, f in inputs(model, cache, "clip16", videos).items()}
    settings = (("today: head 20 ep (early stop 5), central clip", TODAY, "clip16"),
                ("head 50 ep (best val epoch), central clip", PROPOSED, "clip16"),
                ("head 50 ep, test views 2 (uniform)", PROPOSED, "uniform2"),
                ("head 50 ep, test views 3 (uniform)", PROPOSED, "uniform3"),
                ("head 50 ep, test views 5 (uniform)", PROPOSED, "uniform5"),
                ("head 50 ep, test views 10 (uniform)", PROPOSED, "uniform10"))
    lines = ["| setting | " + " | ".join(f"split {k}" for k in splits) + " | mean of splits |",
             "|---|" + "---:|" * (len(splits) + 1)]
    for name, recipe, view in settings:
        per = []
        for k in splits:
            split = load_split(data, k)
            test = test_feats(model, cache, view, split.test)
            per.append(np.mean([head_accuracy(train, test, split, seed=s, recipe=recipe) for s in seeds]) if test else math.nan)
        lines.append(f"| {name} | " + " | ".join(f"{100 * a:.1f}" for a in per) + f" | {100 * np.mean(per):.2f} |")
    return "\n".join(lines)


def extract_all(data: Path, cache: Path, which: str) -> None:
    """Every backbone pass the tables need (cached: a rerun skips what is there)."""
    model = actionrec.load_model(WEIGHTS, fast=False)  # the eager network: deep-copied and fine-tuned below
    videos = all_videos(data)
    test1 = sorted(s.path for s in splits_of(data, 1).test)
    tests = sorted({s.path for k in (1, 2, 3) for s in splits_of(data, k).test})
    steps = {
        "clip16": lambda: extract_clips(model, videos, 16, CUT, range(3), cache),
        "clip64": lambda: extract_clips(model, videos, 64, "Mixed_5c", (0,), cache),
        "clip32": lambda: extract_clips(model, videos, 32, "Mixed_5c", (0,), cache),
        "uniform": lambda: [extract_uniform(model, test1, n, 16, cache) for n in (2, 3, 5, 10)],
        "whole": lambda: extract_whole(model, videos, cache),
        "uniform-all": lambda: [extract_uniform(model, tests, n, 16, cache) for n in (2, 3, 5, 10)],
    }
    for name in which.split(","):
        steps[name]()


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["extract", "all", "finetune", "views", "frames", "temporal", "lr", "timing", "defaults"])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/acc-cache"))
    ap.add_argument("--extract", default="clip16,clip64,clip32,uniform,whole", help="extractions to run (extract)")
    ap.add_argument("--splits", default="1,2,3")
    ap.add_argument("--seeds", default="0,1,2", help="seeds of head initialisation and shuffling")
    ap.add_argument("--recipes", default=None, help="fine-tuning recipes to run, by index in RECIPES (default: all)")
    args = ap.parse_args(argv)
    torch.set_num_threads(2 if args.what in ("extract", "finetune", "timing") else 1)  # tiny heads: 1 thread
    if args.what == "extract":
        extract_all(args.data, args.cache, args.extract)
        return
    model = actionrec.load_model(WEIGHTS, fast=False)  # the eager network: deep-copied and fine-tuned below
    splits = [int(k) for k in args.splits.split(",")]
    seeds = [int(k) for k in args.seeds.split(",")]
    chosen = [RECIPES[int(i)] for i in args.recipes.split(",")] if args.recipes else RECIPES
    tables = {"finetune": functools.partial(table_finetune, recipes=chosen), "views": table_views, "frames": table_frames, "temporal": table_temporal,
              "lr": table_lr, "timing": table_timing, "defaults": table_defaults}
    for name, table in tables.items():
        if args.what in (name, "all"):
            t0 = time.perf_counter()
            print(f"\n### {name}\n\n{table(model, args.data, args.cache, splits, seeds)}\n", flush=True)
            say(f"{name}: {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
