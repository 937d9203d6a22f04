"""C3D's public checkpoint formats: DavideA/c3d-pytorch's pickle, the Keras HDF5 ports and OpenMMLab's backbone,
sniffed, read (torch with weights_only, HDF5 with h5py), filtered key by key into our state dict (Caffe's BGR input
folded into conv1) and checked (:func:`convert_c3d`). The architecture and its weights specs are in c3d.py."""

from __future__ import annotations

import hashlib
import pickle
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from ..errors import ActionrecError
from .c3d import C3D, FC6_IN, FEATURE_DIM, FORMATS, POOL5_SHAPE, _CONVS
from .info import WeightsSpec
from .weights import check_and_copy, check_complete, check_key_sets, float32_tensor


# --------------------------------------------------------------------------------------------------------------------
# Pure checkpoint filters: the loaded mapping of one format -> our state dict. They check every key, shape and dtype
# (and that values are finite) against `model` before anything is copied, and raise ValueError naming the first problem.


def _bgr_to_rgb(conv1_weight: torch.Tensor) -> torch.Tensor:
    """Fold Caffe's BGR input order into conv1, so that the network takes RGB: reverse its input channels."""
    return conv1_weight.flip(1).contiguous()


_PICKLE_KEYS = {**{f"{n}.{p}": f"{n}.{p}" for n in (*_CONVS, "fc6", "fc7") for p in ("weight", "bias")},
                "fc8.weight": "head.weight", "fc8.bias": "head.bias"}


def pickle_filter_fn(state: Mapping, model: C3D) -> dict[str, torch.Tensor]:
    """DavideA/c3d-pytorch `c3d.pickle` (a state dict `conv1.weight` ... `fc8.bias`) -> our state dict (RGB input)."""
    if not isinstance(state, Mapping):
        raise ValueError(f"holds a {type(state).__name__}, not a state dict")
    check_key_sets(_PICKLE_KEYS, state, "tensors")
    target = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    for theirs, ours in _PICKLE_KEYS.items():
        check_and_copy(theirs, float32_tensor(theirs, state[theirs]), ours, target, out)
    out["conv1.weight"] = _bgr_to_rgb(out["conv1.weight"])
    return check_complete(out, target, "c3d.pickle")


_MMACTION2_KEYS = {
    **{f"{'conv1a' if n == 'conv1' else 'conv2a' if n == 'conv2' else n}.conv.{p}": f"{n}.{p}" for n in _CONVS for p in ("weight", "bias")},
    **{f"{n}.{p}": f"{n}.{p}" for n in ("fc6", "fc7") for p in ("weight", "bias")},
}
# Recognizer buffers that mmaction2's publish_model.py strips; ignored if a checkpoint still has them.
_MMACTION2_IGNORED = ("data_preprocessor.mean", "data_preprocessor.std")


def _unwrap_state_dict(checkpoint: Mapping) -> Mapping:
    """mmcv/mmengine checkpoints are `{'state_dict': ..., 'meta': ...}`; a bare state dict is used as is."""
    inner = checkpoint.get("state_dict") if isinstance(checkpoint, Mapping) else None
    return inner if isinstance(inner, Mapping) else checkpoint


