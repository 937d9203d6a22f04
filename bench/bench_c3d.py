"""C3D inference speed on this machine's CPU, against the best fp32 throughput measured in the same run.

For batch 1 and 4 clips of 3x16x112x112: clips/s of the eager model with contiguous (NCDHW) tensors and with
channels_last_3d (NDHWC) tensors; then the channels_last_3d model after tuning glibc's malloc (see below); and, with
--compile, torch.compile'd models (about 30 s of compilation per batch size on 2 cores; no gain measured at batch 1).
GFLOPs per clip are counted twice: analytically (actionrec.models.c3d.macs_per_clip, a multiply-add is 2 FLOPs) and by
torch.utils.flop_counter on a meta-device model; they must agree.

"Best fp32" is the higher of two compute-bound kernels timed in the same process with the same threads: a
2048x2048x2048 fp32 matmul and C3D's conv3b as one Conv3d (256->256 channels, 3x3x3, a 8x28x28 map, both memory
formats), sampled between the rows and at the end.

Two clocks. Wall time gives clips/s as a user sees them. CPU time of the process divided by its threads gives the
GFLOP/s the threads achieve while they run: on a shared machine other processes take cores away at random moments
and wall-time ratios swing by +-50 % between runs, while CPU-time ratios stay within a few per cent; on an idle
machine both agree. "Of best fp32" is therefore computed on CPU time. Every figure is the best of --repeat runs after
one warm-up.

glibc malloc: every forward pass allocates fresh activations of up to 205 MB (conv1 at batch 4); glibc hands such
blocks back to the kernel when they are freed, so the next pass page-faults them in again. mallopt(M_TRIM_THRESHOLD,
2 GiB) and mallopt(M_TOP_PAD, 1 GiB) (what the environment variables MALLOC_TRIM_THRESHOLD_ and MALLOC_TOP_PAD_ do)
keep freed memory in the process. Those rows come last because the setting cannot be undone in the process.

Run:  python bench/bench_c3d.py [--repeat 2] [--compile]    (1 to 2 minutes on 2 cores without --compile)

The inference backends side by side (the engine's PyTorch path, bf16 autocast, OpenVINO f32 / bf16, ONNX Runtime, as
ratios to a conv3d probe in the same run): `python bench/bench_c3d.py --backends [--quick] [--busy 60]`, which is
`python bench/bench_i3d.py --model c3d`.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from actionrec.models.c3d import C3D, macs_per_clip  # noqa: E402

CLIP = (3, 16, 112, 112)


@dataclass
class Timing:
    wall: float  # seconds, best run
    cpu: float  # CPU seconds of the process per thread, best run

    def rates(self, work: float) -> tuple[float, float]:
        return work / self.wall, work / self.cpu


def best_time(fn, repeat: int) -> Timing:
    fn()  # warm-up: allocations, oneDNN primitive creation, lazy initialisation
    threads = torch.get_num_threads()
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append((time.process_time() - cpu) / threads)
    return Timing(min(walls), min(cpus))


def peak_matmul(repeat: int) -> tuple[float, float]:
    n = 2048
    a, b, c = torch.randn(n, n), torch.randn(n, n), torch.empty(n, n)
    return best_time(lambda: torch.matmul(a, b, out=c), repeat).rates(2 * n**3 / 1e9)


def peak_conv3d(repeat: int) -> tuple[float, float, str]:
    """C3D's conv3b (256 -> 256, 3x3x3, 8x28x28, batch 1): 22.2 GFLOP, the kind of work the network is made of."""
    best = (0.0, 0.0, "")
    for fmt, memory_format in (("NCDHW", torch.contiguous_format), ("NDHWC", torch.channels_last_3d)):
        x = torch.randn(1, 256, 8, 28, 28).to(memory_format=memory_format)
        w = torch.randn(256, 256, 3, 3, 3).to(memory_format=memory_format)
        gflop = 2 * 256 * 27 * 256 * 8 * 28 * 28 / 1e9
        with torch.inference_mode():
            wall, cpu = best_time(lambda: F.conv3d(x, w, padding=1), repeat).rates(gflop)
        if cpu > best[1]:
            best = (wall, cpu, fmt)
    return best


def counted_flops() -> int:
    with torch.device("meta"):
        model, clip = C3D(), torch.empty(1, *CLIP)
    counter = FlopCounterMode(display=False)
    with counter:
        model(clip)
    return counter.get_total_flops()


