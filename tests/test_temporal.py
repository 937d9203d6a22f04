"""The temporal head over per-step features: padding and masks, its start as the linear head, and that it learns
what the order of the steps tells (which the mean of the steps cannot)."""

from __future__ import annotations

import pytest
import torch

from actionrec.errors import ActionrecError
from actionrec.training.temporal import (
    StepSet,
    TemporalConfig,
    TemporalHead,
    evaluate_temporal,
    fit_temporal,
    pad_steps,
    predict_temporal,
    random_crops,
)


def order_task(n: int, steps: int = 6, dim: int = 8, seed: int = 0) -> StepSet:
    """Class 0: pattern A in the first half, B in the second; class 1: B then A. Same mean of steps for both."""
    g = torch.Generator().manual_seed(seed)
    a, b = torch.zeros(dim), torch.zeros(dim)
    a[0], b[1] = 1.0, 1.0
    seqs, labels = [], []
    for i in range(n):
        first, second = (a, b) if i % 2 == 0 else (b, a)
        half = steps // 2
        x = torch.cat([first.expand(half, dim), second.expand(steps - half, dim)])
        seqs.append(x + 0.05 * torch.randn(steps, dim, generator=g))
        labels.append(i % 2)
    return StepSet.of(seqs, labels)


def test_pad_steps_pads_with_zeros_and_masks_the_real_steps():
    x, mask = pad_steps([torch.ones(3, 4), torch.ones(1, 4) * 2])
    assert x.shape == (2, 3, 4) and mask.tolist() == [[True, True, True], [True, False, False]]
    assert x[1, 0].tolist() == [2.0] * 4 and x[1, 1:].abs().sum() == 0


def test_pad_steps_refuses_sequences_of_other_widths():
    with pytest.raises(ActionrecError, match="sequence 1"):
        pad_steps([torch.ones(3, 4), torch.ones(3, 5)])


@pytest.mark.parametrize("kind", ["conv", "gru"])
def test_padding_beyond_the_mask_does_not_change_the_logits(kind):
    torch.manual_seed(0)
    head = TemporalHead(8, 3, kind=kind, hidden=6).eval()
    torch.nn.init.normal_(head.out.weight)  # make the temporal branch count
    seq = torch.randn(1, 5, 8)
    padded = torch.cat([seq, 100 * torch.randn(1, 4, 8)], dim=1)
    mask = torch.tensor([[True] * 5 + [False] * 4])
    alone = head(seq)
    assert torch.allclose(head(padded, mask), alone, atol=1e-5)
    assert not torch.allclose(head(padded), alone, atol=1e-3)  # unmasked, the padding is read


def test_a_fresh_head_is_the_linear_head_on_the_mean_of_the_steps():
    head = TemporalHead(8, 3).eval()
    x = torch.randn(4, 7, 8)
    assert torch.allclose(head(x), head.linear(x.mean(1)), atol=1e-6)


def test_it_learns_the_order_of_the_steps_which_the_mean_cannot_tell():
    train, val, test = order_task(64), order_task(16, seed=1), order_task(32, seed=2)
    assert torch.allclose(train.x[0].mean(0), train.x[1].mean(0), atol=0.1)  # means alike: a linear head is at chance
    head = TemporalHead(8, 2, kind="conv", hidden=16, dropout=0.1)
    fit = fit_temporal(head, train, val, TemporalConfig(hidden=16, epochs=60, lr=3e-2, dropout=0.1, patience=0))
    loss, acc = evaluate_temporal(head, test)
    assert acc >= 0.95, (loss, acc)
    assert 1 <= fit.best_epoch <= 60 and len(fit.history) == 60
    probs = predict_temporal(head, test.x, test.mask)
    assert probs.shape == (32, 2) and torch.allclose(probs.sum(1), torch.ones(32))


def test_early_stopping_keeps_the_best_epoch():
    train, val = order_task(32), order_task(8, seed=1)
    head = TemporalHead(8, 2, hidden=4)
    fit = fit_temporal(head, train, val, TemporalConfig(hidden=4, epochs=50, lr=0.3, patience=2))
    assert len(fit.history) < 50  # a far too high rate stops improving early
    best = min(fit.history, key=lambda row: row["val_loss"])
    assert fit.best_epoch == best["epoch"]
    assert evaluate_temporal(head, val)[0] == pytest.approx(best["val_loss"], rel=1e-4)


def test_random_crops_take_windows_of_real_steps():
    data = StepSet.of([torch.arange(10.0)[:, None].expand(10, 2), torch.ones(3, 2)], [0, 1])
    x, mask = random_crops(data, [0, 1], 4, torch.Generator().manual_seed(0))
    assert x.shape == (2, 4, 2) and mask.sum(1).tolist() == [4, 3]
    window = x[0, :, 0]
    assert torch.equal(window, torch.arange(window[0].item(), window[0].item() + 4))  # consecutive steps


@pytest.mark.parametrize("bad", [{"kind": "lstm"}, {"hidden": 0}, {"crop_steps": 1}, {"dropout": 1.0}])
def test_bad_settings_are_one_clear_error(bad):
    with pytest.raises(ActionrecError, match="temporal head"):
        TemporalConfig(**bad)
