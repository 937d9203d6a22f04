"""--precision int8: NNCF-quantized OpenVINO networks from activation ranges measured once (models/int8.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("nncf")

from actionrec import load_model  # noqa: E402
from actionrec.cli import main  # noqa: E402
from actionrec.data.transforms import preprocess  # noqa: E402
from actionrec.data.video import read_clip  # noqa: E402
from actionrec.engine import Engine  # noqa: E402
from actionrec.errors import ActionrecError  # noqa: E402
from actionrec.models import int8  # noqa: E402

REAL = ("archery.avi", "arm_wrestling.mp4", "cricket_shot_224.gif")


def _tiny_openvino():
    import openvino

    torch.manual_seed(0)  # the same network at every call
    net = nn.Sequential(nn.Conv3d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv3d(8, 8, 3, padding=1), nn.ReLU(),
                        nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(8, 4)).eval()
    model = openvino.convert_model(net, example_input=torch.randn(1, 3, 4, 16, 16))
    model.reshape([1, 3, 4, 16, 16])
    return model


def test_shipped_ranges_keep_the_top1_of_the_real_clips(realclips):
    """The acceptance limit: top-1 unchanged on ../shared/realclips; the logits stay near fp32 (reported beside bf16's
    in the README: about 1.3 of logits in the tens, against bf16's 0.25)."""
    float_model = load_model("i3d-kinetics400", precision="fp32")
    int8_model = load_model("i3d-kinetics400", precision="int8")
    assert int8_model.engine.describe()["precision"] == "int8"
    spec = float_model.info.spec
    for name in REAL:
        x = preprocess(read_clip(realclips / name, n=16, short_side=spec.resize).frames, spec)[None]
        ref, got = float_model(x), int8_model(x)
        assert got.argmax().item() == ref.argmax().item(), name
        assert 0 < (got - ref).abs().max().item() < 3.0, name  # quantized (not the float network), and close


def test_every_graph_runs_in_int8_on_openvino(realclips):
    """The per-step graph (timeline's once-per-frame path) holds one quantizer the whole network has no range for (its
    spatial mean): it runs in int8 on OpenVINO with that mean in float, not on PyTorch's fallback, and keeps the top-1."""
    network = load_model("i3d-kinetics400", fast=False)
    engines = {p: Engine(network, precision=p) for p in ("fp32", "int8")}
    x = preprocess(read_clip(realclips / "archery.avi", n=32, short_side=network.info.spec.resize).frames,
                   network.info.spec)[None]
    steps = {p: engine.forward(x, "step_logits") for p, engine in engines.items()}
    assert engines["int8"].backend == "openvino"  # a failure would have fallen back to PyTorch and steps["int8"].shape == steps["fp32"].shape
    assert steps["int8"].mean(1).argmax() == steps["fp32"].mean(1).argmax()
    assert 0 < (steps["int8"] - steps["fp32"]).abs().max() < 3.0


def test_ranges_applied_to_a_blank_quantization_give_the_calibrated_network():
    """What the package ships (ranges) rebuilds exactly the network NNCF makes from the calibration data itself."""
    import openvino

    rng = np.random.default_rng(0)
    clips = [rng.uniform(-1, 1, (1, 3, 4, 16, 16)).astype(np.float32) for _ in range(4)]
    ranges = int8.measure_ranges(_tiny_openvino(), clips)
    assert len(ranges) >= 2 and all(len(v) == 4 for v in ranges.values())
    direct = openvino.Core().compile_model(int8._quantized(_tiny_openvino(), clips), "CPU")
    rebuilt = openvino.Core().compile_model(int8.quantize(_tiny_openvino(), ranges, (3, 4, 16, 16)), "CPU")
    for clip in clips:
        np.testing.assert_array_equal(direct(clip)[0], rebuilt(clip)[0])
    with pytest.raises(ActionrecError, match="do not fit this network"):
        int8.quantize(_tiny_openvino(), dict(list(ranges.items())[:-1]), (3, 4, 16, 16))


def test_bad_ranges_files_are_refused_in_one_line(tmp_path):
    bad = tmp_path / "r.json"
    bad.write_text("{not json")
    with pytest.raises(ActionrecError, match="r.json: not int8 ranges"):
        int8.load_ranges(bad)
    bad.write_text(json.dumps({"format": 1, "ranges": {"a": [0.0, float("nan"), 0.0, 1.0]}}))
    with pytest.raises(ActionrecError, match="non-finite"):
        int8.load_ranges(bad)


def test_int8_refuses_what_it_cannot_run(tmp_path, monkeypatch):
    """On PyTorch, for weights without ranges, and for ranges of other weights: one line each, saying what to do."""
    network = load_model("i3d-kinetics400", fast=False)
    with pytest.raises(ActionrecError, match="OpenVINO backend"):
        Engine(network, precision="int8", backend="torch")
    from actionrec.models.pretrained import create_model, get_spec
    c3d = create_model(get_spec("c3d-sports1m"))
    c3d.info = network.info.__class__(name="c3d-sports1m", spec=get_spec("c3d-sports1m"), categories=(),
                                      weights_sha256="random", predict_frames=16, identity="")
    with pytest.raises(ActionrecError, match="weights calibrate c3d-sports1m"):
        Engine(c3d, precision="int8")
    monkeypatch.setattr(int8, "measured_path", lambda name: tmp_path / f"{name}.json")
    int8.save_ranges(tmp_path / "i3d-kinetics400.json", {"x": [0, 1, 0, 1]}, weights_sha256="other")
    with pytest.raises(ActionrecError, match="other i3d-kinetics400 weights"):
        Engine(network, precision="int8")


def test_weights_calibrate_measures_ranges_from_real_videos(realclips, tmp_path, capsys):
    out = tmp_path / "ranges.json"
    assert main(["weights", "calibrate", "i3d-kinetics400", str(realclips / "archery.avi"),
                 str(realclips / "arm_wrestling.mp4"), str(tmp_path / "missing.avi"), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "missing.avi" in err and err.count("\n") == 1  # the unreadable video: one line, and the rest measured
    doc = json.loads(out.read_text())
    assert doc["clips"] == 2 and doc["weights_sha256"] == load_model("i3d-kinetics400").info.weights_sha256
    assert len(int8.load_ranges(out)) == len(int8.ranges_for(load_model("i3d-kinetics400").info))
