"""Pretrained weights by name: fetch, convert, cache and load them; derive each model's preprocessing."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from ..defaults import DEFAULT_WEIGHTS
from ..errors import ActionrecError
from ..files import home_dir, sha256_file
from .c3d import C3D, KERAS_TF_MD5
from .c3d import SPECS as C3D_SPECS
from .c3d_checkpoints import convert_c3d
from .i3d import I3D, I3D_KINETICS400
from .i3d import checkpoint_filter_fn as i3d_checkpoint_filter_fn
from .info import ModelInfo, WeightsSpec
from .weights import (
    atomic_save_safetensors,
    check_key_sets,
    check_readable,
    download,
    extract_member,
    load_numpy_pickle,
    read_safetensors,
    tensors_sha256,
    weights_path,
)

PRETRAINED: dict[str, WeightsSpec] = {I3D_KINETICS400.name: I3D_KINETICS400, **C3D_SPECS}


def get_spec(name: str) -> WeightsSpec:
    if name not in PRETRAINED:
        raise ActionrecError(f"unknown weights {name!r}; choose one of: {', '.join(PRETRAINED)} (see `actionrec weights list`)")
    return PRETRAINED[name]


def with_crop(spec: WeightsSpec, crop: int | None) -> WeightsSpec:
    """`spec` seeing squares of `crop` pixels (None: its own); one line when the resized frames are too small for it."""
    if crop is None or crop == spec.crop:
        return spec
    if crop > spec.resize:
        raise ActionrecError(f"--crop {crop}: {spec.name} resizes frames to a short side of {spec.resize} pixels; "
                             f"pass --crop {spec.resize} or less")
    return replace(spec, crop=int(crop))


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


def _convert_original(spec: WeightsSpec, original: Path, label: str, published: bool = False) -> dict[str, torch.Tensor]:
    """The published checkpoint file -> our state dict, checked key by key and loaded strictly once.

    `label` names the file in errors (the user's archive, not the temporary copy of its member); `published`: the file
    came from the spec's own URL (C3D's Keras file is checked by its published md5 then).
    """
    if spec.arch == "c3d":  # users bring one of three public formats: detected, filtered and checked in c3d.py
        md5 = KERAS_TF_MD5 if published and spec.name == "c3d-sports1m" else None
        return convert_c3d(original, name=spec.name, md5=md5)[0]
    digest = sha256_file(original)
    if digest != spec.member_sha256:
        raise ActionrecError(
            f"{label}: sha256 {digest[:12]}... is not that of the published {spec.name} checkpoint "
            f"({spec.member_sha256[:12]}...); the file is altered, truncated or another model: fetch it again"
        )
    variables = load_numpy_pickle(original)
    model = create_model(spec)
    try:
        state = i3d_checkpoint_filter_fn(variables, model)
        model.load_state_dict(state, strict=True)
    except (ValueError, RuntimeError) as err:
        raise ActionrecError(f"{label}: does not fit {spec.arch} ({err}); this is not the {spec.name} checkpoint") from None
    return model.state_dict()


def fetch_weights(name: str, source: str | os.PathLike | None = None, force: bool = False) -> Path:
    """Make sure the converted weights `name` are in the cache and return their path.

    `source` is a local copy of the published archive (`.tar.gz`), of the checkpoint inside it, of our converted
    `.safetensors`, or a URL; by default the published URL is downloaded (checksummed) once. Only weights whose
    checksum is known good are written to the cache, with that checksum in the file's metadata.
    """
    spec = get_spec(name)
    dest = weights_path(spec)
    if source is None and not force and dest.exists():
        load_cached(spec, dest)
        return dest
    downloads = home_dir() / "downloads"
    source_path = _source_file(spec, source, downloads)
    if source_path.suffix == ".safetensors":
        state, digest = _read_converted(spec, source_path)
        _say(f"{spec.name}: copying {source_path} to {dest}")
    else:
        _say(f"converting {spec.name} to {dest}")
        state = _convert_source(spec, source_path, published=source is None)
        digest = tensors_sha256(state)
        _check_digest(spec, source_path, digest)
    atomic_save_safetensors(state, dest, metadata={"weights": spec.name, "format": "actionrec", "tensors_sha256": digest})
    if source is None:
        shutil.rmtree(downloads, ignore_errors=True)
    return dest


def _source_file(spec: WeightsSpec, source: str | os.PathLike | None, downloads: Path) -> Path:
    """The local file to read `spec`'s weights from: `source`, or what its URL (or the spec's) downloads to."""
    if source is None or str(source).startswith(("http://", "https://")):
        url = spec.url if source is None else str(source)
        if not url:
            raise ActionrecError(f"{spec.name}: no public download; pass your copy with `actionrec weights fetch {spec.name} --from FILE`")
        _say(f"downloading {spec.name} from {url}")
        return download(url, downloads / Path(url).name, (spec.url_sha256 or None) if url == spec.url else None)
    path = Path(source).expanduser()
    if not path.is_file():
        raise ActionrecError(f"{path}: no such file; pass the {Path(spec.url).name} archive, the checkpoint inside it, or a converted .safetensors")
    check_readable(path)
    return path


def _convert_source(spec: WeightsSpec, path: Path, published: bool) -> dict[str, torch.Tensor]:
    """Convert the original checkpoint at `path`, or the spec's member of the archive at `path`."""
    if not path.name.endswith((".tar.gz", ".tgz", ".tar")):
        return _convert_original(spec, path, str(path), published)
    if not spec.member:
        raise ActionrecError(f"{path}: an archive, but {spec.name} is read from the checkpoint file itself; pass that file")
    with tempfile.TemporaryDirectory(dir=_mkdir(home_dir())) as tmp:
        checkpoint = extract_member(path, spec.member, Path(tmp) / "checkpoint")
        return _convert_original(spec, checkpoint, f"{path} ({spec.member})", published)


