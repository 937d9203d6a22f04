"""`actionrec export`: the exported file runs in its own runtime, PATH.json says how to feed it (derived from the
model's spec), the check refuses a mismatch, and the README's onnxruntime-only program predicts a real clip."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import actionrec
from actionrec.apps import export as export_module
from actionrec.apps.export import clips_as_described, export, feeding, frames_rule, run_exported
from actionrec.cli import main
from actionrec.errors import ActionrecError

ROOT = Path(__file__).resolve().parents[1]
PROGRAM = ROOT / "docs" / "predict_exported.py"


@pytest.fixture(scope="module")
def onnx_i3d(tmp_path_factory, realclips) -> tuple[Path, dict]:
    """i3d-kinetics400 exported once to ONNX, checked on the real archery clip."""
    pytest.importorskip("onnxruntime")
    out = tmp_path_factory.mktemp("export") / "i3d.onnx"
    manifest = export("i3d-kinetics400", "onnx", out, clip=realclips / "archery.avi")
    return out, manifest


def test_json_is_derived_from_the_spec_and_names_the_file(onnx_i3d):
    out, manifest = onnx_i3d
    spec = actionrec.PRETRAINED["i3d-kinetics400"]
    assert json.loads(Path(f"{out}.json").read_text()) == manifest
    assert manifest["classes"] == list(spec.categories)
    assert manifest["sampling"]["frames"] == manifest["input"]["frames"] == spec.predict_frames
    assert manifest["sampling"]["fps"] == spec.fps and manifest["sampling"]["views"] == 1
    pre = manifest["preprocess"]
    assert (pre["mean"], pre["std"], pre["value_range"]) == (list(spec.mean), list(spec.std), list(spec.value_range))
    assert (pre["resize"]["short_side"], pre["crop"]["size"]) == (spec.resize, spec.crop)
    assert manifest["input"]["shape"] == ["batch", 3, "frames", 224, 224]
    assert manifest["input"]["frames_allowed"] == {"multiple_of": 8, "min": 16}
    assert manifest["files"] == {out.name: hashlib.sha256(out.read_bytes()).hexdigest()}
    assert manifest["actionrec_version"] == actionrec.__version__
    check = manifest["verified"]
    assert check["reference_top1"] == check["exported_top1"] == "archery"
    assert check["max_abs_logit_diff"] <= check["tolerance"] < 0.1
    assert check["max_abs_input_diff"] < 1e-6  # the JSON's recipe made the very input actionrec makes


def test_batch_and_frames_are_dynamic(onnx_i3d):
    """Another batch size and clip length than the export's example run and match the eager model."""
    out, _ = onnx_i3d
    model = actionrec.load_model("i3d-kinetics400", fast=False)
    x = torch.rand(1, 3, 16, 224, 224, generator=torch.Generator().manual_seed(0)) * 2 - 1  # export example: 2 x 64
    with torch.no_grad():
        reference = model(x).numpy()
    logits, runtime = run_exported(out, "onnx", x.numpy())
    assert runtime.startswith("onnxruntime")
    np.testing.assert_allclose(logits, reference, atol=1e-3 * np.abs(reference).max())


def test_readme_program_predicts_the_real_clip(onnx_i3d, realclips):
    """The README quotes docs/predict_exported.py verbatim; that text, run alone, names archery.avi's action."""
    out, _ = onnx_i3d
    program = PROGRAM.read_text()
    assert len(program.strip().splitlines()) <= 15
    assert program.strip() in (ROOT / "README.md").read_text()
    assert not re.search(r"^\s*(from|import)\s+actionrec", program, re.M)
    done = subprocess.run([sys.executable, "-c", program, str(out), str(realclips / "archery.avi")],
                          capture_output=True, text=True, timeout=300, cwd=out.parent)
    assert done.returncode == 0, done.stderr
    label, prob = done.stdout.rsplit(maxsplit=1)
    assert label == "archery" and float(prob) > 0.9


