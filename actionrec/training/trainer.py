"""Transfer learning on the user's classes: cached backbone features, a softmax head, then fine-tuning of the top.

The study's recipe is the starting point: frozen backbone, softmax head, SGD, 20 epochs, 20 % of training for
validation, then fine-tuning of the last layers. The frozen part of the backbone runs once per clip and view (the
feature cache), so every epoch costs milliseconds for the head and seconds for fine-tuning.
"""

from __future__ import annotations

import math
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ActionrecError
from ..files import write_json
from .features import FeatureCache, Sampling
from .runs import load_run, save_run

# Per-backbone defaults that converge on cached features (see the README for why they differ from the study's).
BACKBONE_DEFAULTS = {
    "i3d": {"weights": "i3d-kinetics400", "lr": 0.05, "finetune_lr": 0.005, "unfreeze": ("Mixed_5b", "Mixed_5c")},
    # C3D's fc7 features are not normalised (squared norm ~1e3-1e4): the study's lr 0.1 diverges on them.
    "c3d": {"weights": "c3d-sports1m", "lr": 1e-3, "finetune_lr": 1e-4, "unfreeze": ("fc6", "fc7")},
}
NO_WEIGHTS = "none"  # --weights none: the backbone from random initialisation (not transfer learning)


@dataclass(frozen=True)
class TrainConfig:
    """Options of one training run; None means the backbone's default."""

    backbone: str = "i3d"  # architecture: i3d or c3d
    weights: str | None = None  # pretrained weights name (default: the backbone's; "none": random initialisation)
    frames: int = 16  # frames per clip (the study: 16 central frames)
    views: int = 1  # clips per training video: 1 central + (views - 1) augmented (offset, flip, crop jitter)
    epochs: int = 20  # head epochs (the study: 20)
    lr: float | None = None  # head learning rate, SGD with momentum
    momentum: float = 0.9  # SGD momentum
    weight_decay: float = 1e-4  # L2 penalty
    dropout: float = 0.5  # dropout before the head
    batch_size: int = 32  # clips per step
    patience: int = 5  # stop when the validation loss has not improved for this many epochs (0: never)
    finetune_epochs: int = 5  # epochs of fine-tuning the unfrozen blocks and the head (0: none; the study: 5-10)
    finetune_lr: float | None = None  # fine-tuning learning rate
    unfreeze: tuple[str, ...] | None = None  # blocks tuned in fine-tuning, consecutive and ending at the top
    val_fraction: float = 0.2  # of training, for validation (the study: 20 %)
    test_fraction: float = 0.2  # held out when the data names no test set
    seed: int = 0  # splits, augmentation, initialisation and shuffling

    def resolved(self) -> TrainConfig:
        if self.backbone not in BACKBONE_DEFAULTS:
            raise ActionrecError(f"unknown backbone {self.backbone!r}; choose one of: {', '.join(BACKBONE_DEFAULTS)}")
        d = BACKBONE_DEFAULTS[self.backbone]
        return replace(
            self,
            weights=self.weights or d["weights"],
            lr=self.lr if self.lr is not None else d["lr"],
            finetune_lr=self.finetune_lr if self.finetune_lr is not None else d["finetune_lr"],
            unfreeze=tuple(self.unfreeze) if self.unfreeze is not None else d["unfreeze"],
        )


def cut_endpoint(model: nn.Module, unfreeze: Sequence[str]) -> str:
    """The last frozen endpoint: features are cached there. `unfreeze` must be the consecutive top blocks."""
    endpoints, trainable = model.ENDPOINTS, model.TRAINABLE_BLOCKS
    if not unfreeze:
        return model.FEATURES_ENDPOINT
    unknown = [u for u in unfreeze if u not in trainable]
    if unknown:
        raise ActionrecError(f"--unfreeze {','.join(unfreeze)}: unknown block {unknown[0]!r}; blocks: {', '.join(trainable)}")
    first = min(endpoints.index(u) for u in unfreeze)
    expected = [e for e in endpoints[first:] if e in trainable]
    if sorted(unfreeze, key=endpoints.index) != expected:
        raise ActionrecError(f"--unfreeze {','.join(unfreeze)}: tune consecutive top blocks, e.g. {','.join(expected)}")
    if first == 0:
        raise ActionrecError("--unfreeze cannot include the first block: nothing would be frozen and cached")
    return endpoints[first - 1]


