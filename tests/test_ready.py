"""A warm `actionrec predict` runs the compiled network the engine left on this machine without importing PyTorch
(actionrec.ready, actionrec.models.compiled): the same numbers as the PyTorch-built engine, a card used only while
its weights and IRs are the ones it was written from, and the full engine for anything the card does not hold."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from actionrec import errors
from actionrec.models import compiled
from actionrec.models.compiled import card_key, ir_entry, read_card, write_card
from actionrec.ready import ReadyEngine, ready_engine

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import json, sys
import actionrec.cli
status = actionrec.cli.main(['predict', {clip!r}, '--json', '--top', '5'])
print(json.dumps({{"status": status, "torch": "torch" in sys.modules}}))
"""


@pytest.fixture(scope="module")
def warm(i3d_kinetics, realclips):
    """archery.avi predicted in this process by the PyTorch-built engine (which writes the network's card)."""
    from actionrec import predict

    clip = realclips / "archery.avi"
    return clip, predict(clip, i3d_kinetics)[0]


def test_a_warm_predict_imports_no_pytorch_and_gives_the_engines_numbers(warm):
    clip, reference = warm
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.run([sys.executable, "-c", PROBE.format(clip=str(clip))], capture_output=True, text=True,
                           timeout=300, cwd=ROOT, env=env)
    assert child.returncode == 0, child.stderr
    *lines, last = child.stdout.strip().splitlines()
    assert json.loads(last) == {"status": 0, "torch": False}
    got = json.loads(lines[0])
    expected = reference.to_dict(5)
    assert [t["label"] for t in got["top"]] == [t["label"] for t in expected["top"]]
    assert np.allclose([t["prob"] for t in got["top"]], [t["prob"] for t in expected["top"]], atol=1e-5)


def test_a_warm_timeline_imports_no_pytorch_and_gives_the_engines_windows(warm, i3d_kinetics, tmp_path):
    from actionrec.apps.timeline import timeline

    clip = warm[0]
    reference = timeline(clip, i3d_kinetics, cache=False)  # once per frame: writes the step graph's card entry
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    probe = ("import sys, actionrec.cli\n"
             f"assert actionrec.cli.main(['timeline', {str(clip)!r}, '--no-cache', '--quiet', '--out', {str(tmp_path)!r}]) == 0\n"
             "print('torch' in sys.modules)")
    child = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip().splitlines()[-1] == "False"
    rows = np.loadtxt(tmp_path / "archery.windows.csv", delimiter=",", skiprows=1, usecols=range(3, 403))
    assert rows.shape == reference.probs.shape and np.abs(rows - reference.probs).max() < 2e-4
    got = json.loads((tmp_path / "archery.timeline.json").read_text())
    assert [s["label"] for s in got["segments"]] == [s.label for s in reference.segments]


def test_the_ready_engine_hands_what_its_card_lacks_to_the_full_engine(warm, i3d_kinetics):
    engine = ready_engine("i3d-kinetics400")
    assert isinstance(engine, ReadyEngine) and engine.info == i3d_kinetics.info
    clip = np.random.default_rng(0).uniform(-1, 1, (3, 64, 224, 224)).astype(np.float32)
    probs = engine.run_batch([clip], "probs")
    assert engine.clips_run == 1 and engine._full is None  # from the card's IR
    assert np.allclose(probs, i3d_kinetics.engine.run_batch([clip], "probs"), atol=1e-5)
    short = clip[:, :20]  # a shape class the card has not seen (an earlier process may have recorded it): the full
    engine._irs.pop(ir_entry("head", "i3d", short.shape), None)  # engine runs it, and records it
    assert np.allclose(engine.run_batch([short], "logits"), i3d_kinetics.engine.run_batch([short], "logits"), atol=1e-4)
    assert engine._full is not None and engine.clips_run == 1
    engine.run_batch([clip], "features")  # the card's shape again: its IR, not the full engine
    assert engine.clips_run == 2
    assert set(read_card(card_key("i3d-kinetics400", "auto", "auto"))["irs"]) >= {ir_entry("head", "i3d", clip.shape),
                                                                                    ir_entry("head", "i3d", short.shape)}


def test_a_compiled_network_that_fails_warns_once_and_the_full_engine_runs(warm, i3d_kinetics, tmp_path, monkeypatch):
    monkeypatch.setattr(errors, "_warned", set())
    card = read_card(card_key("i3d-kinetics400", "auto", "auto"))
    broken = tmp_path / "model.xml"
    broken.write_text("<net>not an IR</net>")
    engine = ReadyEngine({**card, "irs": {k: broken for k in card["irs"]}})
    clip = np.zeros((3, 64, 224, 224), np.float32)
    with pytest.warns(RuntimeWarning, match="could not run"):
        probs = engine.run_batch([clip], "probs")
    assert np.allclose(probs, i3d_kinetics.engine.run_batch([clip], "probs"), atol=1e-5)


def test_no_ready_engine_for_a_run_a_gpu_or_torchrun(warm, tmp_path, monkeypatch):
    assert ready_engine("i3d-kinetics400", device="cpu") is not None
    assert ready_engine(tmp_path) is None  # a run directory
    assert ready_engine("i3d-kinetics400", device="cuda") is None
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert ready_engine("i3d-kinetics400") is None


def test_a_card_is_used_only_while_its_weights_and_irs_are_the_ones_it_was_written_from(home, monkeypatch):
    weights = home / "weights" / "tiny.safetensors"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"weights" * 100)
    ir = compiled.compiled_dir() / "ir" / "abc" / "model.xml"
    ir.parent.mkdir(parents=True)
    ir.write_text("<net/>")
    ir.with_suffix(".bin").write_bytes(b"\0")
    key = card_key("tiny", "auto", "auto")
    info = {"name": "tiny"}
    write_card(key, info=info, network={"shapes": "exact", "has_step_logits": False}, precision="bf16",
               backend="openvino", config={"A": "1"}, weights=weights, irs={ir_entry("head", "exact", (3, 8, 32, 32)): ir})
    card = read_card(key)
    assert card["irs"] == {"head|3x8x32x32": ir} and card["precision"] == "bf16" and card["info"] == info

    assert card_key("tiny", "fp32", "auto") != key and card_key("tiny", "auto", "torch") != key
    monkeypatch.setenv("ACTIONREC_PRECISION", "fp32")
    assert card_key("tiny", "auto", "auto") != key  # what "auto" means changed
    monkeypatch.delenv("ACTIONREC_PRECISION")
    assert card_key("tiny", "auto", "auto") == key

    weights.write_bytes(b"other weights" * 50)  # replaced weights (fetch --force, another user file)
    assert read_card(key) is None
    weights.write_bytes(b"weights" * 100)
    assert read_card(key) is not None
    ir.with_suffix(".bin").unlink()  # a removed IR
    assert read_card(key) is None
    ir.with_suffix(".bin").write_bytes(b"\0")
    (compiled.compiled_dir() / "cards" / f"{key}.json").write_text("{not json")  # damaged (a killed writer cannot
    assert read_card(key) is None  # leave one: written atomically; a disk can)
