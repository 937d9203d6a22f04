"""The training phases on cached activations: the head on pooled features, then fine-tuning of the top blocks.

A :class:`Phase` says what it trains (named modules of the model), how one step on a batch of training clips goes,
how it is validated, and keeps snapshots of its modules; :func:`fit` runs any phase with the same optimiser,
schedule and early stopping. The activations are read from the feature cache batch by batch (memory stays flat).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ActionrecError
from .features import DamagedEntry, read_entry

if TYPE_CHECKING:
    from .trainer import TrainConfig

EVAL_BATCH = 64  # clips per forward when evaluating (no gradients: memory is not the limit)
NO_SCORE = (float("nan"), float("nan"))  # (loss, accuracy) of an empty set


class Activations:
    """Cached activations of a list of clips, read from disk batch by batch (memory stays flat)."""

    def __init__(self, paths: Sequence[Path], labels: Sequence[int]):
        self.paths, self.labels = list(paths), torch.tensor(list(labels), dtype=torch.long)

    def __len__(self) -> int:
        return len(self.paths)

    def _load(self, i: int) -> np.ndarray:
        try:
            return read_entry(self.paths[i])
        except DamagedEntry as err:  # checked when extracted: it changed during the run
            raise ActionrecError(f"{err} while training; run the command again (the entry will be computed again)") from None

    def batches(self, batch_size: int, order: Sequence[int] | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = list(range(len(self)) if order is None else order)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            x = torch.from_numpy(np.stack([self._load(i) for i in idx])).float()
            yield x, self.labels[idx]


@dataclass
class Datasets:
    """The activations of each split, in the model's class order."""

    train: Activations
    val: Activations
    test: Activations

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def top_logits(model: nn.Module, cut: str, x: torch.Tensor) -> torch.Tensor:
    """Logits of the part of the model above the cut, from activations at the cut."""
    return model.forward_head(model.forward_features(x, start=cut))


def evaluate(model: nn.Module, cut: str, data: Activations) -> tuple[float, float, np.ndarray]:
    """Mean loss, accuracy and the predictions of the top on cached activations, in eval mode."""
    model.eval()
    losses, preds = [], []
    with torch.no_grad():
        for x, y in data.batches(EVAL_BATCH):
            logits = top_logits(model, cut, x)
            losses.append(F.cross_entropy(logits, y, reduction="sum").item())
            preds.append(logits.argmax(1).numpy())
    pred = np.concatenate(preds) if preds else np.zeros(0, dtype=int)
    n = max(len(data), 1)
    return sum(losses) / n, float((pred == data.labels.numpy()).mean()) if len(data) else float("nan"), pred


def probabilities(model: nn.Module, cut: str, data: Activations, num_classes: int) -> np.ndarray:
    """Softmax outputs of the top on cached activations (the timeline calibrates its thresholds on them)."""
    model.eval()
    with torch.no_grad():
        parts = [top_logits(model, cut, x).softmax(-1) for x, _ in data.batches(EVAL_BATCH)]
    return torch.cat(parts).numpy() if parts else np.zeros((0, num_classes), np.float32)


def pooled(model: nn.Module, cut: str, data: Activations) -> torch.Tensor:
    """The pooled features (the head's input) of cached activations."""
    with torch.no_grad():
        parts = [model.forward_features(x, start=cut) for x, _ in data.batches(EVAL_BATCH)]
    return torch.cat(parts) if parts else torch.zeros(0, model.num_features)


@dataclass
class History:
    """One row per epoch of every phase (metrics.json's `history`)."""

    rows: list[dict] = field(default_factory=list)

    def add(self, **row) -> None:
        self.rows.append(row)


class Phase:
    """One phase of training: the modules it trains, a step, a validation, and snapshots of its modules."""

    name = "phase"
    seed_offset = 0  # the phase's shuffling generator is seeded with the run's seed + this

    def __init__(self, model: nn.Module, cut: str, data: Datasets, modules: Sequence[str], lr: float, epochs: int):
        self.model, self.cut, self.data = model, cut, data
        self.modules, self.lr, self.epochs = list(modules), lr, epochs

    def parameters(self) -> list[nn.Parameter]:
        return [p for name in self.modules for p in getattr(self.model, name).parameters()]

    def step(self, idx: list[int]) -> tuple[float, int]:
        """Forward and backward on training clips `idx`; returns (summed loss, correct predictions)."""
        raise NotImplementedError

    def validate(self) -> tuple[float, float]:
        """(loss, accuracy) on the validation clips; NaNs when there are none."""
        raise NotImplementedError

    def snapshot(self) -> dict:
        return {name: {k: v.clone() for k, v in getattr(self.model, name).state_dict().items()} for name in self.modules}

    def restore(self, state: dict) -> None:
        for name, sub in state.items():
            getattr(self.model, name).load_state_dict(sub)

    def _scored(self, logits: torch.Tensor, y: torch.Tensor) -> tuple[float, int]:
        loss = F.cross_entropy(logits, y)
        loss.backward()
        return loss.item() * len(y), int((logits.argmax(1) == y).sum())


