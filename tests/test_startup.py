"""A command line that starts at once: `actionrec --help` and every command's help import neither PyTorch nor
OpenVINO (checked in a fresh interpreter's sys.modules), and still show the defaults the library declares (read here
from the modules that use them); the commands still parse and run as before (tests/test_cli_options.py)."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "openvino")

PROBE = """
import sys
import actionrec.cli
try:
    actionrec.cli.main({argv!r})
except SystemExit as exit_:
    assert exit_.code == 0, exit_.code
print(sorted(m for m in {heavy!r} if m in sys.modules))
"""

# every command and sub-command, as `actionrec ... --help` takes them
COMMANDS = [[], ["predict"], ["train"], ["evaluate"], ["compare"], ["demo"], ["timeline"], ["flag"], ["watch"],
            ["suggest"], ["weights"], ["weights", "list"], ["weights", "fetch"], ["weights", "calibrate"], ["cache"],
            ["doctor"], ["export"], ["serve"]]


@functools.cache
def imported_after(argv: tuple[str, ...], heavy: tuple[str, ...] = HEAVY) -> tuple[list[str], str]:
    """The `heavy` modules a fresh interpreter holds after `actionrec ARGV` (which must exit 0), and what it printed
    (help lines unwrapped: a wide terminal)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "1000"}
    child = subprocess.run([sys.executable, "-c", PROBE.format(argv=list(argv), heavy=heavy)], capture_output=True,
                           text=True, timeout=120, cwd=ROOT, env=env)
    assert child.returncode == 0, child.stderr
    *text, last = child.stdout.rstrip("\n").split("\n")
    return eval(last), "\n".join(text)  # noqa: S307 (our own list literal)


def help_of(*command: str) -> str:
    return imported_after((*command, "--help"))[1]


def option_help(text: str, option: str) -> str:
    """The help of `option` in a help text: its line and the line under it (where a long option puts its help)."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if re.match(rf"\s+{re.escape(option)}\b", line):
            below = lines[i + 1] if i + 1 < len(lines) and not lines[i + 1].lstrip().startswith("-") else ""
            return f"{line} {below}"
    raise AssertionError(f"{option} is not in the help:\n{text}")


def shown_default(text: str, option: str) -> str:
    """What `(default: ...)` says in the help of `option`."""
    found = re.search(r"\(default: ([^()]*(?:\([^()]*\)[^()]*)*)\)", option_help(text, option))
    assert found, option_help(text, option)
    return found.group(1)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "actionrec")
def test_every_command_s_help_imports_no_network_library(command):
    heavy, text = imported_after((*command, "--help"))
    assert heavy == [] and f"usage: actionrec {' '.join(command)}".rstrip() in text


def test_the_command_list_imports_not_even_numpy():
    assert imported_after(("--help",), ("numpy", "cv2", *HEAVY))[0] == []


def test_the_command_list_names_every_command_with_its_help():
    text = help_of()
    for command, words in [("predict", "per-class probabilities"), ("timeline", "label a long video"),
                           ("export", "ONNX or OpenVINO IR"), ("serve", "a local web page"), ("weights", "pretrained")]:
        assert any(line.split()[:1] == [command] and words in line for line in text.splitlines()), command
    listed = re.search(r"\{([a-z,]+)\}", text).group(1).split(",")
    assert sorted(listed) == sorted({c[0] for c in COMMANDS if c})  # COMMANDS above is every command


def test_a_lazy_command_s_help_is_built_when_asked_and_keeps_its_description():
    text = help_of("export")
    assert "--format" in text and "Export a model or run to ONNX or OpenVINO IR" in text


def _default(owner: object, name: str) -> object:
    """The default the library declares: a field of a dataclass, or a parameter of a function."""
    if dataclasses.is_dataclass(owner):
        return {f.name: f.default for f in dataclasses.fields(owner)}[name]
    return inspect.signature(owner).parameters[name].default


def test_the_inference_commands_show_the_library_s_defaults():
    from actionrec.apps.flag import censor_video, flag_ranges
    from actionrec.apps.predict import Prediction, predict, predict_iter
    from actionrec.apps.suggest import suggest
    from actionrec.apps.timeline import timeline
    from actionrec.apps.watch import WatchOptions
    from actionrec.models.backends import BACKENDS, PRECISIONS

    predict_help = help_of("predict")
    assert shown_default(predict_help, "--model") == _default(predict, "model")
    assert shown_default(predict_help, "--batch-size") == str(_default(predict_iter, "batch_size"))
    assert shown_default(predict_help, "--top") == str(_default(Prediction.to_dict, "k"))
    for command in ("predict", "timeline", "flag", "watch", "suggest", "evaluate", "train", "demo", "doctor"):
        text = help_of(command)
        assert f"--precision {{{','.join(PRECISIONS)}}}" in text and f"--backend {{{','.join(BACKENDS)}}}" in text, command
    assert shown_default(help_of("timeline"), "--smooth") == str(_default(timeline, "smooth"))
    flag_help = help_of("flag")
    for option, owner, name in [("--pad", flag_ranges, "pad"), ("--merge-gap", flag_ranges, "merge_gap"),
                                ("--smooth", flag_ranges, "smooth"), ("--style", censor_video, "style"),
                                ("--crf", censor_video, "crf")]:
        assert shown_default(flag_help, option).split()[0].rstrip(",") == str(_default(owner, name)), option
    watch_help = help_of("watch")
    for option in ("--confirm", "--cooldown", "--max-latency"):
        assert shown_default(watch_help, option) == str(_default(WatchOptions, option[2:].replace("-", "_"))), option
    assert shown_default(help_of("suggest"), "--top") == str(_default(suggest, "top"))


def test_the_window_options_show_the_library_s_defaults():
    from actionrec.apps import windows
    from actionrec.apps.calibration import DEFAULT_THRESHOLD

    for command in ("timeline", "flag", "suggest", "watch"):
        text = help_of(command)
        assert shown_default(text, "--stride") == f"max({windows.DEFAULT_MIN_STRIDE:g}, window / 2)", command
    for command in ("timeline", "flag"):
        text = help_of(command)
        assert shown_default(text, "--batch-size").startswith(f"{windows.FRAMES_PER_BATCH} frames' worth"), command
        assert shown_default(text, "--threshold").endswith(f"else {DEFAULT_THRESHOLD:g}"), command


def test_train_evaluate_demo_and_export_show_the_library_s_defaults():
    from actionrec import ActionrecError
    from actionrec.apps.export import export
    from actionrec.data.datasets import load_dataset
    from actionrec.training import fewshot
    from actionrec.training.config import BACKBONE_DEFAULTS, TrainConfig

    text = help_of("train")
    for field in ("epochs", "views", "batch_size", "patience", "finetune_epochs", "weight_decay", "seed", "backbone"):
        assert shown_default(text, f"--{field.replace('_', '-')}") == str(_default(TrainConfig, field)), field
    assert shown_default(text, "--lr") == ", ".join(f"{d['lr']:g} for {name}" for name, d in BACKBONE_DEFAULTS.items())
    assert f"at most {fewshot.FEWSHOT_UP_TO} groups" in option_help(text, "--head-fit")
    for command in ("train", "evaluate"):
        assert shown_default(help_of(command), "--split") == str(_default(load_dataset, "split")), command
    formats = re.search(r"--format \{([a-z,]+)\}", help_of("export")).group(1)
    with pytest.raises(ActionrecError) as refused:  # the library's refusal names every format it takes
        export("i3d-kinetics400", "nonsense", "/nonexistent/x")
    assert str(refused.value).endswith(f"choose one of: {formats.replace(',', ', ')}")
