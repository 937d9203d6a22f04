"""The Label view's datasets: folders directly under ``--data-root`` holding a ``labels.csv`` (the segment manifest
``actionrec train FOLDER/labels.csv`` trains from, edited through :class:`~actionrec.data.labels.LabelStore`).

A dataset's videos are the videos inside its folder (uploads go to ``FOLDER/videos/``), the videos picked from
elsewhere under the data root (listed in ``FOLDER/videos.json``), and those its labels name. Each training round's
validation figures are kept in ``FOLDER/rounds.jsonl``, one JSON object a line, so the page shows the model improve.
Every path a request names is resolved through :class:`~.storage.DataRoot` (inside the root, no symbolic links).
"""

from __future__ import annotations

import json
import math
import os
import posixpath
import re
import shutil
import threading
import time
from pathlib import Path

from ..data.labels import LABELS_FILE, LabelStore
from ..errors import ActionrecError
from ..files import write_json, write_text
from .storage import DataRoot, NotFound, Refused, is_video_name, safe_name

DATASET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
VIDEOS_DIR = "videos"  # where a dataset's uploads are kept, inside its folder
PICKED_FILE = "videos.json"  # videos picked from elsewhere under the data root
ROUNDS_FILE = "rounds.jsonl"
MAX_VIDEOS = 1000  # videos listed of one dataset


class Exists(ActionrecError):
    """Something with that name exists already (HTTP 409)."""


