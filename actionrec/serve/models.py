"""The models the server offers: the pretrained ones named on the command line and the runs under ``--runs``, each
loaded once, on first use, and shared by every job (one copy of each in memory)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from torch import nn

from .. import load_model
from ..errors import ActionrecError
from ..models.pretrained import PRETRAINED
from .storage import NotFound

RUN_PREFIX = "run:"  # a run is chosen as "run:<folder name under --runs>"


def run_folders(runs_dir: Path) -> list[Path]:
    """The run directories directly under `runs_dir` (a config.json and a model.safetensors; symlinks left out)."""
    if not runs_dir.is_dir():
        return []
    found = []
    for entry in sorted(os.scandir(runs_dir), key=lambda e: e.name):
        if entry.is_dir(follow_symlinks=False) and not entry.name.startswith("."):
            path = Path(entry.path)
            if (path / "config.json").is_file() and (path / "model.safetensors").is_file():
                found.append(path)
    return found


def find_run(runs_dir: Path, name: str) -> Path:
    """The run called `name` under `runs_dir`, found by listing it (a name is never joined into a path)."""
    for path in run_folders(runs_dir):
        if path.name == name:
            return path
    raise NotFound(f"no run {name!r}; train one first, or pick one of the listed runs")


class Models:
    """Pretrained `names` and the runs under `runs_dir`; `preloaded` maps names to models already in memory."""

    def __init__(self, names: list[str], runs_dir: Path, preloaded: dict[str, nn.Module] | None = None):
        self.names = list(dict.fromkeys(list(preloaded or {}) + list(names)))
        self.runs_dir = runs_dir
        self._loaded: dict[str, nn.Module] = dict(preloaded or {})
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def choices(self) -> list[dict]:
        """What the page's model menu lists: pretrained names first, then the runs."""
        out = [{"name": n, "kind": "pretrained", "label": n} for n in self.names]
        out += [{"name": RUN_PREFIX + p.name, "kind": "run", "label": f"run {p.name}"} for p in run_folders(self.runs_dir)]
        return out

    def get(self, name: str) -> nn.Module:
        """The model called `name` (see :meth:`choices`), loaded on first use; one copy whatever the callers."""
        if name.startswith(RUN_PREFIX):
            source: str | Path = find_run(self.runs_dir, name[len(RUN_PREFIX) :])
        elif name in self.names:
            source = name
        else:
            known = ", ".join(c["name"] for c in self.choices())
            raise NotFound(f"unknown model {name!r}; choose one of: {known}")
        with self._lock:
            lock = self._locks.setdefault(name, threading.Lock())
        with lock:
            if name not in self._loaded:
                if isinstance(source, str) and source not in PRETRAINED:
                    raise ActionrecError(f"unknown pretrained weights {source!r}; known: {', '.join(PRETRAINED)}")
                self._loaded[name] = load_model(source)
            return self._loaded[name]

    def forget_run(self, name: str) -> None:
        """Drop a run from memory (it was trained again)."""
        self._loaded.pop(RUN_PREFIX + name, None)
