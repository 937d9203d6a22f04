"""The label store (actionrec.data.labels): a dataset folder's labels.csv edited one operation at a time, under a
lock, checked whole with the manifest's own checks, written atomically; what it writes trains as a manifest."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

import pytest

from actionrec.data.labels import Conflict, LabelSegment, LabelStore
from actionrec.data.manifest import load_manifest
from actionrec.errors import ActionrecError
from test_timeline import colour_frames, write_av_video


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("labels") / "mine"
    (folder / "videos").mkdir(parents=True)
    write_av_video(folder / "videos" / "long.mp4", colour_frames([("Red", 4.0), ("Green", 4.0), ("Blue", 4.0)]))
    write_av_video(folder / "videos" / "other.mp4", colour_frames([("Green", 3.0)]))
    return folder


@pytest.fixture
def store(dataset) -> LabelStore:
    (dataset / "labels.csv").unlink(missing_ok=True)
    return LabelStore(dataset).create()


def test_create_edit_delete_and_restart(store, dataset):
    assert store.segments() == [] and (dataset / "labels.csv").read_text() == "path,label,start,end,group,split\n"
    a = store.add(LabelSegment("videos/long.mp4", "red", 0.5, 3.5))
    b = store.add(LabelSegment("videos/long.mp4", "green", 4.25, 7.75))
    store.replace(b, LabelSegment("videos/long.mp4", "green", 4.0, 8.0))
    store.add(LabelSegment("videos/other.mp4", "green", 0, 2))
    store.mark_fully_labelled("videos/long.mp4")
    assert store.labels() == ["green", "red"]
    again = LabelStore(dataset)  # a restarted server reads the same
    assert again.segments("videos/long.mp4") == [a, LabelSegment("videos/long.mp4", "green", 4, 8)]
    assert again.fully_labelled() == ["videos/long.mp4"]
    samples = load_manifest(dataset / "labels.csv")  # what `actionrec train FOLDER/labels.csv` reads
    assert {s.label for s in samples} == {"red", "green", "none"}
    assert any(s.label == "none" and s.start == 8.0 for s in samples)  # the fully labelled video's background
    again.remove(a)
    again.mark_fully_labelled("videos/long.mp4", False)
    assert store.segments() == [LabelSegment("videos/long.mp4", "green", 4, 8), LabelSegment("videos/other.mp4", "green", 0, 2)]
    assert store.fully_labelled() == []


def test_a_bad_edit_is_one_line_and_the_file_unchanged(store, dataset):
    store.add(LabelSegment("videos/long.mp4", "red", 0, 4))
    before = (dataset / "labels.csv").read_bytes()
    bad = [LabelSegment("videos/long.mp4", "blue", 3, 6),  # overlaps red with another label
           LabelSegment("videos/long.mp4", "blue", 9, 30),  # past the video's end
           LabelSegment("videos/missing.mp4", "blue", 0, 1),
           LabelSegment("videos/long.mp4", "  ", 5, 6),
           LabelSegment("videos/long.mp4", "blue", 6, 5),
           LabelSegment("videos/long.mp4", "red", 0, 4)]  # the same range twice
    for segment in bad:
        with pytest.raises(ActionrecError) as err:
            store.add(segment)
        message = str(err.value)
        assert "\n" not in message and str(dataset / "labels.csv") in message and ".labels-" not in message
        assert (dataset / "labels.csv").read_bytes() == before
    assert [p.name for p in dataset.iterdir() if p.name.startswith(".labels-")] == []


def test_replacing_or_removing_a_segment_no_longer_there_is_a_conflict(store):
    a = store.add(LabelSegment("videos/long.mp4", "red", 0, 4))
    other_tab = LabelStore(store.folder)
    other_tab.replace(a, LabelSegment("videos/long.mp4", "red", 0, 3.5))
    with pytest.raises(Conflict, match="no longer there"):
        store.replace(a, LabelSegment("videos/long.mp4", "red", 0, 3))
    with pytest.raises(Conflict):
        store.remove(a)
    assert store.segments() == [LabelSegment("videos/long.mp4", "red", 0, 3.5)]


def test_concurrent_threads_keep_every_segment(store):
    def add(k: int) -> None:
        LabelStore(store.folder).add(LabelSegment("videos/long.mp4", "red" if k % 2 else "green", k, k + 0.5))

    threads = [threading.Thread(target=add, args=(k,)) for k in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(s.start for s in store.segments()) == list(range(10))


def _add_in_process(folder: str, start: float) -> None:
    LabelStore(folder).add(LabelSegment("videos/other.mp4", "green", start, start + 0.25))


def test_concurrent_processes_keep_every_segment(store):
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_add_in_process, args=(str(store.folder), k * 0.5)) for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert sorted(s.start for s in store.segments()) == [0, 0.5, 1.0, 1.5]


def test_overwrite_cuts_other_labels_and_merges_its_own(store):
    store.add(LabelSegment("videos/long.mp4", "red", 0, 6))
    store.add(LabelSegment("videos/long.mp4", "green", 7, 9))
    store.add(LabelSegment("videos/other.mp4", "red", 0, 2))
    got = store.overwrite(LabelSegment("videos/long.mp4", "green", 2, 8))  # a correction in the middle of red
    assert got == LabelSegment("videos/long.mp4", "green", 2, 9)
    assert sorted((s.video, s.label, s.start, s.end) for s in store.segments()) == [
        ("videos/long.mp4", "green", 2, 9), ("videos/long.mp4", "red", 0, 2), ("videos/other.mp4", "red", 0, 2)]
    store.overwrite(LabelSegment("videos/long.mp4", "blue", 1, 3))
    assert sorted((s.label, s.start, s.end) for s in store.segments("videos/long.mp4")) == [
        ("blue", 1, 3), ("green", 3, 9), ("red", 0, 1)]
