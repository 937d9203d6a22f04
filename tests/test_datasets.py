"""Dataset sources and honest (group-aware, stratified, seeded) splits.

Nothing is decoded here, so the "videos" are tiny placeholder files.
"""

from __future__ import annotations

import os
import random
import shutil
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from actionrec.data.datasets import (
    Sample,
    Splits,
    infer_group,
    load_dataset,
    load_manifest,
    load_ucf101,
    make_splits,
    scan_class_folders,
)
from actionrec.errors import ActionrecError

# Five UCF101 classes with their official indices; HandstandPushups keeps UCF101's quirk of
# spelling the class differently in its folder ("Handstand") and file names ("HandStand").
UCF_CLASSES = {
    "ApplyEyeMakeup": 1,
    "BabyCrawling": 11,
    "HandstandPushups": 37,
    "IceDancing": 44,
    "SkateBoarding": 79,
}
N_GROUPS = 12
# Official-style lists: each split puts a different band of groups in the test list.
TEST_GROUPS = {1: range(1, 4), 2: range(4, 7), 3: range(7, 10)}


def _clips_per_group(cls: str, g: int) -> int:
    return 2 + (g * 7 + len(cls)) % 4  # 2..5, varies by class and group


def _file_class(cls: str) -> str:
    return "HandStandPushups" if cls == "HandstandPushups" else cls


def make_ucf(base: Path, annotations: str = "beside", crlf: bool = False) -> Path:
    """A fake UCF101 tree under base; returns base. annotations: 'beside' | 'inside' | 'elsewhere'."""
    videos = base / "UCF-101"
    rels: dict[str, list[tuple[int, str]]] = {}
    for cls in UCF_CLASSES:
        (videos / cls).mkdir(parents=True)
        for g in range(1, N_GROUPS + 1):
            for c in range(1, _clips_per_group(cls, g) + 1):
                name = f"v_{_file_class(cls)}_g{g:02d}_c{c:02d}.avi"
                (videos / cls / name).write_bytes(name.encode())
                rels.setdefault(cls, []).append((g, f"{cls}/{name}"))
    ann = {"beside": base / "ucfTrainTestlist", "inside": videos / "ucfTrainTestlist",
           "elsewhere": base / "lists" / "ucfTrainTestlist"}[annotations]
    ann.mkdir(parents=True)
    nl = "\r\n" if crlf else "\n"
    # classInd holds more classes than were extracted, as when only a few class folders exist.
    index = dict(UCF_CLASSES, Basketball=8, Biking=13)
    (ann / "classInd.txt").write_text(nl.join(f"{i} {c}" for c, i in sorted(index.items(), key=lambda x: x[1])) + nl)
    for split, test_groups in TEST_GROUPS.items():
        train_lines, test_lines = [], []
        for cls, items in rels.items():
            for g, rel in items:
                if g in test_groups:
                    test_lines.append(rel)
                else:
                    train_lines.append(f"{rel} {UCF_CLASSES[cls]}")
        (ann / f"trainlist0{split}.txt").write_text(nl.join(train_lines) + nl)
        (ann / f"testlist0{split}.txt").write_text(nl.join(test_lines) + nl)
    return base


def make_class_folders(root: Path, spec: dict[str, list[str]]) -> Path:
    for label, names in spec.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for n in names:
            (root / label / n).write_bytes(f"{label}/{n}".encode())
    return root


def assert_no_group_leak(splits: Splits) -> None:
    where: dict[str, set[str]] = defaultdict(set)
    for name in ("train", "val", "test"):
        for s in getattr(splits, name):
            where[s.group].add(name)
    leaks = {g: w for g, w in where.items() if len(w) > 1}
    assert not leaks, leaks


def assert_error(exc_info, *fragments: str) -> None:
    msg = str(exc_info.value)
    assert "\n" not in msg, msg
    for f in fragments:
        assert f in msg, (f, msg)


# ----------------------------------------------------------------------------- UCF101


