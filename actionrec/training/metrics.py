"""Run metrics: per-class precision, recall, F1 and the confusion matrix (the trainer and `evaluate` compute them),
and reading a run's metrics.json (the report, compare and the page read it)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ActionrecError

METRICS_FILE = "metrics.json"


def is_number(x: Any) -> bool:
    """A finite real number (not a bool): what a metrics.json value must be to be shown or plotted."""
    return isinstance(x, Real) and not isinstance(x, bool) and math.isfinite(float(x))


def _as_indices(y: Any, classes: list[str], what: str) -> np.ndarray:
    """Labels given as class indices or class names -> int64 indices into `classes`."""
    arr = np.asarray(y)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.dtype.kind in "USO":
        index = {name: i for i, name in enumerate(classes)}
        try:
            return np.array([index[v] if isinstance(v, str) else int(v) for v in arr.tolist()], dtype=np.int64)
        except KeyError as e:
            raise ValueError(f"{what} contains {e.args[0]!r}, which is not one of the classes") from None
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ValueError(f"{what} must hold class indices (integers) or class names")
    elif arr.dtype.kind not in "iub":
        raise ValueError(f"{what} must hold class indices (integers) or class names, got dtype {arr.dtype}")
    idx = arr.astype(np.int64)
    bad = (idx < 0) | (idx >= len(classes))
    if bad.any():
        raise ValueError(f"{what} contains index {int(idx[bad][0])}, outside 0..{len(classes) - 1}")
    return idx


def per_class_metrics(y_true: Any, y_pred: Any, classes: Sequence[str]) -> tuple[dict[str, dict], list[list[int]]]:
    """Per-class precision, recall, F1 and support, and the confusion matrix.

    y_true / y_pred: class indices (ints) or class names, one per test item. Returns
    ({class: {"precision", "recall", "f1", "support"}}, confusion) where confusion[i][j] counts items
    of true class i predicted as class j, both in `classes` order. A ratio whose denominator is zero
    (a class never predicted, or absent from y_true) is 0.0.
    """
    classes = [str(c) for c in classes]
    if len(set(classes)) != len(classes):
        raise ValueError("class names must be unique")
    t = _as_indices(y_true, classes, "y_true")
    p = _as_indices(y_pred, classes, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} labels but y_pred has {p.size}")
    n = len(classes)
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (t, p), 1)
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    support = cm.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros(n), where=predicted > 0)
    recall = np.divide(tp, support.astype(np.float64), out=np.zeros(n), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(n), where=denom > 0)
    per_class = {
        name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]), "support": int(support[i])}
        for i, name in enumerate(classes)
    }
    return per_class, cm.tolist()


def macro_f1(per_class: Mapping[str, Mapping[str, Any]]) -> float:
    """Unweighted mean of the per-class F1 scores (0.0 for no classes)."""
    scores = [float(v.get("f1") or 0.0) for v in per_class.values()]
    return float(np.mean(scores)) if scores else 0.0


def load_metrics(run_dir: str | os.PathLike) -> dict:
    """RUN/metrics.json as a dict (run_dir may also be the metrics.json file itself)."""
    run_dir = Path(run_dir)
    path = run_dir if run_dir.is_file() else run_dir / METRICS_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ActionrecError(f"{path}: not found; run `actionrec train` first (it writes metrics.json into the run directory)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ActionrecError(f"{path}: cannot read it ({e}); run `actionrec train` first to rewrite it") from None
    try:
        metrics = json.loads(text)
    except json.JSONDecodeError as e:
        raise ActionrecError(f"{path}: broken JSON ({e.msg} at line {e.lineno}); run `actionrec train` first to rewrite it") from None
    if not isinstance(metrics, dict):
        raise ActionrecError(f"{path}: expected a JSON object, got {type(metrics).__name__}; run `actionrec train` first to rewrite it")
    return metrics
