"""actionrec: recognise human actions in videos by transfer learning from pretrained 3D CNNs."""

from __future__ import annotations

import os

from torch import nn

from .errors import ActionrecError
from .data.transforms import preprocess
from .models.pretrained import PRETRAINED, fetch_weights, load_pretrained
from .apps.predict import Prediction, predict

__version__ = "0.1.0"
__all__ = ["ActionrecError", "PRETRAINED", "Prediction", "fetch_weights", "load_model", "predict", "preprocess"]


def load_model(name_or_run_dir: str | os.PathLike, device: str = "cpu") -> nn.Module:
    """A pretrained model by weights name (e.g. "i3d-kinetics400"), or a trained run directory, in eval mode.

    The model has `forward_features(x)` for x (B, 3, T, H, W) in its value range, `forward_head`,
    `reset_classifier(n)`, and carries `model.info` (a ModelInfo: name, spec, categories, ...). A name that is
    neither a run directory nor pretrained weights is refused in one line saying which it looked like."""
    from .training.runs import load_run

    name = os.fspath(name_or_run_dir)
    if os.path.isdir(name) or name not in PRETRAINED and (os.path.exists(name) or _looks_like_path(name_or_run_dir)):
        return load_run(name, device=device)  # a run directory, or one line saying what the path is instead
    if name not in PRETRAINED:
        raise ActionrecError(f"{name}: neither a run directory nor pretrained weights; give a run directory or one of: "
                             f"{', '.join(PRETRAINED)} (see `actionrec weights list`)")
    return load_pretrained(name, device=device)


def _looks_like_path(name: str | os.PathLike) -> bool:
    """A path object, or a name with a folder separator or starting with . or ~ (weights names have none)."""
    text = os.fspath(name)
    return not isinstance(name, str) or any(sep and sep in text for sep in (os.sep, os.altsep)) or text.startswith((".", "~"))