@pytest.mark.parametrize("split", [1, 2, 3])
def test_ucf101_subset_and_official_split(tmp_path, split):
    make_ucf(tmp_path)
    classes = ["BabyCrawling", "IceDancing", "SkateBoarding"]
    samples = load_ucf101(tmp_path, classes, split=split)
    assert {s.label for s in samples} == set(classes)
    for s in samples:
        assert os.path.isabs(s.path) and os.path.isfile(s.path)
        assert Path(s.path).parent.name == s.label
        g = int(Path(s.path).stem.split("_g")[1][:2])
        assert s.group == f"{s.label}_g{g:02d}"
        assert s.split == ("test" if g in TEST_GROUPS[split] else "train")
    expected = sum(_clips_per_group(c, g) for c in classes for g in range(1, N_GROUPS + 1))
    assert len(samples) == expected


def test_ucf101_only_extracted_classes(tmp_path):
    make_ucf(tmp_path, crlf=True)
    s1 = load_ucf101(tmp_path, "babycrawling, IceDancing", split=1)
    assert sorted({s.label for s in s1}) == ["BabyCrawling", "IceDancing"]
    s2 = load_ucf101(tmp_path, ["HandstandPushups", "ApplyEyeMakeup"], split=2)
    hs = [s for s in s2 if s.label == "HandstandPushups"]
    assert hs and all("v_HandStandPushups_" in s.path for s in hs)
    assert {s.group.split("_g")[0] for s in hs} == {"HandStandPushups"}


@pytest.mark.parametrize("where", ["beside", "inside", "elsewhere"])
def test_ucf101_annotation_locations(tmp_path, where):
    make_ucf(tmp_path, annotations=where)
    kw = {"annotations": str(tmp_path / "lists")} if where == "elsewhere" else {}
    a = load_ucf101(tmp_path, ["IceDancing", "SkateBoarding"], 1, **kw)
    b = load_ucf101(tmp_path / "UCF-101", ["IceDancing", "SkateBoarding"], 1, **kw)
    assert a == b and len(a) > 0
    if where != "elsewhere":
        with pytest.raises(ActionrecError) as e:
            load_ucf101(tmp_path, ["IceDancing"], 1, annotations=tmp_path / "nope")
        assert_error(e, str(tmp_path / "nope"))


def test_ucf101_unknown_class_suggests(tmp_path):
    make_ucf(tmp_path)
    with pytest.raises(ActionrecError) as e:
        load_ucf101(tmp_path, ["IceDancin", "SkateBoarding"], 1)
    assert_error(e, "IceDancin", "IceDancing", "classInd.txt", str(tmp_path))


def test_ucf101_missing_annotations(tmp_path):
    make_ucf(tmp_path)
    (tmp_path / "ucfTrainTestlist" / "classInd.txt").unlink()
    with pytest.raises(ActionrecError) as e:
        load_ucf101(tmp_path, ["IceDancing"], 1)
    assert_error(e, "classInd.txt", str(tmp_path / "ucfTrainTestlist"))


def test_ucf101_missing_list_file(tmp_path):
    make_ucf(tmp_path)
    (tmp_path / "ucfTrainTestlist" / "testlist03.txt").unlink()
    load_ucf101(tmp_path, ["IceDancing"], 2)
    with pytest.raises(ActionrecError) as e:
        load_ucf101(tmp_path, ["IceDancing"], 3)
    assert_error(e, str(tmp_path / "ucfTrainTestlist" / "testlist03.txt"))


def test_ucf101_bad_split_missing_video_and_class_folder(tmp_path):
    make_ucf(tmp_path)
    with pytest.raises(ActionrecError) as e:
        load_ucf101(tmp_path, ["IceDancing"], 4)
    assert_error(e, "1, 2 or 3", str(tmp_path))
    victim = tmp_path / "UCF-101" / "IceDancing" / "v_IceDancing_g05_c01.avi"
    victim.unlink()
    with pytest.raises(ActionrecError) as e:
        load_ucf101(tmp_path, ["IceDancing"], 1)
    assert_error(e, str(victim))
    with pytest.raises(ActionrecError) as e:
        load_ucf101(tmp_path, ["Basketball", "SkateBoarding"], 1)
    assert_error(e, str(tmp_path / "UCF-101" / "Basketball"))


