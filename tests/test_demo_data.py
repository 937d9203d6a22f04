"""The built-in demo's synthetic dataset: layout, decodability, determinism, idempotency, and classes that
differ in motion rather than in colour."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from actionrec.data import demo
from actionrec.data.demo import DEMO_CLASSES, write_demo_dataset
from actionrec.errors import ActionrecError
from videos import read_all_frames

# Small but not trivial: 6 clips a class in 2-3 sources, 24 frames (about a second) each.
CLIPS = 6
FRAMES = 24
SIZE = (160, 120)
NAME = re.compile(r"^(?P<cls>[A-Za-z]+)_s(?P<s>\d{2,})_c(?P<c>\d{2,})\.mp4$")


def decode(path: Path) -> np.ndarray:
    """All frames (T, H, W, 3) BGR uint8, as cv2 decodes them."""
    frames = read_all_frames(path)
    return np.ascontiguousarray(frames[..., ::-1])  # read_all_frames gives RGB


def videos(root: Path) -> list[Path]:
    return sorted(p for cls in DEMO_CLASSES for p in (root / cls).iterdir())


def stamps(root: Path) -> dict[str, tuple[int, int]]:
    """(inode, mtime) of every file under root: a rewrite (os.replace of a new file) changes them."""
    return {str(p.relative_to(root)): (p.stat().st_ino, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def frame_means(root: Path) -> dict[str, np.ndarray]:
    return {str(p.relative_to(root)): decode(p).reshape(FRAMES, -1).mean(1) for p in videos(root)}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo") / "data"
    assert write_demo_dataset(root, clips_per_class=CLIPS, seed=0, size=SIZE, frames=FRAMES) == root
    return root


@pytest.fixture(scope="module")
def decoded(dataset) -> dict[str, list[np.ndarray]]:
    return {cls: [decode(p) for p in sorted((dataset / cls).iterdir())] for cls in DEMO_CLASSES}


# ----------------------------------------------------------------------------- layout and files


def test_classes():
    assert isinstance(DEMO_CLASSES, tuple) and 3 <= len(DEMO_CLASSES) <= 4
    assert len(set(DEMO_CLASSES)) == len(DEMO_CLASSES)
    assert all(re.fullmatch(r"[A-Z][a-z]+", c) for c in DEMO_CLASSES)


def test_layout_and_names(dataset):
    assert sorted(p.name for p in dataset.iterdir()) == sorted([*DEMO_CLASSES, "demo.json"])
    for cls in DEMO_CLASSES:
        names = sorted(p.name for p in (dataset / cls).iterdir())
        assert len(names) == CLIPS
        sources: dict[int, list[int]] = {}
        for name in names:
            m = NAME.match(name)
            assert m and m["cls"] == cls, name
            sources.setdefault(int(m["s"]), []).append(int(m["c"]))
        # Sources s01, s02, ... of 2-3 clips c01, c02, (c03): something for group-aware splitting to keep together.
        assert sorted(sources) == list(range(1, len(sources) + 1))
        assert len(sources) >= 2
        for clips in sources.values():
            assert sorted(clips) == list(range(1, len(clips) + 1)) and 2 <= len(clips) <= 3
    manifest = json.loads((dataset / "demo.json").read_text())
    assert manifest["clips_per_class"] == CLIPS and manifest["frames"] == FRAMES and manifest["seed"] == 0
    assert manifest["size"] == list(SIZE) and manifest["classes"] == list(DEMO_CLASSES)
    assert sorted(manifest["files"]) == sorted(str(p.relative_to(dataset)).replace("\\", "/") for p in videos(dataset))


def test_sources_are_groups(dataset):
    from actionrec.data import datasets

    for cls in DEMO_CLASSES:
        groups: dict[str, int] = {}
        for p in (dataset / cls).iterdir():
            g = datasets.infer_group(p, cls)
            groups[g] = groups.get(g, 0) + 1
        assert all(2 <= n <= 3 for n in groups.values()), groups
        assert len(groups) == len({NAME.match(p.name)["s"] for p in (dataset / cls).iterdir()})


def test_every_clip_decodes(dataset, decoded):
    for cls in DEMO_CLASSES:
        for clip in decoded[cls]:
            assert clip.shape == (FRAMES, SIZE[1], SIZE[0], 3)
            assert 20 < clip.mean() < 235 and clip.std() > 10  # a picture, not a blank
    cap = cv2.VideoCapture(str(videos(dataset)[0]))
    try:
        assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(25.0, abs=0.01)
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == FRAMES
    finally:
        cap.release()


def test_other_sizes(tmp_path):
    root = write_demo_dataset(tmp_path / "d", clips_per_class=1, seed=3, size=(96, 128), frames=5, fps=12.5)
    for cls in DEMO_CLASSES:
        (clip,) = [decode(p) for p in (root / cls).iterdir()]
        assert clip.shape == (5, 128, 96, 3)
    assert json.loads((root / "demo.json").read_text())["fps"] == 12.5


# ----------------------------------------------------------------------------- determinism and idempotency


def test_same_seed_same_frames_other_seed_other_frames(tmp_path):
    kw = dict(clips_per_class=2, size=SIZE, frames=FRAMES)
    a = frame_means(write_demo_dataset(tmp_path / "a", seed=5, **kw))
    b = frame_means(write_demo_dataset(tmp_path / "b", seed=5, **kw))
    c = frame_means(write_demo_dataset(tmp_path / "c", seed=6, **kw))
    assert a.keys() == b.keys() == c.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
        assert np.abs(a[k] - c[k]).max() > 1.0, k


def test_idempotent(tmp_path):
    kw = dict(clips_per_class=2, seed=1, size=(64, 48), frames=6)
    root = write_demo_dataset(tmp_path / "d", **kw)
    before = stamps(root)
    assert len(before) == 2 * len(DEMO_CLASSES) + 1
    assert write_demo_dataset(str(tmp_path / "d"), **kw) == root  # str or Path
    assert stamps(root) == before


def test_partial_dataset_is_rewritten(tmp_path):
    kw = dict(clips_per_class=2, seed=1, size=(64, 48), frames=6)
    root = write_demo_dataset(tmp_path / "d", **kw)
    before = stamps(root)
    (root / "demo.json").unlink()  # as if the run was interrupted before the end
    (root / DEMO_CLASSES[0] / f"{DEMO_CLASSES[0]}_s01_c02.mp4").unlink()
    write_demo_dataset(root, **kw)
    after = stamps(root)
    assert after.keys() == before.keys()
    assert all(after[k] != before[k] for k in after)


def test_missing_clip_is_rewritten(tmp_path):
    kw = dict(clips_per_class=2, seed=1, size=(64, 48), frames=6)
    root = write_demo_dataset(tmp_path / "d", **kw)
    gone = root / DEMO_CLASSES[1] / f"{DEMO_CLASSES[1]}_s01_c01.mp4"
    gone.unlink()
    write_demo_dataset(root, **kw)
    assert gone.is_file() and decode(gone).shape == (6, 48, 64, 3)


def test_other_parameters_replace_the_dataset(tmp_path):
    root = write_demo_dataset(tmp_path / "d", clips_per_class=5, seed=1, size=(64, 48), frames=6)
    write_demo_dataset(root, clips_per_class=2, seed=1, size=(64, 48), frames=6)
    # The clips of the bigger dataset are gone: no stale files would join the smaller one.
    assert len(videos(root)) == 2 * len(DEMO_CLASSES)
    assert json.loads((root / "demo.json").read_text())["clips_per_class"] == 2


def test_refuses_a_folder_that_is_not_a_demo_dataset(tmp_path):
    root = tmp_path / "mine"
    (root / "Bouncing").mkdir(parents=True)
    (root / "Bouncing" / "holiday.mp4").write_bytes(b"precious")
    (root / "notes.txt").write_text("keep me")
    with pytest.raises(ActionrecError, match="not an actionrec demo dataset"):
        write_demo_dataset(root, clips_per_class=1, frames=3)
    assert (root / "Bouncing" / "holiday.mp4").read_bytes() == b"precious"
    assert sorted(p.name for p in root.rglob("*")) == ["Bouncing", "holiday.mp4", "notes.txt"]


@pytest.mark.parametrize(
    "kwargs",
    [dict(clips_per_class=0), dict(clips_per_class=2.5), dict(frames=1), dict(seed=-1), dict(size=(16, 16)),
     dict(size=160), dict(fps=0), dict(fps=float("nan"))],
)
def test_bad_arguments(tmp_path, kwargs):
    with pytest.raises(ActionrecError):
        write_demo_dataset(tmp_path / "d", **kwargs)


def test_mjpg_fallback(tmp_path, monkeypatch):
    # Where OpenCV cannot write MPEG-4, the clips are MJPG in AVI (and still decode).
    monkeypatch.setattr(demo, "_CODECS", (("XXXX", ".mp4"), ("MJPG", ".avi")))
    root = write_demo_dataset(tmp_path / "d", clips_per_class=2, seed=0, size=(64, 48), frames=4)
    files = videos(root)
    assert len(files) == 2 * len(DEMO_CLASSES) and all(p.suffix == ".avi" for p in files)
    assert all(decode(p).shape == (4, 48, 64, 3) for p in files)
    assert json.loads((root / "demo.json").read_text())["fourcc"] == "MJPG"


# ----------------------------------------------------------------------------- motion, not colour


def motion_stats(clip: np.ndarray) -> tuple[float, float, float]:
    """(horizontal change, vertical change, in-place size change) of the saturated objects.

    The objects are the saturated pixels (the backgrounds are muted).  The horizontal change is how much
    the mask's column profile (its sum over rows) changes from frame to frame, relative to the mask's
    area; the vertical change likewise with the row profile: an object moving up and down changes only
    the row profile, one moving sideways only the column profile, one turning or growing in place both
    about equally.  The size change is the median, over the connected regions that the objects sweep,
    of the coefficient of variation of the object area inside the region over time.
    """
    hsv = np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2HSV) for f in clip])
    mask = ((hsv[..., 1] > 115) & (hsv[..., 2] > 40)).astype(np.float32)
    area = mask.sum((1, 2)).mean()
    assert area > 0.02 * mask[0].size, "the objects are too small or not found"
    change_x = np.abs(np.diff(mask.sum(1), axis=0)).sum(1).mean() / area
    change_y = np.abs(np.diff(mask.sum(2), axis=0)).sum(1).mean() / area
    n, regions = cv2.connectedComponents((mask.max(0) > 0).astype(np.uint8))
    cvs = []
    for k in range(1, n):
        inside = mask[:, regions == k].sum(1)
        if inside.mean() >= 30:
            cvs.append(inside.std() / inside.mean())
    return float(change_x), float(change_y), float(np.median(cvs))


def test_classes_have_the_same_colours(decoded):
    means = np.stack([np.mean([c.reshape(-1, 3).mean(0) for c in decoded[cls]], 0) for cls in DEMO_CLASSES])
    spread = means - means.mean(0)
    assert np.abs(spread).max() < 4.0, means  # of 255, per channel
    # Also the objects' own colours: the mean hue vector of the saturated pixels.
    hues = []
    for cls in DEMO_CLASSES:
        hsv = np.concatenate([np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2HSV) for f in c]).reshape(-1, 3) for c in decoded[cls]])
        angle = hsv[hsv[:, 1] > 115, 0].astype(np.float64) * np.pi / 90
        hues.append(np.hypot(np.cos(angle).mean(), np.sin(angle).mean()))  # 0: hues spread evenly, 1: one hue
    assert max(hues) < 0.35, hues


def test_classes_differ_in_motion(decoded):
    stats = {cls: np.array([motion_stats(c) for c in decoded[cls]]) for cls in DEMO_CLASSES}
    for cls, s in stats.items():
        cx, cy, grow = s.T
        if cls == "Bouncing":
            assert np.all(cy > 2.5 * cx), (cls, s)
        elif cls == "Sliding":
            assert np.all(cx > 2.0 * cy), (cls, s)
        else:
            assert np.all((cx < 2 * cy) & (cy < 2 * cx)), (cls, s)
            if cls == "Zooming":
                assert np.all(grow > 0.3), (cls, s)
            elif cls == "Spinning":
                assert np.all(grow < 0.12), (cls, s)
    # Spinning moves: it changes the picture clearly more than the noise floor (Bouncing's horizontal change).
    if "Spinning" in stats:
        assert stats["Spinning"][:, :2].mean(1).min() > 1.3 * stats["Bouncing"][:, 0].mean()