class Datasets:
    """The datasets under the data root `data` (see the module doc)."""

    def __init__(self, data: DataRoot):
        self.data = data
        self._lock = threading.Lock()  # the small side files (videos.json, rounds.jsonl) are rewritten whole

    # ------------------------------------------------------------------------------------------ datasets

    def names(self) -> list[str]:
        """The datasets: folders directly under the root (no links, none hidden) that hold a labels.csv."""
        if self.data.root is None:
            return []
        return sorted(e.name for e in os.scandir(self.data.root) if e.is_dir(follow_symlinks=False)
                      and not e.name.startswith(".") and DATASET_NAME.fullmatch(e.name)
                      and os.path.isfile(os.path.join(e.path, LABELS_FILE)) and not os.path.islink(os.path.join(e.path, LABELS_FILE)))

    def folder(self, name: str) -> Path:
        """The folder of dataset `name`; NotFound when there is none."""
        self._check_name(name)
        path = self.data.resolve(name)
        label_file = path / LABELS_FILE
        if not label_file.is_file() or label_file.is_symlink():
            raise NotFound(f"no dataset {name!r} under the data root; create it first")
        return path

    def create(self, name: str) -> Path:
        """A new dataset folder `name` under the root with an empty labels.csv; Exists when it has one already."""
        self._check_name(name)
        if self.data.root is None:
            self.data.resolve(name)  # Refused: no --data-root
        with self._lock:
            if (self.data.root / name / LABELS_FILE).exists():
                raise Exists(f"a dataset {name!r} exists already; open it, or choose another name")
            if os.path.lexists(self.data.root / name):
                self.data.resolve(name)  # refuses a link
            LabelStore(self.data.root / name).create()
        return self.data.root / name

    def store(self, name: str) -> LabelStore:
        return LabelStore(self.folder(name))

    def summary(self, name: str) -> dict:
        store = self.store(name)
        return {"name": name, "labels": store.labels(), "segments": len(store.segments()),
                "videos": len(self.videos(name)), "rounds": len(self.rounds(name))}

    # ------------------------------------------------------------------------------------------ videos

    def videos(self, name: str) -> list[str]:
        """The dataset's videos, relative to its folder: those inside it, those picked, those its labels name."""
        folder = self.folder(name)
        inside = []
        for top, dirs, files in os.walk(folder):  # os.walk does not follow links to folders
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            inside += [os.path.relpath(os.path.join(top, f), folder).replace(os.sep, "/") for f in sorted(files)
                       if is_video_name(f) and not os.path.islink(os.path.join(top, f))]
            if len(inside) > MAX_VIDEOS:
                break
        return list(dict.fromkeys(inside + self._picked(folder) + LabelStore(folder).videos()))[:MAX_VIDEOS]

    def video_path(self, name: str, video: str) -> Path:
        """The file of `video` (relative to the dataset's folder), refused outside the root or through a link."""
        rel = posixpath.normpath(posixpath.join(name, (video or "").replace("\\", "/")))
        if video.startswith("/") or rel.startswith("../") or rel == "..":
            raise Refused(f"{video!r}: outside the data root; give a path relative to the dataset's folder")
        self.folder(name)
        return self.data.video(rel)

    def add_upload(self, name: str, upload: Path) -> str:
        """Move an uploaded video into ``FOLDER/videos/`` (a free name); returns its path relative to the folder."""
        target_dir = self.folder(name) / VIDEOS_DIR
        target_dir.mkdir(exist_ok=True)
        stem, ext = os.path.splitext(safe_name(upload.name))
        with self._lock:
            target, n = target_dir / f"{stem}{ext}", 1
            while target.exists():
                n += 1
                target = target_dir / f"{stem}-{n}{ext}"
            shutil.move(upload, target)
        return f"{VIDEOS_DIR}/{target.name}"

    def add_picked(self, name: str, path: str) -> str:
        """A video under the data root (`path` relative to the root) added to the dataset; returns its path relative
        to the dataset's folder."""
        folder = self.folder(name)
        video = self.data.video(path)
        rel = os.path.relpath(video, folder).replace(os.sep, "/")
        with self._lock:
            picked = self._picked(folder)
            if rel not in picked:
                write_json(folder / PICKED_FILE, picked + [rel])
        return rel

    @staticmethod
    def _picked(folder: Path) -> list[str]:
        try:
            values = json.loads((folder / PICKED_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        return [v for v in values if isinstance(v, str)] if isinstance(values, list) else []

    # ------------------------------------------------------------------------------------------ rounds

    def rounds(self, name: str) -> list[dict]:
        """The training rounds so far, oldest first."""
        path = self.folder(name) / ROUNDS_FILE
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError:
            return []
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def add_round(self, name: str, run: str, metrics: dict, segments: int) -> dict:
        """Record a finished training round: its run and validation figures (from the run's metrics.json: the
        history's row of the kept epoch of the last phase; null where there was no validation or test set)."""
        best = _kept_epoch(metrics)
        splits = metrics.get("splits") or {}
        entry = {"round": 0, "run": run, "time": round(time.time(), 1), "segments": segments,
                 "classes": metrics.get("classes"), "val_accuracy": _number(best.get("val_acc")),
                 "val_loss": _number(best.get("val_loss")), "test_accuracy": _number(metrics.get("test_accuracy")),
                 "split_policy": splits.get("policy"), "clips": splits.get("clips")}
        with self._lock:
            rounds = self.rounds(name)
            entry["round"] = len(rounds) + 1
            write_text(self.folder(name) / ROUNDS_FILE, "".join(json.dumps(r) + "\n" for r in rounds + [entry]))
        return entry

    def next_run_name(self, name: str, taken) -> str:
        """``<dataset>-<round>``, the first that `taken(name)` says is free."""
        n = len(self.rounds(name)) + 1
        while taken(f"{name}-{n}"):
            n += 1
        return f"{name}-{n}"

    @staticmethod
    def _check_name(name: str) -> None:
        if not DATASET_NAME.fullmatch(name or ""):
            raise ActionrecError(f"dataset name {name!r}: use letters, digits, '-', '_' and '.', starting with a letter "
                                 "or digit (at most 100 characters)")


def _kept_epoch(metrics: dict) -> dict:
    """The history row of the epoch the run kept: the best epoch of its last phase (temporal, fine-tuning, head)."""
    best = metrics.get("best_epoch") if isinstance(metrics.get("best_epoch"), dict) else {}
    for phase in ("temporal", "finetune", "head"):
        if best.get(phase) is not None:
            rows = [r for r in metrics.get("history") or [] if r.get("phase") == phase and r.get("epoch") == best[phase]]
            return rows[-1] if rows else {}
    return {}


def _number(value) -> float | None:
    """A figure as JSON may carry it: None for a missing one or NaN (no validation set)."""
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None
