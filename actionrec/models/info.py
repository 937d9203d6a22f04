"""What a model is, without PyTorch: the specs of pretrained weights (preprocessing derives from them), their class
names, and the ModelInfo every built model carries (as timm's `pretrained_cfg`), which a compiled network's record
(:mod:`actionrec.models.compiled`) stores and reads back as JSON."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import ActionrecError


@dataclass(frozen=True)
class WeightsSpec:
    """Everything about one set of pretrained weights; preprocessing is derived from it, never hard-coded by callers."""

    name: str  # our name for the weights, e.g. "i3d-kinetics400"
    arch: str  # the architecture module that builds and converts them ("i3d", "c3d")
    description: str  # one line: what was trained on what, and its published accuracy
    url: str  # where the original file is published ("" when users must bring it)
    url_sha256: str  # sha256 of the file at `url`
    member: str  # path of the checkpoint inside the downloaded archive ("" when the download is the checkpoint)
    member_sha256: str  # sha256 of that checkpoint
    sha256: str  # tensors_sha256 of our converted weights ("" when it depends on the user's file)
    categories: tuple[str, ...]  # output classes, in output order
    clip_len: int  # frames per training clip (the study samples 16)
    predict_frames: int  # frames per window when predicting (I3D is convolutional in time: 64 beat 16 on real clips)
    fps: float | None  # frame rate clips are resampled to (None: keep the video's frames)
    resize: int  # shorter side is resized to this before the crop
    crop: int  # square centre crop fed to the network
    mean: tuple[float, float, float]  # per-channel mean on the [0, 1] scale, RGB order
    std: tuple[float, float, float]  # per-channel std on the [0, 1] scale
    licence: str  # licence of the weights

    @property
    def value_range(self) -> tuple[float, float]:
        """The range of network inputs, e.g. (-1.0, 1.0) for I3D."""
        return ((0.0 - self.mean[0]) / self.std[0], (1.0 - self.mean[0]) / self.std[0])


@cache
def read_labels(asset: str, count: int) -> tuple[str, ...]:
    """The class names in `actionrec/assets/<asset>`, one a line in output order; there must be `count` of them."""
    text = resources.files("actionrec").joinpath(f"assets/{asset}").read_text(encoding="utf-8")
    labels = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(labels) != count:
        raise ActionrecError(f"actionrec/assets/{asset}: {len(labels)} class names, expected {count}; reinstall actionrec")
    return labels


def kinetics400_labels() -> tuple[str, ...]:
    """The 400 Kinetics-400 class names in the output order of DeepMind's I3D (alphabetical)."""
    return read_labels("kinetics400_labels.txt", 400)


@dataclass(frozen=True)
class ModelInfo:
    """What a model is, attached once as `model.info` by :func:`build_model` (as timm's `pretrained_cfg`)."""

    name: str  # the weights name, or the run directory of a trained run
    spec: WeightsSpec  # architecture and preprocessing of the frozen backbone's weights
    categories: tuple[str, ...]  # output classes, in output order (empty: backbone only)
    weights_sha256: str  # identifies the frozen backbone's weights (the feature cache keys on it)
    predict_frames: int  # frames per window when predicting (a run: the clip length it was trained on)
    identity: str  # identifies everything the outputs depend on (caches of outputs key on it; empty: do not cache)
    run: Mapping[str, Any] | None = None  # a trained run's config.json

    @property
    def cut(self) -> str | None:
        """A trained run's cut: the endpoint its frozen part ends at (the feature cache's), above which its trained
        layers run in fp32 (see :class:`actionrec.engine.Engine`); None for pretrained weights."""
        return None if self.run is None else self.run["cut_endpoint"]

    @property
    def run_dir(self) -> Path | None:
        """The folder of a trained run (its config.json, metrics.json, report); None for pretrained weights."""
        return None if self.run is None else Path(self.name)

    @property
    def test_views(self) -> int:
        """The clips a video is scored from by default: a run's own test views (runs made before test views: 1, the
        central clip); 1 for pretrained weights."""
        return 1 if self.run is None else int(self.run.get("train_config", {}).get("test_views", 1))

    @property
    def random_weights(self) -> bool:
        """Whether the backbone has random weights (`train --weights none`): not transfer learning."""
        return self.weights_sha256.startswith(RANDOM_WEIGHTS)

    @property
    def cacheable(self) -> bool:
        """Whether outputs of this model may be cached on disk (keyed by `identity`)."""
        return bool(self.identity)


RANDOM_WEIGHTS = "random"  # ModelInfo.weights_sha256 of a backbone from random initialisation starts with this


def info_to_json(info: ModelInfo) -> dict:
    """`info` as plain JSON values (tuples become lists)."""
    return asdict(info)


def info_from_json(data: Mapping[str, Any]) -> ModelInfo:
    """The ModelInfo that :func:`info_to_json` wrote (KeyError or TypeError on anything else)."""
    spec = dict(data["spec"])
    for key in ("categories", "mean", "std"):
        spec[key] = tuple(spec[key])
    fields = dict(data, spec=WeightsSpec(**spec), categories=tuple(data["categories"]))
    return ModelInfo(**fields)


def check_classifier(info: ModelInfo) -> None:
    """Refuse a model without output classes (backbone-only weights) in one line."""
    if not info.categories:
        raise ActionrecError(f"{info.name}: these weights have no classes to recognise; train a run on them first "
                             f"(`actionrec train DATA --backbone {info.spec.arch} --weights {info.spec.name}`) and pass --run RUN")
