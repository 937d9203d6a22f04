"""A run directory whose files were altered, truncated or no longer agree is refused in one line; format 1 still loads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from actionrec import load_model
from actionrec.cli import main
from actionrec.errors import ActionrecError


@pytest.fixture
def run_copy(demo_run, tmp_path) -> Path:
    return Path(shutil.copytree(demo_run[0], tmp_path / "run"))


def refused(run: Path, capsys, needle: str) -> None:
    """load_model raises one line with `needle`, and the CLI says it in one line with exit status 2."""
    with pytest.raises(ActionrecError, match=needle) as err:
        load_model(run)
    assert "\n" not in str(err.value)
    assert main(["predict", str(run / "any.mp4"), "--run", str(run)]) == 2  # the run is loaded before any video
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in lines[0], lines


def test_the_shared_run_loads(run_copy):
    model = load_model(run_copy)
    assert model.info.categories == ("Bouncing", "Sliding", "Spinning", "Zooming")
    assert json.loads((run_copy / "config.json").read_text())["format_version"] == 2


def test_altered_trained_layers_are_refused(run_copy, capsys):
    from safetensors.torch import load_file, save_file

    state = load_file(str(run_copy / "model.safetensors"))
    state["head.bias"] = state["head.bias"] + torch.tensor([0.0, 0.0, 5.0, 0.0])  # a valid file with other values
    save_file(state, str(run_copy / "model.safetensors"), metadata={"format": "actionrec-run"})
    refused(run_copy, capsys, "checksum")


def test_truncated_trained_layers_are_refused(run_copy, capsys):
    path = run_copy / "model.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    refused(run_copy, capsys, "not readable")


def test_classes_that_no_longer_match_the_head_are_refused(run_copy, capsys):
    config = json.loads((run_copy / "config.json").read_text())
    config["classes"] = config["classes"][:3]
    (run_copy / "config.json").write_text(json.dumps(config))
    refused(run_copy, capsys, "lists 3 classes but the trained head has 4 outputs")


def test_a_run_of_format_1_still_loads(run_copy):
    config = json.loads((run_copy / "config.json").read_text())
    for key in ("format_version", "model_sha256"):
        del config[key]
    config["format"] = "actionrec-run/1"
    (run_copy / "config.json").write_text(json.dumps(config))
    model = load_model(run_copy)
    assert model.info.categories[0] == "Bouncing" and model.info.identity.startswith("run:")
