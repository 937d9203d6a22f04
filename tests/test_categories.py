"""Groups of classes: files, --group options, checks against the model's classes, and the per-window sums."""

from __future__ import annotations

import json

import numpy as np
import pytest

from actionrec.apps.categories import (OTHER, kinetics400_categories, load_groups, make_groups, parse_group_options,
                                       parse_groups_text)
from actionrec.errors import ActionrecError
from actionrec.models.info import kinetics400_labels

K400 = kinetics400_labels()
DANCES = ["robot dancing", "tap dancing", "breakdancing", "dancing charleston"]


def test_a_group_wins_where_no_member_is_confident():
    probs = np.zeros((2, len(K400)), dtype=np.float32)
    for label in DANCES:  # window 0: the time splits over four dances; archery alone is the top class
        probs[0, K400.index(label)] = 0.2
    probs[0, K400.index("archery")] = 0.2 - 1e-3
    probs[0, K400.index("abseiling")] = 1 - probs[0].sum()
    probs[1, K400.index("archery")] = 1.0
    groups = make_groups({"dancing": DANCES, "sport": ["archery"]}, K400, "test")
    assert groups.names == ("dancing", "sport", OTHER)
    summed = groups.sum(probs)
    assert summed.shape == (2, 3)
    assert probs[0].max() <= 0.2 + 1e-6  # no single class is confident in window 0
    assert groups.names[int(summed[0].argmax())] == "dancing"
    assert summed[0, 0] == pytest.approx(0.8, abs=1e-6)
    assert groups.names[int(summed[1].argmax())] == "sport"
    np.testing.assert_allclose(summed.sum(1), probs.sum(1), atol=1e-6)  # "other" keeps each row a distribution
    assert groups.members("dancing") == tuple(sorted(DANCES, key=K400.index))
    assert len(groups.members(OTHER)) == len(K400) - 5


def test_no_other_column_when_every_class_is_grouped():
    classes = ("a", "b", "c")
    groups = make_groups({"x": ["a", "c"], "y": ["b"]}, classes, "test")
    assert groups.names == ("x", "y")
    np.testing.assert_array_equal(groups.sum(np.array([[0.1, 0.3, 0.6]])), [[0.7, 0.3]])


def test_file_formats_and_options_give_the_same_groups(tmp_path):
    text = "# parents\nball sports: playing basketball, playing volleyball\n\nball sports: dribbling basketball\nmusic: playing drums  # drums\n"
    (tmp_path / "groups.txt").write_text(text)
    (tmp_path / "groups.json").write_text(json.dumps(parse_groups_text(text, "x")))
    from_text = load_groups(K400, tmp_path / "groups.txt")
    from_json = load_groups(K400, tmp_path / "groups.json")
    from_options = load_groups(K400, None, ["ball sports=playing basketball,playing volleyball",
                                            "ball sports=dribbling basketball", "music=playing drums"])
    assert from_text.to_dict() == from_json.to_dict() == from_options.to_dict()
    assert set(from_text.members("ball sports")) == {"playing basketball", "playing volleyball", "dribbling basketball"}
    both = load_groups(K400, tmp_path / "groups.txt", ["racquet=playing tennis"])  # options add to the file
    assert both.names == ("ball sports", "music", "racquet", OTHER)
    assert load_groups(K400) is None


@pytest.mark.parametrize("definition, message", [
    ({"sport": ["playing basketbal"]}, "did you mean 'playing basketball'"),
    ({"sport": ["archery"], "aim": ["archery"]}, "'archery' is in groups 'sport' and 'aim'"),
    ({OTHER: ["archery"]}, "give the group another name"),
    ({"sport": []}, "has no class"),
    ({}, "defines no group"),
])
def test_bad_groups_are_refused_in_one_line(definition, message):
    with pytest.raises(ActionrecError, match=message) as err:
        make_groups(definition, K400, "my.groups")
    assert "\n" not in str(err.value) and str(err.value).startswith("my.groups")


