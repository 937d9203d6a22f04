"""Metrics, plots, the HTML report and the run comparison, all from fake metrics.json files (fast, no model)."""

from __future__ import annotations

import html
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from actionrec.errors import ActionrecError
from actionrec.training.report import (
    compare_table,
    macro_f1,
    per_class_metrics,
    plot_confusion,
    plot_curves,
    summary_text,
    write_report,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def fake_metrics(classes=("BabyCrawling", "IceDancing", "SkateBoarding"), acc=0.97, head_acc=0.95, backbone="i3d",
                 weights="i3d-kinetics400", run="runs/demo") -> dict:
    n = len(classes)
    history = []
    for e in range(1, 21):
        history.append({"epoch": e, "phase": "head", "train_loss": 1.0 / e, "train_acc": 0.5 + e / 50, "val_loss": 1.1 / e,
                        "val_acc": 0.45 + e / 50, "lr": 0.1})
    for e in range(21, 26):
        history.append({"epoch": e, "phase": "finetune", "train_loss": 0.04, "train_acc": 0.99, "val_loss": 0.06,
                        "val_acc": 0.96 if e != 24 else 0.97, "lr": 0.001})
    cm = (np.eye(n, dtype=int) * 10 + np.roll(np.eye(n, dtype=int), 1, axis=1)).tolist()
    per_class = {c: {"precision": 0.9, "recall": 0.9 - 0.1 * i, "f1": round(0.9 - 0.05 * i, 4), "support": 11} for i, c in enumerate(classes)}
    return {
        "run": run, "backbone": backbone, "weights": weights, "classes": list(classes),
        "history": history, "best_epoch": {"head": 20, "finetune": 24},
        "test_loss": 0.123, "test_accuracy": acc, "head_test_accuracy": head_acc,
        "per_class": per_class, "confusion_matrix": cm,
        "splits": {"policy": "test: official UCF101 split 1; val: 20 % of train, grouped by actor",
                   "counts": {c: {"train": 80, "val": 20, "test": 11} for c in classes}},
        "timing": {"decode": 10.2, "features": 55.1, "head": 1.3, "finetune": 20.0, "evaluate": 0.4, "total": 90.0},
        "model": {"parameters": 12300000, "trainable_parameters": 3075, "input": "3x16x224x224", "gflops_per_clip": 27.9},
        "config": {"epochs": 20, "lr": 0.1, "augment": ["flip", "crop"]},
        "versions": {"actionrec": "0.1.0", "torch": "2.3.0"},
    }


def make_run(tmp_path: Path, name: str, **kw) -> Path:
    run = tmp_path / name
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps(fake_metrics(**kw)))
    return run


# ---------------------------------------------------------------------------------------------- metrics


