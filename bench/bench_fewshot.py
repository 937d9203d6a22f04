"""Few examples per class (issue 17, item 3): which head, which validation, how many clips per training video.

On ``../shared/ucf101_subset`` (391 real UCF101 clips, 3 classes, 25 groups each, official splits 1-3), for 1, 2, 3,
5 and 10 training videos per class drawn from distinct groups of the split's training part (several seeded draws),
each head is fitted on the pooled i3d-kinetics400 features of the drawn videos and tested on the split's official
test list, every test video scored as `actionrec train` scores it (its 2 uniform test views, probabilities averaged).

    python bench/bench_fewshot.py extract            # backbone passes, cached under bench/out/ (~10-40 min, 2 cores)
    python bench/bench_fewshot.py run --splits 1,2,3 # every head and setting: ~4 min (head fits only); the table
    python bench/bench_fewshot.py table              # the table again from bench/out/fewshot/results-split*.json
    python bench/bench_fewshot.py extract --views "mirrored central"   # the mirror image of each central clip
    python bench/bench_fewshot.py variants --splits 1 --draws 20       # what suits tiny data, on the same draws
    python bench/bench_fewshot.py variants-table --splits 1,2,3        # their table from bench/out/fewshot/variants-*.json

The features are those of the trainer: the feature cache at the trainer's cut (Mixed_4f, 16-frame clips, OpenVINO at
the machine's precision), pooled by the eager fp32 model through Mixed_5b/Mixed_5c, once per (video, view), kept in
bench/out/fewshot/pooled.npz. Views: 0 (the central clip), 1-2 (the trainer's augmented views: random offset, flip,
crop jitter), u0of2/u1of2 (the default test views), u0of5..u4of5 (5 clips spread evenly over the video), 0m / u0of2m /
u1of2m (features.mirrored: those clips flipped left-right).

"today" is the trainer's own head phase (phases.HeadPhase + phases.fit: SGD, momentum 0.9, lr 0.05, L2 1e-4, dropout
0.5, 50 epochs, cosine schedule, the best validation-loss epoch kept), its validation drawn by data.splits.make_splits
from the drawn videos (20 %, whole groups; a class with one training group gets none, and the training loss decides);
fine-tuning is left out (it is kept only when it lowers the validation loss, and with 1-2 videos per class there is
little or no validation to lower). The other heads are actionrec.training.fewshot's.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "ucf101_subset"
OUT = ROOT / "bench" / "out" / "fewshot"
WEIGHTS = "i3d-kinetics400"
CUT = "Mixed_4f"  # the trainer's cut (fine-tuning Mixed_5b, Mixed_5c): its cache entries, pooled as the head sees them
TEST_VIEWS = ("u0of2", "u1of2")  # the trainer's default test views (--test-views 2)
UNIFORM5 = tuple(f"u{k}of5" for k in range(5))
MIRRORED = ("0m", "u0of2m", "u1of2m")  # features.mirrored of the central clip and the test views
VIEW_SETS = (("central + test views", (0, *TEST_VIEWS)), ("mirrored", MIRRORED), ("mirrored central", ("0m",)),
             ("augmented", (1, 2)),
             ("uniform 5", UNIFORM5))


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------- the features


def all_samples(data: Path, split: int = 1):
    from actionrec.data.datasets import load_dataset

    return load_dataset(str(data), split=split, say=lambda m: None)


def extract(data: Path, out: Path, which: Sequence[str]) -> None:
    """The feature-cache entries of every video at every view of the chosen sets, then their pooled features."""
    from actionrec.models.pretrained import load_pretrained
    from actionrec.training.features import FeatureCache, Sampling

    model = load_pretrained(WEIGHTS)
    cache = FeatureCache(model, CUT, Sampling(frames=16, views=3, seed=0), root=out / "cache", say=say)
    videos = sorted(s.path for s in all_samples(data))
    for name, views in VIEW_SETS:
        if name not in which:
            continue
        t0 = time.perf_counter()
        cache.extract(videos, views=views, batch_size=4)
        say(f"{name}: {len(videos)} videos x {len(views)} views in {time.perf_counter() - t0:.0f} s "
            f"({cache.backbone_calls} clips computed so far)")
    pool(model, cache, videos, [v for name, views in VIEW_SETS if name in which for v in views], out)


def pool(model, cache, videos: Sequence[str], views: Sequence, out: Path) -> None:
    """Pooled 1024-d features of each cached (video, view), added to out/pooled.npz (keys 'contentkey|view')."""
    from actionrec.files import atomic_write
    from actionrec.training.features import content_key, read_entry

    store = load_pooled(out)
    todo = [(content_key(v), view) for v in videos for view in views]
    todo = [(k, view) for k, view in todo if f"{k}|{view}" not in store and cache.path(k, view).exists()]
    t0 = time.perf_counter()
    model.eval()
    with torch.no_grad():
        for start in range(0, len(todo), 32):
            part = todo[start : start + 32]
            x = torch.from_numpy(np.stack([read_entry(cache.path(k, view)) for k, view in part])).float()
            feats = model.forward_features(x, start=CUT).numpy()
            store.update({f"{k}|{view}": f for (k, view), f in zip(part, feats)})
    with atomic_write(out / "pooled.npz") as f:
        np.savez(f, keys=np.array(list(store)), feats=np.stack(list(store.values())).astype(np.float32))
    say(f"pooled {len(todo)} entries in {time.perf_counter() - t0:.0f} s; {len(store)} in {out / 'pooled.npz'}")


def load_pooled(out: Path) -> dict[str, np.ndarray]:
    path = out / "pooled.npz"
    if not path.exists():
        return {}
    with np.load(path) as z:
        return dict(zip(z["keys"].tolist(), z["feats"]))



# ------------------------------------------------------------------------------------------------- the draws


@dataclass
class Draw:
    """Training videos drawn for one (split, examples per class, draw): each from a distinct group of its class."""

    split: int
    n: int
    index: int
    train: list  # Samples
    test: list  # Samples of the split's official test list


def training_part(data: Path, split: int) -> tuple[list, list]:
    samples = all_samples(data, split)
    return [s for s in samples if s.split != "test"], [s for s in samples if s.split == "test"]


def draws(data: Path, split: int, n: int, count: int) -> list[Draw]:
    """`count` seeded draws of `n` videos per class, each from a distinct group of the split's training part."""
    train, test = training_part(data, split)
    by_class: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for s in train:
        by_class[s.label][s.group].append(s)
    out = []
    for index in range(count):
        rng = np.random.default_rng([split, n, index])
        chosen = []
        for label in sorted(by_class):
            groups = sorted(by_class[label])
            for g in rng.choice(len(groups), size=n, replace=False):
                videos = sorted(by_class[label][groups[g]], key=lambda s: s.path)
                chosen.append(videos[int(rng.integers(len(videos)))])
        out.append(Draw(split, n, index, chosen, test))
    return out


