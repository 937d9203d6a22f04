"""Measure the int8 activation ranges of a pretrained network on real clips, once, for the package to ship.

    python tools/make_int8_ranges.py i3d-kinetics400 --ucf101 ../shared/ucf101_subset

Writes actionrec/assets/int8/<weights>.json: about 60 quantizers' ranges (four numbers each), never the clips. The
clips: central 16-frame clips of 48 videos of the UCF101 training list of split 1, spread over its classes and groups
(the real clips the int8 tests check are not among them). Users measure their own weights' ranges with
`actionrec weights calibrate NAME VIDEO...` (actionrec/apps/quantize.py); see actionrec/models/int8.py.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import actionrec
from actionrec.apps.quantize import CALIBRATION_CLIPS, calibrate_int8


def calibration_videos(ucf101: Path, count: int) -> list[Path]:
    """`count` videos of trainlist01, taken in turn from each class, every 7th of a class (distinct groups)."""
    listed = [line.split()[0] for line in (ucf101 / "ucfTrainTestlist" / "trainlist01.txt").read_text().splitlines() if line.strip()]
    by_class: dict[str, list[str]] = {}
    for name in listed:
        by_class.setdefault(name.split("/")[0], []).append(name)
    picked = []
    for k in range(max(len(v) for v in by_class.values())):
        picked += [v[k * 7 % len(v)] for v in by_class.values()]
    return [ucf101 / "UCF-101" / name for name in picked[:count]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", help="pretrained weights name, e.g. i3d-kinetics400")
    parser.add_argument("--ucf101", type=Path, default=Path("../shared/ucf101_subset"))
    args = parser.parse_args()
    out = Path(actionrec.__file__).parent / "assets" / "int8" / f"{args.weights}.json"
    calibrate_int8(args.weights, calibration_videos(args.ucf101, CALIBRATION_CLIPS), out)
    print(out)


if __name__ == "__main__":
    main()
