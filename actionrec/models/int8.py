"""int8: an OpenVINO network quantized by NNCF's post-training quantization, from activation ranges measured once.

NNCF (the OpenVINO toolkit's quantizer) puts a FakeQuantize before every quantizable operation: the weights' ranges
come from the weights themselves, the activations' ranges from calibration data. This module keeps the two apart, so
the calibration data never has to travel with the package:

* :func:`measure_ranges` runs NNCF on real clips once and returns each activation quantizer's range (four numbers per
  quantizer, about 60 quantizers for I3D). ``tools/make_int8_ranges.py`` does it for the pretrained networks and the
  package ships the numbers (``assets/int8/<weights>.json``), not the clips; a run measures its own on its training
  clips.
* :func:`quantize` builds the int8 network on any machine from those numbers: NNCF inserts the same quantizers (the
  statistics it collects from one blank input are discarded) and each activation range is then set to the shipped
  one. Every graph of a network (logits, the cut for training, the per-step features) holds a subset of the whole
  network's quantizers, by the same names, so one file serves them all; the one exception, the per-step graph's
  spatial mean (a quantizer the whole network does not have), is left in float.

Bias correction is off: it would need the calibration data at quantization time, and on the real clips it moved the
logits further from fp32 than without it (2.1 against 1.3 of logits in the tens, I3D, measured here).
NNCF is an optional extra (``pip install "actionrec[int8]"``); :func:`available` says whether it is installed.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
from importlib import resources
from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import ActionrecError
from ..files import home_dir, write_json

RANGES_FORMAT = 1
MISSING_SHARE = 10  # a graph with over 1 in this many quantizers without a range is refused (ranges of another network)
Ranges = dict[str, list]  # quantizer name -> [input_low, input_high, output_low, output_high] (scalars or per channel)


def available() -> bool:
    """Whether NNCF is installed (the int8 path needs it; `pip install "actionrec[int8]"`)."""
    try:
        import nncf  # noqa: F401
    except Exception:  # noqa: BLE001 - a broken install is as good as none
        return False
    return True


def require() -> None:
    """Raise one line saying how to install NNCF when it is missing."""
    if not available():
        raise ActionrecError('--precision int8 needs NNCF: pip install "actionrec[int8]" (or pip install nncf)')


def _quantized(model, inputs: list[np.ndarray]):
    """NNCF's int8 model of `model` (an openvino.Model) with activation ranges from `inputs`, no bias correction."""
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters

    nncf.set_log_level(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):  # its progress bars
        return nncf.quantize(model, nncf.Dataset(inputs), subset_size=len(inputs),
                             preset=nncf.QuantizationPreset.PERFORMANCE,
                             advanced_parameters=AdvancedQuantizationParameters(disable_bias_correction=True))


def _quantizers(model) -> dict:
    """The FakeQuantize operations of an openvino.Model that quantize activations, by name."""
    return {op.get_friendly_name(): op for op in model.get_ordered_ops()
            if op.get_type_name() == "FakeQuantize" and op.input_value(0).get_node().get_type_name() != "Constant"}


def measure_ranges(model, clips: Iterable[np.ndarray]) -> Ranges:
    """Each activation quantizer's range for `model` (openvino.Model, input batch dimension 1 or dynamic), measured
    by NNCF on `clips` (each (1, 3, T, H, W) float32, preprocessed as the network expects)."""
    require()
    inputs = [np.ascontiguousarray(c, dtype=np.float32) for c in clips]
    if not inputs:
        raise ActionrecError("int8 calibration needs at least one clip")
    quantized = _quantized(model, inputs)
    return {name: [np.asarray(op.input_value(i).get_node().get_data(), np.float32).tolist() for i in range(1, 5)]
            for name, op in _quantizers(quantized).items()}