def _strip_prefixes(state: Mapping) -> dict:
    """Remove a DataParallel `module.` prefix (as mmcv's load_checkpoint does) and a recognizer's `backbone.` prefix;
    a recognizer's other keys (`cls_head.*`, `data_preprocessor.*`) are kept as they are, for the filter to judge."""
    state = dict(state)
    if state and all(isinstance(k, str) and k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    if any(isinstance(k, str) and k.startswith("backbone.") for k in state):
        state = {k[len("backbone."):] if isinstance(k, str) and k.startswith("backbone.") else k: v for k, v in state.items()}
    return state


def mmaction2_filter_fn(checkpoint: Mapping, model: C3D) -> dict[str, torch.Tensor]:
    """OpenMMLab's C3D Sports-1M checkpoint -> our state dict (conv1 ... fc7; `model` must have num_classes=0)."""
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"holds a {type(checkpoint).__name__}, not a checkpoint dict")
    state = _strip_prefixes(_unwrap_state_dict(checkpoint))
    for key in _MMACTION2_IGNORED:
        state.pop(key, None)
    head = sorted(k for k in state if isinstance(k, str) and k.startswith("cls_head."))
    if head:
        raise ValueError(f"holds a classifier ({head[0]}): a fine-tuned recognizer, not the Sports-1M pretrained backbone")
    check_key_sets(_MMACTION2_KEYS, state, "tensors")
    target = model.state_dict()
    if "head.weight" in target:
        raise ValueError("the mmaction2 checkpoint has no fc8: build C3D(num_classes=0) and train a head")
    out: dict[str, torch.Tensor] = {}
    for theirs, ours in _MMACTION2_KEYS.items():
        check_and_copy(theirs, float32_tensor(theirs, state[theirs]), ours, target, out)
    return check_complete(out, target, "the mmaction2 checkpoint")


_KERAS_LAYERS = (*_CONVS, "fc6", "fc7", "fc8")


def keras_layout(weights: Mapping) -> str:
    """'channels_last' (kernels (kT, kH, kW, Cin, Cout)) or 'theano' (Keras 1 'th': (Cout, Cin, kT, kH, kW))."""
    layers = weights.get("layers", {}) if isinstance(weights, Mapping) else {}
    conv1 = layers.get("conv1")
    shape = tuple(getattr(conv1[0], "shape", ())) if conv1 else ()
    if shape == (3, 3, 3, 3, 64):
        return "channels_last"
    if shape == (64, 3, 3, 3, 3):
        return "theano"
    raise ValueError(f"conv1 kernel has shape {shape or 'none'}; expected (3, 3, 3, 3, 64) or (64, 3, 3, 3, 3)")


def keras_filter_fn(weights: Mapping, model: C3D) -> dict[str, torch.Tensor]:
    """Keras C3D weights `{'layers': {name: [kernel, bias]}, 'attrs': {'backend': ...}}` -> our state dict (RGB input).

    channels_last: kernel (kT, kH, kW, Cin, Cout) -> (Cout, Cin, kT, kH, kW); fc6's rows go from (t, h, w, c) to our
    flatten order (c, t, h, w). theano (Keras 1 'th', the albertomontesg gist): kernel (Cout, Cin, kT, kH, kW) with the
    3x3 spatial slices rotated by 180 degrees, undone here; fc6 rows already (c, t, h, w). Dense kernels are (in, out).
    A channels_last file saved by Keras's Theano backend (attribute backend='theano') holds flipped kernels and an
    unknown flatten order, and is refused.
    """
    if not isinstance(weights, Mapping) or not isinstance(weights.get("layers"), Mapping):
        raise ValueError("not a Keras weights mapping")
    layers = weights["layers"]
    backend = (weights.get("attrs") or {}).get("backend")
    check_key_sets(_KERAS_LAYERS, layers, "layers with weights")
    layout = keras_layout(weights)
    if layout == "channels_last" and backend == "theano":
        raise ValueError("saved by Keras's Theano backend (flipped kernels); save it again with the TensorFlow backend")
    target = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    for name in _KERAS_LAYERS:
        arrays = layers[name]
        if len(arrays) != 2:
            raise ValueError(f"layer {name} has {len(arrays)} weights, expected a kernel and a bias")
        kernel = float32_tensor(f"{name} kernel", arrays[0])
        bias = float32_tensor(f"{name} bias", arrays[1])
        ours = "head" if name == "fc8" else name
        if name in _CONVS:
            if kernel.ndim != 5:
                raise ValueError(f"{name} kernel has shape {tuple(kernel.shape)}, not 5-D")
            if layout == "channels_last":
                kernel = kernel.permute(4, 3, 0, 1, 2)
            else:
                kernel = kernel.flip(3, 4)  # undo the gist's rot90(., 2) of each (kH, kW) slice
        else:
            if kernel.ndim != 2:
                raise ValueError(f"{name} kernel has shape {tuple(kernel.shape)}, not 2-D")
            kernel = kernel.t()
            if name == "fc6" and layout == "channels_last":
                if tuple(kernel.shape) != (FEATURE_DIM, FC6_IN):
                    raise ValueError(f"fc6 kernel has shape {tuple(arrays[0].shape)}, expected ({FC6_IN}, {FEATURE_DIM})")
                t, h, w = POOL5_SHAPE[1:]
                kernel = kernel.reshape(FEATURE_DIM, t, h, w, 512).permute(0, 4, 1, 2, 3).reshape(FEATURE_DIM, FC6_IN)
        check_and_copy(f"{name} kernel", kernel, f"{ours}.weight", target, out)
        check_and_copy(f"{name} bias", bias, f"{ours}.bias", target, out)
    out["conv1.weight"] = _bgr_to_rgb(out["conv1.weight"])
    return check_complete(out, target, "the Keras file")


