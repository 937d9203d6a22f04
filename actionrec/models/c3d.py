"""C3D, Tran et al. 2015 ("Learning Spatiotemporal Features with 3D Convolutional Networks"), and its Sports-1M weights.

Architecture (the study's table, and the paper's section 3.3): eight 3x3x3 convolutions (stride 1, padding 1, ReLU) in
five groups, max pooling after each group -- pool1 1x2x2, pool2..pool5 2x2x2 -- then fc6 4096, fc7 4096 (each followed
by ReLU and dropout 0.5) and fc8 (487 Sports-1M classes). The input is 3x16x112x112. Before pool5 the 2x7x7 map is
zero-padded to 2x9x9 (the Keras ports' `ZeroPadding3D((0, 1, 1))`, `padding=(0, 1, 1)` in the PyTorch ports), so pool5
is 512x1x4x4 and fc6 sees 8192 inputs.

The published Sports-1M C3D is facebook/C3D's Caffe model `conv3d_deepnetA_sport1m_iter_1900000` (trained on I380K,
fine-tuned on Sports-1M; github.com/facebookarchive/C3D/issues/84); the Keras files and c3d.pickle are conversions of
it, while OpenMMLab does not say how its checkpoint was made. Three public files are read here, each by a pure filter
that checks every key, shape and dtype before a strict load:

* `c3d.pickle` of github.com/DavideA/c3d-pytorch (C3D_model.py): a torch.save'd state dict, `conv1.weight` ...
  `fc8.bias`, PyTorch layout, converted from the Keras gist below (issue #1 of that repository).
* OpenMMLab's `c3d_sports1m_pretrain_20201016-dcc47ddc.pth` (mmaction2 configs/_base_/models/c3d_sports1m_pretrained.py):
  the backbone of mmaction/models/backbones/c3d.py -- `conv1a.conv.*`, `conv2a.conv.*`, `conv3a.conv.*` ...
  `conv5b.conv.*`, `fc6.*`, `fc7.*` -- and no fc8, optionally wrapped in `{'state_dict': ..., 'meta': ...}`.
* Keras HDF5 weights (`save_weights` / `model.save` layout: root attribute `layer_names`, one group per layer with a
  `weight_names` attribute, kernel then bias), layers conv1 ... conv5b, fc6, fc7, fc8:
  - channels_last files such as `sports1M_weights_tf.h5` (github.com/adamcasson/c3d release v0.1; the layout that
    github.com/axon-research/c3d-keras convert_caffe_model.py writes for TensorFlow): conv kernels (kT, kH, kW, Cin,
    Cout) copied from Caffe without flipping, and fc6's 8192 rows in channels-last flatten order (t, h, w, c), which
    is what Keras's Flatten does to a (1, 4, 4, 512) map;
  - Theano-dim-ordering Keras 1 files such as `sports1M_weights.h5` / `c3d-sports1M_weights.h5` of
    gist.github.com/albertomontesg/d8b21a179c1e6cca0480ebdf292c34d2: kernels (Cout, Cin, kT, kH, kW) with each 3x3
    spatial slice rotated by 180 degrees (Theano convolves, Caffe correlates; the gist's `rot90(W[i, j, k], 2)`, time
    not flipped), and fc6 rows in channels-first order (c, t, h, w), which is ours.

Caffe trained C3D on OpenCV frames, i.e. BGR, 0-255, minus the Sports-1M mean. Our converted weights take RGB: the
BGR order is folded into conv1 (its input channels are reversed, an exact re-indexing), so the WeightsSpec's mean is
given in RGB order like every other spec. The channel mean (90.25, 97.66, 101.41) BGR is the per-channel average of
the Sports-1M mean cube `sport1m_train16_128_mean.binaryproto` as computed in DavideA/c3d-pytorch issue #1, where this
preprocessing (BGR, mean subtracted, 0-255) is shown to be the one the weights expect. mmaction2 fine-tunes its
checkpoint with RGB input minus (104, 117, 128), std 1 (its data_preprocessor), so that spec keeps RGB as is.

This file is the architecture and the weights specs; c3d_checkpoints.py sniffs, reads, filters and checks the files.
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn

from .network import EndpointNetwork
from .info import WeightsSpec, read_labels

ENDPOINTS = (
    "conv1",
    "pool1",
    "conv2",
    "pool2",
    "conv3a",
    "conv3b",
    "pool3",
    "conv4a",
    "conv4b",
    "pool4",
    "conv5a",
    "conv5b",
    "pool5",
    "fc6",
    "fc7",
    "fc8",
)
# Blocks with parameters that fine-tuning may unfreeze (the head, fc8, is always trained).
TRAINABLE_BLOCKS = ("conv1", "conv2", "conv3a", "conv3b", "conv4a", "conv4b", "conv5a", "conv5b", "fc6", "fc7")
_CONVS = {  # name: (in, out)
    "conv1": (3, 64),
    "conv2": (64, 128),
    "conv3a": (128, 256),
    "conv3b": (256, 256),
    "conv4a": (256, 512),
    "conv4b": (512, 512),
    "conv5a": (512, 512),
    "conv5b": (512, 512),
}
_POOLS = {"pool1": (1, 2, 2), "pool2": (2, 2, 2), "pool3": (2, 2, 2), "pool4": (2, 2, 2), "pool5": (2, 2, 2)}
POOL5_SHAPE = (512, 1, 4, 4)  # for a 16x112x112 clip
FC6_IN = 512 * 1 * 4 * 4  # 8192
FEATURE_DIM = 4096  # fc7
CLIP_LEN, CROP = 16, 112

# Raw 0-255 inputs minus the mean have a standard deviation of about 64 on natural video; conv1's He initialisation is
# divided by it so that a randomly initialised C3D gives unit-scale activations (see C3D._init_weights).
_INPUT_STD = 64.0

# The 487 Sports-1M classes in output order (the dataset's labels.txt, as shipped with DavideA/c3d-pytorch; index 367
# is basketball, the example of axon-research/c3d-keras's README).
SPORTS1M_LABELS: tuple[str, ...] = read_labels("sports1m_labels.txt", 487)

# Sports-1M channel mean of the Caffe model, BGR on the 0-255 scale (DavideA/c3d-pytorch issue #1).
_SPORTS1M_MEAN_BGR = (90.25, 97.66, 101.41)

C3D_SPORTS1M = WeightsSpec(
    name="c3d-sports1m",
    arch="c3d",
    description=(
        "C3D trained on Sports-1M (Tran et al. 2015, facebook/C3D conv3d_deepnetA_sport1m_iter_1900000: "
        "46.1 % clip / 61.1 % video top-1, 85.2 % video top-5 on Sports-1M test); from a Keras .h5 or c3d.pickle"
    ),
    # The Keras port the study used; adamcasson/c3d's c3d.py publishes only its md5 (KERAS_TF_MD5), not a sha256,
    # so the download is checked with that md5 and then key by key and shape by shape.
    url="https://github.com/adamcasson/c3d/releases/download/v0.1/sports1M_weights_tf.h5",
    url_sha256="",
    member="",
    member_sha256="",
    sha256="",  # our converted file depends on which of the public copies the user brings
    categories=SPORTS1M_LABELS,
    clip_len=CLIP_LEN,
    predict_frames=CLIP_LEN,  # fc6 needs pool5 512x1x4x4: 16 frames (16..31 give the same pool5 depth)
    fps=None,  # the study takes 16 consecutive frames at the video's own rate
    resize=128,  # 320x240 -> 171x128, the paper's 128x171 frames
    crop=CROP,
    mean=tuple(m / 255.0 for m in reversed(_SPORTS1M_MEAN_BGR)),  # RGB
    std=(1 / 255.0, 1 / 255.0, 1 / 255.0),  # raw 0-255 levels minus the mean
    licence="facebook/C3D weights (github.com/facebookarchive/C3D terms); ports: adamcasson/c3d, DavideA/c3d-pytorch (MIT)",
)
KERAS_TF_MD5 = "b7a93b2f9156ccbebe3ca24b41fc5402"  # of sports1M_weights_tf.h5, as adamcasson/c3d c3d.py checks it

C3D_SPORTS1M_MMACTION2 = WeightsSpec(
    name="c3d-sports1m-mmaction2",
    arch="c3d",
    description=(
        "C3D conv1-fc7 pretrained on Sports-1M, OpenMMLab's checkpoint (no Sports-1M classifier: train a head with "
        "`actionrec train`); mmaction2 reaches 82.9 % top-1 on UCF101 split 1 fine-tuning it"
    ),
    url="https://download.openmmlab.com/mmaction/recognition/c3d/c3d_sports1m_pretrain_20201016-dcc47ddc.pth",
    # OpenMMLab names published checkpoints by the first 8 hex digits of their sha256 (mmaction2
    # tools/deployment/publish_model.py); the full digest and size (311,985,866 bytes) are from a third-party record
    # that matches that prefix.
    url_sha256="dcc47ddcdc7dd62eabc24bc70491b47c82b3b1045b864c52f6bdb669243dfcff",
    member="",
    member_sha256="dcc47ddcdc7dd62eabc24bc70491b47c82b3b1045b864c52f6bdb669243dfcff",
    sha256="",
    categories=(),  # the checkpoint has no fc8
    clip_len=CLIP_LEN,
    predict_frames=CLIP_LEN,
    fps=None,
    resize=128,  # mmaction2: Resize(scale=(-1, 128)) then CenterCrop(112)
    crop=CROP,
    mean=(104 / 255.0, 117 / 255.0, 128 / 255.0),  # mmaction2 data_preprocessor, RGB (to_bgr=False)
    std=(1 / 255.0, 1 / 255.0, 1 / 255.0),
    licence="Apache-2.0 (mmaction2 model zoo)",
)

# Which spec each source format yields.
FORMATS = {
    "c3d-pickle": C3D_SPORTS1M,  # DavideA/c3d-pytorch c3d.pickle
    "keras-h5": C3D_SPORTS1M,  # Keras HDF5 ports
    "mmaction2": C3D_SPORTS1M_MMACTION2,  # OpenMMLab c3d_sports1m_pretrain_*.pth
}
SPECS = {C3D_SPORTS1M.name: C3D_SPORTS1M, C3D_SPORTS1M_MMACTION2.name: C3D_SPORTS1M_MMACTION2}


def macs_per_clip(num_classes: int = 487, frames: int = CLIP_LEN, size: int = CROP) -> int:
    """Multiply-accumulates of one forward pass (convolutions and fully connected layers), counted analytically."""
    t, h, w = frames, size, size
    total = 0
    for name in ENDPOINTS:
        if name in _CONVS:
            cin, cout = _CONVS[name]
            total += cin * 27 * cout * t * h * w
        elif name in _POOLS:
            kt, kh, kw = _POOLS[name]
            pad = 1 if name == "pool5" else 0
            t, h, w = (t - kt) // kt + 1, (h + 2 * pad - kh) // kh + 1, (w + 2 * pad - kw) // kw + 1
    return total + FC6_IN * FEATURE_DIM + FEATURE_DIM * FEATURE_DIM + FEATURE_DIM * num_classes


def _uninitialised(cls, *args, **kwargs) -> nn.Module:
    """A layer without PyTorch's default initialisation (C3D initialises it once), on the current default device."""
    return nn.utils.skip_init(cls, *args, device=torch.empty(0).device, **kwargs)


