"""A command line that starts at once: `actionrec --help` and the help of the commands whose defaults need no network
library import neither PyTorch nor OpenVINO (checked in a fresh interpreter's sys.modules); the commands still parse
and run as before (tests/test_cli_options.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "openvino", "cv2")

PROBE = """
import sys
import actionrec.cli
try:
    actionrec.cli.main({argv!r})
except SystemExit as exit_:
    assert exit_.code == 0, exit_.code
print(sorted(m for m in {heavy!r} if m in sys.modules))
"""


def imported_after(argv: list[str]) -> tuple[list[str], str]:
    """The heavy modules a fresh interpreter holds after `actionrec ARGV` (which must exit 0), and what it printed."""
    child = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv, heavy=HEAVY)], capture_output=True, text=True,
                           timeout=120, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert child.returncode == 0, child.stderr
    *text, last = child.stdout.rstrip("\n").split("\n")
    return eval(last), "\n".join(text)  # noqa: S307 (our own list literal)


@pytest.mark.parametrize("argv", [["--help"], ["weights", "--help"], ["weights", "list", "--help"], ["cache", "--help"],
                                  ["compare", "--help"], ["serve", "--help"]])
def test_help_imports_no_network_library(argv):
    heavy, text = imported_after(argv)
    assert heavy == [] and "usage: actionrec" in text


def test_the_command_list_names_every_command_with_its_help():
    _, text = imported_after(["--help"])
    for command, words in [("predict", "per-class probabilities"), ("timeline", "label a long video"),
                           ("export", "ONNX or OpenVINO IR"), ("serve", "a local web page"), ("weights", "pretrained")]:
        assert any(line.split()[:1] == [command] and words in line for line in text.splitlines()), command


def test_a_lazy_command_s_help_is_built_when_asked_and_keeps_its_description():
    _, text = imported_after(["export", "--help"])
    assert "--format" in text and "Export a model or run to ONNX or OpenVINO IR" in text
