"""--precision auto: int8 only where assets/precision.json measured it faster on that kind of CPU and within the accuracy
limits for those very weights (shipped ranges, OpenVINO, NNCF), decided from the CPU's flags, never from our machine;
"float" (and $ACTIONREC_PRECISION=float) keeps the float choice; an int8 run is checked on its validation videos at
the float precision; features of different precisions never mix in the cache."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from actionrec.engine import Engine
from actionrec import errors
from actionrec.models import backends, int8
from actionrec.models.backends import (auto_int8, cpu_flags, cpu_kind, float_precision, precision_policy,
                                       resolve_precision)

AVX2_ONLY = frozenset({"sse4_2", "avx", "avx2", "fma"})  # AMD Zen 3, Intel Haswell..Comet Lake
CASCADE_LAKE = AVX2_ONLY | {"avx512f", "avx512bw", "avx512_vnni"}  # AVX-512 VNNI, no bf16
ZEN4 = CASCADE_LAKE | {"avx512_bf16"}
SAPPHIRE_RAPIDS = ZEN4 | {"amx_tile", "amx_bf16", "amx_int8"}
ALDER_LAKE = AVX2_ONLY | {"avx_vnni"}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    monkeypatch.setattr(errors, "_warned", set())
    monkeypatch.delenv(backends.PRECISION_ENV, raising=False)
    monkeypatch.delenv(backends.BACKEND_ENV, raising=False)


@pytest.fixture
def i3d_info(i3d_kinetics):
    return i3d_kinetics.info


def _auto(info, flags, backend="openvino", device="cpu"):
    return resolve_precision("auto", flags, device=device, info=info, backend=backend)


def test_auto_runs_the_pretrained_i3d_in_int8_only_where_measured(i3d_info, monkeypatch):
    monkeypatch.setattr(int8, "available", lambda: True)
    assert _auto(i3d_info, ZEN4) == "int8"  # measured: 1.66x bf16, the same accuracy
    assert _auto(i3d_info, SAPPHIRE_RAPIDS) == "bf16"  # AMX: another kind, never measured
    assert _auto(i3d_info, CASCADE_LAKE) == "fp32" and _auto(i3d_info, ALDER_LAKE) == "fp32"  # never measured
    avx2 = precision_policy()["kinds"][1]
    assert cpu_kind(AVX2_ONLY) is avx2 and cpu_kind(ALDER_LAKE) is None and cpu_kind(SAPPHIRE_RAPIDS) is None
    expected = "int8" if backends.int8_measured_faster("i3d-kinetics400", AVX2_ONLY) else "fp32"
    assert _auto(i3d_info, AVX2_ONLY) == expected  # whatever the file says of that kind, read at run time
    assert _auto(i3d_info, ZEN4, backend="torch") == "bf16"  # int8 runs on OpenVINO only
    assert _auto(i3d_info, ZEN4, device="cuda") == "fp32"
    assert resolve_precision("float", ZEN4, info=i3d_info, backend="openvino") == "bf16"  # today's choice, by flag
    monkeypatch.setenv(backends.PRECISION_ENV, "float")  # ... and for a whole job
    assert _auto(i3d_info, ZEN4) == "bf16"
    monkeypatch.setenv(backends.PRECISION_ENV, "fp32")
    assert _auto(i3d_info, ZEN4) == "fp32"
    monkeypatch.delenv(backends.PRECISION_ENV)
    monkeypatch.setattr(int8, "available", lambda: False)  # NNCF is an optional extra
    assert _auto(i3d_info, ZEN4) == "bf16"


def test_a_run_keeps_the_kind_of_precision_it_trained_at(i3d_info, monkeypatch):
    """One precision per run: a run trained on float features predicts at the float choice, one trained on int8 at
    int8 where auto may (its frozen part is the pretrained backbone, so the same policy)."""
    monkeypatch.setattr(int8, "available", lambda: True)
    for trained, here in (("bf16", "bf16"), ("fp32", "bf16"), ("int8", "int8")):
        run = replace(i3d_info, name="some/run", run={"engine": {"precision": trained}, "cut_endpoint": "MaxPool3d_5a_2x2"})
        assert _auto(run, ZEN4) == here, trained
    run = replace(i3d_info, name="some/run", run={"engine": {"precision": "int8"}, "cut_endpoint": "MaxPool3d_5a_2x2"})
    assert _auto(run, AVX2_ONLY if not backends.int8_measured_faster("i3d-kinetics400", AVX2_ONLY) else CASCADE_LAKE) == "fp32"


def test_auto_keeps_float_for_weights_without_checked_ranges(i3d_info, monkeypatch):
    monkeypatch.setattr(int8, "available", lambda: True)
    assert _auto(replace(i3d_info, weights_sha256="0" * 64), ZEN4) == "bf16"  # other weights (random, fine-tuned)
    from actionrec.models.pretrained import get_spec
    c3d = replace(i3d_info, name="c3d-sports1m", spec=get_spec("c3d-sports1m"))
    assert not int8.shipped_ranges_fit("c3d-sports1m", c3d.weights_sha256)
    assert _auto(c3d, ZEN4) == "bf16"  # its speed-up is measured, but no ranges ship and its accuracy is unchecked


def test_auto_needs_speed_and_accuracy_both(i3d_info, monkeypatch):
    """The policy as data: a speed-up under min_speedup, or an accuracy not within the limits, keeps the float choice."""
    monkeypatch.setattr(int8, "available", lambda: True)
    policy = json.loads(json.dumps(precision_policy()))
    monkeypatch.setattr(backends, "precision_policy", lambda: policy)
    assert auto_int8(i3d_info, ZEN4)
    speed = policy["kinds"][0]["int8_speedup"]["i3d-kinetics400"]["over_float"]
    speed[0] = policy["min_speedup"] - 0.01
    assert not auto_int8(i3d_info, ZEN4) and _auto(i3d_info, ZEN4) == "bf16"
    speed[0] = policy["min_speedup"]
    policy["accuracy"]["i3d-kinetics400"]["within_limits"] = False
    assert not auto_int8(i3d_info, ZEN4)


def test_the_policy_file_says_where_each_number_came_from():
    policy = precision_policy()
    assert policy["min_speedup"] > 1
    for kind in policy["kinds"]:
        assert kind["float"] == float_precision(frozenset(kind["flags"]))  # the float choice it was measured against
        for network, measured in kind["int8_speedup"].items():
            assert measured["measured"].strip() and any(x is not None for x in measured["over_float"]), network
    for network, checked in policy["accuracy"].items():
        assert checked["measured"].strip()
        shipped = json.loads(int8.shipped_path(network).read_text())
        assert shipped["weights_sha256"] == checked["weights_sha256"]  # checked on the ranges that ship


def test_the_engine_decides_from_this_cpu_and_says_so(i3d_kinetics):
    """On whatever CPU the tests run: the engine's auto is the policy's answer for this CPU's flags."""
    engine = Engine(i3d_kinetics.engine.model)
    flags = cpu_flags()
    expected = _auto(i3d_kinetics.info, flags, backend=engine.backend)
    assert engine.precision == expected
    described = engine.describe()
    assert ("i3d-kinetics400" in described["auto_int8"]) == backends.int8_measured_faster("i3d-kinetics400", flags)
    assert Engine(i3d_kinetics.engine.model, precision="float").precision == float_precision(flags)


