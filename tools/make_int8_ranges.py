"""Measure the int8 activation ranges of a pretrained network on real clips, once, for the package to ship.

    python tools/make_int8_ranges.py i3d-kinetics400 --ucf101 ../shared/ucf101_subset

Writes actionrec/assets/int8/<weights>.json: about 60 quantizers' ranges (four numbers each), never the clips. The
clips: central 16-frame clips of videos from the UCF101 training list of split 1, spread over its classes and groups
(the real clips the int8 tests check are not among them). See actionrec/models/int8.py.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

import actionrec
from actionrec.data.transforms import preprocess
from actionrec.data.video import read_clip
from actionrec.models import int8
from actionrec.models.backends import HEAD, OpenVINONet


def calibration_videos(ucf101: Path, count: int) -> list[Path]:
    """`count` videos of trainlist01, one group after another across its classes (the list's order interleaved)."""
    listed = [line.split()[0] for line in (ucf101 / "ucfTrainTestlist" / "trainlist01.txt").read_text().splitlines() if line.strip()]
    by_class: dict[str, list[str]] = {}
    for name in listed:
        by_class.setdefault(name.split("/")[0], []).append(name)
    picked = []
    for k in range(max(len(v) for v in by_class.values())):
        picked += [v[k * 7 % len(v)] for v in by_class.values()]  # every 7th clip: distinct groups
    return [ucf101 / "UCF-101" / name for name in picked[:count]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", help="pretrained weights name, e.g. i3d-kinetics400")
    parser.add_argument("--ucf101", type=Path, default=Path("../shared/ucf101_subset"))
    parser.add_argument("--clips", type=int, default=48)
    parser.add_argument("--frames", type=int, default=16)
    args = parser.parse_args()
    network = actionrec.load_model(args.weights, fast=False)
    spec = network.info.spec
    videos = calibration_videos(args.ucf101, args.clips)
    clips = [preprocess(read_clip(v, n=args.frames, short_side=spec.resize).frames, spec)[None].numpy() for v in videos]
    shape = tuple(clips[0].shape[1:])
    import openvino

    model = openvino.Core().read_model(OpenVINONet(network, "fp32")._ir(HEAD, shape))
    model.reshape([1, *shape])
    ranges = int8.measure_ranges(model, clips)
    out = Path(actionrec.__file__).parent / "assets" / "int8" / f"{args.weights}.json"
    import nncf

    int8.save_ranges(out, ranges, network=args.weights, clips=len(clips), frames=args.frames,
                     calibration=f"central clips of {len(clips)} videos of UCF101 trainlist01 (tools/make_int8_ranges.py)",
                     openvino=openvino.get_version(), nncf=nncf.__version__, torch=torch.__version__)
    print(f"{out}: {len(ranges)} quantizers from {len(clips)} clips")


if __name__ == "__main__":
    main()
