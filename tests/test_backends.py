"""Backend and precision by CPU: the auto decision from the CPU's flags, OpenVINO's outputs against eager PyTorch
(fp32 within 1e-4, bf16 only where the CPU has it natively), per-shape compiles sharing one saved graph, and the
fallback to PyTorch when OpenVINO fails."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from actionrec.engine import Engine
from actionrec.errors import ActionrecError
from actionrec import errors
from actionrec.models import backends
from actionrec.models.cpu import torch_flags
from actionrec.models.backends import HEAD, cpu_flags, native_bf16, resolve_precision, shape_rule
from actionrec.models.compiled import shape_class

AVX2_ONLY = frozenset({"sse4_2", "avx", "avx2", "fma"})  # AMD Zen 3, Intel Haswell..Ice Lake client
AVX512_NO_BF16 = AVX2_ONLY | {"avx512f", "avx512bw", "avx512_vnni"}  # Intel Skylake-SP / Cascade Lake
ZEN4 = AVX512_NO_BF16 | {"avx512_bf16"}
SAPPHIRE_RAPIDS = AVX512_NO_BF16 | {"avx512_bf16", "amx_tile", "amx_bf16", "amx_int8"}


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(errors, "_warned", set())
    monkeypatch.delenv(backends.PRECISION_ENV, raising=False)
    monkeypatch.delenv(backends.BACKEND_ENV, raising=False)


def test_auto_precision_is_bf16_only_where_the_cpu_has_it_natively():
    assert resolve_precision("auto", AVX2_ONLY) == "fp32"
    assert resolve_precision("auto", AVX512_NO_BF16) == "fp32"
    assert resolve_precision("auto", ZEN4) == "bf16"
    assert resolve_precision("auto", SAPPHIRE_RAPIDS) == "bf16"
    assert resolve_precision("auto", ZEN4, device="cuda") == "fp32"
    assert resolve_precision("fp32", ZEN4) == "fp32"  # forced fp32 stays fp32 on a bf16 CPU
    with pytest.warns(RuntimeWarning, match="no native bf16"):
        assert resolve_precision("bf16", AVX2_ONLY) == "bf16"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_precision("bf16", ZEN4) == "bf16"
    with pytest.raises(ActionrecError, match="unknown precision 'fp16'"):
        resolve_precision("fp16", ZEN4)


def test_the_environment_says_what_auto_means(monkeypatch, tiny_i3d):
    monkeypatch.setenv("ACTIONREC_PRECISION", "fp32")
    assert resolve_precision("auto", ZEN4) == "fp32" and resolve_precision("bf16", ZEN4) == "bf16"
    monkeypatch.setenv("ACTIONREC_PRECISION", "half")
    with pytest.raises(ActionrecError, match="unknown precision 'half'"):
        resolve_precision("auto", ZEN4)
    monkeypatch.setenv("ACTIONREC_PRECISION", "bf16")
    assert Engine(tiny_i3d, fast=False).precision == "fp32"  # the eager reference is fp32 unless asked otherwise
    monkeypatch.setenv("ACTIONREC_BACKEND", "torch")
    assert Engine(tiny_i3d).backend == "torch" and Engine(tiny_i3d).precision == "bf16"


def test_cpu_flags_agree_with_what_pytorch_detects():
    flags = cpu_flags()
    seen_by_torch = torch_flags() - {"amx_bf16"}  # inferred from amx_tile, not read
    assert seen_by_torch <= flags, seen_by_torch - flags
    assert native_bf16() == bool(flags & {"avx512_bf16", "amx_bf16"})


# ------------------------------------------------------------------------------------------ OpenVINO against eager


@pytest.fixture(scope="module")
def compiled_home(tmp_path_factory):
    """One empty ACTIONREC_HOME for this module's exported graphs (shared: each export costs seconds)."""
    pytest.importorskip("openvino")
    with pytest.MonkeyPatch.context() as mp:
        home = tmp_path_factory.mktemp("home")
        mp.setenv("ACTIONREC_HOME", str(home))
        yield home


@pytest.fixture(scope="module")
def tiny_i3d():
    """I3D with random weights (BatchNorm statistics too, so folding them matters)."""
    from actionrec.models.i3d import I3D_KINETICS400
    from actionrec.models.info import ModelInfo
    from actionrec.models.pretrained import build_model

    torch.manual_seed(0)
    info = ModelInfo(name="random-i3d", spec=I3D_KINETICS400, categories=I3D_KINETICS400.categories, weights_sha256="",
                     predict_frames=16, identity="random-i3d")
    model = build_model(info, None)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm3d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    return model


def _irs(home) -> list:
    return sorted(p.name for p in (home / "compiled" / "ir").iterdir() if not p.name.startswith("."))


