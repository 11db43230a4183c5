"""The canonical exponential, built from IEEE-754 binary32 basic operations only (HSER-6.1 .. HSER-6.4).

Library ``exp`` differs between devices by up to several ulps; this one gives the same bits on every
device that rounds ``+ - * /`` and round-to-integer correctly and does not fuse ``x*y+z`` (no FMA).
Every line is one rounded binary32 operation, in the order the spec lists them.
"""
from __future__ import annotations

import numpy as np

from lite_llm.spec.errors import NonFiniteError

F32 = np.float32
EXP_FLUSH = F32(-87.0)                     # HSER-6.1: below this the result is +0.0
LOG2E = F32(1.44269502162933349609375)      # binary32 nearest to log2(e), 0x3FB8AA3B
LN2_HI = F32(0.693359375)                   # 0x3F318000: 9 significant bits, so n*LN2_HI is exact
LN2_LO = F32(-2.12194440048187971115112e-4)  # 0xB95E8083: binary32 nearest to ln(2) - LN2_HI
# HSER-6.3: binary32 nearest to 1/k!, k = 7 .. 0, in the order Horner's rule uses them.
EXP_COEFFS = tuple(F32(c) for c in (
    1.98412701138295233249664e-4,   # 1/5040, 0x39500D01
    1.38888892251998186111450e-3,   # 1/720,  0x3AB60B61
    8.33333376795053482055664e-3,   # 1/120,  0x3C088889
    4.16666679084300994873047e-2,   # 1/24,   0x3D2AAAAB
    1.66666671633720397949219e-1,   # 1/6,    0x3E2AAAAB
    5.0e-1,                         # 1/2
    1.0,                            # 1/1!
    1.0,                            # 1/0!
))


def canonical_exp(t: np.ndarray) -> np.ndarray:
    """exp(t) for binary32 t <= 0, elementwise (HSER-6.2).

    Steps (each a correctly rounded binary32 operation, no fused multiply-add):
      1. n = round_half_even(t * LOG2E)
      2. r = (t - n * LN2_HI) - n * LN2_LO          (Cody-Waite reduction; n * LN2_HI is exact)
      3. p = Horner(EXP_COEFFS, r): p = c7; p = p * r + c_k for k = 6 .. 0
      4. result = p * 2**n                           (exact: the result is a normal number)
    and t < EXP_FLUSH gives +0.0. An input outside the domain t <= 0 (a NaN, or t > 0, +inf
    included) is rejected with NonFiniteError, E_NONFINITE (HSER-6.1).
    """
    t = np.asarray(t, dtype=F32)
    bad = np.isnan(t) | (t > 0)
    if bad.any():
        i = int(np.flatnonzero(bad.reshape(-1))[0])
        raise NonFiniteError(f"canonical_exp is defined for t <= 0; element {i} is {t.reshape(-1)[i]!r}",
                             clause="HSER-6.1")
    flush = t < EXP_FLUSH
    t = np.where(flush, F32(0.0), t)               # keep flushed lanes in range; their result is replaced
    n = np.rint(t * LOG2E)                          # step 1 (rint rounds half to even)
    r = (t - n * LN2_HI) - n * LN2_LO               # step 2
    p = np.full_like(t, EXP_COEFFS[0])
    for c in EXP_COEFFS[1:]:                        # step 3: Horner, one multiply and one add per step
        p = p * r + c
    result = np.ldexp(p, n.astype(np.int32))        # step 4: exact scaling by a power of two
    return np.where(flush, F32(0.0), result).astype(F32)
