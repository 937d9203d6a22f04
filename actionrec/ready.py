"""A pretrained network as the engine last compiled it on this machine, run without PyTorch.

``load_model(name)`` builds the PyTorch network (importing PyTorch alone takes 1-4 s), then its engine exports, compiles
and runs an OpenVINO IR and records it in a card (:mod:`actionrec.models.compiled`). :func:`ready_engine` reads that
card in a later process: the ModelInfo, the resolved precision and settings, the IR of each input shape. Its
:class:`ReadyEngine` runs the same IR through the same pipeline (:func:`actionrec.pipeline.map_clips`), so a warm
``actionrec predict CLIP`` gives the numbers the PyTorch-built engine gives, without importing PyTorch.

Anything the card does not hold (an input shape of another shape class, an output no process has run yet) is
handed to the full engine, built on first need; if OpenVINO fails on the card's IR, a warning says so
once and the full engine runs from then on (which writes a new card).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from .errors import warn_once
from .models.compiled import IRRunner, card_key, graph_of, ir_entry, output_index, read_card
from .models.info import ModelInfo, info_from_json
from .pipeline import ClipResult, Clips, JobResult, map_clips

GPU_NODES = ("/dev/nvidiactl", "/dev/kfd", "/dev/dxg")  # a GPU PyTorch could take under --device auto


class ReadyEngine:
    """The compiled pretrained network of a card (see the module doc): ``info``, ``precision``, ``backend``, ``map``
    and ``run_batch`` as :class:`actionrec.engine.Engine` has them, and ``has_step_logits``."""

    def __init__(self, card: Mapping[str, Any], precision: str = "auto", backend: str = "auto"):
        self.info: ModelInfo = info_from_json(card["info"])
        self.precision, self.backend = card["precision"], card["backend"]
        self.has_step_logits: bool = card["network"]["has_step_logits"]  # as models.network.has_step_logits
        self.requested = (precision, backend)
        self._rule: str = card["network"]["shapes"]
        self.clips_run = 0  # clips through the network so far
        self._irs: dict[str, Path] = dict(card["irs"])
        self._runner = IRRunner(card["config"])
        self._full: Any = None  # the PyTorch-built engine, once something needs it
        self._failed = False  # OpenVINO failed on the card's IR: the full engine runs from then on

    def run_batch(self, clips: list, output: str) -> np.ndarray:
        """One batch of preprocessed clips (arrays (3, T, H, W)) -> float32 outputs, as Engine.run_batch."""
        x = np.stack([np.asarray(c, dtype=np.float32) for c in clips])
        graph = graph_of(output, uncut=True)  # a card's network is pretrained weights: no cut
        ir = self._irs.get(ir_entry(graph, self._rule, x.shape[1:]))
        if ir is not None and not self._failed:
            try:
                y = self._runner.run(ir, x, output_index(graph, output)).astype(np.float32)
            except Exception as err:  # whatever OpenVINO met, the full engine can run the network
                self._failed = True
                warn_once(f"the compiled {self.info.name} could not run ({type(err).__name__}: {str(err).strip()[:300]});"
                          " building it with PyTorch instead")
            else:
                self.clips_run += len(x)
                return softmax(y) if output == "probs" else y
        return self.full_engine().run_batch(clips, output)

    def full_engine(self) -> Any:
        """The engine of ``load_model(name)`` with the same settings (imports PyTorch), made on first need."""
        if self._full is None:
            from .engine import load_model

            precision, backend = self.requested
            self._full = load_model(self.info.name, device="cpu", precision=precision, backend=backend).engine
        return self._full

    def map(self, jobs: Iterable, clips: Clips, **options: Any) -> Iterable[JobResult] | Iterable[ClipResult]:
        """As :meth:`actionrec.engine.Engine.map`."""
        return map_clips(self, jobs, clips, **options)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, in float32."""
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).astype(np.float32)


def engine_of(model: Any) -> Any:
    """The engine that runs `model`: a ReadyEngine as it is, else :func:`actionrec.engine.engine_for` (a loaded
    model or an Engine; imports PyTorch)."""
    if isinstance(model, ReadyEngine):
        return model
    from .engine import engine_for

    return engine_for(model)


def ready_engine(name: str | os.PathLike, *, device: str = "auto", precision: str = "auto",
                 backend: str = "auto") -> ReadyEngine | None:
    """The ReadyEngine of the pretrained weights `name` where ``load_model(name, device, precision, backend)`` would
    run on this CPU and has left a usable card; else None (a run directory, a device that may be a GPU, under
    torchrun, no card yet): then load the model as usual."""
    name = os.fspath(name)
    if os.path.isdir(name) or not _cpu_for_sure(device):
        return None
    card = read_card(card_key(name, precision, backend))
    return None if card is None else ReadyEngine(card, precision, backend)


def _cpu_for_sure(device: str) -> bool:
    """Whether `device` resolves to the CPU here, told without PyTorch: "cpu", or "auto" outside torchrun where
    PyTorch is a CPU-only build or no GPU device exists."""
    if device == "cpu":
        return True
    if device != "auto" or any(v in os.environ for v in ("RANK", "WORLD_SIZE", "LOCAL_RANK")):
        return False
    try:
        cpu_build = metadata.version("torch").endswith("+cpu")
    except metadata.PackageNotFoundError:
        return False
    return cpu_build or not any(os.path.exists(node) for node in GPU_NODES)
