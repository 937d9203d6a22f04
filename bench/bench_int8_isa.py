"""int8 against fp32 (and bf16) on another kind of CPU, emulated on this one by capping OpenVINO's kernels' ISA.

    ONEDNN_MAX_CPU_ISA=AVX2 python bench/bench_int8_isa.py [--rounds 5] [--precisions fp32,int8]

OpenVINO's CPU plugin picks its kernels through its oneDNN, which honours $ONEDNN_MAX_CPU_ISA: capped to AVX2, every
convolution, pooling and reorder of the compiled graph is an AVX2 kernel (jit_avx2_*, brgconv_avx2_*: this script
lists them from the runtime graph and refuses to report if any convolution or pool keeps an AVX-512 or AMX kernel;
the final mean and the 1024x400 classifier, under 0.1 % of the work, keep theirs) and bf16 becomes
~100x slower (emulated), as on a real AVX2-only CPU. The engine is also shown the CPU flags of that kind (so int8's
unquantized operations run in fp32, as they would there). What it cannot emulate: that CPU's clock, caches and memory;
the ratio int8 / fp32 measured side by side in one process is what counts. Clips: random (the speed does not depend
on the values), batch 1 and 4, rows timed round-robin, medians; the top-1 and logits of the 3 real clips
(../shared/realclips, central 16 frames) against fp32 on the same ISA.
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import actionrec  # noqa: E402
from actionrec.models import backends  # noqa: E402

KIND_FLAGS = {"AVX2": frozenset({"avx", "avx2", "fma"})}  # what /proc/cpuinfo lists on an AVX2-only CPU (the flags that matter)
NAME, SHAPE = "i3d-kinetics400", (3, 16, 224, 224)  # the network `auto` may run in int8 (shipped ranges)


def kernels(engine, shape: tuple[int, ...]) -> collections.Counter:
    """The kernels of the compiled graph's compute nodes, by OpenVINO's primitive type."""
    from actionrec.models.backends import graph_for

    compiled = engine._openvino.compiled(graph_for(engine.model, "logits"), shape)
    found = collections.Counter()
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        if info["layerType"].astype(str) not in ("Const", "Input", "Output", "Reshape"):
            found[f'{info["layerType"].astype(str)}:{info["primitiveType"].astype(str)}'] += 1
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--precisions", default="fp32,int8")
    parser.add_argument("--logits", type=Path, help="int8 logits of the real clips: written here if absent, else "
                                                     "compared with (e.g. the native ISA's against AVX2's)")
    args = parser.parse_args()
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "")
    if isa in KIND_FLAGS:
        backends.cpu_flags = lambda: KIND_FLAGS[isa]  # the engine sees that kind of CPU
    from actionrec.engine import Engine

    name, shape = NAME, SHAPE
    model = actionrec.load_model(name, fast=False)
    from bench_i3d import CLIPS, load_clip
    clips = [load_clip(path, model.info.spec) for path in sorted(CLIPS.iterdir()) if path.suffix in (".avi", ".mp4", ".gif")]
    precisions = args.precisions.split(",")
    engines = {p: Engine(model, precision=p, backend="openvino") for p in precisions}
    for p, engine in engines.items():
        engine.forward(torch.randn(1, *shape), "logits")
        found = kernels(engine, shape)
        print(f"{p} kernels: {dict(found)}", flush=True)
        wide = [k for k in found if k.startswith(("Convolution:", "Pooling:")) and ("avx512" in k or "amx" in k)]
        if isa and wide:
            print(f"{isa} was not honoured: {wide} remain; not a measurement of that kind of CPU")
            return 1
    logits = {p: torch.cat([engine.forward(clip[None], "logits") for clip in clips]) for p, engine in engines.items()}
    for p in engines:
        print(f"{p}: top-1 of the real clips {logits[p].argmax(1).tolist()}, logits vs fp32 max "
              f"{(logits[p] - logits['fp32']).abs().max():.3f}", flush=True)
    if args.logits is not None and "int8" in logits:
        if args.logits.is_file():
            other = torch.load(args.logits)
            print(f"int8 logits vs {args.logits}: max {(logits['int8'] - other).abs().max():.4f}, top-1 "
                  f"{other.argmax(1).tolist()}", flush=True)
        else:
            torch.save(logits["int8"], args.logits)
    for batch in (1, 4):
        x = torch.randn(batch, *shape)
        times = {p: [] for p in engines}
        for _ in range(args.rounds):
            for p, engine in engines.items():
                start = time.perf_counter()
                engine.forward(x, "logits")
                times[p].append(time.perf_counter() - start)
        med = {p: statistics.median(t) for p, t in times.items()}
        speed = " ".join(f"{p} {batch / med[p]:.2f}" for p in engines)
        ratios = " ".join(f"{p}/fp32 {med['fp32'] / med[p]:.2f}" for p in engines if p != "fp32")
        print(f"{name} ISA {isa or 'native'} batch {batch}: clips/s {speed}; {ratios}; load {os.getloadavg()[0]:.1f}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
