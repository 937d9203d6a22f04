"""Where the server keeps files, and the only ways a request reaches one.

* :class:`DataRoot`: paths the user picks are relative to ``--data-root``; ``..``, absolute paths and symlinks (at
  any level) are refused, so no file outside it is ever read or listed.
* :class:`Uploads`: an upload is streamed to disk chunk by chunk under a sanitised name, with a size limit checked as
  the bytes arrive (memory holds one chunk, whatever the size); a partial file never stays.
* :func:`sweep`: removes uploads and job folders older than the retention.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path

from ..data.video import VIDEO_EXTENSIONS
from ..errors import ActionrecError

MAX_NAME = 100  # characters kept of an uploaded file's name
UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")


class Refused(ActionrecError):
    """A request names something it may not reach (HTTP 403)."""


class NotFound(ActionrecError):
    """A request names something that does not exist (HTTP 404)."""


class TooLarge(ActionrecError):
    """An upload over the size limit (HTTP 413)."""


def video_extensions() -> tuple[str, ...]:
    return tuple(sorted({e.lower() for e in VIDEO_EXTENSIONS}))


def is_video_name(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in video_extensions()


def safe_name(name: str) -> str:
    """A file name that is safe to create: the last component, only letters, digits, ``._-`` and spaces, no leading
    dot, at most :data:`MAX_NAME` characters (the extension kept)."""
    base = re.split(r"[\\/]", name or "")[-1]
    stem, ext = os.path.splitext(base)
    stem = re.sub(r"[^A-Za-z0-9._ -]+", "_", stem).strip(" .") or "video"
    ext = re.sub(r"[^A-Za-z0-9.]+", "", ext).lower()
    return stem[: MAX_NAME - len(ext)] + ext


@dataclass(frozen=True)
class Entry:
    name: str
    path: str  # relative to the data root, with "/"
    kind: str  # "dir" or "video"
    size: int

    def to_dict(self) -> dict:
        return {"name": self.name, "path": self.path, "kind": self.kind, "size": self.size}


class DataRoot:
    """The folder whose files the page may pick (``--data-root``); None: picking is off."""

    def __init__(self, root: str | os.PathLike | None):
        self.root = Path(root).resolve() if root is not None else None
        if self.root is not None and not self.root.is_dir():
            raise ActionrecError(f"--data-root {root}: not a folder; give an existing folder of videos or datasets")

    def resolve(self, relative: str) -> Path:
        """The file or folder `relative` names under the root; Refused for ``..``, absolute paths and symlinks."""
        if self.root is None:
            raise Refused("no --data-root was given to `actionrec serve`: only uploads are possible")
        rel = (relative or "").replace("\\", "/")
        if rel.startswith("/") or re.match(r"^[A-Za-z]:", rel) or "\x00" in rel:
            raise Refused(f"{relative!r}: absolute paths are refused; give a path relative to the data root")
        parts = [p for p in rel.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise Refused(f"{relative!r}: '..' is refused; give a path inside the data root")
        path = self.root
        for part in parts:
            path = path / part
            try:
                mode = path.lstat().st_mode
            except OSError:
                raise NotFound(f"{relative}: not found under the data root") from None
            if stat.S_ISLNK(mode):
                raise Refused(f"{relative!r}: symbolic links are refused; give a path to the file itself")
        real = path.resolve()
        if real != self.root and self.root not in real.parents:
            raise Refused(f"{relative!r}: outside the data root")
        return real

    def check_samples(self, paths: Iterable[str]) -> None:
        """Refused, naming the first, when a path a dataset names (a manifest's row, a class folder's video) leaves
        the root or passes through a symbolic link; a folder of frames may not hold links either."""
        if self.root is None:
            raise Refused("no --data-root was given to `actionrec serve`: training needs one")
        for path in paths:
            rel = os.path.relpath(os.path.abspath(path), self.root)
            if rel == os.pardir or rel.startswith(os.pardir + os.sep) or os.path.isabs(rel):
                raise Refused(f"the dataset names a video outside the data root ({os.path.basename(path)}); keep every "
                              "video it names under the data root")
            try:
                real = self.resolve(rel.replace(os.sep, "/"))
            except Refused as err:
                raise Refused(f"the dataset names {err}") from None
            if real.is_dir() and any(e.is_symlink() for e in os.scandir(real)):
                raise Refused(f"{rel!r}: a folder of frames holding symbolic links is refused; copy the frames in")

    def video(self, relative: str) -> Path:
        path = self.resolve(relative)
        if not path.is_file() or not is_video_name(path.name):
            raise ActionrecError(f"{relative}: not a video file; pick one of {' '.join(video_extensions())}")
        return path

    def listing(self, relative: str = "") -> list[Entry]:
        """Sub-folders and video files of a folder under the root (symlinks and hidden files left out)."""
        folder = self.resolve(relative)
        if not folder.is_dir():
            raise ActionrecError(f"{relative}: not a folder")
        entries = []
        for item in sorted(os.scandir(folder), key=lambda e: e.name.lower()):
            if item.name.startswith(".") or item.is_symlink():
                continue
            rel = item.path[len(str(self.root)) :].lstrip(os.sep).replace(os.sep, "/")
            if item.is_dir(follow_symlinks=False):
                entries.append(Entry(item.name, rel, "dir", 0))
            elif item.is_file(follow_symlinks=False) and is_video_name(item.name):
                entries.append(Entry(item.name, rel, "video", item.stat(follow_symlinks=False).st_size))
        return entries


class Uploads:
    """Uploaded videos: ``<folder>/<32 hex id>/<sanitised name>``, each at most `max_bytes`, all together at most
    `quota` bytes (counting the uploads being written)."""

    def __init__(self, folder: Path, max_bytes: int, quota: int | None = None):
        self.folder = folder
        self.max_bytes = max_bytes
        self.quota = quota if quota is not None else 10 * max_bytes
        self._writing: dict[Path, int] = {}  # bytes written so far by the uploads in progress
        folder.mkdir(parents=True, exist_ok=True)

    def stored_bytes(self) -> int:
        """The bytes of the finished uploads on disk."""
        total = 0
        for entry in os.scandir(self.folder):
            if entry.is_dir(follow_symlinks=False) and Path(entry.path) not in self._writing:
                total += sum(f.stat(follow_symlinks=False).st_size for f in os.scandir(entry.path) if f.is_file(follow_symlinks=False))
        return total

    def _check_quota(self, stored: int) -> None:
        used = stored + sum(self._writing.values())
        if used > self.quota:
            raise TooLarge(f"the uploads kept take {used / 1e6:.1f} MB, over the quota of {self.quota / 1e6:.1f} MB: "
                           "remove finished jobs (or wait for the retention), or start the server with a larger --upload-quota-mb")

    def check_name(self, filename: str) -> str:
        name = safe_name(filename)
        if not is_video_name(name):
            raise ActionrecError(f"{filename or '(no name)'}: not a video file name; upload one of {' '.join(video_extensions())}")
        return name

    def check_size(self, announced: int | None) -> None:
        if announced is not None and announced > self.max_bytes:
            raise TooLarge(f"the upload is {announced / 1e6:.1f} MB, over the limit of {self.max_bytes / 1e6:.1f} MB "
                           "(start the server with a larger --max-upload-mb)")

    async def save(self, filename: str, chunks: AsyncIterator[bytes]) -> Path:
        """Stream `chunks` to a new file; over the limit the partial file is removed and TooLarge raised."""
        name = self.check_name(filename)
        stored = self.stored_bytes()
        self._check_quota(stored)
        folder = self.folder / uuid.uuid4().hex
        folder.mkdir()
        path = folder / name
        size = 0
        self._writing[folder] = 0
        try:
            with open(path, "xb") as f:
                async for chunk in chunks:
                    size += len(chunk)
                    self._writing[folder] = size
                    if size > self.max_bytes:
                        self.check_size(size)
                    self._check_quota(stored)
                    f.write(chunk)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        finally:
            self._writing.pop(folder, None)
        if size == 0:
            shutil.rmtree(folder, ignore_errors=True)
            raise ActionrecError(f"{name}: the upload is empty")
        return path

    def find(self, upload_id: str) -> Path:
        """The file of an upload id (as given by `save`: the folder's name)."""
        if not UPLOAD_ID.match(upload_id or ""):
            raise Refused(f"{upload_id!r}: not an upload id")
        folder = self.folder / upload_id
        files = [p for p in folder.iterdir() if p.is_file()] if folder.is_dir() else []
        if not files:
            raise NotFound(f"upload {upload_id} not found (removed after the retention time?); upload it again")
        return files[0]

    def remove(self, path: Path) -> None:
        if path.parent.parent == self.folder:
            shutil.rmtree(path.parent, ignore_errors=True)


def sweep(folders: list[Path], older_than_s: float, now: float | None = None) -> int:
    """Remove the entries of `folders` last changed more than `older_than_s` seconds ago; returns how many."""
    now = time.time() if now is None else now
    removed = 0
    for folder in folders:
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            try:
                if now - entry.lstat().st_mtime <= older_than_s:
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
                removed += 1
            except OSError:
                continue
    return removed
