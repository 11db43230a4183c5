"""Exact router logits (HSER-3.1 .. HSER-3.4)."""
from __future__ import annotations

import numpy as np


def exact_dot(qx: np.ndarray, qw: np.ndarray) -> np.ndarray:
    """acc[i, j] = sum_k qx[i, k] * qw[j, k] exactly, as int64 (HSER-3.1, HSER-3.2).

    qx (T, d) and qw (n, d) are integer arrays; integer addition is associative, so every
    summation order gives these values. |acc| <= d * 127 * 128**(Lx-1) * 127 * 128**(Lw-1) < 2**53
    for d <= 2**17 and the limb counts TIER-1.5 allows (3 + 2 at most: 2**51.98).
    """
    return np.asarray(qx, dtype=np.int64) @ np.asarray(qw, dtype=np.int64).T            # (T, n) int64


def exact_dot_limbs(qx: np.ndarray, qw: np.ndarray, hidden_limbs: int, weight_limbs: int) -> np.ndarray:
    """exact_dot computed the way an int8 kernel does (HSER-2.4, HSER-3.2): split both sides into int8
    limbs, one int32 sum per pair of limbs, combined in int64 with weights 128**(i + j) (i, j the
    limbs' positions from the least significant). With 3 + 2 limbs:
    acc = 2**21 S_tH + 2**14 (S_tL + S_mH) + 2**7 (S_mL + S_lH) + S_lL (six limb sums).
    Equal to exact_dot; kept for tests and as the executable form of the combine.
    """
    from .quantize import split_limbs

    xs = split_limbs(np.asarray(qx, np.int64), hidden_limbs)[::-1]      # least significant first
    ws = split_limbs(np.asarray(qw, np.int64), weight_limbs)[::-1]
    acc = np.zeros((np.shape(qx)[0], np.shape(qw)[0]), np.int64)
    for i, a in enumerate(xs):
        for j, b in enumerate(ws):
            s = a.astype(np.int32) @ b.astype(np.int32).T                       # int32 limb sum: |S| < 2**31
            acc += np.int64(128 ** (i + j)) * s.astype(np.int64)
    return acc


def logits(acc: np.ndarray, sx: np.ndarray, sw: np.ndarray) -> np.ndarray:
    """z[i, j] = (float64(acc[i, j]) * sx[i]) * sw[j] in binary64 (HSER-3.3).

    float64(acc) is exact because |acc| < 2**53 (HSER-3.2). sx (T,) and sw (n,) come from
    quantize.dequant_scale. The result is finite for every finite binary32 input.
    """
    return (acc.astype(np.float64) * sx[:, None]) * sw[None, :]                       # (T, n) float64
