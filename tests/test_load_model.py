"""`actionrec.load_model`: an inference model on the engine's fast path (logits and features as the eager reference's,
within the tolerance of its precision), no gradients but a trainable eager copy, one engine shared with `predict`,
runs as well as pretrained weights; `fast=False` is the eager reference itself."""

from __future__ import annotations

import copy

import pytest
import torch

from actionrec import load_model, predict
from actionrec.engine import Engine, InferenceModel, engine_for
from actionrec.errors import ActionrecError
from actionrec.models import backends
from actionrec.models.backends import native_bf16, openvino_version
from actionrec.models.i3d import I3D

WEIGHTS = "i3d-kinetics400"
REAL = ("archery.avi", "arm_wrestling.mp4", "cricket_shot_224.gif")  # ../shared/realclips, 3 labels of Kinetics-400
FP32_TOLERANCE = 1e-3  # max |logit difference| at fp32 (measured: 3e-5 OpenVINO, 2e-5 packed PyTorch)
BF16_TOLERANCE = 2.0  # bf16 (measured: 0.1-0.3), with the same top-1

# (precision, backend) pairs this machine runs at speed: bf16 only where the CPU has it natively
CASES = [("fp32", "torch")] + [(p, "openvino") for p in (("fp32", "bf16") if native_bf16() else ("fp32",))
                                if openvino_version() is not None]


@pytest.fixture(autouse=True)
def plain_auto(monkeypatch):
    """"auto" means this machine's choice here, whatever the environment says."""
    monkeypatch.delenv(backends.PRECISION_ENV, raising=False)
    monkeypatch.delenv(backends.BACKEND_ENV, raising=False)


def real_batch(realclips, spec) -> torch.Tensor:
    from actionrec.data.transforms import preprocess
    from actionrec.data.video import read_clip

    return torch.stack([preprocess(read_clip(realclips / name, n=16, short_side=spec.resize, target_fps=spec.fps).frames, spec)
                        for name in REAL])


@pytest.fixture(scope="module")
def eager() -> I3D:
    return load_model(WEIGHTS, fast=False)


@pytest.fixture(scope="module")
def clips(realclips, eager) -> torch.Tensor:
    return real_batch(realclips, eager.info.spec)


@pytest.fixture(scope="module")
def reference(eager, clips) -> tuple[torch.Tensor, torch.Tensor]:
    """The eager fp32 network's (logits, pooled features) of the real clips."""
    with torch.no_grad():
        return eager(clips), eager.forward_features(clips)


@pytest.fixture(scope="module")
def fp32() -> InferenceModel:
    return load_model(WEIGHTS, precision="fp32")


def test_fast_false_is_the_eager_reference_network(eager):
    assert type(eager) is I3D and eager.info.name == WEIGHTS and not eager.training
    with pytest.raises(ActionrecError, match="fast=False gives the eager fp32 PyTorch network"):
        load_model(WEIGHTS, fast=False, precision="bf16")
    with pytest.raises(ActionrecError, match="unknown precision 'fp16'") as err:
        load_model(WEIGHTS, precision="fp16")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("precision,backend", CASES)
def test_fast_model_matches_the_eager_reference_within_its_precision(precision, backend, eager, clips, reference):
    model = load_model(WEIGHTS, precision=precision, backend=backend)
    assert isinstance(model, InferenceModel) and model.info == eager.info
    assert (model.engine.precision, model.engine.backend) == (precision, backend)
    want_logits, want_features = reference
    logits = model(clips)  # as the README writes it: no torch.no_grad() needed
    assert logits.shape == (3, 400) and not logits.requires_grad
    assert torch.equal(logits.argmax(-1), want_logits.argmax(-1))
    diff = float((logits - want_logits).abs().max())
    if precision == "fp32":  # a forced fp32 is fp32, also on a CPU where OpenVINO would pick bf16 by itself
        assert diff < FP32_TOLERANCE
    else:
        assert FP32_TOLERANCE < diff < BF16_TOLERANCE  # really bf16, and close
    features = model.forward_features(clips)
    assert features.shape == (3, 1024)
    assert torch.allclose(features, want_features, atol=FP32_TOLERANCE if precision == "fp32" else 0.1)
    assert model.forward_steps(clips[:1]).shape == (1, 2, 1024)  # 16 frames: 2 steps of 8


