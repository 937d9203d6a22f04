"""I3D inference throughput on this CPU for each `actionrec.accel` mode, against this machine's fp32 peak.

    ACTIONREC_HOME=... python bench/bench_i3d.py [--quick] [--no-compile]

Prints a Markdown table. Every number comes from this one run: variants (and the matmul / conv3d peak probes) are
timed round-robin, in a rotating order, and the medians are reported, so a noisy machine slows them alike; the best
(minimum) time is shown in brackets. GFLOPs are counted with torch.utils.flop_counter.FlopCounterMode (a multiply-add
is 2 FLOPs). Logit effects are on the central 16 frames (25 fps, short side 256, centre crop 224) of the three clips
in ../shared/realclips. Compile times are cold (a fresh inductor cache) unless marked warm. --quick: batch 1 only, no
compile, no channels_last-only row, fewer rounds (1-2 minutes).
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="bench_i3d_inductor_"))  # cold compiles

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import actionrec  # noqa: E402
from actionrec.models.accel import AUTO, optimize_for_inference  # noqa: E402

CLIPS = Path(__file__).resolve().parents[2] / "shared" / "realclips"
SHAPE = (3, 16, 224, 224)
AUTO_LABEL = "packed+channels_last (= auto)"


def load_clip(path: Path, spec, n: int = 16) -> torch.Tensor:
    """The central `n` frames at spec.fps, preprocessed (short side 256, centre crop 224) -> (3, n, 224, 224)."""
    import cv2

    if path.suffix == ".gif":
        from PIL import Image, ImageSequence

        gif = Image.open(path)
        fps = 1000.0 / (gif.info.get("duration") or 40)
        frames = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(gif)]
    else:
        cap = cv2.VideoCapture(str(path))
        fps, frames = cap.get(cv2.CAP_PROP_FPS) or spec.fps, []
        while (frame := cap.read()[1]) is not None:
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    centre = len(frames) / fps / 2
    index = np.clip(((centre + (np.arange(n) - n / 2) / spec.fps) * fps).astype(int), 0, len(frames) - 1)
    return actionrec.preprocess(np.stack([frames[i] for i in index]), spec)


def bf16_emulated(model: nn.Module) -> nn.Module:
    """fp32 model rounding what autocast(bfloat16) rounds: conv/linear weights, inputs and outputs, BatchNorm outputs."""
    model = copy.deepcopy(model)
    bf = lambda t: t.bfloat16().float()  # noqa: E731
    for mod in model.modules():
        if isinstance(mod, (nn.Conv3d, nn.Linear)):
            for p in (mod.weight, mod.bias):
                if p is not None:
                    p.data = bf(p.data)
            mod.register_forward_pre_hook(lambda _, args: (bf(args[0]),))
        if isinstance(mod, (nn.Conv3d, nn.Linear, nn.BatchNorm3d)):
            mod.register_forward_hook(lambda _, __, out: bf(out))
    return model


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def rounds(jobs: dict[str, callable], n: int) -> dict[str, list[float]]:
    """Time each job once per round, the order rotating from round to round."""
    names, times = list(jobs), {k: [] for k in jobs}
    for r in range(n):
        for name in names[r % len(names):] + names[: r % len(names)]:
            times[name].append(seconds(jobs[name]))
    return times


def cpu_line() -> str:
    flags = set()
    model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
        elif line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
    have = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    return (f"CPU {model}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads, "
            f"flags: {' '.join(have) or 'none of avx2/avx512/amx'}; oneDNN bf16: {torch.ops.mkldnn._is_mkldnn_bf16_supported()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="batch 1 only, no compile or channels_last-only row, 3 rounds (1-2 minutes)")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile (minutes of compile time)")
    args = parser.parse_args()
    quick, do_compile = args.quick, not (args.quick or args.no_compile)
    t_start, load_start = time.perf_counter(), os.getloadavg()[0]
    torch.manual_seed(0)

    model = actionrec.load_model("i3d-kinetics400")
    x1, x4 = torch.randn(1, *SHAPE), torch.randn(4, *SHAPE)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(x1)
    gflop = counter.get_total_flops() / 1e9
    clips = {p.name: load_clip(p, model.info.spec)[None] for p in sorted(CLIPS.glob("*")) if p.suffix in (".mp4", ".avi", ".gif")}

    # Variants: (label, accel mode). Setup = optimize_for_inference(..., example) incl. the first call (compile, packing).
    modes = [("eager", "eager"), ("channels_last_3d", "channels_last"), ("fused+channels_last", "fused+channels_last"),
             (AUTO_LABEL, AUTO)]
    if quick:
        del modes[1]
    if do_compile:
        modes.append(("compile (inductor freezing)", "compile"))
    setup, built = {}, {}
    for label, mode in modes:
        start = time.perf_counter()
        built[label] = optimize_for_inference(model, mode, example=x1)
        setup[label] = time.perf_counter() - start

    # Effect on the real clips' logits, against eager fp32 (these runs also warm every variant up at batch 1).
    effects = {}
    with torch.inference_mode():
        ref = {k: model(c) for k, c in clips.items()}
        emulated = {"bf16 autocast": bf16_emulated(model), "bf16 + fused+channels_last": bf16_emulated(optimize_for_inference(model, "fused"))}
        for label, m in {**built, **emulated}.items():
            out = {k: m(c) for k, c in clips.items()}
            diff = max(float((out[k] - ref[k]).abs().max()) for k in clips)
            same = sum(int(out[k].argmax()) == int(ref[k].argmax()) for k in clips)
            effects[label] = f"{diff:.1e} / {same}/{len(clips)}"
    top1 = {k: model.info.categories[int(r.argmax())] for k, r in ref.items()}

    # Peak probes: a 2048^3 fp32 matmul (x3) and a compute-bound conv3d 256->256 3x3x3 on 8x28x28, both layouts.
    a = torch.randn(2048, 2048)
    conv = nn.Conv3d(256, 256, 3, padding=1, bias=False).eval()
    y = torch.randn(1, 256, 8, 28, 28)
    conv_cl, y_cl = copy.deepcopy(conv).to(memory_format=torch.channels_last_3d), y.to(memory_format=torch.channels_last_3d)
    peak_flop = {"matmul 2048 fp32 (x3)": 3 * 2 * 2048**3, "conv3d 256ch 3x3x3 8x28x28": 2 * 256 * 256 * 27 * 8 * 28 * 28}
    peak_flop["conv3d (channels_last)"] = peak_flop["conv3d 256ch 3x3x3 8x28x28"]
    probes = {"matmul 2048 fp32 (x3)": lambda: [a @ a for _ in range(3)], "conv3d 256ch 3x3x3 8x28x28": lambda: conv(y),
              "conv3d (channels_last)": lambda: conv_cl(y_cl)}

    times: dict[int, dict[str, list[float]]] = {}
    with torch.inference_mode():
        probes["matmul 2048 fp32 (x3)"](), probes["conv3d 256ch 3x3x3 8x28x28"](), probes["conv3d (channels_last)"]()
        jobs = {**probes, **{label: (lambda m=m: m(x1)) for label, m in built.items()}}
        times[1] = rounds(jobs, 3 if quick else 4)
        if not quick:
            if do_compile:  # a new shape compiles again; reset so that batch 4 gets its own static graph
                torch._dynamo.reset()
                start = time.perf_counter()
                built["compile (inductor freezing)"] = optimize_for_inference(model, "compile", example=x4)
                setup["compile b4"] = time.perf_counter() - start
            jobs = {**probes, **{label: (lambda m=m: m(x4)) for label, m in built.items()}}
            times[4] = rounds(jobs, 3)  # the first call at a new shape (oneDNN primitives, packing) is one of 3: medians
        if do_compile:  # the same graph again in a fresh dynamo: what a second CLI run pays
            torch._dynamo.reset()
            setup["compile warm"] = seconds(lambda: optimize_for_inference(model, "compile", example=x1))

        # bf16 autocast, measured on the real network at a small size (the slow path's GFLOP/s barely depends on it).
        small = torch.randn(1, 3, 16, *(2 * [48 if quick else 64]))
        with FlopCounterMode(display=False) as counter:
            model(small)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16_gflops = counter.get_total_flops() / 1e9 / seconds(lambda: model(small))

    med = {b: {k: statistics.median(v) for k, v in t.items()} for b, t in times.items()}
    best_t = {b: {k: min(v) for k, v in t.items()} for b, t in times.items()}
    peaks = {k: peak_flop[k] / med[1][k] / 1e9 for k in probes}
    best_fp32 = max(peaks.values())

    print(f"# I3D (Kinetics-400) inference, {SHAPE[1]}x{SHAPE[2]}x{SHAPE[3]} clips\n")
    print(cpu_line() + f"; load average {load_start:.1f} at start, {os.getloadavg()[0]:.1f} at end.\n")
    print(f"GFLOPs per clip (FlopCounterMode, multiply-add = 2 FLOPs): **{gflop:.1f}** ({gflop / 2:.1f} GMACs).\n")
    print("| fp32 peak probe | GFLOP/s (median) | best |\n|---|---:|---:|")
    for k in probes:
        print(f"| {k} | {peaks[k]:.1f} | {peak_flop[k] / best_t[1][k] / 1e9:.1f} |")
    print(f"\nBest fp32 (higher median): **{best_fp32:.1f} GFLOP/s**. Fractions below: median over median, "
          "in brackets best-of over best-of (closer to an idle machine).\n")

    best_peak = max(peak_flop[k] / best_t[1][k] / 1e9 for k in probes)
    head = ["variant", "setup s (1st call incl.)"]
    for b in times:
        head += [f"b{b} clips/s (best)", f"b{b} GFLOP/s", f"b{b} of best fp32 (best-of)", f"b{b} vs eager"]
    print("| " + " | ".join(head + ["max abs logit diff / top-1 same (3 clips)"]) + " |")
    print("|---" * (len(head) + 1) + "|")
    for label in built:
        row = [label, f"{setup[label]:.1f}"]
        for b in times:
            rate, best_rate = b / med[b][label], b / best_t[b][label]
            row += [f"{rate:.2f} ({best_rate:.2f})", f"{gflop * rate:.1f}",
                    f"{gflop * rate / best_fp32:.2f} ({gflop * best_rate / best_peak:.2f})", f"{med[b]['eager'] / med[b][label]:.2f}x"]
        print("| " + " | ".join(row + [effects[label]]) + " |")
    for label in emulated:  # bf16 rows: throughput from the small-input measurement, logits emulated
        rate = bf16_gflops / gflop
        row = [label, "-"]
        for b in times:
            row += [f"{rate:.4f} (est.)", f"{bf16_gflops:.2f}", f"{bf16_gflops / best_fp32:.3f}", f"{med[b]['eager'] / b * rate:.3f}x"]
        print("| " + " | ".join(row + [effects[label] + " (emulated)"]) + " |")
    print(f"\nReference top-1 (eager fp32): {', '.join(f'{k}: {v}' for k, v in top1.items())}.")
    print(f"bf16: autocast measured on the real network at 16x{small.shape[-1]}x{small.shape[-1]}: {bf16_gflops:.2f} GFLOP/s "
          f"({best_fp32 / bf16_gflops:.0f}x below the fp32 peak: no native bf16 here, oneDNN refuses bf16 and ATen's "
          "fallback runs); its logit effect is emulated in fp32 (bf16 rounding of conv/linear weights, inputs and "
          "outputs, BatchNorm outputs).")
    if do_compile:
        label = "compile (inductor freezing)"
        print(f"torch.compile: cold compile + 1st call {setup[label]:.0f} s at batch 1, {setup['compile b4']:.0f} s at batch 4 "
              f"(each new input shape compiles again), {setup['compile warm']:.0f} s with a warm inductor cache.")
        for other in ("eager", AUTO_LABEL):
            for b in times:
                gain = med[b][other] / b - med[b][label] / b  # seconds saved per clip
                extra = setup[label] - setup[other]
                pays = f"after ~{extra / gain:.0f} clips" if gain > 0 else "never (not faster)"
                print(f"- compile vs {other}, batch {b}: {gain * 1000:+.0f} ms/clip, pays off {pays}.")
    print(f"\n(total bench time {time.perf_counter() - t_start:.0f} s)")
    if os.environ["TORCHINDUCTOR_CACHE_DIR"].startswith(tempfile.gettempdir() + "/bench_i3d_inductor_"):
        shutil.rmtree(os.environ["TORCHINDUCTOR_CACHE_DIR"], ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