def test_openvino_fp32_matches_eager_for_every_output_and_clip_length(compiled_home, tiny_i3d):
    eager = Engine(tiny_i3d, fast=False)
    engine = Engine(tiny_i3d, backend="openvino", precision="fp32")
    assert engine.describe()["backend"] == "openvino" and engine.describe()["precision"] == "fp32"
    x = torch.randn(2, 3, 16, 64, 64)
    for output in ("logits", "probs", "features", "Mixed_4f"):
        got, want = engine.forward(x, output), eager.forward(x, output)
        assert got.shape == want.shape and got.dtype == torch.float32
        assert float((got - want).abs().max()) < 1e-4, output
    compiled = engine._openvino.compiled(HEAD, (3, 16, 64, 64))
    assert str(compiled.get_property("INFERENCE_PRECISION_HINT")) in ("f32", "<Type: 'float32'>")  # really fp32
    assert len(_irs(compiled_home)) == 2  # probs, logits and features share one graph; the endpoint has its own

    # Other clip lengths and batch sizes: 24 frames reuse the graph of 16 (same shape class), 20 frames need another.
    for t, batch in ((24, 1), (20, 3)):
        x = torch.randn(batch, 3, t, 64, 64)
        assert float((engine.forward(x, "logits") - eager.forward(x, "logits")).abs().max()) < 1e-4, t
    assert shape_rule(tiny_i3d) == "i3d" and shape_class("i3d", (3, 24, 64, 64)) == shape_class("i3d", (3, 16, 64, 64))
    assert len(_irs(compiled_home)) == 3
    assert engine.backend == "openvino" and engine.clips_run == 4 * 2 + 1 + 3


def test_steps_through_openvino_match_eager_on_long_chunks(compiled_home, tiny_i3d):
    eager = Engine(tiny_i3d, fast=False)
    engine = Engine(tiny_i3d, backend="openvino", precision="fp32")
    for t in (32, 64):  # one shape class: the second is a reshape of the first's graph
        x = torch.randn(1, 3, t, 64, 64)
        got, want = engine.forward(x, "steps"), eager.forward(x, "steps")
        assert got.shape == want.shape and float((got - want).abs().max()) < 1e-4, t


@pytest.mark.skipif(not native_bf16(), reason="this CPU has no native bf16 (avx512_bf16 / amx_bf16): bf16 numerics "
                                              "are only checked where bf16 is what `auto` picks")
def test_openvino_bf16_where_native_is_close_to_fp32_and_auto_picks_it(compiled_home, tiny_i3d):
    auto = Engine(tiny_i3d, backend="openvino")
    assert auto.precision == "bf16" and auto.describe()["native_bf16"]
    x = torch.randn(2, 3, 16, 64, 64)
    want = Engine(tiny_i3d, fast=False).forward(x, "features")
    got = auto.forward(x, "features")
    assert str(auto._openvino.compiled(HEAD, (3, 16, 64, 64)).get_property("INFERENCE_PRECISION_HINT")) in ("bf16", "<Type: 'bfloat16'>")
    error = float((got - want).abs().max() / want.abs().max())
    assert 1e-6 < error < 0.05  # bf16 rounding is there (it is not fp32), and small
    torch_bf16 = Engine(tiny_i3d, backend="torch", precision="bf16").forward(x, "features")
    assert float((torch_bf16 - want).abs().max() / want.abs().max()) < 0.05


def test_a_failing_openvino_warns_once_and_pytorch_takes_over(compiled_home, tiny_i3d, monkeypatch):
    def broken(self, x, output):
        raise RuntimeError("no conversion rule for aten::something")

    monkeypatch.setattr(backends.OpenVINONet, "__call__", broken)
    engine = Engine(tiny_i3d, backend="openvino", precision="fp32")
    with pytest.raises(RuntimeError):  # a bad input fails in PyTorch too: raised, and OpenVINO is kept
        engine.forward(torch.randn(1, 4, 16, 64, 64), "logits")
    assert engine.backend == "openvino"
    x = torch.randn(1, 3, 16, 64, 64)
    with pytest.warns(RuntimeWarning, match="OpenVINO could not run random-i3d .*aten::something.*PyTorch"):
        got = engine.forward(x, "logits")
    assert engine.backend == "torch" and engine.describe()["backend"] == "torch"
    assert float((got - Engine(tiny_i3d, fast=False).forward(x, "logits")).abs().max()) < 1e-4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        engine.forward(x, "logits")  # no second warning, no second try


def test_backend_choice_and_clear_errors(tiny_i3d, monkeypatch):
    from test_engine import Doubler

    assert Engine(Doubler()).backend == "torch"  # only I3D and C3D go to OpenVINO
    assert Engine(tiny_i3d, fast=False).backend == "torch" and Engine(tiny_i3d, fast=False).precision == "fp32"
    with pytest.raises(ActionrecError, match="unknown backend 'tensorrt'"):
        Engine(tiny_i3d, backend="tensorrt")
    with pytest.raises(ActionrecError, match="OpenVINO runs I3D and C3D on the CPU only"):
        Engine(Doubler(), backend="openvino")
    monkeypatch.setattr(backends, "openvino_version", lambda: None)  # as without the package
    assert Engine(tiny_i3d).backend == "torch"
    with pytest.raises(ActionrecError, match="pip install openvino"):
        Engine(tiny_i3d, backend="openvino")


def test_real_weights_top1_unchanged_on_the_real_clips(realclips, i3d_kinetics, compiled_home):
    from actionrec.data.transforms import preprocess
    from actionrec.data.video import read_clip

    spec = i3d_kinetics.info.spec
    clips = torch.stack([preprocess(read_clip(realclips / name, n=16, short_side=spec.resize, target_fps=spec.fps).frames, spec)
                         for name in ("archery.avi", "arm_wrestling.mp4", "cricket_shot_224.gif")])
    want = Engine(i3d_kinetics, fast=False).forward(clips, "logits")
    for precision in ("fp32", "bf16") if native_bf16() else ("fp32",):
        got = Engine(i3d_kinetics, backend="openvino", precision=precision).forward(clips, "logits")
        assert np.array_equal(got.argmax(-1).numpy(), want.argmax(-1).numpy()), precision
        if precision == "fp32":
            assert float((got - want).abs().max()) < 1e-3
