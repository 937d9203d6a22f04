"""Long videos once per frame: I3D over chunks with real context at their borders gives the per-step logits of one
pass over the whole video, and windows averaged from steps agree with windows run as clips."""

from __future__ import annotations

import numpy as np
import pytest

from actionrec.apps import windows as W
from actionrec.engine import engine_for


@pytest.fixture(scope="module")
def whole_pass(i3d_kinetics, realclips):
    """Per-step logits of archery.avi (5.2 s, 17 steps) from a single chunk: the reference."""
    mp = pytest.MonkeyPatch()
    mp.setattr(W, "CHUNK_STEPS", 64)
    try:
        yield W.step_logits(str(realclips / "archery.avi"), engine_for(i3d_kinetics))
    finally:
        mp.undo()


def relative_gap(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_chunks_with_context_match_one_pass_and_without_do_not(i3d_kinetics, realclips, whole_pass, monkeypatch):
    starts, ends, reference = whole_pass
    assert len(starts) == 17 and np.allclose(ends - starts, 0.32, atol=0.05)
    monkeypatch.setattr(W, "CHUNK_STEPS", 4)
    gaps = {}
    for context in (0, 4):
        monkeypatch.setattr(W, "CONTEXT_STEPS", context)
        s, e, logits = W.step_logits(str(realclips / "archery.avi"), engine_for(i3d_kinetics))
        assert np.array_equal(s, starts) and logits.shape == reference.shape
        gaps[context] = relative_gap(logits, reference)
    assert gaps[4] < 0.15 < gaps[0] and gaps[4] < gaps[0] / 3, gaps  # real context removes the chunk borders' effect


def test_windows_from_steps_name_the_action_like_windowed_clips(i3d_kinetics, realclips):
    label = i3d_kinetics.info.categories.index("archery")
    for per_step in (True, False):
        wp = W.window_probabilities(str(realclips / "archery.avi"), i3d_kinetics, cache=False, per_step=per_step)
        assert (wp.probs.argmax(1) == label).all() and wp.probs[:, label].min() > 0.9, per_step
