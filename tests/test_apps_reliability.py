"""The apps on damaged input: a video cut short says so (one line, and in the JSON) in predict, timeline and flag,
and censoring a damaged input does not blame the output container."""

from __future__ import annotations

import json

import pytest

from test_timeline import ColourModel, colour_frames, use_model, write_av_video

from actionrec.cli import main


@pytest.fixture(scope="module")
def cut_mkv(tmp_path_factory):
    """A 6 s Matroska video (Red 3 s, Green 3 s) cut to its first 40 % of bytes."""
    folder = tmp_path_factory.mktemp("cut")
    whole = write_av_video(folder / "whole.mkv", colour_frames([("Red", 3.0), ("Green", 3.0)]), beeps=())
    data = whole.read_bytes()
    cut = folder / "cut.mkv"
    cut.write_bytes(data[: int(len(data) * 0.4)])
    return cut


def test_window_probabilities_and_timeline_json_say_the_video_is_cut(cut_mkv, tmp_path, monkeypatch, capsys):
    from actionrec.apps.windows import window_probabilities

    wp = window_probabilities(cut_mkv, ColourModel(), stride=0.5, cache=tmp_path / "cache")
    assert wp.warning and str(cut_mkv) in wp.warning and "of the 6.0" in wp.warning and wp.duration < 5.0
    again = window_probabilities(cut_mkv, ColourModel(), stride=0.5, cache=tmp_path / "cache")
    assert again.from_cache and again.warning == wp.warning  # the cache keeps it
    use_model(monkeypatch, ColourModel())
    assert main(["timeline", str(cut_mkv), "--run", "any", "--json", "--quiet", "--no-cache", "--out", str(tmp_path / "o")]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["warning"] == wp.warning
    assert sum(wp.warning in line for line in err.splitlines()) == 1


def test_predict_says_the_video_is_cut(cut_mkv, monkeypatch, capsys):
    from actionrec.apps.predict import predict_iter

    (pred,) = list(predict_iter([cut_mkv], ColourModel()))
    assert pred.warning and str(cut_mkv) in pred.warning and pred.to_dict()["warning"] == pred.warning
    use_model(monkeypatch, ColourModel())
    assert main(["predict", str(cut_mkv), "--run", "any", "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["warning"] == pred.warning and pred.warning in err


def test_censoring_a_damaged_input_blames_the_input_not_the_output(tmp_path, capsys):
    from actionrec.apps.flag import censor_video

    whole = write_av_video(tmp_path / "whole.mp4", colour_frames([("Red", 2.0), ("Green", 2.0)]), beeps=(1.0,))
    data = bytearray(whole.read_bytes())
    n = len(data)
    data[n // 3 : n // 2] = bytes(n // 2 - n // 3)  # zeros over the middle of the stream
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(bytes(data))
    counts = censor_video(broken, [(0.0, 1.0)], tmp_path / "out.mkv")
    err = capsys.readouterr().err
    assert (tmp_path / "out.mkv").is_file() and counts["frames"] > 0
    assert "writing failed" not in err and "container" not in err


def test_watch_takes_a_non_utf8_file_name_and_keeps_opencv_quiet(tmp_path):
    """In a child process (a segfault must fail the test, not end the run): watch a file whose name is not UTF-8,
    and an unreachable stream; stderr has our lines only, no OpenCV WARN lines."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    video = write_av_video(tmp_path / "good.mp4", colour_frames([("Red", 2.0), ("Green", 2.0)]), beeps=())
    bad = os.path.join(os.fsencode(tmp_path), b"caf\xe9 \xff.mp4")
    os.link(os.fsencode(video), bad)
    tests = Path(__file__).resolve().parent
    code = (
        "import os, sys; sys.path.insert(0, sys.argv[1]); from test_timeline import ColourModel;"
        "from actionrec.apps.watch import AlertRule, watch; from actionrec.errors import ActionrecError;"
        "s = watch(os.fsdecode(os.fsencode(sys.argv[2])), ColourModel(), [AlertRule('Red', 0.8)]); print(s.frames, s.alerts);"
        "\ntry:\n    watch('http://127.0.0.1:9/none.mjpg', ColourModel(), [AlertRule('Red', 0.8)])"
        "\nexcept ActionrecError as e:\n    print('error:', e, file=sys.stderr)"
    )
    child = subprocess.run([sys.executable, "-c", code, str(tests), os.fsdecode(bad)], capture_output=True, timeout=120)
    out, err = child.stdout.decode(), child.stderr.decode("utf-8", "replace")
    assert child.returncode == 0, (child.returncode, err[-2000:])
    assert out.split() == ["100", "1"]
    assert "WARN" not in err and err.count("error:") == 1 and "127.0.0.1:9" in err, err
