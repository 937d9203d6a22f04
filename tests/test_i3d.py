"""The I3D port: TF SAME padding, endpoints, the head API, and golden logits of the reference flax model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from actionrec.i3d import ENDPOINTS, I3D, MaxPoolSame, _same_pad

FIXTURE = Path(__file__).parent / "fixtures" / "i3d_golden.npz"


@pytest.mark.parametrize(
    "size,kernel,stride,expected",
    [(224, 7, 2, (2, 3)), (16, 7, 2, (2, 3)), (112, 3, 2, (0, 1)), (8, 3, 2, (0, 1)), (7, 3, 2, (1, 1)), (14, 2, 2, (0, 0)), (7, 2, 2, (0, 1)), (10, 3, 1, (1, 1))],
)
def test_same_padding_puts_the_extra_pixel_after(size, kernel, stride, expected):
    assert _same_pad(size, kernel, stride) == expected


def test_max_pool_pads_with_minus_infinity():
    x = -torch.arange(1.0, 1.0 + 8 * 8).view(1, 1, 1, 8, 8)  # all negative: zero padding would win the max
    y = MaxPoolSame((1, 3, 3), (1, 2, 2))(x)
    assert y.shape == (1, 1, 1, 4, 4)
    assert float(y.max()) < 0
    # output (0, 3) sees input rows 0..1 and columns 6..7 only (padding after): its max is -(0*8 + 6 + 1)
    assert float(y[0, 0, 0, 0, 3]) == -7.0


def test_endpoint_shapes_and_cached_features_resume():
    torch.manual_seed(0)
    model = I3D().eval()
    x = torch.randn(1, 3, 16, 224, 224)
    expected = {"Conv3d_1a_7x7": (64, 8, 112, 112), "MaxPool3d_2a_3x3": (64, 8, 56, 56), "Mixed_3c": (480, 8, 28, 28),
                "Mixed_4f": (832, 4, 14, 14), "Mixed_5c": (1024, 2, 7, 7)}
    with torch.no_grad():
        acts = {name: model.forward_until(x, name) for name in expected}
        for name, shape in expected.items():
            assert tuple(acts[name].shape[1:]) == shape, name
        full = model.forward_features(x)
        resumed = model.forward_features(acts["Mixed_4f"], start="Mixed_4f")
        cut = I3D(final_endpoint="Mixed_4f").eval()
        cut.load_state_dict(model.state_dict())
        assert torch.allclose(cut(x), acts["Mixed_4f"])
    assert full.shape == (1, 1024)
    assert torch.allclose(full, resumed, atol=1e-6)


def test_reset_classifier_and_final_endpoint_validation():
    model = I3D()
    model.reset_classifier(3)
    assert model.forward_head(torch.zeros(2, 1024)).shape == (2, 3)
    with pytest.raises(ValueError, match="Mixed_5c"):
        I3D(final_endpoint="Mixed_6a")
    assert ENDPOINTS[0] == "Conv3d_1a_7x7" and ENDPOINTS[-1] == "Logits"