def test_per_class_metrics_hand_computed():
    classes = ["a", "b", "c"]
    y_true = [0, 0, 0, 1, 1, 2]
    y_pred = [0, 0, 1, 1, 0, 2]
    per, cm = per_class_metrics(y_true, y_pred, classes)
    assert cm == [[2, 1, 0], [1, 1, 0], [0, 0, 1]]
    assert all(isinstance(v, int) for row in cm for v in row)
    # a: tp 2, predicted 3, support 3
    assert per["a"]["precision"] == pytest.approx(2 / 3)
    assert per["a"]["recall"] == pytest.approx(2 / 3)
    assert per["a"]["f1"] == pytest.approx(2 / 3)
    # b: tp 1, predicted 2, support 2
    assert per["b"]["precision"] == pytest.approx(0.5)
    assert per["b"]["recall"] == pytest.approx(0.5)
    assert per["c"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
    assert [per[c]["support"] for c in classes] == [3, 2, 1]
    assert list(per) == classes
    assert macro_f1(per) == pytest.approx((2 / 3 + 0.5 + 1.0) / 3)


def test_per_class_metrics_class_never_predicted_and_absent():
    classes = ["a", "b", "c", "d"]
    y_true = np.array([0, 1, 1, 2])  # d never occurs
    y_pred = np.array([0, 0, 0, 2])  # b never predicted
    per, cm = per_class_metrics(y_true, y_pred, classes)
    assert per["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    assert per["d"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert per["a"]["precision"] == pytest.approx(1 / 3)
    assert per["a"]["recall"] == 1.0
    assert per["a"]["f1"] == pytest.approx(0.5)
    assert cm[1] == [2, 0, 0, 0]
    assert sum(map(sum, cm)) == 4


def test_per_class_metrics_names_and_errors():
    per, cm = per_class_metrics(["x", "y", "y"], ["x", "x", "y"], ["x", "y"])
    assert cm == [[1, 0], [1, 1]]
    assert per["x"]["precision"] == 0.5
    empty, cm0 = per_class_metrics([], [], ["x", "y"])
    assert cm0 == [[0, 0], [0, 0]] and empty["x"]["f1"] == 0.0
    with pytest.raises(ValueError):
        per_class_metrics([0, 1], [0], ["x", "y"])
    with pytest.raises(ValueError):
        per_class_metrics([0, 2], [0, 1], ["x", "y"])
    with pytest.raises(ValueError):
        per_class_metrics(["x", "z"], ["x", "y"], ["x", "y"])
    assert macro_f1({}) == 0.0


# ---------------------------------------------------------------------------------------------- plots


def test_plots_are_png(tmp_path):
    m = fake_metrics()
    curves = plot_curves(m["history"], tmp_path / "c.png", best_epoch=m["best_epoch"])
    conf = plot_confusion(m["confusion_matrix"], m["classes"], tmp_path / "m.png")
    for p in (curves, conf):
        data = p.read_bytes()
        assert data[:8] == PNG_MAGIC
        assert len(data) < 200_000
    # 20 classes with long names, empty history: still fine
    names = [f"SomeRatherLongActionName{i:02d}" for i in range(20)]
    cm = np.random.default_rng(0).integers(0, 30, size=(20, 20)).tolist()
    big = plot_confusion(cm, names, tmp_path / "big.png").read_bytes()
    assert big[:8] == PNG_MAGIC and len(big) < 200_000
    assert plot_curves([], tmp_path / "none.png").read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(ValueError):
        plot_confusion([[1, 2]], ["a", "b"], tmp_path / "bad.png")


# ---------------------------------------------------------------------------------------------- report


def test_write_report_self_contained(tmp_path):
    run = make_run(tmp_path, "run1", classes=("BabyCrawling", "IceDancing", "<script>"), acc=0.9734)
    out = write_report(run)
    assert out == run / "report.html"
    text = out.read_text(encoding="utf-8")
    assert "data:image/png;base64," in text
    assert text.count("data:image/png;base64,") == 2
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:|//)""", text, re.I)
    assert "<link" not in text.lower()
    assert "BabyCrawling" in text and "IceDancing" in text
    assert "&lt;script&gt;" in text
    assert "<script>" not in text.lower()
    assert "97.3 %" in text  # test accuracy
    assert "95.0 %" in text  # before fine-tuning
    assert "official UCF101 split 1" in text
    for name in ("curves.png", "confusion.png"):
        data = (run / name).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) < 200_000
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # not the 0600 of a bare temp file
    # rewriting works (atomic replace of existing files)
    assert write_report(run).read_text(encoding="utf-8") == text


def test_write_report_tolerates_missing_sections(tmp_path):
    run = tmp_path / "bare"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps({"classes": ["a", "b"], "test_accuracy": 0.5, "head_test_accuracy": None,
                                                  "history": [{"epoch": 1, "phase": "head", "train_acc": 0.5}]}))
    text = write_report(run).read_text(encoding="utf-8")
    assert "50.0 %" in text and "no fine-tuning" in text


