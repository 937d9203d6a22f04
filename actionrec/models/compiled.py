"""Compiled networks without PyTorch: saved OpenVINO IRs read, compiled and run on numpy arrays, and the *cards* that
let a later process find the IR of a pretrained network without building the network in PyTorch.

:class:`actionrec.models.backends.OpenVINONet` exports each graph of a network to an IR keyed by everything the graph
depends on (its structure, source and tensors: computing that key needs the PyTorch network) and runs it with an
:class:`IRRunner`. When ``load_model`` builds a pretrained network on the CPU, its engine also writes a card: the
network's ModelInfo, the precision and OpenVINO settings it resolved, the IR of each (graph, input shape) it ran, and
the checksum of the weights file it loaded. The card's own key is made only of what those choices depend on and can
be read without PyTorch: the weights name, the precision and backend asked for, ``$ACTIONREC_PRECISION`` and
``$ACTIONREC_BACKEND``, the CPU's flags, the versions of PyTorch, OpenVINO and NNCF, and the source of the engine and
the networks with the package's assets. A card is used only while its weights file still has the checksum it was
written with and its IRs are on disk (:func:`read_card`); anything else is no card, and the PyTorch path runs (and
writes a new one).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from ..defaults import BACKEND_ENV, PRECISION_ENV
from ..files import home_dir, sha256_file, write_json
from .cpu import cpu_flags

CARD_FORMAT = 2  # 2: IRs by shape class, the network's shape rule and capabilities
_PACKAGE = Path(__file__).resolve().parents[1]


def compiled_dir() -> Path:
    """Where exported and compiled networks are kept: $ACTIONREC_HOME/compiled."""
    return home_dir() / "compiled"


class IRRunner:
    """Saved IRs compiled for the CPU with one OpenVINO `config`, once per (IR, input shape), and run on float32
    arrays; thread-safe (calls run one at a time)."""

    def __init__(self, config: Mapping[str, str]):
        import openvino

        self.config = dict(config)
        self._core = openvino.Core()
        self._compiled: dict[tuple, Any] = {}
        self._lock = threading.Lock()
        self.seconds_preparing = 0.0  # reading and compiling IRs so far (the bench reports it)

    def read(self, ir: Path):
        """The IR at `ir` as an openvino.Model (e.g. to quantize it)."""
        return self._core.read_model(ir)

    def compiled(self, ir: Path, shape: tuple[int, ...]):
        """The compiled model of the IR at `ir` for inputs (B, *shape), made on first use."""
        key = (str(ir), tuple(shape))
        if key not in self._compiled:
            _touch(ir)  # its last use (`actionrec cache --older-than`)
            start = time.perf_counter()
            model = self._core.read_model(ir)
            model.reshape([-1, *shape])
            self._compiled[key] = self._core.compile_model(model, "CPU", self.config)
            self.seconds_preparing += time.perf_counter() - start
        return self._compiled[key]

    def run(self, ir: Path, x: np.ndarray, index: int) -> np.ndarray:
        """Output `index` of the IR at `ir` for the batch `x` (B, ...)."""
        with self._lock:
            compiled = self.compiled(ir, tuple(x.shape[1:]))
            return compiled(np.ascontiguousarray(x, dtype=np.float32))[index]


HEAD = "head"  # the graph of "probs", "logits" and "features" of an uncut network: outputs (pooled features, logits)
HEAD_OUTPUTS = ("features", "logits", "probs")  # in HEAD's output order: features 0, logits (and probs from them) 1


def graph_of(output: str, uncut: bool) -> str:
    """Which exported graph serves engine `output`: HEAD for probs, logits and features of an uncut network (one
    graph, one IR on disk for the three), else the output itself."""
    return HEAD if output in HEAD_OUTPUTS and uncut else output


def output_index(graph: str, output: str) -> int:
    """Which of `graph`'s outputs is engine `output` (HEAD gives pooled features then logits; the others one)."""
    return int(graph == HEAD and output != "features")


