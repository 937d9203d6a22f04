"""actionrec: recognise human actions in videos by transfer learning from pretrained 3D CNNs.

This module only re-exports the public API; none of the modules it imports imports it back."""

from __future__ import annotations

from .apps.predict import Prediction, predict
from .data.transforms import preprocess
from .engine import Engine, InferenceModel, load_model
from .errors import ActionrecError
from .models.pretrained import PRETRAINED, fetch_weights, load_pretrained
from .version import __version__

__all__ = ["ActionrecError", "Engine", "InferenceModel", "PRETRAINED", "Prediction", "__version__", "fetch_weights",
           "load_model", "load_pretrained", "predict", "preprocess"]
