"""Which backend and precision run the frozen network for inference, decided at run time from this machine's CPU.

* Precision: ``"float"`` is bf16 where the CPU computes bf16 natively (``avx512_bf16`` or ``amx_bf16``: Intel Cooper
  Lake / Sapphire Rapids and later, AMD Zen 4 and later) and fp32 elsewhere: on AVX2-only or plain AVX-512 CPUs bf16
  is emulated and 100-300x slower. ``"auto"`` is int8 where ``assets/precision.json`` says so for this kind of CPU
  and this network (int8 measured faster than the float choice on that kind, accuracy within the limits, shipped
  activation ranges of these weights, OpenVINO, NNCF installed: see :func:`auto_int8`), else ``"float"``. A forced
  ``"fp32"`` is fp32 everywhere (OpenVINO would pick bf16 by itself on a bf16 CPU: its ``INFERENCE_PRECISION_HINT``
  is always set).
* Backend: ``"openvino"`` (OpenVINO's CPU plugin, when the package is installed: the fastest measured on CPU, see
  bench/bench_i3d.py) or ``"torch"`` (the packed oneDNN path of :mod:`actionrec.models.accel`; also the fallback and
  what training uses). ``"auto"`` takes OpenVINO for I3D and C3D on the CPU when it can be imported.
* ``$ACTIONREC_PRECISION`` and ``$ACTIONREC_BACKEND``, when set, are what "auto" means (e.g. for a whole job).
* Threads: OpenVINO's LATENCY hint on every core (its default). Measured with a competing 2-thread process on 2
  cores (bench_i3d.py --busy), it kept 0.45-0.47 of its speed, more than 1 thread (0.34-0.39) or 2 streams of 1
  thread (0.34-0.50), while PyTorch's OpenMP path kept 0.21-0.34; bench_watch.py, alternating quiet and loaded phases
  in one process, measured 0.40-0.42 for it, and 0.41 without CPU pinning. One thread or the THROUGHPUT hint keep a
  larger share (0.60-0.64) of half the speed, and are slower under load too, so the default stays.

OpenVINO models are made lazily, one per graph (see graph_for) and input shape: ``torch.export`` (static shapes, so I3D's SAME
padding is constant; the batch is dynamic) -> ``openvino.convert_model`` -> an IR saved under
``$ACTIONREC_HOME/compiled/ir`` (keyed by the network's structure, source, weights, graph and shape class), then
compiled for the CPU. A cold conversion costs 4-10 s once per machine; a warm start reads the IR and compiles it in
0.1-0.3 s (I3D, C3D). OpenVINO's own CACHE_DIR (compiled blobs) is not used: measured, it saved nothing over compiling
the saved IR and doubled the disk used (C3D: +300 MiB per precision).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import os
import shutil
import tempfile
import threading
import warnings
from importlib import resources
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..defaults import BACKEND_ENV, BACKENDS, PRECISION_ENV, PRECISIONS
from ..errors import ActionrecError, warn_once
from .network import EndpointNetwork, forward_output
from .compiled import HEAD, IRRunner, compiled_dir, graph_of, output_index, shape_class
from .cpu import cpu_flags, cpu_model
from .weights import tensors_sha256

BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
SHOWN_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")
OPENVINO_PRECISION = {"fp32": "f32", "bf16": "bf16"}  # int8: quantized operations in int8, the rest as "auto" picks
VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})  # int8 dot products in one instruction
BATCH_DIM_MAX = 4096  # the exported graphs take any batch up to this


# ------------------------------------------------------------------------------------------ the CPU


def native_bf16(flags: frozenset[str] | None = None) -> bool:
    """Whether the CPU computes bf16 natively (avx512_bf16 or amx_bf16)."""
    return bool((cpu_flags() if flags is None else flags) & BF16_FLAGS)


def float_precision(flags: frozenset[str] | None = None, device: str = "cpu") -> str:
    """The best float precision here: bf16 where the CPU has native bf16, fp32 elsewhere and off the CPU."""
    return "bf16" if native_bf16(flags) and device == "cpu" else "fp32"


def resolve_precision(precision: str = "auto", flags: frozenset[str] | None = None, device: str = "cpu",
                      info: Any = None, backend: str | None = None) -> str:
    """"fp32", "bf16" or "int8": "auto" is $ACTIONREC_PRECISION if set, else int8 where :func:`auto_int8` holds for
    the network (`info`: its ModelInfo) on `backend` and this CPU (for a trained run, only if it trained on int8
    features: :func:`trained_at`), else "float": bf16 where the CPU has native bf16
    (see the module doc), fp32 elsewhere and off the CPU. A forced "bf16" on a CPU that emulates it is honoured, with
    a warning; a forced "int8" needs OpenVINO on the CPU and NNCF (:mod:`actionrec.models.int8`)."""
    if precision == "auto":
        precision = os.environ.get(PRECISION_ENV) or "auto"
    if precision not in PRECISIONS:
        raise ActionrecError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "auto" and device == "cpu" and backend == "openvino" and info is not None:
        precision = "int8" if auto_int8(info, flags) and trained_at(info) in (None, "int8") else "auto"
    if precision in ("auto", "float"):
        return float_precision(flags, device)
    if precision == "int8":
        if device != "cpu":
            raise ActionrecError(f"--precision int8 runs on the CPU (OpenVINO), not {device}: use --device cpu")
        from .int8 import require

        require()
    if precision == "bf16" and device == "cpu" and not native_bf16(flags):
        warn_once("bf16 was asked for, but this CPU has no native bf16 (avx512_bf16 / amx_bf16): it is emulated "
                  "and far slower than fp32 (use --precision auto or fp32)")
    return precision


def trained_at(info: Any) -> str | None:
    """The precision a trained run's features were computed at (its config.json), None for pretrained weights: a run
    trained on float features keeps the float choice under "auto" (one precision per run: its predictions are the
    numbers its test phase scored), one trained on int8 runs int8 where "auto" may."""
    run = getattr(info, "run", None)
    return ((run or {}).get("engine") or {}).get("precision") if run is not None else None


@functools.cache
def precision_policy() -> dict:
    """The measured kinds of CPU, int8's speed-ups there and its accuracy checks (``assets/precision.json``)."""
    return json.loads((resources.files("actionrec") / "assets" / "precision.json").read_text(encoding="utf-8"))


