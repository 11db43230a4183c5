"""@triton.jit helpers shared by the router and MoE kernels, their constants, and small host helpers.

Every float operation is a correctly rounded IEEE operation in the order of the spec, compiled with
``enable_fp_fusion=False`` (no FMA contraction): ``_rint`` rounds half to even by the 1.5 * 2**23
trick (OVW-2.3), ``_canonical_exp`` is HSER-6.1 .. HSER-6.3 without a library ``exp``, ``_tree_sum``
the canonical pairwise tree of HSER-6.5.
"""
from __future__ import annotations

import triton
import triton.language as tl

# HSER-6.3 constants as the exact binary32 values (Python floats hold them exactly).
LOG2E = tl.constexpr(1.44269502162933349609375)           # 0x3FB8AA3B
LN2_HI = tl.constexpr(0.693359375)                        # 0x3F318000
LN2_LO = tl.constexpr(-2.12194440048187971115112e-4)      # 0xB95E8083
C7 = tl.constexpr(1.98412701138295233249664e-4)           # 0x39500D01
C6 = tl.constexpr(1.38888892251998186111450e-3)           # 0x3AB60B61
C5 = tl.constexpr(8.33333376795053482055664e-3)           # 0x3C088889
C4 = tl.constexpr(4.16666679084300994873047e-2)           # 0x3D2AAAAB
C3 = tl.constexpr(1.66666671633720397949219e-1)           # 0x3E2AAAAB
RINT_MAGIC = tl.constexpr(12582912.0)                     # 1.5 * 2**23
MAGIC_BITS = tl.constexpr(0x4B400000)                     # the bits of 1.5 * 2**23
TWO_M64 = tl.constexpr(5.421010862427522e-20)             # 2**-64: rows with a smaller absmax are prescaled
TWO_P64 = tl.constexpr(1.8446744073709552e19)             # 2**64 (HSER-2.3 step 1)
ABS_MASK = tl.constexpr(0x7FFFFFFF)                       # binary32 sign bit off
INF_BITS = tl.constexpr(0x7F800000)                       # |x| bits >= this: inf or NaN
INT32_MAX = tl.constexpr((1 << 31) - 1)


@triton.jit
def _rint(x):
    """round_half_even(x) for binary32 |x| < 2**22 (OVW-2.3): adding 1.5 * 2**23 rounds to an integer
    (round-to-nearest-even), subtracting it is exact. Needs enable_fp_fusion=False."""
    return (x + RINT_MAGIC) - RINT_MAGIC


@triton.jit
def _canonical_exp(t):
    """HSER-6.1 .. HSER-6.2 on binary32 t <= 0: one rounded operation per step, Horner without FMA."""
    flush = t < -87.0
    t = tl.where(flush, 0.0, t)
    n = _rint(t * LOG2E)
    r = (t - n * LN2_HI) - n * LN2_LO
    p = r * C7 + C6                                       # C7 * r: the first Horner step
    p = p * r + C5
    p = p * r + C4
    p = p * r + C3
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    pow2n = ((n.to(tl.int32) + 127) << 23).to(tl.float32, bitcast=True)    # 2**n from its bits, exact
    return tl.where(flush, 0.0, p * pow2n)


@triton.jit
def _halve(v, B: tl.constexpr, W: tl.constexpr):
    """(B, W) -> (B, W/2): sums of adjacent pairs v[2i] + v[2i+1], one step of the tree sum."""
    a, b = tl.split(tl.reshape(v, (B, W // 2, 2)))
    return a + b


@triton.jit
def _tree_sum(v, B: tl.constexpr, W: tl.constexpr):
    """HSER-6.5 over the last axis of v (B, W), W a power of two <= 256; padding must hold -0.0."""
    if W >= 256:
        v = _halve(v, B, 256)
    if W >= 128:
        v = _halve(v, B, 128)
    if W >= 64:
        v = _halve(v, B, 64)
    if W >= 32:
        v = _halve(v, B, 32)
    if W >= 16:
        v = _halve(v, B, 16)
    if W >= 8:
        v = _halve(v, B, 8)
    if W >= 4:
        v = _halve(v, B, 4)
    if W >= 2:
        v = _halve(v, B, 2)
    return tl.reshape(v, (B,))


def _pow2(n: int, least: int = 1) -> int:
    return max(least, 1 << (max(n, 1) - 1).bit_length())


def _launch_options(cfg: dict) -> dict:
    """Launch options of a config; ``maxnreg`` caps the registers per thread (ptxas may spill)."""
    opts = dict(num_warps=cfg["num_warps"], num_stages=cfg["num_stages"], enable_fp_fusion=False)
    if cfg.get("maxnreg"):
        opts["maxnreg"] = cfg["maxnreg"]
    return opts
