"""Rotary position embedding, rotate-half convention (MODEL-2.4).

Head features m and m + d_head/2 form a pair (the Llama / GPT-NeoX "rotate half" layout, not
GPT-J's interleaved pairs (2m, 2m+1)). Pair m at position p turns by the angle p * w_m with
w_m = theta ** (-2m / d_head).
"""
from __future__ import annotations

import numpy as np


def rope_frequencies(d_head: int, theta: float) -> np.ndarray:
    """w_m = theta ** (-2m / d_head) for m = 0 .. d_head/2 - 1, binary64 (MODEL-2.4)."""
    m = np.arange(d_head // 2, dtype=np.float64)
    return np.float64(theta) ** (-2.0 * m / d_head)                      # (d_head/2,)


def rope_tables(n_pos: int, d_head: int, theta: float, dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of p * w_m for positions p = 0 .. n_pos-1, each (n_pos, d_head/2), in ``dtype``.

    Angles are formed in binary64 and rounded once to ``dtype``.
    """
    angles = np.arange(n_pos, dtype=np.float64)[:, None] * rope_frequencies(d_head, theta)[None, :]
    return np.cos(angles).astype(dtype), np.sin(angles).astype(dtype)


def apply_rope(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """Rotate x (..., T, d_head) by position (MODEL-2.4); cos, sin (T, d_head/2).

    out[m]          = x[m] cos(p w_m) - x[m + d_head/2] sin(p w_m)
    out[m + d/2]    = x[m] sin(p w_m) + x[m + d_head/2] cos(p w_m)
    """
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]                                # (..., T, d_head/2) each
    return np.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)