FILTERS = {"c3d-pickle": pickle_filter_fn, "mmaction2": mmaction2_filter_fn, "keras-h5": keras_filter_fn}


# --------------------------------------------------------------------------------------------------------------------
# Reading files and detecting their format.

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_FIX = "pass c3d.pickle (DavideA/c3d-pytorch), a Keras C3D .h5 (e.g. sports1M_weights_tf.h5) or c3d_sports1m_pretrain_20201016-dcc47ddc.pth"


def _require_h5py():
    try:
        import h5py
    except ImportError:
        raise ActionrecError("reading Keras .h5 weights needs h5py: pip install h5py") from None
    return h5py


def _decode_names(values) -> list[str]:
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in np.asarray(values).reshape(-1).tolist()]


def _names_attr(group, name: str) -> list[str]:
    """A Keras list attribute, also when Keras split it into `name0`, `name1`, ... (lists over 64 KiB)."""
    if name in group.attrs:
        return _decode_names(group.attrs[name])
    names: list[str] = []
    chunk = 0
    while f"{name}{chunk}" in group.attrs:
        names.extend(_decode_names(group.attrs[f"{name}{chunk}"]))
        chunk += 1
    return names


def read_keras_h5(path: str | Path) -> dict:
    """A Keras weights file -> `{'layers': {name: [arrays in weight_names order]}, 'attrs': {...}}` (layers with weights)."""
    h5py = _require_h5py()
    try:
        with h5py.File(path, "r") as f:
            root = f["model_weights"] if "model_weights" in f else f  # model.save() nests the weights
            layer_names = _names_attr(root, "layer_names")
            if not layer_names:
                raise ActionrecError(f"{path}: an HDF5 file without Keras 'layer_names': not Keras C3D weights; {_FIX}")
            attrs = {}
            for key in ("backend", "keras_version"):
                value = root.attrs.get(key, f.attrs.get(key))
                if value is not None:
                    attrs[key] = value.decode("utf8") if isinstance(value, bytes) else str(value)
            layers: dict[str, list[np.ndarray]] = {}
            for name in layer_names:
                group = root[name]
                weight_names = _names_attr(group, "weight_names")
                if weight_names:
                    layers[name] = [np.asarray(group[w]) for w in weight_names]
    except ActionrecError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as err:
        raise ActionrecError(f"{path}: not a readable Keras HDF5 file ({err}); it may be truncated: download it again") from None
    return {"layers": layers, "attrs": attrs}