def test_missing_or_broken_metrics(tmp_path):
    run = tmp_path / "nothing"
    run.mkdir()
    with pytest.raises(ActionrecError, match=re.escape(str(run / "metrics.json"))) as err:
        write_report(run)
    assert "actionrec train" in str(err.value)
    (run / "metrics.json").write_text("{not json")
    with pytest.raises(ActionrecError, match="actionrec train") as err:
        write_report(run)
    assert str(run / "metrics.json") in str(err.value)
    good = make_run(tmp_path, "good")
    with pytest.raises(ActionrecError, match=re.escape(str(tmp_path / "absent" / "metrics.json"))):
        compare_table([good, tmp_path / "absent"])


# ---------------------------------------------------------------------------------------------- text


def test_summary_text():
    s = summary_text(fake_metrics())
    assert "97.0 %" in s and "95.0 %" in s and "0.123" in s
    assert "BabyCrawling 0.90" in s
    assert "features 55.1 s" in s and "total 1 min 30 s" in s
    assert len(s.splitlines()) <= 6


def test_compare_table(tmp_path):
    a = make_run(tmp_path, "i3d", acc=0.9712)
    b = make_run(tmp_path, "c3d", classes=("BabyCrawling", "IceDancing", "Surfing"), acc=0.8846, head_acc=None,
                 backbone="c3d", weights="c3d-sports1m")
    for markdown in (False, True):
        t = compare_table([a, b], markdown=markdown)
        assert "97.1 %" in t and "88.5 %" in t
        for c in ("BabyCrawling", "IceDancing", "SkateBoarding", "Surfing"):
            assert c in t
        assert str(a) in t and str(b) in t
        assert "c3d-sports1m" in t and "i3d-kinetics400" in t
        assert "12.3 M / 3,075" in t
        assert "240 / 60 / 33" in t
    plain = compare_table([a, b]).splitlines()
    views = next(line for line in plain if line.startswith("test views"))
    assert views.split()[2:] == ["1", "1"]  # runs recorded before test views: one central clip
    surf = next(line for line in plain if line.startswith("F1 Surfing"))
    assert surf.split()[2] == "-"  # the i3d run has no Surfing class
    assert len({len(line) for line in plain[:2]}) == 1  # header and rule aligned
    md = compare_table([a, b], markdown=True).splitlines()
    assert md[1].startswith("|---|") and all(line.startswith("|") and line.endswith("|") for line in md)


def test_the_report_inlines_the_packaged_style_sheet(tmp_path):
    from importlib import resources

    css = resources.files("actionrec").joinpath("assets/report.css").read_text(encoding="utf-8")
    assert "font-family" in css and "table.cm td.diag" in css
    text = write_report(make_run(tmp_path, "styled")).read_text(encoding="utf-8")
    assert f"<style>\n{css}</style>" in text


def test_a_few_shot_run_says_which_head_fit_and_why(tmp_path):
    reason = "logistic head: 2 video(s) or source(s) per class (<= 10), 3 clip(s) per video, penalty 1e-05"
    few = {**fake_metrics(head_acc=None), "history": [], "best_epoch": {},
           "head_fit": {"head": "logistic", "penalty": 1e-05, "chosen_by": "cross-validation over 8 groups in 8 folds",
                        "cv_log_loss": 0.97, "reason": reason}}
    run = tmp_path / "few"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps(few))
    page = write_report(run).read_text(encoding="utf-8")
    assert "<h2>Head</h2>" in page and html.escape(reason) in page and "cross-validation over 8 groups" in page
    assert "No epochs: the head was fitted in closed form" in page
    assert page.count("data:image/png;base64,") == 1  # the confusion matrix; no curves without epochs
    assert reason in summary_text(few).splitlines()[2]
    table = compare_table([make_run(tmp_path, "old"), run])  # a run from before head_fit: "-"
    rows = {line.split("  ")[0]: line for line in table.splitlines()}
    assert rows["head fit"].split()[2:] == ["-", "logistic"] and reason in rows["head fit: why"]
