"""Per-class thresholds: which probability makes a window show a class, calibrated on a run's validation clips."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..checks import probability
from ..errors import ActionrecError

if TYPE_CHECKING:  # annotations only: importing this module (the CLI's help) imports no PyTorch
    from ..models.info import ModelInfo

DEFAULT_THRESHOLD = 0.5  # a class is named only when it holds at least half the probability mass
MIN_CALIBRATION_CLIPS = 3  # validation clips of a class needed to calibrate its threshold
CALIBRATION_RANGE = (0.2, 0.95)  # calibrated thresholds are kept in this range


def resolve_labels(requested: str | Sequence[str] | None, categories: Sequence[str]) -> tuple[str, ...]:
    """The classes to report: all of the model's, or the requested ones (checked, in the order given)."""
    if requested is None:
        return tuple(categories)
    names = [n.strip() for n in (requested.split(",") if isinstance(requested, str) else requested)]
    names = [n for n in names if n]
    if not names:
        raise ActionrecError("--labels is empty; name one or more classes, e.g. --labels 'playing tennis,skiing'")
    known = {c.lower(): c for c in categories}
    out = []
    for name in names:
        if name in categories:
            out.append(name)
        elif name.lower() in known:
            out.append(known[name.lower()])
        else:
            import difflib

            close = difflib.get_close_matches(name, list(categories), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else f"; it knows {', '.join(list(categories)[:8])}{', ...' if len(categories) > 8 else ''}"
            raise ActionrecError(f"--labels: the model has no class {name!r}{hint}")
    return tuple(dict.fromkeys(out))


def calibrate(
    probs: np.ndarray, labels: Sequence[int], classes: Sequence[str], default: float = DEFAULT_THRESHOLD
) -> tuple[dict[str, float], dict[str, str]]:
    """Per-class thresholds from the validation clips' softmax rows ``probs`` (n, K) and true class indices.

    For class c, a window is labelled c when c has the highest score among the classes at their thresholds, so the
    clips that can be labelled c are those whose top class is c: the true ones are hits, the others false alarms, and
    true clips of c with another top class are misses whatever the threshold. The threshold is the one that maximises
    F1 over the validation clips, taken in the middle of the widest interval of scores that reaches that F1 (the
    largest margin on both sides), kept within :data:`CALIBRATION_RANGE`. A class with fewer than
    :data:`MIN_CALIBRATION_CLIPS` validation clips, or none of them on top, keeps ``default``.
    Returns (thresholds, how each was chosen).
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if probs.ndim != 2 or probs.shape[1] != len(classes) or len(labels) != len(probs):
        raise ValueError(f"probs must be (n, {len(classes)}) with one label per row")
    top = probs.argmax(1) if len(probs) else np.zeros(0, np.int64)
    lo_clamp, hi_clamp = CALIBRATION_RANGE
    thresholds, how = {}, {}
    for c, name in enumerate(classes):
        positives = int((labels == c).sum())
        if positives < MIN_CALIBRATION_CLIPS:
            thresholds[name], how[name] = default, f"default (only {positives} validation clips)"
            continue
        candidates = top == c
        hits_scores = probs[candidates & (labels == c), c]
        false_scores = probs[candidates & (labels != c), c]
        if hits_scores.size == 0:
            thresholds[name], how[name] = default, "default (no validation clip of it ranked first)"
            continue
        # F1 is constant between consecutive scores: evaluate it inside each interval, join neighbouring intervals of
        # equal F1, and take the middle of the best (widest on ties).
        edges = np.unique(np.concatenate([[1.0 / len(classes)], hits_scores, false_scores, [1.0]]))
        groups: list[list[float]] = []  # [lo, hi, f1]
        for lo, hi in zip(edges[:-1], edges[1:]):
            t = (lo + hi) / 2
            tp = int((hits_scores >= t).sum())
            fp = int((false_scores >= t).sum())
            f1 = 2 * tp / (2 * tp + fp + (positives - tp)) if tp else 0.0
            if groups and math.isclose(groups[-1][2], f1):
                groups[-1][1] = hi
            else:
                groups.append([lo, hi, f1])
        lo, hi, f1 = max(groups, key=lambda g: (round(g[2], 9), g[1] - g[0]))
        best = (f1, hi - lo, (lo + hi) / 2)
        t = float(np.clip(best[2], lo_clamp, hi_clamp))
        thresholds[name] = t
        how[name] = f"calibrated on {len(probs)} validation clips (F1 {best[0]:.2f})"
    return thresholds, how


def _run_calibration(info: ModelInfo) -> tuple[np.ndarray, np.ndarray] | None:
    """The validation probabilities a run recorded in its metrics.json (``val_probs``, ``val_labels``), if any."""
    if info.run_dir is None:
        return None
    try:
        metrics = json.loads((info.run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    probs, labels = metrics.get("val_probs"), metrics.get("val_labels")
    if not probs or labels is None or len(probs) != len(labels):
        return None
    classes = list(info.categories)
    try:
        labels = [classes.index(l) if isinstance(l, str) else int(l) for l in labels]
        probs = np.asarray(probs, dtype=np.float64)
    except (ValueError, TypeError):
        return None
    if probs.ndim != 2 or probs.shape[1] != len(classes):
        return None
    return probs, np.asarray(labels, np.int64)


def thresholds_for(
    info: ModelInfo | None, labels: Sequence[str], threshold: float | None = None, *,
    stored: Mapping[str, float] | None = None, stored_source: str = "", option: str = "--threshold",
    chosen_by: str | None = None,
) -> tuple[dict[str, float], str]:
    """The threshold of each reported class and one line saying where they come from: the one threshold function of
    the CLI, the page and Python.

    ``threshold`` (the user's, checked once: a probability; ``option`` names it in the error, ``chosen_by`` in the
    line, default the option) applies to every class; else ``stored`` (the thresholds a result was made with, and
    ``stored_source``, e.g. the page's analysed job), else the run's calibration (see :func:`calibrate`), else
    :data:`DEFAULT_THRESHOLD`.
    """
    if threshold is not None:
        value = probability(threshold, option)
        return {l: value for l in labels}, f"{value:g} for every class ({chosen_by or option})"
    if stored is not None:
        return {l: float(stored[l]) for l in labels}, stored_source
    if info is None:
        return {l: DEFAULT_THRESHOLD for l in labels}, f"default {DEFAULT_THRESHOLD:g}"
    recorded = _run_calibration(info)
    if recorded is not None:
        per_class, how = calibrate(recorded[0], recorded[1], info.categories)
        calibrated = sum(1 for l in labels if how[l].startswith("calibrated"))
        source = f"calibrated on the run's {len(recorded[1])} validation clips ({calibrated} of {len(labels)} classes)"
        return {l: per_class[l] for l in labels}, source
    note = "the run recorded no validation probabilities" if info.run is not None else "no validation set"
    return {l: DEFAULT_THRESHOLD for l in labels}, f"default {DEFAULT_THRESHOLD:g} ({note})"