def gflops_per_clip(model: nn.Module, frames: int) -> float:
    """Forward FLOPs of one clip (a multiply-add counts 2), counted by PyTorch on a shape-only copy."""
    import copy

    from torch.utils.flop_counter import FlopCounterMode

    crop = model.info.spec.crop
    meta = copy.deepcopy(model).to("meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        meta(torch.empty(1, 3, frames, crop, crop, device="meta"))
    return counter.get_total_flops() / 1e9


def backbone_for(cfg: TrainConfig, say: Callable[[str], None], explicit: bool = True) -> nn.Module:
    """The pretrained backbone of `cfg`, or a randomly initialised one (said loudly) when there are no weights.

    Weights the user named must load; the backbone's default weights fall back to random initialisation with a
    warning when they cannot be had (C3D's Sports-1M weights are not downloadable everywhere)."""
    from dataclasses import replace as replace_spec

    from ..models.pretrained import ModelInfo, build_model, get_spec, load_pretrained

    if cfg.weights != NO_WEIGHTS:
        spec = get_spec(cfg.weights)
        if spec.arch != cfg.backbone:
            raise ActionrecError(f"--weights {cfg.weights} are {spec.arch} weights, not {cfg.backbone}; see `actionrec weights list`")
        try:
            model = load_pretrained(cfg.weights)
            say(f"backbone: {cfg.backbone} with pretrained weights {spec.name} ({spec.description})")
            return model
        except ActionrecError as err:
            if explicit:
                raise
            say(f"warning: no {spec.name} weights ({err}); fetch them with `actionrec weights fetch {spec.name} --from FILE`")
    spec = get_spec(BACKBONE_DEFAULTS[cfg.backbone]["weights"])
    say(f"warning: training {cfg.backbone} from random initialisation (seed {cfg.seed}): this is NOT transfer learning, "
        "expect far lower accuracy than with pretrained weights")
    torch.manual_seed(cfg.seed)
    name = f"{cfg.backbone}-random-seed{cfg.seed}"
    info = ModelInfo(name=name, spec=replace_spec(spec, name=name, url=""), categories=spec.categories,
                     weights_sha256=f"random-seed{cfg.seed}", predict_frames=spec.predict_frames, identity="")
    return build_model(info, None)


class _Activations:
    """Cached activations of a list of clips, read from disk batch by batch (memory stays flat)."""

    def __init__(self, paths: Sequence[Path], labels: Sequence[int]):
        self.paths, self.labels = list(paths), torch.tensor(list(labels), dtype=torch.long)

    def __len__(self) -> int:
        return len(self.paths)

    def batches(self, batch_size: int, order: Sequence[int] | None = None):
        order = range(len(self)) if order is None else order
        order = list(order)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            x = torch.from_numpy(np.stack([np.load(self.paths[i]) for i in idx])).float()
            yield x, self.labels[idx]


def _top_logits(model: nn.Module, cut: str, x: torch.Tensor) -> torch.Tensor:
    return model.forward_head(model.forward_features(x, start=cut))


def _evaluate(model: nn.Module, cut: str, data: _Activations, batch_size: int) -> tuple[float, float, np.ndarray]:
    """Mean loss, accuracy and the predictions of the top on cached activations, in eval mode."""
    model.eval()
    losses, preds = [], []
    with torch.no_grad():
        for x, y in data.batches(batch_size):
            logits = _top_logits(model, cut, x)
            losses.append(F.cross_entropy(logits, y, reduction="sum").item())
            preds.append(logits.argmax(1).numpy())
    pred = np.concatenate(preds) if preds else np.zeros(0, dtype=int)
    n = max(len(data), 1)
    return sum(losses) / n, float((pred == data.labels.numpy()).mean()) if len(data) else float("nan"), pred


def _probabilities(model: nn.Module, cut: str, data: _Activations, batch_size: int, num_classes: int) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        parts = [_top_logits(model, cut, x).softmax(-1) for x, _ in data.batches(batch_size)]
    return torch.cat(parts).numpy() if parts else np.zeros((0, num_classes), np.float32)


def _pooled(model: nn.Module, cut: str, data: _Activations, batch_size: int) -> torch.Tensor:
    with torch.no_grad():
        parts = [model.forward_features(x, start=cut) for x, _ in data.batches(batch_size)]
    return torch.cat(parts) if parts else torch.zeros(0, model.num_features)


@dataclass
class _History:
    rows: list[dict] = field(default_factory=list)

    def add(self, **row) -> None:
        self.rows.append(row)


def _fit(
    step_params: list[nn.Parameter],
    lr: float,
    cfg: TrainConfig,
    epochs: int,
    n_train: int,
    train_step: Callable[[list[int]], tuple[float, int]],
    validate: Callable[[], tuple[float, float]],
    snapshot: Callable[[], dict],
    restore: Callable[[dict], None],
    history: _History,
    phase: str,
    say: Callable[[str], None],
) -> int:
    """SGD with momentum, L2, a cosine schedule and early stopping on the validation loss; returns the best epoch."""
    optimizer = torch.optim.SGD(step_params, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(n_train / cfg.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs * steps_per_epoch, 1))
    generator = torch.Generator().manual_seed(cfg.seed + (0 if phase == "head" else 1))
    best = (math.inf, 0, snapshot())
    first_epoch = len(history.rows) + 1
    for epoch in range(first_epoch, first_epoch + epochs):
        order = torch.randperm(n_train, generator=generator).tolist()
        loss_sum, correct = 0.0, 0
        for start in range(0, n_train, cfg.batch_size):
            optimizer.zero_grad(set_to_none=True)
            batch_loss, batch_correct = train_step(order[start : start + cfg.batch_size])
            optimizer.step()
            schedule.step()
            loss_sum += batch_loss
            correct += batch_correct
        val_loss, val_acc = validate()
        history.add(epoch=epoch, phase=phase, train_loss=loss_sum / n_train, train_acc=correct / n_train,
                    val_loss=val_loss, val_acc=val_acc, lr=optimizer.param_groups[0]["lr"])
        say(f"{phase} epoch {epoch}: train loss {loss_sum / n_train:.3f} acc {correct / n_train:.3f} | val loss {val_loss:.3f} acc {val_acc:.3f}")
        score = loss_sum / n_train if math.isnan(val_loss) else val_loss  # no validation clips: the training loss
        if score < best[0] - 1e-6:
            best = (score, epoch, snapshot())
        elif cfg.patience and epoch - best[1] >= cfg.patience:
            say(f"{phase}: early stop, validation loss has not improved for {cfg.patience} epochs")
            break
    restore(best[2])
    return best[1]


def _versions() -> dict[str, str]:
    from .. import __version__

    import numpy

    return {"actionrec": __version__, "torch": torch.__version__, "numpy": numpy.__version__, "python": platform.python_version()}


def train(
    splits,
    out: str | os.PathLike,
    config: TrainConfig = TrainConfig(),
    cache_root: str | os.PathLike | None = None,
    say: Callable[[str], None] = lambda m: print(m, file=sys.stderr),
    progress: bool = True,
) -> dict:
    """Train on `splits` (a datasets.Splits) and write the run directory `out`; returns its metrics."""
    from . import report

    cfg = config.resolved()
    if cfg.backbone == "c3d" and cfg.frames != 16:
        raise ActionrecError(f"--frames {cfg.frames}: C3D takes clips of exactly 16 frames (its fc6 is sized for them)")
    torch.manual_seed(cfg.seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timing: dict[str, float] = {}
    t_start = time.perf_counter()

    model = backbone_for(cfg, say, explicit=config.weights is not None)
    random_init = model.info.weights_sha256.startswith("random")
    classes = list(splits.classes)
    index = {c: i for i, c in enumerate(classes)}
    cut = cut_endpoint(model, cfg.unfreeze)  # also without fine-tuning, so head-only runs share the cache
    sampling = Sampling(frames=cfg.frames, views=cfg.views, seed=cfg.seed)
    cache = FeatureCache(model, cut, sampling, root=cache_root)
    skipped: list[dict] = []

    def on_error(video: str, message: str) -> None:
        skipped.append({"video": video, "error": message})
        say(f"skipped: {message}")

    # Features: the frozen part runs once per clip and view (training videos get the augmented views too).
    t0 = time.perf_counter()
    everything = [s.path for s in splits.train + splits.val + splits.test]
    train_paths = {s.path for s in splits.train}
    bar = _progress_bar(len(everything), "features", progress)
    entries = cache.extract(
        everything,
        views=lambda v: range(cfg.views) if v in train_paths else (0,),
        on_error=on_error,
        progress=bar.update,
    )
    bar.close()
    timing["features"] = time.perf_counter() - t0

    def activations(samples, all_views: bool) -> _Activations:
        paths, labels = [], []
        for s in samples:
            for view in range(cfg.views if all_views else 1):
                if (s.path, view) in entries:
                    paths.append(entries[(s.path, view)])
                    labels.append(index[s.label])
        return _Activations(paths, labels)

    train_set, val_set, test_set = activations(splits.train, True), activations(splits.val, False), activations(splits.test, False)
    if len(train_set) == 0 or len({int(y) for y in train_set.labels}) < 2:
        raise ActionrecError(f"{out}: fewer than 2 classes have readable training videos; add videos or fix the skipped files")

    model.reset_classifier(len(classes))
    model.drop.p = cfg.dropout
    for p in model.parameters():
        p.requires_grad_(False)
    history = _History()

    # Phase 1: the head on pooled features of the frozen backbone (computed once from the cache).
    t0 = time.perf_counter()
    model.eval()
    pooled_train = _pooled(model, cut, train_set, 64)
    pooled_val = _pooled(model, cut, val_set, 64)
    head = model.head
    for p in head.parameters():
        p.requires_grad_(True)

    def head_step(idx: list[int]) -> tuple[float, int]:
        model.drop.train()
        logits = model.forward_head(pooled_train[idx])
        loss = F.cross_entropy(logits, train_set.labels[idx])
        loss.backward()
        return loss.item() * len(idx), int((logits.argmax(1) == train_set.labels[idx]).sum())

    def head_validate() -> tuple[float, float]:
        model.eval()
        with torch.no_grad():
            logits = model.forward_head(pooled_val)
        if not len(val_set):
            return float("nan"), float("nan")
        return F.cross_entropy(logits, val_set.labels).item(), float((logits.argmax(1) == val_set.labels).float().mean())

    best_head = _fit(list(head.parameters()), cfg.lr, cfg, cfg.epochs, len(train_set), head_step, head_validate,
                     lambda: {k: v.clone() for k, v in head.state_dict().items()}, head.load_state_dict, history, "head", say)
    timing["head"] = time.perf_counter() - t0
    model.eval()
    head_test_loss, head_test_acc, _ = _evaluate(model, cut, test_set, 64)
    best = {"head": best_head}

    # Phase 2: fine-tune the top blocks and the head from the cached activations at the cut.
    trained_modules = ["head"]
    if cfg.finetune_epochs and cfg.unfreeze:
        t0 = time.perf_counter()
        top = [getattr(model, name) for name in cfg.unfreeze] + [head]
        params = [p for m in top for p in m.parameters()]
        for p in params:
            p.requires_grad_(True)
        trained_modules = list(cfg.unfreeze) + ["head"]

        def ft_step(idx: list[int]) -> tuple[float, int]:
            model.eval()  # BatchNorm keeps its pretrained statistics; only dropout is active
            model.drop.train()
            x, y = next(train_set.batches(len(idx), idx))
            logits = _top_logits(model, cut, x)
            loss = F.cross_entropy(logits, y)
            loss.backward()
            return loss.item() * len(idx), int((logits.argmax(1) == y).sum())

        def ft_validate() -> tuple[float, float]:
            loss, acc, _ = _evaluate(model, cut, val_set, 64)
            return (loss, acc) if len(val_set) else (float("nan"), float("nan"))

        def snapshot() -> dict:
            return {name: {k: v.clone() for k, v in getattr(model, name).state_dict().items()} for name in trained_modules}

        def restore(state: dict) -> None:
            for name, sub in state.items():
                getattr(model, name).load_state_dict(sub)

        best["finetune"] = _fit(params, cfg.finetune_lr, cfg, cfg.finetune_epochs, len(train_set), ft_step, ft_validate,
                                snapshot, restore, history, "finetune", say)
        timing["finetune"] = time.perf_counter() - t0
    for p in model.parameters():
        p.requires_grad_(False)

    # Test: the held-out clips, once, with the final model.
    t0 = time.perf_counter()
    test_loss, test_acc, test_pred = _evaluate(model, cut, test_set, 64)
    val_probs = _probabilities(model, cut, val_set, 64, len(classes))  # calibrates the timeline's per-class thresholds
    per_class, confusion = report.per_class_metrics(test_set.labels.numpy(), test_pred, classes)
    timing["evaluate"] = time.perf_counter() - t0
    timing["total"] = time.perf_counter() - t_start

    saved_modules = [name for name, _ in model.named_children()] if random_init else trained_modules
    spec = model.info.spec
    config_json = {
        "classes": classes,
        "backbone": cfg.backbone,
        "weights": None if random_init else cfg.weights,
        "weights_sha256": None if random_init else model.info.weights_sha256,
        "trained_modules": saved_modules,
        "cut_endpoint": cut,
        "frames": cfg.frames,
        "preprocessing": {"fps": spec.fps, "resize": spec.resize, "crop": spec.crop,
                          "mean": spec.mean, "std": spec.std, "value_range": spec.value_range},
        "train_config": asdict(cfg),
        "versions": _versions(),
    }
    total_params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for name in trained_modules for p in getattr(model, name).parameters())
    metrics = {
        "run": str(out),
        "backbone": cfg.backbone,
        "weights": f"none (random initialisation, seed {cfg.seed})" if random_init else cfg.weights,
        "classes": classes,
        "history": history.rows,
        "best_epoch": best,
        "test_loss": test_loss,
        "test_accuracy": test_acc,
        "head_test_loss": head_test_loss if cfg.finetune_epochs else None,
        "head_test_accuracy": head_test_acc if cfg.finetune_epochs and cfg.unfreeze else None,
        "per_class": per_class,
        "confusion_matrix": confusion,
        "splits": {"policy": splits.policy, "counts": splits.counts(), "clips": {"train": len(train_set), "val": len(val_set), "test": len(test_set)}},
        "skipped": skipped,
        "val_probs": np.round(val_probs, 6).tolist(),
        "val_labels": val_set.labels.tolist(),
        "timing": timing,
        "model": {"parameters": total_params, "trainable_parameters": trainable,
                  "input": f"3x{cfg.frames}x{spec.crop}x{spec.crop}",
                  "gflops_per_clip": round(gflops_per_clip(model, cfg.frames), 2)},
        "config": asdict(cfg),
        "feature_cache": {**cache.describe(), "backbone_clips": cache.backbone_calls},
        "versions": config_json["versions"],
    }
    save_run(model, out, config_json, saved_modules)
    write_json(out / "metrics.json", metrics)
    report.write_report(out)
    return metrics


def _progress_bar(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="video", file=sys.stderr, disable=not enabled, leave=False)


def evaluate_run(run_dir: str | os.PathLike, samples, cache_root: str | os.PathLike | None = None,
                 say: Callable[[str], None] = lambda m: print(m, file=sys.stderr), progress: bool = True) -> dict:
    """Loss, accuracy, per-class metrics and confusion matrix of a trained run on labelled `samples`."""
    from . import report

    model = load_run(run_dir)
    run = model.info.run
    classes = list(model.info.categories)
    unknown = sorted({s.label for s in samples} - set(classes))
    if unknown:
        raise ActionrecError(f"{run_dir}: was not trained on {', '.join(unknown)}; it knows {', '.join(classes)} (pass --classes to select)")
    cut = run["cut_endpoint"]
    cache = FeatureCache(model, cut, Sampling(frames=run["frames"], seed=run["train_config"]["seed"]), root=cache_root)
    skipped: list[dict] = []

    def on_error(video: str, message: str) -> None:
        skipped.append({"video": video, "error": message})
        say(f"skipped: {message}")

    t0 = time.perf_counter()
    bar = _progress_bar(len(samples), "features", progress)
    entries = cache.extract([s.path for s in samples], on_error=on_error, progress=bar.update)
    bar.close()
    kept = [s for s in samples if (s.path, 0) in entries]
    data = _Activations([entries[(s.path, 0)] for s in kept], [classes.index(s.label) for s in kept])
    loss, acc, pred = _evaluate(model, cut, data, 64)
    per_class, confusion = report.per_class_metrics(data.labels.numpy(), pred, classes)
    return {"run": str(run_dir), "classes": classes, "clips": len(kept), "test_loss": loss, "test_accuracy": acc,
            "per_class": per_class, "confusion_matrix": confusion, "skipped": skipped,
            "timing": {"total": time.perf_counter() - t0}, "backbone_clips": cache.backbone_calls}