def time_model(model: torch.nn.Module, batch: int, channels_last: bool, repeat: int) -> Timing:
    x = torch.randn(batch, *CLIP)
    if channels_last:
        x = x.to(memory_format=torch.channels_last_3d)
    with torch.inference_mode():
        timing = best_time(lambda: model(x), repeat)
    return Timing(timing.wall / batch, timing.cpu / batch)  # per clip


def tune_glibc_malloc() -> bool:
    """Keep freed memory in the process (glibc only): True if applied."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_top_pad = -1, -2  # malloc.h
        return bool(libc.mallopt(m_trim_threshold, 2 << 30) and libc.mallopt(m_top_pad, 1 << 30))
    except (OSError, AttributeError):
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2, help="timed runs per figure, the best is kept (default: %(default)s)")
    parser.add_argument("--batches", default="1,4", help="batch sizes (default: %(default)s)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (about 30 s of compilation per batch size)")
    parser.add_argument("--no-malloc-tuning", action="store_true", help="skip the rows with glibc's malloc tuned")
    parser.add_argument("--backends", action="store_true", help="the backends side by side instead (bench_i3d.py --model c3d)")
    args, rest = parser.parse_known_args()
    if args.backends:
        sys.path.insert(0, str(ROOT / "bench"))
        from bench_i3d import main as backends

        sys.argv = [sys.argv[0], "--model", "c3d", *rest]
        return backends()
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    batches = [int(b) for b in args.batches.split(",")]
    t_start = time.perf_counter()
    torch.manual_seed(0)

    flops = 2 * macs_per_clip()
    assert counted_flops() == flops, "analytic and counted FLOPs disagree"
    eager = C3D().eval()
    channels_last = C3D().eval().to(memory_format=torch.channels_last_3d)
    channels_last.load_state_dict(eager.state_dict())

    rows: list[tuple[str, int, Timing]] = []
    peaks = {"matmul": (0.0, 0.0), "conv3d": (0.0, 0.0, "")}

    def measure_peaks() -> None:  # sampled between the rows and at the end: the best sample (by CPU time) counts
        peaks["matmul"] = max(peaks["matmul"], peak_matmul(args.repeat), key=lambda r: r[1])
        peaks["conv3d"] = max(peaks["conv3d"], peak_conv3d(args.repeat), key=lambda r: r[1])

    variants = [("eager", eager, False), ("eager, channels_last_3d", channels_last, True)]
    for batch in batches:
        for name, model, cl in variants:
            measure_peaks()
            rows.append((name, batch, time_model(model, batch, cl, args.repeat)))
        if args.compile:
            compiled = torch.compile(channels_last)
            t0 = time.perf_counter()
            time_model(compiled, batch, True, 1)  # compilation (in the warm-up run)
            rows.append((f"torch.compile, channels_last_3d (compiled in {time.perf_counter() - t0:.0f} s)", batch,
                         time_model(compiled, batch, True, args.repeat)))
    if not args.no_malloc_tuning and tune_glibc_malloc():
        for batch in batches:
            measure_peaks()
            rows.append(("eager, channels_last_3d, glibc malloc tuned", batch, time_model(channels_last, batch, True, args.repeat)))
    measure_peaks()
    best = max(peaks["matmul"][1], peaks["conv3d"][1])

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"C3D, fp32, {torch.get_num_threads()} threads ({os.cpu_count()} CPUs: {platform.processor() or platform.machine()}), "
          f"torch {torch.__version__}; best of {args.repeat} runs; load average at the end {load:.1f}")
    print(f"GFLOPs per 16x112x112 clip: {flops / 1e9:.2f} ({flops / 2e9:.2f} G multiply-adds; counted = analytic)")
    print(f"best fp32 (GFLOP/s, wall / CPU time): matmul 2048^3 {peaks['matmul'][0]:.1f} / {peaks['matmul'][1]:.1f}, "
          f"conv3b Conv3d ({peaks['conv3d'][2]}) {peaks['conv3d'][0]:.1f} / {peaks['conv3d'][1]:.1f}\n")
    print("| variant | batch | clips/s (wall) | ms/clip (wall) | GFLOP/s (wall) | GFLOP/s (CPU time) | of best fp32 (CPU time) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, batch, timing in rows:
        wall, cpu = timing.rates(flops / 1e9)
        print(f"| {name} | {batch} | {1 / timing.wall:.3f} | {1000 * timing.wall:.0f} | {wall:.1f} | {cpu:.1f} | {cpu / best:.2f} |")
    print(f"\n(total {time.perf_counter() - t_start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
