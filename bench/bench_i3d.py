"""Inference backends side by side in one run: I3D (16x224x224) or C3D (16x112x112) clips/s at batch 1 and 4.

    python bench/bench_i3d.py [--model i3d|c3d] [--quick] [--compile] [--busy 60]

Rows: eager PyTorch; the engine's PyTorch path (oneDNN-packed convolutions + channels_last, models/accel.py "auto");
PyTorch bf16 autocast (channels_last); OpenVINO's CPU plugin in f32, bf16 and int8 (through the engine: torch.export ->
OpenVINO IR; int8: NNCF-quantized from the shipped activation ranges, or ranges measured on the real clips for a
network without them); ONNX Runtime fp32 (torch.onnx.export dynamo=True, dynamic batch); torch.compile with inductor freezing
(--compile: minutes of compile time). bf16 rows run only where the CPU has native bf16 (elsewhere it is emulated and
100-300x slower). The row the engine takes by default is marked.

Every number comes from this one process: the rows and a conv3d probe (256->256 channels, 3x3x3, 8x28x28, fp32 and,
where native, bf16) are timed round-robin in a rotating order and the medians are reported, so a noisy machine slows
them alike; "of probe" is the row's GFLOP/s over the fp32 probe's. Setup: the first call of a fresh engine, cold (an
empty $ACTIONREC_HOME/compiled: export, conversion, compile) and warm (compiling the saved IR).
Logit effects are against eager fp32 on the central 16 frames of the clips in ../shared/realclips.

--busy S: then again at batch 1 while a competing process (a 2-thread numpy matmul loop, at most S seconds) shares
the cores, with 1-thread variants, to choose thread settings that degrade gracefully.
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="bench_i3d_inductor_"))  # cold compiles

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import actionrec  # noqa: E402
from actionrec.engine import Engine  # noqa: E402
from actionrec.models.backends import cpu_model, describe, native_bf16  # noqa: E402

CLIPS = Path(__file__).resolve().parents[2] / "shared" / "realclips"
MODELS = {"i3d": ("i3d-kinetics400", (3, 16, 224, 224)), "c3d": ("c3d-sports1m", (3, 16, 112, 112))}
Forward = Callable[[torch.Tensor], torch.Tensor]
BUSY_LOOP = """
import os, sys, time
import numpy as np
a = np.random.rand(1024, 1024)
end = time.time() + float(sys.argv[1])
while time.time() < end:
    a @ a
"""


def load_clip(path: Path, spec, n: int = 16) -> torch.Tensor:
    """The central `n` frames at the spec's rate, preprocessed as predict does -> (3, n, crop, crop)."""
    from actionrec.data.video import read_clip

    return actionrec.preprocess(read_clip(path, n=n, short_side=spec.resize, target_fps=spec.fps).frames, spec)


def seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def rounds(jobs: dict[str, Callable[[], object]], n: int) -> dict[str, float]:
    """Median seconds of each job, timed once per round, the order rotating from round to round."""
    names, times = list(jobs), {k: [] for k in jobs}
    for r in range(n):
        for name in names[r % len(names):] + names[: r % len(names)]:
            times[name].append(seconds(jobs[name]))
    return {k: statistics.median(v) for k, v in times.items()}


class Row:
    """One variant: its forward (batch -> logits), setup seconds (cold, warm) and a note."""

    def __init__(self, label: str, forward: Forward, cold: float, warm: float | None = None, note: str = ""):
        self.label, self.forward, self.cold, self.warm, self.note = label, forward, cold, warm, note


def engine_row(label: str, model: nn.Module, x: torch.Tensor, home: Path, **options) -> Row:
    """A row run by the engine: setup = the first call of a fresh engine, cold (empty home) then warm."""
    os.environ["ACTIONREC_HOME"] = str(home)
    cold_engine = Engine(model, **options)
    cold = seconds(lambda: cold_engine.forward(x, "logits"))
    engine = Engine(model, **options)
    warm = seconds(lambda: engine.forward(x, "logits"))
    note = "" if engine.backend == options.get("backend", engine.backend) else f"fell back to {engine.backend}"
    return Row(label, lambda b: engine.forward(b, "logits"), cold, warm, note)


