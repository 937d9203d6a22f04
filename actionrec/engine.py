"""The one inference engine: every forward pass of a frozen network, for every command, goes through here.

An :class:`Engine` owns a model's device, backend and precision (:mod:`actionrec.models.backends`: OpenVINO where
installed, bf16 where the CPU has it natively; the PyTorch fast path of
:func:`actionrec.models.accel.optimize_for_inference` as the fallback; each made once, on first use) and
:meth:`Engine.map`, the one pipeline from videos to outputs:

* a producer thread pulls the clips of each job (``clips(job)`` yields ``(meta, tensor)``: decoding and
  preprocessing run there, OpenCV releasing the GIL, so they overlap the forward) into a bounded queue;
* the consumer batches clips across jobs, runs the forward (``output``: probabilities, logits, pooled features or
  the activation at an endpoint), and hands results back per job (in order) or per clip as soon as they exist;
* a job whose clips cannot be read goes to ``on_error(job, message)`` in its turn, and the others go on;
* ``live=True`` (a camera) never holds the source back: when the queue is full the oldest clip is dropped and
  counted, so results stay close to real time.

A trained run (``info.cut`` set) runs its frozen part on the backend at the engine's precision and the layers it
trained above the cut eager in fp32, from the activation rounded to float16 as the feature cache holds it: what its
training, test phase and ``evaluate`` compute, so ``predict --run`` gives the numbers its test phase scored.

Memory is bounded by the queue (``ahead`` clips) and one batch, whatever the number of jobs or clips per job.

:class:`InferenceModel` is what ``actionrec.load_model`` returns: an ``nn.Module`` whose ``forward``,
``forward_features``, ``forward_steps``, ``forward_until`` and ``forward_head`` run through its engine, and whose
:meth:`~InferenceModel.trainable_copy` gives an eager copy to fine-tune.
"""

from __future__ import annotations

import copy
import os
import threading
import weakref
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import ActionrecError
from .models.backends import OpenVINONet, describe, resolve_backend, resolve_precision, shape_rule, warn_once
from .models.compiled import ir_entry, write_card
from .models.info import info_to_json
from .models.network import EndpointNetwork, forward_output, has_step_logits, has_steps
from .pipeline import ClipResult, Clips, JobResult, map_clips

TOP_OUTPUTS = ("probs", "logits", "features", "steps", "step_logits")  # the outputs above a run's cut; or an endpoint


