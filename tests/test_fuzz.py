"""Fuzz: a few hundred mutated real clips (bit flips, truncations, zeroed ranges, spliced headers; seeded) through
`actionrec predict` in a child process. No signal death, no traceback; every file is either predicted or named on
one stderr line; most single-bit-flip clips keep their top-1."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
SOURCES = [SHARED / "realclips" / "archery.avi", SHARED / "realclips" / "arm_wrestling.mp4",
           SHARED / "ucf101_subset" / "UCF-101" / "BabyCrawling" / "v_BabyCrawling_g01_c01.avi",
           SHARED / "ucf101_subset" / "UCF-101" / "ApplyLipstick" / "v_ApplyLipstick_g01_c01.avi"]
FLIPS, CUTS, ZEROED, SPLICED = 40, 10, 10, 5  # mutations per source: 65 x 4 = 260 files


def mutants(source: Path, out: Path, rng: random.Random, donor: bytes) -> dict[str, str]:
    """Mutated copies of `source` in `out`: {file name: kind}."""
    data = source.read_bytes()
    made = {}

    def write(kind: str, i: int, blob: bytes) -> None:
        name = f"{source.stem}_{kind}{i:02d}{source.suffix}"
        (out / name).write_bytes(blob)
        made[name] = kind

    for i in range(FLIPS):
        blob = bytearray(data)
        pos = rng.randrange(len(blob))
        blob[pos] ^= 1 << rng.randrange(8)
        write("flip", i, bytes(blob))
    for i in range(CUTS):
        write("cut", i, data[: rng.randrange(1, len(data))])
    for i in range(ZEROED):
        a = rng.randrange(len(data))
        b = min(len(data), a + rng.randrange(1, 4096))
        write("zero", i, data[:a] + bytes(b - a) + data[b:])
    for i in range(SPLICED):
        k = rng.randrange(64, 4096)
        write("splice", i, donor[:k] + data[k:])
    return made


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory, i3d_kinetics):
    """The mutated files, their originals, and one child run of `actionrec predict` over all of them."""
    missing = [s for s in SOURCES if not s.is_file()]
    if missing:
        pytest.skip(f"{missing[0]} is absent: the fuzz test needs the project's shared/ folder beside the checkout")
    out = tmp_path_factory.mktemp("fuzz")
    rng = random.Random(20261201)
    kinds = {}
    for i, source in enumerate(SOURCES):
        kinds.update(mutants(source, out, rng, SOURCES[(i + 1) % len(SOURCES)].read_bytes()))
    files = [str(s) for s in SOURCES] + [str(out / name) for name in sorted(kinds)]
    child = subprocess.run([sys.executable, "-m", "actionrec", "predict", *files, "--json", "--top", "1", "--single-clip"],
                           capture_output=True, text=True, timeout=1500, env={**os.environ, "PYTHONFAULTHANDLER": "1"})
    return files, kinds, child


def test_no_crash_no_traceback_every_file_answered_once(fuzzed):
    files, kinds, child = fuzzed
    assert child.returncode in (0, 1), (child.returncode, child.stderr[-3000:])  # a signal death is negative
    assert "Traceback" not in child.stderr and "Fatal Python error" not in child.stderr, child.stderr[-3000:]
    predicted = [json.loads(line)["video"] for line in child.stdout.splitlines()]
    errors = [line for line in child.stderr.splitlines() if "error:" in line]
    assert len(predicted) == len(set(predicted))
    for path in files:
        named = [line for line in errors if path in line]
        assert (path in predicted) != bool(named), path  # predicted, or named on a stderr line, not both
        assert len(named) <= 1, named
    assert len(errors) == len(files) - len(predicted)
    assert all(f in predicted for f in files[: len(SOURCES)])  # the originals themselves


def test_most_single_bit_flips_keep_their_top1(fuzzed):
    files, kinds, child = fuzzed
    top1 = {json.loads(line)["video"]: json.loads(line)["top"][0]["label"] for line in child.stdout.splitlines()}
    original = {Path(f).stem: top1[f] for f in files[: len(SOURCES)]}
    flips = [f for f in files[len(SOURCES):] if kinds[Path(f).name] == "flip"]
    kept = sum(1 for f in flips if top1.get(f) == original[Path(f).stem.rsplit("_flip", 1)[0]])
    print(f"single-bit flips: {kept} of {len(flips)} keep their top-1, "
          f"{sum(1 for f in flips if f in top1)} predicted at all")
    assert kept >= 0.8 * len(flips), (kept, len(flips))