def read_torch_checkpoint(path: str | Path):
    """A PyTorch checkpoint read with `torch.load(weights_only=True)`: tensors and plain containers only, no code runs."""
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": our one-line error says what matters
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile, AttributeError, KeyError, TypeError) as err:
        text = str(err).strip()
        reason = text.splitlines()[0].split(". ")[0].rstrip(".")[:160] if text else type(err).__name__
        raise ActionrecError(f"{path}: not a readable PyTorch checkpoint ({reason}); it may be truncated or not a weights file: download it again") from None


def _torch_format(path: Path, obj) -> str:
    state = _unwrap_state_dict(obj) if isinstance(obj, Mapping) else None
    if not isinstance(state, Mapping) or not state:
        raise ActionrecError(f"{path}: holds a {type(obj).__name__}, not a state dict: not a C3D checkpoint; {_FIX}")
    keys = set(_strip_prefixes(state))
    if "conv1.weight" in keys:
        return "c3d-pickle"
    if "conv1a.conv.weight" in keys:
        return "mmaction2"
    example = sorted(str(k) for k in state)[0]
    raise ActionrecError(f"{path}: not a C3D checkpoint (keys like {example!r}, no conv1.weight or conv1a.conv.weight); {_FIX}")


def _sniff(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as err:
        raise ActionrecError(f"{path}: cannot be read ({err.strerror or err}); {_FIX}") from None
    if head.startswith(_HDF5_MAGIC):
        return "hdf5"
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":  # torch zip archive, or a legacy torch.save pickle
        return "torch"
    if len(head) >= 9 and head[8:9] == b"{":
        raise ActionrecError(f"{path}: a safetensors file; converted weights are taken as .safetensors, originals as {_FIX}")
    raise ActionrecError(f"{path}: neither a PyTorch checkpoint nor an HDF5 file ({len(head)} first bytes unknown); {_FIX}")


def read_checkpoint(path: str | Path) -> tuple[str, object]:
    """(format, loaded mapping) of a C3D weights file; format is one of FORMATS."""
    path = Path(path)
    if _sniff(path) == "hdf5":
        return "keras-h5", read_keras_h5(path)
    obj = read_torch_checkpoint(path)
    return _torch_format(path, obj), obj


def convert_c3d(path: str | Path, name: str | None = None, md5: str | None = None) -> tuple[dict[str, torch.Tensor], WeightsSpec]:
    """A public C3D weights file -> (our state dict, its WeightsSpec), checked key by key and loaded strictly once.

    `name`, when given, is the weights name the caller expects; a file holding the other C3D weights is refused.
    `md5`, when given, is the digest the file must have (KERAS_TF_MD5 for the download of C3D_SPORTS1M.url).
    """
    path = Path(path)
    if md5 is not None:
        digest = hashlib.md5(usedforsecurity=False)
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
        if digest.hexdigest() != md5:
            raise ActionrecError(f"{path}: md5 {digest.hexdigest()[:12]}... is not the published {md5[:12]}...; the file is altered or truncated: download it again")
    fmt, obj = read_checkpoint(path)
    spec = FORMATS[fmt]
    if name is not None and name != spec.name:
        raise ActionrecError(f"{path}: a {fmt} file holds {spec.name} weights, not {name}: run `actionrec weights fetch {spec.name} --from {path}`")
    with torch.device("meta"):  # shapes only: the checked tensors become its parameters (assign=True, no copy)
        model = C3D(num_classes=len(spec.categories))
    try:
        state = FILTERS[fmt](obj, model)
        model.load_state_dict(state, strict=True, assign=True)
    except (ValueError, RuntimeError) as err:
        raise ActionrecError(f"{path}: does not fit C3D as a {fmt} file ({err}); this is not {spec.name}: {_FIX}") from None
    out, storages = {}, set()
    for key, tensor in model.state_dict().items():  # safetensors refuses tensors that share memory
        ptr = tensor.untyped_storage().data_ptr()
        out[key] = tensor.clone() if ptr in storages else tensor
        storages.add(ptr)
    return out, spec