def int8_row(model: nn.Module, x: torch.Tensor, home: Path) -> Row | None:
    """OpenVINO int8 (NNCF) through the engine, from the shipped ranges; a network with none (C3D here, random
    weights) gets ranges measured on the real clips first, as `actionrec weights calibrate` would."""
    from actionrec.models import int8

    if not int8.available():
        return None
    os.environ["ACTIONREC_HOME"] = str(home)
    try:
        int8.ranges_for(model.info)
    except actionrec.ActionrecError:
        from actionrec.apps.quantize import calibration_clips
        from actionrec.models.backends import HEAD, OpenVINONet
        import openvino

        clips = calibration_clips(model, sorted(p for p in CLIPS.iterdir() if p.suffix in (".avi", ".mp4")))
        ir = openvino.Core().read_model(OpenVINONet(model, "fp32").ir_path(HEAD, tuple(clips[0].shape[1:])))
        ir.reshape([1, *clips[0].shape[1:]])
        int8.save_ranges(int8.measured_path(model.info.spec.name), int8.measure_ranges(ir, clips))
    return engine_row("OpenVINO int8 (NNCF)", model, x, home, backend="openvino", precision="int8")


def onnxruntime_row(model: nn.Module, x: torch.Tensor, threads: int | None = None) -> Row | None:
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    start = time.perf_counter()
    path = Path(tempfile.mkdtemp(prefix="bench_onnx_")) / "model.onnx"
    batch = torch.export.Dim("batch", min=1, max=64)
    try:
        with torch.no_grad():
            torch.onnx.export(model, (torch.cat([x, x]),), str(path), dynamo=True, input_names=["x"],
                              dynamic_shapes=({0: batch},), verbose=False)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    finally:
        shutil.rmtree(path.parent, ignore_errors=True)  # the session holds the model
    run = lambda b: torch.from_numpy(session.run(None, {"x": b.contiguous().numpy()})[0])  # noqa: E731
    run(x)
    return Row(f"ONNX Runtime {ort.__version__} fp32{f', {threads} thread' if threads else ''}", run, time.perf_counter() - start)


def compile_row(model: nn.Module, x: torch.Tensor) -> Row:
    from actionrec.models.accel import optimize_for_inference

    start = time.perf_counter()
    compiled = optimize_for_inference(model, "compile", example=x)
    return Row("torch.compile (inductor freezing)", lambda b: compiled(b), time.perf_counter() - start,
               note="compiles again for each batch size")


def build_rows(model: nn.Module, x: torch.Tensor, args, home: Path) -> list[Row]:
    bf16 = native_bf16()
    rows = [Row("eager PyTorch fp32", lambda b: model(b), 0.0),
            engine_row("PyTorch packed oneDNN + channels_last fp32", model, x, home / "torch", backend="torch", precision="fp32")]
    if bf16:
        rows.append(engine_row("PyTorch bf16 autocast + channels_last", model, x, home / "torch", backend="torch", precision="bf16"))
    rows.append(engine_row("OpenVINO f32", model, x, home / "ov-f32", backend="openvino", precision="fp32"))
    if bf16:
        rows.append(engine_row("OpenVINO bf16", model, x, home / "ov-bf16", backend="openvino", precision="bf16"))
    int8 = int8_row(model, x, home / "ov-int8")
    rows += [int8] if int8 else []
    ort_row = None if args.quick else onnxruntime_row(model, x)
    rows += [ort_row] if ort_row else []
    if args.compile:
        rows.append(compile_row(model, x))
    return rows


def probes() -> tuple[dict[str, Callable[[], object]], dict[str, float]]:
    """Compute-bound conv3d probes (fp32; bf16 where native): jobs and their GFLOP."""
    conv = nn.Conv3d(256, 256, 3, padding=1, bias=False).eval().to(memory_format=torch.channels_last_3d)
    y = torch.randn(1, 256, 8, 28, 28).to(memory_format=torch.channels_last_3d)
    gflop = 2 * 256 * 256 * 27 * 8 * 28 * 28 / 1e9
    jobs = {"probe fp32": lambda: conv(y)}
    if native_bf16():
        conv16, y16 = copy.deepcopy(conv).to(torch.bfloat16), y.to(torch.bfloat16)
        jobs["probe bf16"] = lambda: conv16(y16)
    return jobs, {k: gflop for k in jobs}