def test_ucf101_without_classes_uses_the_listed_classes_on_disk(tmp_path):
    make_ucf(tmp_path)  # classInd also names Basketball and Biking, which were not extracted
    videos = tmp_path / "UCF-101"
    (videos / "Basketball").mkdir()  # on disk and in classInd, but not in the split lists: not used
    (videos / "Basketball" / "v_Basketball_g01_c01.avi").write_bytes(b"b")
    shutil.rmtree(videos / "IceDancing")  # in the lists, not extracted
    notes: list[str] = []
    samples = load_dataset(tmp_path, split=2, say=notes.append)
    used = ["ApplyEyeMakeup", "BabyCrawling", "HandstandPushups", "SkateBoarding"]
    assert sorted({s.label for s in samples}) == used
    assert {s.split for s in samples} == {"train", "test"}
    assert len(notes) == 1 and "\n" not in notes[0], notes
    assert all(c in notes[0] for c in used) and "IceDancing" not in notes[0] and "Basketball" not in notes[0]
    assert "split 2" in notes[0] and "1 more listed but not extracted" in notes[0]
    # load_ucf101 itself says nothing unless asked, and names no class when one is given
    assert load_ucf101(tmp_path, None, 2) == samples
    quiet: list[str] = []
    load_dataset(tmp_path, classes="BabyCrawling,SkateBoarding", say=quiet.append)
    assert quiet == []


def test_ucf101_none_of_the_listed_classes_on_disk(tmp_path):
    make_ucf(tmp_path)
    for d in (tmp_path / "UCF-101").iterdir():
        if d.is_dir():
            shutil.rmtree(d)
    (tmp_path / "UCF-101" / "Biking").mkdir()
    with pytest.raises(ActionrecError) as e:
        load_dataset(tmp_path)
    assert_error(e, "none of the 5 classes", str(tmp_path / "UCF-101"), "extract")


SHARED_UCF = Path(__file__).resolve().parents[2] / "shared" / "ucf101_subset"


@pytest.mark.skipif(not SHARED_UCF.is_dir(), reason="../shared/ucf101_subset is not here")
@pytest.mark.parametrize("split", [1, 2, 3])
def test_real_ucf101_subset_without_classes(split):
    """`actionrec train ../shared/ucf101_subset --split N` without --classes: listing only, nothing decoded."""
    notes: list[str] = []
    samples = load_dataset(SHARED_UCF, split=split, say=notes.append)
    classes = ["ApplyEyeMakeup", "ApplyLipstick", "BabyCrawling"]
    assert sorted({s.label for s in samples}) == classes
    assert len(samples) == 391 and len(notes) == 1 and all(c in notes[0] for c in classes)
    sp = make_splits(samples)
    assert sp.classes == classes and all(s.split == "test" for s in sp.test)
    tested = {int(s.group.rsplit("_g", 1)[1]) for s in sp.test}
    assert tested == set(range(7 * split - 6, 7 * split + 1))  # the official rule: 7 groups a split
    assert_no_group_leak(sp)


def test_ucf101_splits_keep_official_test_and_carve_val_from_train(tmp_path):
    make_ucf(tmp_path)
    classes = ["BabyCrawling", "IceDancing", "SkateBoarding"]
    samples = load_dataset(tmp_path, classes=classes, split=1)
    sp = make_splits(samples, seed=3)
    assert sp.classes == sorted(classes)
    assert {s.path for s in sp.test} == {s.path for s in samples if s.split == "test"}
    assert all(s.split == "train" for s in sp.train + sp.val)
    assert_no_group_leak(sp)
    for c, n in sp.counts().items():
        assert n["train"] > 0 and n["val"] > 0 and n["test"] > 0
        assert abs(n["val"] / (n["train"] + n["val"]) - 0.2) < 0.1
    assert "official UCF101 split 1" in sp.policy and "20 % of train" in sp.policy
    assert "seed 3" in sp.policy