def test_gradients_are_refused_in_one_line_naming_the_trainable_copy(fp32, clips):
    x = clips[:1]
    with pytest.raises(ActionrecError, match=r"takes no gradients; call model\.trainable_copy\(\)") as err:
        fp32(x.clone().requires_grad_())
    assert "\n" not in str(err.value)
    fp32.train()
    try:
        with pytest.raises(ActionrecError, match=r"model\.trainable_copy\(\)"):
            fp32.forward_features(x)
    finally:
        fp32.eval()
    with torch.no_grad():
        features = fp32.forward_features(x.clone().requires_grad_())
    assert not features.requires_grad and not features.is_inference()  # an ordinary tensor, as the eager one
    with torch.inference_mode():
        assert torch.allclose(fp32.forward_features(x), features)


def test_trainable_copy_is_an_independent_eager_network(fp32, eager, reference):
    want_logits, features = reference
    network = fp32.trainable_copy()
    assert type(network) is I3D and network.info == fp32.info
    assert network is not fp32.engine.model and network is not fp32.trainable_copy()
    assert all(p.requires_grad for p in network.parameters())
    network.forward_head(features).logsumexp(-1).sum().backward()  # it trains: gradients reach its head
    assert network.head.weight.grad is not None and float(network.head.weight.grad.abs().sum()) > 0
    with torch.no_grad():
        network.head.bias.add_(100.0)
    assert torch.equal(fp32.state_dict()["head.bias"], eager.head.bias)  # untouched
    assert torch.allclose(fp32.forward_head(features), want_logits, atol=FP32_TOLERANCE)


def test_inference_model_keeps_its_device_precision_and_weights(fp32, eager):
    assert fp32.to("cpu") is fp32 and fp32.cpu() is fp32 and fp32.to(torch.float32) is fp32
    assert list(fp32.parameters()) == [] and fp32.state_dict().keys() == eager.state_dict().keys()
    for change in (lambda: fp32.half(), lambda: fp32.to(torch.bfloat16), lambda: copy.deepcopy(fp32),
                   lambda: fp32.load_state_dict(eager.state_dict()), lambda: fp32.reset_classifier(3)):
        with pytest.raises(ActionrecError, match=r"call model\.trainable_copy\(\) for an eager copy to change"):
            change()
    assert "backend=" in repr(fp32) and "precision=fp32" in repr(fp32)


def test_engine_for_is_the_models_engine_and_predict_reuses_it(fp32, realclips):
    assert engine_for(fp32) is fp32.engine and engine_for(fp32, precision="fp32") is fp32.engine
    other = engine_for(fp32, backend="torch")  # other settings: another engine of the same network
    assert other is not fp32.engine and other.model is fp32.engine.model and other.backend == "torch"
    assert Engine(fp32).model is fp32.engine.model
    before = fp32.engine.clips_run
    (pred,) = predict(realclips / "archery.avi", model=fp32, test_views=1, frames=16)
    assert pred.top(1)[0][0] == "archery" and fp32.engine.clips_run == before + 1


def test_a_run_directory_loads_as_an_inference_model(demo_run):
    from actionrec.data.transforms import preprocess
    from actionrec.data.video import read_clip

    run_dir, data, _ = demo_run
    model = load_model(run_dir, precision="fp32", backend="torch")  # (OpenVINO: a new export of its own, seconds)
    eager = load_model(run_dir, fast=False)
    assert isinstance(model, InferenceModel) and model.info == eager.info and len(model.info.categories) == 4
    video = sorted(p for p in data.rglob("*") if p.suffix in (".mp4", ".avi"))[0]
    spec = model.info.spec
    x = preprocess(read_clip(video, n=16, short_side=spec.resize, target_fps=spec.fps).frames, spec)[None]
    with torch.no_grad():
        want = eager(x)
    got = model(x)
    assert got.shape == (1, 4) and float((got - want).abs().max()) < FP32_TOLERANCE
    assert engine_for(model) is model.engine
