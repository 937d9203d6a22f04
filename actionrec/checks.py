"""Checks of option values where they enter the library (one layer above models: a clip is at least one of I3D's time
steps), shared by the CLI and the Python API (and any later API).

Each check raises one ActionrecError line naming the option as the command line spells it, the value and what is
allowed, so `--batch-size 0`, `batch_size=0` and a future request field all get the same answer.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

from .errors import ActionrecError
from .defaults import STEP_FRAMES

MIN_FRAMES = STEP_FRAMES  # I3D downsamples time by 8: fewer frames do not make a clip


def option_name(field: str) -> str:
    """`batch_size` -> `--batch-size`."""
    return "--" + field.replace("_", "-")


def whole(value: object, option: str, minimum: int) -> int:
    """`value` as a whole number >= `minimum`."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ActionrecError(f"{option} must be a whole number >= {minimum}, not {value!r}")
    return int(value)


def number(value: object, option: str, low: float = -math.inf, high: float = math.inf,
           low_open: bool = False, high_open: bool = False) -> float:
    """`value` as a finite number between `low` and `high` (each excluded when open)."""
    ok = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        raise ActionrecError(f"{option} must be {_range(low, high, low_open, high_open)}, not {value!r}")
    return float(value)


def _range(low: float, high: float, low_open: bool, high_open: bool) -> str:
    if high == math.inf:
        return f"a number {'>' if low_open else '>='} {low:g}" if low > -math.inf else "a finite number"
    return f"a number from {low:g} ({'excluded' if low_open else 'included'}) to {high:g} ({'excluded' if high_open else 'included'})"


def check_predict_options(frames: int | None = None, test_views: int | None = None, batch_size: int = 1, top: int = 1) -> None:
    """The options of `predict`: frames per clip and test views per video (None: the model's), clips per forward pass,
    classes shown."""
    if frames is not None:
        whole(frames, "--frames", MIN_FRAMES)
    if test_views is not None:
        whole(test_views, "--test-views", 1)
    whole(batch_size, "--batch-size", 1)
    whole(top, "--top", 1)


def probability(value: object, option: str = "--threshold") -> float:
    """`value` as a probability from 0 to 1 (a threshold): the one 0-1 check of the CLI, the Python API and the page."""
    ok = isinstance(value, Real) and not isinstance(value, bool) and 0.0 <= value <= 1.0
    if not ok:
        raise ActionrecError(f"{option} must be a probability between 0 and 1, not {value!r}")
    return float(value)
