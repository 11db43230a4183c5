"""The canonical sum and softmax (HSER-6.5 .. HSER-6.7)."""
from __future__ import annotations

import numpy as np

from .cexp import EXP_FLUSH, canonical_exp

F32 = np.float32


def tree_sum(v: np.ndarray) -> np.ndarray:
    """Sum the last axis of binary32 v (..., n) by the canonical pairwise tree (HSER-6.5).

    Pad to the next power of two P >= max(n, 1) with -0.0 (the exact additive identity), then
    repeatedly replace the sequence by the sums of adjacent pairs: (v0+v1, v2+v3, ...), until one
    value is left. The empty sum (n = 0) is -0.0.
    """
    v = np.asarray(v, dtype=F32)
    n = v.shape[-1]
    p = 1 << (max(n, 1) - 1).bit_length()
    v = np.concatenate([v, np.full(v.shape[:-1] + (p - n,), F32(-0.0))], axis=-1)
    while v.shape[-1] > 1:
        v = v[..., 0::2] + v[..., 1::2]
    return v[..., 0]


def softmax(z: np.ndarray) -> np.ndarray:
    """Probabilities (B, n) binary32 from binary64 logits z (B, n), n >= 1 (HSER-6.6).

      m   = max_j z_j                                   (binary64, exact)
      d_j = z_j - m                                     (binary64)
      e_j = +0.0 if d_j < -87 else canonical_exp(binary32(d_j))
      S   = tree_sum(e)                                 (binary32, S >= 1)
      p_j = e_j / S                                     (binary32)
    """
    d = z - np.max(z, axis=1, keepdims=True)                      # (B, n) binary64, <= 0
    small = d < np.float64(EXP_FLUSH)
    t = np.where(small, 0.0, d).astype(F32)                       # round to binary32 (in range by construction)
    e = np.where(small, F32(0.0), canonical_exp(t))               # (B, n) binary32
    return e / tree_sum(e)[:, None]
