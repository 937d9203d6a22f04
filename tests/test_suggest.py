"""Suggestions to review (issue 17 item 5): where a model disagrees with labelled segments and where it is least sure.

The decisions on made-up probabilities (exact stretches), then a run trained from the segments of a long video
stitched from real UCF101 clips: a deliberately wrong label is reported as a disagreement, suggestions rank across
videos, the top N are the first N, and `actionrec suggest` prints them as text or JSON."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from actionrec.apps.suggest import MIN_STRETCH, Suggestion, decision_margins, labelled_by_video, suggest, suggestions_of
from actionrec.apps.timeline import build_timeline
from actionrec.apps.windows import WindowProbs
from actionrec.cli import main
from actionrec.data.manifest import load_manifest
from actionrec.errors import ActionrecError
from videos import stitch

UCF = Path(__file__).resolve().parents[2] / "shared" / "ucf101_subset" / "UCF-101"
CLASSES = ("ApplyEyeMakeup", "BabyCrawling")


# ----------------------------------------------------------------------------------------------- made-up probabilities


def made_up_timeline(p_first: list[float], video: str = "/videos/a.mp4", threshold: float = 0.5):
    """A 2-class timeline with P(A) of each window given (windows of 0.64 s every 0.5 s), P(B) = 1 - P(A)."""
    n = len(p_first)
    starts = np.arange(n) * 0.5
    probs = np.stack([p_first, 1 - np.asarray(p_first)], 1).astype(np.float32)
    wp = WindowProbs(video, "made-up", ("A", "B"), starts, starts + 0.64, probs, float(starts[-1] + 0.64), 25.0, 0.64,
                     0.5, 16)
    return build_timeline(wp, thresholds={"A": threshold, "B": threshold}, threshold_source="given")


# 0-8 s confident A, 8-11 s unsure (A at 0.55), 11-15 s confident B, 15-18 s unsure (B at 0.55), 18-20 s confident A
P_A = [0.95] * 16 + [0.55] * 6 + [0.05] * 8 + [0.45] * 6 + [0.95] * 4


def test_margins_are_the_closer_of_the_runner_up_and_the_threshold():
    tl = made_up_timeline([0.95, 0.95, 0.95, 0.6, 0.6, 0.6], threshold=0.8)
    margins = decision_margins(tl)
    assert margins[0] == pytest.approx(0.75)  # (0.95 - 0.8) / (1 - 0.8) is larger than 0.95 - 0.05
    assert margins[-1] == pytest.approx(0.2)  # 0.6 - 0.4 = 0.2, (0.8 - 0.6) / 0.8 = 0.25


def test_unsure_stretches_without_labels_are_suggested_and_confident_ones_are_not():
    every = suggestions_of(made_up_timeline(P_A), [])
    got = [s for s in every if s.kind != "unlabelled"]
    assert [(s.kind, s.label) for s in got] == [("uncertain", "A"), ("uncertain", "B")]
    (a, b) = got
    unlabelled = [s for s in every if s.kind == "unlabelled"]  # the confident stretches: the model's labels to accept
    assert [s.label for s in unlabelled] == ["A", "B", "A"] and all(s.score < 0 < a.score and s.current is None and s.confidence > 0.5 for s in unlabelled)
    assert not any(min(s.end, u.end) - max(s.start, u.start) > 0.5 * u.duration for s in got for u in unlabelled)
    assert a.start == pytest.approx(8.0, abs=0.5) and a.end == pytest.approx(11.0, abs=0.5)
    assert b.start == pytest.approx(15.0, abs=0.5) and b.end == pytest.approx(18.0, abs=0.5)
    assert a.confidence == pytest.approx(0.55, abs=0.01) and 0.8 < a.score < 1.0
    assert a.current is None and b.current is None


def test_a_label_the_model_contradicts_is_a_disagreement_and_outranks_uncertainty():
    got = suggestions_of(made_up_timeline(P_A), [(11.0, 15.0, "A")])
    disagree = [s for s in got if s.kind == "disagrees"]
    assert len(disagree) == 1
    d = disagree[0]
    assert (d.label, d.current) == ("B", "A") and d.confidence == pytest.approx(0.95, abs=0.01)
    assert d.start >= 11.0 and d.end <= 15.0 and d.duration > 3.0
    assert d.score == pytest.approx(1 + d.confidence) and all(d.score > s.score for s in got if s is not d)


def test_stretches_labelled_as_the_model_says_are_skipped_and_a_short_overlap_is_no_disagreement():
    labelled = [(0.0, 11.0, "A"), (11.0, 15.0, "B"), (15.0, 18.0, "B"), (18.0, 20.0, "A")]
    assert suggestions_of(made_up_timeline(P_A), labelled) == []
    # a label spilling half a second over a cut is within the model's own cut: no disagreement
    assert all(s.kind != "disagrees" for s in suggestions_of(made_up_timeline(P_A), [(0.0, 11.0 + MIN_STRETCH / 2, "A")]))


def test_an_unsure_stretch_labelled_otherwise_names_the_current_label():
    got = suggestions_of(made_up_timeline(P_A), [(15.0, 18.0, "A")])
    (s,) = [s for s in got if s.start > 14 and s.kind != "unlabelled"]
    assert s.kind == "disagrees" and (s.label, s.current) == ("B", "A")  # B at 0.55 is over the threshold: a class
    got = suggestions_of(made_up_timeline(P_A, threshold=0.6), [(15.0, 18.0, "A")])
    (s,) = [s for s in got if s.start > 14 and s.kind != "unlabelled"]
    assert s.kind == "uncertain" and (s.label, s.current) == ("none", "A")  # under its threshold: not a disagreement


def test_a_confident_background_class_over_a_labelled_action_disagrees():
    n = len(P_A)
    starts = np.arange(n) * 0.5
    p = np.asarray(P_A)
    probs = np.stack([p, 1 - p], 1).astype(np.float32)
    wp = WindowProbs("/v.mp4", "made-up", ("A", "none"), starts, starts + 0.64, probs, float(starts[-1] + 0.64), 25.0,
                     0.64, 0.5, 16)
    tl = build_timeline(wp, thresholds={"A": 0.5, "none": 0.5}, threshold_source="given")
    (d,) = [s for s in suggestions_of(tl, [(11.0, 15.0, "A")]) if s.kind == "disagrees"]
    assert (d.label, d.current) == ("none", "A") and d.confidence == pytest.approx(0.95, abs=0.01)


def test_segments_are_grouped_by_video_and_a_whole_video_row_spans_it(tmp_path):
    video = tmp_path / "v.mp4"
    rows = load_manifest_rows(tmp_path, f"path,label,start,end\n{video.name},A,1,2\n")
    assert labelled_by_video(rows) == {str(video.resolve()): [(1.0, 2.0, "A")]}
    whole = replace(rows[0], path=str(video))
    assert labelled_by_video([whole])[str(video.resolve())] == [(0.0, float("inf"), "A")]
    with pytest.raises(ActionrecError, match="needs .video, .start, .end and .label"):
        labelled_by_video([("v.mp4", 1, 2, "A")])


def load_manifest_rows(folder: Path, body: str):
    """Samples of a manifest of (unread) ranges: the manifest checks a range against its video, so write one."""
    from videos import coded_frames, write_video

    write_video(folder / "v.mp4", coded_frames(100, 48, 64), 25.0)
    (folder / "labels.csv").write_text(body)
    return load_manifest(folder / "labels.csv")


def test_to_dict_is_json():
    s = Suggestion("/v.mp4", 1.23456, 4.5, "disagrees", "A", 0.912345, 1.912345, "B")
    assert json.loads(json.dumps(s.to_dict())) == {"video": "/v.mp4", "start": 1.235, "end": 4.5, "kind": "disagrees",
                                                   "label": "A", "confidence": 0.9123, "score": 1.9123, "current": "B"}


# ----------------------------------------------------------------------------------------------- a real run


@pytest.fixture(scope="module")
def stitched_run(tmp_path_factory) -> dict:
    """A run trained (head only) from the segments of a 41 s video stitched from 6 real UCF101 clips of 2 classes."""
    if not UCF.is_dir():
        pytest.skip(f"{UCF} is absent: the real-clip checks need ../shared")
    base = tmp_path_factory.mktemp("suggest")
    picks = [(UCF / c / f"v_{c}_g{g:02d}_c01.avi", c) for g in (1, 2, 3) for c in ("BabyCrawling", "ApplyEyeMakeup")]
    video = base / "long.mp4"
    truth = stitch(video, picks)
    labels = base / "labels.csv"
    labels.write_text("path,label,start,end\n" + "".join(f"long.mp4,{l},{a:.2f},{b:.2f}\n" for l, a, b in truth))
    run = base / "run"
    assert main(["train", str(labels), "--out", str(run), "--cache", str(base / "features"), "--epochs", "10",
                 "--finetune-epochs", "0", "--quiet"]) == 0
    return {"base": base, "video": video, "truth": truth, "labels": labels, "run": run, "timelines": base / "timelines"}


def wrong_segments(stitched_run: dict, index: int = 2):
    """The manifest's segments with segment `index` given the other class."""
    segments = load_manifest(stitched_run["labels"])
    wrong = next(c for c in CLASSES if c != segments[index].label)
    return segments[:index] + [replace(segments[index], label=wrong)] + segments[index + 1:], segments[index]