def quantize(model, ranges: Ranges, shape: tuple[int, ...]):
    """The int8 openvino.Model of `model` for inputs (B, *shape) with the activation ranges `ranges`. A graph may hold a
    quantizer the whole network does not (the per-step graph's spatial mean): without a range it is left out, and that
    operation runs in float. Refused in one line when over a tenth of the quantizers have no range (the ranges were
    measured on another network or version)."""
    require()
    from openvino import opset13 as ops

    blank = np.zeros((1, *shape), np.float32)
    quantized = _quantized(model, [blank])
    quantizers = _quantizers(quantized)
    missing = sorted(set(quantizers) - set(ranges))
    if len(missing) * MISSING_SHARE > len(quantizers):
        raise ActionrecError(f"the int8 ranges do not fit this network ({len(missing)} of {len(quantizers)} "
                             f"quantizers have none, e.g. {missing[0]!r}): measure them again for this version")
    for name in missing:  # e.g. the per-step graph's spatial mean, absent from the whole network: left in float
        op = quantizers.pop(name)
        for target in op.output(0).get_target_inputs():
            target.replace_source_output(op.input_value(0))
    for name, op in quantizers.items():
        for i, value in enumerate(ranges[name], 1):
            op.input(i).replace_source_output(ops.constant(np.array(value, dtype=np.float32)).output(0))
    return quantized


def ranges_digest(ranges: Ranges) -> str:
    """A short digest of the ranges (part of a quantized network's cache key)."""
    return hashlib.sha256(json.dumps(ranges, sort_keys=True).encode()).hexdigest()[:16]


def save_ranges(path: str | os.PathLike, ranges: Ranges, **about: str | int | float) -> None:
    """Write ranges as JSON (atomically), with what they were measured on (`about`: network, clips, versions)."""
    write_json(path, {"format": RANGES_FORMAT, **about, "ranges": ranges})


def load_ranges(path: str | os.PathLike) -> Ranges:
    """Ranges written by :func:`save_ranges`; a file of another kind is refused in one line naming it."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        ranges = doc["ranges"]
        ok = doc.get("format") == RANGES_FORMAT and all(
            isinstance(v, list) and len(v) == 4 and all(np.isfinite(np.asarray(x, np.float64)).all() for x in v)
            for v in ranges.values())
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ActionrecError(f"{path}: not int8 ranges ({type(e).__name__}): measure them again "
                             "(tools/make_int8_ranges.py for pretrained weights)") from None
    if not ok:
        raise ActionrecError(f"{path}: int8 ranges of another format or with non-finite values: measure them again")
    return {str(k): list(v) for k, v in ranges.items()}


def shipped_path(weights_name: str):
    """The activation ranges shipped with the package for weights `weights_name` (may not exist)."""
    return resources.files("actionrec") / "assets" / "int8" / f"{weights_name}.json"


def shipped_ranges_fit(weights_name: str, weights_sha256: str) -> bool:
    """Whether ranges for weights `weights_name` ship with the package, measured on these very weights."""
    path = shipped_path(weights_name)
    if not path.is_file():
        return False
    return json.loads(path.read_text(encoding="utf-8")).get("weights_sha256") == weights_sha256


def measured_path(weights_name: str) -> Path:
    """Where ranges measured on this machine for weights `weights_name` are kept: $ACTIONREC_HOME/int8/<name>.json."""
    return home_dir() / "int8" / f"{weights_name}.json"


def ranges_for(info) -> Ranges:
    """The activation ranges for a model's frozen backbone (`info`: its ModelInfo; a run's frozen part is its
    pretrained backbone): measured on this machine ($ACTIONREC_HOME/int8), else shipped with the package
    (assets/int8). Ranges measured on other weights than the model's, or none at all, are refused in one line."""
    name = info.spec.name
    for path in (measured_path(name), shipped_path(name)):
        if path.is_file():
            doc = json.loads(path.read_text(encoding="utf-8"))
            if doc.get("weights_sha256") not in (None, info.weights_sha256):
                raise ActionrecError(f"{path}: int8 ranges of other {name} weights: measure them again for yours "
                                     f"(actionrec weights calibrate {name} VIDEO...)")
            return load_ranges(path)
    raise ActionrecError(f"no int8 ranges for {name}: measure them on a few of your videos with "
                         f"`actionrec weights calibrate {name} VIDEO...` (or use --precision auto)")