def cpu_kind(flags: frozenset[str] | None = None) -> dict | None:
    """The kind of CPU of the policy file these flags belong to (the first that matches), or None (never measured)."""
    flags = cpu_flags() if flags is None else flags
    for kind in precision_policy()["kinds"]:
        if set(kind["flags"]) <= flags and not set(kind["without"]) & flags:
            return kind
    return None


def int8_measured_faster(network: str, flags: frozenset[str] | None = None) -> bool:
    """Whether int8 was measured at least ``min_speedup`` times this kind of CPU's float choice for `network` (the
    weights name), at every batch size measured."""
    kind = cpu_kind(flags)
    if kind is None or kind["float"] != float_precision(flags):
        return False
    speedups = [x for x in kind["int8_speedup"].get(network, {}).get("over_float", []) if x is not None]
    return bool(speedups) and min(speedups) >= precision_policy()["min_speedup"]


def auto_int8(info: Any, flags: frozenset[str] | None = None) -> bool:
    """Whether "auto" runs the network of `info` (its ModelInfo; a run's frozen part is its pretrained backbone) in
    int8 on OpenVINO here: measured faster on this kind of CPU, accuracy within the limits for these very weights,
    shipped activation ranges for them, and NNCF installed."""
    from . import int8

    network = info.spec.name
    accuracy = precision_policy()["accuracy"].get(network, {})
    return (int8_measured_faster(network, flags) and accuracy.get("within_limits") is True
            and accuracy.get("weights_sha256") == info.weights_sha256
            and int8.shipped_ranges_fit(network, info.weights_sha256) and int8.available())


# ------------------------------------------------------------------------------------------ the backend


