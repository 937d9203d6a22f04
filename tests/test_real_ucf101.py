"""The study's workload on real footage: train on ../shared/ucf101_subset (391 real UCF101 clips of 3 classes,
official split 1) with the defaults, through the CLI, and check the run against what was measured."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from actionrec.cli import main

SUBSET = Path(__file__).resolve().parents[2] / "shared" / "ucf101_subset"
MEASURED = 0.991  # test accuracy of the defaults on split 1 (README: the real study workload; 2 test views)


def test_defaults_on_real_ucf101_split1(tmp_path, i3d_kinetics, capsys):
    if not SUBSET.is_dir():
        pytest.skip(f"{SUBSET} is absent: this test needs the project's shared/ folder beside the checkout")
    out = tmp_path / "run"
    assert main(["train", str(SUBSET), "--split", "1", "--out", str(out), "--cache", str(tmp_path / "cache"), "--quiet"]) == 0
    capsys.readouterr()
    metrics = json.loads((out / "metrics.json").read_text())
    assert sorted(metrics["classes"]) == ["ApplyEyeMakeup", "ApplyLipstick", "BabyCrawling"]  # the listed classes on disk
    assert metrics["splits"]["clips"]["test"] > 100 and not metrics["skipped"]
    assert metrics["test_accuracy"] >= MEASURED - 0.02, metrics["test_accuracy"]
    assert metrics["test_accuracy"] >= metrics["head_test_accuracy"]  # fine-tuning no worse than the head alone
    assert metrics["test_views"] == 2 and len(metrics["test_predictions"]) == sum(c["test"] for c in metrics["splits"]["counts"].values())
    assert "Misclassified test videos" in (out / "report.html").read_text()
    for name in ("model.safetensors", "config.json", "report.html", "curves.png", "confusion.png"):
        assert (out / name).is_file(), name
