"""Learning rate by short trials (``--lr auto``): a range test on cached features, and its curve for the report.

The head is trained for a short run of steps with a learning rate growing exponentially from ``start`` to ``end``
(Smith 2017, "Cyclical learning rates"); the training loss, smoothed, falls while the rate is useful and shoots up
once it is too high. The chosen rate is the one where the smoothed loss falls fastest, capped at a tenth of the rate
where it starts to diverge. The head's weights are put back afterwards: the test only looks.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ActionrecError

DIVERGE_FACTOR = 4.0  # the run stops once the smoothed loss exceeds this multiple of its best
SMOOTHING = 0.9  # exponential moving average of the loss (bias-corrected)
Optimizer = Callable[[Sequence[nn.Parameter], float], torch.optim.Optimizer]


def sgd(params: Sequence[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """The default optimiser: SGD with momentum 0.9 and L2 1e-4 (TrainConfig's defaults; the trainer passes the run's own)."""
    return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=1e-4)


@dataclass(frozen=True)
class LRRange:
    """A range test: the rates tried, the smoothed loss at each, the chosen rate and why."""

    lrs: np.ndarray
    losses: np.ndarray
    chosen: float
    steepest: float  # where the smoothed loss falls fastest (per decade of lr)
    diverged: float | None  # where the smoothed loss first exceeded DIVERGE_FACTOR x its best (None: never)

    def describe(self) -> str:
        end = f"diverges at {self.diverged:.2g}" if self.diverged else "never diverged"
        return f"lr {self.chosen:.2g} by range test (steepest descent at {self.steepest:.2g}, {end})"

    def to_dict(self) -> dict:
        """For metrics.json (read back by :meth:`from_dict` for the report)."""
        return {"lrs": np.round(self.lrs, 8).tolist(), "losses": np.round(self.losses, 6).tolist(), "chosen": self.chosen,
                "steepest": self.steepest, "diverged": self.diverged, "described": self.describe()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LRRange:
        return cls(np.asarray(d["lrs"], float), np.asarray(d["losses"], float), float(d["chosen"]), float(d["steepest"]),
                   d.get("diverged"))


def _batches(n: int, batch_size: int, steps: int, generator: torch.Generator) -> list[list[int]]:
    """`steps` batches of indices drawn epoch after epoch from shuffled orders."""
    out: list[list[int]] = []
    while len(out) < steps:
        order = torch.randperm(n, generator=generator).tolist()
        out += [order[i : i + batch_size] for i in range(0, n, batch_size)]
    return out[:steps]


def lr_range_test(
    head: nn.Module,
    inputs: torch.Tensor | Sequence[torch.Tensor],
    labels: torch.Tensor,
    *,
    start: float = 1e-5,
    end: float = 10.0,
    steps: int = 100,
    batch_size: int = 32,
    optimizer: Optimizer = sgd,
    seed: int = 0,
) -> LRRange:
    """Train `head` on `inputs` (a tensor, or tensors indexed together and passed as head(*batch)) for `steps` steps
    with the rate growing from `start` to `end`; the smoothed losses and the chosen rate. `head` is left as it was."""
    tensors = [inputs] if isinstance(inputs, torch.Tensor) else list(inputs)
    n = len(labels)
    if n == 0 or any(len(t) != n for t in tensors):
        raise ActionrecError(f"lr range test: {n} labels and inputs of {[len(t) for t in tensors]} clips; need the same, at least 1")
    if not (0 < start < end and steps >= 5):
        raise ActionrecError(f"lr range test: need 0 < start < end and at least 5 steps (got {start}, {end}, {steps})")
    saved = {k: v.clone() for k, v in head.state_dict().items()}
    was_training = head.training
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    lrs = start * (end / start) ** (np.arange(steps) / (steps - 1))
    opt = optimizer(list(head.parameters()), float(lrs[0]))
    avg, best, losses = 0.0, math.inf, []
    head.train()
    try:
        for i, idx in enumerate(_batches(n, batch_size, steps, generator)):
            for group in opt.param_groups:
                group["lr"] = float(lrs[i])
            loss = F.cross_entropy(head(*(t[idx] for t in tensors)), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            value = loss.item()
            avg = SMOOTHING * avg + (1 - SMOOTHING) * (value if math.isfinite(value) else 1e9)
            smoothed = avg / (1 - SMOOTHING ** (i + 1))
            losses.append(smoothed)
            best = min(best, smoothed)
            if smoothed > DIVERGE_FACTOR * best or not math.isfinite(value):
                break
    finally:
        head.load_state_dict(saved)
        head.train(was_training)
    return choose(lrs[: len(losses)], np.array(losses))


def choose(lrs: np.ndarray, losses: np.ndarray) -> LRRange:
    """The rate of steepest descent of the smoothed loss (per log-lr, over a few steps, ignoring the first tenth
    where the average warms up), at most a tenth of where it diverged."""
    if len(lrs) < 3:
        raise ActionrecError(f"lr range test diverged after {len(lrs)} steps at lr {lrs[-1]:.2g}: lower its start")
    best = int(np.argmin(losses))
    diverged = next((float(lr) for lr, loss in zip(lrs[best:], losses[best:]) if loss > DIVERGE_FACTOR * losses[best]), None)
    span = max(1, len(lrs) // 20)
    log_lr = np.log10(lrs)
    slopes = (losses[span:] - losses[:-span]) / (log_lr[span:] - log_lr[:-span])
    first = max(len(lrs) // 10, 0)
    usable = slopes[first : max(best - span // 2, first + 1)] if best > first else slopes[:1]
    steepest_at = first + int(np.argmin(usable)) + span // 2
    steepest = float(lrs[min(steepest_at, len(lrs) - 1)])
    limit = (diverged if diverged is not None else float(lrs[best]) * 10) / 10
    return LRRange(lrs, losses, min(steepest, limit), steepest, diverged)


def curve_png(result: LRRange, title: str = "learning-rate range test") -> bytes:
    """The smoothed loss against the rate (log scale), the chosen rate marked: PNG bytes for the report."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(result.lrs, result.losses, color="#1f6feb")
    ax.set_xscale("log")
    ax.axvline(result.chosen, color="#d1242f", linestyle="--", label=f"chosen {result.chosen:.2g}")
    if result.diverged:
        ax.axvline(result.diverged, color="#999999", linestyle=":", label=f"diverges {result.diverged:.2g}")
    top = float(np.nanmin(result.losses)) * DIVERGE_FACTOR
    ax.set_ylim(0, max(top, float(result.losses[0]) * 1.1))
    ax.set(xlabel="learning rate", ylabel="training loss (smoothed)", title=title)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()