class Engine:
    """Runs one model for inference (see the module doc). Use :func:`engine_for` to share one per model.

    ``precision``: "auto" (int8 where measured faster on this kind of CPU and accurate for this network, else
    "float": bf16 where the CPU has native bf16, else fp32), "float", "fp32", "bf16" or "int8"; ``backend``: "auto"
    (OpenVINO for I3D and C3D on the CPU when installed, else PyTorch), "openvino" or "torch" (see
    :mod:`actionrec.models.backends`). If OpenVINO fails on this network, a warning says so once and PyTorch runs from
    then on. ``fast=False``: the model itself, eager PyTorch, fp32 unless ``precision="bf16"`` (the reference path).
    ``threads``: OpenVINO's inference threads (default: its own choice, every core).
    """

    def __init__(self, model: nn.Module, *, fast: bool = True, device: str | torch.device | None = None,
                 precision: str = "auto", backend: str = "auto", threads: int | None = None,
                 card: tuple[str, Path] | None = None):
        if isinstance(model, InferenceModel):  # the network it serves
            model = model.engine.model
        self.model = model.eval()
        self.info = model.info
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.fast = fast
        self.requested = (precision, backend)
        self.backend = resolve_backend(backend, model, self.device) if fast else "torch"
        self.precision = resolve_precision("fp32" if not fast and precision == "auto" else precision,
                                           device=self.device.type, info=self.info, backend=self.backend)
        if self.precision == "int8":
            self._check_int8()
        self.threads = threads
        self.clips_run = 0  # clips through the network so far (tests check cache reuse with it)
        self._net: nn.Module | None = None
        self._openvino: OpenVINONet | None = None
        self._lock = threading.Lock()
        self._card = card if self.device.type == "cpu" and fast else None  # (card key, weights file): see _write_card

    def _check_int8(self) -> None:
        """int8 runs on OpenVINO from the backbone's activation ranges: refuse, in one line, what cannot."""
        from .models import int8

        if self.backend != "openvino":
            raise ActionrecError(f"--precision int8 runs on the OpenVINO backend, not {self.backend}: "
                                 "use --backend auto or openvino (pip install openvino)")
        int8.ranges_for(self.info)

    @property
    def has_step_logits(self) -> bool:
        """Whether the network's per-step logits are its classifier's (models.network.has_step_logits)."""
        return has_step_logits(self.model)

    def describe(self) -> dict:
        """Backend, precision, CPU and its flags, threads, versions: what runs cache keys and `doctor` record."""
        return describe(self.backend, self.precision, self.threads)

    @property
    def net(self) -> nn.Module:
        """The PyTorch network (the fast copy, made once, on first use, or the model itself): the fallback path."""
        if self._net is None:
            with self._lock:
                if self._net is None:
                    from .models.accel import optimize_for_inference
                    if self.fast and self.device.type == "cpu" and isinstance(self.model, EndpointNetwork):
                        # oneDNN's packed fp32 convolutions do not run under autocast: bf16 takes the folded network
                        self._net = optimize_for_inference(self.model, "auto" if self.precision == "fp32" else "fused+channels_last")
                    else:
                        self._net = self.model
        return self._net

    def forward(self, x: torch.Tensor, output: str = "probs") -> torch.Tensor:
        """One batch (B, 3, T, H, W) -> float32 outputs on the CPU: "probs"/"logits" (B, K), "features" (B, C) pooled,
        "steps" (B, T', C) features per time step (I3D: Mixed_5c pooled over space, one step per 8 frames), or the
        activation at an endpoint. Any T the network takes: OpenVINO compiles each new input shape once."""
        cut = self.info.cut
        if cut is not None and output in TOP_OUTPUTS:  # a trained run: its trained layers as its test phase ran them
            y = self.top(self._frozen(x, cut), output)
        else:
            y = self._frozen(x, output)
            if output == "probs":
                y = y.float().softmax(-1)
        self.clips_run += len(x)
        return y.float().cpu()

    def _frozen(self, x: torch.Tensor, output: str) -> torch.Tensor:
        """`output` of x on the backend, at the engine's precision."""
        return self._forward_openvino(x, output) if self.backend == "openvino" else self._forward_torch(x, output)

    def top(self, activation: torch.Tensor, output: str = "probs", *, pooled: bool = False) -> torch.Tensor:
        """`output` (one of TOP_OUTPUTS; "probs" with its softmax) of a trained run from its frozen part's activation,
        the way training, its test phase and `evaluate` compute it from the feature cache: the activation at its cut
        rounded to float16 (what a cache entry holds), then the layers above the cut eager in fp32; or, ``pooled``,
        from its pooled features (this method's own "features" output, as they are) through its linear head alone.
        So a run predicts the numbers its test phase scored, from the network or from cached activations."""
        cut = self.info.cut
        if cut is None:
            raise ActionrecError(f"{self.info.name}: pretrained weights have no trained layers above a cut")
        if pooled and (output not in ("probs", "logits") or getattr(self.model, "temporal_head", None) is not None):
            raise ActionrecError(f"{self.info.name}: pooled features give only the linear head's probs or logits (asked: "
                                 f"{output!r}; a run with a temporal head classifies per-step features instead)")
        with torch.inference_mode():
            if pooled:
                y = self.model.forward_head(activation.float().to(self.device)).float()
            else:
                activation = activation.to(torch.float16).float().to(self.device)
                y = forward_output(self.model, activation, output, start=cut).float()
        return y.softmax(-1) if output == "probs" else y

    def _forward_openvino(self, x: torch.Tensor, output: str) -> torch.Tensor:
        """OpenVINO's output; if OpenVINO fails on this network, PyTorch's, and PyTorch runs from then on."""
        try:
            if self._openvino is None:
                with self._lock:
                    if self._openvino is None:
                        self._openvino = OpenVINONet(self.model, self.precision, self.threads,
                                                     on_compiled=self._write_card if self._card else None)
            return self._openvino(x, output)
        except Exception as err:  # export, conversion, compile or run: whatever it was, PyTorch can run the network
            y = self._forward_torch(x, output)  # a bad input raises here, and OpenVINO stays
            self.backend = "torch"
            warn_once(f"OpenVINO could not run {self.info.name} ({type(err).__name__}: {str(err).strip()[:300]}); "
                      "running it with PyTorch instead")
            return y

    def _write_card(self, graph: str, shape: tuple[int, ...], ir: Path) -> None:
        """Record that this pretrained network runs from `ir` for `graph` at `shape`, so that a later process reads
        the IR without building the network (:mod:`actionrec.models.compiled`). A card that cannot be written is
        only a slower start next time."""
        key, weights = self._card
        rule = shape_rule(self.model)
        network = {"shapes": rule, "has_step_logits": has_step_logits(self.model)}
        try:
            write_card(key, info=info_to_json(self.info), network=network, precision=self.precision,
                       backend=self.backend, config=self._openvino.config(), weights=weights,
                       irs={ir_entry(graph, rule, shape): ir})
        except OSError as err:
            warn_once(f"could not record the compiled network for a faster start ({err})")

    def _forward_torch(self, x: torch.Tensor, output: str) -> torch.Tensor:
        net = self.net
        bf16 = self.precision == "bf16"
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16):
            return forward_output(net, x.to(self.device), output).float()

    def map(self, jobs: Iterable, clips: Clips, **options: Any) -> Iterator[JobResult] | Iterator[ClipResult]:
        """Run the clips of every job through the network (see the module doc): :func:`actionrec.pipeline.map_clips`
        with this engine (its options: output, batch_size, per_clip, on_error, progress, live, ahead, on_drop, stale,
        on_take, stop)."""
        return map_clips(self, jobs, clips, **options)

    def run_batch(self, clips: list, output: str) -> np.ndarray:
        """One batch of preprocessed clips (tensors or arrays (3, T, H, W)) -> float32 outputs (see forward)."""
        x = torch.from_numpy(np.stack(clips)) if isinstance(clips[0], np.ndarray) else torch.stack(clips)
        return self.forward(x, output).numpy()


