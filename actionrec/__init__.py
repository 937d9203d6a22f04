"""actionrec: recognise human actions in videos by transfer learning from pretrained 3D CNNs.

This module only re-exports the public API; none of the modules it imports imports it back. They are imported on
first use of any of their names (PEP 562), so that `import actionrec.cli` (`actionrec --help`) does not import
PyTorch."""

from __future__ import annotations

from .errors import ActionrecError
from .version import __version__

__all__ = ["ActionrecError", "Engine", "InferenceModel", "PRETRAINED", "Prediction", "__version__", "fetch_weights",
           "load_model", "load_pretrained", "predict", "preprocess"]


def _public_api() -> dict[str, object]:
    """The names of the public API that need the network's libraries (PyTorch), imported together."""
    from .apps.predict import Prediction, predict
    from .data.transforms import preprocess
    from .engine import Engine, InferenceModel, load_model
    from .models.pretrained import PRETRAINED, fetch_weights, load_pretrained

    return dict(locals())


def __getattr__(name: str) -> object:
    if name not in __all__:
        raise AttributeError(f"module 'actionrec' has no attribute {name!r}")
    api = _public_api()
    globals().update(api)  # once: from now on they are plain attributes
    return api[name]


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
