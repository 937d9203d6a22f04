"""A run directory: the trained layers (`model.safetensors`) and what they are (`config.json`), saved and loaded.

`config.json` carries `format_version` and the checksum of `model.safetensors`; the model is written first and the
config last (each atomically; the trainer removes an old config.json before it writes anything), so a run killed on
the way has no config.json and is refused with one line, never half-loaded.
Runs of format 1 (before `format_version` and the checksum) still load.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ActionrecError
from ..files import write_json
from .info import ModelInfo
from .pretrained import DEFAULT_WEIGHTS, build_model, get_spec, load_state, with_crop
from .weights import atomic_save_safetensors, tensors_sha256

RUN_FORMAT = "actionrec-run"
FORMAT_VERSION = 2  # 2: format_version and model_sha256 in config.json
_OLD_FORMATS = {"actionrec-run/1": 1}


def save_run(model: nn.Module, out: Path, config: Mapping[str, Any], trained_modules: Sequence[str]) -> None:
    """The trained modules only (the frozen rest is the named pretrained weights) + config.json, written atomically."""
    state = {f"{name}.{k}": v for name in trained_modules for k, v in getattr(model, name).state_dict().items()}
    atomic_save_safetensors(state, out / "model.safetensors", metadata={"format": RUN_FORMAT})
    write_json(out / "config.json", {"format": RUN_FORMAT, "format_version": FORMAT_VERSION,
                                     "model_sha256": tensors_sha256(state), **config})


def is_run_dir(path: str | os.PathLike) -> bool:
    """Whether `path` holds a finished run (config.json and model.safetensors): the one test, for the CLI and the page."""
    return (Path(path) / "config.json").is_file() and (Path(path) / "model.safetensors").is_file()


def _check_run_dir(run_dir: Path) -> None:
    """One line when `run_dir` is not there, is a file, or lacks the run's files (unfinished, or not a run)."""
    if not run_dir.exists():
        raise ActionrecError(f"{run_dir}: the run directory does not exist; check the path, or train one with "
                             f"`actionrec train DATA --out {run_dir}`")
    if not run_dir.is_dir():
        raise ActionrecError(f"{run_dir}: a file, not a run directory; give the folder `actionrec train --out` wrote")
    if not is_run_dir(run_dir):
        raise ActionrecError(f"{run_dir}: not a run directory (no config.json + model.safetensors: unfinished, or not "
                             "written by `actionrec train`); train one with `actionrec train`")


def _read_config(run_dir: Path) -> dict:
    try:
        config = json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError) as err:
        raise ActionrecError(f"{run_dir}/config.json: not readable ({err}); train the run again with `actionrec train`") from None
    version = config.get("format_version") if config.get("format") == RUN_FORMAT else _OLD_FORMATS.get(config.get("format"))
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ActionrecError(f"{run_dir}/config.json: run format {config.get('format')!r} version {version!r} is not one "
                             f"this actionrec reads (up to {FORMAT_VERSION}); upgrade actionrec or train the run again")
    return config


def _read_state(run_dir: Path, config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        state = load_file(str(run_dir / "model.safetensors"))
    except Exception as err:  # safetensors' own error types for truncated or foreign files
        raise ActionrecError(f"{run_dir}/model.safetensors: not readable ({str(err)[:120]}); train the run again") from None
    expected = config.get("model_sha256")
    if expected is not None and tensors_sha256(state) != expected:
        raise ActionrecError(f"{run_dir}/model.safetensors: checksum is not the one config.json recorded (altered, "
                             "or the run was interrupted while saving); train the run again")
    unknown = [k for k in state if k.split(".", 1)[0] not in config["trained_modules"]]
    if unknown:
        raise ActionrecError(f"{run_dir}/model.safetensors: unexpected tensor {unknown[0]}; the run directory is inconsistent")
    head, classes = state.get("head.weight"), config.get("classes")
    if head is not None and isinstance(classes, list) and head.shape[0] != len(classes):
        raise ActionrecError(f"{run_dir}: config.json lists {len(classes)} classes but the trained head has {head.shape[0]} "
                             "outputs (the run directory is inconsistent); train the run again")
    return state


def _identity(run_dir: Path, config: Mapping[str, Any]) -> str:
    """What the run's outputs depend on: its config (which records the model's checksum), or, for format 1, both files."""
    digest = hashlib.sha256((run_dir / "config.json").read_bytes())
    if config.get("model_sha256") is None:
        digest.update((run_dir / "model.safetensors").read_bytes())
    return "run:" + digest.hexdigest()[:24]


def load_run(run_dir: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """A trained run as a model: the pretrained backbone + the run's trained modules, loaded strictly."""
    run_dir = Path(run_dir)
    _check_run_dir(run_dir)
    config = _read_config(run_dir)
    state = _read_state(run_dir, config)
    try:
        classes = tuple(config["classes"])
        if config["weights"] is None:  # trained from random initialisation: every module is in the run
            spec = get_spec(DEFAULT_WEIGHTS[config["backbone"]])
            full, weights_sha256 = state, tensors_sha256(state)
        else:
            spec = get_spec(config["weights"])
            backbone, weights_sha256 = load_state(config["weights"])
            if weights_sha256 != config["weights_sha256"]:
                raise ActionrecError(f"{run_dir}: trained on other {config['weights']} weights than the cached ones; fetch the right ones or retrain")
            trained = tuple(f"{name}." for name in config["trained_modules"])
            full = {**{k: v for k, v in backbone.items() if not k.startswith(trained)}, **state}
        spec = with_crop(spec, int(config["preprocessing"]["crop"]))  # what the run was trained on
        info = ModelInfo(name=str(run_dir), spec=spec, categories=classes, weights_sha256=weights_sha256,
                         predict_frames=int(config["frames"]), identity=_identity(run_dir, config), run=config)
    except (KeyError, TypeError, ValueError) as err:
        raise ActionrecError(f"{run_dir}/config.json: missing or bad entry ({err}); train the run again") from None
    return build_model(info, full, device)

