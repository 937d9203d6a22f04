"""Clip transforms: decoded uint8 frames -> the network's input, as the weights spec says.

The arithmetic is numpy's (:func:`preprocess_array`), so that a network run by OpenVINO is fed without PyTorch;
:func:`preprocess` gives the same numbers as a tensor."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # annotations only: importing this module imports neither PyTorch nor the weights' module
    import torch

    from ..models.info import WeightsSpec


def preprocess_array(frames: np.ndarray, spec: WeightsSpec, crop_shift: tuple[float, float] = (0.0, 0.0),
                     flip: bool = False) -> np.ndarray:
    """uint8 RGB frames (T, H, W, 3) -> the network input (3, T, crop, crop), float32, in the spec's value range.

    The shorter side is resized to `spec.resize` (skipped when it already is), then cropped to `spec.crop`: centred,
    or shifted by `crop_shift` (fractions in [-1, 1] of the free margin, (dy, dx)) for augmentation; `flip` mirrors it.
    """
    import cv2

    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames (T, H, W, 3), got {frames.dtype} {frames.shape}")
    t, h, w, _ = frames.shape
    if min(h, w) != spec.resize:
        scale = spec.resize / min(h, w)
        size = (max(spec.resize, round(w * scale)), max(spec.resize, round(h * scale)))
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        frames = np.stack([cv2.resize(f, size, interpolation=interpolation) for f in frames])
        h, w = frames.shape[1:3]
    top = round((h - spec.crop) / 2 * (1 + crop_shift[0]))
    left = round((w - spec.crop) / 2 * (1 + crop_shift[1]))
    frames = frames[:, top : top + spec.crop, left : left + spec.crop]
    if flip:
        frames = frames[:, :, ::-1]
    clip = np.ascontiguousarray(frames.transpose(3, 0, 1, 2), dtype=np.float32)
    clip /= np.float32(255.0)
    clip -= np.asarray(spec.mean, np.float32).reshape(3, 1, 1, 1)
    clip /= np.asarray(spec.std, np.float32).reshape(3, 1, 1, 1)
    return clip


def preprocess(frames: np.ndarray, spec: WeightsSpec, crop_shift: tuple[float, float] = (0.0, 0.0), flip: bool = False) -> torch.Tensor:
    """:func:`preprocess_array` as a tensor (3, T, crop, crop): the same numbers."""
    import torch

    return torch.from_numpy(preprocess_array(frames, spec, crop_shift, flip))
