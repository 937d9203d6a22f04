"""Bad input at the data layer: odd file names, unreadable files, damaged videos, unreadable clips in a split.

Real (tiny, synthetic) video files through the real decoder; each test fails on the code before the fix.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("av")  # PyAV writes the test videos

from actionrec.data import video as V  # noqa: E402
from actionrec.data.datasets import load_dataset, make_splits, same_clip_in_two_classes, scan_class_folders  # noqa: E402
from actionrec.errors import ActionrecError  # noqa: E402
from videos import coded_frames, decode_indices, write_frames_folder, write_video  # noqa: E402

FPS = 25.0


def one_line(message: str, *fragments: str) -> None:
    assert "\n" not in message, message
    for f in fragments:
        assert f in message, (f, message)


# --------------------------------------------------------------------------------------------------
# File names that are not valid UTF-8 (OpenCV used to crash on them: signal 11, no output)
# --------------------------------------------------------------------------------------------------

_CHILD = textwrap.dedent(
    r"""
    import os, sys
    import cv2
    from actionrec.data import video as V
    from actionrec.data.datasets import load_dataset
    from actionrec.data.demo import write_demo_dataset

    base = os.fsencode(sys.argv[1])
    bad = os.fsdecode(base + b"/bad\xff.mp4")
    info = V.probe(bad)
    assert info.path == bad and info.num_frames == 30, info
    (clip,) = V.read_clips(bad, [V.central_clip(info.num_frames, info.fps, 8)])
    print("read_clips", clip.frames.shape, clip.span.frame_indices.tolist())
    print("read_clip", V.read_clip(bad, n=4, short_side=24).frames.shape)
    print("windows", len(list(V.iter_windows(bad, 0.4, 0.4, n=4))))
    import numpy as np
    jpeg = V.thumbnail_jpeg(bad, 0.5, 32)
    print("thumbnail", jpeg[:2] == b"\xff\xd8", cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape[1])
    print("live", V.open_live(bad).kind, len(list(V.live_windows(V.open_live(bad), 0.4, 0.4, 4, None))))
    in_bad_folder = os.fsdecode(base + b"/dir\xe9/ok.mp4")
    print("folder", V.probe(in_bad_folder).num_frames)
    with V.cv2_path(bad) as name:
        cap = cv2.VideoCapture(name, cv2.CAP_FFMPEG)
        print("cv2_path", cap.isOpened(), int(cap.get(cv2.CAP_PROP_FRAME_COUNT)))
        cap.release()
    try:
        V.probe(os.fsdecode(base + b"/junk\xfe.mp4"))
    except V.VideoError as e:
        print("error", str(e).encode("utf-8").decode("ascii"))  # printable text, the name escaped
    root = os.fsdecode(base + b"/demo\xff")
    write_demo_dataset(root, clips_per_class=2, size=(48, 32), frames=4, classes=("Bouncing", "Sliding"))
    samples = load_dataset(root, say=lambda m: None)
    print("demo", len(samples), V.probe(samples[0].path).num_frames)
    print("leftover links", [n for n in os.listdir(os.environ["TMPDIR"]) if n.startswith("actionrec-name-")])
    """
)


def test_non_utf8_file_names_decode_in_every_reader(tmp_path):
    base = os.fsencode(tmp_path)
    good = write_video(tmp_path / "good.mp4", coded_frames(30), FPS)
    shutil.copyfile(good, base + b"/bad\xff.mp4")
    os.mkdir(base + b"/dir\xe9")
    shutil.copyfile(good, base + b"/dir\xe9/ok.mp4")
    with open(base + b"/junk\xfe.mp4", "wb") as f:
        f.write(b"not a video at all")
    links = tmp_path / "links"
    links.mkdir()
    env = dict(os.environ, TMPDIR=str(links))
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, str(tmp_path)], capture_output=True, text=True, timeout=300, env=env
    )
    assert child.returncode == 0, (child.returncode, child.stdout, child.stderr[-2000:])  # -11: OpenCV crashed
    out = child.stdout
    assert "read_clips (8, 48, 64, 3) [11, 12, 13, 14, 15, 16, 17, 18]" in out
    assert "read_clip (4, 24, 32, 3)" in out and "windows 3" in out and "folder 30" in out
    assert "cv2_path True 30" in out
    assert "thumbnail True 32" in out and "live file 3" in out  # the page's thumbnails and watch read them too
    assert "error " + str(tmp_path) + "/junk\\xfe.mp4: cannot be opened as a video" in out
    assert "demo 4 4" in out
    assert "leftover links []" in out  # the temporary links are removed


def test_display_path_and_cv2_path_of_a_plain_name(tmp_path):
    plain = str(tmp_path / "ok é.mp4")
    assert V.display_path(plain) == plain
    with V.cv2_path(plain) as name:
        assert name == plain  # valid UTF-8 names are given to OpenCV as they are
    assert V.display_path(os.fsdecode(b"/x/a\xffb.mp4")) == "/x/a\\xffb.mp4"


# --------------------------------------------------------------------------------------------------
# Permission errors are permission errors, not "damaged or not a video"
# --------------------------------------------------------------------------------------------------


@contextmanager
def unreadable_place():
    """A folder where a chmod 000 file is unreadable to this process (as root: by dropping to nobody)."""
    with tempfile.TemporaryDirectory() as folder:
        os.chmod(folder, 0o755)
        yield Path(folder)


@contextmanager
def without_privileges():
    if os.geteuid() != 0:
        yield
        return
    os.setegid(65534)
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def test_permission_denied_is_reported_as_such():
    with unreadable_place() as place:
        video = write_video(place / "locked.mp4", coded_frames(10), FPS)
        frames = place / "frames"
        write_frames_folder(frames, coded_frames(2))
        locked_frame = V.list_frame_files(frames)[1]
        os.chmod(locked_frame, 0)
        classes = place / "classes"
        for label in ("Jump", "Run"):
            (classes / label).mkdir(parents=True)
            shutil.copyfile(video, classes / label / f"{label}.mp4")
        manifest = place / "clips.csv"
        manifest.write_text("path,label\nclasses/Jump/Jump.mp4,Jump\n")
        os.chmod(video, 0)
        os.chmod(classes / "Run", 0)
        os.chmod(manifest, 0)
        with without_privileges():
            with pytest.raises(V.VideoError) as e:
                V.probe(video)
            one_line(str(e.value), str(video), "cannot be read: permission denied; check its permissions")
            assert "damaged" not in str(e.value)
            with pytest.raises(V.VideoError) as e:
                V.read_clip(frames, n=2)
            one_line(str(e.value), str(locked_frame), "permission denied")
            with pytest.raises(ActionrecError) as e:
                scan_class_folders(classes)
            one_line(str(e.value), str(classes / "Run"), "permission denied; check its permissions")
            with pytest.raises(ActionrecError) as e:
                load_dataset(manifest)
            one_line(str(e.value), str(manifest), "permission denied; check its permissions")
        os.chmod(classes / "Run", 0o755)


# --------------------------------------------------------------------------------------------------
# A video cut short by damage says so (no extra decode pass on healthy files)
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def damaged(tmp_path_factory) -> dict[str, Path]:
    """Healthy 150-frame (6 s) videos, and copies cut in half or with a garbage middle."""
    folder = tmp_path_factory.mktemp("damaged")
    out = {}
    rng = np.random.default_rng(0)
    for name in ("v.avi", "v.mkv", "v.webm"):
        path = write_video(folder / name, coded_frames(150), FPS)
        data = path.read_bytes()
        out[f"healthy {name}"] = path
        out[f"half {name}"] = folder / f"half_{name}"
        out[f"half {name}"].write_bytes(data[: len(data) // 2])
        middle = bytearray(data)
        n = len(data)
        middle[n // 3 : n // 2] = rng.integers(0, 256, n // 2 - n // 3, dtype=np.uint8).tobytes()
        out[f"middle {name}"] = folder / f"middle_{name}"
        out[f"middle {name}"].write_bytes(bytes(middle))
    return out


@pytest.mark.parametrize("name", ["v.avi", "v.mkv", "v.webm"])
def test_healthy_video_is_not_truncated(damaged, name):
    path = damaged[f"healthy {name}"]
    assert not V.probe(path).truncated
    clip = V.read_clip(path, n=16)
    assert clip.video is not None and not clip.video.truncated and clip.video.truncation_warning() is None
    stream = V.iter_windows(path, 1.0, 1.0, n=4)
    assert len(list(stream)) == 6 and not stream.info.truncated and stream.info.num_frames == 150


@pytest.mark.parametrize("case", ["half v.avi", "middle v.avi", "half v.mkv", "middle v.mkv", "half v.webm"])
def test_damaged_video_reports_the_span_that_decodes(damaged, case):
    path = damaged[case]
    clips = V.read_clips(path, V.uniform_clips(150, FPS, n=8, count=3))  # the last one needs the end
    info = clips[-1].video
    assert info.truncated and info.declared_frames == 150 and 1 <= info.num_frames < 140, info
    assert info.declared_duration == pytest.approx(6.0)
    assert all(c.video == info and max(c.span.frame_indices) < info.num_frames for c in clips)
    one_line(info.truncation_warning(), str(path), f"0-{info.num_frames / FPS:.2f} s", "6.00 s")
    stream = V.iter_windows(path, 1.0, 0.5, n=4)
    windows = list(stream)
    assert stream.info.truncated and stream.info.declared_frames == 150
    assert all(max(w.span.frame_indices) < stream.info.num_frames for w in windows)
    assert abs(windows[-1].span.end_sec - stream.info.duration) < 0.5  # covered to the end, within a stride
    assert stream.info.num_frames == info.num_frames  # the same frames decode on every pass


def test_cut_matroska_is_known_truncated_at_probe(damaged):
    info = V.probe(damaged["half v.mkv"])  # its packets fall short of its declared duration: no decode needed
    assert info.truncated and info.declared_frames == 150 and info.num_frames < 100


def test_truncated_clip_frames_are_real(damaged):
    path = damaged["half v.avi"]
    (clip,) = V.read_clips(path, [V.central_clip(150, FPS, 8)])
    assert clip.video.truncated
    indices = decode_indices(clip.frames)
    assert indices == sorted(indices) and max(indices) < clip.video.num_frames + 5


# --------------------------------------------------------------------------------------------------
# Unreadable clips leave a split (no phantom class); the same clip in two classes is reported
# --------------------------------------------------------------------------------------------------


def _class_tree(root: Path, per_class: dict[str, int]) -> Path:
    for label, n in per_class.items():
        (root / label).mkdir(parents=True)
        for k in range(n):
            (root / label / f"{label}_s{k:02d}_c01.mp4").write_bytes(f"{label}{k}".encode())
    return root


def test_splits_without_unreadable_clips_drop_a_phantom_class(tmp_path):
    root = _class_tree(tmp_path / "d", {"Jump": 10, "Run": 10, "Wave": 10})
    splits = make_splits(load_dataset(root, say=lambda m: None), seed=1)
    wave = [s.path for s in splits.train + splits.val + splits.test if s.label == "Wave"]
    one_jump = splits.train[0].path
    assert splits.train[0].label == "Jump"
    left = splits.without(wave + [one_jump, str(tmp_path / "not-in-the-splits.mp4")])
    assert left.classes == ["Jump", "Run"] and left.dropped_classes == ("Wave",)
    assert "Wave" not in left.counts()
    everything = [s.path for s in left.train + left.val + left.test]
    assert one_jump not in everything and not set(wave) & set(everything)
    assert len(everything) == 30 - len(wave) - 1
    counts = left.counts()
    assert sum(c["train"] for c in counts.values()) == len(left.train)
    assert "11 unreadable clip(s) left out" in left.policy and "Wave" in left.policy
    assert not any(row.startswith("Wave") for row in left.summary().splitlines())
    assert splits.without([]) is splits
    with pytest.raises(ActionrecError) as e:
        left.without([s.path for s in left.train if s.label == "Run"])
    one_line(str(e.value), "fewer than 2 classes", "Run")


def test_same_clip_in_two_classes_warns_once(tmp_path):
    root = _class_tree(tmp_path / "d", {"Jump": 3, "Run": 3})
    shutil.copyfile(root / "Jump" / "Jump_s00_c01.mp4", root / "Run" / "copy.mp4")
    os.link(root / "Jump" / "Jump_s01_c01.mp4", root / "Run" / "hardlink.mp4")
    (root / "Run" / "same_size.mp4").write_bytes(b"Jump9")  # same size as a Jump clip, other bytes
    notes: list[str] = []
    samples = load_dataset(root, say=notes.append)
    assert len(notes) == 1, notes
    one_line(notes[0], "same clip in two classes", "Jump", "Run", "1 more")
    pairs = same_clip_in_two_classes(samples)
    assert sorted(Path(b.path).name for _, b in pairs) == ["copy.mp4", "hardlink.mp4"]
    quiet: list[str] = []
    load_dataset(_class_tree(tmp_path / "e", {"Jump": 3, "Run": 3}), say=quiet.append)
    assert quiet == []