def _check_clip(x: torch.Tensor) -> None:
    """fc6 needs pool5 512x1x4x4: 16 to 31 frames of 112 to 127 pixels (16x112x112 is the trained size)."""
    if x.ndim != 5 or x.shape[1] != 3 or not 16 <= x.shape[2] < 32 or not all(112 <= s < 128 for s in x.shape[3:]):
        raise ValueError(f"C3D needs clips of 16 frames of 112x112 (B, 3, 16, 112, 112); got {tuple(x.shape)}")


class C3D(EndpointNetwork):
    """C3D. Input (B, 3, 16, 112, 112), RGB, raw 0-255 levels minus the spec's mean (see the module docstring).

    `forward_until(x, endpoint, start)` runs the layers after endpoint `start` (or from the input) up to `endpoint`
    (one of ENDPOINTS), so activations cached at a cut (e.g. pool5) feed the trainable top. `forward_features` ends at
    fc7 (B, 4096), post-ReLU; `forward_head` applies dropout then the classifier (`head`, the paper's fc8).
    `num_classes=0` builds no classifier (`head` is the identity), for backbone-only weights.

    One dropout module, `drop`, serves both of C3D's dropout layers (before fc7 and before fc8), so switching it on
    (`model.drop.train()`) or changing `model.drop.p` acts on both, as the trainer expects of I3D's single dropout.
    """

    ENDPOINTS = ENDPOINTS
    TRAINABLE_BLOCKS = TRAINABLE_BLOCKS
    FEATURES_ENDPOINT = "fc7"

    def __init__(self, num_classes: int = 487, final_endpoint: str = "fc8", drop_rate: float = 0.5):
        super().__init__(final_endpoint, FEATURE_DIM)
        for name, (cin, cout) in _CONVS.items():
            setattr(self, name, _uninitialised(nn.Conv3d, cin, cout, kernel_size=3, padding=1))
        self.fc6 = _uninitialised(nn.Linear, FC6_IN, FEATURE_DIM)
        self.fc7 = _uninitialised(nn.Linear, FEATURE_DIM, FEATURE_DIM)
        self.drop = nn.Dropout(drop_rate)
        self._init_weights()
        self.reset_classifier(num_classes)

    def _init_weights(self) -> None:
        """He initialisation (ReLU) with zero biases; conv1 scaled for raw 0-255 inputs (random-init training)."""
        for module in self.modules():
            if isinstance(module, (nn.Conv3d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(module.bias)
        with torch.no_grad():
            self.conv1.weight.div_(_INPUT_STD)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head by a fresh one with `num_classes` outputs (0: no classifier), N(0, 0.01) as mmaction2."""
        self.num_classes = num_classes
        if num_classes == 0:
            self.head = nn.Identity()
            return
        self.head = _uninitialised(nn.Linear, FEATURE_DIM, num_classes)
        nn.init.normal_(self.head.weight, std=0.01)
        nn.init.zeros_(self.head.bias)

    def _stage(self, name: str, x: torch.Tensor) -> torch.Tensor:
        if name in _CONVS:
            # in place on the convolution's fresh output (its backward needs only input and weight): on CPU this
            # saves allocating, and page-faulting in, one more activation as large as the output (205 MB for conv1 at
            # batch 4)
            return F.relu_(getattr(self, name)(x))
        if name == "pool5":
            # Zero padding then a VALID pool, as the Keras ports; inputs are post-ReLU (>= 0), so this equals the
            # PyTorch ports' -inf-padded MaxPool3d(padding=(0, 1, 1)).
            x = F.pad(x, (1, 1, 1, 1, 0, 0))
        if name in _POOLS:
            return F.max_pool3d(x, _POOLS[name], _POOLS[name])
        if name == "fc6":
            if tuple(x.shape[1:]) != POOL5_SHAPE:
                raise ValueError(
                    f"C3D needs clips of 16 frames of 112x112 (pool5 {'x'.join(map(str, POOL5_SHAPE))} = {FC6_IN} fc6 "
                    f"inputs); got pool5 {'x'.join(map(str, x.shape[1:]))}"
                )
            return F.relu(self.fc6(x.flatten(1)))
        if name == "fc7":
            return F.relu(self.fc7(self.drop(x)))
        return self.head(self.drop(x))  # fc8

    def forward_until(self, x: torch.Tensor, endpoint: str = "fc7", start: str | None = None) -> torch.Tensor:
        """Activation at `endpoint`, starting from the input or from the activation of endpoint `start`."""
        for name in (endpoint, start):
            if name is not None:
                self.check_endpoint(name)
        if start is None and ENDPOINTS.index(endpoint) >= ENDPOINTS.index("pool5"):
            _check_clip(x)
        first = 0 if start is None else ENDPOINTS.index(start) + 1
        for name in ENDPOINTS[first : ENDPOINTS.index(endpoint) + 1]:
            x = self._stage(name, x)
        return x

    def forward_features(self, x: torch.Tensor, start: str | None = None) -> torch.Tensor:
        """fc7 features (B, 4096), from the input or from the activation of endpoint `start` (e.g. cached pool5)."""
        if start == "fc8":
            raise ValueError("forward_features cannot start after fc8 (the head)")
        return self.forward_until(x, "fc7", start)
