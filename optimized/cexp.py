"""The canonical exponential on torch tensors (HSER-6.1 .. HSER-6.3).

Each line is one eager torch elementwise operation, so each is one correctly rounded binary32
operation: eager kernels never fuse a multiplication with the following addition (no FMA), and no
library ``exp`` is called. The constants are built from the bit patterns the spec lists.
"""
from __future__ import annotations

import struct

import torch

from lite_llm.spec.errors import NonFiniteError


def f32_from_bits(bits: int) -> float:
    """The binary32 value with these bits, as a Python float (exact)."""
    return struct.unpack("<f", struct.pack("<I", bits))[0]


EXP_FLUSH = -87.0                        # HSER-6.1: below this the result is +0.0
LOG2E = f32_from_bits(0x3FB8AA3B)        # HSER-6.3: nearest binary32 to log2(e)
LN2_HI = f32_from_bits(0x3F318000)       # 0.693359375, 9 significant bits: n * LN2_HI is exact
LN2_LO = f32_from_bits(0xB95E8083)       # nearest binary32 to ln(2) - LN2_HI
# C7 .. C0, nearest binary32 to 1/k!, in the order Horner's rule uses them (HSER-6.3).
EXP_COEFFS = tuple(f32_from_bits(b) for b in (0x39500D01, 0x3AB60B61, 0x3C088889, 0x3D2AAAAB, 0x3E2AAAAB,
                                                0x3F000000, 0x3F800000, 0x3F800000))


def pow2(n: torch.Tensor) -> torch.Tensor:
    """2**n as binary32 for integer-valued binary32 n in [-126, 127], built from its bits (exact)."""
    return ((n.to(torch.int32) + 127) << 23).view(torch.float32)


def canonical_exp(t: torch.Tensor) -> torch.Tensor:
    """exp(t) for binary32 t <= 0, elementwise (HSER-6.1, HSER-6.2); t < -87 gives +0.0.

    An input outside the domain (a NaN, or t > 0, +inf included) is rejected with NonFiniteError,
    E_NONFINITE (HSER-6.1). The check reads the tensor back to the host; callers that know their
    inputs are in the domain (softmax, where t = z - max z) call :func:`canonical_exp_in_domain`.
    """
    bad = torch.isnan(t) | (t > 0)
    if bool(bad.any()):
        i = int(torch.nonzero(bad.reshape(-1))[0, 0])
        raise NonFiniteError(f"canonical_exp is defined for t <= 0; element {i} is {float(t.reshape(-1)[i])!r}",
                             clause="HSER-6.1")
    return canonical_exp_in_domain(t)


def canonical_exp_in_domain(t: torch.Tensor) -> torch.Tensor:
    """canonical_exp without the domain check: every t must be <= 0 and not NaN.

      1. n = round_half_even(t * LOG2E)
      2. r = (t - n * LN2_HI) - n * LN2_LO
      3. p = C7; p = p * r + C_k for k = 6 .. 0   (a multiplication, then an addition)
      4. result = p * 2**n
    """
    flush = t < EXP_FLUSH
    t = torch.where(flush, torch.zeros_like(t), t)      # keep flushed lanes in range; replaced below
    n = torch.round(t * LOG2E)                           # step 1; torch.round rounds half to even
    r = (t - n * LN2_HI) - n * LN2_LO                    # step 2
    p = torch.full_like(t, EXP_COEFFS[0])
    for c in EXP_COEFFS[1:]:                             # step 3: two kernels per step, never fused
        p = p * r
        p = p + c
    result = p * pow2(n)                                 # step 4
    return torch.where(flush, torch.zeros_like(result), result)
