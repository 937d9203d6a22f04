"""The I3D port: TF SAME padding, endpoints, the head API, and golden logits of the reference flax model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from actionrec.models.i3d import ENDPOINTS, I3D, MaxPoolSame, _same_pad

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


@pytest.fixture(scope="module")
def i3d_eager() -> I3D:
    """The real pretrained I3D as the eager fp32 reference network (load_model's fast path is tested against it)."""
    from actionrec import load_model

    return load_model("i3d-kinetics400", fast=False)


@pytest.fixture(scope="module")
def golden():
    return np.load(FIXTURE)


@pytest.fixture(scope="module")
def golden_batch(golden):
    from i3d_golden_input import golden_input

    x = golden_input()  # (2, 16, 224, 224, 3) in [-1, 1], flax layout
    assert x.shape == tuple(golden["synthetic_input_shape"])
    assert float(x.astype(np.float64).sum()) == pytest.approx(float(golden["synthetic_input_sum"]), abs=1e-6)
    return torch.from_numpy(x).permute(0, 4, 1, 2, 3).contiguous()


def test_port_matches_the_reference_flax_model_in_float64(i3d_eager, golden, golden_batch):
    """float64 on both sides isolates port errors from rounding: the logits agree to 1e-6."""
    model = I3D().double().eval()
    model.load_state_dict(i3d_eager.state_dict())
    with torch.no_grad():
        acts = model.forward_until(golden_batch[:1].double(), "Mixed_4f")
        logits = model(golden_batch.double()).numpy()
    np.testing.assert_allclose(logits, golden["synthetic_logits_f64"], atol=1e-6, rtol=0)
    mixed_4f = acts[0].permute(1, 2, 3, 0).numpy()  # flax layout (T, H, W, C)
    assert mixed_4f.mean() == pytest.approx(float(golden["endpoint_Mixed_4f_mean"]), abs=1e-9)
    np.testing.assert_allclose(mixed_4f[0, 0, 0, :4], golden["endpoint_Mixed_4f_first"].ravel(), atol=1e-9)


def test_port_matches_the_reference_in_float32(i3d_eager, golden, golden_batch):
    with torch.no_grad():
        logits = i3d_eager(golden_batch).numpy()
    np.testing.assert_allclose(logits, golden["synthetic_logits_f32"], atol=1e-4, rtol=0)


def test_cricket_gif_through_our_decoder_matches_the_reference(realclips, i3d_eager, golden):
    """DeepMind's preprocessed sample, fed as is (79 frames): our decoder gives the reference's exact frames and logits."""
    import hashlib

    from actionrec.data.video import ClipSpan, probe, read_clips

    path = realclips / "cricket_shot_224.gif"
    info = probe(path)
    (clip,) = read_clips(path, [ClipSpan(np.arange(info.num_frames), 0.0, info.duration, False)])
    assert clip.frames.shape == tuple(golden["cricket_frames_shape"])
    assert hashlib.sha256(clip.frames.tobytes()).hexdigest() == str(golden["cricket_frames_sha256"])
    x = torch.from_numpy(clip.frames).permute(3, 0, 1, 2).float().div(255).mul(2).sub(1)
    with torch.no_grad():
        logits = i3d_eager(x[None]).numpy()
    np.testing.assert_allclose(logits, golden["cricket_logits_f32"], atol=1e-4, rtol=0)
    assert i3d_eager.info.categories[int(logits.argmax())] == "playing cricket"


def test_inference_path_matches_eager_and_leaves_the_model_untouched():
    from actionrec.models.accel import optimize_for_inference

    torch.manual_seed(1)
    model = I3D(num_classes=5).eval()
    for module in model.modules():  # non-trivial BatchNorm statistics, so folding them is really tested
        if isinstance(module, torch.nn.BatchNorm3d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.bias.data.uniform_(-0.2, 0.2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = optimize_for_inference(model)
    x = torch.randn(2, 3, 16, 224, 224)
    with torch.inference_mode():
        np.testing.assert_allclose(fast(x).numpy(), model(x).numpy(), atol=1e-4, rtol=1e-4)
        cut = model.forward_until(x, "MaxPool3d_5a_2x2")
        np.testing.assert_allclose(fast.forward_until(x, "MaxPool3d_5a_2x2").numpy(), cut.numpy(), atol=1e-4, rtol=1e-4)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="unknown mode"):
        optimize_for_inference(model, "turbo")


@pytest.mark.parametrize("kernel,stride", [((1, 3, 3), (1, 2, 2)), ((3, 3, 3), (2, 2, 2)), ((2, 2, 2), (2, 2, 2)), ((3, 3, 3), (1, 1, 1))])
def test_max_pool_fast_paths_equal_explicit_minus_infinity_padding(kernel, stride):
    from actionrec.models.i3d import _pad_same

    pool = MaxPoolSame(kernel, stride)
    for t, h in [(2, 5), (3, 7), (4, 8), (5, 14), (8, 19)]:
        x = -torch.rand(1, 2, t, h, h + 1) - 1.0
        explicit = torch.nn.functional.max_pool3d(_pad_same(x, kernel, stride, float("-inf")), kernel, stride)
        assert torch.equal(pool(x), explicit), (t, h)
