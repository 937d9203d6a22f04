"""`actionrec timeline` and `actionrec flag`: streaming windows, smoothing, none, segments, totals, outputs, calibration,
flagged ranges and censored copies.

Two kinds of tests:

* fast ones with a tiny stand-in model that reads the colour of the frames (``ColourModel``) on solid-colour videos,
  where every boundary is known to the frame: they pin down the machinery;
* end to end ones with a run trained on the demo data (as in test_train.py) on a 20 s video stitched from demo clips
  of four classes in a known order: the timeline finds each boundary within one stride and each class's total within
  5 %, and flag/censor black out exactly the flagged frames, keep the others, the duration and the audio.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from actionrec.cli import main

FPS = 25.0

# ----------------------------------------------------------------------------------------------- helpers (shared)


class ColourModel(nn.Module):
    """Stand-in for a run: classes Red/Green/Blue from the mean colour of the window; grey gives 1/3 each (none)."""

    def __init__(self, categories=("Red", "Green", "Blue"), sharpness: float = 12.0, delay: float = 0.0):
        super().__init__()
        from actionrec.models.i3d import I3D_KINETICS400
        from actionrec.models.info import ModelInfo

        spec = dataclasses.replace(I3D_KINETICS400, name="colour", resize=32, crop=32, sha256="", categories=tuple(categories))
        self.info = ModelInfo(name="colour-model", spec=spec, categories=tuple(categories), weights_sha256="",
                              predict_frames=16, identity="colour-model-1")
        self.scale = nn.Parameter(torch.tensor(float(sharpness)), requires_grad=False)
        self.delay = delay
        self.calls = 0  # windows seen

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import time

        self.calls += x.shape[0]
        if self.delay:
            time.sleep(self.delay * x.shape[0])
        # Each frame votes by its mean colour; the window's probabilities are the mean vote (a window straddling a cut
        # scores in proportion to its frames on each side, like a real model roughly does).
        per_frame = (x.mean(dim=(3, 4)).transpose(1, 2) * self.scale).softmax(-1)  # (B, T, 3)
        probs = torch.full((x.shape[0], len(self.info.categories)), 1e-6)
        probs[:, :3] = per_frame.mean(1)
        return probs.log()


COLOURS = {"Red": (220, 30, 30), "Green": (30, 220, 30), "Blue": (30, 30, 220), "grey": (128, 128, 128)}


def colour_frames(segments, fps: float = FPS, size=(64, 48)) -> np.ndarray:
    """Solid-colour frames, segment by segment: [(colour name, seconds)]; a little noise so the codec has work."""
    rng = np.random.default_rng(0)
    out = []
    for name, seconds in segments:
        n = int(round(seconds * fps))
        block = np.empty((n, size[1], size[0], 3), np.uint8)
        block[:] = COLOURS[name]
        noise = rng.integers(-6, 7, size=block.shape)
        out.append(np.clip(block.astype(np.int16) + noise, 0, 255).astype(np.uint8))
    return np.concatenate(out)


def write_av_video(path: Path, frames: np.ndarray, fps: float = FPS, beeps=(), sample_rate: int = 48000) -> Path:
    """H.264 (near lossless) + an AAC mono track that is silent except 0.1 s 1 kHz beeps starting at `beeps` (s)."""
    import av

    path = Path(path)
    n = len(frames)
    total = int(round(n / fps * sample_rate))
    audio = np.zeros(total, np.float32)
    for t in beeps:
        a = int(round(t * sample_rate))
        k = np.arange(min(int(0.1 * sample_rate), total - a))
        audio[a : a + k.size] = 0.5 * np.sin(2 * np.pi * 1000 * k / sample_rate)
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001), options={"crf": "8", "preset": "fast", "g": "25"})
        v.width, v.height, v.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        a = c.add_stream("aac", rate=sample_rate, layout="mono")
        done = 0
        for i, f in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
            frame.pts = i
            for p in v.encode(frame):
                c.mux(p)
            upto = min(total, int(round((i + 1) / fps * sample_rate)))
            while done + 1024 <= upto or (i == n - 1 and done < total):
                chunk = audio[done : done + 1024]
                af = av.AudioFrame.from_ndarray(chunk[None, :], format="flt", layout="mono")
                af.sample_rate, af.pts = sample_rate, done
                for p in a.encode(af):
                    c.mux(p)
                done += chunk.size
        for s in (v, a):
            for p in s.encode():
                c.mux(p)
    return path


def read_frames(path) -> np.ndarray:
    import cv2

    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f[:, :, ::-1])
    cap.release()
    return np.stack(frames)


def beep_onsets(path) -> list[float]:
    """Start times (s, from the file's time zero) of the beeps in the first audio stream."""
    import av

    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        chunks, first = [], None
        for frame in c.decode(stream):
            if first is None:
                first = float(frame.pts * frame.time_base)
            chunks.append(frame.to_ndarray().mean(0))
        rate = stream.rate
    x = np.abs(np.concatenate(chunks))
    loud = np.flatnonzero(x > 0.1)
    onsets = [loud[0]] + [b for a, b in zip(loud[:-1], loud[1:]) if b - a > 0.2 * rate] if loud.size else []
    return [first + i / rate for i in onsets]


def demo_video(data: Path, path: Path, segments, beeps=None) -> Path:
    """Segments [(class, seconds)] stitched from the run's training clips of each class (24 frames each, in turn)."""
    from actionrec.data.datasets import load_dataset, make_splits

    train = {}
    for s in make_splits(load_dataset(data), seed=0).train:
        train.setdefault(s.label, []).append(s.path)
    frames = []
    for label, seconds in segments:
        clips = [read_frames(p) for p in sorted(train[label])]
        need, seq, i = int(round(seconds * FPS)), [], 0
        while len(seq) < need:
            seq.extend(clips[i % len(clips)])
            i += 1
        frames.extend(seq[:need])
    return write_av_video(path, np.stack(frames), FPS, beeps=beeps if beeps is not None else ())


def boundaries(segments) -> list[float]:
    out, t = [], 0.0
    for _, seconds in segments[:-1]:
        t += seconds
        out.append(t)
    return out


def use_model(monkeypatch, model) -> None:
    """Make the CLI's load_model return `model` whatever name it is given."""
    import actionrec

    monkeypatch.setattr(actionrec, "load_model", lambda name, device="cpu", **engine_options: model)


# ----------------------------------------------------------------------------------------------- fast: stand-in model

COLOUR_SEGMENTS = [("Red", 3.0), ("grey", 2.0), ("Green", 2.6), ("Blue", 2.4)]


@pytest.fixture(scope="module")
def colour_video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("colour") / "colours.mp4"
    return write_av_video(path, colour_frames(COLOUR_SEGMENTS), beeps=(1.0, 5.5, 8.0))


def test_streaming_pass_segments_none_and_totals(colour_video, tmp_path):
    from actionrec.apps.timeline import timeline
    from actionrec.data.video import probe, sliding_windows

    model = ColourModel()
    tl = timeline(colour_video, model, stride=0.5, cache=tmp_path / "cache")
    info = probe(colour_video)
    assert len(tl.starts) == len(sliding_windows(info.num_frames, info.fps, 0.64, 0.5, 16)) == model.calls
    assert tl.window == pytest.approx(0.64) and tl.stride == 0.5 and tl.duration == pytest.approx(10.0)
    assert [s.label for s in tl.segments] == ["Red", "none", "Green", "Blue"]
    for found, true in zip([s.end for s in tl.segments[:-1]], boundaries(COLOUR_SEGMENTS)):
        assert abs(found - true) <= 0.5 / 2, (found, true)  # half a stride: the cut is interpolated
    assert sum(tl.totals.values()) == pytest.approx(10.0)
    for name, seconds in COLOUR_SEGMENTS:
        assert tl.totals["none" if name == "grey" else name] == pytest.approx(seconds, rel=0.05)
    assert tl.segments[0].confidence > 0.9 and tl.threshold_source.startswith("default 0.5")

    again = timeline(colour_video, model, stride=0.5, cache=tmp_path / "cache")  # cached: the model is not run
    assert again.from_cache and model.calls == len(tl.starts)
    assert [s.to_dict() for s in again.segments] == [s.to_dict() for s in tl.segments]


def test_smoothing_blips_and_labels_restriction():
    from actionrec.apps.timeline import build_timeline
    from actionrec.apps.windows import WindowProbs

    n, stride = 21, 0.5
    starts = np.arange(n) * stride
    probs = np.tile(np.array([[0.9, 0.05, 0.05]], np.float32), (n, 1))
    probs[11:] = [0.05, 0.9, 0.05]  # Green from window 11 on
    probs[5] = [0.1, 0.1, 0.8]  # a one-window Blue blip inside Red
    wp = WindowProbs("v.mp4", "m", ("Red", "Green", "Blue"), starts, starts + 0.64, probs, float(starts[-1] + 0.64),
                     25.0, 0.64, stride, 16)
    raw = build_timeline(wp, smooth=0, min_segment=0)
    assert [s.label for s in raw.segments] == ["Red", "Blue", "Red", "Green"]
    tl = build_timeline(wp)  # smoothing and the 1.5-stride minimum remove the blip
    assert [s.label for s in tl.segments] == ["Red", "Green"]
    cut = (starts[10] + starts[11]) / 2 + 0.32
    assert abs(tl.segments[0].end - cut) < 1e-6  # no straddling window: the midpoint between the two centres
    only_green = build_timeline(wp, labels=["Green"])
    assert [s.label for s in only_green.segments] == ["none", "Green"]
    assert set(only_green.totals) == {"Green", "none"}


def test_calibration_per_class_thresholds(tmp_path):

    from actionrec.apps.calibration import DEFAULT_THRESHOLD, calibrate, thresholds_for
    from actionrec.models.i3d import I3D_KINETICS400
    from actionrec.models.info import ModelInfo

    classes = ["A", "B", "C"]
    probs = np.array([
        [0.9, 0.05, 0.05], [0.8, 0.1, 0.1], [0.7, 0.2, 0.1], [0.6, 0.3, 0.1],  # A, ranked first
        [0.45, 0.40, 0.15],  # a B clip ranked A: a false alarm for A at 0.45
        [0.1, 0.8, 0.1], [0.2, 0.7, 0.1], [0.1, 0.6, 0.3],  # B
        [0.1, 0.1, 0.8], [0.3, 0.3, 0.4],  # only two C clips: default
    ])
    labels = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2]
    thr, how = calibrate(probs, labels, classes)
    assert 0.45 < thr["A"] < 0.6  # between the false alarm and the weakest hit
    assert thr["B"] < 0.6 and how["B"].startswith("calibrated")
    assert thr["C"] == DEFAULT_THRESHOLD and "2 validation clips" in how["C"]

    run = ModelInfo(name=str(tmp_path), spec=I3D_KINETICS400, categories=tuple(classes), weights_sha256="",
                    predict_frames=16, identity="", run={})  # what load_run gives: name = the run directory

    (tmp_path / "metrics.json").write_text(json.dumps({"val_probs": probs.tolist(), "val_labels": labels}))
    got, source = thresholds_for(run, ["A", "C"])
    assert got == {"A": thr["A"], "C": DEFAULT_THRESHOLD} and "calibrated on the run's 10 validation clips" in source
    (tmp_path / "metrics.json").write_text(json.dumps({"test_accuracy": 1.0}))
    got, source = thresholds_for(run, ["A"])
    assert got == {"A": DEFAULT_THRESHOLD} and "no validation probabilities" in source
    assert thresholds_for(run, ["A"], threshold=0.7)[0] == {"A": 0.7}


