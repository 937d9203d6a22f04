"""Tests for actionrec.data.video: samplers (pure arithmetic) and decoding of every supported container.

The synthetic videos draw their frame number in big black/white cells (tests/videos.py), so every
decoding test checks that the frames that come out are exactly the ones the sampler asked for.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("av")  # PyAV writes the H.264 / VP8 / VP9 / mov test files

from actionrec.data import video as V  # noqa: E402
from actionrec.errors import ActionrecError  # noqa: E402
from videos import (  # noqa: E402
    coded_frames,
    corner_colours,
    decode_indices,
    frame_types,
    moving_square_frames,
    square_position,
    write_frames_folder,
    write_video,
)

T = 40  # frames in the standard test videos
H, W = 48, 64
FPS = 25.0

# name -> (file name, codec for write_video, B-frames expected)
CONTAINERS = {
    "avi-xvid-bframes": ("xvid_b.avi", None, True),
    "avi-xvid-opencv": ("xvid_cv.avi", "cv2-xvid", False),
    "avi-h264-bframes": ("h264_b.avi", "libx264", True),
    "mp4-h264-bframes": ("h264_b.mp4", None, True),
    "mkv-h264": ("h264.mkv", None, True),
    "webm-vp8": ("vp8.webm", "libvpx", False),
    "webm-vp9": ("vp9.webm", None, False),
    "mov-h264": ("h264.mov", None, True),
    "gif": ("anim.gif", None, False),
    "folder-png": ("frames_png", ".png", False),
    "folder-jpg": ("frames_jpg", ".jpg", False),
}


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    """Every container, written once per test module: 40 coded frames, 64x48, 25 fps."""
    root = tmp_path_factory.mktemp("media")
    frames = coded_frames(T, H, W)
    out = {}
    for name, (file_name, codec, _) in CONTAINERS.items():
        path = root / file_name
        if name.startswith("folder"):
            write_frames_folder(path, frames, ext=codec)
        else:
            write_video(path, frames, FPS, codec)
        out[name] = path
    return out


def indices_of(clip: V.Clip) -> list[int]:
    return decode_indices(clip.frames)


# --------------------------------------------------------------------------------------------------
# Samplers
# --------------------------------------------------------------------------------------------------


def test_central_clip_consecutive():
    span = V.central_clip(100, 25.0, n=16)
    assert span.frame_indices.dtype == np.int64
    assert span.frame_indices.tolist() == list(range(42, 58))
    assert not span.looped
    assert span.start_sec == pytest.approx(42 / 25) and span.end_sec == pytest.approx(58 / 25)
    # odd leftover: the extra frame goes after the clip
    assert V.central_clip(101, 25.0, n=16).frame_indices[0] == 42
    assert V.central_clip(16, 25.0, n=16).frame_indices.tolist() == list(range(16))


def test_central_clip_loops_short_video():
    span = V.central_clip(10, 25.0, n=16)
    assert span.looped
    assert span.frame_indices.tolist() == list(range(10)) + list(range(6))
    assert span.start_sec == 0.0 and span.end_sec == pytest.approx(10 / 25)
    single = V.central_clip(1, 30.0, n=4)
    assert single.looped and single.frame_indices.tolist() == [0, 0, 0, 0]


def test_target_fps_resampling():
    # 50 fps -> 25 fps: every other frame, centred
    span = V.central_clip(200, 50.0, n=8, target_fps=25.0)
    idx = span.frame_indices
    assert np.all(np.diff(idx) == 2) and not span.looped
    assert idx[0] == (200 - 15) // 2
    assert span.end_sec - span.start_sec == pytest.approx(8 / 25)
    # 30 -> 25 fps: frame j at time j/25 -> source floor(j * 1.2)
    idx = V.central_clip(300, 30.0, n=6, target_fps=25.0).frame_indices
    assert (idx - idx[0]).tolist() == [0, 1, 2, 3, 4, 6]
    # 12.5 -> 25 fps (upsampling): each source frame used twice
    idx = V.central_clip(100, 12.5, n=8, target_fps=25.0).frame_indices
    assert (idx - idx[0]).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    # same rate: identical to target_fps=None
    for n_frames in (16, 17, 99, 250):
        a = V.central_clip(n_frames, 25.0, 16, target_fps=25.0)
        b = V.central_clip(n_frames, 25.0, 16)
        assert a.frame_indices.tolist() == b.frame_indices.tolist()
    # 29.97 fps, 64 frames at 25 fps: within the video, strictly increasing, time spacing right
    span = V.central_clip(280, 30000 / 1001, n=64, target_fps=25.0)
    times = span.frame_indices / (30000 / 1001)
    assert span.frame_indices.max() < 280 and np.all(np.diff(span.frame_indices) >= 1)
    assert np.all(np.abs(np.diff(times) - 1 / 25) < 1 / 29.97 + 1e-9)


def test_target_fps_loops_when_clip_longer_than_video():
    span = V.central_clip(30, 50.0, n=20, target_fps=25.0)  # needs 39 source frames
    assert span.looped
    assert span.frame_indices.tolist() == [(2 * j) % 30 for j in range(20)]


def test_uniform_clips():
    spans = V.uniform_clips(300, 25.0, n=16, count=3)
    assert len(spans) == 3
    starts = [int(s.frame_indices[0]) for s in spans]
    assert starts == [42, 142, 242]  # centred on 50, 150, 250
    for s in spans:
        assert s.frame_indices.tolist() == list(range(s.frame_indices[0], s.frame_indices[0] + 16))
        assert not s.looped
    # count=1 is the central clip
    one = V.uniform_clips(123, 25.0, 16, count=1)[0]
    assert one.frame_indices.tolist() == V.central_clip(123, 25.0, 16).frame_indices.tolist()
    # many clips on a short video: inside the video, non-decreasing starts, first at 0, last at the end
    spans = V.uniform_clips(40, 25.0, 16, count=10)
    starts = [int(s.frame_indices[0]) for s in spans]
    assert starts == sorted(starts) and starts[0] == 0 and spans[-1].frame_indices[-1] == 39
    assert all(s.frame_indices.max() < 40 for s in spans)
    # too short: every clip looped
    spans = V.uniform_clips(5, 25.0, 8, count=2)
    assert all(s.looped for s in spans) and spans[0].frame_indices.tolist() == [0, 1, 2, 3, 4, 0, 1, 2]
    # with target_fps
    spans = V.uniform_clips(1000, 50.0, 8, count=4, target_fps=25.0)
    assert all(np.all(np.diff(s.frame_indices) == 2) for s in spans)
    with pytest.raises(ValueError):
        V.uniform_clips(100, 25.0, 16, count=0)


def test_random_clip_bounds_and_seed():
    starts = set()
    rng = np.random.default_rng(0)
    for _ in range(300):
        s = V.random_clip(50, 25.0, 16, rng)
        idx = s.frame_indices
        assert 0 <= idx[0] and idx[-1] <= 49 and not s.looped
        assert idx.tolist() == list(range(idx[0], idx[0] + 16))
        starts.add(int(idx[0]))
    assert starts == set(range(0, 35))  # every start 0..34 reachable, nothing else
    a = [V.random_clip(1000, 25.0, 16, np.random.default_rng(7)).frame_indices[0] for _ in range(3)]
    assert len(set(a)) == 1  # same seed, same clip
    b = {int(V.random_clip(1000, 25.0, 16, np.random.default_rng(seed)).frame_indices[0]) for seed in range(20)}
    assert len(b) > 10
    # target_fps keeps the clip inside
    rng = np.random.default_rng(1)
    for _ in range(100):
        idx = V.random_clip(100, 50.0, 16, rng, target_fps=25.0).frame_indices
        assert idx[0] >= 0 and idx[-1] <= 99 and np.all(np.diff(idx) == 2)
    short = V.random_clip(8, 25.0, 16, np.random.default_rng(0))
    assert short.looped and short.frame_indices.tolist() == list(range(8)) * 2


def test_sliding_windows_cover_video():
    # 10 s at 25 fps, 2 s windows every 1 s: starts 0..8 -> 9 windows, the last ends at 10 s
    spans = V.sliding_windows(250, 25.0, window_sec=2.0, stride_sec=1.0, n=16)
    assert len(spans) == 9
    assert [s.start_sec for s in spans] == pytest.approx([float(k) for k in range(9)])
    assert spans[-1].end_sec == pytest.approx(10.0)
    for s in spans:
        idx = s.frame_indices
        assert len(idx) == 16 and np.all(np.diff(idx) >= 1)
        assert s.start_sec * 25 <= idx[0] and idx[-1] < s.end_sec * 25
        assert not s.looped
    # frame j at a + (j + 0.5) * window / n
    assert spans[1].frame_indices.tolist() == [int(np.floor((1 + (j + 0.5) * 2 / 16) * 25)) for j in range(16)]


def test_sliding_windows_extra_last_window():
    # 10.4 s: regular windows at 0..8 (ending at 10), plus one ending at 10.4
    spans = V.sliding_windows(260, 25.0, 2.0, 1.0, n=8)
    assert len(spans) == 10
    assert spans[-1].start_sec == pytest.approx(8.4) and spans[-1].end_sec == pytest.approx(10.4)
    assert spans[-1].frame_indices[-1] == 256  # (8.4 + 7.5 * 2 / 8) * 25 = 256.9
    # stride larger than the window: gaps allowed, still ends at the end
    spans = V.sliding_windows(250, 25.0, 1.0, 3.0, n=4)
    assert [s.start_sec for s in spans] == pytest.approx([0.0, 3.0, 6.0, 9.0])
    spans = V.sliding_windows(260, 25.0, 1.0, 3.0, n=4)
    assert [s.start_sec for s in spans] == pytest.approx([0.0, 3.0, 6.0, 9.0, 9.4])
    # window exactly the video: one window, not looped
    spans = V.sliding_windows(50, 25.0, 2.0, 0.5, n=50)
    assert len(spans) == 1 and not spans[0].looped and spans[0].frame_indices.tolist() == list(range(50))


def test_sliding_windows_count_formula():
    rng = np.random.default_rng(3)
    for _ in range(200):
        fps = float(rng.choice([12.5, 24.0, 25.0, 29.97, 30.0, 60.0]))
        num_frames = int(rng.integers(1, 2000))
        window = float(rng.uniform(0.2, 5.0))
        stride = float(rng.uniform(0.1, 4.0))
        spans = V.sliding_windows(num_frames, fps, window, stride, n=8)
        duration = num_frames / fps
        for s in spans:
            assert s.frame_indices.min() >= 0 and s.frame_indices.max() < num_frames
        if window > duration:
            assert len(spans) == 1 and spans[0].looped
            continue
        regular = int(np.floor((duration - window) / stride + 1e-6)) + 1
        assert len(spans) in (regular, regular + 1)
        assert spans[-1].end_sec == pytest.approx(duration, abs=1e-5)
        assert all(b.start_sec > a.start_sec for a, b in zip(spans, spans[1:]))


def test_sliding_windows_loop_short_video():
    spans = V.sliding_windows(10, 25.0, window_sec=1.0, stride_sec=0.5, n=8)
    assert len(spans) == 1 and spans[0].looped
    assert spans[0].frame_indices.tolist() == [int(np.floor((j + 0.5) * 25 / 8)) % 10 for j in range(8)]


def test_sampler_argument_errors():
    with pytest.raises(ValueError):
        V.central_clip(0, 25.0)
    with pytest.raises(ValueError):
        V.central_clip(10, 0.0)
    with pytest.raises(ValueError):
        V.central_clip(10, 25.0, n=0)
    with pytest.raises(ValueError):
        V.central_clip(10, 25.0, target_fps=-1)
    with pytest.raises(ValueError):
        V.sliding_windows(10, 25.0, 0.0, 1.0)
    with pytest.raises(ValueError):
        V.sliding_windows(10, 25.0, 1.0, 0.0)


def test_fit_span_onto_fewer_frames():
    # a span past the real end keeps its spacing and its relative place (a central clip stays central)
    span = V.central_clip(100, 25.0, 16)  # 42..57
    fitted = V._fit_span(span, 50, 100, 25.0)
    assert fitted.frame_indices.tolist() == list(range(21, 37)) and not fitted.looped
    assert fitted.start_sec == pytest.approx(21 / 25) and fitted.end_sec == pytest.approx(37 / 25)
    # a span already inside is untouched
    inside = V.central_clip(60, 25.0, 16)
    assert V._fit_span(inside, 59, 60, 25.0) is inside
    # a span at the announced end is shifted inside the real end
    last = V.ClipSpan(np.arange(84, 100), 84 / 25, 100 / 25, False)
    assert V._fit_span(last, 90, 100, 25.0).frame_indices.tolist() == list(range(74, 90))
    # longer than the real video: looped, spacing kept
    step2 = V.central_clip(100, 50.0, 10, target_fps=25.0)  # 19 frames wide
    fitted = V._fit_span(step2, 12, 100, 50.0)
    assert fitted.looped and fitted.frame_indices.tolist() == [(2 * j) % 12 for j in range(10)]
    # an already looped span is unrolled first
    looped = V.central_clip(10, 25.0, 16)
    fitted = V._fit_span(looped, 7, 10, 25.0)
    assert fitted.looped and fitted.frame_indices.tolist() == [j % 7 for j in range(16)]


# --------------------------------------------------------------------------------------------------
# Decoding every container
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CONTAINERS))
def test_probe_and_central_clip(media, name):
    path = media[name]
    info = V.probe(path)
    assert info.path == str(path)
    assert info.fps == pytest.approx(FPS, rel=1e-3)
    assert info.num_frames == T
    assert (info.width, info.height) == (W, H)
    assert info.rotation == 0
    assert info.duration == pytest.approx(T / FPS, rel=1e-3)

    clip = V.read_clip(path, n=16)
    assert clip.frames.shape == (16, H, W, 3) and clip.frames.dtype == np.uint8
    assert clip.span.frame_indices.tolist() == list(range(12, 28))
    assert indices_of(clip) == list(range(12, 28))
    assert not clip.span.looped
    # colours are RGB: the top-left marker cell is red, the bottom-right one blue
    corners = corner_colours(clip.frames[0])
    assert corners["top_left"] == "red" and corners["bottom_right"] == "blue"


@pytest.mark.parametrize("name", [k for k, v in CONTAINERS.items() if v[2]])
def test_b_frames_were_written(media, name):
    assert "B" in frame_types(media[name])


def test_xvid_fourcc(media):
    import av

    # (OpenCV's CAP_PROP_FOURCC reports FFmpeg's internal "FMP4" for any MPEG-4 Part 2 stream)
    for name in ("avi-xvid-bframes", "avi-xvid-opencv"):
        with av.open(str(media[name])) as container:
            assert container.streams.video[0].codec_context.codec_tag == "XVID"


@pytest.mark.parametrize("name", list(CONTAINERS))
def test_read_clips_many_spans_one_pass(media, name):
    path = media[name]
    spans = V.uniform_clips(T, FPS, n=8, count=3) + [
        V.ClipSpan(np.array([39, 0, 5, 5, 20], dtype=np.int64), 0.0, 1.6, False),
        V.central_clip(T, FPS, n=60),  # longer than the video: looped
    ]
    clips = V.read_clips(path, spans)
    assert len(clips) == len(spans)
    for clip, span in zip(clips, spans):
        assert clip.span.frame_indices.tolist() == span.frame_indices.tolist()
        assert indices_of(clip) == span.frame_indices.tolist()
    assert clips[-1].span.looped
    assert indices_of(clips[-1]) == [j % T for j in range(60)]


def _record_processed(monkeypatch) -> list[np.ndarray]:
    """Every frame the reader converts (resized, RGB) is appended to the returned list."""
    processed: list[np.ndarray] = []
    original = V._processor

    def recording_processor(info, short_side):
        process = original(info, short_side)

        def wrapped(frame):
            out = process(frame)
            processed.append(out)
            return out

        return wrapped

    monkeypatch.setattr(V, "_processor", recording_processor)
    return processed


def test_only_needed_frames_are_converted_and_decoding_stops(media, monkeypatch):
    converted = _record_processed(monkeypatch)
    spans = [V.ClipSpan(np.array([2, 3, 3, 9]), 0, 0, False), V.ClipSpan(np.array([9, 17]), 0, 0, False)]
    with V._open_source(media["mp4-h264-bframes"]) as source:
        clips = V._read_spans(source, spans, None)
        assert source._pos == 17  # nothing decoded after the last needed frame
    assert len(converted) == 4  # frames 2, 3, 9, 17: each converted once, shared between spans
    assert [indices_of(c) for c in clips] == [[2, 3, 3, 9], [9, 17]]


@pytest.mark.parametrize("name", ["mp4-h264-bframes", "webm-vp9", "folder-png"])
def test_iter_windows_matches_read_clips(media, name):
    path = media[name]
    windows = list(V.iter_windows(path, window_sec=0.64, stride_sec=0.32, n=8))
    spans = V.sliding_windows(T, FPS, 0.64, 0.32, n=8)
    assert len(windows) == len(spans) == 4
    for clip, span in zip(windows, spans):
        assert clip.span.frame_indices.tolist() == span.frame_indices.tolist()
        assert indices_of(clip) == span.frame_indices.tolist()
    assert windows[-1].span.end_sec == pytest.approx(T / FPS)


def test_iter_windows_holds_only_open_windows(media, monkeypatch):
    """Frames are dropped as soon as no pending window needs them."""
    alive = _record_processed(monkeypatch)
    import gc
    import weakref

    refs = []
    peak = 0
    for clip in V.iter_windows(media["mp4-h264-bframes"], window_sec=0.32, stride_sec=0.32, n=8):
        refs.extend(weakref.ref(a) for a in alive)
        alive.clear()
        del clip
        gc.collect()
        peak = max(peak, sum(r() is not None for r in refs))
    # windows do not overlap here: at most one window's frames (plus the next frame) are ever held
    assert peak <= 9


@pytest.mark.parametrize("name", ["avi-xvid-bframes", "mp4-h264-bframes", "gif", "folder-jpg"])
def test_short_side_resize(media, name):
    path = media[name]
    small = V.read_clip(path, n=4, short_side=24)
    assert small.frames.shape == (4, 24, 32, 3)
    assert indices_of(small) == list(range(18, 22))
    big = V.read_clip(path, n=4, short_side=96)
    assert big.frames.shape == (4, 96, 128, 3)
    assert indices_of(big) == list(range(18, 22))
    clips = V.read_clips(path, V.uniform_clips(T, FPS, 4, count=2), short_side=36)
    assert all(c.frames.shape == (4, 36, 48, 3) for c in clips)


def test_resized_shape():
    assert V.resized_shape(240, 320, 256) == (256, 341)
    assert V.resized_shape(320, 240, 256) == (341, 256)
    assert V.resized_shape(256, 340, 256) == (256, 340)
    assert V.resized_shape(48, 64, None) == (48, 64)


def test_target_fps_read(tmp_path):
    path = write_video(tmp_path / "fast.mp4", coded_frames(60), 50.0)
    clip = V.read_clip(path, n=8, target_fps=25.0)
    idx = clip.span.frame_indices.tolist()
    assert idx == list(range(22, 38, 2))
    assert indices_of(clip) == idx


def test_short_video_is_looped(tmp_path):
    path = write_video(tmp_path / "short.mp4", coded_frames(10), FPS)
    clip = V.read_clip(path, n=16)
    assert clip.span.looped
    assert indices_of(clip) == list(range(10)) + list(range(6))
    folder = tmp_path / "short_frames"
    write_frames_folder(folder, coded_frames(3))
    clip = V.read_clip(folder, n=8)
    assert clip.span.looped and indices_of(clip) == [0, 1, 2, 0, 1, 2, 0, 1]


def test_moving_square_survives_encoding(tmp_path):
    frames = moving_square_frames(20, 48, 64)
    path = write_video(tmp_path / "square.mp4", frames, FPS)
    clip = V.read_clip(path, n=20)
    for decoded, original in zip(clip.frames, frames):
        assert square_position(decoded) == pytest.approx(square_position(original), abs=1.0)


def test_odd_fps_and_size(tmp_path):
    path = write_video(tmp_path / "ntsc.mp4", coded_frames(30, 72, 96), 30000 / 1001)
    info = V.probe(path)
    assert info.fps == pytest.approx(29.97, abs=0.01)
    assert (info.width, info.height, info.num_frames) == (96, 72, 30)
    clip = V.read_clip(path, n=10, target_fps=25.0)
    assert indices_of(clip) == clip.span.frame_indices.tolist()


# --------------------------------------------------------------------------------------------------
# Rotation metadata
# --------------------------------------------------------------------------------------------------


def test_rotation_display_matrix(tmp_path):
    # PyAV writes a display matrix "rotate 90 degrees counter-clockwise to show": the frames must
    # come out as the original turned by 90 degrees CCW: 48 wide, 64 high, red cell bottom-left.
    frames = coded_frames(20, H, W)
    path = write_video(tmp_path / "portrait.mp4", frames, FPS, rotation=90)
    info = V.probe(path)
    assert (info.width, info.height) == (H, W)
    assert info.rotation == 270  # clockwise, as ffmpeg's legacy `rotate` tag
    clip = V.read_clip(path, n=4)
    assert clip.frames.shape == (4, W, H, 3)
    corners = corner_colours(clip.frames[0])
    assert corners["bottom_left"] == "red" and corners["top_right"] == "blue"
    expected = np.rot90(frames[clip.span.frame_indices], k=1, axes=(1, 2))
    assert np.abs(clip.frames.astype(int) - expected).mean() < 8
    assert decode_indices(np.rot90(clip.frames, k=-1, axes=(1, 2))) == clip.span.frame_indices.tolist()
    # short_side applies to the upright frame
    assert V.read_clip(path, n=2, short_side=24).frames.shape == (2, 32, 24, 3)


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_rotation_manual_fallback_matches_opencv(tmp_path, degrees):
    """If OpenCV did not rotate, the reader rotates itself: both paths give the same frames."""
    path = str(write_video(tmp_path / f"rot{degrees}.mp4", coded_frames(8, H, W), FPS, rotation=degrees))
    wanted = np.arange(8)
    with V._CvSource(path, auto_rotate=True) as auto, V._CvSource(path, auto_rotate=False) as manual:
        assert auto.info == manual.info
        assert auto.info.rotation == (360 - degrees) % 360
        a = [f for _, f in auto.frames(wanted)]
        b = [f for _, f in manual.frames(wanted)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert a[0].shape[:2] == ((W, H) if degrees != 180 else (H, W))


# --------------------------------------------------------------------------------------------------
# Wrong frame counts, truncated files, seeking
# --------------------------------------------------------------------------------------------------


def _inflate_count(monkeypatch, extra: int):
    """Make the container claim `extra` more frames than it has (as webm/mkv estimates can)."""
    original = V._open_source

    def lying(path, fps=None):
        source = original(path, fps)
        source.info = dataclasses.replace(source.info, num_frames=source.info.num_frames + extra)
        return source

    monkeypatch.setattr(V, "_open_source", lying)


@pytest.mark.parametrize("name", ["mkv-h264", "webm-vp8", "avi-xvid-bframes", "gif", "folder-png"])
def test_count_too_high_read_clip(media, monkeypatch, name):
    _inflate_count(monkeypatch, 60)  # claims 100 frames, has 40
    assert V.probe(media[name]).num_frames == 100
    clip = V.read_clip(media[name], n=16)
    # re-sampled on the 40 real frames: the true central clip
    assert clip.span.frame_indices.tolist() == list(range(12, 28))
    assert indices_of(clip) == list(range(12, 28))


@pytest.mark.parametrize("name", ["mkv-h264", "webm-vp9", "folder-png"])
def test_count_too_high_read_clips_refits(media, monkeypatch, name):
    _inflate_count(monkeypatch, 60)
    spans = V.uniform_clips(100, FPS, n=8, count=3)  # computed for the claimed 100 frames
    clips = V.read_clips(media[name], spans)
    for clip in clips:
        idx = clip.span.frame_indices.tolist()
        assert max(idx) < T and idx == list(range(idx[0], idx[0] + 8))
        assert indices_of(clip) == idx
    # the first span fitted as is, the others moved inside keeping their order
    assert clips[0].span.frame_indices.tolist() == spans[0].frame_indices.tolist()
    starts = [c.span.frame_indices[0] for c in clips]
    assert starts == sorted(starts)
    # a clip longer than the real video is looped
    clip = V.read_clips(media[name], [V.central_clip(100, FPS, n=64)])[0]
    assert clip.span.looped and indices_of(clip) == clip.span.frame_indices.tolist()
    assert max(clip.span.frame_indices) < T


@pytest.mark.parametrize("name", ["mkv-h264", "folder-png"])
def test_count_too_high_iter_windows(media, monkeypatch, name):
    _inflate_count(monkeypatch, 25)  # claims 65 frames (2.6 s), has 40 (1.6 s)
    windows = list(V.iter_windows(media[name], window_sec=0.64, stride_sec=0.32, n=8))
    expected = V.sliding_windows(T, FPS, 0.64, 0.32, n=8)
    assert [w.span.frame_indices.tolist() for w in windows] == [e.frame_indices.tolist() for e in expected]
    for w in windows:
        assert indices_of(w) == w.span.frame_indices.tolist()
    assert windows[-1].span.end_sec == pytest.approx(T / FPS)


def test_webm_and_mkv_count_is_exact(tmp_path):
    # Matroska stores no frame count; the reader counts packets instead of trusting the duration
    frames = coded_frames(37)
    for name in ("odd.webm", "odd.mkv"):
        path = write_video(tmp_path / name, frames, 30.0)
        assert V.probe(path).num_frames == 37


def test_truncated_avi_gives_real_frames(tmp_path):
    """An AVI cut in half still opens (its header claims 120 frames); clips are made of frames that
    really decode: frame k of a clip is frame k of a plain sequential decode of the damaged file.
    (The decoder may drop B-frames whose reference was cut off, so those are not always the
    original frame numbers; that is the damaged file's own frame sequence, not garbage.)"""
    path = write_video(tmp_path / "full.avi", coded_frames(120), FPS)
    cut = tmp_path / "cut.avi"
    data = path.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    assert V.probe(cut).num_frames == 120
    cap = cv2.VideoCapture(str(cut))
    sequential = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        sequential.append(decode_indices(frame[None, :, :, ::-1])[0])
    cap.release()
    assert 10 < len(sequential) < 120

    def check(clip):
        idx = clip.span.frame_indices.tolist()
        assert max(idx) < len(sequential)
        assert indices_of(clip) == [sequential[i] for i in idx]

    clip = V.read_clip(cut, n=16)
    check(clip)
    assert clip.span.frame_indices.tolist() == V.central_clip(len(sequential), FPS, 16).frame_indices.tolist()
    for c in V.read_clips(cut, V.uniform_clips(120, FPS, n=8, count=4)):
        check(c)
    windows = list(V.iter_windows(cut, 0.4, 0.2, n=8))
    assert windows and windows[-1].span.end_sec == pytest.approx(len(sequential) / FPS)
    for w in windows:
        check(w)


@pytest.mark.parametrize("file_name,codec", [
    ("seek.mp4", None), ("seek.avi", None), ("seek.mkv", None), ("seek.webm", "libvpx"), ("seek_h264.avi", "libx264"),
])
def test_seeking_is_exact(tmp_path, monkeypatch, file_name, codec):
    monkeypatch.setattr(V, "SEEK_MIN_GAP", 20)
    path = str(write_video(tmp_path / file_name, coded_frames(400), FPS, codec, gop=50))
    spans = [
        V.ClipSpan(np.arange(3, 7), 0, 0, False),
        V.ClipSpan(np.arange(120, 136), 0, 0, False),
        V.ClipSpan(np.arange(249, 252), 0, 0, False),
        V.ClipSpan(np.array([330, 331, 390]), 0, 0, False),
    ]
    with V._open_source(path) as source:
        clips = V._read_spans(source, spans, None)
        assert source.seeks >= 3
    for clip in clips:
        assert indices_of(clip) == clip.span.frame_indices.tolist()
    # going backwards reopens; a clip in the last frames
    with V._open_source(path) as source:
        got = [V._read_spans(source, [V.ClipSpan(np.arange(s, s + 4), 0, 0, False)], None)[0] for s in (300, 100, 396)]
    assert [indices_of(c) for c in got] == [list(range(s, s + 4)) for s in (300, 100, 396)]


def test_failed_seek_check_falls_back_to_sequential(tmp_path, monkeypatch):
    monkeypatch.setattr(V, "SEEK_MIN_GAP", 20)
    path = str(write_video(tmp_path / "seek.mp4", coded_frames(200), FPS, gop=50))
    monkeypatch.setattr(V._CvSource, "_frame_number_from_time", lambda self: -1)  # timestamps useless
    with V._open_source(path) as source:
        clip = V._read_spans(source, [V.ClipSpan(np.arange(150, 160), 0, 0, False)], None)[0]
        assert source.seeks == 0 and not source._seekable
    assert indices_of(clip) == list(range(150, 160))


# --------------------------------------------------------------------------------------------------
# Frame folders and GIF
# --------------------------------------------------------------------------------------------------


def test_folder_natural_order_and_fps(tmp_path):
    folder = tmp_path / "unpadded"
    frames = coded_frames(12)
    write_frames_folder(folder, frames, pattern="img{}")  # img0 .. img11, not zero padded
    (folder / "notes.txt").write_text("not a frame")
    (folder / ".hidden.png").write_bytes(b"")
    info = V.probe(folder, fps=10)
    assert info.fps == 10 and info.num_frames == 12
    assert V.probe(folder).fps == V.DEFAULT_FOLDER_FPS
    clip = V.read_clip(folder, n=12, fps=10)
    assert indices_of(clip) == list(range(12))
    assert clip.span.end_sec == pytest.approx(1.2)


def test_folder_gray_and_rgba_frames(tmp_path):
    folder = tmp_path / "mixed"
    frames = coded_frames(4)
    write_frames_folder(folder, frames)
    gray = cv2.cvtColor(frames[1], cv2.COLOR_RGB2GRAY)
    cv2.imwrite(str(folder / "frame_00001.png"), gray)
    rgba = cv2.cvtColor(frames[2][:, :, ::-1], cv2.COLOR_BGR2BGRA)
    cv2.imwrite(str(folder / "frame_00002.png"), rgba)
    clip = V.read_clip(folder, n=4)
    assert clip.frames.shape == (4, H, W, 3)
    assert indices_of(clip) == [0, 1, 2, 3]


def test_gif_pillow_fallback(media, monkeypatch):
    def refuse(path, fps_hint=None, auto_rotate=True):
        raise V.VideoError(f"{path}: cannot be opened")

    monkeypatch.setattr(V, "_CvSource", refuse)
    info = V.probe(media["gif"])
    assert (info.num_frames, info.width, info.height) == (T, W, H)
    assert info.fps == pytest.approx(FPS)
    clip = V.read_clip(media["gif"], n=16)
    assert indices_of(clip) == list(range(12, 28))
    assert corner_colours(clip.frames[0])["top_left"] == "red"
    with pytest.raises(V.VideoError):
        V.probe(media["mp4-h264-bframes"])  # only GIFs fall back


# --------------------------------------------------------------------------------------------------
# Errors: one line, naming the path
# --------------------------------------------------------------------------------------------------


def _assert_video_error(excinfo, path):
    message = str(excinfo.value)
    assert isinstance(excinfo.value, ActionrecError)
    assert str(path) in message
    assert "\n" not in message
    assert ";" in message  # "<what is wrong>; <how to fix>"


def test_error_missing_path(tmp_path):
    path = tmp_path / "nope.mp4"
    for call in (V.probe, V.read_clip, lambda p: V.read_clips(p, [V.central_clip(10, 25.0)]),
                 lambda p: V.iter_windows(p, 1.0, 1.0)):
        with pytest.raises(V.VideoError) as excinfo:
            call(path)
        _assert_video_error(excinfo, path)


def test_error_text_file_renamed(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 50)
    with pytest.raises(V.VideoError) as excinfo:
        V.read_clip(path)
    _assert_video_error(excinfo, path)


def test_error_empty_file(tmp_path):
    path = tmp_path / "empty.avi"
    path.write_bytes(b"")
    with pytest.raises(V.VideoError) as excinfo:
        V.probe(path)
    _assert_video_error(excinfo, path)


@pytest.mark.parametrize("keep", [0.5, 0.02])
def test_error_truncated_mp4(media, tmp_path, keep):
    data = media["mp4-h264-bframes"].read_bytes()
    path = tmp_path / "truncated.mp4"
    path.write_bytes(data[: max(int(len(data) * keep), 16)])
    with pytest.raises(V.VideoError) as excinfo:
        V.read_clip(path)
    _assert_video_error(excinfo, path)


def test_error_truncated_webm_header(media, tmp_path):
    data = media["webm-vp9"].read_bytes()
    path = tmp_path / "truncated.webm"
    path.write_bytes(data[:200])
    with pytest.raises(V.VideoError) as excinfo:
        V.probe(path)
    _assert_video_error(excinfo, path)


def test_error_broken_gif(tmp_path):
    path = tmp_path / "broken.gif"
    path.write_bytes(b"GIF89a" + b"\x00" * 10)
    with pytest.raises(V.VideoError) as excinfo:
        V.read_clip(path)
    _assert_video_error(excinfo, path)


def test_error_empty_folder(tmp_path):
    folder = tmp_path / "no_frames"
    folder.mkdir()
    (folder / "readme.txt").write_text("nothing here")
    with pytest.raises(V.VideoError) as excinfo:
        V.probe(folder)
    _assert_video_error(excinfo, folder)


def test_error_bad_frame_in_folder(tmp_path):
    folder = tmp_path / "bad"
    paths = write_frames_folder(folder, coded_frames(5))
    paths[2].write_bytes(b"not a png")
    V.probe(folder)  # the first frame is fine
    with pytest.raises(V.VideoError) as excinfo:
        V.read_clip(folder, n=5)
    _assert_video_error(excinfo, paths[2])


def test_error_frame_size_mismatch_in_folder(tmp_path):
    folder = tmp_path / "sizes"
    write_frames_folder(folder, coded_frames(3))
    odd = coded_frames(1, 24, 32, first=3)[0]
    cv2.imwrite(str(folder / "frame_00003.png"), np.ascontiguousarray(odd[:, :, ::-1]))
    with pytest.raises(V.VideoError) as excinfo:
        V.read_clip(folder, n=4)
    assert "frame_00003.png" in str(excinfo.value)


def test_iter_windows_raises_at_call(tmp_path):
    path = tmp_path / "bad.mkv"
    path.write_text("garbage")
    with pytest.raises(V.VideoError):
        V.iter_windows(path, 1.0, 1.0)  # not only when iterated


def test_video_extensions():
    for ext in (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".gif"):
        assert ext in V.VIDEO_EXTENSIONS
    assert all(e == e.lower() and e.startswith(".") for e in V.VIDEO_EXTENSIONS)


# --------------------------------------------------------------------------------------------------
# Real clips (skipped when ../shared/realclips is absent)
# --------------------------------------------------------------------------------------------------

REALCLIPS = Path(__file__).resolve().parents[2] / "shared" / "realclips"


@pytest.mark.parametrize("file_name,frames,fps,size", [
    ("arm_wrestling.mp4", 280, 28.0, (340, 256)),
    ("archery.avi", 131, 25.0, (320, 240)),
    ("cricket_shot_224.gif", 79, 25.0, (224, 224)),
])
def test_real_clips(file_name, frames, fps, size):
    path = REALCLIPS / file_name
    if not path.exists():
        pytest.skip(f"{path} not present")
    info = V.probe(path)
    assert (info.num_frames, (info.width, info.height)) == (frames, size)
    assert info.fps == pytest.approx(fps, rel=1e-3)
    clip = V.read_clip(path, n=64, short_side=256, target_fps=25.0)
    assert clip.frames.shape[0] == 64 and min(clip.frames.shape[1:3]) == 256
    # the decoded central frames equal a plain sequential decode of the same indices
    cap = cv2.VideoCapture(str(path))
    wanted = set(clip.span.frame_indices.tolist())
    plain = {}
    i = 0
    while len(plain) < len(wanted):
        ok, frame = cap.read()
        assert ok
        if i in wanted:
            plain[i] = frame
        i += 1
    cap.release()
    clip_full = V.read_clip(path, n=64, target_fps=25.0)
    for k, idx in enumerate(clip_full.span.frame_indices.tolist()):
        assert np.array_equal(clip_full.frames[k], plain[idx][:, :, ::-1])


def test_folder_copy_of_real_gif(tmp_path):
    path = REALCLIPS / "cricket_shot_224.gif"
    if not path.exists():
        pytest.skip(f"{path} not present")
    frames = V.read_clip(path, n=79).frames
    write_frames_folder(tmp_path / "cricket", frames)
    again = V.read_clip(tmp_path / "cricket", n=79).frames
    assert np.array_equal(frames, again)
    shutil.rmtree(tmp_path / "cricket")


def test_content_key_is_the_whole_content_of_a_file_or_a_folder_of_frames(tmp_path):
    """data.video.content_key (the apps' and, once switched, the feature cache's): the content, not the name; the same
    key the feature cache has always used, so no cache entry is orphaned."""
    from actionrec.data.video import content_key
    from actionrec.training.features import content_key as feature_key

    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"x" * 3_000_000)
    b.write_bytes(b"x" * 3_000_000)
    assert content_key(a) == content_key(str(b)) == feature_key(str(a))
    b.write_bytes(b"x" * 2_999_999 + b"y")
    assert content_key(b) != content_key(a)
    folder = tmp_path / "frames"
    folder.mkdir()
    (folder / "0001.png").write_bytes(b"one")
    assert content_key(folder) == feature_key(str(folder)) != content_key(a)
    with pytest.raises(ActionrecError, match="cannot be read"):
        content_key(tmp_path / "missing.mp4")
