"""actionrec: recognise human actions in videos by transfer learning from pretrained 3D CNNs."""

from __future__ import annotations

import os

from torch import nn

from .errors import ActionrecError
from .data.transforms import preprocess
from .models.pretrained import PRETRAINED, fetch_weights, load_pretrained
from .apps.predict import Prediction, predict
from .engine import Engine, InferenceModel

__version__ = "0.1.0"
__all__ = ["ActionrecError", "PRETRAINED", "Prediction", "fetch_weights", "load_model", "predict", "preprocess"]


def load_model(name_or_run_dir: str | os.PathLike, device: str = "cpu", precision: str = "auto", backend: str = "auto",
               fast: bool = True) -> nn.Module:
    """A pretrained model by weights name (e.g. "i3d-kinetics400"), or a trained run directory, for inference.

    It runs on the engine's fast path (:class:`actionrec.engine.InferenceModel`): `model(x)` gives logits and
    `model.forward_features(x)` pooled features for x (B, 3, T, H, W) in its value range (I3D also `forward_steps`),
    under `precision` ("auto": bf16 where the CPU has native bf16, else fp32; "fp32"; "bf16") and `backend` ("auto",
    "openvino", "torch"); `actionrec.predict(..., model=model)` reuses its compiled network. It takes no gradients:
    `model.trainable_copy()` is an eager copy to fine-tune. `fast=False` gives the eager fp32 PyTorch network itself,
    the reference (with `forward_head`, `reset_classifier(n)`, ...). Both carry `model.info` (a ModelInfo: name, spec,
    categories, ...). A name that is neither a run directory nor pretrained weights is refused in one line saying
    which it looked like."""
    from .training.runs import load_run

    if not fast and (precision not in ("auto", "fp32") or backend not in ("auto", "torch")):
        raise ActionrecError(f"fast=False gives the eager fp32 PyTorch network; precision={precision!r} and "
                             f"backend={backend!r} are for the fast path (drop fast=False)")
    name = os.fspath(name_or_run_dir)
    if os.path.isdir(name) or name not in PRETRAINED and (os.path.exists(name) or _looks_like_path(name_or_run_dir)):
        network = load_run(name, device=device)  # a run directory, or one line saying what the path is instead
    elif name not in PRETRAINED:
        raise ActionrecError(f"{name}: neither a run directory nor pretrained weights; give a run directory or one of: "
                             f"{', '.join(PRETRAINED)} (see `actionrec weights list`)")
    else:
        network = load_pretrained(name, device=device)
    if not fast:
        return network
    return InferenceModel(Engine(network, device=device, precision=precision, backend=backend))


def _looks_like_path(name: str | os.PathLike) -> bool:
    """A path object, or a name with a folder separator or starting with . or ~ (weights names have none)."""
    text = os.fspath(name)
    return not isinstance(name, str) or any(sep and sep in text for sep in (os.sep, os.altsep)) or text.startswith((".", "~"))
