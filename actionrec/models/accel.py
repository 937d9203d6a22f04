"""Faster inference on CPU: `optimize_for_inference(model, mode)` returns a sped-up copy; the input model is untouched.

Modes, combined with "+" (e.g. "packed+channels_last"); measured by bench/bench_i3d.py:

- "eager": the model as it is (a copy).
- "channels_last": weights in channels_last_3d memory format; oneDNN then keeps activations channels-last too.
- "fused": every eval-mode BatchNorm that is the `.bn` sibling of a `.conv` (as in I3D's Unit3D) is folded into that
  conv's weight and bias, and the BatchNorm becomes an Identity. Same outputs to ~1e-5.
- "packed": "fused", then each I3D Unit3D runs conv + bias + ReLU as one oneDNN call on weights reordered once to
  oneDNN's blocked layout (what torch.compile's freezing does, without the compile). CPU float32 inference only: under
  autograd, autocast, another device or dtype it computes the same thing with F.conv3d.
- "compile": torch.compile with inductor freezing (constant weights, conv+BN+ReLU folded, weights prepacked). A cold
  compile takes minutes on 2 cores (seconds with a warm inductor cache) and is paid again for each new input shape;
  with `example` it is paid here. `forward` and `forward_features` are compiled separately, on first use.
- "bf16": torch.autocast(bfloat16) around the forward methods; outputs are cast back to float32. Only fast on CPUs
  with native bf16 (avx512_bf16 / AMX); on AVX2-only CPUs it runs ~300x slower than float32.
- "auto": AUTO, the measured best default for one process predicting 1-100 clips on CPU.

The returned model keeps `forward`, `forward_features`, `forward_head` and the attributes (`spec`, `categories`,
`name`, ...). "compile" and "bf16" wrap it (see `Wrapped`): its state_dict keys then start with "model.".
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable
from functools import cache

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .i3d import Unit3D, _pad_same

AUTO = "packed+channels_last"
MODES = ("eager", "channels_last", "fused", "packed", "compile", "bf16")


def optimize_for_inference(model: nn.Module, mode: str = "auto", example: torch.Tensor | None = None) -> nn.Module:
    """A copy of `model` (in eval mode) sped up for inference by `mode` (see the module docstring).

    `example`, an input batch, is run once so that the one-off costs (compile, weight packing) are paid here.
    """
    parts = set((AUTO if mode == "auto" else mode).split("+"))
    unknown = parts - set(MODES)
    if unknown:
        raise ValueError(f"unknown mode {'+'.join(sorted(unknown))!r}; combine {', '.join(MODES)} with '+', or 'auto'")
    model = copy.deepcopy(model).eval()
    if parts & {"fused", "packed"}:
        model = fold_batchnorm(model)
    if "channels_last" in parts:
        model = model.to(memory_format=torch.channels_last_3d)
    if "packed" in parts and packed_conv_usable():
        for parent in list(model.modules()):
            for name, child in parent.named_children():
                if isinstance(child, Unit3D):
                    setattr(parent, name, PackedUnit3D(child))
    if "compile" in parts:
        model = Wrapped(model, _compile_frozen)
    if "bf16" in parts:
        model = Wrapped(model, _autocast_bf16)
    if example is not None:
        with torch.inference_mode():
            model(example)
    return model


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of `model` where each module's `.bn` (eval-mode BatchNorm) is folded into its `.conv`, `.bn` -> Identity."""
    model = copy.deepcopy(model)
    for module in model.modules():
        conv, bn = getattr(module, "conv", None), getattr(module, "bn", None)
        if (
            isinstance(conv, nn.modules.conv._ConvNd)
            and not conv.transposed
            and isinstance(bn, nn.modules.batchnorm._BatchNorm)
            and not bn.training
            and bn.running_mean is not None
        ):
            module.conv, module.bn = fuse_conv_bn_eval(conv.eval(), bn), nn.Identity()
    return model


def _reorder_conv3d_weight(weight: torch.Tensor, conv: nn.Conv3d, input_size: list[int]) -> torch.Tensor:
    """`weight` in oneDNN's blocked layout for inputs of `input_size` (a private PyTorch op)."""
    return torch._C._nn.mkldnn_reorder_conv3d_weight(weight.detach().to_mkldnn(), conv.padding, conv.stride, conv.dilation,
                                                     conv.groups, input_size)


def _conv3d_relu(x: torch.Tensor, packed: torch.Tensor, conv: nn.Conv3d) -> torch.Tensor:
    """relu(conv3d(x)) with the packed weight and `conv`'s bias, as one oneDNN call (a private PyTorch op)."""
    return torch.ops.mkldnn._convolution_pointwise(x, packed, conv.bias, conv.padding, conv.stride, conv.dilation,
                                                   conv.groups, "relu", [], "")


