"""int8 calibration: measure a network's activation ranges on real videos (see :mod:`actionrec.models.int8`)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from ..data.transforms import preprocess
from ..data.video import VideoError, display_path, read_clip
from ..errors import ActionrecError
from ..models import int8
from ..models.backends import HEAD, OpenVINONet
from ..models.pretrained import load_pretrained
from ..version import __version__

CALIBRATION_CLIPS = 48  # measured ranges stop moving well before this many clips (the shipped I3D ranges use 48)


def calibration_clips(network, videos: Sequence[str | os.PathLike], frames: int = 16) -> list[np.ndarray]:
    """The central `frames` of each video, preprocessed as the network expects -> (1, 3, T, H, W) float32 each; an
    unreadable video is named on one stderr line and skipped."""
    spec = network.info.spec
    clips = []
    for video in videos:
        try:
            clip = read_clip(video, n=frames, short_side=spec.resize)
        except VideoError as err:
            print(f"actionrec: skipped {display_path(video)}: {err}", file=sys.stderr)
            continue
        clips.append(preprocess(clip.frames, spec)[None].numpy())
    if not clips:
        raise ActionrecError("int8 calibration found no readable video: give a few real videos of your domain")
    return clips


def calibrate_int8(weights: str, videos: Sequence[str | os.PathLike], out: str | os.PathLike | None = None,
                   frames: int = 16, clips: int = CALIBRATION_CLIPS) -> Path:
    """Measure the int8 activation ranges of pretrained `weights` on central clips of up to `clips` of `videos` and
    write them to `out` (default: $ACTIONREC_HOME/int8/<weights>.json, where `--precision int8` finds them)."""
    int8.require()
    import openvino

    network = load_pretrained(weights)
    data = calibration_clips(network, list(videos)[:clips], frames)
    shape = tuple(data[0].shape[1:])
    model = openvino.Core().read_model(OpenVINONet(network, "fp32").ir_path(HEAD, shape))
    model.reshape([1, *shape])
    ranges = int8.measure_ranges(model, data)
    path = Path(out) if out is not None else int8.measured_path(weights)
    path.parent.mkdir(parents=True, exist_ok=True)
    import nncf

    int8.save_ranges(path, ranges, network=weights, weights_sha256=network.info.weights_sha256, clips=len(data),
                     frames=frames, openvino=openvino.get_version(), nncf=nncf.__version__, actionrec=__version__)
    return path