# ----------------------------------------------------------------------------- class folders


def test_class_folders_labels_groups_and_filters(tmp_path):
    root = make_class_folders(tmp_path / "data", {
        "Jump": ["a.mp4", "B.MKV", "v_Jump_g03_c01.avi", "v_Jump_g03_c02.avi", "match1_c01.webm",
                 "match1_c02.webm", "match2-clip3.mov", "notes.txt", ".hidden.mp4"],
        "Run": ["r1.mp4", "r2.gif"],
    })
    (root / "Run" / "frames_of_r3").mkdir()
    (root / "Run" / "frames_of_r3" / "0001.jpg").write_bytes(b"x")
    (root / ".cache").mkdir()
    samples = scan_class_folders(root)
    by_name = {Path(s.path).name: s for s in samples}
    assert set(by_name) == {"a.mp4", "B.MKV", "v_Jump_g03_c01.avi", "v_Jump_g03_c02.avi",
                            "match1_c01.webm", "match1_c02.webm", "match2-clip3.mov", "r1.mp4", "r2.gif"}
    assert all(s.split is None and os.path.isabs(s.path) for s in samples)
    assert by_name["r1.mp4"].label == "Run"
    assert by_name["v_Jump_g03_c01.avi"].group == by_name["v_Jump_g03_c02.avi"].group == "Jump_g03"
    assert by_name["match1_c01.webm"].group == by_name["match1_c02.webm"].group == "Jump/match1"
    assert by_name["match2-clip3.mov"].group == "Jump/match2"
    assert by_name["a.mp4"].group == by_name["a.mp4"].path
    assert len({s.group for s in samples}) == 7
    only = scan_class_folders(root, ["run"])
    assert {s.label for s in only} == {"Run"}


@pytest.mark.parametrize("name, label, group", [
    ("v_Biking_g12_c4.avi", "Biking", "Biking_g12"),
    ("cam7_c02.mp4", "X", "X/cam7"),
    ("Cam7_Clip_10.mp4", "X", "X/cam7"),
    ("video-1.mp4", "X", None),       # bare -NN is not a grouping rule
    ("IMG_0001.MOV", "X", None),
    ("clip_01.mp4", "X", None),       # nothing before the clip number
])
def test_infer_group_rules(tmp_path, name, label, group):
    p = str(tmp_path / name)
    assert infer_group(p, label) == (group if group is not None else os.path.abspath(p))


