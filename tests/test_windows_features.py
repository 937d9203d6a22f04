"""Per-window pooled features shared by runs (issue 17's speed target): a run that trained only its head gets its
window probabilities from the cached features of its frozen part, so a second run on the same backbone and cut
timelines a video without running the network, and gets the numbers the network would give.

Real footage: two head-only runs trained from the segments of a video stitched from real UCF101 clips, through the
real decoder and the real I3D weights."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from actionrec import load_model
from actionrec.apps.timeline import timeline
from actionrec.apps.windows import (_features_path, load_window_features, save_window_features, shares_features,
                                    window_probabilities)
from actionrec.cli import main
from actionrec.engine import engine_for
from actionrec.errors import ActionrecError
from videos import stitch

UCF = Path(__file__).resolve().parents[2] / "shared" / "ucf101_subset" / "UCF-101"
CLASSES = ("ApplyEyeMakeup", "BabyCrawling")


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> dict:
    """Two few-shot (head-only) runs from different segments of one ~28 s video stitched from 4 real UCF101 clips."""
    if not UCF.is_dir():
        pytest.skip(f"{UCF} is absent: the real-clip checks need ../shared")
    base = tmp_path_factory.mktemp("winfeatures")
    picks = [(UCF / c / f"v_{c}_g{g:02d}_c01.avi", c) for g in (1, 2) for c in CLASSES]
    video = base / "long.mp4"
    truth = stitch(video, picks)
    runs = {}
    for name, rows in (("a", truth), ("b", truth[:-1])):
        labels = base / f"labels_{name}.csv"
        labels.write_text("path,label,start,end\n" + "".join(f"long.mp4,{l},{a:.2f},{b:.2f}\n" for l, a, b in rows))
        runs[name] = base / f"run_{name}"
        assert main(["train", str(labels), "--out", str(runs[name]), "--cache", str(base / "features"), "--quiet"]) == 0
    return {"base": base, "video": video, **runs}


def test_a_second_run_timelines_from_the_first_runs_features_without_the_network(two_runs):
    a, b = load_model(two_runs["a"]), load_model(two_runs["b"])
    for run in ("a", "b"):
        config = json.loads((two_runs[run] / "config.json").read_text())
        assert config["trained_modules"] == ["head"]  # the few-shot head, no fine-tuning
    assert shares_features(a.engine) and shares_features(b.engine)
    assert a.info.identity != b.info.identity  # other runs: their probability cache entries would differ
    cache = two_runs["base"] / "timelines"
    first = window_probabilities(two_runs["video"], a, cache=cache)
    assert not first.from_cache and a.engine.clips_run >= len(first.starts) > 40
    entries = list((cache / "features").rglob("*.npz"))
    assert len(entries) == 1 and not list(cache.glob("??/*.npz"))  # features, no per-run probabilities

    before = b.engine.clips_run
    tl = timeline(two_runs["video"], b, cache=cache)
    assert b.engine.clips_run == before  # zero clips through the network
    assert tl.from_cache and len(tl.starts) == len(first.starts)
    direct = window_probabilities(two_runs["video"], b, cache=False)  # the network, the run's own _top path
    assert b.engine.clips_run > before and not direct.from_cache
    np.testing.assert_array_equal(tl.windows.starts, direct.starts)
    np.testing.assert_allclose(tl.windows.probs, direct.probs, rtol=0, atol=2e-6)
    assert (tl.windows.probs.argmax(1) == direct.probs.argmax(1)).all()
    again = window_probabilities(two_runs["video"], a, cache=cache)  # the first run reads them back too
    np.testing.assert_allclose(again.probs, first.probs, rtol=0, atol=2e-6)


def test_feature_keys_differ_by_precision_backend_cut_and_windows(two_runs):
    engine = engine_for(load_model(two_runs["a"], precision="fp32"))
    video, root = str(two_runs["video"]), two_runs["base"] / "keys"
    key = _features_path(root, video, engine, 0.64, 0.5, 16)
    assert key == _features_path(root, video, engine_for(load_model(two_runs["b"], precision="fp32")), 0.64, 0.5, 16)
    assert _features_path(root, video, engine, 0.64, 1.0, 16) != key  # another stride
    info, precision, backend = engine.info, engine.precision, engine.backend
    try:
        engine.precision = "bf16"  # features of different precisions never mix
        assert _features_path(root, video, engine, 0.64, 0.5, 16) != key
        engine.precision, engine.backend = precision, "torch" if backend != "torch" else "openvino"
        assert _features_path(root, video, engine, 0.64, 0.5, 16) != key
        engine.backend = backend
        engine.info = dataclasses.replace(info, run=dict(info.run, cut_endpoint="Mixed_5c"))
        assert _features_path(root, video, engine, 0.64, 0.5, 16) != key
    finally:
        engine.info, engine.precision, engine.backend = info, precision, backend


def test_a_damaged_features_entry_is_recomputed_with_one_warning(two_runs, tmp_path, capsys):
    model = load_model(two_runs["b"])
    cache = tmp_path / "timelines"
    first = window_probabilities(two_runs["video"], model, cache=cache)
    (entry,) = (cache / "features").rglob("*.npz")
    wf = load_window_features(entry)
    wf.features[3, 5] += 1.0  # altered on disk: the checksum no longer matches
    raw = dict(np.load(entry, allow_pickle=False))
    raw["features"] = wf.features
    with open(entry, "wb") as f:
        np.savez(f, **raw)
    with pytest.raises(ActionrecError, match="do not match their checksum"):
        load_window_features(entry)
    capsys.readouterr()
    before = model.engine.clips_run
    again = window_probabilities(two_runs["video"], model, cache=cache)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "warning" in err[0] and "computing them again" in err[0] and str(entry) in err[0]
    assert model.engine.clips_run > before and not again.from_cache
    np.testing.assert_allclose(again.probs, first.probs, rtol=0, atol=2e-6)
    entry.write_bytes(b"not a zip")  # truncated or garbled
    window_probabilities(two_runs["video"], model, cache=cache)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing or damaged" in err[0]
    save_window_features(tmp_path / "x.npz", load_window_features(entry))  # whole again, and round-trips


def test_fine_tuned_runs_temporal_heads_and_pretrained_weights_keep_their_own_probabilities(two_runs, i3d_kinetics):
    from types import SimpleNamespace

    engine = engine_for(load_model(two_runs["a"]))
    info = engine.info
    assert shares_features(engine)
    tuned = dataclasses.replace(info, run=dict(info.run, trained_modules=["Mixed_5b", "Mixed_5c", "head"]))
    assert not shares_features(SimpleNamespace(info=tuned, model=engine.model))  # its top blocks are its own
    assert not shares_features(SimpleNamespace(info=info, model=SimpleNamespace(temporal_head=object())))
    assert not shares_features(engine_for(i3d_kinetics))