def measure(rows: list[Row], batches: tuple[int, ...], n_rounds: int, shape: tuple[int, ...]) -> dict[int, dict[str, float]]:
    """Median seconds per batch of each row and probe, per batch size."""
    probe_jobs, _ = probes()
    out = {}
    with torch.inference_mode():
        for batch in batches:
            xb = torch.randn(batch, *shape)
            jobs = {**probe_jobs, **{row.label: (lambda r=row: r.forward(xb)) for row in rows}}
            for job in jobs.values():  # warm-up: the first call at a new shape
                job()
            out[batch] = rounds(jobs, n_rounds)
    return out


def logit_effects(rows: list[Row], model: nn.Module) -> dict[str, str]:
    """Max |logit - eager fp32 logit| and top-1 agreement on the real clips."""
    clips = [p for p in sorted(CLIPS.glob("*")) if p.suffix in (".mp4", ".avi", ".gif")]
    if not clips:
        return {}
    x = torch.stack([load_clip(p, model.info.spec) for p in clips])
    with torch.inference_mode():
        ref = model(x)
        effects = {}
        for row in rows:
            out = row.forward(x).float()
            same = int((out.argmax(-1) == ref.argmax(-1)).sum())
            effects[row.label] = f"{float((out - ref).abs().max()):.1e}, top-1 {same}/{len(clips)}"
    return effects


