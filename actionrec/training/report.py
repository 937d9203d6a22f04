"""The summary, the HTML report of a run and the side-by-side comparison of runs (metrics.py computes and reads the
metrics, plots.py draws the PNGs; their public names are importable from here too).

A training run writes RUN/metrics.json; everything here reads that file (or plain label arrays) and
needs only numpy and matplotlib (imported lazily, Agg backend, never a display).
"""

from __future__ import annotations

import base64
import html
import json
import os
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ActionrecError
from ..files import write_bytes, write_text
from .metrics import METRICS_FILE, is_number as _is_num, load_metrics, macro_f1, per_class_metrics
from .plots import _confusion_png, _curves_png, plot_confusion, plot_curves

__all__ = [
    "compare_table",
    "load_metrics",
    "macro_f1",
    "per_class_metrics",
    "plot_confusion",
    "plot_curves",
    "summary_text",
    "write_report",
]

_TIMING_ORDER = ("decode", "features", "head", "finetune", "temporal", "evaluate", "int8_check", "total")
_SPLIT_ORDER = ("train", "val", "test")


# ----------------------------------------------------------------------------------------------
# metrics


# ----------------------------------------------------------------------------------------------
# small helpers


def _pct(x: Any) -> str:
    return f"{100 * float(x):.1f} %" if _is_num(x) else "-"


def _dec(x: Any, digits: int = 3) -> str:
    return f"{float(x):.{digits}f}" if _is_num(x) else "-"


def _count(x: Any) -> str:
    """12300000 -> '12.3 M', 3075 -> '3,075'."""
    if not _is_num(x):
        return "-"
    x = float(x)
    if abs(x) >= 1e9:
        return f"{x / 1e9:.2f} G"
    if abs(x) >= 1e6:
        return f"{x / 1e6:.1f} M"
    return f"{int(round(x)):,}"


def _dur(seconds: Any) -> str:
    if not _is_num(seconds):
        return "-"
    s = float(seconds)
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        m, r = divmod(int(round(s)), 60)
        return f"{m} min {r:02d} s"
    h, r = divmod(int(round(s)), 3600)
    return f"{h} h {r // 60:02d} min"