def packed_conv_problem() -> str | None:
    """Why the packed oneDNN convolution cannot be used in this process (None: it runs and matches F.conv3d + ReLU).

    Tried once, on a tiny channels-last convolution with a bias, padding and strides, against the plain computation.
    """
    if not torch.backends.mkldnn.is_available():
        return "oneDNN is not available"
    generator = torch.Generator().manual_seed(0)
    conv = nn.Conv3d(4, 6, 3, stride=(1, 2, 2), padding=1).eval()
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator))
        conv.bias.copy_(torch.randn(conv.bias.shape, generator=generator))
    x = torch.randn(1, 4, 3, 6, 6, generator=generator).to(memory_format=torch.channels_last_3d)
    try:
        with torch.inference_mode():
            out = _conv3d_relu(x, _reorder_conv3d_weight(conv.weight, conv, list(x.shape)), conv)
            expected = F.relu(conv(x))
    except Exception as err:  # a missing op is AttributeError or RuntimeError; anything else is as fatal to it
        first = str(err).strip().splitlines()[0][:160] if str(err).strip() else ""
        return f"{type(err).__name__}: {first}" if first else type(err).__name__
    if out.shape != expected.shape or not torch.allclose(out, expected, atol=1e-4, rtol=1e-4):
        return "its result differs from F.conv3d"
    return None


@cache
def packed_conv_usable() -> bool:
    """Whether "packed" can pack, tried once per process; when it cannot, one line on stderr says why (once)."""
    problem = packed_conv_problem()
    if problem is not None:
        print(f"actionrec: the packed oneDNN convolution is not available in this torch ({problem}); using the plain path",
              file=sys.stderr)
    return problem is None


class PackedUnit3D(nn.Module):
    """An I3D Unit3D (SAME pad, conv, BatchNorm, ReLU) with the BatchNorm folded in, run as one oneDNN call."""

    def __init__(self, unit: Unit3D):
        super().__init__()
        if not isinstance(unit.bn, nn.Identity):
            raise ValueError("fold the BatchNorm first (fold_batchnorm)")
        self.kernel, self.stride, self.static_pad = unit.kernel, unit.stride, unit.static_pad
        self.conv = unit.conv
        self.packed: torch.Tensor | None = None  # the weight in oneDNN's layout for inputs of shape `packed_for`
        self.packed_for: torch.Size | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.static_pad:
            x = _pad_same(x, self.kernel, self.stride, 0.0)
        c = self.conv
        if torch.is_grad_enabled() or torch.is_autocast_enabled("cpu") or x.device.type != "cpu" or x.dtype != torch.float32:
            return F.relu(c(x))
        if self.packed is None or self.packed_for != x.shape:  # oneDNN's best layout depends on the input shape
            self.packed_for = x.shape
            self.packed = _reorder_conv3d_weight(c.weight, c, list(x.shape))
        return _conv3d_relu(x, self.packed, c)

    def __getstate__(self):  # a oneDNN tensor can be neither copied nor pickled: copies pack again on first use
        return {**self.__dict__, "packed": None}


class Wrapped(nn.Module):
    """`model` with `forward`, `forward_features` and `forward_head` replaced by `wrap(method)`, each made on first use;
    every other attribute is `model`'s."""

    def __init__(self, model: nn.Module, wrap: Callable[[Callable], Callable]):
        super().__init__()
        self.model = model
        self._wrap, self._fns = wrap, {}

    def _call(self, name: str, *args, **kwargs):
        if name not in self._fns:
            self._fns[name] = self._wrap(getattr(self.model, name))
        return self._fns[name](*args, **kwargs)

    def forward(self, *args, **kwargs):
        return self._call("forward", *args, **kwargs)

    def forward_features(self, *args, **kwargs):
        return self._call("forward_features", *args, **kwargs)

    def forward_head(self, *args, **kwargs):
        return self._call("forward_head", *args, **kwargs)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.model, name)


def _autocast_bf16(fn: Callable) -> Callable:
    def run(x: torch.Tensor, *args, **kwargs):
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            out = fn(x, *args, **kwargs)
        return out.float()

    return run


def _compile_frozen(fn: Callable) -> Callable:
    compiled = torch.compile(fn)

    def run(*args, **kwargs):
        # torch.compile(options={"freezing": True}) is silently ignored (torch 2.13): the flag must be set when the
        # first call compiles. Freezing applies under no_grad / inference_mode only.
        with torch._inductor.config.patch(freezing=True):
            return compiled(*args, **kwargs)

    return run