_engines: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def engine_for(model: nn.Module | Engine, *, precision: str = "auto", backend: str = "auto") -> Engine:
    """The engine of `model`, made once per model and settings (its fast copy is reused by every command in the
    process). An :class:`InferenceModel`'s is its own engine ("auto" means the settings it was loaded with)."""
    if isinstance(model, Engine):
        return model
    if isinstance(model, InferenceModel):
        if (precision, backend) in (("auto", "auto"), model.engine.requested):
            return model.engine
        model = model.engine.model
    engine = _engines.get(model)
    if engine is None or engine.requested != (precision, backend):
        engine = _engines[model] = Engine(model, precision=precision, backend=backend)
    return engine


# ------------------------------------------------------------------------------------------ the model of load_model


def load_model(name_or_run_dir: str | os.PathLike, device: str = "cpu", precision: str = "auto", backend: str = "auto",
               fast: bool = True) -> nn.Module:
    """A pretrained model by weights name (e.g. "i3d-kinetics400"), or a trained run directory, for inference.

    It runs on the engine's fast path (:class:`actionrec.engine.InferenceModel`): `model(x)` gives logits and
    `model.forward_features(x)` pooled features for x (B, 3, T, H, W) in its value range (I3D also `forward_steps`),
    under `precision` ("auto": int8 where measured faster here and accurate, else "float": bf16 where the CPU has
    native bf16, else fp32; "fp32"; "bf16"; "int8") and `backend` ("auto",
    "openvino", "torch"); `actionrec.predict(..., model=model)` reuses its compiled network. It takes no gradients:
    `model.trainable_copy()` is an eager copy to fine-tune. `fast=False` gives the eager fp32 PyTorch network itself,
    the reference (with `forward_head`, `reset_classifier(n)`, ...). Both carry `model.info` (a ModelInfo: name, spec,
    categories, ...). A name that is neither a run directory nor pretrained weights is refused in one line saying
    which it looked like."""
    from .models.compiled import card_key
    from .models.pretrained import PRETRAINED, load_pretrained
    from .models.runs import load_run
    from .models.weights import weights_path

    if not fast and (precision not in ("auto", "fp32") or backend not in ("auto", "torch")):
        raise ActionrecError(f"fast=False gives the eager fp32 PyTorch network; precision={precision!r} and "
                             f"backend={backend!r} are for the fast path (drop fast=False)")
    name = os.fspath(name_or_run_dir)
    if os.path.isdir(name) or name not in PRETRAINED and (os.path.exists(name) or _looks_like_path(name_or_run_dir)):
        network = load_run(name, device=device)  # a run directory, or one line saying what the path is instead
    elif name not in PRETRAINED:
        raise ActionrecError(f"{name}: neither a run directory nor pretrained weights; give a run directory or one of: "
                             f"{', '.join(PRETRAINED)} (see `actionrec weights list`)")
    else:
        network = load_pretrained(name, device=device)
    if not fast:
        return network
    card = (card_key(name, precision, backend), weights_path(network.info.spec)) if network.info.run is None else None
    return InferenceModel(Engine(network, device=device, precision=precision, backend=backend, card=card))


def _looks_like_path(name: str | os.PathLike) -> bool:
    """A path object, or a name with a folder separator or starting with . or ~ (weights names have none)."""
    text = os.fspath(name)
    return not isinstance(name, str) or any(sep and sep in text for sep in (os.sep, os.altsep)) or text.startswith((".", "~"))