def test_cli_timeline_outputs(colour_video, tmp_path, monkeypatch, capsys):
    use_model(monkeypatch, ColourModel())
    out = tmp_path / "out"
    args = ["timeline", str(colour_video), "--run", "any", "--stride", "0.5", "--out", str(out), "--cache", str(tmp_path / "c"), "--quiet"]
    assert main(args + ["--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {"video", "duration", "segments", "totals"} <= set(result) and result["video"] == str(colour_video)
    assert [s["label"] for s in result["segments"]] == ["Red", "none", "Green", "Blue"]
    assert set(result["segments"][0]) == {"start", "end", "label", "confidence"}
    assert sum(result["totals"].values()) == pytest.approx(result["duration"], abs=0.01)

    with open(out / "colours.segments.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["label"] for r in rows] == ["Red", "none", "Green", "Blue"]
    with open(out / "colours.windows.csv") as f:
        windows = list(csv.DictReader(f))
    assert len(windows) == 20 and set(windows[0]) == {"start", "end", "label", "Red", "Green", "Blue"}
    srt = (out / "colours.srt").read_text()
    assert srt.startswith("1\n00:00:00,000 --> 00:00:0") and "Red (" in srt and "none" not in srt and srt.count(" --> ") == 3
    assert (out / "colours.timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "colours.timeline.json").read_text())["segments"] == result["segments"]

    assert main(args) == 0  # the printed summary: minutes per class
    text = capsys.readouterr().out
    assert "minutes" in text and "Red" in text and "none" in text and "colours.srt" in text

    assert main(args + ["--labels", "green", "--json"]) == 0  # restricted: the other classes count as none
    only = json.loads(capsys.readouterr().out)
    assert [s["label"] for s in only["segments"]] == ["none", "Green", "none"] and set(only["totals"]) == {"Green", "none"}
    assert only["totals"]["Green"] == pytest.approx(2.6, rel=0.05)


def test_cli_summary_shows_the_labels_that_took_time_and_the_files_keep_all(colour_video, tmp_path, monkeypatch, capsys):
    """A model with hundreds of classes (as Kinetics-400's) and no --labels: the printed table lists the labels that
    took time (and none), and says how many were left out; the files keep every label."""
    many = ("Red", "Green", "Blue", *(f"class {i}" for i in range(397)))
    use_model(monkeypatch, ColourModel(categories=many))
    out = tmp_path / "out"
    args = ["timeline", str(colour_video), "--run", "any", "--stride", "0.5", "--out", str(out), "--no-cache", "--quiet"]
    assert main(args) == 0
    rows = [line.split()[0] for line in capsys.readouterr().out.splitlines() if line.startswith("  ") and ":" in line]
    text = "\n".join(rows)
    assert rows[:4] == ["Red", "Green", "Blue", "none"] and "class" not in text, rows
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "(397 other labels took no time: omitted here, kept in the files)" in printed and "class 7 " not in printed
    with open(out / "colours.windows.csv") as f:
        assert len(next(csv.reader(f))) == 3 + 400  # start, end, label, then every class
    assert len(json.loads((out / "colours.timeline.json").read_text())["totals"]) == 401  # every class and none


def test_cli_errors_are_one_line(colour_video, tmp_path, monkeypatch, capsys):
    use_model(monkeypatch, ColourModel())
    base = ["--run", "any", "--quiet", "--no-cache"]
    for args, needle in [
        (["timeline", str(colour_video), "--labels", "Purple"], "Purple"),
        (["timeline", str(colour_video), "--window", "0.1"], "--window"),
        (["timeline", str(tmp_path / "missing.mp4")], "missing.mp4"),
        (["flag", str(colour_video), "--labels", "Red", "--censor", str(tmp_path / "x.gif")], ".gif"),
    ]:
        assert main(args + base) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], err


def test_a_model_without_classes_is_refused_in_one_line(colour_video, monkeypatch, capsys):
    use_model(monkeypatch, ColourModel(categories=()))
    for command in (["timeline", str(colour_video)], ["flag", str(colour_video), "--labels", "Red"],
                    ["watch", str(colour_video), "--alert", "Red>=0.5"]):
        assert main(command + ["--run", "any", "--quiet"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "no classes" in err[0] and "--run" in err[0], err


def test_flag_and_censor_keep_other_frames_duration_and_audio(colour_video, tmp_path, monkeypatch, capsys):
    from actionrec.data.video import probe

    use_model(monkeypatch, ColourModel())
    out = tmp_path / "censored.mp4"
    args = ["flag", str(colour_video), "--run", "any", "--labels", "Red,Blue", "--stride", "0.5", "--censor", str(out),
            "--crf", "0", "--pad", "0", "--json", "--quiet", "--cache", str(tmp_path / "c")]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    ranges = [(r["start"], r["end"], r["labels"]) for r in result["ranges"]]
    assert [r[2] for r in ranges] == [["Red"], ["Blue"]]
    assert abs(ranges[0][0]) < 1e-6 and abs(ranges[0][1] - 3.0) <= 0.25
    assert abs(ranges[1][0] - 7.6) <= 0.25 and abs(ranges[1][1] - 10.0) < 1e-6

    before, after = read_frames(colour_video), read_frames(out)
    assert after.shape == before.shape
    assert probe(out).num_frames == probe(colour_video).num_frames and probe(out).duration == pytest.approx(10.0)
    hidden = np.zeros(len(before), bool)
    for start, end, _ in ranges:
        for i in range(len(before)):
            hidden[i] |= start < (i + 1) / FPS and end > i / FPS
    assert result["censored_frames"] == int(hidden.sum())
    assert (after[hidden] <= 20).all()  # blacked out
    assert np.array_equal(after[~hidden], before[~hidden])  # lossless copy of the rest (--crf 0)
    assert beep_onsets(out) == pytest.approx(beep_onsets(colour_video), abs=1e-6)  # the audio is the same packets
    assert beep_onsets(out) == pytest.approx([1.0, 5.5, 8.0], abs=0.03)


def test_censor_blur_and_missing_pyav(colour_video, tmp_path, monkeypatch):
    import builtins

    from actionrec.errors import ActionrecError
    from actionrec.apps.flag import FlagRange, censor_video

    counts = censor_video(colour_video, [FlagRange(1.0, 2.0, ("Red",), 0.9)], tmp_path / "blur.mkv", style="blur")
    assert counts["censored"] == 25 and counts["frames"] == 250 and counts["audio_streams"] == 1
    assert (tmp_path / "blur.mkv").is_file() and not list(tmp_path.glob(".blur*"))

    real_import = builtins.__import__

    def no_av(name, *args, **kwargs):
        if name == "av":
            raise ImportError("No module named 'av'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_av)
    with pytest.raises(ActionrecError, match="pip install av"):
        censor_video(colour_video, [], tmp_path / "none.mp4")


# ----------------------------------------------------------------------------------------------- end to end: a trained run

LONG_SEGMENTS = [("Bouncing", 5.0), ("Spinning", 4.0), ("Sliding", 5.0), ("Zooming", 6.0)]
STRIDE = 1.0


@pytest.fixture(scope="module")
def run_and_data(demo_run):
    return demo_run[0], demo_run[1]


@pytest.fixture(scope="module")
def long_video(run_and_data, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("long") / "long.mp4"
    return demo_video(run_and_data[1], path, LONG_SEGMENTS, beeps=boundaries(LONG_SEGMENTS))


@pytest.fixture(scope="module")
def prob_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("timelines")


def test_timeline_of_a_long_video_recovers_boundaries_and_totals(run_and_data, long_video, prob_cache, tmp_path, capsys):
    run = run_and_data[0]
    args = ["timeline", str(long_video), "--run", str(run), "--stride", str(STRIDE), "--threshold", "0.5",
            "--out", str(tmp_path), "--cache", str(prob_cache), "--json", "--quiet"]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["duration"] == pytest.approx(20.0)
    assert [s["label"] for s in result["segments"]] == [label for label, _ in LONG_SEGMENTS]
    for segment, true in zip(result["segments"][:-1], boundaries(LONG_SEGMENTS)):
        assert abs(segment["end"] - true) <= STRIDE, (segment, true)
    for label, seconds in LONG_SEGMENTS:
        assert result["totals"][label] == pytest.approx(seconds, rel=0.05), (label, result["totals"])
    assert result["totals"]["none"] == pytest.approx(0.0, abs=0.01)
    assert (tmp_path / "long.timeline.png").is_file() and (tmp_path / "long.srt").read_text().count("-->") == 4


def test_flag_and_censor_a_long_video(run_and_data, long_video, prob_cache, tmp_path, capsys):
    from actionrec.data.video import probe

    run = run_and_data[0]
    out = tmp_path / "censored.mp4"
    args = ["flag", str(long_video), "--run", str(run), "--labels", "Spinning", "--threshold", "0.5", "--stride", str(STRIDE),
            "--censor", str(out), "--crf", "0", "--cache", str(prob_cache), "--json", "--quiet"]
    assert main(args) == 0  # the probabilities of the timeline test are reused
    result = json.loads(capsys.readouterr().out)
    (r,) = result["ranges"]
    assert abs(r["start"] - (5.0 - 0.25)) <= STRIDE and abs(r["end"] - (9.0 + 0.25)) <= STRIDE  # --pad 0.25 by default
    assert r["start"] < 5.0 and r["end"] > 9.0

    before, after = read_frames(long_video), read_frames(out)
    assert after.shape == before.shape and probe(out).duration == pytest.approx(20.0)
    hidden = np.array([r["start"] < (i + 1) / FPS and r["end"] > i / FPS for i in range(len(before))])
    assert result["censored_frames"] == int(hidden.sum()) > 4 * FPS
    assert (after[hidden] <= 20).all() and not (before[hidden] <= 20).all()
    assert np.array_equal(after[~hidden], before[~hidden])
    assert beep_onsets(out) == pytest.approx(beep_onsets(long_video), abs=1e-6)
    assert beep_onsets(out) == pytest.approx(boundaries(LONG_SEGMENTS), abs=0.03)