def _read_converted(spec: WeightsSpec, path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """(tensors, checksum) of converted weights the user brings, refused unless they are `spec`'s (checksum, keys, shapes)."""
    loaded = read_safetensors(path)
    digest = None if loaded is None else tensors_sha256(loaded[0])
    _check_digest(spec, path, digest)
    misfit = None if loaded is None else state_misfit(loaded[0], _shapes(spec, len(spec.categories)))
    if loaded is None or misfit:
        raise ActionrecError(f"{path}: is not converted {spec.name} weights ({misfit or 'not a readable safetensors file'}); "
                             f"convert the original with `actionrec weights fetch {spec.name} --from FILE`")
    return loaded[0], digest


def _shapes(spec: WeightsSpec, num_classes: int) -> dict[str, torch.Tensor]:
    """The state dict of `spec`'s architecture with `num_classes` outputs, on the meta device (shapes, no memory)."""
    with torch.device("meta"):
        return create_model(spec, num_classes=num_classes).state_dict()


def state_misfit(state: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> str | None:
    """What keeps `state` from loading strictly into a model whose state dict is `target` (None: it loads)."""
    try:
        check_key_sets(target, state, "tensors")
    except ValueError as err:
        return str(err)
    for key, tensor in target.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            return f"{key} has shape {tuple(state[key].shape)}, the model needs {tuple(tensor.shape)}"
    return None


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _check_digest(spec: WeightsSpec, path: Path, digest: str | None, expected: str | None = None) -> None:
    """Refuse weights that are unreadable, or whose checksum is not the spec's (when it has one), else `expected`."""
    expected = spec.sha256 or expected
    if digest is None or (expected and digest != expected):
        raise ActionrecError(
            f"{path}: checksum is not that of the converted {spec.name} weights; the file is altered or truncated: "
            f"delete it and run `actionrec weights fetch {spec.name}`"
        )


def load_cached(spec: WeightsSpec, path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """(state dict, tensors checksum) of the cached file `path`, refused unless its checksum is the spec's or, for
    weights that depend on the user's file, the one recorded in the file when it was converted."""
    loaded = read_safetensors(path)
    digest = None if loaded is None else tensors_sha256(loaded[0])
    _check_digest(spec, path, digest, None if loaded is None else loaded[1].get("tensors_sha256"))
    return loaded[0], digest


def weights_status(spec: WeightsSpec) -> str:
    """The state of `spec`'s cached weights, for `actionrec weights list`: "cached", "missing",
    "unreadable: <one line>" (e.g. permission denied) or "damaged: <one line saying what to do>" (altered, truncated)."""
    path = weights_path(spec)
    if not path.exists():
        return "missing"
    try:
        check_readable(path)
    except ActionrecError as err:
        return f"unreadable: {err}"
    try:
        load_cached(spec, path)
    except ActionrecError as err:
        return f"damaged: {err}"
    return "cached"


def load_state(name: str) -> tuple[dict[str, torch.Tensor], str]:
    """(state dict, tensors checksum) of the pretrained weights `name`, fetched on first use, checked as it loads."""
    spec = get_spec(name)
    path = weights_path(spec)
    if not path.exists():
        _say(f"{spec.name} weights are not cached yet: fetching them once (use `actionrec weights fetch {spec.name} --from FILE` offline)")
        path = fetch_weights(name)
    return load_cached(spec, path)


def build_model(info: ModelInfo, state: Mapping[str, torch.Tensor] | None, device: str | torch.device = "cpu") -> nn.Module:
    """The one builder: the architecture of `info.spec` sized for `info.categories`, `state` loaded strictly (None:
    random initialisation, seeded by the caller), `model.info` attached, in eval mode on `device`."""
    options = {"temporal": info.run["temporal_head"]} if info.run and info.run.get("temporal_head") else {}
    model = create_model(info.spec, num_classes=len(info.categories) or len(info.spec.categories), **options)
    if state is not None:
        misfit = state_misfit(state, model.state_dict())
        if misfit and info.run is not None:
            raise ActionrecError(f"{info.name}: its model.safetensors does not fit its config.json ({misfit}; "
                                 f"config.json lists {len(info.categories)} classes); the run is damaged or was altered: train it again")
        if misfit:
            raise ActionrecError(f"{info.name}: the weights do not fit {info.spec.arch} ({misfit}); fetch them again "
                                 f"(`actionrec weights fetch {info.spec.name} --force`)")
        model.load_state_dict(state, strict=True)
    model.info = info
    return model.eval().to(device)


def load_pretrained(name: str, device: str | torch.device = "cpu", crop: int | None = None) -> nn.Module:
    """The pretrained model `name` in eval mode, fetched and converted on first use; `model.info` describes it.
    `crop` replaces the spec's crop (the side of the square cut from frames resized to `spec.resize`)."""
    spec = with_crop(get_spec(name), crop)
    state, digest = load_state(name)
    info = ModelInfo(name=spec.name, spec=spec, categories=spec.categories, weights_sha256=digest,
                     predict_frames=spec.predict_frames, identity=f"weights:{spec.name}:{digest[:24]}")
    return build_model(info, state, device)
