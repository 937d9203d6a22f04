"""docs/quickstart.ipynb runs top to bottom in a real Jupyter kernel (nbclient + ipykernel) on the demo data: it
predicts a clip, shows a timeline plot inline, trains, reads the report's numbers and exports, so it never goes
stale."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="the notebook test needs the test extra (nbclient, ipykernel)")
from nbclient import NotebookClient  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "docs" / "quickstart.ipynb"
REALCLIP = ROOT.parent / "shared" / "realclips" / "archery.avi"
PNG = b"\x89PNG\r\n\x1a\n"


def _text(cell) -> str:
    return "".join(o.get("text", "") + "".join(o.get("data", {}).get("text/plain", ""))
                   for o in cell.get("outputs", []))


def _images(cell) -> list[bytes]:
    return [base64.b64decode(o["data"]["image/png"]) for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]


def test_quickstart_notebook_runs_top_to_bottom(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))  # this checkout
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit the notebook without outputs"
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    nbformat.write(nb, tmp_path / "quickstart.executed.ipynb")  # to look at when this fails
    code = [c for c in nb.cells if c.cell_type == "code"]
    by_source = {key: next(c for c in code if key in c.source) for key in
                 ("actionrec.predict([CLIP]", "timeline(CLIP", "metrics = train(", "test accuracy", "export(")}
    top = _text(by_source["actionrec.predict([CLIP]"]).splitlines()
    assert len(top) == 5
    if REALCLIP.is_file():  # the real clip: I3D's top-1 is archery (0.983 in fp32, the README's figure)
        prob, label = top[0].split(None, 1)
        assert label == "archery" and float(prob) > 0.9
    assert "windows of" in _text(by_source["timeline(CLIP"])
    for key in ("timeline(CLIP", "test accuracy"):  # the timeline plot and the confusion matrix, inline
        images = _images(by_source[key])
        assert len(images) == 1 and images[0].startswith(PNG) and len(images[0]) > 5000
    work = tmp_path / "quickstart"
    metrics = json.loads((work / "run" / "metrics.json").read_text())
    assert metrics["classes"] == ["Bouncing", "Sliding", "Spinning", "Zooming"]
    assert metrics["test_accuracy"] >= 0.5  # 4 classes: chance is 0.25 (83 % when this test was written)
    assert "->" in _text(next(c for c in code if "load_model(WORK" in c.source))
    report = _text(by_source["test accuracy"])
    assert f"test accuracy {metrics['test_accuracy']:.1%}" in report and "Spinning" in report
    manifest = json.loads((work / "demo.onnx.json").read_text())
    check = manifest["verified"]
    assert check["exported_top1"] == check["reference_top1"] and check["max_abs_logit_diff"] <= check["tolerance"]
    assert manifest["classes"] == metrics["classes"]
    assert (work / "demo.onnx").stat().st_size > 1_000_000 and "verified:" in _text(by_source["export("])
