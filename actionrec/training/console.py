"""Moved to :mod:`actionrec.console` (one layer lower: apps and the CLI use it too); this name stays importable."""

from ..console import Skipped, progress_bar, progress_callback, stderr_line

__all__ = ["Skipped", "progress_bar", "progress_callback", "stderr_line"]