def test_a_mismatch_is_refused_and_nothing_is_written(onnx_i3d, realclips, tmp_path, monkeypatch):
    """A JSON that misstates the preprocessing (std doubled) makes the exported file disagree: refused in one line."""
    exported, _ = onnx_i3d
    wrong = lambda model: {**feeding(model), "preprocess": {**feeding(model)["preprocess"], "std": [1.0, 1.0, 1.0]}}  # noqa: E731
    monkeypatch.setattr(export_module, "feeding", wrong)
    monkeypatch.setattr(export_module, "_write_graph", lambda model, fmt, path, dynamic: shutil.copy(exported, path))
    out = tmp_path / "bad.onnx"
    with pytest.raises(ActionrecError, match="disagrees with the model on archery.avi") as err:
        export("i3d-kinetics400", "onnx", out, clip=realclips / "archery.avi")
    assert "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_described_input_is_what_actionrec_feeds(onnx_i3d, realclips):
    """clips_as_described (OpenCV + numpy from the JSON alone) equals actionrec's own decoder and transforms on a
    clip whose frame rate is resampled (arm_wrestling.mp4) and with two views."""
    _, manifest = onnx_i3d
    model = actionrec.load_model("i3d-kinetics400", fast=False)
    video = str(realclips / "arm_wrestling.mp4")
    two = {**manifest, "sampling": {**manifest["sampling"], "views": 2}}
    described = clips_as_described(two, video)
    reference = export_module._reference_inputs(model, video, 2).numpy()
    assert described.shape == reference.shape == (2, 3, 64, 224, 224)
    assert np.abs(described - reference).max() < 1e-6


def test_run_to_openvino_through_the_cli(demo_run, tmp_path, capsys):
    """A trained run (backbone + its trained layers and head) exported as IR by the CLI and checked by OpenVINO."""
    run, data, _ = demo_run
    out = tmp_path / "run.xml"
    assert main(["export", str(run), "--format", "openvino", "--out", str(out)]) == 0
    manifest = json.loads(Path(f"{out}.json").read_text())
    config = json.loads((run / "config.json").read_text())
    assert manifest["classes"] == config["classes"] and manifest["input"]["frames"] == config["frames"]
    assert set(manifest["files"]) == {"run.xml", "run.bin"} and out.with_suffix(".bin").is_file()
    assert manifest["verified"]["runtime"].startswith("openvino")
    assert "top-1" in capsys.readouterr().out
    clip = sorted(p for p in Path(data).rglob("*") if p.suffix in (".mp4", ".avi"))[0]
    x = clips_as_described(manifest, clip)
    model = actionrec.load_model(run, fast=False)
    with torch.no_grad():
        reference = model(torch.from_numpy(x)).numpy()
    logits, _ = run_exported(out, "openvino", x)
    np.testing.assert_allclose(logits, reference, atol=1e-3 * max(1.0, np.abs(reference).max()))
    assert main(["export", str(run), "--format", "openvino", "--out", str(out)]) == 2  # exists: --force to replace
    assert "already exists" in capsys.readouterr().err


def test_c3d_clip_length_is_fixed():
    """C3D's fc6 takes exactly 16 frames: the graph's frames dimension is not symbolic, and the JSON says so."""
    from actionrec.models.info import ModelInfo
    from actionrec.models.pretrained import build_model, get_spec

    spec = get_spec("c3d-sports1m")
    info = ModelInfo(name="c3d", spec=spec, categories=spec.categories, weights_sha256="", predict_frames=16, identity="")
    model = build_model(info, None)
    assert frames_rule(model) is None
    fed = feeding(model)
    assert fed["input"]["shape"] == ["batch", 3, 16, 112, 112] and fed["input"]["frames_allowed"] == {"exactly": 16}
    assert fed["preprocess"]["mean"] == list(spec.mean) and fed["sampling"]["fps"] == spec.fps


def test_bad_requests_are_refused_in_one_line(tmp_path):
    with pytest.raises(ActionrecError, match="unknown export format 'tflite'"):
        export("i3d-kinetics400", "tflite", tmp_path / "x")
    with pytest.raises(ActionrecError, match="no such video"):
        export("i3d-kinetics400", "onnx", tmp_path / "x.onnx", clip=tmp_path / "missing.mp4")
    assert not (tmp_path / "x.onnx").exists()
