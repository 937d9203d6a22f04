"""The network's input (data.transforms): numpy arithmetic (so a network run by OpenVINO is fed without PyTorch),
the same numbers as PyTorch's, on real decoded frames."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from actionrec.data.transforms import preprocess, preprocess_array
from actionrec.data.video import read_clip
from actionrec.models.pretrained import PRETRAINED

ROOT = Path(__file__).resolve().parents[1]


def torch_reference(frames: np.ndarray, spec, top: int, left: int, flip: bool) -> torch.Tensor:
    """The crop (already resized frames), scaled and normalised with PyTorch's float32 arithmetic."""
    crop = frames[:, top : top + spec.crop, left : left + spec.crop]
    crop = crop[:, :, ::-1] if flip else crop
    clip = torch.from_numpy(np.ascontiguousarray(crop)).permute(3, 0, 1, 2).float().div_(255.0)
    return clip.sub_(torch.tensor(spec.mean).view(3, 1, 1, 1)).div_(torch.tensor(spec.std).view(3, 1, 1, 1))


@pytest.mark.parametrize("name", ["i3d-kinetics400", "c3d-sports1m"])
@pytest.mark.parametrize("flip", [False, True])
def test_numpy_preprocessing_is_pytorch_s_to_the_bit(realclips, name, flip):
    spec = PRETRAINED[name]
    frames = read_clip(realclips / "archery.avi", n=8, short_side=spec.resize, target_fps=spec.fps).frames
    h, w = frames.shape[1:3]
    shift = (0.5, -0.25)
    top, left = round((h - spec.crop) / 2 * 1.5), round((w - spec.crop) / 2 * 0.75)
    expected = torch_reference(frames, spec, top, left, flip).numpy()
    array = preprocess_array(frames, spec, crop_shift=shift, flip=flip)
    assert array.dtype == np.float32 and array.shape == (3, 8, spec.crop, spec.crop) and array.flags.c_contiguous
    assert np.array_equal(array, expected)
    assert torch.equal(preprocess(frames, spec, crop_shift=shift, flip=flip), torch.from_numpy(expected))


def test_numpy_preprocessing_imports_no_pytorch(realclips):
    probe = ("import sys; from actionrec.data.transforms import preprocess_array; from actionrec.data.video import read_clip\n"
             "spec = type('Spec', (), dict(resize=256, crop=224, mean=(0.5,) * 3, std=(0.5,) * 3))\n"
             f"x = preprocess_array(read_clip({str(realclips / 'archery.avi')!r}, n=8, short_side=256).frames, spec)\n"
             "assert x.shape == (3, 8, 224, 224) and -1 <= x.min() < x.max() <= 1, (x.shape, x.min(), x.max())\n"
             "print('torch' in sys.modules)")
    child = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=ROOT,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == "False"