@functools.cache
def openvino_version() -> str | None:
    """OpenVINO's version, or None when it cannot be imported."""
    try:
        import openvino
    except Exception:  # not installed, or a broken install: either way the PyTorch path runs
        return None
    return openvino.get_version()


def resolve_backend(backend: str, model: nn.Module, device: torch.device) -> str:
    """"openvino" or "torch" for `model` on `device` (see the module doc); "auto" is $ACTIONREC_BACKEND if set."""
    if backend == "auto":
        backend = os.environ.get(BACKEND_ENV) or "auto"
    if backend not in BACKENDS:
        raise ActionrecError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "torch":
        return "torch"
    supported = device.type == "cpu" and isinstance(model, EndpointNetwork)
    if backend == "openvino":
        if openvino_version() is None:
            raise ActionrecError("the OpenVINO backend needs the openvino package: pip install openvino "
                                 "(or use --backend torch)")
        if not supported:
            raise ActionrecError(f"{model.info.name}: OpenVINO runs I3D and C3D on the CPU only (use --backend torch)")
        return "openvino"
    return "openvino" if supported and openvino_version() is not None else "torch"


def describe(backend: str, precision: str, threads: int | None = None) -> dict:
    """What runs the network here, for run configs, cache keys and `doctor`: backend, precision, CPU and its flags."""
    flags = cpu_flags()
    return {
        "backend": backend,
        "precision": precision,
        "cpu": cpu_model(),
        "cpu_flags": [f for f in SHOWN_FLAGS if f in flags],
        "native_bf16": native_bf16(flags),
        "cpu_kind": (cpu_kind(flags) or {}).get("kind", "not measured: --precision auto keeps the float choice"),
        "auto_int8": [name for name, checked in precision_policy()["accuracy"].items()  # networks auto runs in int8 here
                      if checked["within_limits"] and int8_measured_faster(name, flags)],
        "threads": threads or torch.get_num_threads(),
        "torch": torch.__version__,
        "openvino": openvino_version() if backend == "openvino" else None,
    }


# ------------------------------------------------------------------------------------------ OpenVINO


def graph_for(model: nn.Module, output: str) -> str:
    """Which exported graph of `model` serves engine `output` (:func:`actionrec.models.compiled.graph_of`)."""
    return graph_of(output, uncut=model.final_endpoint == model.ENDPOINTS[-1])


class _Graph(nn.Module):
    """`model`'s forward for one graph (see graph_for): HEAD, logits, per-step features or an endpoint."""

    def __init__(self, model: nn.Module, graph: str):
        super().__init__()
        self.model, self.graph = model, graph

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if self.graph == HEAD:
            return self.model.forward_features_and_logits(x)
        return forward_output(self.model, x, self.graph)


def shape_rule(model: nn.Module) -> str:
    """How input shapes of `model` share exported graphs (:func:`actionrec.models.compiled.shape_class`): "i3d" for
    I3D without a temporal head (its graph is traced for its number of time steps otherwise), else "exact"."""
    from .i3d import I3D

    return "i3d" if isinstance(model, I3D) and model.temporal_head is None else "exact"


@functools.cache
def _source_digest(files: tuple[str, ...]) -> str:
    digest = hashlib.sha256()
    for name in files:
        digest.update(Path(name).read_bytes())
    return digest.hexdigest()


def network_digest(model: nn.Module) -> str:
    """What an exported graph of `model` depends on: its modules' types, settings and source, and its tensors."""
    digest = hashlib.sha256(f"torch {torch.__version__}; openvino {openvino_version()}".encode())
    files = set()
    for name, module in model.named_modules():
        settings = {k: v for k, v in vars(module).items()
                    if not k.startswith("_") and isinstance(v, (bool, int, float, str, tuple))}
        digest.update(f"{name}:{type(module).__qualname__}:{sorted(settings.items())};".encode())
        try:
            files.add(inspect.getfile(type(module)))
        except (TypeError, OSError):
            pass
    digest.update(_source_digest(tuple(sorted(files))).encode())
    digest.update(tensors_sha256(model.state_dict()).encode())
    return digest.hexdigest()