class Features:
    """Pooled features by (video, view), read from bench/out/fewshot/pooled.npz."""

    def __init__(self, out: Path):
        from actionrec.training.features import content_key

        self.store = load_pooled(out)
        self.keys: dict[str, str] = {}
        self._key = content_key

    def __call__(self, video: str, view) -> np.ndarray:
        if video not in self.keys:
            self.keys[video] = self._key(video)
        return self.store[f"{self.keys[video]}|{view}"]

    def has(self, videos: Sequence[str], views: Sequence) -> bool:
        try:
            [self(v, view) for v in videos for view in views]
            return True
        except KeyError:
            return False


def rows(feats: Features, samples: Sequence, classes: list[str], views: Sequence) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features, labels and groups (the video's index) of every (sample, view)."""
    x = [feats(s.path, v) for s in samples for v in views]
    y = [classes.index(s.label) for s in samples for _ in views]
    g = [i for i, _ in enumerate(samples) for _ in views]
    return np.stack(x), np.array(y), np.array(g)


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_accuracy(logits_of: Callable[[np.ndarray], np.ndarray], feats: Features, draw: Draw, classes: list[str]) -> float:
    """Each test video scored as the trainer scores it: the mean probabilities over its test views."""
    x = np.stack([[feats(s.path, v) for v in TEST_VIEWS] for s in draw.test])  # (V, views, D)
    probs = softmax(logits_of(x.reshape(-1, x.shape[-1])).reshape(len(draw.test), len(TEST_VIEWS), -1)).mean(1)
    truth = np.array([classes.index(s.label) for s in draw.test])
    return float((probs.argmax(1) == truth).mean())


# ------------------------------------------------------------------------------------------------- the heads


class TrainerHead:
    """The trainer's head phase as `actionrec train` runs it (phases.HeadPhase + phases.fit), on the bench's pooled
    features: phases.pooled_by_all is pointed at them (the only substitution; it pools the same cache entries)."""

    def __init__(self):
        from actionrec.models.pretrained import load_pretrained

        self.model = load_pretrained(WEIGHTS)

    def fit(self, feats: Features, draw: Draw, classes: list[str], views: Sequence, val_fraction: float):
        from actionrec.data.splits import make_splits
        from actionrec.training import phases
        from actionrec.training.trainer import TrainConfig

        cfg = TrainConfig(val_fraction=val_fraction).resolved()
        splits = make_splits(draw.train + draw.test, val_fraction=val_fraction, seed=cfg.seed)
        table = {}

        def acts(samples, vs):
            paths, labels = [], []
            for s in samples:
                for v in vs:
                    table[f"{s.path}|{v}"] = feats(s.path, v)
                    paths.append(f"{s.path}|{v}")
                    labels.append(classes.index(s.label))
            return phases.Activations(paths, labels)

        data = phases.Datasets(acts(splits.train, views), acts(splits.val, [0]), acts([], [0]))
        original = phases.pooled_by_all
        phases.pooled_by_all = lambda model, cut, d, ranks=None: torch.from_numpy(
            np.stack([table[p] for p in d.paths]) if len(d) else np.zeros((0, 1024), np.float32)).float()
        try:
            torch.manual_seed(cfg.seed)
            self.model.reset_classifier(len(classes))
            self.model.drop.p = cfg.dropout
            for p in self.model.parameters():
                p.requires_grad_(False)
            phase = phases.HeadPhase(self.model, CUT, data, cfg.lr, cfg.epochs)
            phases.fit(phase, cfg, phases.History(), lambda m: None)
        finally:
            phases.pooled_by_all = original
        self.model.eval()
        w, b = self.model.head.weight.detach().numpy().copy(), self.model.head.bias.detach().numpy().copy()
        return (lambda x: x @ w.T + b), {"val_videos": len(splits.val)}


def fewshot_head(head: str | None, setting: float | None = None):
    def fit(feats: Features, draw: Draw, classes: list[str], views: Sequence, val_fraction: float):
        from actionrec.training.fewshot import fit_head

        x, y, g = rows(feats, draw.train, classes, views)
        result = fit_head(x, y, g, len(classes), head=head, setting=setting)
        return result.logits, {"value": result.setting, "head": result.head}
    return fit


def l2_prototype(feats: Features, draw: Draw, classes: list[str], views: Sequence, val_fraction: float):
    """The textbook prototype head: each row L2-normalised, cosine to the normalised class means (temperature 16);
    fewshot's prototype head gives each clip the same class as a linear head on the raw features."""
    x, y, _ = rows(feats, draw.train, classes, views)
    unit = lambda a: a / np.linalg.norm(a, axis=-1, keepdims=True)
    protos = unit(np.stack([unit(x)[y == c].mean(0) for c in range(len(classes))]))
    return (lambda t: 16.0 * unit(t) @ protos.T), {}


def chosen(trainer: TrainerHead):
    """What the defaults do with the few-shot rule: fewshot.choose_head of the videos per class; the few-shot head on
    fewshot.training_views(), or the trainer's head (central clip, 20 % validation) above the threshold."""
    from actionrec.training import fewshot

    def fit(feats: Features, draw: Draw, classes: list[str], views: Sequence, val_fraction: float):
        if fewshot.choose_head(draw.n) == fewshot.SOFTMAX:
            return trainer.fit(feats, draw, classes, (0,), 0.2)
        return fewshot_head(fewshot.choose_head(draw.n))(feats, draw, classes, fewshot.training_views(), 0.0)
    return fit


VIEWS = {"new default": (0, *TEST_VIEWS, "0m"), "central": (0,), "3 spread (1/4, 1/2, 3/4)": (0, *TEST_VIEWS),
         "central + 2 augmented": (0, 1, 2), "5 uniform": UNIFORM5,
         "3 spread + 2 augmented": (0, *TEST_VIEWS, 1, 2)}

# (name, fitter, clips per training video, validation fraction)
SETTINGS = (
    ("today: softmax SGD, 20 % val", "trainer", "central", 0.2),
    ("today + --views 3 (augmented)", "trainer", "central + 2 augmented", 0.2),
    ("softmax SGD, no val (all train)", "trainer", "central", 0.0),
    ("softmax SGD, no val, 3 spread clips", "trainer", "3 spread (1/4, 1/2, 3/4)", 0.0),
    ("softmax SGD, no val, central + 2 augmented", "trainer", "central + 2 augmented", 0.0),
    ("prototype (cosine, unit rows: the reference)", "l2proto", "central", 0.0),
    ("prototype", "prototype", "central", 0.0),
    ("prototype, 3 spread clips", "prototype", "3 spread (1/4, 1/2, 3/4)", 0.0),
    ("prototype, central + 2 augmented", "prototype", "central + 2 augmented", 0.0),
    ("prototype, 5 uniform", "prototype", "5 uniform", 0.0),
    ("logistic, CV penalty", "logistic", "central", 0.0),
    ("logistic, 3 spread clips", "logistic", "3 spread (1/4, 1/2, 3/4)", 0.0),
    ("logistic, central + 2 augmented", "logistic", "central + 2 augmented", 0.0),
    ("logistic, 5 uniform", "logistic", "5 uniform", 0.0),
    ("logistic, 3 spread + 2 augmented clips", "logistic", "3 spread + 2 augmented", 0.0),
    ("logistic, 3 spread clips, penalty 1e-6 fixed", "logistic-1e-6", "3 spread (1/4, 1/2, 3/4)", 0.0),
    ("logistic, 3 spread clips, penalty 1e-4 fixed", "logistic-1e-4", "3 spread (1/4, 1/2, 3/4)", 0.0),
    ("logistic, 3 spread clips, penalty 1e-2 fixed", "logistic-1e-2", "3 spread (1/4, 1/2, 3/4)", 0.0),
    ("**new default**: fewshot.choose_head, fewshot.training_views", "auto", "new default", 0.0),
)


def run(data: Path, out: Path, splits: Sequence[int], ns: Sequence[int], counts: dict[int, int],
        only: Sequence[str] | None) -> list[dict]:
    feats = Features(out)
    trainer = TrainerHead()
    fitters = {"trainer": trainer.fit, "l2proto": l2_prototype, "prototype": fewshot_head("prototype"),
               "logistic": fewshot_head("logistic"), "auto": chosen(trainer),
               **{f"logistic-{p}": fewshot_head("logistic", float(p)) for p in ("1e-6", "1e-4", "1e-2")}}
    results = []
    for split in splits:
        for n in ns:
            for draw in draws(data, split, n, counts[n]):
                classes = sorted({s.label for s in draw.train})
                for name, fitter, views, val in SETTINGS:
                    if only and name not in only:
                        continue
                    if not feats.has([s.path for s in draw.train], VIEWS[views]):
                        continue
                    t0 = time.perf_counter()
                    logits_of, info = fitters[fitter](feats, draw, classes, VIEWS[views], val)
                    acc = test_accuracy(logits_of, feats, draw, classes)
                    results.append({"setting": name, "split": split, "n": n, "draw": draw.index, "accuracy": acc,
                                    "seconds": time.perf_counter() - t0, **info})
            say(f"split {split}, {n} per class: {len(results)} results")
    return results


def table(results: list[dict], ns: Sequence[int]) -> str:
    """Mean (min-max) test accuracy over draws and splits, per setting and examples per class."""
    by = defaultdict(list)
    for r in results:
        by[(r["setting"], r["n"])].append(r["accuracy"])
    names = [s[0] for s in SETTINGS if any((s[0], n) in by for n in ns)]
    lines = ["| head, clips per training video | " + " | ".join(f"{n} per class" for n in ns) + " |",
             "|---|" + "---:|" * len(ns)]
    for name in names:
        cells = []
        for n in ns:
            a = 100 * np.array(by.get((name, n), [np.nan]))
            cells.append(f"{a.mean():.1f} ({a.min():.1f}-{a.max():.1f})" if len(by.get((name, n), [])) else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired(results: list[dict], ns: Sequence[int], new: str = SETTINGS[-1][0], old: str = SETTINGS[0][0]) -> str:
    """The new default against today's on the same draws: mean difference in points, its standard error, wins and
    losses; and the new head's median fitting time."""
    acc = {(r["setting"], r["split"], r["n"], r["draw"]): r for r in results}
    lines = [f"| per class | {new} minus {old}, points | wins / losses / draws | s per fit (median) |", "|---:|---:|---|---:|"]
    for n in ns:
        keys = [k[1:] for k in acc if k[0] == new and k[2] == n and (old, *k[1:]) in acc]
        if not keys:
            continue
        d = 100 * np.array([acc[(new, *k)]["accuracy"] - acc[(old, *k)]["accuracy"] for k in keys])
        se = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else np.nan
        seconds = np.median([acc[(new, *k)]["seconds"] for k in keys])
        lines.append(f"| {n} | {d.mean():+.1f} +- {se:.1f} | {(d > 0).sum()} / {(d < 0).sum()} / {len(d)} | {seconds:.3f} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------- variants (tiny data)
# What suits 1-10 videos per class, each variant on the same draws: extra views of each training clip (mirrored),
# other features (Kinetics logits, both), normalisation (centring, shrinkage whitening fitted on the training rows
# only), the penalty grid, and prototype + logistic averaged. `variants` runs them; the rule that picks the default
# is applied to split 1's draws only (`choose`), and splits 2-3 are reported beside it.

BASE_VIEWS = (0, *TEST_VIEWS)


def _unit_rows(a: np.ndarray) -> np.ndarray:
    return a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)


class Transforms:
    """Feature maps fitted on the training rows only: each returns z -> features for the head."""

    def __init__(self):
        from actionrec.models.pretrained import load_pretrained

        head = load_pretrained(WEIGHTS).head
        self.w0, self.b0 = head.weight.detach().numpy().astype(np.float64), head.bias.detach().numpy().astype(np.float64)

    def kinetics(self, x: np.ndarray):
        return lambda z: z @ self.w0.T + self.b0

    def both(self, x: np.ndarray):
        return lambda z: np.concatenate([_unit_rows(z), _unit_rows(z @ self.w0.T + self.b0)], -1)

    @staticmethod
    def centred(x: np.ndarray):
        mu = _unit_rows(x).mean(0)
        return lambda z: _unit_rows(z) - mu

    @staticmethod
    def whitened(x: np.ndarray, shrink: float = 0.5):
        """Shrinkage whitening: (u - mean) C^-1/2 with C = (1-a) cov + a * mean variance * I, u the unit rows."""
        u = _unit_rows(x)
        mu = u.mean(0)
        c = np.cov((u - mu).T, bias=True)
        c = (1 - shrink) * c + shrink * np.trace(c) / len(c) * np.eye(len(c))
        val, vec = np.linalg.eigh(c)
        m = vec / np.sqrt(val) @ vec.T
        return lambda z: (_unit_rows(z) - mu) @ m


WIDE_PENALTIES = (1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def variant(views: Sequence, transform: str | None = None, head: str = "logistic", ensemble: bool = False,
            grid: Sequence[float] | None = None, transforms: "Transforms | None" = None):
    """A few-shot fitter: `head` (or prototype + logistic, logits averaged) on `transform` of the training rows."""
    from actionrec.training import fewshot

    def fit(feats: Features, draw: Draw, classes: list[str], _views: Sequence, val_fraction: float):
        x, y, g = rows(feats, draw.train, classes, views)
        t = getattr(transforms, transform)(x) if transform else (lambda z: z)
        tx = t(x)
        saved = fewshot.PENALTIES
        fewshot.PENALTIES = tuple(grid or saved)
        try:
            fits = [fewshot.fit_head(tx, y, g, len(classes), head=h) for h in (("prototype", "logistic") if ensemble else (head,))]
        finally:
            fewshot.PENALTIES = saved
        return (lambda z: sum(f.logits(t(z)) for f in fits) / len(fits)), {"value": fits[-1].setting}
    return fit


def variant_table(transforms: Transforms) -> dict[str, Callable]:
    m = (*BASE_VIEWS, *MIRRORED)
    return {
        "A. today's default: logistic, 3 clips (central, 1/4, 3/4)": variant(BASE_VIEWS),
        "B. logistic, 3 clips + their mirror images (6)": variant(m),
        "C. prototype + logistic (logits averaged), 3 clips": variant(BASE_VIEWS, ensemble=True),
        "D. prototype + logistic, 6 clips (mirrored)": variant(m, ensemble=True),
        "E. logistic, penalty grid 1e-8..1": variant(BASE_VIEWS, grid=WIDE_PENALTIES),
        "F. logistic on Kinetics-400 logits": variant(BASE_VIEWS, "kinetics", transforms=transforms),
        "G. logistic on pooled + logits (each unit length)": variant(BASE_VIEWS, "both", transforms=transforms),
        "H. logistic, unit rows centred on the training mean": variant(BASE_VIEWS, "centred", transforms=transforms),
        "I. logistic, shrinkage-whitened (a = 0.5)": variant(BASE_VIEWS, "whitened", transforms=transforms),
        "J. logistic, 6 clips (mirrored), centred": variant(m, "centred", transforms=transforms),
        "K. prototype, 6 clips (mirrored)": variant(m, head="prototype"),
        "L. logistic, 3 clips + the central one mirrored (4)": variant((*BASE_VIEWS, "0m")),
        "M. prototype + logistic, 4 clips (central mirrored)": variant((*BASE_VIEWS, "0m"), ensemble=True),
    }


def run_variants(data: Path, out: Path, splits: Sequence[int], ns: Sequence[int], count: int,
                 only: Sequence[str] | None) -> list[dict]:
    feats = Features(out)
    fitters = variant_table(Transforms())
    results = []
    for split in splits:
        for n in ns:
            for draw in draws(data, split, n, count):
                classes = sorted({s.label for s in draw.train})
                for name, fitter in fitters.items():
                    if only and not any(name.startswith(o) for o in only):
                        continue
                    t0 = time.perf_counter()
                    try:
                        logits_of, info = fitter(feats, draw, classes, BASE_VIEWS, 0.0)
                    except KeyError:  # a view not extracted
                        continue
                    acc = test_accuracy(logits_of, feats, draw, classes)
                    results.append({"setting": name, "split": split, "n": n, "draw": draw.index, "accuracy": acc,
                                    "seconds": time.perf_counter() - t0, **info})
            say(f"split {split}, {n} per class: {len(results)} results")
    return results


def variants_summary(results: list[dict], ns: Sequence[int], splits: Sequence[int]) -> str:
    """Mean % (worst draw) per variant and size, for each split group, and the paired difference to variant A."""
    by = defaultdict(dict)
    for r in results:
        by[r["setting"]][(r["split"], r["n"], r["draw"])] = r["accuracy"]
    base = next(k for k in by if k.startswith("A."))
    lines = ["| variant | splits | " + " | ".join(f"{n} per class" for n in ns) + " |", "|---|---|" + "---:|" * len(ns)]
    for name in by:
        for group in ([splits[0]], list(splits[1:]) or None):
            if not group:
                continue
            cells = []
            for n in ns:
                keys = [k for k in by[name] if k[0] in group and k[1] == n and k in by[base]]
                if not keys:
                    cells.append("-")
                    continue
                a = 100 * np.array([by[name][k] for k in keys])
                d = a - 100 * np.array([by[base][k] for k in keys])
                cells.append(f"{a.mean():.1f} (worst {a.min():.1f}; {d.mean():+.1f})")
            lines.append(f"| {name} | {','.join(map(str, group))} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["extract", "run", "table", "variants", "variants-table"])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--views", default=",".join(n for n, _ in VIEW_SETS), help="view sets to extract")
    ap.add_argument("--splits", default="1,2,3")
    ap.add_argument("--n", default="1,2,3,5,10", help="training videos per class")
    ap.add_argument("--draws", default="10,10,10,10,5", help="draws for each --n")
    ap.add_argument("--only", default=None, help="settings to run, ';'-separated names (default: all)")
    ap.add_argument("--tag", default="all", help="run: the results file is results-split<splits>-<tag>.json")
    args = ap.parse_args(argv)
    if args.what == "extract":
        torch.set_num_threads(2)
        extract(args.data, args.out, args.views.split(","))
        return
    torch.set_num_threads(1)  # tiny heads
    ns = [int(n) for n in args.n.split(",")]
    splits = [int(k) for k in args.splits.split(",")]
    if args.what in ("variants", "variants-table"):
        path = args.out / f"variants-{args.tag}.json"
        if args.what == "variants":
            results = run_variants(args.data, args.out, splits, ns, int(args.draws.split(",")[0]),
                                   args.only.split(";") if args.only else None)
            path.write_text(json.dumps(results, indent=1))
        results = [r for f in sorted(args.out.glob("variants-*.json")) for r in json.loads(f.read_text())]
        print(variants_summary(results, ns, splits))
        return
    if args.what == "run":
        counts = dict(zip(ns, (int(c) for c in args.draws.split(","))))
        results = run(args.data, args.out, splits, ns, counts, args.only.split(";") if args.only else None)
        (args.out / f"results-split{'-'.join(map(str, splits))}-{args.tag}.json").write_text(json.dumps(results, indent=1))
    else:  # every results file of these splits
        results = [r for f in sorted(args.out.glob("results-split*.json")) for r in json.loads(f.read_text())
                   if r["split"] in splits]
    print(f"test accuracy %, mean (min-max) over draws and splits; splits {args.splits}\n")
    print(table(results, ns))
    print()
    print(paired(results, ns))


if __name__ == "__main__":
    main()
