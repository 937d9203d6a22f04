"""Segments of long videos as training data: manifest rows with time ranges (and every bad row), the clips each
segment yields, groups and the one-video split policy, the background of a fully labelled video, the feature cache
keyed by clip position, and one `actionrec train` from a segment manifest over a long stitched real video."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from actionrec.cli import main
from actionrec.data.datasets import load_dataset, make_splits
from actionrec.data.manifest import load_manifest
from actionrec.data.samples import NONE_LABEL, Sample, clip_address, parse_address
from actionrec.data.sampling import range_clip
from actionrec.data.segments import (
    MAX_CLIPS_PER_SEGMENT, background_ranges, clips_in, format_time, parse_time, segment_clips,
)
from actionrec.data.splits import MIN_SEGMENTS_TO_HOLD_OUT
from actionrec.data.video import read_clips
from actionrec.errors import ActionrecError
from test_training_cache import cache_for
from videos import coded_frames, decode_indices, stitch, write_video

UCF = Path(__file__).resolve().parents[2] / "shared" / "ucf101_subset" / "UCF-101"
FPS = 25.0


@pytest.fixture(scope="module")
def long_video(tmp_path_factory) -> Path:
    """A 40 s coded video (1000 frames, each showing its index)."""
    return write_video(tmp_path_factory.mktemp("long") / "long.mp4", coded_frames(1000, height=48, width=64), FPS)


def manifest(folder: Path, body: str, name: str = "labels.csv") -> Path:
    path = folder / name
    path.write_text(body)
    return path


# ----------------------------------------------------------------------------------------------- times


@pytest.mark.parametrize("text, seconds", [
    ("12.5", 12.5), ("0", 0.0), (".5", 0.5), ("75", 75.0), ("1:05.5", 65.5), ("1:05", 65.0), ("0:00.0", 0.0),
    ("12:00", 720.0), ("1:02:03.5", 3723.5), (" 2:03 ", 123.0),
])
def test_times_in_seconds_m_ss_and_h_mm_ss(text, seconds):
    assert parse_time(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "abc", "-1", "1:60", "1:75.5", "1:60:00", "1::2", "1:2:3:4", "1,5", "5s"])
def test_a_bad_time_says_the_forms(text):
    with pytest.raises(ValueError, match="m:ss.s"):
        parse_time(text)


def test_format_time_reads_back():
    for seconds in (0.0, 5.25, 65.5, 3723.5, 59.96):
        assert parse_time(format_time(seconds)) == pytest.approx(seconds, abs=0.05)
    assert format_time(65.5) == "1:05.5" and format_time(3723.5) == "1:02:03.5"


def test_a_sample_address_holds_the_video_the_range_and_the_clip():
    s = Sample(clip_address("/d/v.mp4", 1.5, 20.125, (2, 8)), "A", "g")
    assert (s.video, s.start, s.end, s.clip) == ("/d/v.mp4", 1.5, 20.125, (2, 8))
    assert s.path == "/d/v.mp4#t=1.5,20.125&clip=2of8"
    whole = Sample("/d/v.mp4", "A", "g")
    assert (whole.video, whole.start, whole.end, whole.clip) == ("/d/v.mp4", None, None, None)
    assert parse_address("/d/odd#name.mp4") == ("/d/odd#name.mp4", None, None, None)


# ----------------------------------------------------------------------------------------------- manifest rows


def test_segment_rows_with_header_time_forms_groups_and_old_rows(tmp_path, long_video):
    other = write_video(tmp_path / "clip.mp4", coded_frames(30), FPS)
    csv = manifest(tmp_path, (
        "path,label,start,end,group,split\n"
        f"{long_video},Jump,0,5\n"
        f"{long_video},Run,0:05.5,0:12\n"
        f"{long_video},Jump,0:00:20,0:00:31.25\n"
        "clip.mp4,Run,,,mine,train\n"
    ))
    samples = load_manifest(csv)
    assert [(s.label, s.start, s.end) for s in samples] == [
        ("Jump", 0.0, 5.0), ("Run", 5.5, 12.0), ("Jump", 20.0, 31.25), ("Run", None, None)]
    assert {s.group for s in samples[:3]} == {str(long_video)}  # every segment of one video: one group
    assert all(s.video == str(long_video) for s in samples[:3])
    assert samples[3].path == str(other) and samples[3].group == "mine" and samples[3].split == "train"


def test_segment_rows_without_header_and_old_forms_stay_valid(tmp_path, long_video):
    write_video(tmp_path / "a.mp4", coded_frames(30), FPS)
    csv = manifest(tmp_path, f"{long_video},Jump,1,4\n{long_video},Run,4,9,g7\na.mp4,Jump,g1\na2.mp4,Run,g2,test\n"
                             .replace("a2.mp4", str(write_video(tmp_path / "a2.mp4", coded_frames(30), FPS))))
    samples = load_manifest(csv)
    assert [(s.label, s.start, s.end, s.group) for s in samples] == [
        ("Jump", 1.0, 4.0, str(long_video)), ("Run", 4.0, 9.0, "g7"), ("Jump", None, None, "g1"),
        ("Run", None, None, "g2")]
    assert samples[3].split == "test"


@pytest.mark.parametrize("rows, fragments", [
    ("{v},Jump,5,5\n", ["line 2", "before the end"]),
    ("{v},Jump,7,3\n", ["line 2", "before the end"]),
    ("{v},Jump,30,45\n", ["line 2", "ends after the end", "0:40.0", "fix the end"]),
    ("{v},Jump,41,45\n", ["line 2", "after the end"]),
    ("{bad},Jump,0,2\n", ["line 2", "bad.mp4"]),
    ("{v},,0,2\n", ["line 2", "label"]),
    ("{v},Jump,0,2\n{v},Run,3,4\n{v},Jump,0,2\n", ["line 4", "line 2", "already listed", "remove one"]),
    ("{v},Jump,0,2\n{v},Run,1.5,4\n", ["line 3", "overlaps", "line 2", "move an edge"]),
    ("{v},Jump,0,10\n{v},none,9,12\n", ["line 3", "overlaps", "(none)"]),
    ("{v},Jump,1,\n", ["line 2", "both a start and an end"]),
    ("{v},Jump,1,1:75\n", ["line 2", "1:75", "m:ss.s"]),
    ("{v},Jump,a,b\n", ["line 2", "'a' is not a time"]),
    ("{v},Jump\n{v},Run,1,2\n", ["line 3", "labelled whole on line 2", "by ranges on line 3"]),
    ("{v},Jump\n{v},none\n", ["line 3", "labelled whole on line 2"]),
    ("{v},Jump,0,2,,train\n{v},Run,3,4,,test\n", ["line 3", "train", "test", "line 2"]),
])
def test_every_bad_segment_row_gets_one_line_naming_file_line_and_fix(tmp_path, long_video, rows, fragments):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    csv = manifest(tmp_path, "path,label,start,end,group,split\n" + rows.format(v=long_video, bad=bad))
    with pytest.raises(ActionrecError) as err:
        load_manifest(csv)
    message = str(err.value)
    assert "\n" not in message and str(csv) in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_overlapping_segments_of_one_label_are_allowed_and_a_range_just_past_the_end_is_cut(tmp_path, long_video):
    csv = manifest(tmp_path, f"path,label,start,end\n{long_video},Jump,0,10\n{long_video},Jump,5,15\n"
                             f"{long_video},Run,30,40.2\n")
    samples = load_manifest(csv)
    assert [(s.start, s.end) for s in samples] == [(0.0, 10.0), (5.0, 15.0), (30.0, 40.0)]


# ----------------------------------------------------------------------------------------------- background


def test_background_ranges_are_the_gaps_at_least_a_second_long():
    assert background_ranges(40.0, [(5, 10), (10.5, 20), (30, 39.5)]) == [(0.0, 5), (20, 30)]  # 0.5 s gaps: no
    assert background_ranges(10.0, []) == [(0.0, 10.0)]
    assert background_ranges(10.0, [(0, 6), (2, 4)]) == [(6, 10.0)]  # nested ranges


def test_a_fully_labelled_video_gives_none_segments_and_an_unmarked_one_does_not(tmp_path, long_video):
    second = write_video(tmp_path / "second.mp4", coded_frames(250), FPS)  # 10 s, not marked: unknown time
    csv = manifest(tmp_path, (
        "path,label,start,end\n"
        f"{long_video},Jump,5,10\n"
        f"{long_video},Run,20,25\n"
        f"{long_video},none,30,32\n"      # an explicit background range
        f"{long_video},none\n"            # fully labelled: the rest of its time is background
        f"{second},Jump,2,4\n"
    ))
    samples = load_manifest(csv)
    none = sorted((s.start, s.end) for s in samples if s.label == NONE_LABEL)
    assert none == [(0.0, 5.0), (10.0, 20.0), (25.0, 30.0), (30.0, 32.0), (32.0, 40.0)]
    assert all(s.video == str(long_video) and s.group == str(long_video) for s in samples if s.label == NONE_LABEL)
    assert [s.label for s in samples if s.video == str(second)] == ["Jump"]


def test_a_class_named_none_elsewhere_is_the_same_class_as_the_background(tmp_path, long_video):
    folder = tmp_path / "folders"
    for label in ("None", "Jump"):
        (folder / label).mkdir(parents=True)
        for i in range(3):
            write_video(folder / label / f"{label}{i}.mp4", coded_frames(20, first=i), FPS)
    csv = manifest(tmp_path, f"path,label,start,end\n{long_video},Jump,5,10\n{long_video},None\n")
    samples = load_dataset([folder, csv], say=lambda m: None)
    assert sorted({s.label for s in samples}) == ["Jump", "none"]  # one class, spelled as the timeline does
    assert Counter(s.label for s in samples)["none"] == 3 + 2  # 3 folder clips + 0-5 s and 10-40 s of the video
    other = write_video(tmp_path / "other.mp4", coded_frames(250), FPS)
    named = load_dataset([csv, manifest(tmp_path, f"path,label,start,end\n{other},Run,2,8\n", "b.csv")],
                         classes="Jump,Run")
    assert sorted({s.label for s in named}) == ["Jump", "Run", "none"]  # the background is not one of the classes


# ----------------------------------------------------------------------------------------------- clips of a segment


def test_clips_per_segment_count_and_cap():
    assert [clips_in(x) for x in (0.2, 0.99, 1.0, 2.5, 7.99, 8.0, 300.0)] == [1, 1, 1, 2, 7, 8, MAX_CLIPS_PER_SEGMENT]
    segs = [Sample(clip_address("/v.mp4", a, b), "A", "g") for a, b in ((0, 0.4), (10, 13.5), (20, 320))]
    clips = segment_clips(segs + [Sample("/w.mp4", "A", "h")])
    per = Counter((c.start, c.end) for c in clips if c.start is not None)
    assert per == {(0.0, 0.4): 1, (10.0, 13.5): 3, (20.0, 320.0): MAX_CLIPS_PER_SEGMENT}
    assert [c.clip for c in clips if c.start == 10.0] == [(0, 3), (1, 3), (2, 3)]
    assert clips[-1].path == "/w.mp4" and all(c.label == "A" for c in clips)


def test_clips_of_a_segment_are_spread_evenly_inside_it_and_a_short_one_loops_its_own_frames(long_video):
    # 16 frames at 25 fps in a video of 1000 frames; the segment 10-20 s is frames 250-499
    spans = [range_clip(1000, FPS, 10.0, 20.0, n=16, part=(k, 8)) for k in range(8)]
    centres = [float(s.frame_indices.mean()) for s in spans]
    assert all(250 <= int(s.frame_indices.min()) and int(s.frame_indices.max()) < 500 for s in spans)
    assert np.allclose(np.diff(centres), 250 / 8, atol=1.0)  # one clip centred in each eighth
    assert centres[0] == pytest.approx(250 + 250 / 16, abs=1.5)
    rng = np.random.default_rng(0)
    for k in range(8):  # an augmented clip starts in its own part and stays in the segment
        s = range_clip(1000, FPS, 10.0, 20.0, n=16, part=(k, 8), rng=rng)
        assert 250 + k * 250 // 8 <= int(s.frame_indices[0]) <= 250 + (k + 1) * 250 // 8
        assert int(s.frame_indices.max()) < 500
    short = range_clip(1000, FPS, 4.0, 4.2, n=16)  # 5 frames: looped, never outside the segment
    assert short.looped and set(short.frame_indices.tolist()) == set(range(100, 105))
    # the decoder gives exactly those frames
    clip = read_clips(long_video, [spans[3], short])
    assert decode_indices(clip[0].frames) == spans[3].frame_indices.tolist()
    assert decode_indices(clip[1].frames) == short.frame_indices.tolist()


# ----------------------------------------------------------------------------------------------- groups and splits


def _segments(video: str, labels: list[str], length: float = 4.0, group: str | None = None) -> list[Sample]:
    return [Sample(clip_address(video, i * length, (i + 1) * length), label, group or video)
            for i, label in enumerate(labels)]


def test_segments_of_one_source_video_never_straddle_splits():
    samples = []
    for v in range(6):
        samples += _segments(f"/d/v{v}.mp4", ["A", "B", "A", "B"])
    splits = make_splits(samples, seed=3)
    side = {}
    for name in ("train", "val", "test"):
        for s in getattr(splits, name):
            assert side.setdefault(s.video, name) == name, f"{s.video} in {side[s.video]} and {name}"
    assert {side[f"/d/v{v}.mp4"] for v in range(6)} == {"train", "val", "test"}
    assert "one source video" not in splits.policy
    # train and val segments are cut into clips (4 s: 4 clips each), test segments are scored whole
    assert all(s.clip is not None for s in splits.train + splits.val)
    assert all(s.clip is None and s.start is not None for s in splits.test)
    assert Counter(s.clip[1] for s in splits.train) == {4: len(splits.train)}


def test_one_video_draws_validation_and_test_by_whole_segments():
    labels = ["A", "B"] * 6  # 6 segments of each class in one long video
    splits = make_splits(_segments("/d/long.mp4", labels), seed=0)
    assert "one source video: test and val drawn by whole segments" in splits.policy
    where = defaultdict(set)
    for name in ("train", "val", "test"):
        for s in getattr(splits, name):
            where[(s.start, s.end)].add(name)
    assert all(len(v) == 1 for v in where.values())  # clips of one segment stay together
    counts = Counter((next(iter(v)), lab) for (a, _), v in where.items() for lab in [labels[int(a // 4)]])
    for c in ("A", "B"):
        assert counts[("test", c)] >= 1 and counts[("val", c)] >= 1 and counts[("train", c)] >= 2
    assert len(splits.train) == 4 * sum(1 for v in where.values() if v == {"train"})  # 4 clips per 4 s segment


def test_too_few_segments_are_all_kept_for_training_and_the_policy_says_so():
    labels = ["A", "B", "A", "B", "B", "B"]  # A: 2 segments, B: 4
    assert MIN_SEGMENTS_TO_HOLD_OUT == 3
    splits = make_splits(_segments("/d/long.mp4", labels), seed=0)
    assert "too few groups" in splits.policy and "for A" in splits.policy
    counts = splits.counts()
    assert counts["A"] == {"train": 2 * 4, "val": 0, "test": 0}  # both of A's segments train (4 clips each)
    assert counts["B"]["test"] == 1 and counts["B"]["val"] > 0


# ----------------------------------------------------------------------------------------------- the feature cache


def test_adding_or_relabelling_a_segment_computes_only_the_new_clips(tmp_path, long_video):
    def clips(rows: str) -> list[str]:
        return [s.path for s in segment_clips(load_manifest(manifest(tmp_path, "path,label,start,end\n" + rows)))]

    first = f"{long_video},Jump,2,5\n{long_video},Run,10,12\n"
    cache = cache_for(tmp_path / "cache")
    got = cache.extract(clips(first), views=[0, 1])
    assert cache.backbone_calls == (3 + 2) * 2 and len(got) == 10
    again = cache_for(tmp_path / "cache")
    assert again.extract(clips(first), views=[0, 1]) == got and again.backbone_calls == 0
    relabelled = cache_for(tmp_path / "cache")
    assert len(relabelled.extract(clips(f"{long_video},Run,2,5\n{long_video},Jump,10,12\n"), views=[0, 1])) == 10
    assert relabelled.backbone_calls == 0  # the same ranges: the same clips
    added = cache_for(tmp_path / "cache")
    added.extract(clips(first + f"{long_video},Jump,20,24\n"), views=[0, 1])
    assert added.backbone_calls == 4 * 2  # only the new segment's 4 clips, 2 views each
    names = {p.name for p in got.values()}
    assert all("-f" in n for n in names) and len(names) == 10  # content key + position
    # a whole-video entry keeps its old name (content key and view)
    whole = cache_for(tmp_path / "cache")
    entry = whole.extract([str(long_video)], views=[0])[(str(long_video), 0)]
    assert entry.name.endswith("-0.npz") and "-f" not in entry.name


def test_an_unreadable_video_of_a_segment_sample_is_reported_per_clip(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 4096)
    errors = []
    cache = cache_for(tmp_path / "cache")
    got = cache.extract([clip_address(str(bad), 0, 2, (0, 2)), clip_address(str(bad), 0, 2, (1, 2))],
                        on_error=lambda video, message: errors.append(video))
    assert got == {} and len(errors) == 2


# ----------------------------------------------------------------------------------------------- end to end


@pytest.mark.skipif(not UCF.is_dir(), reason=f"{UCF} is absent: the real-clip checks need ../shared")
def test_train_from_segments_of_one_long_stitched_real_video(tmp_path, capsys):
    picks = [(UCF / c / f"v_{c}_g{g:02d}_c01.avi", c) for g in (1, 2, 3) for c in ("BabyCrawling", "ApplyEyeMakeup")]
    video = tmp_path / "long.mp4"
    truth = stitch(video, picks)
    assert [t[0] for t in truth] == [c for _, c in picks] and truth[0][1] == 0.0
    assert all(b > a for _, a, b in truth) and all(truth[i][2] == truth[i + 1][1] for i in range(len(truth) - 1))
    rows = "".join(f"long.mp4,{label},{format_time(a + 0.05)},{min(b - 0.05, a + 3.05):.2f}\n" for label, a, b in truth)
    csv = manifest(tmp_path, "path,label,start,end\n" + rows)
    out = tmp_path / "run"
    args = ["train", str(csv), "--out", str(out), "--cache", str(tmp_path / "cache"), "--epochs", "10",
            "--finetune-epochs", "0", "--quiet"]
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["classes"] == ["ApplyEyeMakeup", "BabyCrawling"]
    assert "one source video: test and val drawn by whole segments" in metrics["splits"]["policy"]
    # 2 training segments per class: the few-shot head, its validation segment moved into training
    assert metrics["head_fit"]["head"] == "logistic" and "no validation hold-out" in metrics["splits"]["policy"]
    counts = metrics["splits"]["counts"]
    for c in metrics["classes"]:
        assert counts[c]["test"] == 1 and counts[c]["val"] == 0 and counts[c]["train"] >= 2
    assert metrics["splits"]["clips"]["test"] == 2 * 2  # two test segments, scored from 2 views each
    assert all("#t=" in p["video"] for p in metrics["test_predictions"])
    assert metrics["test_accuracy"] >= 0.5
    # `evaluate` scores every segment of the manifest whole, from the run's test views (the test segments' are cached)
    capsys.readouterr()
    assert main(["evaluate", str(out), str(csv), "--cache", str(tmp_path / "cache"), "--json", "--quiet"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["videos"] == len(truth) and scored["test_views"] == 2