def shape_class(rule: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Input shapes (C, T, H, W) whose exported graphs are identical up to the sizes, so one IR serves them all
    (`rule`: :func:`actionrec.models.backends.shape_rule` of the network).

    "i3d": its SAME paddings depend only on the parity of each size at each stride-2 stage (T has 3 of them, H and W
    5: T mod 8, H and W mod 32), and its final average pool on min(T/8, 2) and min(H/32, 7), min(W/32, 7) (see
    tests/test_backends.py). "exact" (other networks, and I3D with a temporal head): the shape itself.
    """
    if rule != "i3d":
        return tuple(shape)
    c, t, h, w = shape
    up = lambda n, d: -(-n // d)  # noqa: E731
    return (c, t % 8, h % 32, w % 32, min(up(t, 8), 2), min(up(h, 32), 7), min(up(w, 32), 7))


# ------------------------------------------------------------------------------------------ cards


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _source_digest() -> str:
    """The engine's and the networks' source and the package's assets (precision policy, int8 ranges, class names)."""
    files = [_PACKAGE / "engine.py", *sorted((_PACKAGE / "models").glob("*.py")),
             *sorted(p for p in (_PACKAGE / "assets").rglob("*") if p.is_file() and p.suffix in (".json", ".txt", ".npz"))]
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.relative_to(_PACKAGE)}:".encode() + path.read_bytes())
    return digest.hexdigest()


def card_key(name: str, precision: str, backend: str, threads: int | None = None) -> str:
    """The key of the card of `load_model(name, precision=precision, backend=backend)` on this machine's CPU (see
    the module doc: everything its choices depend on, read without PyTorch)."""
    facts = {"format": CARD_FORMAT, "name": name, "precision": precision, "backend": backend, "threads": threads,
             "env": [os.environ.get(PRECISION_ENV), os.environ.get(BACKEND_ENV)], "cpu": sorted(cpu_flags()),
             "versions": [_version(d) for d in ("torch", "openvino", "nncf")], "source": _source_digest()}
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:32]


def _card_path(key: str) -> Path:
    return compiled_dir() / "cards" / f"{key}.json"


def ir_entry(graph: str, rule: str, shape: tuple[int, ...]) -> str:
    """A card's name for the IR of `graph` at input shape (C, T, H, W): by its :func:`shape_class` under `rule`."""
    return f"{graph}|{'x'.join(str(n) for n in shape_class(rule, shape))}"


def write_card(key: str, *, info: Mapping, network: Mapping, precision: str, backend: str, config: Mapping[str, str],
               weights: Path, irs: Mapping[str, Path]) -> None:
    """Record (or extend) the card `key`: the network's ModelInfo as JSON, what it can do (`network`: its "shapes"
    rule, "has_step_logits"), what the engine resolved, the checksum of the weights file it loaded, and its IRs by
    :func:`ir_entry`. Written atomically; a card of other weights or settings is replaced."""
    stat = weights.stat()
    info, network = json.loads(json.dumps(info)), dict(network)  # as read back (tuples become lists)
    old = _read_json(_card_path(key)) or {}
    same = (old.get("weights", {}).get("stat") == [stat.st_size, stat.st_mtime_ns] and old.get("precision") == precision
            and old.get("config") == dict(config) and old.get("info") == info and old.get("network") == network)
    new = {k: str(v.relative_to(compiled_dir())) for k, v in irs.items()}
    if same and all(old.get("irs", {}).get(k) == v for k, v in new.items()):
        return  # nothing new (every process that compiles the network again comes here)
    card = {"format": CARD_FORMAT, "info": info, "network": network, "precision": precision, "backend": backend,
            "config": dict(config),
            "weights": {"path": str(weights), "sha256": sha256_file(weights), "stat": [stat.st_size, stat.st_mtime_ns]},
            "irs": {**(old.get("irs", {}) if same else {}), **new}}
    write_json(_card_path(key), card)


def read_card(key: str) -> dict | None:
    """The card `key` if it can be used: its weights file holds the bytes it was written from, and its IRs are on
    disk (their paths made absolute); else None (no card, a damaged one, replaced weights, removed IRs)."""
    card = _read_json(_card_path(key))
    try:
        if card is None or card["format"] != CARD_FORMAT:
            return None
        weights = Path(card["weights"]["path"])
        if not weights.is_file() or sha256_file(weights) != card["weights"]["sha256"]:
            return None
        irs = {k: compiled_dir() / v for k, v in card["irs"].items()}
        if not irs or not all(p.is_file() and p.with_suffix(".bin").is_file() for p in irs.values()):
            return None
    except (KeyError, TypeError, AttributeError, OSError):
        return None
    _touch(_card_path(key))
    return {**card, "irs": irs}


def _touch(path: Path) -> None:
    """Mark `path` used now (its modification time: `actionrec cache --older-than` prunes by it)."""
    try:
        os.utime(path)
    except OSError:
        pass  # a read-only cache is still read


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