class HeadPhase(Phase):
    """The softmax head on the pooled features of the frozen backbone (pooled once, before the first epoch)."""

    name = "head"
    seed_offset = 0

    def __init__(self, model: nn.Module, cut: str, data: Datasets, lr: float, epochs: int):
        super().__init__(model, cut, data, ["head"], lr, epochs)
        model.eval()
        self.pooled_train = pooled(model, cut, data.train)
        self.pooled_val = pooled(model, cut, data.val)

    def step(self, idx: list[int]) -> tuple[float, int]:
        self.model.drop.train()
        return self._scored(self.model.forward_head(self.pooled_train[idx]), self.data.train.labels[idx])

    def validate(self) -> tuple[float, float]:
        self.model.eval()
        if not len(self.data.val):
            return NO_SCORE
        with torch.no_grad():
            logits = self.model.forward_head(self.pooled_val)
        labels = self.data.val.labels
        return F.cross_entropy(logits, labels).item(), float((logits.argmax(1) == labels).float().mean())


class FinetunePhase(Phase):
    """The unfrozen top blocks and the head, from the cached activations at the cut."""

    name = "finetune"
    seed_offset = 1

    def __init__(self, model: nn.Module, cut: str, data: Datasets, unfreeze: Sequence[str], lr: float, epochs: int):
        super().__init__(model, cut, data, [*unfreeze, "head"], lr, epochs)

    def step(self, idx: list[int]) -> tuple[float, int]:
        self.model.eval()  # BatchNorm keeps its pretrained statistics; only dropout is active
        self.model.drop.train()
        x, y = next(self.data.train.batches(len(idx), idx))
        return self._scored(top_logits(self.model, self.cut, x), y)

    def validate(self) -> tuple[float, float]:
        loss, acc, _ = evaluate(self.model, self.cut, self.data.val)
        return (loss, acc) if len(self.data.val) else NO_SCORE


def fit(phase: Phase, cfg: TrainConfig, history: History, say: Callable[[str], None]) -> int:
    """SGD with momentum, L2, a cosine schedule and early stopping on the validation loss; the phase's modules end
    at their best epoch, which is returned."""
    params = phase.parameters()
    for p in params:
        p.requires_grad_(True)
    n_train = len(phase.data.train)
    optimizer = torch.optim.SGD(params, lr=phase.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(n_train / cfg.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(phase.epochs * steps_per_epoch, 1))
    generator = torch.Generator().manual_seed(cfg.seed + phase.seed_offset)
    best = (math.inf, 0, phase.snapshot())
    first_epoch = len(history.rows) + 1
    for epoch in range(first_epoch, first_epoch + phase.epochs):
        order = torch.randperm(n_train, generator=generator).tolist()
        loss_sum, correct = 0.0, 0
        for start in range(0, n_train, cfg.batch_size):
            optimizer.zero_grad(set_to_none=True)
            batch_loss, batch_correct = phase.step(order[start : start + cfg.batch_size])
            optimizer.step()
            schedule.step()
            loss_sum += batch_loss
            correct += batch_correct
        val_loss, val_acc = phase.validate()
        train_loss, train_acc = loss_sum / n_train, correct / n_train
        history.add(epoch=epoch, phase=phase.name, train_loss=train_loss, train_acc=train_acc,
                    val_loss=val_loss, val_acc=val_acc, lr=optimizer.param_groups[0]["lr"])
        say(f"{phase.name} epoch {epoch}: train loss {train_loss:.3f} acc {train_acc:.3f} | val loss {val_loss:.3f} acc {val_acc:.3f}")
        score = train_loss if math.isnan(val_loss) else val_loss  # no validation clips: the training loss
        if score < best[0] - 1e-6:
            best = (score, epoch, phase.snapshot())
        elif cfg.patience and epoch - best[1] >= cfg.patience:
            say(f"{phase.name}: early stop, validation loss has not improved for {cfg.patience} epochs")
            break
    phase.restore(best[2])
    return best[1]
