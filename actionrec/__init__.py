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
    `reset_classifier(n)`, and carries `.spec` (its WeightsSpec) and `.categories` (its output classes).
    """
    from .training.runs import is_run_dir, load_run

    if is_run_dir(name_or_run_dir):
        return load_run(name_or_run_dir, device=device)
    if os.path.isdir(name_or_run_dir):
        raise ActionrecError(f"{name_or_run_dir}: not a run directory (no config.json + model.safetensors); train one with `actionrec train`")
    return load_pretrained(str(name_or_run_dir), device=device)
