"""`train --out`: a finished run is not overwritten unless --force, an unfinished one of the same command is taken over,
a lock keeps two trainings out of one directory, and unwritable folders are refused before any work."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from actionrec.cli import main
from actionrec.errors import ActionrecError
from actionrec.training.outdir import LOCK_NAME, claim_run_dir

FAST = ["--epochs", "1", "--finetune-epochs", "0", "--quiet"]


def one_error_line(capsys, needle: str) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], lines
    return lines[0]


def train_args(data: Path, out: Path, cache: Path, *extra: str) -> list[str]:
    return ["train", str(data), "--out", str(out), "--cache", str(cache), *FAST, *extra]


def listed_dataset(root: Path) -> Path:
    """Two classes of five files each, never read: the refusals under test come before any video is opened."""
    for label in ("A", "B"):
        (root / label).mkdir(parents=True)
        for name in ("one", "two", "three", "four", "five"):
            (root / label / f"{name}.mp4").write_bytes(f"{label} {name}: never read".encode())
    return root


# ----------------------------------------------------------------------------------------------- the claim itself (fast)


def test_claim_refuses_foreign_files_and_other_trainings_and_takes_over_its_own(tmp_path):
    out = tmp_path / "out"
    with claim_run_dir(out, "recipe-a"):
        (out / "metrics.json").write_text("{}")  # killed before config.json: an unfinished run
    assert (out / LOCK_NAME).read_text().strip() == "recipe-a"
    said: list[str] = []
    with claim_run_dir(out, "recipe-a", say=said.append):
        pass
    assert said and "taking over" in said[0]
    with pytest.raises(ActionrecError, match="unfinished run of another training"):
        with claim_run_dir(out, "recipe-b"):
            pass
    with claim_run_dir(out, "recipe-b", force=True):
        pass
    assert (out / LOCK_NAME).read_text().strip() == "recipe-b"

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ActionrecError, match="files that are not a run"):
        with claim_run_dir(foreign, "recipe-a"):
            pass
    assert (foreign / "notes.txt").read_text() == "mine"


def test_the_lock_keeps_a_second_training_out(tmp_path, capsys):
    out = tmp_path / "out"
    with claim_run_dir(out, "someone else's"):
        assert main(train_args(listed_dataset(tmp_path / "data"), out, tmp_path / "cache")) == 2
        one_error_line(capsys, "another training is writing this run directory")
    with claim_run_dir(out, "free again"):  # released when the holder is done (or dies)
        pass


def test_unwritable_out_and_cache_are_refused_before_any_work(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")  # unwritable whoever runs the tests (root ignores permission bits)
    data, cache, out = listed_dataset(tmp_path / "data"), tmp_path / "cache", tmp_path / "out"
    assert main(train_args(data, blocker / "run", cache)) == 2
    assert "run directory is not writable" in one_error_line(capsys, str(blocker / "run"))
    assert not list(cache.rglob("*.npz"))  # no work was done
    assert main(train_args(data, out, blocker / "cache")) == 2
    assert "feature cache folder is not writable" in one_error_line(capsys, str(blocker / "cache"))
    assert not out.exists()


# ----------------------------------------------------------------------------------------------- with real trainings


def test_a_finished_run_is_kept_unless_forced_and_an_unfinished_one_is_taken_over(demo_run, tmp_path, capsys):
    shared, data, cache = demo_run
    out = Path(shutil.copytree(shared, tmp_path / "run"))
    before = (out / "model.safetensors").read_bytes()
    assert main(train_args(data, out, cache)) == 2
    one_error_line(capsys, "holds a finished run; pass --force")
    assert (out / "model.safetensors").read_bytes() == before

    assert main(train_args(data, out, cache, "--force")) == 0
    capsys.readouterr()
    config = json.loads((out / "config.json").read_text())
    assert config["train_config"]["epochs"] == 1 and (out / "model.safetensors").read_bytes() != before
    first = json.loads((out / "metrics.json").read_text())

    (out / "config.json").unlink()  # what a kill before the last write leaves
    assert main(train_args(data, out, cache)) == 0  # the same command goes on
    capsys.readouterr()
    assert json.loads((out / "metrics.json").read_text())["history"] == first["history"]
    assert json.loads((out / "config.json").read_text())["model_sha256"] == config["model_sha256"]

    (out / "config.json").unlink()
    assert main(train_args(data, out, cache, "--seed", "1")) == 2  # another command does not
    one_error_line(capsys, "unfinished run of another training")
