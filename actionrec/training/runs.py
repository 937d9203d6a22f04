"""Moved to :mod:`actionrec.models.runs` (a run is a model: `load_model` below training reads it); this name stays
importable."""

from ..models.runs import FORMAT_VERSION, RUN_FORMAT, is_run_dir, load_run, save_run

__all__ = ["FORMAT_VERSION", "RUN_FORMAT", "is_run_dir", "load_run", "save_run"]
