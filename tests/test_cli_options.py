"""The command line: every help works, defaults come from the library, bad option values get one line and exit 2,
and a run directory that does not exist is called that (fast: nothing here runs a network)."""

from __future__ import annotations

import argparse
import dataclasses
import math

import pytest

from actionrec.cli import build_parser, default_of, main
from actionrec.errors import ActionrecError
from actionrec.training.trainer import TrainConfig

COMMANDS = ["predict", "train", "evaluate", "compare", "demo", "timeline", "flag", "watch", "cache", "weights list", "weights fetch"]


def subparser(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    for word in name.split():
        parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[word]
    return parser


def defaults(name: str) -> dict:
    return {a.dest: a.default for a in subparser(name)._actions if a.dest != "help"}


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_every_help_works(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*command.split(), "--help"])
    assert exit_.value.code == 0 and "usage: actionrec" in capsys.readouterr().out


def test_defaults_are_the_library_s():
    from actionrec.apps.flag import censor_video, flag_ranges
    from actionrec.apps.predict import predict_iter
    from actionrec.apps.watch import WatchOptions

    train = defaults("train")
    for field in dataclasses.fields(TrainConfig):
        if field.name in train:
            assert train[field.name] == field.default, field.name
    watch = defaults("watch")
    for field in dataclasses.fields(WatchOptions):
        if field.name in watch:
            assert watch[field.name] == field.default, field.name
    flag = defaults("flag")
    assert (flag["pad"], flag["merge_gap"], flag["smooth"]) == tuple(default_of(flag_ranges, k) for k in ("pad", "merge_gap", "smooth"))
    assert (flag["style"], flag["crf"]) == (default_of(censor_video, "style"), default_of(censor_video, "crf"))
    predict = defaults("predict")
    assert (predict["test_views"], predict["batch_size"]) == (default_of(predict_iter, "test_views"), default_of(predict_iter, "batch_size"))
    assert defaults("evaluate")["test_views"] is None  # the run's own
    for name in ("predict", "timeline", "flag", "watch"):  # --model/--run declared once, the same everywhere
        option = next(a for a in subparser(name)._actions if a.dest == "model")
        assert option.option_strings == ["--model", "--run"] and option.default == "i3d-kinetics400"


def test_a_changed_library_default_shows_in_the_help(monkeypatch, capsys):
    monkeypatch.setattr(TrainConfig, "epochs", 7)
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "is kept (default: 7)" in " ".join(capsys.readouterr().out.split())


BAD_TRAIN = [
    (["--batch-size", "0"], "--batch-size"), (["--frames", "0"], "--frames"), (["--frames", "1"], "--frames"),
    (["--frames", "-5"], "--frames"), (["--lr", "-1"], "--lr"), (["--lr", "nan"], "--lr"), (["--dropout", "1.5"], "--dropout"),
    (["--epochs", "-1"], "--epochs"), (["--finetune-lr", "inf"], "--finetune-lr"), (["--views", "0"], "--views"),
    (["--val-fraction", "1"], "--val-fraction"), (["--seed", "-1"], "--seed"), (["--backbone", "c3d", "--frames", "32"], "--frames 32"),
    (["--test-views", "0"], "--test-views"), (["--head", "temporal", "--frames", "8"], "--frames 8"),
    (["--head", "temporal", "--backbone", "c3d"], "--head temporal"),
]


@pytest.mark.parametrize("args,option", BAD_TRAIN)
def test_bad_train_options_get_one_line(args, option, tmp_path, capsys):
    assert main(["train", str(tmp_path / "no-data"), "--out", str(tmp_path / "run"), *args]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"actionrec: error: {option}"), lines
    assert not (tmp_path / "run").exists()


BAD_PREDICT = [
    (["--test-views", "0"], "--test-views"), (["--test-views", "-3"], "--test-views"), (["--top", "-1"], "--top"), (["--top", "0"], "--top"),
    (["--batch-size", "0"], "--batch-size"), (["--batch-size", "-1"], "--batch-size"), (["--frames", "-5"], "--frames"),
    (["--frames", "1"], "--frames"),
]


@pytest.mark.parametrize("args,option", BAD_PREDICT)
def test_bad_predict_options_get_one_line(args, option, tmp_path, capsys):
    assert main(["predict", str(tmp_path / "v.mp4"), *args]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"actionrec: error: {option} must be"), lines


def test_the_python_api_checks_the_same_values():
    for bad in ({"batch_size": 0}, {"frames": 1}, {"lr": math.nan}, {"dropout": 1.5}, {"epochs": -1}, {"batch_size": 2.5},
                {"momentum": 1.0}, {"weight_decay": -1e-4}, {"backbone": "resnet"}):
        with pytest.raises(ActionrecError) as err:
            TrainConfig(**bad)
        assert "\n" not in str(err.value)
    assert TrainConfig(frames=8, lr=0.1, dropout=0.0, finetune_epochs=0, patience=0).resolved().lr == 0.1


def test_a_run_directory_that_does_not_exist_is_called_that(tmp_path, capsys):
    missing = tmp_path / "nonexistent"
    for command in (["predict", "v.mp4"], ["timeline", "v.mp4"], ["evaluate", str(missing), "data"]):
        args = [*command, "--run", str(missing)] if command[0] != "evaluate" else command
        assert main(args) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and "does not exist" in lines[0] and "unknown weights" not in lines[0], lines
    assert main(["predict", "v.mp4", "--run", "no-such-name"]) == 2
    line = capsys.readouterr().err.strip()
    assert "neither a run directory nor pretrained weights" in line and "i3d-kinetics400" in line
