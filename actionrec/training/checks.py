"""Moved to :mod:`actionrec.checks` (one layer lower: apps and the CLI use it too); this name stays importable."""

from ..checks import MIN_FRAMES, check_predict_options, number, option_name, probability, whole

__all__ = ["MIN_FRAMES", "check_predict_options", "number", "option_name", "probability", "whole"]
