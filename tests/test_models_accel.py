"""The fast path's private oneDNN ops are tried once; where they are missing or wrong the plain path runs, said once."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from actionrec.models import accel
from actionrec.models.accel import PackedUnit3D, optimize_for_inference, packed_conv_problem
from actionrec.models.i3d import I3D


@pytest.fixture
def fresh_probe():
    """Forget this process's verdict on the packed convolution before and after the test."""
    accel.packed_conv_usable.cache_clear()
    yield
    accel.packed_conv_usable.cache_clear()


@pytest.fixture(scope="module")
def model_and_clip():
    torch.manual_seed(3)
    model = I3D(num_classes=4).eval()
    for module in model.modules():  # non-trivial BatchNorm statistics, so that folding them matters
        if isinstance(module, torch.nn.BatchNorm3d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model, torch.randn(1, 3, 10, 32, 32)  # small, still through every layer to the head


def _packed_units(model: torch.nn.Module) -> int:
    return sum(isinstance(m, PackedUnit3D) for m in model.modules())


def _assert_same_outputs(fast: torch.nn.Module, model: torch.nn.Module, clip: torch.Tensor) -> None:
    with torch.inference_mode():
        np.testing.assert_allclose(fast(clip).numpy(), model(clip).numpy(), atol=1e-4, rtol=1e-4)


def _missing_op(*args, **kwargs):
    # what torch raises when an op of torch.ops.mkldnn is gone
    raise AttributeError("'_OpNamespace' 'mkldnn' object has no attribute '_convolution_pointwise'")


def test_this_torch_packs_when_the_probe_passes(fresh_probe, model_and_clip, capsys):
    model, clip = model_and_clip
    problem = packed_conv_problem()
    fast = optimize_for_inference(model)
    assert (_packed_units(fast) > 0) == (problem is None)
    assert ("using the plain path" in capsys.readouterr().err) == (problem is not None)
    _assert_same_outputs(fast, model, clip)


def test_a_missing_op_warns_once_and_takes_the_plain_path(fresh_probe, model_and_clip, monkeypatch, capsys):
    model, clip = model_and_clip
    monkeypatch.setattr(accel, "_conv3d_relu", _missing_op)
    assert packed_conv_problem().startswith("AttributeError: '_OpNamespace' 'mkldnn' object has no attribute")
    fast = optimize_for_inference(model)
    again = optimize_for_inference(model, "packed")
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("actionrec: the packed oneDNN convolution is not available in this torch (")
    assert err[0].endswith("; using the plain path")
    assert _packed_units(fast) == 0 == _packed_units(again)
    assert fast.Conv3d_1a_7x7.conv.weight.is_contiguous(memory_format=torch.channels_last_3d)  # fused + channels_last
    assert isinstance(fast.Conv3d_1a_7x7.bn, torch.nn.Identity)
    _assert_same_outputs(fast, model, clip)
    _assert_same_outputs(again, model, clip)


def test_a_wrong_result_or_a_missing_reorder_is_refused(fresh_probe, monkeypatch):
    real = accel._conv3d_relu
    monkeypatch.setattr(accel, "_conv3d_relu", lambda x, packed, conv: real(x, packed, conv) * 1.01)
    assert packed_conv_problem() == "its result differs from F.conv3d"
    monkeypatch.setattr(accel, "_conv3d_relu", real)

    def no_reorder(*args, **kwargs):
        raise RuntimeError("mkldnn_reorder_conv3d_weight: not implemented\nsecond line")

    monkeypatch.setattr(accel, "_reorder_conv3d_weight", no_reorder)
    assert packed_conv_problem() == "RuntimeError: mkldnn_reorder_conv3d_weight: not implemented"
    assert accel.packed_conv_usable() is False
