"""A temporal head: a small network over I3D's per-step features, in place of the linear head (``--head temporal``).

I3D's ``Mixed_5c`` averaged over space gives one 1024-d vector per 8 input frames (:meth:`I3D.forward_steps`, the
engine's ``"steps"`` output). The linear head sees their mean; a :class:`TemporalHead` sees their order: a 1D
convolution over the steps (``kind="conv"``) or a bidirectional GRU (``kind="gru"``), pooled over the valid steps, plus
the linear head's own path on the mean of the steps (so it can do at least what the linear head does). It is trained
by :mod:`actionrec.training.temporal`; an I3D built with ``temporal=`` options carries one as ``temporal_head``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ActionrecError

KINDS = ("conv", "gru")
MIN_STEPS = 2  # a temporal head over a single step is a linear head


def pad_steps(sequences: Sequence[np.ndarray | torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequences of (T_i, C) steps -> zero-padded (N, max T, C) float32 and the mask of real steps (N, max T)."""
    if len(sequences) == 0:  # a list, or a tensor of sequences of one length
        raise ActionrecError("no sequences of steps to pad")
    seqs = [torch.as_tensor(np.asarray(s), dtype=torch.float32) for s in sequences]
    bad = [i for i, s in enumerate(seqs) if s.ndim != 2 or len(s) == 0 or s.shape[1] != seqs[0].shape[1]]
    if bad:
        raise ActionrecError(f"sequence {bad[0]} has shape {tuple(seqs[bad[0]].shape)}; every sequence must be (steps >= 1, {seqs[0].shape[-1]})")
    longest = max(len(s) for s in seqs)
    x = torch.zeros(len(seqs), longest, seqs[0].shape[1])
    mask = torch.zeros(len(seqs), longest, dtype=torch.bool)
    for i, s in enumerate(seqs):
        x[i, : len(s)], mask[i, : len(s)] = s, True
    return x, mask


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, C) averaged over the steps where `mask` (B, T) holds -> (B, C)."""
    weights = mask.to(x.dtype).unsqueeze(-1)
    return (x * weights).sum(1) / weights.sum(1).clamp_min(1.0)


class TemporalHead(nn.Module):
    """Per-step features (B, T, in_dim) [+ mask (B, T)] -> logits (B, num_classes): the linear head on the mean of the
    steps plus a temporal branch (1D convolution or bidirectional GRU, mean- and max-pooled over the valid steps)."""

    def __init__(self, in_dim: int, num_classes: int, kind: str = "conv", hidden: int = 128, kernel: int = 3,
                 dropout: float = 0.5):
        super().__init__()
        if kind not in KINDS:
            raise ActionrecError(f"unknown temporal head {kind!r}; choose one of: {', '.join(KINDS)}")
        self.kind, self.in_dim, self.num_classes = kind, in_dim, num_classes
        self.drop = nn.Dropout(dropout)
        self.linear = nn.Linear(in_dim, num_classes)  # the linear head's path, on the mean of the steps
        if kind == "conv":
            self.temporal = nn.Conv1d(in_dim, hidden, kernel, padding=kernel // 2)
            width = hidden
        else:
            self.temporal = nn.GRU(in_dim, hidden, batch_first=True, bidirectional=True)
            width = 2 * hidden
        self.out = nn.Linear(2 * width, num_classes)
        nn.init.zeros_(self.out.weight)  # starts as the linear head; the temporal branch adds what order tells
        nn.init.zeros_(self.out.bias)

    def forward(self, steps: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if steps.ndim != 3 or steps.shape[-1] != self.in_dim:
            raise ActionrecError(f"temporal head: expected steps (batch, steps, {self.in_dim}), got {tuple(steps.shape)}")
        if mask is None:
            mask = torch.ones(steps.shape[:2], dtype=torch.bool, device=steps.device)
        x = self.drop(steps) * mask.unsqueeze(-1).to(steps.dtype)  # padding reads as the convolution's own zeros
        if self.kind == "conv":
            h = F.relu(self.temporal(x.transpose(1, 2))).transpose(1, 2)
        else:  # packed, so the backward direction starts at each sequence's own last step
            lengths = mask.sum(1).clamp_min(1).cpu()
            packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            h = nn.utils.rnn.pad_packed_sequence(self.temporal(packed)[0], batch_first=True, total_length=x.shape[1])[0]
        low = torch.finfo(h.dtype).min
        pooled = torch.cat([masked_mean(h, mask), h.masked_fill(~mask.unsqueeze(-1), low).amax(1)], dim=1)
        return self.linear(masked_mean(x, mask)) + self.out(self.drop(pooled))
