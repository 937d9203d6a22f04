"""What I3D and C3D share: named endpoints ending with the classifier, a cut after `final_endpoint`, pooled features,
then dropout and the classifier `head` (the interface the engine and the trainer use)."""

from __future__ import annotations

import torch
from torch import nn


class EndpointNetwork(nn.Module):
    """Base of the networks. Subclasses set ENDPOINTS (in order, the classifier last), TRAINABLE_BLOCKS and
    FEATURES_ENDPOINT, build `drop` and `head`, and define `forward_until(x, endpoint, start)` and
    `forward_features(x, start)`."""

    ENDPOINTS: tuple[str, ...] = ()
    TRAINABLE_BLOCKS: tuple[str, ...] = ()
    FEATURES_ENDPOINT = ""
    time_stride: int | None = None  # input frames per step of `forward_steps` (None: no per-step features, e.g. C3D)
    # I3D also has `temporal_head` (a run's, which then classifies; None otherwise). Not a class attribute here: one
    # would hide the submodule nn.Module keeps in _modules.

    def __init__(self, final_endpoint: str, num_features: int):
        super().__init__()
        self.final_endpoint = self.check_endpoint(final_endpoint, "final_endpoint")
        self.num_features = num_features

    def check_endpoint(self, name: str, what: str = "endpoint") -> str:
        """`name`, if it is one of ENDPOINTS; else ValueError listing them."""
        if name not in self.ENDPOINTS:
            raise ValueError(f"unknown {what} {name!r}; choose one of {', '.join(self.ENDPOINTS)}")
        return name

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(features))

    def forward_logits(self, x: torch.Tensor, start: str | None = None) -> torch.Tensor:
        """Class logits from the input, or from the activation of endpoint `start` (the trainer's cached features)."""
        return self.forward_head(self.forward_features(x, start))

    def forward_features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled features and class logits of the input, from one pass (the engine's exported graph)."""
        features = self.forward_features(x)
        return features, self.forward_head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.final_endpoint != self.ENDPOINTS[-1]:
            return self.forward_until(x, self.final_endpoint)
        return self.forward_logits(x)


def forward_output(net: nn.Module, x: torch.Tensor, output: str, start: str | None = None) -> torch.Tensor:
    """The engine's `output` (see :meth:`actionrec.engine.Engine.forward`) of `net` on the input, or on the activation
    of endpoint `start`: "probs"/"logits" the class logits, "features" pooled, "steps" per time step, "step_logits"
    the linear head on each step, else the activation at that endpoint. The one output -> method dispatch (the engine's
    PyTorch path, its fp32 top of a run, and the graphs exported for OpenVINO)."""
    if output in ("probs", "logits"):
        return net(x) if start is None else net.forward_logits(x, start)
    if output == "features":
        return net.forward_features(x) if start is None else net.forward_features(x, start)
    if output == "steps":
        return net.forward_steps(x) if start is None else net.forward_steps(x, start)
    if output == "step_logits":
        return net.forward_head(net.forward_steps(x) if start is None else net.forward_steps(x, start))
    return net.forward_until(x, output) if start is None else net.forward_until(x, output, start)


def has_steps(net: nn.Module) -> bool:
    """Whether `net` gives features per time step (`forward_steps`: convolutional in time to its end, as I3D)."""
    return getattr(net, "time_stride", None) is not None


def has_step_logits(net: nn.Module) -> bool:
    """Whether `net`'s per-step logits are its classifier's (per-step features and the linear head: no temporal head
    classifying whole windows)."""
    return has_steps(net) and getattr(net, "temporal_head", None) is None
