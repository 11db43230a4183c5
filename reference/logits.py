"""Exact router logits (HSER-3.1 .. HSER-3.4)."""
from __future__ import annotations

import numpy as np


def exact_dot(qx: np.ndarray, qw: np.ndarray) -> np.ndarray:
    """acc[i, j] = sum_k qx[i, k] * qw[j, k] exactly, as int64 (HSER-3.1, HSER-3.2).

    qx (T, d) and qw (n, d) are integer arrays; integer addition is associative, so every
    summation order gives these values.
    """
    return np.asarray(qx, dtype=np.int64) @ np.asarray(qw, dtype=np.int64).T            # (T, n) int64


def logits(acc: np.ndarray, sx: np.ndarray, sw: np.ndarray) -> np.ndarray:
    """z[i, j] = (float64(acc[i, j]) * sx[i]) * sw[j] in binary64 (HSER-3.3).

    float64(acc) is exact because |acc| < 2**53 (HSER-3.2). sx (T,) and sw (n,) come from
    quantize.dequant_scale. The result is finite for every finite binary32 input.
    """
    return (acc.astype(np.float64) * sx[:, None]) * sw[None, :]                       # (T, n) float64