class OpenVINONet:
    """`model` run by OpenVINO's CPU plugin at `precision`: one compiled model per (graph, input shape), made on
    first use (see the module doc). Thread-safe; calls run one at a time. ``on_compiled(graph, shape, ir)`` hears of
    each IR compiled (the engine writes its card: :mod:`actionrec.models.compiled`)."""

    def __init__(self, model: nn.Module, precision: str, threads: int | None = None,
                 on_compiled: Callable[[str, tuple[int, ...], Path], None] | None = None):
        self.model, self.precision, self.threads = model, precision, threads
        self.on_compiled = on_compiled
        self._runner = IRRunner(self.config())
        self._digest: str | None = None
        self._irs: dict[tuple, Path] = {}
        self._lock = threading.Lock()

    @property
    def seconds_preparing(self) -> float:
        """Export, conversion and compiles so far (the bench reports it)."""
        return self._runner.seconds_preparing

    def config(self) -> dict[str, str]:
        hint = OPENVINO_PRECISION[float_precision() if self.precision == "int8" else self.precision]
        cfg = {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"}
        if self.threads:
            cfg["INFERENCE_NUM_THREADS"] = str(self.threads)
        return cfg

    def __call__(self, x: torch.Tensor, output: str) -> torch.Tensor:
        graph = graph_for(self.model, output)
        shape = tuple(x.shape[1:])
        ir = self._ir(graph, shape)
        y = self._runner.run(ir, x.detach().float().contiguous().numpy(), output_index(graph, output))
        return torch.from_numpy(y)

    def compiled(self, graph: str, shape: tuple[int, ...]):
        """The compiled model of `graph` (see graph_for) for inputs (B, *shape), made on first use."""
        return self._runner.compiled(self._ir(graph, shape), shape)

    def _ir(self, graph: str, shape: tuple[int, ...]) -> Path:
        key = (graph, shape)
        with self._lock:
            if key not in self._irs:
                ir = self.ir_path(graph, shape)
                self._runner.compiled(ir, shape)
                self._irs[key] = ir
                if self.on_compiled is not None:
                    self.on_compiled(graph, shape, ir)
        return self._irs[key]

    def ir_path(self, graph: str, shape: tuple[int, ...]) -> Path:
        """The saved IR (model.xml) of `graph` for the shape class of `shape`, exported and converted if absent."""
        if self._digest is None:
            self._digest = network_digest(self.model)
        key = hashlib.sha256(f"{self._digest}|{graph}|{shape_class(shape_rule(self.model), shape)}".encode()).hexdigest()[:32]
        folder = compiled_dir() / "ir" / key
        if not (folder / "model.xml").is_file():
            self._export(graph, shape, folder)
        if self.precision != "int8":
            return folder / "model.xml"
        from . import int8

        ranges = int8.ranges_for(self.model.info)
        quantized = compiled_dir() / "ir" / f"{key}-int8-{int8.ranges_digest(ranges)}"
        if not (quantized / "model.xml").is_file():
            float_ir = self._runner.read(folder / "model.xml")
            float_ir.reshape([-1, *shape])
            _save_ir(int8.quantize(float_ir, ranges, shape), quantized)
        return quantized / "model.xml"

    def _export(self, graph: str, shape: tuple[int, ...], folder: Path) -> None:
        import openvino

        example = torch.randn(2, *shape)  # batch 2: a batch of 1 would be specialised
        batch = torch.export.Dim("batch", min=1, max=BATCH_DIM_MAX)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.export(_Graph(self.model, graph).eval(), (example,), dynamic_shapes=({0: batch},))
            converted = openvino.convert_model(program)
        _save_ir(converted, folder)


def _save_ir(model, folder: Path) -> None:
    """Save an openvino.Model as folder/model.xml (+ .bin), atomically: the folder appears whole or not at all."""
    import openvino

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        openvino.save_model(model, tmp / "model.xml", compress_to_fp16=False)  # fp16 weights would change outputs
        os.replace(tmp, folder)  # atomic; another process may have put the same IR there first
    except OSError:
        if not (folder / "model.xml").is_file():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
