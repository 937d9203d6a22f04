"""The learning-rate range test: the rate it picks on a known curve and on a real little problem, that it leaves the
head as it was, and its curve for the report."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from actionrec.errors import ActionrecError
from actionrec.training.lr_range import DIVERGE_FACTOR, choose, curve_png, lr_range_test
from actionrec.training.temporal import TemporalHead, pad_steps


def blobs(n: int = 96, dim: int = 16, classes: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = 2 * torch.randn(classes, dim, generator=g)
    y = torch.arange(n) % classes
    return centres[y] + torch.randn(n, dim, generator=g), y


def test_choose_takes_the_steepest_descent_below_a_tenth_of_divergence():
    lrs = np.logspace(-5, 1, 100)
    # flat, then a steep fall centred at 1e-3, a floor, then divergence beyond 1
    losses = 1.0 - 0.9 / (1 + np.exp(-4 * (np.log10(lrs) + 3))) + np.where(lrs > 1, 10 * (lrs - 1), 0)
    found = choose(lrs, losses)
    assert 10 ** -3.3 < found.steepest < 10 ** -2.7
    assert found.diverged is not None and 1 < found.diverged < 10
    assert found.chosen == pytest.approx(min(found.steepest, found.diverged / 10))


def test_choose_caps_the_rate_at_a_tenth_of_where_the_loss_diverges():
    lrs = np.logspace(-5, 0, 60)
    losses = np.where(lrs < 1e-2, 1.0 - 0.05 * np.log10(lrs / 1e-5), 50.0)  # falls gently to 1e-2, then explodes
    found = choose(lrs, losses)
    assert found.diverged == pytest.approx(lrs[lrs >= 1e-2][0])
    assert found.chosen <= found.diverged / 10 + 1e-12


def test_range_test_on_a_separable_problem_finds_a_rate_that_trains():
    x, y = blobs()
    torch.manual_seed(0)
    head = nn.Linear(16, 3)
    before = {k: v.clone() for k, v in head.state_dict().items()}
    found = lr_range_test(head, x, y, steps=100)
    assert all(torch.equal(before[k], v) for k, v in head.state_dict().items())  # the test only looks
    assert found.losses.min() < 0.5 * found.losses[0]  # it did train at some rate
    assert found.diverged is None or found.losses[-1] > DIVERGE_FACTOR * found.losses.min() * 0.99
    assert 1e-5 <= found.chosen <= 10
    # the chosen rate trains the head: 30 plain steps from scratch bring the loss far down
    opt = torch.optim.SGD(head.parameters(), lr=found.chosen, momentum=0.9)
    start = nn.functional.cross_entropy(head(x), y).item()
    for _ in range(30):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(head(x), y)
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * start, found.describe()


def test_range_test_takes_several_inputs_for_a_temporal_head():
    g = torch.Generator().manual_seed(0)
    seqs = [torch.randn(int(t), 8, generator=g) + (i % 2) for i, t in enumerate(torch.randint(2, 6, (40,), generator=g))]
    x, mask = pad_steps(seqs)
    y = torch.arange(40) % 2
    found = lr_range_test(TemporalHead(8, 2, hidden=4), (x, mask), y, steps=40,
                          optimizer=lambda p, lr: torch.optim.AdamW(p, lr=lr))
    assert len(found.lrs) == len(found.losses) >= 3 and found.chosen > 0


def test_curve_is_a_png():
    x, y = blobs(48)
    png = curve_png(lr_range_test(nn.Linear(16, 3), x, y, steps=30))
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 2000


@pytest.mark.parametrize("kwargs", [{"start": 1.0, "end": 0.1}, {"steps": 2}])
def test_bad_ranges_are_one_clear_error(kwargs):
    x, y = blobs(12)
    with pytest.raises(ActionrecError, match="lr range test"):
        lr_range_test(nn.Linear(16, 3), x, y, **kwargs)


def test_inputs_and_labels_of_different_lengths_are_refused():
    x, y = blobs(12)
    with pytest.raises(ActionrecError, match="12 labels"):
        lr_range_test(nn.Linear(16, 3), x[:10], y)