def test_bad_files_and_options_are_refused_in_one_line(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("sport: archery\njust a label\n")
    with pytest.raises(ActionrecError, match=r"bad.txt:2: expected `group name: label"):
        load_groups(K400, bad)
    (tmp_path / "bad.json").write_text('{"sport": "archery"}')
    with pytest.raises(ActionrecError, match="expected a JSON object of lists"):
        load_groups(K400, tmp_path / "bad.json")
    with pytest.raises(ActionrecError, match="cannot read the groups file"):
        load_groups(K400, tmp_path / "missing.txt")
    for option in ("sport", "=archery", "sport="):
        with pytest.raises(ActionrecError, match="expected NAME=label,label"):
            parse_group_options([option])
    groups = make_groups({"sport": ["archery"]}, K400, "test")
    with pytest.raises(ActionrecError, match=r"expected probabilities \(windows, 400\)"):
        groups.sum(np.zeros((3, 4)))


def test_published_kinetics400_categories():
    """The 38 parents of Kay et al. 2017 (package data): every listed class is one of the model's, shared classes are
    split equally, the gym exercises (in no parent) go to "other", and each row of the matrix sums to 1."""
    groups = load_groups(K400, "category")
    assert len(groups.names) == 39 and groups.names[-1] == OTHER
    assert {"dancing", "ball sports", "gymnastics", "martial arts", "golf", "swimming"} <= set(groups.names)
    np.testing.assert_allclose(groups.matrix.sum(1), 1.0, atol=1e-6)
    putting = groups.matrix[K400.index("golf putting")]
    assert putting[groups.names.index("golf")] == putting[groups.names.index("ball sports")] == pytest.approx(0.5)
    assert set(groups.members(OTHER)) == {"squat", "yoga", "deadlifting", "bench pressing", "push up", "pull ups",
                                           "situp", "lunge", "front raises", "clean and jerk", "snatch weight lifting",
                                           "exercising arm", "exercising with an exercise ball", "doing aerobics"}
    assert set(DANCES) <= set(groups.members("dancing"))
    with pytest.raises(ActionrecError, match="group the 400 Kinetics-400 classes; this model has 3 other classes"):
        kinetics400_categories(("a", "b", "c"))
    with pytest.raises(ActionrecError, match="use it alone"):
        load_groups(K400, "category", ["x=archery"])


def test_real_clips_land_in_their_parent(i3d_kinetics, realclips):
    """Through the real model: archery.avi's probabilities, summed by parent, pick the throwing + launching parent,
    and arm_wrestling.mp4's pick martial arts."""
    import actionrec

    groups = load_groups(K400, "category")
    for video, parent in (("archery.avi", "athletics - throwing + launching"), ("arm_wrestling.mp4", "martial arts")):
        prediction = actionrec.predict(realclips / video, model=i3d_kinetics)[0]
        summed = groups.sum(prediction.probs[None])[0]
        assert groups.names[int(summed.argmax())] == parent
        assert summed.sum() == pytest.approx(1.0, abs=1e-4)


def test_apply_groups_window_probabilities_before_the_timeline_smooths():
    """Groups.apply on a WindowProbs: the time that splits over four dances (no single one confident, each under the
    default threshold) becomes one "dancing" segment; on a Prediction it ranks groups."""
    from actionrec.apps.predict import Prediction
    from actionrec.apps.timeline import build_timeline
    from actionrec.apps.windows import WindowProbs

    n = 20
    probs = np.full((n, len(K400)), 0.0, dtype=np.float32)
    for k in range(n):
        probs[k, K400.index(DANCES[k % 4])] = 0.45  # the dance changes every window
        probs[k, K400.index(DANCES[(k + 1) % 4])] = 0.35
        probs[k, K400.index("archery")] = 0.2
    starts = np.arange(n) * 0.5
    wp = WindowProbs("show.mp4", "i3d-kinetics400", K400, starts, starts + 2.56, probs, float(starts[-1] + 2.56),
                     25.0, 2.56, 0.5, 64)
    by_class = build_timeline(wp)
    assert [s.label for s in by_class.segments] == ["none"]  # no class reaches the default threshold (0.5)
    groups = load_groups(K400, "category")
    grouped = groups.apply(wp)
    assert grouped.categories == groups.names and grouped.probs.shape == (n, len(groups.names))
    by_group = build_timeline(grouped)
    assert [s.label for s in by_group.segments] == ["dancing"]
    assert by_group.totals["dancing"] == pytest.approx(wp.duration, rel=0.05)
    prediction = Prediction("show.mp4", "i3d-kinetics400", K400, probs[0], 1, 64, False)
    assert groups.apply(prediction).top(2)[0] == ("dancing", pytest.approx(0.8, abs=1e-5))
    with pytest.raises(ActionrecError, match="made for other classes"):
        make_groups({"x": ["a"]}, ("a", "b"), "test").apply(prediction)


def test_timeline_by_published_category(i3d_kinetics, realclips):
    """timeline(groups=...) reports parents: the archery clip's time is "athletics - throwing + launching"."""
    from actionrec.apps.categories import load_groups
    from actionrec.apps.timeline import timeline

    groups = load_groups(i3d_kinetics.info.categories, "category")
    tl = timeline(realclips / "archery.avi", i3d_kinetics, groups=groups, cache=False)
    assert set(tl.totals) <= set(groups.names) | {"none"}
    assert max(tl.totals, key=tl.totals.get) == "athletics - throwing + launching"
    assert "default" in tl.threshold_source  # per-class calibration does not carry over to groups


def test_cli_predict_and_timeline_report_groups(realclips, tmp_path, capsys):
    """--group-by category on predict, --group on timeline: the same library path, the groups' names in the output."""
    import json

    from actionrec.cli import main

    assert main(["predict", str(realclips / "arm_wrestling.mp4"), "--group-by", "category", "--json", "--top", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["top"][0]["label"] == "martial arts"
    out = tmp_path / "tl"
    assert main(["timeline", str(realclips / "archery.avi"), "--group", "sport=archery,playing cricket", "--no-cache",
                 "--out", str(out), "--json", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["totals"]["sport"] > 4.0 and set(result["totals"]) == {"sport", "other", "none"}
    assert main(["timeline", str(realclips / "archery.avi"), "--group", "sport=archery,no such class", "--quiet"]) == 2
    assert "no such class" in capsys.readouterr().err
