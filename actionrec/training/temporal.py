"""Training a temporal head (:class:`actionrec.models.temporal.TemporalHead`) on the backbone's per-step features, from
the cache like the softmax head (``actionrec train --head temporal``).

Sequences of different lengths are padded and masked (:func:`pad_steps`). :func:`fit_temporal` trains it with AdamW, a cosine
schedule and early stopping on the validation loss (the best epoch is kept), on random crops of ``crop_steps`` steps
when the training sequences are longer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ActionrecError
from ..models.temporal import KINDS, MIN_STEPS, TemporalHead, masked_mean, pad_steps
from .phases import Activations, Datasets, device_of, from_cache

__all__ = ["KINDS", "MIN_STEPS", "StepSet", "TemporalConfig", "TemporalFit", "TemporalHead", "evaluate_temporal",
           "fit_temporal", "masked_mean", "pad_steps", "predict_temporal", "random_crops", "steps_of", "train_temporal_head"]



@dataclass(frozen=True)
class TemporalConfig:
    """The temporal head and how it is trained (defaults measured in bench/bench_accuracy.py)."""

    kind: str = "conv"  # "conv": 1D convolution over steps; "gru": bidirectional GRU
    hidden: int = 128  # channels of the temporal branch
    kernel: int = 3  # steps per convolution (conv)
    dropout: float = 0.5  # on the input steps and before the classifier
    epochs: int = 40
    lr: float = 1e-3  # AdamW
    weight_decay: float = 1e-2
    batch_size: int = 32
    patience: int = 10  # stop when the validation loss has not improved for this many epochs (0: never)
    crop_steps: int | None = None  # train on random windows of this many steps (None: whole sequences)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ActionrecError(f"unknown temporal head {self.kind!r}; choose one of: {', '.join(KINDS)}")
        for name in ("hidden", "kernel", "epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ActionrecError(f"temporal head: {name} must be at least 1, not {getattr(self, name)}")
        if self.crop_steps is not None and self.crop_steps < MIN_STEPS:
            raise ActionrecError(f"temporal head: crop_steps must be at least {MIN_STEPS}, not {self.crop_steps}")
        if not (0.0 <= self.dropout < 1.0 and self.lr > 0 and self.weight_decay >= 0 and self.patience >= 0):
            raise ActionrecError("temporal head: need 0 <= dropout < 1, lr > 0, weight_decay >= 0, patience >= 0")


@dataclass
class StepSet:
    """Padded per-step features, their mask and labels: one sequence per clip."""

    x: torch.Tensor  # (N, T, C)
    mask: torch.Tensor  # (N, T) bool
    labels: torch.Tensor  # (N,) long

    @classmethod
    def of(cls, sequences: Sequence[np.ndarray | torch.Tensor], labels: Sequence[int]) -> StepSet:
        if len(sequences) != len(labels):
            raise ActionrecError(f"{len(sequences)} sequences but {len(labels)} labels")
        x, mask = pad_steps(sequences)
        return cls(x, mask, torch.as_tensor(list(labels), dtype=torch.long))

    def __len__(self) -> int:
        return len(self.labels)


def random_crops(data: StepSet, idx: list[int], steps: int | None, generator: torch.Generator
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """A window of `steps` valid steps at a random place in each sequence of `idx` (whole when shorter or None)."""
    x, mask = data.x[idx], data.mask[idx]
    if steps is None or x.shape[1] <= steps:
        return x, mask
    out, out_mask = torch.zeros(len(idx), steps, x.shape[2]), torch.zeros(len(idx), steps, dtype=torch.bool)
    for i, length in enumerate(mask.sum(1).tolist()):
        start = int(torch.randint(0, max(length - steps, 0) + 1, (1,), generator=generator))
        take = min(steps, length)
        out[i, :take], out_mask[i, :take] = x[i, start : start + take], True
    return out, out_mask


def evaluate_temporal(head: nn.Module, data: StepSet) -> tuple[float, float]:
    """(mean loss, accuracy) of `head` on `data` in eval mode; NaNs when it is empty."""
    if not len(data):
        return float("nan"), float("nan")
    logits = predict_temporal(head, data.x, data.mask, probs=False)
    return F.cross_entropy(logits, data.labels).item(), float((logits.argmax(1) == data.labels).float().mean())


def predict_temporal(head: nn.Module, x: torch.Tensor, mask: torch.Tensor | None = None, probs: bool = True,
                     batch_size: int = 256) -> torch.Tensor:
    """Softmax probabilities (or logits) of `head` on padded steps, in eval mode, without gradients."""
    head.eval()
    with torch.no_grad():
        parts = [head(x[i : i + batch_size], None if mask is None else mask[i : i + batch_size])
                 for i in range(0, len(x), batch_size)]
    logits = torch.cat(parts) if parts else torch.zeros(0, head.num_classes)
    return logits.softmax(-1) if probs else logits


@dataclass
class TemporalFit:
    """What :func:`fit_temporal` did: the best epoch (kept in the head) and one row per epoch."""

    best_epoch: int
    history: list[dict] = field(default_factory=list)


def fit_temporal(head: TemporalHead, train: StepSet, val: StepSet | None, cfg: TemporalConfig = TemporalConfig(),
                 say: Callable[[str], None] | None = None) -> TemporalFit:
    """Train `head` on `train` (AdamW, cosine schedule, early stopping on the validation loss, or the training loss
    without validation clips); the head ends at its best epoch."""
    if len(train) == 0:
        raise ActionrecError("temporal head: no training sequences")
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    optimizer = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    per_epoch = math.ceil(len(train) / cfg.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(cfg.epochs * per_epoch, 1))
    best = (math.inf, 0, {k: v.clone() for k, v in head.state_dict().items()})
    result = TemporalFit(0)
    for epoch in range(1, cfg.epochs + 1):
        head.train()
        loss_sum = 0.0
        order = torch.randperm(len(train), generator=generator).tolist()
        for start in range(0, len(train), cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            x, mask = random_crops(train, idx, cfg.crop_steps, generator)
            loss = F.cross_entropy(head(x, mask), train.labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            loss_sum += loss.item() * len(idx)
        val_loss, val_acc = evaluate_temporal(head, val) if val is not None else (float("nan"), float("nan"))
        result.history.append({"epoch": epoch, "phase": "temporal", "train_loss": loss_sum / len(train),
                               "val_loss": val_loss, "val_acc": val_acc, "lr": optimizer.param_groups[0]["lr"]})
        if say:
            say(f"temporal epoch {epoch}: train loss {loss_sum / len(train):.3f} | val loss {val_loss:.3f} acc {val_acc:.3f}")
        score = loss_sum / len(train) if math.isnan(val_loss) else val_loss
        if score < best[0] - 1e-6:
            best = (score, epoch, {k: v.clone() for k, v in head.state_dict().items()})
        elif cfg.patience and epoch - best[1] >= cfg.patience:
            break
    head.load_state_dict(best[2])
    result.best_epoch = best[1]
    return result


def steps_of(model: nn.Module, cut: str, data: Activations) -> torch.Tensor:
    """The per-step features (N, T', C) of every cached clip of `data`, from its activations at the cut (on the CPU)."""
    model.eval()
    steps = lambda x: model.forward_steps(x, start=cut).float()  # noqa: E731
    return from_cache(model, data, steps, (0, 0, model.num_features)).cpu()


def train_temporal_head(model: nn.Module, cut: str, data: Datasets, cfg: TemporalConfig,
                        say: Callable[[str], None] | None = None) -> TemporalFit:
    """A :class:`TemporalHead` for `model`'s classes, trained on the per-step features of the cached training clips
    (validated on the validation clips) and attached as `model.temporal_head`, which then classifies."""
    if len(data.train) == 0:
        raise ActionrecError("temporal head: no training clips")
    train = StepSet.of(steps_of(model, cut, data.train), data.train.labels.tolist())
    if train.x.shape[1] < MIN_STEPS:
        raise ActionrecError(f"temporal head: the clips give {train.x.shape[1]} time step(s); it needs at least "
                             f"{MIN_STEPS} (one per 8 frames): pass --frames {8 * MIN_STEPS} or more (default 64)")
    val = StepSet.of(steps_of(model, cut, data.val), data.val.labels.tolist()) if len(data.val) else None
    head = TemporalHead(model.num_features, model.num_classes, **architecture(cfg))
    fit = fit_temporal(head, train, val, cfg, say)
    model.temporal_head = head.eval().to(device_of(model))
    return fit


def architecture(cfg: TemporalConfig) -> dict:
    """The options that build the head (a run's config.json keeps them, so the run's model is rebuilt the same)."""
    return {"kind": cfg.kind, "hidden": cfg.hidden, "kernel": cfg.kernel, "dropout": cfg.dropout}
