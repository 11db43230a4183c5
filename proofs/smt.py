"""Z3 encodings of the spec's operations, written from the spec's text (not from an implementation).

The constants are read from the clause registry (HSER-4.3 for ``mix64``, HSER-6.3 for the canonical
``exp``), so a proof is about the spec as published; ``tests/proofs`` checks that the encodings and the
reference implementation agree on sample inputs.
"""
from __future__ import annotations

import re
from functools import lru_cache

import z3

from lite_llm.spec.clauses import clause

W64 = 64
F32 = z3.Float32()
F64 = z3.Float64()
RNE = z3.RNE()


# ----------------------------------------------------------------------------------------------
# Words (HSER-4.2 .. HSER-4.5)
# ----------------------------------------------------------------------------------------------

@lru_cache(maxsize=None)
def mix64_constants() -> tuple[int, int]:
    """The two odd multipliers of ``mix64``, in order, from the text of HSER-4.3."""
    m1, m2 = (int(h, 16) for h in re.findall(r"0x[0-9A-Fa-f]{16}", clause("HSER-4.3").text))
    return m1, m2


MIX64_SHIFTS = (30, 27, 31)    # HSER-4.3: x ^= x >> 30; x *= M1; x ^= x >> 27; x *= M2; x ^= x >> 31


def xorshift(x, k: int):
    """x ^ (x >> k), a logical shift on a 64-bit word."""
    return x ^ z3.LShR(x, k)


def xorshift_inverse(y, k: int):
    """The inverse of ``xorshift(., k)``: x = y ^ (y >> k) ^ (y >> 2k) ^ ... (k >= 1)."""
    x, shift = y, k
    while shift < W64:
        x = x ^ z3.LShR(y, shift)
        shift += k
    return x


def odd_inverse(m: int) -> int:
    """The multiplicative inverse of an odd word modulo 2**64."""
    return pow(m, -1, 1 << W64)


def mix64_steps() -> list[tuple[str, object, object]]:
    """The five steps of ``mix64`` as (name, step, inverse) pairs of functions on 64-bit words."""
    m1, m2 = mix64_constants()
    s1, s2, s3 = MIX64_SHIFTS
    return [
        (f"xorshift_{s1}", lambda x: xorshift(x, s1), lambda y: xorshift_inverse(y, s1)),
        (f"times_0x{m1:016X}", lambda x: x * m1, lambda y: y * odd_inverse(m1)),
        (f"xorshift_{s2}", lambda x: xorshift(x, s2), lambda y: xorshift_inverse(y, s2)),
        (f"times_0x{m2:016X}", lambda x: x * m2, lambda y: y * odd_inverse(m2)),
        (f"xorshift_{s3}", lambda x: xorshift(x, s3), lambda y: xorshift_inverse(y, s3)),
    ]


def mix64(x):
    """The SplitMix64 finalizer on a Z3 64-bit term (HSER-4.3)."""
    for _, step, _ in mix64_steps():
        x = step(x)
    return x


def level_word(level, tier, group):
    """word(l, t, g) = (l << 62) | (t << 32) | g on 64-bit terms (HSER-4.2)."""
    return (level << 62) | (tier << 32) | group


# ----------------------------------------------------------------------------------------------
# binary32 arithmetic (HSER-6)
# ----------------------------------------------------------------------------------------------

@lru_cache(maxsize=None)
def exp_constant_bits() -> dict[str, int]:
    """Name -> binary32 bit pattern of the canonical exp's constants, from the text of HSER-6.3."""
    return {k: int(v, 16) for k, v in re.findall(r"`(LOG2E|LN2_HI|LN2_LO|C\d) = (0x[0-9A-Fa-f]{8})`",
                                                 clause("HSER-6.3").text)}


def f32_bits(bits: int):
    """A binary32 constant from its bit pattern."""
    return z3.fpBVToFP(z3.BitVecVal(bits, 32), F32)


def f32(x: float):
    return z3.FPVal(x, F32)


NEG_ZERO32 = z3.fpMinusZero(F32)
POS_ZERO32 = z3.fpPlusZero(F32)


def tree_sum(v, pad=NEG_ZERO32, block: int | None = None, add=None):
    """The pairwise tree sum of HSER-6.5 on binary32 terms.

    ``pad`` is the padding value (the spec's is -0.0), ``block`` the padded length (default: the next
    power of two), ``add`` the addition (default: IEEE binary32 addition, round to nearest even; an
    uninterpreted function may be passed to reason from lemmas).
    """
    if add is None:
        add = lambda a, b: z3.fpAdd(RNE, a, b)   # noqa: E731
    n = len(v)
    p = block or 1 << (n - 1).bit_length()
    assert p >= n and p & (p - 1) == 0, "the block must be a power of two >= n"
    v = list(v) + [pad] * (p - n)
    while len(v) > 1:
        v = [add(v[i], v[i + 1]) for i in range(0, len(v), 2)]
    return v[0]


def canonical_exp(t):
    """canonical_exp(t) on a binary32 term, t in [-87, 0] (HSER-6.2 steps 1 .. 4, no fused operations)."""
    c = {k: f32_bits(b) for k, b in exp_constant_bits().items()}
    n = z3.fpRoundToIntegral(RNE, z3.fpMul(RNE, t, c["LOG2E"]))                       # step 1
    r = z3.fpSub(RNE, z3.fpSub(RNE, t, z3.fpMul(RNE, n, c["LN2_HI"])), z3.fpMul(RNE, n, c["LN2_LO"]))  # 2
    p = c["C7"]
    for k in range(6, -1, -1):                                                       # step 3: Horner
        p = z3.fpAdd(RNE, z3.fpMul(RNE, p, r), c[f"C{k}"])
    # step 4: p * 2**n; 2**n is built from n's integer value (exact for -126 <= n <= 0)
    n_int = z3.fpToSBV(RNE, n, z3.BitVecSort(32))
    two_n = z3.fpBVToFP(z3.Concat(z3.BitVecVal(0, 1), z3.Extract(7, 0, n_int + 127), z3.BitVecVal(0, 23)), F32)
    return z3.fpMul(RNE, p, two_n)
