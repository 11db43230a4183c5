"""Symmetric absmax quantization of rows to exact integers (HSER-2.1 .. HSER-2.5).

The same function quantizes a token's hidden state and a router weight row.
"""
from __future__ import annotations

import numpy as np

F32 = np.float32


def quantize_rows(x: np.ndarray, limbs: int) -> tuple[np.ndarray, np.ndarray]:
    """Quantize each row of binary32 x (n, d) to integers Q (n, d) and return (Q, absmax (n,)).

    HSER-2.1  a = max_i |x_i|, exact.
    HSER-2.2  a row with a = 0 quantizes to all zeros.
    HSER-2.3  otherwise, in binary32: rows with a < 2**-64 are first scaled by 2**64 (exact);
              r = 127 / a (one division per row); y_i = x_i * r;
              Q_i = round_half_even(y_i * 2**(7 * (limbs - 1))); |Q_i| <= 127 * 128**(limbs-1).
    limbs is 1, 2 or 3 (hidden states; router rows 1 or 2, TIER-1.5): |Q| <= 127, 16256, 2080768.
    The integers are returned as int64; a kernel may split them into int8 limbs (HSER-2.4). The
    absmax returned is HSER-2.1's, before the scaling of step 1 (HSER-2.5 uses it).
    """
    x = np.asarray(x, dtype=F32)
    absmax = np.max(np.abs(x), axis=1) if x.shape[1] else np.zeros(x.shape[0], F32)   # (n,)
    f = np.where(absmax < F32(2.0 ** -64), F32(2.0 ** 64), F32(1.0))                    # step 1: (n,)
    x = x * f[:, None]                                                                   # (n, d), exact
    a = absmax * f                                                                       # (n,), exact
    r = F32(127.0) / np.where(a == 0, F32(1.0), a)                                      # step 2: (n,) binary32
    y = x * r[:, None]                                                                   # step 3: (n, d) binary32
    q = np.rint(y * F32(2.0 ** (7 * (limbs - 1))))                                       # exact scaling, then round
    q[absmax == 0] = 0
    return q.astype(np.int64), absmax.astype(F32)


def dequant_scale(absmax: np.ndarray, limbs: int) -> np.ndarray:
    """The binary64 factor that maps Q back to x's scale: a / (127 * 128**(limbs-1)) (HSER-3.3)."""
    return np.asarray(absmax, dtype=np.float64) / np.float64(127 * 128 ** (limbs - 1))


def split_limbs(q: np.ndarray, limbs: int) -> list[np.ndarray]:
    """Split Q into int8 limbs (HSER-2.4); for kernels and tests. Most significant limb first.

    Two limbs: hi = round_half_even(Q / 128), lo = Q - 128 hi, so Q = 128 hi + lo, |hi| <= 127,
    |lo| <= 64. Three limbs: the split applied again to hi: top = round_half_even(hi / 128),
    mid = hi - 128 top, so Q = 16384 top + 128 mid + lo, |top| <= 127, |mid|, |lo| <= 64
    (exhaustive over |Q| <= 2080768, certificate quantization_bounds).
    """
    if limbs == 1:
        return [q.astype(np.int8)]
    if limbs not in (2, 3):
        raise ValueError(f"limbs={limbs!r}: 1, 2 or 3")
    q = np.asarray(q, np.int64)
    hi = np.rint(q.astype(np.float64) / 128.0).astype(np.int64)      # Q / 128 is exact in binary64
    lo = q - 128 * hi
    if limbs == 2:
        return [hi.astype(np.int8), lo.astype(np.int8)]
    top = np.rint(hi.astype(np.float64) / 128.0).astype(np.int64)
    mid = hi - 128 * top
    return [top.astype(np.int8), mid.astype(np.int8), lo.astype(np.int8)]
