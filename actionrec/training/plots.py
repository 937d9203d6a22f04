"""The run's plots as PNG bytes or files: learning curves and the confusion matrix (matplotlib, imported lazily, Agg
canvas, never a display)."""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..files import write_bytes
from .metrics import is_number as _is_num


def _new_figure(figsize: tuple[float, float]):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png_bytes(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    raw = buf.getvalue()
    try:  # a 256-colour palette keeps plots (few colours) visually identical at a third of the size
        from PIL import Image

        with Image.open(io.BytesIO(raw)) as im:
            no_dither = getattr(getattr(Image, "Dither", Image), "NONE", 0)
            pal = im.convert("RGB").quantize(colors=256, dither=no_dither)
            out = io.BytesIO()
            pal.save(out, format="PNG", optimize=True)
        small = out.getvalue()
        return small if len(small) < len(raw) else raw
    except Exception:  # Pillow missing or failing: the matplotlib PNG is still valid, only larger
        return raw


def _val(entry: Mapping[str, Any], key: str, scale: float = 1.0) -> float:
    v = entry.get(key)
    return float(v) * scale if _is_num(v) else float("nan")


def _curves_png(history: Sequence[Mapping[str, Any]], best_epoch: Mapping[str, Any] | None = None) -> bytes:
    history = [h for h in history if isinstance(h, Mapping)]
    fig = _new_figure((10, 4))
    ax_acc, ax_loss = fig.subplots(1, 2)
    if not history:
        for ax in (ax_acc, ax_loss):
            ax.text(0.5, 0.5, "no training history recorded", ha="center", va="center", transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
        return _png_bytes(fig)

    epochs = [h.get("epoch") for h in history]
    if all(_is_num(e) for e in epochs) and all(b > a for a, b in zip(epochs, epochs[1:])):
        xs = [float(e) for e in epochs]
    else:  # e.g. epochs numbered from 1 again in each phase: plot them one after another
        xs = [float(i + 1) for i in range(len(history))]
    phases = [str(h.get("phase") or "") for h in history]

    if best_epoch is None:  # not given: the epoch of best val accuracy (lowest val loss on ties) per phase
        best_epoch = {}
        for phase in dict.fromkeys(phases):
            rows = [h for h in history if str(h.get("phase") or "") == phase and _is_num(h.get("val_acc"))]
            if rows:
                best = max(rows, key=lambda h: (h["val_acc"], -_val(h, "val_loss") if _is_num(h.get("val_loss")) else 0.0))
                best_epoch[phase] = best.get("epoch")

    panels = ((ax_acc, "acc", 100.0, "accuracy (%)"), (ax_loss, "loss", 1.0, "loss"))
    for ax, key, scale, ylabel in panels:
        ax.plot(xs, [_val(h, f"train_{key}", scale) for h in history], "-", color="C0", label="train", linewidth=1.6)
        ax.plot(xs, [_val(h, f"val_{key}", scale) for h in history], "--", color="C1", label="val", linewidth=1.6)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.set_title(ylabel.split(" ")[0])
        ax.grid(True, alpha=0.3)

    # where fine-tuning starts: the first change of phase (normally head -> finetune)
    start = next((i for i in range(1, len(phases)) if phases[i] != phases[i - 1]), None)
    if start is not None:
        x0 = (xs[start - 1] + xs[start]) / 2
        for ax, *_ in panels:
            ax.axvline(x0, color="0.35", linestyle=":", linewidth=1.2, label="fine-tuning starts" if phases[start] == "finetune" else f"{phases[start] or 'next phase'} starts")
            ax.axvspan(x0, xs[-1] + 0.5, color="0.5", alpha=0.07, linewidth=0)

    markers = ("*", "D", "o", "s")
    for k, (phase, ep) in enumerate((best_epoch or {}).items()):
        idx = [i for i, h in enumerate(history) if h.get("epoch") == ep and phases[i] == str(phase)]
        idx = idx or [i for i, h in enumerate(history) if h.get("epoch") == ep]
        if not idx:
            continue
        i = idx[0]
        for ax, key, scale, _ in panels:
            y = _val(history[i], f"val_{key}", scale)
            if math.isfinite(y):
                ax.plot([xs[i]], [y], linestyle="none", marker=markers[k % len(markers)], markersize=11 if k == 0 else 8,
                        color="C3", markeredgecolor="black", markeredgewidth=0.6, zorder=5,
                        label=f"best {phase} (epoch {ep})")
    for ax, *_ in panels:
        ax.legend(fontsize=8, loc="best")
    return _png_bytes(fig)


def plot_curves(history: Sequence[Mapping[str, Any]], path: str | os.PathLike,
                best_epoch: Mapping[str, Any] | None = None) -> Path:
    """PNG of accuracy and loss per epoch (train solid, val dashed), a dotted line where fine-tuning starts
    and the best epoch of each phase marked (from `best_epoch`, else the best val accuracy per phase)."""
    path = Path(path)
    write_bytes(path, _curves_png(history, best_epoch))
    return path


def _short(label: str, limit: int = 22) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "\u2026"


def _confusion_png(cm: Sequence[Sequence[Any]], classes: Sequence[str]) -> bytes:
    m = np.asarray(cm, dtype=np.int64) if len(cm) else np.zeros((0, 0), dtype=np.int64)
    n = len(classes)
    if m.shape != (n, n):
        raise ValueError(f"confusion matrix has shape {m.shape} but there are {n} classes")
    labels = [_short(str(c)) for c in classes]
    longest = max((len(s) for s in labels), default=0)
    side = float(np.clip(2.2 + 0.36 * n + 0.06 * longest, 4.0, 9.0))
    fig = _new_figure((side + 1.2, side))
    ax = fig.subplots()
    if n == 0:
        ax.text(0.5, 0.5, "no classes", ha="center", va="center", transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_yticks([])
        return _png_bytes(fig)
    vmax = max(int(m.max()), 1)
    im = ax.imshow(m, cmap="Blues", vmin=0, vmax=vmax, interpolation="nearest", aspect="equal")
    cell_font = float(np.clip(150 / n, 5, 12))
    if m.max() >= 1000:
        cell_font = max(5.0, cell_font * 0.8)
    for i in range(n):
        for j in range(n):
            v = int(m[i, j])
            color = "white" if v > 0.55 * vmax else ("0.6" if v == 0 else "black")
            ax.text(j, i, str(v), ha="center", va="center", fontsize=cell_font, color=color)
    tick_font = float(np.clip(170 / max(n, 1), 6, 10))
    rotate = n > 4 or longest > 8
    ax.set_xticks(range(n))
    ax.set_xticklabels(labels, fontsize=tick_font, rotation=45 if rotate else 0, ha="right" if rotate else "center",
                       rotation_mode="anchor")
    ax.set_yticks(range(n))
    ax.set_yticklabels(labels, fontsize=tick_font)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix (test set)")
    ax.tick_params(length=0)
    cb = fig.colorbar(im, ax=ax, shrink=0.8)
    cb.set_label("videos")
    return _png_bytes(fig)


def plot_confusion(cm: Sequence[Sequence[Any]], classes: Sequence[str], path: str | os.PathLike) -> Path:
    """PNG heat map of the confusion matrix (rows true, columns predicted) with the counts in the cells."""
    path = Path(path)
    write_bytes(path, _confusion_png(cm, classes))
    return path