def _text(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    return json.dumps(x, sort_keys=True, default=str)


def _ordered(keys: Sequence[str], preferred: Sequence[str]) -> list[str]:
    keys = list(keys)
    return [k for k in preferred if k in keys] + [k for k in keys if k not in preferred]


def _class_order(metrics: Mapping[str, Any]) -> list[str]:
    """The run's classes: `classes` first, then any extra names met in per_class / split counts."""
    names: list[str] = []
    for source in (metrics.get("classes") or [], (metrics.get("per_class") or {}).keys(),
                   ((metrics.get("splits") or {}).get("counts") or {}).keys()):
        for name in source:
            name = str(name)
            if name not in names:
                names.append(name)
    return names


def _split_totals(metrics: Mapping[str, Any]) -> dict[str, int]:
    counts = (metrics.get("splits") or {}).get("counts") or {}
    totals: dict[str, int] = {}
    for per_split in counts.values():
        if isinstance(per_split, Mapping):
            for split, n in per_split.items():
                if _is_num(n):
                    totals[split] = totals.get(split, 0) + int(n)
    return totals


# ----------------------------------------------------------------------------------------------
# loading


# ----------------------------------------------------------------------------------------------
# plots


# ----------------------------------------------------------------------------------------------
# terminal summary


def summary_text(metrics: Mapping[str, Any]) -> str:
    """A few lines for the terminal: test accuracy/loss, before/after fine-tuning, per-class F1, time per phase."""
    lines = []
    head = f"{metrics.get('run') or 'run'}: {metrics.get('backbone') or '?'} ({metrics.get('weights') or '?'})"
    lines.append(head)
    views = metrics.get("test_views")
    scored = f" ({int(views)} clips per video)" if _is_num(views) and views > 1 else ""
    lines.append(f"  test accuracy {_pct(metrics.get('test_accuracy'))}{scored}, test loss {_dec(metrics.get('test_loss'))}")
    fit = metrics.get("head_fit")
    if isinstance(fit, Mapping) and fit.get("reason"):
        lines.append(f"  {fit['reason']}")
    if _is_num(metrics.get("linear_test_accuracy")):
        lines.append(f"  temporal head {_pct(metrics.get('test_accuracy'))} vs linear head {_pct(metrics['linear_test_accuracy'])} on the same clips")
    before, after = metrics.get("head_test_accuracy"), metrics.get("test_accuracy")
    if _is_num(before):
        delta = f" ({100 * (float(after) - float(before)):+.1f} points)" if _is_num(after) else ""
        lines.append(f"  head only {_pct(before)} -> fine-tuned {_pct(after)}{delta}")
    check = metrics.get("int8_check")
    if isinstance(check, Mapping) and check.get("checked"):
        lines.append(f"  int8 checked on its {check.get('videos')} validation videos beside the float result: "
                     f"{_pct(check.get('int8_val_accuracy'))} at int8, {_pct(check.get('float_val_accuracy'))} at "
                     f"{check.get('float_precision')}")
    per_class = metrics.get("per_class") or {}
    if per_class:
        parts = [f"{name} {_dec((per_class.get(name) or {}).get('f1'), 2)}" for name in _class_order(metrics) if name in per_class]
        lines.append(f"  F1 (macro {_dec(macro_f1(per_class), 3)}): " + ", ".join(parts))
    timing = metrics.get("timing") or {}
    if timing:
        lines.append("  time: " + ", ".join(f"{k} {_dur(timing[k])}" for k in _ordered(timing.keys(), _TIMING_ORDER)))
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# comparison of runs


def compare_table(run_dirs: Sequence[str | os.PathLike], markdown: bool = False) -> str:
    """Side-by-side comparison of runs (one column per run), as aligned plain text or Markdown."""
    if isinstance(run_dirs, (str, os.PathLike)):
        run_dirs = [run_dirs]
    if not run_dirs:
        raise ActionrecError("no run directories given; pass one or more directories written by `actionrec train`")
    runs = [(str(d), load_metrics(d)) for d in run_dirs]

    classes: list[str] = []
    for _, m in runs:
        for c in _class_order(m):
            if c not in classes:
                classes.append(c)

    def model(m: Mapping[str, Any]) -> Mapping[str, Any]:
        return m.get("model") or {}

    def timing(m: Mapping[str, Any], key: str) -> str:
        return _dur((m.get("timing") or {}).get(key))

    def params(m: Mapping[str, Any]) -> str:
        return f"{_count(model(m).get('parameters'))} / {_count(model(m).get('trainable_parameters'))}"

    def f1_of(m: Mapping[str, Any], name: str) -> str:
        entry = (m.get("per_class") or {}).get(name)
        return _dec(entry.get("f1"), 3) if isinstance(entry, Mapping) else "-"

    def clips(m: Mapping[str, Any]) -> str:
        totals = _split_totals(m)
        return " / ".join(str(totals[s]) if s in totals else "-" for s in _SPLIT_ORDER)

    def gflops(m: Mapping[str, Any]) -> str:
        g = model(m).get("gflops_per_clip")
        return f"{float(g):.1f}" if _is_num(g) else "-"

    rows: list[tuple[str, list[str]]] = [
        ("backbone", [_text(m.get("backbone")) for _, m in runs]),
        ("weights", [_text(m.get("weights")) for _, m in runs]),
        ("input (CxTxHxW)", [_text(model(m).get("input")) for _, m in runs]),
        ("parameters (total / trainable)", [params(m) for _, m in runs]),
        ("GFLOPs per clip", [gflops(m) for _, m in runs]),
        ("test accuracy", [_pct(m.get("test_accuracy")) for _, m in runs]),
        ("test loss", [_dec(m.get("test_loss")) for _, m in runs]),
        ("accuracy before fine-tuning", [_pct(m.get("head_test_accuracy")) for _, m in runs]),
        ("head fit", [_text((m.get("head_fit") or {}).get("head") or "-") for _, m in runs]),
        ("head fit: why", [_text((m.get("head_fit") or {}).get("reason") or "-") for _, m in runs]),
        ("head (linear head on the same clips)", [f"{_text(m.get('head') or 'linear')}" + (
            f" ({_pct(m['linear_test_accuracy'])})" if _is_num(m.get("linear_test_accuracy")) else "") for _, m in runs]),
        ("test views", [_text(m.get("test_views", 1)) for _, m in runs]),
        ("macro F1", [_dec(macro_f1(m.get("per_class") or {})) if m.get("per_class") else "-" for _, m in runs]),
    ]
    rows += [(f"F1 {name}", [f1_of(m, name) for _, m in runs]) for name in classes]
    rows += [(f"time {k}", [timing(m, k) for _, m in runs]) for k in ("features", "head", "finetune", "temporal", "total")]
    rows.append(("clips train / val / test", [clips(m) for _, m in runs]))

    header = ["", *[name for name, _ in runs]]
    body = [[label, *values] for label, values in rows]
    if markdown:
        def cell(s: str) -> str:
            return s.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")

        out = ["| " + " | ".join(cell(c) for c in header) + " |",
               "|---|" + "---:|" * len(runs)]
        out += ["| " + " | ".join(cell(c) for c in row) + " |" for row in body]
        return "\n".join(out)
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(row: list[str]) -> str:
        return "  ".join([row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]).rstrip()

    out = [line(header), "  ".join("-" * w for w in widths)]
    out += [line(row) for row in body]
    return "\n".join(out)


# ----------------------------------------------------------------------------------------------
# HTML report

def _css() -> str:
    """The report's style sheet (actionrec/assets/report.css), inlined so the report is one self-contained file."""
    return resources.files("actionrec").joinpath("assets/report.css").read_text(encoding="utf-8")


def _e(x: Any) -> str:
    return html.escape(_text(x), quote=True)


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _kv_table(items: Mapping[str, Any]) -> str:
    if not items:
        return '<p class="muted">not recorded</p>'
    rows = []
    for k, v in items.items():
        value = f"<pre>{_e(v)}</pre>" if isinstance(v, (dict, list)) else _e(v)
        rows.append(f"<tr><th>{_e(k)}</th><td>{value}</td></tr>")
    return "<table>" + "".join(rows) + "</table>"


def _section_headline(m: Mapping[str, Any]) -> str:
    cards = [("test accuracy", _pct(m.get("test_accuracy"))), ("test loss", _dec(m.get("test_loss")))]
    before = m.get("head_test_accuracy")
    if _is_num(before):
        cards.append(("accuracy before fine-tuning", _pct(before)))
        if _is_num(m.get("test_accuracy")):
            cards.append(("gain from fine-tuning", f"{100 * (float(m['test_accuracy']) - float(before)):+.1f} pts"))
    else:
        cards.append(("accuracy before fine-tuning", "n/a (no fine-tuning)"))
    if m.get("per_class"):
        cards.append(("macro F1", _dec(macro_f1(m["per_class"]))))
    check = m.get("int8_check")
    if isinstance(check, Mapping) and check.get("checked"):
        cards.append((f"validation, int8 / {check.get('float_precision')} ({check.get('videos')} videos)",
                      f"{_pct(check.get('int8_val_accuracy'))} / {_pct(check.get('float_val_accuracy'))}"))
    if _is_num(m.get("linear_test_accuracy")):
        cards.append(("linear head on the same clips", _pct(m["linear_test_accuracy"])))
    if _is_num(m.get("test_views")):
        views = int(m["test_views"])
        cards.append(("test views", "1 central clip" if views == 1 else f"{views} clips per video, averaged"))
    best = m.get("best_epoch") or {}
    if isinstance(best, Mapping) and best:
        cards.append(("best epoch", ", ".join(f"{k} {v}" for k, v in best.items())))
    parts = [f'<div class="card"><div class="v">{html.escape(v)}</div><div class="k">{html.escape(k)}</div></div>'
             for k, v in cards]
    return '<div class="cards">' + "".join(parts) + "</div>"


def _section_int8_check(m: Mapping[str, Any]) -> str:
    """A run on int8 features: its validation videos scored at int8 beside the float precision (metrics.json's
    int8_check); nothing for float runs."""
    check = m.get("int8_check")
    if not isinstance(check, Mapping):
        return ""
    if not check.get("checked"):
        return f'<p class="muted">int8 features; not checked at the float precision: {_e(check.get("why"))}</p>'
    return (f"<p>int8 features, checked on the {_e(check.get('videos'))} validation videos beside the float result "
            f"({_e(check.get('float_precision'))}): accuracy {_pct(check.get('int8_val_accuracy'))} at int8, "
            f"{_pct(check.get('float_val_accuracy'))} at {_e(check.get('float_precision'))}; the same top-1 for "
            f"{_pct(check.get('top1_agreement'))} of them.</p>")


def _section_head_fit(m: Mapping[str, Any]) -> str:
    """How the head was fitted and why (metrics.json's head_fit); nothing for runs from before it."""
    fit = m.get("head_fit")
    if not isinstance(fit, Mapping) or not fit:
        return ""
    details = {k: v for k, v in fit.items() if k != "reason"}
    return f"<h2>Head</h2><p>{_e(fit.get('reason') or '')}</p>" + _kv_table(details)


def _section_lr_range(m: Mapping[str, Any]) -> str:
    """--lr auto: the range test's curve and its choice (nothing when the rate was given)."""
    from .lr_range import LRRange, curve_png

    r = m.get("lr_range")
    if not isinstance(r, Mapping):
        return ""
    result = LRRange.from_dict(r)
    return ("<h2>Learning rate (range test)</h2>" + f"<p>{_e(result.describe())}: the head trained for a short run "
            "with the rate growing step by step; the chosen rate is where the loss falls fastest.</p>"
            + _img(curve_png(result), "learning-rate range test"))


def _section_gallery(m: Mapping[str, Any]) -> str:
    """Every misclassified test video with frames from it (see gallery.py); nothing for runs without predictions."""
    from .gallery import gallery_section, misclassified

    preds, classes = m.get("test_predictions"), [str(c) for c in (m.get("classes") or [])]
    if not isinstance(preds, list) or not preds or not classes:  # runs from before it, or no test videos
        return ""
    try:
        misses = misclassified([p["video"] for p in preds], [classes.index(p["label"]) for p in preds],
                               np.asarray([p["probs"] for p in preds], dtype=float).reshape(len(preds), len(classes)), classes)
    except (KeyError, TypeError, ValueError) as err:
        return f'<p class="muted">error gallery: test predictions not readable ({_e(str(err)[:120])})</p>'
    return gallery_section(misses, total=len(preds))


def _section_timing(m: Mapping[str, Any]) -> str:
    timing = m.get("timing") or {}
    if not isinstance(timing, Mapping) or not timing:
        return '<p class="muted">not recorded</p>'
    total = timing.get("total")
    rows = []
    for k in _ordered(timing.keys(), _TIMING_ORDER):
        v = timing[k]
        share = f"{100 * float(v) / float(total):.0f} %" if _is_num(v) and _is_num(total) and float(total) > 0 and k != "total" else ""
        cls = ' class="total"' if k == "total" else ""
        rows.append(f"<tr{cls}><td>{_e(k)}</td><td class=\"n\">{_dec(v, 1)}</td><td class=\"n\">{_dur(v)}</td>"
                    f"<td class=\"n\">{share}</td></tr>")
    return "<table><tr><th>phase</th><th>seconds</th><th>time</th><th>share</th></tr>" + "".join(rows) + "</table>"


def _section_splits(m: Mapping[str, Any], classes: list[str]) -> str:
    splits = m.get("splits") or {}
    out = [f"<p>{_e(splits.get('policy'))}</p>" if splits.get("policy") else '<p class="muted">split policy not recorded</p>']
    counts = splits.get("counts") or {}
    if counts:
        names = []
        for per in counts.values():
            if isinstance(per, Mapping):
                names += [s for s in per if s not in names]
        names = _ordered(names, _SPLIT_ORDER)
        head = "<tr><th>class</th>" + "".join(f"<th>{_e(s)}</th>" for s in names) + "<th>all</th></tr>"
        rows = []
        for c in [c for c in classes if c in counts]:
            per = counts[c] if isinstance(counts[c], Mapping) else {}
            vals = [per.get(s) for s in names]
            total = sum(int(v) for v in vals if _is_num(v))
            rows.append(f"<tr><td>{_e(c)}</td>" + "".join(f'<td class="n">{_e(v)}</td>' for v in vals)
                        + f'<td class="n">{total}</td></tr>')
        totals = _split_totals(m)
        rows.append('<tr class="total"><td>all</td>' + "".join(f'<td class="n">{totals.get(s, 0)}</td>' for s in names)
                    + f'<td class="n">{sum(totals.values())}</td></tr>')
        out.append("<table>" + head + "".join(rows) + "</table>")
    return "".join(out)


def _section_per_class(m: Mapping[str, Any], classes: list[str]) -> str:
    per_class = m.get("per_class") or {}
    if not per_class:
        return '<p class="muted">not recorded</p>'
    rows = []
    sup_total = 0
    weighted = {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    for c in [c for c in classes if c in per_class]:
        e = per_class[c] if isinstance(per_class[c], Mapping) else {}
        sup = e.get("support")
        rows.append(f"<tr><td>{_e(c)}</td><td class=\"n\">{_dec(e.get('precision'))}</td><td class=\"n\">{_dec(e.get('recall'))}</td>"
                    f"<td class=\"n\">{_dec(e.get('f1'))}</td><td class=\"n\">{_e(sup)}</td></tr>")
        if _is_num(sup):
            sup_total += int(sup)
            for k in weighted:
                weighted[k] += float(e.get(k) or 0.0) * int(sup)
    n = len(per_class)
    macro = {k: sum(float((v or {}).get(k) or 0.0) for v in per_class.values()) / n for k in weighted}
    rows.append(f'<tr class="total"><td>macro average</td><td class="n">{_dec(macro["precision"])}</td>'
                f'<td class="n">{_dec(macro["recall"])}</td><td class="n">{_dec(macro["f1"])}</td><td class="n">{sup_total}</td></tr>')
    if sup_total:
        rows.append('<tr class="total"><td>weighted average</td>'
                    + "".join(f'<td class="n">{_dec(weighted[k] / sup_total)}</td>' for k in ("precision", "recall", "f1"))
                    + f'<td class="n">{sup_total}</td></tr>')
    head = "<tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>"
    return "<table>" + head + "".join(rows) + "</table>"


def _section_confusion_table(cm: np.ndarray, classes: list[str]) -> str:
    head = '<tr><th class="corner">true \\ predicted</th>' + "".join(f"<th>{_e(c)}</th>" for c in classes) + "</tr>"
    rows = []
    for i, c in enumerate(classes):
        total = int(cm[i].sum())
        cells = []
        for j in range(len(classes)):
            v = int(cm[i, j])
            alpha = 0.65 * v / total if total else 0.0
            cls = ' class="diag"' if i == j else ""
            style = f' style="background: rgba(40, 110, 190, {alpha:.2f})"' if v else ""
            cells.append(f"<td{cls}{style}>{v}</td>")
        rows.append(f"<tr><th>{_e(c)}</th>{''.join(cells)}</tr>")
    return '<table class="cm">' + head + "".join(rows) + "</table>"


def write_report(run_dir: str | os.PathLike) -> Path:
    """Read RUN/metrics.json, (re)write RUN/curves.png and RUN/confusion.png and one self-contained RUN/report.html."""
    run_dir = Path(run_dir)
    m = load_metrics(run_dir)
    if run_dir.is_file():
        run_dir = run_dir.parent
    mpath = run_dir / METRICS_FILE
    classes = _class_order(m)

    history = m.get("history") or []
    if not isinstance(history, list):
        raise ActionrecError(f"{mpath}: 'history' is not a list; run `actionrec train` first to rewrite it")
    best = m.get("best_epoch") if isinstance(m.get("best_epoch"), Mapping) else None
    curves = _curves_png(history, best)
    write_bytes(run_dir / "curves.png", curves)

    cm_section = '<p class="muted">not recorded</p>'
    raw_cm = m.get("confusion_matrix")
    if raw_cm is not None:
        cm_classes = [str(c) for c in (m.get("classes") or [])]
        try:
            cm = np.asarray(raw_cm, dtype=np.int64)
            if cm.shape != (len(cm_classes), len(cm_classes)):
                raise ValueError(f"shape {cm.shape} for {len(cm_classes)} classes")
        except (TypeError, ValueError) as e:
            raise ActionrecError(f"{mpath}: confusion_matrix does not match 'classes' ({e}); "
                                 "run `actionrec train` first to rewrite it") from None
        png = _confusion_png(cm.tolist(), cm_classes)
        write_bytes(run_dir / "confusion.png", png)
        cm_section = _img(png, "confusion matrix") + _section_confusion_table(cm, cm_classes)

    run_name = m.get("run") or run_dir.name
    title = f"actionrec report: {_text(run_name)}"
    model = m.get("model") or {}
    model_rows = {
        "backbone": m.get("backbone"), "weights": m.get("weights"),
        "parameters": _count(model.get("parameters")) + (f" ({int(model['parameters']):,})" if _is_num(model.get("parameters")) else ""),
        "trainable parameters": _count(model.get("trainable_parameters")),
        "input (CxTxHxW)": model.get("input"),
        "GFLOPs per clip": model.get("gflops_per_clip"),
        "classes": len(classes),
    }
    model_rows.update({k: v for k, v in model.items()
                       if k not in ("parameters", "trainable_parameters", "input", "gflops_per_clip")})

    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title>",
        f"<style>\n{_css()}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="sub">backbone <b>{_e(m.get("backbone"))}</b>, weights <b>{_e(m.get("weights"))}</b>, '
        f"{len(classes)} classes: {', '.join(_e(c) for c in classes)}</p>",
        "<h2>Test results</h2>", _section_headline(m), _section_int8_check(m),
        "<h2>Training time</h2>", _section_timing(m),
        "<h2>Data splits</h2>", _section_splits(m, classes),
        _section_head_fit(m),
        "<h2>Training curves</h2>", _img(curves, "accuracy and loss per epoch") if history else
        '<p class="muted">No epochs: the head was fitted in closed form (see Head above).</p>', _section_lr_range(m),
        "<h2>Per-class precision, recall and F1 (test set)</h2>", _section_per_class(m, classes),
        "<h2>Confusion matrix (test set; rows true, columns predicted)</h2>", cm_section, _section_gallery(m),
        "<h2>Model</h2>", _kv_table(model_rows),
        "<h2>Training options</h2>", _kv_table(m.get("config") or {}),
        "<h2>Versions</h2>", _kv_table(m.get("versions") or {}),
        f'<p class="muted">Generated by actionrec from {_e(str(mpath))}.</p>',
        "</body></html>",
    ]
    return write_text(run_dir / "report.html", "\n".join(parts) + "\n")
