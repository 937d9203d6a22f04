"""--precision/--backend/--device on every command that runs the network, and `actionrec doctor`."""

from __future__ import annotations

import json

import pytest

from actionrec.cli import build_parser, main
from actionrec.models.backends import BACKEND_ENV, PRECISION_ENV


@pytest.fixture
def clean_env(monkeypatch):
    for name in (PRECISION_ENV, BACKEND_ENV):
        monkeypatch.setenv(name, "auto")  # restored after the test, whatever main() sets


def test_doctor_says_what_runs_the_network(clean_env, capsys):
    assert main(["doctor", "--json"]) == 0
    auto = json.loads(capsys.readouterr().out)
    assert {"backend", "precision", "cpu", "cpu_flags", "native_bf16", "threads"} <= set(auto)
    assert auto["precision"] == ("bf16" if auto["native_bf16"] else "fp32")  # by the CPU, never by our machine
    assert main(["doctor", "--json", "--precision", "fp32", "--backend", "torch"]) == 0
    forced = json.loads(capsys.readouterr().out)
    assert (forced["precision"], forced["backend"]) == ("fp32", "torch")
    # the options go by name to the engine they are for: nothing is left in os.environ for later engines
    assert main(["doctor"]) == 0 and f"precision: {auto['precision']}" in capsys.readouterr().out


def test_every_network_command_takes_the_engine_options():
    parser = build_parser()
    for argv in (["predict", "v.mp4"], ["timeline", "v.mp4"], ["flag", "v.mp4", "--labels", "a"], ["train", "d"],
                 ["watch", "0", "--alert", "a>=0.5"], ["evaluate", "run", "d"], ["demo"]):
        args = parser.parse_args(argv + ["--precision", "bf16", "--backend", "torch", "--device", "cpu"])
        assert (args.precision, args.backend, args.device) == ("bf16", "torch", "cpu"), argv
    with pytest.raises(SystemExit):
        parser.parse_args(["predict", "v.mp4", "--precision", "fp16"])