def test_a_wrong_segment_label_on_real_footage_is_reported_as_a_disagreement(stitched_run):
    segments, changed = wrong_segments(stitched_run)
    got = suggest(stitched_run["run"], [stitched_run["video"]], segments, top=10, cache=stitched_run["timelines"])
    first = got[0]
    assert first.kind == "disagrees" and first.video == str(stitched_run["video"])
    assert (first.label, first.current) == (changed.label, next(c for c in CLASSES if c != changed.label))
    overlap = min(first.end, changed.end) - max(first.start, changed.start)
    assert overlap >= 0.8 * (changed.end - changed.start) and first.confidence > 0.6
    assert [s for s in got if s.kind == "disagrees"] == [first]  # the correct labels raise no disagreement
    # with every label right there is nothing to disagree with
    right = suggest(stitched_run["run"], [stitched_run["video"]], load_manifest(stitched_run["labels"]), top=10,
                    cache=stitched_run["timelines"])
    assert all(s.kind == "uncertain" for s in right)


def test_suggestions_rank_over_videos_and_top_n_are_the_first(stitched_run, tmp_path):
    copy = shutil.copy(stitched_run["video"], tmp_path / "unlabelled.mp4")  # same footage, no segments
    segments, changed = wrong_segments(stitched_run)
    calls = []
    every = suggest(stitched_run["run"], [stitched_run["video"], copy], segments, top=100,
                    cache=stitched_run["timelines"], progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (2000, 2000) and all(d <= t for d, t in calls)
    scores = [s.score for s in every]
    assert scores == sorted(scores, reverse=True)
    kinds = [s.kind for s in every]
    assert kinds[0] == "disagrees" and kinds == sorted(kinds)  # disagreements, then uncertain, then unlabelled stretches
    assert {s.video for s in every if s.kind in ("uncertain", "unlabelled")} >= {str(copy)}  # the copy has its own
    assert not any(s.kind == "disagrees" and s.video == str(copy) for s in every)
    assert suggest(stitched_run["run"], [stitched_run["video"], copy], segments, top=2,
                   cache=stitched_run["timelines"]) == every[:2]


def test_bad_input_is_one_line_and_a_bad_video_is_skipped_when_asked(stitched_run, tmp_path):
    with pytest.raises(ActionrecError, match="--top must be a whole number >= 1"):
        suggest(stitched_run["run"], [stitched_run["video"]], top=0)
    with pytest.raises(ActionrecError, match="at least one video"):
        suggest(stitched_run["run"], [])
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video")
    skipped = []
    got = suggest(stitched_run["run"], [bad, stitched_run["video"]], cache=stitched_run["timelines"],
                  on_error=lambda video, message: skipped.append((video, message)))
    assert [v for v, _ in skipped] == [str(bad)] and str(bad) in skipped[0][1]
    assert all(s.video == str(stitched_run["video"]) for s in got)
    with pytest.raises(ActionrecError, match="broken.mp4"):
        suggest(stitched_run["run"], [bad], cache=stitched_run["timelines"])


def test_the_cli_reads_a_manifest_and_prints_text_or_json(stitched_run, tmp_path, capsys):
    segments, changed = wrong_segments(stitched_run)
    rows = "".join(f"long.mp4,{s.label},{s.start:.2f},{s.end:.2f}\n" for s in segments)
    labels = stitched_run["base"] / "wrong.csv"  # beside the video: its paths are relative to the manifest
    labels.write_text("path,label,start,end\n" + rows)
    common = ["suggest", "--run", str(stitched_run["run"]), str(labels), "--cache", str(stitched_run["timelines"]), "--quiet"]
    capsys.readouterr()
    assert main(common + ["--json", "--top", "3"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got == [s.to_dict() for s in suggest(stitched_run["run"], [stitched_run["video"]], segments, top=3,
                                                cache=stitched_run["timelines"])]
    assert got[0]["kind"] == "disagrees" and got[0]["current"] != changed.label and len(got) <= 3
    assert main(common) == 0
    text = capsys.readouterr().out.splitlines()
    assert text[0].startswith(f"{len(got)} suggestion") and "from 1 of 1 videos" in text[0]
    assert "disagrees" in text[1] and f"model: {changed.label}" in text[1] and f"labelled {got[0]['current']}" in text[1]
    # a bad --top or --threshold is one line (status 2) before any video is read; a bad video is skipped (status 1)
    assert main(common + ["--top", "0"]) == 2
    assert "--top must be a whole number" in capsys.readouterr().err
    assert main(common + ["--threshold", "1.5"]) == 2
    assert "--threshold" in capsys.readouterr().err
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video")
    assert main(["suggest", "--run", str(stitched_run["run"]), str(bad), str(stitched_run["video"]), "--json", "--quiet",
                 "--cache", str(stitched_run["timelines"])]) == 1
    out = capsys.readouterr()
    assert "skipped" in out.err and "broken.mp4" in out.err and isinstance(json.loads(out.out), list)