def test_class_folder_errors(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(ActionrecError) as e:
        scan_class_folders(missing)
    assert_error(e, str(missing), "does not exist")

    flat = make_class_folders(tmp_path, {"flat": []}) / "flat"
    (flat / "x.mp4").write_bytes(b"x")
    with pytest.raises(ActionrecError) as e:
        scan_class_folders(flat)
    assert_error(e, str(flat), "sub-folder")

    empty_root = tmp_path / "empty"
    empty_root.mkdir()
    with pytest.raises(ActionrecError) as e:
        load_dataset(empty_root)
    assert_error(e, str(empty_root), ".mp4", ".avi")

    root = make_class_folders(tmp_path / "d", {"Jump": ["a.mp4", "b.mp4"], "Run": ["readme.txt"]})
    with pytest.raises(ActionrecError) as e:
        scan_class_folders(root)
    assert_error(e, str(root / "Run"), "add videos", "remove the folder", ".mp4")

    one = make_class_folders(tmp_path / "one", {"Jump": ["a.mp4", "b.mp4", "c.mp4"]})
    assert len(scan_class_folders(one)) == 3  # allowed alone: it may be mixed with other sources
    with pytest.raises(ActionrecError) as e:
        load_dataset(one)
    assert_error(e, str(one), "at least 2 classes", "Jump")

    with pytest.raises(ActionrecError) as e:
        scan_class_folders(root, ["Jmp"])
    assert_error(e, str(root), "Jmp", "Jump")

    afile = tmp_path / "d" / "Jump" / "a.mp4"
    with pytest.raises(ActionrecError) as e:
        load_dataset(afile)
    assert_error(e, str(afile))


# ----------------------------------------------------------------------------- manifest


def test_manifest_header_relative_absolute_groups_and_split(tmp_path):
    vids = make_class_folders(tmp_path / "v", {"Jump": ["j1.mp4", "j2.mp4", "j3.mp4"], "Run": ["r1.mp4", "r2.mp4", "r4.mp4"]})
    frames = tmp_path / "v" / "Run" / "r3_frames"
    frames.mkdir()
    csv = tmp_path / "m" / "list.csv"
    csv.parent.mkdir()
    csv.write_text(
        "path,label,group,split\n"
        "../v/Jump/j1.mp4,Jump,src1,train\n"
        "\n"
        "# a comment\n"
        f"{vids / 'Jump' / 'j2.mp4'},Jump,src1,\n"
        '"../v/Jump/j3.mp4",Jump,,TEST\n'
        "../v/Run/r1.mp4,Run,,val\n"
        "../v/Run/r2.mp4,Run,s9\n"
        "../v/Run/r3_frames,Run,s9,\n"
        "../v/Run/r4.mp4,Run,s10,\n"
    )
    samples = load_manifest(csv)
    assert [Path(s.path).name for s in samples] == ["j1.mp4", "j2.mp4", "j3.mp4", "r1.mp4", "r2.mp4", "r3_frames", "r4.mp4"]
    assert all(os.path.isabs(s.path) and os.path.exists(s.path) for s in samples)
    assert [s.label for s in samples] == ["Jump"] * 3 + ["Run"] * 4
    assert [s.split for s in samples] == ["train", None, "test", "val", None, None, None]
    assert samples[0].group == samples[1].group == "src1"
    assert samples[2].group == samples[2].path  # inferred: own group
    assert samples[4].group == samples[5].group == "s9"
    # make_splits lets j2 follow j1 (same group) into train.
    sp = make_splits(samples, seed=0)
    assert {Path(s.path).name for s in sp.train} >= {"j1.mp4", "j2.mp4"}
    assert [Path(s.path).name for s in sp.test if s.label == "Jump"] == ["j3.mp4"]
    assert [Path(s.path).name for s in sp.val] == ["r1.mp4"]  # Run's val is fixed; Jump has no spare group
    assert sp.counts()["Run"] == {"train": 2, "val": 1, "test": 1}  # test: r4, the group nearest 20 %
    assert "no val clips for Jump" in sp.policy
    assert "list.csv" in sp.policy


def test_manifest_without_header(tmp_path):
    make_class_folders(tmp_path, {"A": ["a1.mp4", "a2.mp4"], "B": ["b1.mp4"]})
    csv = tmp_path / "m.csv"
    csv.write_text("A/a1.mp4,A\r\nA/a2.mp4,A,g1\r\nB/b1.mp4,B,g2,test\r\n")
    s = load_manifest(csv)
    assert [(x.label, x.group, x.split) for x in s][1:] == [("A", "g1", None), ("B", "g2", "test")]


@pytest.mark.parametrize("body, fragments", [
    ("path,label,split\nA/a1.mp4,A,train\nA/missing.mp4,A,train\n", ["line 3", "missing.mp4"]),
    ("path,label,split\nA/a1.mp4,A,train\nA/a2.mp4,A,holdout\n", ["line 3", "holdout", "train, val or test"]),
    ("path,label,spilt\nA/a1.mp4,A,train\n", ["line 1", "spilt", "split"]),
    ("path,label\nA/a1.mp4,\n", ["line 2", "label"]),
    ("path,label\nA/a1.mp4,A\n\nA/a1.mp4,A\n", ["line 4", "line 2"]),
    ("path,label,group,split\nA/a1.mp4,A,g,train\nA/a2.mp4,A,g,test\n", ["line 3", "'g'", "line 2"]),
    ("path,label\n", ["lists no videos"]),
    ("path,label\nA/a1.mp4,A,x,y,z\n", ["line 2", "columns"]),
])
def test_manifest_bad_rows(tmp_path, body, fragments):
    make_class_folders(tmp_path, {"A": ["a1.mp4", "a2.mp4"]})
    csv = tmp_path / "bad.csv"
    csv.write_text(body)
    with pytest.raises(ActionrecError) as e:
        load_manifest(csv)
    assert_error(e, str(csv), *fragments)


def test_manifest_missing_file(tmp_path):
    with pytest.raises(ActionrecError) as e:
        load_manifest(tmp_path / "none.csv")
    assert_error(e, str(tmp_path / "none.csv"))


# ----------------------------------------------------------------------------- mixing sources


def test_load_dataset_detects_kinds(tmp_path):
    ucf = make_ucf(tmp_path / "ucf")
    folders = make_class_folders(tmp_path / "mine", {"CarRacing": [f"race{i}_c01.mp4" for i in range(6)],
                                                     "Waving": ["w1.mp4", "w2.mp4", "w3.mp4"]})
    csv = tmp_path / "m.csv"
    csv.write_text("path,label\nmine/Waving/w1.mp4,Hello\nmine/Waving/w2.mp4,Hello\nmine/CarRacing/race0_c01.mp4,Bye\n")
    assert {s.label for s in load_dataset(csv)} == {"Hello", "Bye"}
    assert {s.label for s in load_dataset(folders)} == {"CarRacing", "Waving"}
    got = load_dataset(ucf, "IceDancing,SkateBoarding", split=2)
    assert {s.label for s in got} == {"IceDancing", "SkateBoarding"}
    assert {s.split for s in got} == {"train", "test"}


def test_mix_ucf_and_own_class_folder(tmp_path):
    ucf = make_ucf(tmp_path / "ucf")
    mine = make_class_folders(tmp_path / "mine", {
        "CarRacing": [f"race{i}_c{c:02d}.mp4" for i in range(8) for c in range(1, 4)],
        "Unrelated": ["u1.mp4"],  # not requested: ignored (even though too small to split)
    })
    classes = ["BabyCrawling", "IceDancing", "SkateBoarding", "CarRacing"]
    samples = load_dataset([ucf, mine], classes=classes, split=1)
    assert {s.label for s in samples} == set(classes)
    car = [s for s in samples if s.label == "CarRacing"]
    assert len(car) == 24 and all(s.split is None for s in car)
    assert len({s.group for s in car}) == 8
    sp = make_splits(samples, seed=1)
    assert_no_group_leak(sp)
    counts = sp.counts()
    assert set(counts) == set(classes) and sp.classes == sorted(classes)
    for c in classes:
        assert counts[c]["train"] > 0 and counts[c]["val"] > 0 and counts[c]["test"] > 0
    # UCF classes keep their official test set; CarRacing gets a held-out fraction.
    assert {s.path for s in sp.test if s.label != "CarRacing"} == {
        s.path for s in samples if s.split == "test"}
    assert "official UCF101 split 1" in sp.policy and "CarRacing" in sp.policy

    # A class folder holding an extra class with the same name as a UCF one is merged.
    extra = make_class_folders(tmp_path / "extra", {"IceDancing": ["mine1.mp4", "mine2.mp4"]})
    merged = load_dataset([ucf, extra], classes=["IceDancing", "SkateBoarding"])
    assert sum(1 for s in merged if s.label == "IceDancing" and s.split is None) == 2

    with pytest.raises(ActionrecError) as e:
        load_dataset([ucf, mine], classes=["BabyCrawling", "CarRacin"])
    assert_error(e, "CarRacin", "CarRacing", str(ucf), str(mine))


def test_test_dir_supplies_test_split(tmp_path):
    train = make_class_folders(tmp_path / "train", {"A": [f"a{i}.mp4" for i in range(10)],
                                                   "B": [f"b{i}.mp4" for i in range(10)]})
    test = make_class_folders(tmp_path / "test", {"A": ["ta.mp4"], "B": ["tb.mp4"]})
    samples = load_dataset(train, test_dir=test)
    assert {Path(s.path).name for s in samples if s.split == "test"} == {"ta.mp4", "tb.mp4"}
    sp = make_splits(samples)
    assert {Path(s.path).name for s in sp.test} == {"ta.mp4", "tb.mp4"}
    assert sp.counts()["A"] == {"train": 8, "val": 2, "test": 1}
    assert str(test) in sp.policy

    # Folder names differing only in case are one class.
    lower = make_class_folders(tmp_path / "test_lower", {"a": ["la.mp4"], "B": ["lb.mp4"]})
    got = load_dataset(train, test_dir=lower)
    assert {s.label for s in got} == {"A", "B"}
    assert {(s.label, Path(s.path).name) for s in got if s.split == "test"} == {("A", "la.mp4"), ("B", "lb.mp4")}

    bad = make_class_folders(tmp_path / "test2", {"A": ["x.mp4"], "C": ["c.mp4"]})
    with pytest.raises(ActionrecError) as e:
        load_dataset(train, test_dir=bad)
    assert_error(e, str(bad), "'C'")


# ----------------------------------------------------------------------------- make_splits


def random_dataset(rng: random.Random, base: str = "/data") -> list[Sample]:
    samples = []
    for ci in range(rng.randint(2, 6)):
        label = f"class{ci}"
        for g in range(rng.randint(3, 30)):
            for c in range(rng.choice([1, 1, 2, 3, 7])):
                samples.append(Sample(f"{base}/{label}/src{g}_c{c}.mp4", label, f"{label}/src{g}"))
    return samples


@pytest.mark.parametrize("case", range(40))
def test_splits_never_leak_groups_and_cover_every_class(case):
    rng = random.Random(case)
    samples = random_dataset(rng)
    vf, tf = rng.choice([(0.2, 0.2), (0.1, 0.3), (0.25, 0.0), (0.0, 0.2)])
    sp = make_splits(samples, val_fraction=vf, test_fraction=tf, seed=case)
    assert_no_group_leak(sp)
    assert sorted(s.path for s in sp.train + sp.val + sp.test) == sorted(s.path for s in samples)
    groups = Counter()
    for s in {(s.label, s.group) for s in samples}:
        groups[s[0]] += 1
    for c, n in sp.counts().items():
        assert n["train"] > 0
        if tf > 0:
            assert n["test"] > 0
        if vf > 0 and groups[c] >= (3 if tf > 0 else 2):
            assert n["val"] > 0
        if tf == 0:
            assert n["test"] == 0
        if vf == 0:
            assert n["val"] == 0


def test_stratification_close_to_fraction():
    samples = [Sample(f"/d/{c}/{i}.mp4", c, f"/d/{c}/{i}.mp4") for c in "ABCD" for i in range(40 + 7 * "ABCD".index(c))]
    sp = make_splits(samples, seed=5)
    for c, n in sp.counts().items():
        total = sum(n.values())
        assert abs(n["test"] - 0.2 * total) <= 1
        assert abs(n["val"] - 0.2 * (n["train"] + n["val"])) <= 1
    # With groups of several clips, it stays close.
    rng = random.Random(0)
    grouped = [Sample(f"/d/{c}/g{g}_c{k}.mp4", c, f"{c}/g{g}") for c in "AB" for g in range(25) for k in range(rng.randint(3, 7))]
    for seed in range(5):
        sp = make_splits(grouped, seed=seed)
        for c, n in sp.counts().items():
            total = sum(n.values())
            assert abs(n["test"] / total - 0.2) < 0.06
            assert abs(n["val"] / (n["train"] + n["val"]) - 0.2) < 0.06


def test_deterministic_and_independent_of_listing_order():
    samples = random_dataset(random.Random(7))
    a = make_splits(samples, seed=11)
    shuffled = list(samples)
    random.Random(1).shuffle(shuffled)
    b = make_splits(shuffled, seed=11)
    assert a == b
    c = make_splits(list(reversed(samples)) + samples[:3], seed=11)  # repeats are dropped
    assert (c.train, c.val, c.test) == (a.train, a.val, a.test)
    other = make_splits(samples, seed=12)
    assert (other.train, other.val, other.test) != (a.train, a.val, a.test)


def test_adding_a_class_keeps_other_classes_splits():
    samples = [Sample(f"/d/{c}/{i}.mp4", c, f"/d/{c}/{i}.mp4") for c in "AB" for i in range(20)]
    more = samples + [Sample(f"/d/C/{i}.mp4", "C", f"/d/C/{i}.mp4") for i in range(20)]
    a, b = make_splits(samples), make_splits(more)
    for name in ("train", "val", "test"):
        assert [s for s in getattr(b, name) if s.label != "C"] == getattr(a, name)


def test_small_classes():
    # 2 groups: train + test, no val (said in the policy); 3 groups: one of each.
    two = [Sample(f"/d/A/{i}.mp4", "A", f"A{i}") for i in range(2)]
    three = [Sample(f"/d/B/{i}.mp4", "B", f"B{i}") for i in range(3)]
    sp = make_splits(two + three)
    assert sp.counts() == {"A": {"train": 1, "val": 0, "test": 1}, "B": {"train": 1, "val": 1, "test": 1}}
    assert "no val clips for A" in sp.policy


def test_split_errors(tmp_path):
    ok = [Sample(f"/d/A/{i}.mp4", "A", f"A{i}") for i in range(5)]
    with pytest.raises(ActionrecError) as e:
        make_splits(ok)
    assert_error(e, "at least 2 classes", "/d/A")
    one_group = [Sample(f"/d/B/{i}.mp4", "B", "B/src") for i in range(4)]
    with pytest.raises(ActionrecError) as e:
        make_splits(ok + one_group)
    assert_error(e, "'B'", "/d/B", "only 1 group of clips for training (4 clip(s))", "at least 2")
    all_test = [Sample(f"/d/C/{i}.mp4", "C", f"C{i}", "test") for i in range(3)]
    with pytest.raises(ActionrecError) as e:
        make_splits(ok + all_test)
    assert_error(e, "'C'", "/d/C", "no training clips")
    conflict = [Sample("/d/B/x.mp4", "B", "g", "train"), Sample("/d/B/y.mp4", "B", "g", "test"),
                Sample("/d/B/z.mp4", "B", "h")]
    with pytest.raises(ActionrecError) as e:
        make_splits(ok + conflict)
    assert_error(e, "'g'", "/d/B/x.mp4", "/d/B/y.mp4")
    for kw in ({"val_fraction": 1.0}, {"test_fraction": -0.1}):
        with pytest.raises(ActionrecError):
            make_splits(ok, **kw)
    with pytest.raises(ActionrecError):
        make_splits([])


def test_multi_class_groups_stay_whole():
    # A manifest may put clips of different actions from one recording in one group.
    samples = []
    for g in range(12):
        for c in ("A", "B"):
            samples.append(Sample(f"/d/{g}_{c}.mp4", c, f"rec{g}"))
    for seed in range(5):
        sp = make_splits(samples, seed=seed)
        assert_no_group_leak(sp)
        n = sp.counts()
        assert n["A"] == n["B"] and n["A"]["test"] > 0 and n["A"]["val"] > 0
