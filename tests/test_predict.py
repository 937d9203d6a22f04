"""`actionrec predict`: the JSON contract, bad files, and the documented top-1 of real clips through the real decoder."""

from __future__ import annotations

import json


from actionrec.cli import main

# ../shared/realclips/README.md: the documented label of each clip.
REAL = {"arm_wrestling.mp4": "arm wrestling", "archery.avi": "archery", "cricket_shot_224.gif": "playing cricket"}


def test_real_clips_json_top1_and_a_bad_file(realclips, i3d_kinetics, tmp_path, capsys):
    bad = tmp_path / "notes.mp4"
    bad.write_text("this is not a video")
    videos = [str(realclips / name) for name in REAL] + [str(bad)]
    status = main(["predict", *videos, "--json", "--top", "3"])
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines()]
    assert status == 1  # one file failed, the others were still predicted
    assert [line["video"] for line in lines] == videos[:3]
    for line, name in zip(lines, REAL):
        assert line["model"] == "i3d-kinetics400"
        assert len(line["top"]) == 3
        probs = [t["prob"] for t in line["top"]]
        assert probs == sorted(probs, reverse=True)
        assert line["top"][0]["label"] == REAL[name], line
        assert line["top"][0]["prob"] > 0.9
    error_lines = [l for l in err.splitlines() if "error" in l]
    assert len(error_lines) == 1 and str(bad) in error_lines[0] and "Traceback" not in err


def test_study_single_clip_flag_still_predicts(realclips, i3d_kinetics, capsys):
    assert main(["predict", str(realclips / "arm_wrestling.mp4"), "--single-clip", "--json"]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["top"][0]["label"] == "arm wrestling"


def test_python_api_predict(realclips, i3d_kinetics):
    from actionrec import predict

    (pred,) = predict(realclips / "archery.avi", model=i3d_kinetics, test_views=2, frames=32)
    assert pred.views == 2 and pred.frames == 32
    assert pred.top(1)[0][0] == "archery"
    assert abs(float(pred.probs.sum()) - 1.0) < 1e-4


def test_missing_file_is_one_line(capsys, i3d_kinetics):
    assert main(["predict", "/nonexistent/clip.mp4"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "/nonexistent/clip.mp4" in err[0]


def test_unknown_model_is_one_line(capsys):
    assert main(["predict", "x.mp4", "--model", "i3d-nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "i3d-nope" in err[0] and "weights list" in err[0]
