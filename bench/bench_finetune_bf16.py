"""bf16 fine-tuning on the CPU: are its gradients right, and is it faster? Side by side in one process.

    python bench/bench_finetune_bf16.py [--rounds 8] [--batch 8] [--frames 16]

The default fine-tuning step (I3D's Mixed_5b, Mixed_5c and head from the activation at MaxPool3d_5a_2x2, the
pretrained weights, BatchNorm in eval mode) on the same random post-ReLU activations, fp32 and under CPU bf16
autocast, alternately; per round the relative error of each parameter's bf16 gradient against fp32's (max over the
parameters), and the median step time of each. Only meaningful on a CPU with native bf16 (avx512_bf16 / amx_bf16).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import actionrec  # noqa: E402
from actionrec.models.network import forward_output  # noqa: E402

CUT, TRAINED = "MaxPool3d_5a_2x2", ("Mixed_5b", "Mixed_5c", "head")


def step(model, x: torch.Tensor, y: torch.Tensor, bf16: bool) -> tuple[float, dict[str, torch.Tensor]]:
    """One forward and backward; (seconds, each trained parameter's gradient)."""
    model.zero_grad(set_to_none=True)
    start = time.perf_counter()
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with autocast:
        loss = F.cross_entropy(forward_output(model, x, "logits", start=CUT).float(), y)
    loss.backward()
    seconds = time.perf_counter() - start
    return seconds, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--frames", type=int, default=16)
    args = parser.parse_args()
    model = actionrec.load_model("i3d-kinetics400").trainable_copy()
    model.eval()
    for name, p in model.named_parameters():
        p.requires_grad_(name.split(".")[0] in TRAINED)
    torch.manual_seed(0)
    times: dict[bool, list[float]] = {False: [], True: []}
    errors, nonfinite = [], 0
    for _ in range(args.rounds):
        x = torch.relu(torch.randn(args.batch, 832, args.frames // 8, 7, 7)) * 2
        y = torch.randint(0, 400, (args.batch,))
        grads = {}
        for bf16 in (False, True):
            seconds, grads[bf16] = step(model, x, y, bf16)
            times[bf16].append(seconds)
        nonfinite += any(not torch.isfinite(g).all() for g in grads[True].values())
        errors.append(max(float((grads[True][n] - g).norm() / g.norm().clamp_min(1e-12)) for n, g in grads[False].items()))
    fp32, bf16 = statistics.median(times[False]), statistics.median(times[True])
    print(f"rounds {args.rounds}, batch {args.batch}, {args.frames} frames: bf16 gradients non-finite in {nonfinite}; "
          f"max relative error per round {[round(e, 4) for e in errors]}; step fp32 {fp32:.3f} s, bf16 {bf16:.3f} s, "
          f"bf16 {fp32 / bf16:.2f}x; load {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
