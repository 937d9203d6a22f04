"""This machine's CPU, read without PyTorch: its feature flags and model name (what precision and kernels are chosen
from at run time, :mod:`actionrec.models.backends`, and what a compiled network's record is keyed by)."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags: /proc/cpuinfo, else `lscpu`, else what PyTorch's cpuinfo reports (empty if none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Flags:"):
                return frozenset(line.split(":", 1)[1].split())
    except (OSError, subprocess.SubprocessError):
        pass
    return torch_flags()


def torch_flags() -> frozenset[str]:
    """The flags that matter here, as PyTorch's cpuinfo (cpuid) sees them."""
    checks = {"avx2": "_is_avx2_supported", "avx512f": "_is_avx512_supported", "avx512_bf16": "_is_avx512_bf16_supported",
              "amx_tile": "_is_amx_tile_supported"}
    import torch

    flags = {flag for flag, name in checks.items() if getattr(torch.cpu, name, lambda: False)()}
    if "amx_tile" in flags:  # every CPU with AMX tiles so far has AMX-BF16
        flags.add("amx_bf16")
    return frozenset(flags)


@functools.cache
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"
