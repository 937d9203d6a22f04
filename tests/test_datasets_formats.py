"""The datasets people already have: HMDB51 as distributed, Kinetics-style annotation CSVs pointing at downloaded
videos, ActivityNet / THUMOS temporal annotations; each read into the samples `train` and `evaluate` consume, on small
fixtures written here (tiny synthetic videos), every kind of malformed entry as one line, and one `actionrec train` on
HMDB51 end to end."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from actionrec.cli import main
from actionrec.data.activitynet import load_activitynet_json
from actionrec.data.datasets import load_dataset, make_splits
from actionrec.data.downloads import subset_splits
from actionrec.data.hmdb51 import load_hmdb51, looks_like_hmdb51
from actionrec.data.kinetics import is_kinetics_csv, load_kinetics_csv
from actionrec.errors import ActionrecError
from videos import coded_frames, write_video

FPS = 10.0


def video(path: Path, seconds: float = 2.0, first: int = 0) -> Path:
    """A small coded video of ``seconds`` at 10 fps (distinct content per ``first``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_video(path, coded_frames(int(seconds * FPS), first=first), FPS)


def one_line_error(call, *fragments: str) -> str:
    with pytest.raises(ActionrecError) as err:
        call()
    message = str(err.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


# ----------------------------------------------------------------------------------------------- HMDB51

HMDB_CLASSES = ("brush_hair", "cartwheel")
SOURCES = ("April_09", "Boom_Snap", "Catch_Me", "Dazed")  # 2 clips each per class


def hmdb_name(source: str, label: str, k: int) -> str:
    return f"{source}_{label}_f_nm_np1_ba_goo_{k}.avi"


def hmdb_tag(source: str, split: int) -> str:
    """Split N: source N-1 is test (2), source N is unused (0), the others train (1)."""
    i = SOURCES.index(source)
    return "2" if i == split - 1 else "0" if i == split else "1"


def write_hmdb(root: Path, videos_dir: str = "hmdb51_org", splits_dir: str = "testTrainMulti_7030_splits",
               classes=HMDB_CLASSES) -> Path:
    """HMDB51 as unpacked: <root>/<videos_dir>/<class>/*.avi and <root>/<splits_dir>/<class>_test_split<N>.txt."""
    for c, label in enumerate(classes):
        for s, source in enumerate(SOURCES):
            for k in range(2):
                video(root / videos_dir / label / hmdb_name(source, label, k), 1.6, first=100 * c + 10 * s + k)
    for label in HMDB_CLASSES:
        for n in (1, 2, 3):
            lines = [f"{hmdb_name(src, label, k)} {hmdb_tag(src, n)} " for src in SOURCES for k in range(2)]
            (root / splits_dir).mkdir(parents=True, exist_ok=True)
            (root / splits_dir / f"{label}_test_split{n}.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def hmdb(tmp_path_factory) -> Path:
    return write_hmdb(tmp_path_factory.mktemp("hmdb") / "hmdb51")


@pytest.mark.parametrize("split", [1, 2, 3])
def test_hmdb51_official_split_tags_train_test_and_unused(hmdb, split):
    samples = load_dataset(hmdb, split=split, say=lambda m: None)
    assert sorted({s.label for s in samples}) == list(HMDB_CLASSES)
    for s in samples:
        source = next(src for src in SOURCES if Path(s.path).name.startswith(src))
        assert {"1": "train", "2": "test"}[hmdb_tag(source, split)] == s.split
        assert s.origin == f"official HMDB51 split {split}"
        assert s.group == f"hmdb51/{s.label}/{source.lower()}_{s.label}_f_nm_np1_ba_goo"  # the clip number dropped
    assert Counter(s.split for s in samples) == {"train": 2 * 2 * 2, "test": 2 * 2}  # unused clips left out
    splits = make_splits(samples, seed=0)
    assert {s.path for s in splits.test} == {s.path for s in samples if s.split == "test"}
    assert "official HMDB51 split" in splits.policy
    train_groups, val_groups = {s.group for s in splits.train}, {s.group for s in splits.val}
    assert val_groups and not train_groups & val_groups  # val carved from train by whole sources


@pytest.mark.parametrize("videos_dir, splits_dir, give", [
    ("hmdb51_org", "testTrainMulti_7030_splits", "root"),          # hmdb51/{hmdb51_org, testTrainMulti_7030_splits}
    ("hmdb51_org", "testTrainMulti_7030_splits", "videos"),        # the class folders' folder, splits beside it
    ("videos", "annotations", "root"),                             # mmaction2: data/hmdb51/{videos, annotations}
    ("videos", "annotations/testTrainMulti_7030_splits", "root"),  # the same, rar unpacked inside annotations/
])
def test_hmdb51_layouts_as_commonly_unpacked_are_recognised(tmp_path, videos_dir, splits_dir, give):
    root = write_hmdb(tmp_path / "data", videos_dir, splits_dir)
    given = root if give == "root" else root / videos_dir
    assert looks_like_hmdb51(str(given))
    samples = load_dataset(given, split=1, say=lambda m: None)
    assert Counter(s.split for s in samples) == {"train": 8, "test": 4}


def test_hmdb51_without_a_class_list_takes_the_extracted_classes_and_says_so(tmp_path):
    root = write_hmdb(tmp_path / "h", classes=HMDB_CLASSES[:1])  # split files for both, one class unrarred
    notes = []
    samples = load_hmdb51(root, None, 1, say=notes.append)
    assert {s.label for s in samples} == {"brush_hair"}
    assert len(notes) == 1 and "brush_hair" in notes[0] and "1 more" in notes[0]
    one_line_error(lambda: load_hmdb51(root, "brush_hair,Cartwheel", 1), "cartwheel", "unrar cartwheel.rar")
    one_line_error(lambda: load_hmdb51(root, ["brush_hare"], 1), "did you mean brush_hair")


def test_hmdb51_class_names_match_case_insensitively_and_mix_with_class_folders(hmdb, tmp_path):
    mine = tmp_path / "mine" / "Juggling"
    for i in range(3):
        video(mine / f"j{i}.mp4", 1.6, first=500 + i)
    samples = load_dataset([hmdb, tmp_path / "mine"], classes="BRUSH_HAIR,Juggling", split=1)
    assert Counter(s.label for s in samples) == {"brush_hair": 6, "Juggling": 3}


@pytest.mark.parametrize("line, fragments", [
    ("{name} 3", ["line 1", "'<video>.avi <0|1|2>'", "test_train_splits.rar"]),
    ("{name}", ["line 1", "expected"]),
    ("notes.txt 1", ["line 1", "expected"]),
    ("Zed_brush_hair_0.avi 1", ["missing", "Zed_brush_hair_0.avi", "unrar brush_hair.rar"]),
])
def test_every_malformed_hmdb51_split_line_gets_one_line(tmp_path, line, fragments):
    root = write_hmdb(tmp_path / "h")
    split_file = root / "testTrainMulti_7030_splits" / "brush_hair_test_split1.txt"
    good = split_file.read_text().splitlines()
    split_file.write_text("\n".join([line.format(name=good[0].split()[0])] + good[1:]) + "\n")
    one_line_error(lambda: load_hmdb51(root, None, 1), str(split_file), *fragments)


def test_hmdb51_split_number_and_missing_split_files(hmdb, tmp_path):
    one_line_error(lambda: load_hmdb51(hmdb, None, 4), "split must be 1, 2 or 3")
    root = write_hmdb(tmp_path / "h")
    for f in (root / "testTrainMulti_7030_splits").glob("*_test_split2.txt"):
        f.unlink()
    one_line_error(lambda: load_hmdb51(root, None, 2), "no split 2 files", "test_train_splits.rar")
    tagless = tmp_path / "t"
    write_hmdb(tagless)
    for f in (tagless / "testTrainMulti_7030_splits").glob("brush_hair_test_split1.txt"):
        f.write_text("".join(f"{ln.split()[0]} 0\n" for ln in f.read_text().splitlines()))
    one_line_error(lambda: load_hmdb51(tagless, None, 1), "tags no video")


def test_train_on_hmdb51_end_to_end_uses_the_official_split(hmdb, tmp_path):
    out = tmp_path / "run"
    args = ["train", str(hmdb), "--split", "2", "--out", str(out), "--cache", str(tmp_path / "cache"),
            "--epochs", "3", "--finetune-epochs", "0", "--test-views", "1", "--quiet"]
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["classes"] == list(HMDB_CLASSES)
    assert "official HMDB51 split 2" in metrics["splits"]["policy"]
    counts = metrics["splits"]["counts"]
    for c in HMDB_CLASSES:  # split 2: source 1 tests (2 clips), source 2 unused, sources 0 and 3 train or validate
        assert counts[c]["test"] == 2 and counts[c]["train"] + counts[c]["val"] == 4 and counts[c]["train"] >= 2
    tested = {Path(p["video"]).name for p in metrics["test_predictions"]}
    assert tested == {hmdb_name("Boom_Snap", c, k) for c in HMDB_CLASSES for k in range(2)}


# ----------------------------------------------------------------------------------------------- Kinetics CSVs

K_HEADER = "label,youtube_id,time_start,time_end,split\n"


def kinetics_csv(path: Path, rows: str, header: str = K_HEADER) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + rows)
    return path


def test_kinetics_csv_finds_trimmed_clips_whole_videos_and_counts_the_missing(tmp_path):
    root = tmp_path / "kinetics400"
    trimmed = video(root / "train" / "abseiling" / "aB3_d-E4fGh_000012_000022.mp4")  # a class sub-folder
    flat = video(root / "train" / "Zz9_yY8-xW7_000000_000010.mp4", first=50)           # the split folder itself
    whole = video(root / "train" / "playing cricket" / "Qq1_Rr2-Ss3.mkv", 12.0, first=100)  # the whole video
    short = video(root / "train" / "Tt4_Uu5-Vv6.mp4", 6.0, first=300)                    # shorter than its range
    csv = kinetics_csv(root / "train.csv", (
        "abseiling,aB3_d-E4fGh,12,22,train\n"
        "abseiling,Zz9_yY8-xW7,0,10,train\n"
        '"playing cricket",Qq1_Rr2-Ss3,1,11,train\n'
        '"playing cricket",Tt4_Uu5-Vv6,3,13,train\n'
        '"playing cricket",Tt4_Uu5-Vv6,7,17,train\n'   # starts after the 6 s video ends: skipped
        "abseiling,Gone1234567,30,40,train\n"          # never downloaded: skipped
    ))
    assert is_kinetics_csv(str(csv))
    notes = []
    samples = load_kinetics_csv(csv, say=notes.append)
    got = {(s.video, s.start, s.end, s.label) for s in samples}
    assert got == {(str(trimmed), None, None, "abseiling"), (str(flat), None, None, "abseiling"),
                   (str(whole), 1.0, 11.0, "playing cricket"), (str(short), 3.0, 6.0, "playing cricket")}
    assert all(s.split is None for s in samples)  # a training subset alone fixes nothing: test and val are held out
    assert {s.group for s in samples if s.video == str(whole)} == {"youtube/Qq1_Rr2-Ss3"}
    assert len(notes) == 1, notes
    assert "2 of 6 entries skipped" in notes[0] and "Gone1234567_000030_000040" in notes[0]
    assert "1 with no video file" in notes[0] and "1 starting after the video's end" in notes[0]
    assert str(csv) in notes[0] and "download them again" in notes[0]


def test_kinetics_train_and_validate_csvs_give_the_official_split(tmp_path):
    root = tmp_path / "k400"
    rows, first = {"train": "", "validate": ""}, 0
    for subset, n in (("train", 6), ("validate", 2)):
        for label in ("archery", "bowling"):
            for i in range(n):
                yid = f"{subset[:3]}{label[:3]}{i:05d}"[:11].ljust(11, "x")
                video(root / subset / label / f"{yid}_000000_000010.mp4", 1.6, first=first)
                first += 10
                rows[subset] += f"{label},{yid},0,10,{'train' if subset == 'train' else 'val'}\n"
    train = kinetics_csv(root / "annotations" / "train.csv", rows["train"])       # the CVDF layout
    val = kinetics_csv(root / "annotations" / "validate.csv", rows["validate"])
    samples = load_dataset([train, val], say=lambda m: None)
    assert Counter((s.label, s.split) for s in samples) == {
        ("archery", None): 6, ("bowling", None): 6, ("archery", "test"): 2, ("bowling", "test"): 2}
    splits = make_splits(samples, seed=0)
    assert {s.path for s in splits.test} == {s.path for s in samples if s.split == "test"}
    assert "the val subset of validate.csv" in splits.policy and splits.val


@pytest.mark.parametrize("present, expected", [
    ({"train"}, {"train": None}),
    ({"val"}, {"val": "test"}),
    ({"train", "val"}, {"train": "train", "val": "test"}),            # Kinetics, ActivityNet: papers report val
    ({"val", "test"}, {"val": "train", "test": "test"}),              # THUMOS: trains on validation
    ({"train", "val", "test"}, {"train": "train", "val": "val", "test": "test"}),
])
def test_official_subsets_become_splits(present, expected):
    assert subset_splits(present) == expected


@pytest.mark.parametrize("rows, header, fragments", [
    ("archery,abcdefghijk,5,5,train\n", K_HEADER, ["line 2", "empty or negative"]),
    ("archery,abcdefghijk,-1,9,train\n", K_HEADER, ["line 2", "empty or negative"]),
    ("archery,abcdefghijk,x,9,train\n", K_HEADER, ["line 2", "must be seconds"]),
    (",abcdefghijk,0,10,train\n", K_HEADER, ["line 2", "needs a label and a youtube_id"]),
    ("archery,,0,10,train\n", K_HEADER, ["line 2", "needs a label and a youtube_id"]),
    ("archery,abcdefghijk,0,10,holdout\n", K_HEADER, ["line 2", "split 'holdout'"]),
    ("archery,abcdefghijk,0\n", K_HEADER, ["line 2", "3 cells", "quote labels"]),
    ("archery,abcdefghijk,0,10,train\narchery,abcdefghijk,0,10,train\n", K_HEADER,
     ["line 3", "already listed on line 2", "remove one"]),
    ("abcdefghijk,0,10,test\n", "youtube_id,time_start,time_end,split\n", ["line 1", "no label column", "test list"]),
    ("", K_HEADER, ["lists no videos"]),
])
def test_every_malformed_kinetics_row_gets_one_line(tmp_path, rows, header, fragments):
    csv = kinetics_csv(tmp_path / "k" / "train.csv", rows, header)
    one_line_error(lambda: load_kinetics_csv(csv), str(csv), *fragments)


def test_a_kinetics_csv_with_no_video_found_says_where_it_looked(tmp_path):
    csv = kinetics_csv(tmp_path / "k" / "train.csv", "archery,abcdefghijk,0,10,train\n")
    one_line_error(lambda: load_dataset(csv), "none of the 1 videos", str(tmp_path / "k"), "<youtube_id>.mp4")


# ----------------------------------------------------------------------------------------------- ActivityNet / THUMOS


def anet_json(path: Path, database: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": "VERSION 1.3", "taxonomy": [], "database": database}))
    return path


def entry(subset: str, *segments: tuple[float, float, str], duration: float = 20.0) -> dict:
    return {"subset": subset, "duration": duration, "url": "https://www.youtube.com/watch?v=x",
            "annotations": [{"segment": [a, b], "label": label} for a, b, label in segments]}


def test_activitynet_json_gives_labelled_segments_of_videos_found_by_id(tmp_path):
    root = tmp_path / "anet"
    a = video(root / "videos" / "v_--0edUL8zmA.mp4", 12.0)
    b = video(root / "videos" / "train" / "sJFgo9H6zNo.mkv", 12.0, first=200)
    c = video(root / "v_validAAAAAA.mp4", 12.0, first=400)
    path = anet_json(root / "annotations" / "activity_net.v1-3.min.json", {
        "--0edUL8zmA": entry("training", (1.5, 4.25, "Long jump"), (6, 9, "Long jump"), (6, 9, "Long jump")),
        "sJFgo9H6zNo": entry("training", (0.5, 14.0, "Archery"), (11.99, 13, "Archery")),  # cut at 12 s; skipped
        "validAAAAAA": entry("validation", (2, 5, "Archery"), (7, 10, "Long jump"), (7, 10, "Archery")),
        "testBBBBBBB": {"subset": "testing", "duration": 30.0, "annotations": []},  # withheld labels: nothing
        "missingCCCC": entry("training", (1, 2, "Archery")),
    })
    notes = []
    samples = load_activitynet_json(path, say=notes.append)
    got = sorted((Path(s.video).name, s.start, s.end, s.label, s.split) for s in samples)
    assert got == [
        ("sJFgo9H6zNo.mkv", 0.5, 12.0, "Archery", "train"),
        ("v_--0edUL8zmA.mp4", 1.5, 4.25, "Long jump", "train"),
        ("v_--0edUL8zmA.mp4", 6.0, 9.0, "Long jump", "train"),   # listed twice with one label: once
        ("v_validAAAAAA.mp4", 2.0, 5.0, "Archery", "test"),      # ActivityNet's validation is the test set
    ]
    assert {s.group for s in samples if s.video == str(a)} == {str(a)} and b.exists() and c.exists()
    assert all(s.path.startswith(s.video + "#t=") for s in samples)
    assert "the validation subset of activity_net.v1-3.min.json" == next(s.origin for s in samples if s.split == "test")
    assert len(notes) == 1 and "3 of 9 entries skipped" in notes[0]
    for part in ("1 labelled twice, differently (validAAAAAA 7-10)", "1 with no video file (missingCCCC 1-2)",
                 "1 starting after the video's end (sJFgo9H6zNo 11.99-13)"):
        assert part in notes[0], notes[0]


def test_thumos_layout_trains_on_validation_and_tests_on_test_through_make_splits(tmp_path):
    database = {}
    for subset, ids in (("Validation", range(4)), ("Test", range(4, 6))):
        for i in ids:
            vid = f"video_{subset.lower()}_{i:07d}"
            video(tmp_path / "thumos" / f"{vid}.mp4", 10.0, first=50 * i)
            database[vid] = entry(subset, (0.5, 3.0, "CliffDiving"), (5.0, 7.5, "Diving"), duration=10.0)
    path = anet_json(tmp_path / "thumos" / "thumos14.json", database)
    samples = load_dataset(path, say=lambda m: None)
    assert Counter((s.label, s.split) for s in samples) == {
        ("CliffDiving", "train"): 4, ("Diving", "train"): 4, ("CliffDiving", "test"): 2, ("Diving", "test"): 2}
    splits = make_splits(samples, seed=0)
    assert all(s.clip is not None for s in splits.train + splits.val)  # segments cut into clips for training
    assert all(s.clip is None and s.start is not None for s in splits.test)  # test segments scored whole
    assert "the Test subset of thumos14.json" in splits.policy
    videos = {name: {s.video for s in getattr(splits, name)} for name in ("train", "val", "test")}
    assert not (videos["train"] & videos["val"]) and not (videos["train"] & videos["test"])  # a video is one group


@pytest.mark.parametrize("database, fragments", [
    ({"a": [1, 2]}, ["entry 'a'", "is not an object"]),
    ({"a": {"subset": "training", "annotations": {"segment": [1, 2]}}}, ["entry 'a'", "is not a list"]),
    ({"a": entry("holdout", (1, 2, "X"))}, ["entry 'a'", "subset 'holdout'"]),
    ({"a": {"annotations": [{"segment": [1, 2], "label": "X"}]}}, ["entry 'a'", "subset None"]),
    ({"a": entry("training", (1, 2, "X"), (3, 4, ""))}, ["entry 'a' annotation 1", "has no label"]),
    ({"a": {"subset": "training", "annotations": [{"segment": [1], "label": "X"}]}},
     ["entry 'a' annotation 0", "not [start, end]"]),
    ({"a": {"subset": "training", "annotations": [{"segment": ["1", 2], "label": "X"}]}}, ["not [start, end]"]),
    ({"a": {"subset": "training", "annotations": [{"label": "X"}]}}, ["segment None"]),
    ({"a": entry("training", (5, 3, "X"))}, ["entry 'a' annotation 0", "[5, 3] is empty or negative"]),
    ({"a": {"subset": "training", "annotations": ["X"]}}, ["annotation 0 is not an object"]),
    ({"a": {"subset": "testing", "annotations": []}}, ["none of its 1 entries has annotations"]),
])
def test_every_malformed_activitynet_entry_gets_one_line(tmp_path, database, fragments):
    path = anet_json(tmp_path / "a.json", database)
    one_line_error(lambda: load_activitynet_json(path), str(path), *fragments)


def test_a_json_that_is_not_the_layout_or_not_json_gets_one_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"database": {"a": ')
    one_line_error(lambda: load_dataset(bad), str(bad), "not valid JSON", "line 1")
    other = tmp_path / "other.json"
    other.write_text('{"videos": []}')
    one_line_error(lambda: load_dataset(other), str(other), 'no "database" object')
    text = tmp_path / "list.txt"
    text.write_text("a.mp4\n")
    one_line_error(lambda: load_dataset(text), str(text), "not a .csv manifest or a .json")


def test_a_class_list_looks_for_the_videos_of_those_classes_only(tmp_path):
    root = tmp_path / "k"
    for i in range(3):
        video(root / "train" / f"arch{i:07d}_000000_000010.mp4", first=10 * i)
        video(root / "train" / f"bowl{i:07d}_000000_000010.mp4", first=100 + 10 * i)
    rows = "".join(f"archery,arch{i:07d},0,10,train\nbowling,bowl{i:07d},0,10,train\n" for i in range(3))
    rows += "bowling,bowlMISSING,0,10,train\n\"abseiling\",gone0000001,0,10,train\n"
    csv = kinetics_csv(root / "train.csv", rows)
    notes = []
    samples = load_dataset(csv, classes="Archery,bowling", say=notes.append)
    assert Counter(s.label for s in samples) == {"archery": 3, "bowling": 3}
    assert len(notes) == 1 and "1 of 7 entries skipped" in notes[0] and "gone0000001" not in notes[0]
    one_line_error(lambda: load_dataset(csv, classes="archery,bowlin"), "class 'bowlin' not found",
                   "did you mean bowling")
    path = anet_json(tmp_path / "a" / "a.json", {"x" * 11: entry("training", (0, 1, "Long jump"))})
    one_line_error(lambda: load_dataset(path, classes="Long jmp,Archery"), "did you mean Long jump")
