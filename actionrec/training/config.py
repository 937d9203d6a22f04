"""The options of a training run (:class:`TrainConfig`) and each backbone's defaults: what the trainer, its phases, the
CLI and the page read (one place, below all of them)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..defaults import BACKENDS, DEFAULT_WEIGHTS, PRECISIONS
from ..checks import MIN_FRAMES, number, option_name, whole
from ..errors import ActionrecError

# Per-backbone defaults that converge on cached features (see the README for why they differ from the study's).
BACKBONE_DEFAULTS = {
    "i3d": {"weights": DEFAULT_WEIGHTS["i3d"], "lr": 0.05, "finetune_lr": 0.005, "unfreeze": ("Mixed_5b", "Mixed_5c")},
    # C3D's fc7 features are not normalised (squared norm ~1e3-1e4): the study's lr 0.1 diverges on them.
    "c3d": {"weights": DEFAULT_WEIGHTS["c3d"], "lr": 1e-3, "finetune_lr": 1e-4, "unfreeze": ("fc6", "fc7")},
}
NO_WEIGHTS = "none"  # --weights none: the backbone from random initialisation (not transfer learning)
HEADS = ("linear", "temporal")
HEAD_FITS = ("auto", "logistic", "softmax")  # how the linear head is fitted (see TrainConfig.head_fit)
MIN_CROP = 32  # pixels: I3D halves the picture five times before Mixed_5c
AUTO_LR = "auto"  # --lr auto: the head's learning rate from a range test on the cached features (lr_range.py)


@dataclass(frozen=True)
class TrainConfig:
    """Options of one training run; None means the backbone's default."""

    backbone: str = "i3d"  # architecture: i3d or c3d
    weights: str | None = None  # pretrained weights name (default: the backbone's; "none": random initialisation)
    frames: int | None = None  # frames per clip (default: 16, the study's; 64 with the temporal head: 8 time steps)
    # side of the square the backbone sees, cut from frames resized to the weights' short side (default: the weights'
    # crop, 224 for I3D; with the few-shot head on I3D, FEWSHOT_CROP: see fewshot.crop_for)
    crop: int | None = None
    head: str = "linear"  # "linear": softmax on pooled features (the study's); "temporal": over I3D's per-step features
    # "logistic": the few-shot head (training/fewshot.py: no validation hold-out, its penalty by cross-validation over
    # whole groups, no fine-tuning); "softmax": SGD with validation, then fine-tuning; "auto": logistic when the class
    # with the fewest groups (videos, sources) in training has at most fewshot.FEWSHOT_UP_TO (measured), else softmax
    head_fit: str = "auto"
    views: int = 1  # clips per training video: 1 central + (views - 1) augmented (offset, flip, crop jitter)
    epochs: int = 50  # head epochs (the study: 20); the epoch with the best validation loss is kept
    lr: float | str | None = None  # head learning rate, SGD with momentum; "auto": chosen by a range test on the cache
    momentum: float = 0.9  # SGD momentum
    weight_decay: float = 1e-4  # L2 penalty
    dropout: float = 0.5  # dropout before the head
    batch_size: int = 32  # clips per step
    patience: int = 0  # stop when the validation loss has not improved for this many epochs (0: never)
    finetune_epochs: int = 5  # epochs of fine-tuning the unfrozen blocks and the head (0: none; the study: 5-10)
    finetune_lr: float | None = None  # fine-tuning learning rate
    unfreeze: tuple[str, ...] | None = None  # blocks tuned in fine-tuning, consecutive and ending at the top
    test_views: int = 2  # clips spread over each test video, probabilities averaged (1: the central clip, the study's)
    val_fraction: float = 0.2  # of training, for validation (the study: 20 %)
    test_fraction: float = 0.2  # held out when the data names no test set
    seed: int = 0  # splits, augmentation, initialisation and shuffling
    device: str = "auto"  # auto|cpu|cuda[:N]; auto: CUDA when available (under torchrun: the GPU of LOCAL_RANK)
    precision: str = "auto"  # the engine's for the frozen part (auto|float|fp32|bf16|int8; see models/backends.py)
    backend: str = "auto"  # the engine's for the frozen part (auto|openvino|torch)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """One ActionrecError line for the first value out of range (the CLI and the Python API share this)."""
        if self.backbone not in BACKBONE_DEFAULTS:
            raise ActionrecError(f"unknown backbone {self.backbone!r}; choose one of: {', '.join(BACKBONE_DEFAULTS)}")
        if self.frames is not None:
            whole(self.frames, "--frames", MIN_FRAMES)
        if self.backbone == "c3d" and self.frames not in (None, 16):
            raise ActionrecError(f"--frames {self.frames}: C3D takes clips of exactly 16 frames (its fc6 is sized for them)")
        if self.crop is not None:
            whole(self.crop, "--crop", MIN_CROP)
        if self.backbone == "c3d" and self.crop not in (None, 112):
            raise ActionrecError(f"--crop {self.crop}: C3D takes crops of exactly 112 pixels (its fc6 is sized for them)")
        if self.head not in HEADS:
            raise ActionrecError(f"--head {self.head}: choose one of: {', '.join(HEADS)}")
        if self.head == "temporal" and self.backbone != "i3d":
            raise ActionrecError(f"--head temporal needs I3D's per-step features; {self.backbone} is not convolutional in "
                                 "time (C3D's fc6 takes exactly 16 frames): use --head linear")
        if self.head_fit not in HEAD_FITS:
            raise ActionrecError(f"--head-fit {self.head_fit}: choose one of: {', '.join(HEAD_FITS)}")
        if self.head == "temporal" and self.head_fit == "logistic":
            raise ActionrecError("--head-fit logistic fits the linear head: with --head temporal use --head-fit auto or "
                                 "softmax")
        if self.head == "temporal" and self.frames is not None and self.frames < 16:
            raise ActionrecError(f"--frames {self.frames}: --head temporal needs at least 2 time steps (one per 8 frames): "
                                 "pass --frames 16 or more (default 64)")
        for name, minimum in (("views", 1), ("epochs", 1), ("batch_size", 1), ("patience", 0), ("finetune_epochs", 0),
                              ("test_views", 1), ("seed", 0)):
            whole(getattr(self, name), option_name(name), minimum)
        for name in ("lr", "finetune_lr"):
            if getattr(self, name) is not None and not (name == "lr" and self.lr == AUTO_LR):
                number(getattr(self, name), option_name(name), 0.0, low_open=True)
        number(self.weight_decay, "--weight-decay", 0.0)
        from ..distributed import check_device  # imports PyTorch: not at import (the CLI's help reads this module)

        check_device(self.device)
        for name, allowed in (("precision", PRECISIONS), ("backend", BACKENDS)):
            if getattr(self, name) not in allowed:
                raise ActionrecError(f"--{name} {getattr(self, name)!r}: choose one of: {', '.join(allowed)}")
        for name in ("momentum", "dropout", "val_fraction", "test_fraction"):
            number(getattr(self, name), option_name(name), 0.0, 1.0, high_open=True)

    def resolved(self) -> TrainConfig:
        """The backbone's defaults filled in for every None."""
        d = BACKBONE_DEFAULTS[self.backbone]
        return replace(
            self,
            weights=self.weights or d["weights"],
            frames=self.frames or (64 if self.head == "temporal" else 16),
            lr=self.lr if self.lr is not None else d["lr"],
            finetune_lr=self.finetune_lr if self.finetune_lr is not None else d["finetune_lr"],
            unfreeze=tuple(self.unfreeze) if self.unfreeze is not None else d["unfreeze"],
        )