def busy_process(seconds_: float) -> subprocess.Popen:
    """A competing 2-thread numpy matmul loop that ends by itself after `seconds_`."""
    env = {**os.environ, "OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    return subprocess.Popen([sys.executable, "-c", BUSY_LOOP, str(seconds_)], env=env)


def under_load(model: nn.Module, x: torch.Tensor, rows: list[Row], quiet: dict[str, float], args, home: Path) -> None:
    """Batch 1 again with a competing process, plus 1-thread variants; prints a table."""
    extra = [engine_row("OpenVINO f32, 1 thread", model, x, home / "ov-f32", backend="openvino", precision="fp32", threads=1)]
    if native_bf16():
        extra.append(engine_row("OpenVINO bf16, 1 thread", model, x, home / "ov-bf16", backend="openvino", precision="bf16", threads=1))
    threads = torch.get_num_threads()

    def one_thread_torch(b: torch.Tensor, forward=rows[1].forward) -> torch.Tensor:
        torch.set_num_threads(1)
        try:
            return forward(b)
        finally:
            torch.set_num_threads(threads)

    extra.append(Row("PyTorch packed fp32, 1 thread", one_thread_torch, 0.0))
    quiet = {**quiet, **measure(extra, (1,), 3, tuple(x.shape[1:]))[1]}
    busy = busy_process(args.busy)
    try:
        time.sleep(2)
        loaded = measure(rows + extra, (1,), 3, tuple(x.shape[1:]))[1]
    finally:
        busy.terminate()
        busy.wait()
    print(f"\n**Under load** (batch 1, a 2-thread numpy matmul loop competing; load average {os.getloadavg()[0]:.1f} "
          "after):\n\n| variant | quiet clips/s | loaded clips/s | kept |\n|---|---:|---:|---:|")
    for row in rows + extra:
        q, lo = 1 / quiet[row.label], 1 / loaded[row.label]
        print(f"| {row.label} | {q:.2f} | {lo:.2f} | {lo / q:.2f} |")


def load(name: str) -> tuple[nn.Module, str]:
    """The pretrained model, or the same network with random weights if they are not fetched (same speed)."""
    from actionrec.models.info import ModelInfo
    from actionrec.models.pretrained import build_model, get_spec, weights_status

    spec = get_spec(name)
    status = weights_status(spec)
    if status == "cached":
        return actionrec.load_model(name, fast=False), f"weights {name}"  # the eager network: each row makes its own path
    info = ModelInfo(name=name, spec=spec, categories=spec.categories, weights_sha256="", predict_frames=spec.predict_frames,
                     identity=f"random:{name}")
    return build_model(info, None), f"random weights: {name} is {status.split(':')[0]} here, the speed is the same"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=MODELS, default="i3d")
    parser.add_argument("--quick", action="store_true", help="batch 1 only, no ONNX Runtime, 3 rounds")
    parser.add_argument("--compile", action="store_true", help="add torch.compile (minutes of compile time)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--busy", type=float, default=0, help="also measure under a competing load for up to S seconds")
    args = parser.parse_args()
    t_start, load_start = time.perf_counter(), os.getloadavg()
    torch.manual_seed(0)
    name, shape = MODELS[args.model]
    model, weights_note = load(name)
    x = torch.randn(1, *shape)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(x)
    gflop = counter.get_total_flops() / 1e9
    home = Path(tempfile.mkdtemp(prefix="bench_i3d_home_"))
    weights_home = os.environ.get("ACTIONREC_HOME")
    rows = build_rows(model, x, args, home)
    if weights_home is not None:
        os.environ["ACTIONREC_HOME"] = weights_home
    batches = (1,) if args.quick else (1, 4)
    med = measure(rows, batches, 3 if args.quick else args.rounds, shape)
    effects = logit_effects(rows, model)
    default = Engine(model).describe()

    print(f"# {args.model.upper()} inference backends, {'x'.join(map(str, shape[1:]))} clips ({gflop:.1f} GFLOP each, {weights_note})\n")
    print(f"{cpu_model()}, {os.cpu_count()} cores, flags {' '.join(default['cpu_flags'])}; torch {torch.__version__}, "
          f"OpenVINO {default['openvino'] or describe('openvino', 'fp32')['openvino']}; {torch.get_num_threads()} threads; "
          f"load average {load_start[0]:.2f} {load_start[1]:.2f} at start, {os.getloadavg()[0]:.2f} at end; "
          f"{time.strftime('%Y-%m-%d %H:%M')}.\n")
    probe_gf = {k: v / med[1][k] for k, v in probes()[1].items()}
    print("Probes (conv3d 256->256 3x3x3 on 8x28x28, channels_last): "
          + ", ".join(f"{k.split()[1]} {v:.0f} GFLOP/s" for k, v in probe_gf.items()) + ".\n")
    engine_label = {("openvino", "fp32"): "OpenVINO f32", ("openvino", "bf16"): "OpenVINO bf16",
                    ("torch", "fp32"): "PyTorch packed oneDNN + channels_last fp32",
                    ("torch", "bf16"): "PyTorch bf16 autocast + channels_last"}[(default["backend"], default["precision"])]
    head = ["variant", "setup s cold / warm"] + [c for b in batches for c in (f"b{b} clips/s", f"b{b} of fp32 probe")]
    print("| " + " | ".join(head + ["logits vs eager (max abs diff, top-1 same)"]) + " |\n" + "|---" * (len(head) + 1) + "|")
    for row in rows:
        label = f"**{row.label}** (engine default)" if row.label == engine_label else row.label
        setup = f"{row.cold:.1f}" + (f" / {row.warm:.1f}" if row.warm is not None else "")
        cells = [label + (f" ({row.note})" if row.note else ""), setup]
        for b in batches:
            rate = b / med[b][row.label]
            cells += [f"{rate:.2f}", f"{rate * gflop / probe_gf['probe fp32']:.2f}"]
        print("| " + " | ".join(cells + [effects.get(row.label, "-")]) + " |")
    sizes = {d.name: sum(f.stat().st_size for f in (d / "compiled").rglob("*") if f.is_file()) / 2**20
             for d in sorted(home.iterdir()) if (d / "compiled").is_dir()}
    print("\nOn disk after the setup ($ACTIONREC_HOME/compiled: the saved IR): "
          + ", ".join(f"{k} {v:.0f} MiB" for k, v in sizes.items()) + ".")
    if not native_bf16():
        print("\nNo bf16 rows: this CPU has no native bf16 (avx512_bf16 / amx_bf16), where it is emulated and 100-300x slower.")
    if args.busy:
        under_load(model, x, rows, med[1], args, home)
    shutil.rmtree(home, ignore_errors=True)
    if os.environ["TORCHINDUCTOR_CACHE_DIR"].startswith(tempfile.gettempdir() + "/bench_i3d_inductor_"):
        shutil.rmtree(os.environ["TORCHINDUCTOR_CACHE_DIR"], ignore_errors=True)
    print(f"\n(total bench time {time.perf_counter() - t_start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
