"""Pretrained weights by name: fetch, convert, cache and load them; derive each model's preprocessing."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .c3d import C3D, KERAS_TF_MD5, convert_c3d
from .c3d import SPECS as C3D_SPECS
from ..errors import ActionrecError
from .i3d import I3D, I3D_KINETICS400
from .i3d import checkpoint_filter_fn as i3d_checkpoint_filter_fn
from .weights import (
    WeightsSpec,
    atomic_save_safetensors,
    download,
    extract_member,
    file_tensors_sha256,
    home_dir,
    load_numpy_pickle,
    sha256_file,
    tensors_sha256,
    weights_path,
)

PRETRAINED: dict[str, WeightsSpec] = {I3D_KINETICS400.name: I3D_KINETICS400, **C3D_SPECS}


def get_spec(name: str) -> WeightsSpec:
    if name not in PRETRAINED:
        raise ActionrecError(f"unknown weights {name!r}; choose one of: {', '.join(PRETRAINED)} (see `actionrec weights list`)")
    return PRETRAINED[name]


@dataclass(frozen=True)
class ModelInfo:
    """What a model is, attached once as `model.info` by :func:`build_model` (as timm's `pretrained_cfg`)."""

    name: str  # the weights name, or the run directory of a trained run
    spec: WeightsSpec  # architecture and preprocessing of the frozen backbone's weights
    categories: tuple[str, ...]  # output classes, in output order (empty: backbone only)
    weights_sha256: str  # identifies the frozen backbone's weights (the feature cache keys on it)
    predict_frames: int  # frames per window when predicting (a run: the clip length it was trained on)
    identity: str  # identifies everything the outputs depend on (caches of outputs key on it)
    run: Mapping[str, Any] | None = None  # a trained run's config.json


def create_model(spec: WeightsSpec, num_classes: int | None = None, **kwargs) -> nn.Module:
    """The architecture of `spec`, with random weights (`num_classes` outputs, default the spec's)."""
    num_classes = len(spec.categories) if num_classes is None else num_classes
    if spec.arch == "i3d":
        return I3D(num_classes=num_classes, **kwargs)
    if spec.arch == "c3d":
        return C3D(num_classes=num_classes, **kwargs)
    raise ActionrecError(f"{spec.name}: unknown architecture {spec.arch!r}")


def _say(message: str) -> None:
    print(f"actionrec: {message}", file=sys.stderr)


def _convert_original(spec: WeightsSpec, original: Path, published: bool = False) -> dict[str, torch.Tensor]:
    """The published checkpoint file -> our state dict, checked key by key and loaded strictly once.

    `published`: the file came from the spec's own URL (C3D's Keras file is checked by its published md5 then).
    """
    if spec.arch == "c3d":  # users bring one of three public formats: detected, filtered and checked in c3d.py
        md5 = KERAS_TF_MD5 if published and spec.name == "c3d-sports1m" else None
        return convert_c3d(original, name=spec.name, md5=md5)[0]
    digest = sha256_file(original)
    if digest != spec.member_sha256:
        raise ActionrecError(
            f"{original}: sha256 {digest[:12]}... is not that of the published {spec.name} checkpoint "
            f"({spec.member_sha256[:12]}...); the file is altered, truncated or another model: fetch it again"
        )
    variables = load_numpy_pickle(original)
    model = create_model(spec)
    try:
        state = i3d_checkpoint_filter_fn(variables, model)
        model.load_state_dict(state, strict=True)
    except (ValueError, RuntimeError) as err:
        raise ActionrecError(f"{original}: does not fit {spec.arch} ({err}); this is not the {spec.name} checkpoint") from None
    return model.state_dict()


def fetch_weights(name: str, source: str | os.PathLike | None = None, force: bool = False) -> Path:
    """Make sure the converted weights `name` are in the cache and return their path.

    `source` is a local copy of the published archive (`.tar.gz`), of the checkpoint inside it, of our converted
    `.safetensors`, or a URL; by default the published URL is downloaded (checksummed) once.
    """
    spec = get_spec(name)
    dest = weights_path(spec)
    if source is None and not force and dest.exists():
        verify_weights(spec, dest)
        return dest
    downloads = home_dir() / "downloads"
    with tempfile.TemporaryDirectory(dir=_mkdir(home_dir())) as tmp:
        if source is None or str(source).startswith(("http://", "https://")):
            url = spec.url if source is None else str(source)
            if not url:
                raise ActionrecError(f"{spec.name}: no public download; pass your copy with `actionrec weights fetch {spec.name} --from FILE`")
            _say(f"downloading {spec.name} from {url}")
            archive = download(url, downloads / Path(url).name, (spec.url_sha256 or None) if url == spec.url else None)
            source_path = archive
        else:
            source_path = Path(source).expanduser()
            if not source_path.is_file():
                raise ActionrecError(f"{source_path}: no such file; pass the {Path(spec.url).name} archive, the checkpoint inside it, or a converted .safetensors")
        if source_path.suffix == ".safetensors":
            verify_weights(spec, source_path)
            _check_loads(spec, source_path)
            shutil.copyfile(source_path, Path(tmp) / "w.safetensors")
            os.replace(Path(tmp) / "w.safetensors", _mkdir(dest.parent) / dest.name)
            _say(f"{spec.name}: copied {source_path} to {dest}")
            return dest
        if source_path.name.endswith((".tar.gz", ".tgz", ".tar")):
            source_path = extract_member(source_path, spec.member, Path(tmp) / "checkpoint")
        _say(f"converting {spec.name} to {dest}")
        state = _convert_original(spec, source_path, published=source is None)
        atomic_save_safetensors(state, dest, metadata={"weights": spec.name, "format": "actionrec"})
    if source is None:
        shutil.rmtree(downloads, ignore_errors=True)
    verify_weights(spec, dest)
    return dest


def _check_loads(spec: WeightsSpec, path: Path) -> None:
    """A converted file must load strictly into the spec's architecture (what the checksum cannot say when empty)."""
    from safetensors.torch import load_file

    try:
        create_model(spec).load_state_dict(load_file(str(path)), strict=True)
    except Exception as err:  # safetensors' own errors for foreign or truncated files, RuntimeError for keys/shapes
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ActionrecError(f"{path}: is not converted {spec.name} weights ({first[:200]}); convert the original with `actionrec weights fetch {spec.name} --from FILE`") from None


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def verify_weights(spec: WeightsSpec, path: Path) -> None:
    """Refuse a converted file whose checksum is not the one we produce."""
    if spec.sha256:
        _check_digest(spec, path, file_tensors_sha256(path))


def _check_digest(spec: WeightsSpec, path: Path, digest: str | None) -> None:
    if digest is None or (spec.sha256 and digest != spec.sha256):
        raise ActionrecError(
            f"{path}: checksum is not that of the converted {spec.name} weights; the file is altered or truncated: "
            f"delete it and run `actionrec weights fetch {spec.name}`"
        )


def load_state(name: str) -> tuple[dict[str, torch.Tensor], str]:
    """(state dict, tensors checksum) of the pretrained weights `name`, fetched on first use, checked as it loads."""
    from safetensors.torch import load_file

    spec = get_spec(name)
    path = weights_path(spec)
    if not path.exists():
        _say(f"{spec.name} weights are not cached yet: fetching them once (use `actionrec weights fetch {spec.name} --from FILE` offline)")
        path = fetch_weights(name)
    try:  # one read of the file: its checksum is taken from the tensors that are loaded
        state = load_file(str(path))
    except Exception:  # safetensors raises its own error types for truncated or foreign files
        state = None
    digest = tensors_sha256(state) if state is not None else None
    _check_digest(spec, path, digest)
    return state, digest


def build_model(info: ModelInfo, state: Mapping[str, torch.Tensor] | None, device: str | torch.device = "cpu") -> nn.Module:
    """The one builder: the architecture of `info.spec` sized for `info.categories`, `state` loaded strictly (None:
    random initialisation, seeded by the caller), `model.info` attached, in eval mode on `device`."""
    model = create_model(info.spec, num_classes=len(info.categories) or len(info.spec.categories))
    if state is not None:
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as err:
            first = str(err).strip().splitlines()[0]
            raise ActionrecError(f"{info.name}: the weights do not fit {info.spec.arch} ({first[:200]}); fetch or train them again") from None
    model.info = info
    return model.eval().to(device)


def load_pretrained(name: str, device: str | torch.device = "cpu") -> nn.Module:
    """The pretrained model `name` in eval mode, fetched and converted on first use; `model.info` describes it."""
    spec = get_spec(name)
    state, digest = load_state(name)
    info = ModelInfo(name=spec.name, spec=spec, categories=spec.categories, weights_sha256=digest,
                     predict_frames=spec.predict_frames, identity=f"weights:{spec.name}:{digest[:24]}")
    return build_model(info, state, device)


def check_classifier(info: ModelInfo) -> None:
    """Refuse a model without output classes (backbone-only weights) in one line."""
    if not info.categories:
        raise ActionrecError(f"{info.name}: these weights have no classes to recognise; train a run on them first "
                             f"(`actionrec train DATA --backbone {info.spec.arch} --weights {info.spec.name}`) and pass --run RUN")
