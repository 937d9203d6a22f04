"""What the caches hold, and pruning them: by age, or the feature recipes that no run uses.

The feature cache (``$ACTIONREC_HOME/features``) holds one folder per recipe (weights, cut endpoint, sampling,
preprocessing; see features.py), and each run records its recipe in ``metrics.json`` (``feature_cache.recipe``).
The timeline cache (``$ACTIONREC_HOME/timelines``) holds one ``.npz`` per video and model. A feature entry's time is
the last time it was used (a hit touches it); a timeline entry's, when it was written. Only files of the caches'
own kinds are removed, never anything else that may lie in those folders.

The compiled networks (``$ACTIONREC_HOME/compiled``, :mod:`actionrec.models.compiled`) are one folder per exported IR
(``ir/<key>/model.xml`` + ``.bin``; its time is the last time a process compiled it: each use touches model.xml) and
one card per pretrained network and settings (``cards/<key>.json``; touched when read). An IR is removed whole; a card
whose IR is gone is ignored, and the next run exports and records again.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ActionrecError
from .features import ENTRY_SUFFIX

CACHE_FILES = (ENTRY_SUFFIX, ".npz", ".npy")  # the kinds of file the caches write (.npy: feature entries before version 2)
_DAY = 86400.0


@dataclass
class Usage:
    """Files and bytes."""

    files: int = 0
    bytes: int = 0

    def add(self, path: Path) -> None:
        self.files += 1
        self.bytes += path.stat().st_size

    def __str__(self) -> str:
        return f"{self.files} file{'s' if self.files != 1 else ''}, {human_bytes(self.bytes)}"


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def cache_files(root: Path) -> Iterator[Path]:
    """The entries under `root` (files of the caches' kinds; temporary files of a killed writer included)."""
    if root.is_dir():
        for path in root.rglob("*"):
            if path.is_file() and (path.suffix in CACHE_FILES or path.name.endswith(".tmp")):
                yield path


def usage(root: Path) -> Usage:
    total = Usage()
    for path in cache_files(root):
        total.add(path)
    return total


def _remove(paths: Iterable[Path]) -> Usage:
    removed = Usage()
    for path in paths:
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as err:
            raise ActionrecError(f"{path}: cannot be removed ({err.strerror}); check the cache folder's permissions") from None
        removed.files += 1
        removed.bytes += size
    return removed


def _remove_empty_dirs(root: Path) -> None:
    if not root.is_dir():
        return
    for folder in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        try:
            folder.rmdir()
        except OSError:
            pass  # not empty


def prune_older(root: Path, days: float, now: float | None = None) -> Usage:
    """Remove the entries under `root` not used (features) or written (timelines) for `days` days."""
    if not days >= 0:
        raise ActionrecError(f"--older-than must be a number of days >= 0, not {days!r}")
    cutoff = (time.time() if now is None else now) - days * _DAY
    removed = _remove(p for p in cache_files(root) if p.stat().st_mtime < cutoff)
    _remove_empty_dirs(root)
    return removed


def compiled_entries(root: Path) -> Iterator[tuple[float, list[Path]]]:
    """(time of last use, files) of each entry of the compiled networks under `root`: an IR folder (a killed
    writer's temporary folder included) or a card."""
    ir, cards = root / "ir", root / "cards"
    for folder in sorted(ir.iterdir()) if ir.is_dir() else []:
        files = [p for p in folder.iterdir() if p.is_file()] if folder.is_dir() else []
        if files:
            xml = folder / "model.xml"
            yield (xml.stat().st_mtime if xml.is_file() else max(p.stat().st_mtime for p in files)), files
    for card in sorted(cards.glob("*.json")) if cards.is_dir() else []:
        yield card.stat().st_mtime, [card]


def compiled_usage(root: Path) -> Usage:
    total = Usage()
    for _, files in compiled_entries(root):
        for path in files:
            total.add(path)
    return total


def prune_compiled(root: Path, days: float, now: float | None = None) -> Usage:
    """Remove the compiled networks' entries under `root` (whole IR folders, cards) not used for `days` days."""
    if not days >= 0:
        raise ActionrecError(f"--older-than must be a number of days >= 0, not {days!r}")
    cutoff = (time.time() if now is None else now) - days * _DAY
    old = [files for when, files in compiled_entries(root) if when < cutoff]
    removed = _remove(path for files in old for path in files)
    _remove_empty_dirs(root)
    return removed


def recipes_in_use(runs: Sequence[str | os.PathLike]) -> set[str]:
    """The feature recipes of every run under the `runs` folders (any depth), read from their metrics.json."""
    used, found = set(), 0
    for folder in map(Path, runs):
        if not folder.is_dir():
            raise ActionrecError(f"--runs {folder}: no such folder; give the folder that holds your run directories")
        for metrics in [folder / "metrics.json", *folder.rglob("*/metrics.json")]:
            try:
                recipe = json.loads(metrics.read_text())["feature_cache"]["recipe"]
            except (OSError, ValueError, KeyError, TypeError):
                continue
            found += 1
            used.add(str(recipe))
    if not found:
        raise ActionrecError(f"no runs found under {', '.join(map(str, runs))}: --unused would remove every feature "
                             "recipe; give the folder that holds your run directories with --runs")
    return used


def prune_unused(features_root: Path, runs: Sequence[str | os.PathLike]) -> Usage:
    """Remove the feature recipes (folders of the feature cache) that no run under `runs` uses."""
    used = recipes_in_use(runs)
    folders = [p for p in features_root.iterdir() if p.is_dir() and p.name not in used] if features_root.is_dir() else []
    removed = _remove(path for folder in folders for path in cache_files(folder))
    _remove_empty_dirs(features_root)
    return removed
