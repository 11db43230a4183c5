"""Symmetric absmax quantization of rows to exact integers, on torch tensors (HSER-2.1 .. HSER-2.6).

Every step is one correctly rounded binary32 (or binary64) operation that torch performs
elementwise without fusing, on the CPU and on CUDA. Divisions always take a tensor divisor on the
same device: on CUDA, torch turns division by a CPU scalar into a multiplication by its reciprocal,
which is not the correctly rounded quotient.
"""
from __future__ import annotations

import torch


def quant_max(limbs: int) -> int:
    """127 * 128**(limbs-1): the largest |Q| of a quantized row (HSER-2.3)."""
    return 127 * 128 ** (limbs - 1)


def quantize_rows(x: torch.Tensor, limbs: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantize each row of binary32 x (n, d) to integers Q (n, d) int32 and return (Q, absmax (n,)).
    ``limbs``: 1, 2 or 3 (|Q| <= 127, 16256, 2080768; y * 2**14 is exact and Q < 2**24 is an exact
    binary32 integer, so torch.round needs no wider type).

    HSER-2.1  a = max_i |x_i| (exact: it is one of the magnitudes).
    HSER-2.2  a row with a = 0 quantizes to zeros.
    HSER-2.3  rows with a < 2**-64 are scaled by 2**64 first (exact); r = 127 / a, one binary32
              division per row; y_i = x_i * r; Q_i = round_half_even(y_i * 2**(7 * (limbs - 1))).
    The absmax returned is HSER-2.1's (unscaled), which HSER-2.5 uses.
    """
    a = x.abs().amax(dim=1) if x.shape[1] else x.new_zeros(x.shape[0])          # (n,) float32
    f = torch.where(a < 2.0 ** -64, torch.full_like(a, 2.0 ** 64), torch.ones_like(a))   # step 1: (n,)
    xs = x * f[:, None]                                                           # (n, d) exact
    a_s = a * f                                                                   # (n,) exact
    r = torch.full_like(a, 127.0) / torch.where(a == 0, torch.ones_like(a), a_s)  # step 2: tensor divisor
    y = xs * r[:, None]                                                           # step 3: (n, d) one rounding
    q = torch.round(y * float(2 ** (7 * (limbs - 1))))                            # exact scaling; half to even
    return q.to(torch.int32), a


def dequant_scale(absmax: torch.Tensor, limbs: int) -> torch.Tensor:
    """scale = binary64(a) / (127 * 128**(limbs-1)), one correctly rounded binary64 division (HSER-2.5)."""
    a = absmax.to(torch.float64)
    return a / torch.full_like(a, float(quant_max(limbs)))


def split_limbs(q: torch.Tensor, limbs: int) -> tuple[torch.Tensor, ...]:
    """int8 limbs of Q, most significant first (HSER-2.4): (Q,) for one limb; (hi, lo) with
    Q = 128 * hi + lo, |lo| <= 64 for two; (top, mid, lo) with Q = 16384 * top + 128 * mid + lo,
    |mid|, |lo| <= 64 for three (the two-limb split applied again to hi)."""
    if limbs == 1:
        return (q.to(torch.int8),)
    if limbs not in (2, 3):
        raise ValueError(f"limbs={limbs!r}: 1, 2 or 3")
    hi = torch.round(q.to(torch.float32) * (1.0 / 128.0))        # exact: |Q| < 2**21 < 2**24, a power-of-two factor
    lo = q - 128 * hi.to(q.dtype)
    if limbs == 2:
        return hi.to(torch.int8), lo.to(torch.int8)
    top = torch.round(hi * (1.0 / 128.0))                        # exact: |hi| <= 16256; half to even
    mid = hi - 128.0 * top                                       # exact integers below 2**24
    return top.to(torch.int8), mid.to(torch.int8), lo.to(torch.int8)