class InferenceModel(nn.Module):
    """A network served by its :class:`Engine` (what ``actionrec.load_model`` returns): ``forward`` (logits),
    ``forward_features`` (pooled), ``forward_steps`` (I3D), ``forward_until`` and ``forward_head`` run on the engine's
    fast path, at the device, backend and precision it was loaded with; ``info`` is the network's ModelInfo.

    It is for inference: it has no parameters of its own (``state_dict()`` reads the network's weights, the engine's
    compiled copies are made from them), takes no gradients (a forward in training mode or on an input that requires
    grad, with grad enabled, is refused), and is not moved or converted. :meth:`trainable_copy` gives an independent
    eager copy of the network to fine-tune, move or change.
    """

    def __init__(self, engine: Engine):
        super().__init__()
        self.engine = engine
        self.info = engine.info
        self.train(False)

    def extra_repr(self) -> str:
        e = self.engine
        return f"{self.info.name}, device={e.device}, backend={e.backend}, precision={e.precision}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, K) of clips x (B, 3, T, H, W)."""
        return self._run(x, "logits")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features (B, C) of clips x (B, 3, T, H, W)."""
        return self._run(x, "features")

    def forward_steps(self, x: torch.Tensor) -> torch.Tensor:
        """Features per time step (B, T', C): I3D only (one step per 8 frames; see Engine.forward)."""
        if not has_steps(self.engine.model):
            raise ActionrecError(f"{self.info.name}: per-step features need a network convolutional in time (I3D); "
                                 f"{self.info.spec.arch} takes fixed windows: use forward_features on each window")
        return self._run(x, "steps")

    def forward_until(self, x: torch.Tensor, endpoint: str) -> torch.Tensor:
        """The activation at `endpoint` (one of the network's ENDPOINTS) of clips x."""
        return self._run(x, endpoint)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Logits (..., K) of the linear head on pooled or per-step features (..., C). A run trained with
        ``--head temporal`` classifies with its temporal head (``model(x)``), so there this is not ``model(x)``."""
        self._check_no_grad(features)
        with torch.inference_mode():
            y = self.engine.model.forward_head(features.to(self.engine.device).float()).float()
        return _as_output(y, features.device)

    def trainable_copy(self) -> nn.Module:
        """An independent eager copy of the network (fp32 PyTorch, the same device and ``info``) whose parameters
        all require grad, in eval mode like a loaded model (call ``.train()`` to train it; freeze what you keep)."""
        network = copy.deepcopy(self.engine.model)
        for p in network.parameters():
            p.requires_grad_(True)
        return network

    def _run(self, x: torch.Tensor, output: str) -> torch.Tensor:
        self._check_no_grad(x)
        return _as_output(self.engine.forward(x.detach(), output), x.device)

    def _check_no_grad(self, x: torch.Tensor) -> None:
        if torch.is_grad_enabled() and (self.training or x.requires_grad):
            raise ActionrecError(f"{self.info.name}: a model from load_model runs for inference and takes no gradients; "
                                 "call model.trainable_copy() for an eager copy to train (or run it under torch.no_grad())")

    def _refuse(self, what: str, instead: str = "") -> ActionrecError:
        return ActionrecError(f"{self.info.name}: a model from load_model keeps the {what} it was loaded with; call "
                              f"model.trainable_copy() for an eager copy to change{instead}")

    def to(self, *args, **kwargs) -> InferenceModel:
        """Itself when asked for its own device (and float32); refused otherwise (see the class doc)."""
        device, dtype, _, memory_format = torch._C._nn._parse_to(*args, **kwargs)
        if _same_device(device, self.engine.device) and dtype in (None, torch.float32) and memory_format is None:
            return self
        raise self._refuse_conversion()

    def cpu(self) -> InferenceModel:
        return self.to("cpu")

    def cuda(self, device: int | torch.device | None = None) -> InferenceModel:
        return self.to(torch.device("cuda", device) if isinstance(device, int) else device or "cuda")

    def _apply(self, fn, recurse: bool = True):  # .float(), .half(), .share_memory(), ...
        raise self._refuse_conversion()

    def _refuse_conversion(self) -> ActionrecError:
        return self._refuse("device and precision", " (or load_model(..., device=..., precision=...))")

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        raise self._refuse("weights")

    def state_dict(self, *args, **kwargs):
        """The network's weights, under the network's own keys (e.g. to save them)."""
        return self.engine.model.state_dict(*args, **kwargs)

    def reset_classifier(self, num_classes: int) -> None:
        raise self._refuse("classifier")

    def __deepcopy__(self, memo: dict) -> InferenceModel:
        raise self._refuse("engine")


def _same_device(asked: torch.device | str | None, device: torch.device) -> bool:
    """Whether `asked` (None: any) is `device` ("cuda" is "cuda:0" when the index is left out)."""
    if asked is None:
        return True
    asked = torch.device(asked)
    return asked.type == device.type and (asked.index is None or device.index is None or asked.index == device.index)


def _as_output(y: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The engine's output on `device`, as an ordinary tensor outside inference mode (as the eager network's is)."""
    if y.is_inference() and not torch.is_inference_mode_enabled():
        y = y.clone()
    return y.to(device)
