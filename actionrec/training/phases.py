"""The training phases on cached activations: the head on pooled features, then fine-tuning of the top blocks.

A :class:`Phase` says what it trains (named modules of the model, gathered in one module, `net`), what the inputs of
a batch of training clips are, how it is validated, and keeps snapshots of its modules; :func:`fit` runs any phase
with the same optimiser, schedule and early stopping. The activations are read from the feature cache batch by batch
(memory stays flat), and moved to the model's device.

Under torchrun, :func:`fit` wraps the phase's `net` in DistributedDataParallel (gradients averaged over the ranks at
each step), deals the training clips out with a DistributedSampler (:class:`EpochSampler`, :class:`TrainingOrder`;
one process uses the same sampler with a world of 1 and draws the permutations it always drew), and validates on
every rank over the whole validation set; rank 0's validation figures decide early stopping everywhere. When the
world divides the batch size, step k of N ranks takes the clips of step k of one process, and the averaged gradient
is their mean. What differs from one process:

* the sampler pads the permutation with up to world - 1 repeated clips when the world does not divide the number of
  training clips (and a step takes world * ceil(batch / world) clips when the world does not divide the batch);
* dropout draws its masks on each rank from the rank's own generator (not the one process's sequence);
* sums are reduced in another order, and ranks may run other thread counts (float rounding).

With dropout 0 and a batch size the world divides, the result is the same up to rounding: tests/test_distributed.py
holds a 2-rank run to the same test accuracy within one clip and the test loss within 1e-3 of one process (measured:
equal to 4 decimals). With dropout (default 0.5) the run takes another random path, as a run with another seed
would: on the demo set (12 test clips) 2 ranks and 1 process differed by 0-2 clips and 0.01-0.1 in test loss.

Fine-tuning runs under autocast: on CUDA bf16 where the GPU supports it, else fp16 with a GradScaler (PyTorch's
"Automatic Mixed Precision" recipe: forward and loss under autocast, backward and step outside it); on the CPU fp32:
oneDNN's bf16 weight gradient of a conv3d padding time itself over 2 time steps (Mixed_5b/5c at 16 frames; torch
2.13) was wrong in every backward (NaN, inf or finite garbage); I3D's Unit3D now pads time itself under CPU autocast,
which makes the bf16 gradients right (bench/bench_finetune_bf16.py), but the bf16 step measured only 1.1x faster than
fp32's, so CPU fine-tuning stays fp32 (README: Training defaults). The head (a single linear layer) and every
evaluation stay in fp32.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DistributedSampler

from ..distributed import SINGLE, Ranks, all_gather, all_sum, from_main
from ..errors import ActionrecError
from .config import TrainConfig
from .features import DamagedEntry, read_entry

EVAL_BATCH = 64  # clips per forward when evaluating (no gradients: memory is not the limit)
NO_SCORE = (float("nan"), float("nan"))  # (loss, accuracy) of an empty set
KEEP_BYTES = 1 << 30  # cached activations kept in memory per set of clips once read (the study's: ~0.2 GiB at float16)


class Activations:
    """Cached activations of a list of clips, read from disk batch by batch, each once: up to KEEP_BYTES of them are
    kept in memory once read, the rest read again when needed (memory stays bounded).

    `owners[i]` is the index of the video clip i was cut from (default: a video per clip); a video scored from several
    clips (test-time views) gets the mean of their probabilities (:func:`scores`). `groups[i]` is the group of that
    video (its source: the few-shot head's cross-validation holds whole groups out; default: the owner)."""

    def __init__(self, paths: Sequence[Path], labels: Sequence[int], owners: Sequence[int] | None = None,
                 groups: Sequence[str] | None = None):
        self.paths, self.labels = list(paths), torch.tensor(list(labels), dtype=torch.long)
        self.owners = torch.arange(len(self.paths)) if owners is None else torch.tensor(list(owners), dtype=torch.long)
        self.groups = np.array([str(o) for o in self.owners.tolist()] if groups is None else list(groups), dtype=str)
        if not len(self.owners) == len(self.labels) == len(self.groups) == len(self.paths):
            raise ActionrecError(f"{len(self.paths)} cached clips but {len(self.labels)} labels, {len(self.owners)} owners "
                                 f"and {len(self.groups)} groups")
        self._kept: dict[int, np.ndarray] = {}  # clip index -> its activation, once read (see _load)
        self._kept_bytes = 0

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def videos(self) -> int:
        """How many videos the clips were cut from."""
        return int(self.owners.max()) + 1 if len(self) else 0

    @property
    def video_labels(self) -> torch.Tensor:
        """The label of each video (that of its clips), in video order."""
        out = torch.zeros(self.videos, dtype=torch.long)
        out[self.owners] = self.labels
        return out

    def _load(self, i: int) -> np.ndarray:
        """Clip i's activation: read from disk and checked once, then kept while the kept ones take at most
        KEEP_BYTES (so the epochs of a phase, and the phases after it, do not read and checksum it again)."""
        if i in self._kept:
            return self._kept[i]
        try:
            array = read_entry(self.paths[i])
        except DamagedEntry as err:  # checked when extracted: it changed during the run
            raise ActionrecError(f"{err} while training; run the command again (the entry will be computed again)") from None
        if self._kept_bytes + array.nbytes <= KEEP_BYTES:
            self._kept[i] = array
            self._kept_bytes += array.nbytes
        return array

    def batches(self, batch_size: int, order: Sequence[int] | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = list(range(len(self)) if order is None else order)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            x = torch.from_numpy(np.stack([self._load(i) for i in idx])).float()
            yield x, self.labels[idx]


def entries_of(samples: Sequence, entries: dict, classes: list[str], views: Sequence) -> Activations:
    """The cached entries of `samples` (the given views of each, those that were extracted), labelled by class index;
    the clips of one video share its owner index (videos in the order of `samples`, those with an entry) and its
    sample's group."""
    paths, labels, owners, groups = [], [], [], []
    for sample in samples:
        found = [entries[(sample.path, view)] for view in views if (sample.path, view) in entries]
        if found:
            owner = owners[-1] + 1 if owners else 0
            paths += found
            labels += [classes.index(sample.label)] * len(found)
            owners += [owner] * len(found)
            groups += [sample.group] * len(found)
    return Activations(paths, labels, owners, groups)


@dataclass
class Datasets:
    """The activations of each split, in the model's class order."""

    train: Activations
    val: Activations
    test: Activations

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def device_of(model: nn.Module) -> torch.device:
    """Where the model's parameters are (the trainer moves the whole model to its device)."""
    return next(model.parameters()).device


def top_logits(model: nn.Module, cut: str, x: torch.Tensor) -> torch.Tensor:
    """Logits of the part of the model above the cut, from activations at the cut."""
    return model.forward_logits(x, start=cut)


def from_cache(model: nn.Module, data: Activations, forward: Callable[[torch.Tensor], torch.Tensor],
               empty: tuple[int, ...]) -> torch.Tensor:
    """`forward` of the cached activations of every clip of `data` (moved to the model's device batch by batch), without
    gradients, concatenated on that device; a tensor of shape `empty` when there are no clips."""
    device = device_of(model)
    with torch.no_grad():
        parts = [forward(x.to(device)) for x, _ in data.batches(EVAL_BATCH)]
    return torch.cat(parts) if parts else torch.zeros(empty, device=device)


def clip_log_probs(model: nn.Module, cut: str, data: Activations) -> torch.Tensor:
    """Log-softmax of the top on every cached clip (N, K), in eval mode, on the CPU."""
    model.eval()
    return from_cache(model, data, lambda x: top_logits(model, cut, x).float().log_softmax(-1), (0, model.num_classes)).cpu()


def video_log_probs(log_probs: torch.Tensor, owners: torch.Tensor, videos: int) -> torch.Tensor:
    """The log of each video's mean probability over its clips (V, K): log(mean_k p_k), as a log-sum-exp per video."""
    index = owners.unsqueeze(1).expand_as(log_probs)
    top = torch.full((videos, log_probs.shape[1]), -math.inf).scatter_reduce(0, index, log_probs, "amax")
    sums = torch.zeros(videos, log_probs.shape[1]).index_add_(0, owners, (log_probs - top[owners]).exp())
    counts = torch.bincount(owners, minlength=videos).clamp_min(1).unsqueeze(1)
    return sums.log() + top - counts.log()


def scores(model: nn.Module, cut: str, data: Activations) -> tuple[float, float, np.ndarray]:
    """Mean loss, accuracy and each video's probabilities (V, K) of the top on cached activations, in eval mode: a
    video cut into several clips scores the mean of their probabilities (its loss: minus the log of that mean)."""
    if not len(data):
        return float("nan"), float("nan"), np.zeros((0, model.num_classes), np.float32)
    log_p = video_log_probs(clip_log_probs(model, cut, data), data.owners, data.videos)
    labels = data.video_labels
    accuracy = float((log_p.argmax(1) == labels).float().mean())
    return F.nll_loss(log_p, labels).item(), accuracy, log_p.exp().numpy()


def evaluate(model: nn.Module, cut: str, data: Activations) -> tuple[float, float, np.ndarray]:
    """Mean loss, accuracy and the predicted class of each video (see :func:`scores`)."""
    loss, accuracy, probs = scores(model, cut, data)
    return loss, accuracy, probs.argmax(1)


def probabilities(model: nn.Module, cut: str, data: Activations) -> np.ndarray:
    """Each video's probabilities (the timeline calibrates its thresholds on the validation clips' ones)."""
    return scores(model, cut, data)[2]


def pooled(model: nn.Module, cut: str, data: Activations) -> torch.Tensor:
    """The pooled features (the head's input) of cached activations, on the model's device."""
    return from_cache(model, data, lambda x: model.forward_features(x, start=cut), (0, model.num_features))


def pooled_by_all(model: nn.Module, cut: str, data: Activations, ranks: Ranks = SINGLE) -> torch.Tensor:
    """:func:`pooled` of every clip, the work shared: each rank pools every world-th clip, and the parts are gathered
    (the same tensor on every rank, on the model's device)."""
    if not ranks.distributed:
        return pooled(model, cut, data)
    share = slice(ranks.rank, None, ranks.world)
    parts = all_gather(pooled(model, cut, Activations(data.paths[share], data.labels[share].tolist())).cpu(), ranks)
    whole = torch.empty(len(data), model.num_features)
    for rank, part in enumerate(parts):
        whole[rank :: ranks.world] = part
    return whole.to(device_of(model))


@dataclass
class History:
    """One row per epoch of every phase (metrics.json's `history`)."""

    rows: list[dict] = field(default_factory=list)

    def add(self, **row) -> None:
        self.rows.append(row)


class Top(nn.Module):
    """The modules a phase trains, as one module whose forward maps the phase's inputs to logits (DDP wraps it; the
    rest of the model is used by `forward` but is not part of it, so DDP neither broadcasts nor watches it)."""

    def __init__(self, model: nn.Module, names: Sequence[str], forward: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.trained = nn.ModuleDict({name: getattr(model, name) for name in names})
        self._forward = forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward(x)


class Phase:
    """One phase of training: the modules it trains (`net`), the inputs of a step, a validation, and snapshots."""

    name = "phase"
    seed_offset = 0  # the phase's shuffling generator is seeded with the run's seed + this
    mixed = False  # whether its steps run under autocast on CUDA
    keeps_start = False  # whether the state it starts from competes with its epochs on the validation loss

    def __init__(self, model: nn.Module, cut: str, data: Datasets, modules: Sequence[str], lr: float, epochs: int,
                 forward: Callable[[torch.Tensor], torch.Tensor]):
        self.model, self.cut, self.data = model, cut, data
        self.modules, self.lr, self.epochs = list(modules), lr, epochs
        self.device = device_of(model)
        self.net = Top(model, self.modules, forward)

    def parameters(self) -> list[nn.Parameter]:
        return [p for name in self.modules for p in getattr(self.model, name).parameters()]

    def inputs(self, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """The inputs of `net` and the labels of training clips `idx`, on the device; sets the modules' modes."""
        raise NotImplementedError

    def validate(self) -> tuple[float, float]:
        """(loss, accuracy) on the validation clips; NaNs when there are none."""
        raise NotImplementedError

    def snapshot(self) -> dict:
        return {name: {k: v.clone() for k, v in getattr(self.model, name).state_dict().items()} for name in self.modules}

    def restore(self, state: dict) -> None:
        for name, sub in state.items():
            getattr(self.model, name).load_state_dict(sub)


class HeadPhase(Phase):
    """The softmax head on the pooled features of the frozen backbone (pooled once, before the first epoch)."""

    name = "head"
    seed_offset = 0

    def __init__(self, model: nn.Module, cut: str, data: Datasets, lr: float, epochs: int, ranks: Ranks = SINGLE):
        super().__init__(model, cut, data, ["head"], lr, epochs, model.forward_head)
        model.eval()
        self.pooled_train = pooled_by_all(model, cut, data.train, ranks)
        self.pooled_val = pooled_by_all(model, cut, data.val, ranks)

    def inputs(self, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        self.model.drop.train()
        return self.pooled_train[idx], self.data.train.labels[idx].to(self.device)

    def validate(self) -> tuple[float, float]:
        self.model.eval()
        if not len(self.data.val):
            return NO_SCORE
        with torch.no_grad():
            logits = self.model.forward_head(self.pooled_val).float().cpu()
        labels = self.data.val.labels
        return F.cross_entropy(logits, labels).item(), float((logits.argmax(1) == labels).float().mean())


class FinetunePhase(Phase):
    """The unfrozen top blocks and the head, from the cached activations at the cut. The head's state it starts from
    competes on the validation loss: fine-tuning that does not improve it is not kept (on a few hundred clips the head
    alone often fits the training set already, and fine-tuning then only moves the model around)."""

    name = "finetune"
    seed_offset = 1
    mixed = True
    keeps_start = True

    def __init__(self, model: nn.Module, cut: str, data: Datasets, unfreeze: Sequence[str], lr: float, epochs: int):
        super().__init__(model, cut, data, [*unfreeze, "head"], lr, epochs, lambda x: top_logits(model, cut, x))

    def inputs(self, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        self.model.eval()  # BatchNorm keeps its pretrained statistics; only dropout is active
        self.model.drop.train()
        x, y = next(self.data.train.batches(len(idx), idx))
        return x.to(self.device), y.to(self.device)

    def validate(self) -> tuple[float, float]:
        loss, acc, _ = evaluate(self.model, self.cut, self.data.val)
        return (loss, acc) if len(self.data.val) else NO_SCORE


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The autocast dtype of training steps on `device`: None on the CPU (fp32; see the module doc); on CUDA bf16 where
    the GPU supports it (``torch.cuda.is_bf16_supported()``: Ampere and later), else fp16 (which needs a GradScaler)."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16  # of the current device (distributed.init sets it)


class Mixed:
    """Autocast for the steps of a phase, per PyTorch's AMP recipe: the forward and the loss under
    ``torch.autocast("cuda", dtype)``, then ``scaler.scale(loss).backward()``, ``scaler.step(optimizer)`` and
    ``scaler.update()``; the GradScaler is enabled for fp16 only (bf16 has fp32's range). Off: plain fp32 steps."""

    def __init__(self, device: torch.device, enabled: bool):
        self.device = device
        self.dtype = autocast_dtype(device) if enabled else None
        self.scaler = torch.amp.GradScaler("cuda") if self.dtype == torch.float16 else None

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)  # skipped when the scaled gradients overflowed
        self.scaler.update()


class EpochSampler(DistributedSampler):
    """PyTorch's DistributedSampler (`set_epoch`, padding to a multiple of the world, round-robin dealing), whose
    permutation for epoch e is the (e+1)-th ``torch.randperm`` of one generator seeded with `seed`: the order a single
    process has always drawn, so a run in one process is unchanged and N ranks deal out the same permutation."""

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed)
        for _ in range(self.epoch + 1):
            order = torch.randperm(len(self.dataset), generator=generator).tolist()
        padding = self.total_size - len(order)  # as DistributedSampler: repeat the first clips (at most world - 1)
        order += (order * math.ceil(padding / max(len(order), 1)))[:padding]
        return iter(order[self.rank : self.total_size : self.num_replicas])


class TrainingOrder:
    """The training clips of each epoch, batch by batch, for this rank: an :class:`EpochSampler` over the training
    indices (`set_epoch` per epoch; in one process, a world of 1), in batches of ceil(batch_size / world).

    Every rank draws the same permutation and takes every world-th clip of it, so when the world divides the batch
    size, step k of all ranks together takes exactly the clips of step k of a single process. What differs: when the
    world does not divide the number of clips, the permutation is padded with its first clips (at most world - 1
    repeats, in the last step); when it does not divide the batch size, a step takes world * ceil(batch_size / world)
    clips."""

    def __init__(self, n: int, batch_size: int, seed: int, ranks: Ranks = SINGLE):
        self.sampler = EpochSampler(range(n), num_replicas=ranks.world, rank=ranks.rank, shuffle=True, seed=seed)
        self.batch_size = -(-batch_size // ranks.world)
        self.steps = math.ceil(len(self.sampler) / self.batch_size)

    def epoch(self, index: int) -> list[list[int]]:
        """This rank's batches of epoch `index` (0, 1, ...)."""
        self.sampler.set_epoch(index)
        order = list(self.sampler)
        return [order[start : start + self.batch_size] for start in range(0, len(order), self.batch_size)]


def _wrapped(phase: Phase, ranks: Ranks) -> nn.Module:
    """The phase's net, in DistributedDataParallel under torchrun: its parameters and buffers broadcast from rank 0
    when wrapped, its gradients averaged over the ranks at each backward."""
    if not ranks.distributed:
        return phase.net
    from torch.nn.parallel import DistributedDataParallel

    ids = [phase.device.index] if phase.device.type == "cuda" else None
    return DistributedDataParallel(phase.net, device_ids=ids)


def _epoch(phase: Phase, net: nn.Module, batches: list[list[int]], optimizer, schedule, mixed: Mixed) -> tuple[float, float, float]:
    """One epoch of steps on this rank's batches: (summed loss, correct predictions, clips)."""
    loss_sum, correct, clips = 0.0, 0, 0
    for idx in batches:
        optimizer.zero_grad(set_to_none=True)
        x, y = phase.inputs(idx)
        with mixed.autocast():
            logits = net(x)
            loss = F.cross_entropy(logits.float(), y)
        mixed.backward(loss)
        mixed.step(optimizer)
        schedule.step()
        loss_sum += loss.item() * len(y)
        correct += int((logits.argmax(1) == y).sum())
        clips += len(y)
    return loss_sum, correct, clips


def sgd(params: Sequence[nn.Parameter], lr: float, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser of every phase (and of the head's range test, `--lr auto`): SGD with the run's momentum and L2."""
    return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def fit(phase: Phase, cfg: TrainConfig, history: History, say: Callable[[str], None], ranks: Ranks = SINGLE) -> int | None:
    """SGD with momentum, L2, a cosine schedule and early stopping on the validation loss; the phase's modules end
    at their best epoch, which is returned (None: a phase that `keeps_start` kept the state it started from). Under
    torchrun: DDP (see the module doc); the history rows hold the training figures of all ranks together and rank 0's
    validation, so every rank decides the same."""
    params = phase.parameters()
    for p in params:
        p.requires_grad_(True)
    if ranks.distributed:
        torch.manual_seed(cfg.seed + 1000 * ranks.rank + phase.seed_offset)  # dropout masks differ between ranks
    net = _wrapped(phase, ranks)
    order = TrainingOrder(len(phase.data.train), cfg.batch_size, cfg.seed + phase.seed_offset, ranks)
    optimizer = sgd(params, phase.lr, cfg)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(phase.epochs * order.steps, 1))
    mixed = Mixed(phase.device, phase.mixed)
    first_epoch = len(history.rows) + 1
    start = from_main(phase.validate(), ranks)[0] if phase.keeps_start else math.nan
    best = (math.inf if math.isnan(start) else start, first_epoch - 1, phase.snapshot())
    for epoch in range(first_epoch, first_epoch + phase.epochs):
        loss_sum, correct, clips = all_sum(_epoch(phase, net, order.epoch(epoch - first_epoch), optimizer, schedule, mixed), ranks)
        val_loss, val_acc = from_main(phase.validate(), ranks)
        train_loss, train_acc = loss_sum / clips, correct / clips
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
    if phase.keeps_start and best[1] == first_epoch - 1:
        say(f"{phase.name}: no epoch improved the validation loss of the state it started from; that state is kept")
        return None
    return best[1]