def test_features_of_each_precision_are_cached_apart(i3d_kinetics, realclips, tmp_path):
    """Int8 and float features of one clip never share a cache entry (the precision is in the recipe key)."""
    pytest.importorskip("nncf")
    from actionrec.training.features import FeatureCache, Sampling

    network = i3d_kinetics.engine.model
    video = str(realclips / "archery.avi")
    caches = {p: FeatureCache(Engine(network, precision=p), "MaxPool3d_5a_2x2", Sampling(frames=16), root=tmp_path)
              for p in ("int8", "fp32")}
    assert caches["int8"].recipe_key != caches["fp32"].recipe_key
    entries = {p: cache.extract([video])[(video, 0)] for p, cache in caches.items()}
    assert entries["int8"] != entries["fp32"] and all(path.is_file() for path in entries.values())
    assert caches["int8"].backbone_calls == caches["fp32"].backbone_calls == 1  # each computed its own
    again = FeatureCache(Engine(network, precision="int8"), "MaxPool3d_5a_2x2", Sampling(frames=16), root=tmp_path)
    assert again.extract([video])[(video, 0)] == entries["int8"] and again.backbone_calls == 0


def test_bf16_training_gradients_of_a_short_clip_match_fp32():
    """oneDNN's bf16 weight gradient of a conv3d padding time itself is wrong (NaN, inf or finite garbage) on 2 time
    steps, Mixed_5b/5c's at 16 frames (torch 2.13); I3D's Unit3D pads time itself under CPU autocast with gradients,
    after which every bf16 gradient is within bf16's rounding of fp32's (bench/bench_finetune_bf16.py: the whole top)."""
    import torch

    from actionrec.models.i3d import Unit3D

    torch.manual_seed(0)
    unit = Unit3D(64, 128, (3, 3, 3)).eval()
    for _ in range(8):
        x = torch.relu(torch.randn(8, 64, 2, 7, 7))
        grads = []
        for bf16 in (False, True):
            unit.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = (unit(x).float() ** 2).mean()
            loss.backward()
            grads.append(unit.conv.weight.grad)
        assert torch.isfinite(grads[1]).all()
        assert (grads[1] - grads[0]).norm() / grads[0].norm() < 0.02
    with torch.no_grad():  # the inference path (no gradients) is the plain convolution, unchanged
        x = torch.randn(1, 64, 2, 7, 7)
        assert torch.equal(unit(x), unit.bn(unit.conv(x)).relu())
