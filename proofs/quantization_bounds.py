"""Quantized values and exact logits stay in range for every d the spec allows (HSER-2, HSER-3).

- HSER-2.3: the prescale of rows with a < 2**-64 is exact; r = fl(127 / a) is normal for every a
  after it; |fl(x * r)| <= fl(a * r) <= 127 + 2**-17 (exhaustive over significands, monotone rounding),
  so Q = round_half_even(y * 2**(7 (L - 1))) has |Q| <= 127 * 128**(L - 1) (binary32 lemmas, joined by
  ground instances);
- HSER-2.4: the limb split Q = 128 hi + lo, hi = round_half_even(Q / 128), is exact with |hi| <= 127,
  |lo| <= 64 (checked for every Q there is);
- HSER-3.2: each int8 x int8 limb sum, and every partial sum of it, fits int32 for d <= 2**17; the
  combined accumulator fits int64 and is below 2**53, so it converts to binary64 exactly; the limb
  recombination is an identity.
"""
from __future__ import annotations

import time

import numpy as np
import sympy as sp
import z3

from . import smt
from .certificate import COUNTEREXAMPLE, PROVED, Certificate, Claim, finish, z3_claim

NAME = "quantization_bounds"
TITLE = "Quantized values, limb sums and accumulators stay in range; binary64 conversion is exact"
CLAUSES = ["HSER-2.3", "HSER-2.4", "HSER-2.5", "HSER-3.1", "HSER-3.2", "HSER-3.3", "OVW-2.4", "TIER-1.5"]
PAPER = ""
D_MAX = 1 << 17          # HSER-3.2 / TIER-1.5
LIMB_MAX = 127           # |hi|, |lo| and a one-limb Q are at most 127 in magnitude


def q_max(limbs: int) -> int:
    return 127 * 128 ** (limbs - 1)


def f32v(x: float):
    return z3.FPVal(x, smt.F32)


TWO64, TINY = 2.0 ** 64, 2.0 ** -64
Y_MAX = 127.0 + 2.0 ** -17      # the largest |y| of HSER-2.3 step 3 (tight: the next binary32 above 127)


def prescale_claim() -> Claim:
    x, a = z3.FPs("x a", smt.F32)
    finite = [z3.Not(z3.fpIsNaN(v)) for v in (x, a)] + [z3.Not(z3.fpIsInf(v)) for v in (x, a)]
    up = lambda v: z3.fpMul(smt.RNE, v, f32v(TWO64))                                   # noqa: E731
    down = lambda v: z3.fpMul(smt.RNE, v, f32v(TINY))                                  # noqa: E731
    return z3_claim("prescale_exact", "HSER-2.3 step 1: for binary32 a with 0 < a < 2**-64 (subnormals included) and "
                    "|x| <= a, the products x * 2**64 and a * 2**64 are exact (scaling back gives x and a) and "
                    "a * 2**64 >= 2**-85, so after step 1 every row has a >= 2**-85.",
                    finite + [z3.fpGT(a, f32v(0.0)), z3.fpLT(a, f32v(TINY)), z3.fpLEQ(z3.fpAbs(x), a)],
                    z3.And(down(up(x)) == x, down(up(a)) == a, z3.fpGEQ(up(a), f32v(2.0 ** -85))),
                    method="Z3 floating-point (binary32): the negation is unsat")


def reciprocal_claim() -> Claim:
    a = z3.FP("a", smt.F32)
    r = z3.fpDiv(smt.RNE, f32v(127.0), a)
    return z3_claim("reciprocal_normal", "HSER-2.3 step 2: for every binary32 a with 2**-85 <= a <= FLT_MAX, r = "
                    "fl(127 / a) is a positive normal binary32 number (never infinite, never subnormal), so "
                    "scaling a by a power of two 2**k scales r by exactly 2**-k.",
                    [z3.Not(z3.fpIsNaN(a)), z3.Not(z3.fpIsInf(a)), z3.fpGEQ(a, f32v(2.0 ** -85))],
                    z3.And(z3.fpIsNormal(r), z3.fpGT(r, f32v(0.0))),
                    method="Z3 floating-point (binary32): the negation is unsat")


def largest_product_claim() -> Claim:
    """max over a of fl(a * fl(127 / a)), all 2**23 significands (the exponent does not matter, see reciprocal_normal)."""
    t0 = time.perf_counter()
    sig = np.arange(1 << 23, dtype=np.uint32)
    worst, above = 0.0, 0
    for e in (127 - 85, 127, 127 + 100):                    # three exponents: the same maximum is the check
        a = ((np.uint32(e) << np.uint32(23)) | sig).view(np.float32)
        y = a * (np.float32(127.0) / a)                       # binary32: one division, one multiplication
        worst = max(worst, float(y.max()))
        above = int((y > np.float32(127.0)).sum())
    ok = worst == Y_MAX
    return Claim("largest_product", f"For every binary32 a >= 2**-85 (HSER-2.3 after step 1), fl(a * fl(127 / a)) <= "
                 f"127 + 2**-17 = {Y_MAX!r}, and the bound is reached: {above:,} of the 2**23 significands give a "
                 "value above 127. Checked for every significand at three exponents; by reciprocal_normal, "
                 "a * 2**k gives r * 2**-k exactly and the same product, so every exponent gives the same values.",
                 "spec", PROVED, PROVED if ok else COUNTEREXAMPLE,
                 "exhaustive enumeration (NumPy binary32, 3 x 8,388,608 values) + the scaling argument",
                 "for every significand m, e in {-85, 0, 100}: a = (1 + m 2**-23) 2**e; assert a * (127 / a) <= "
                 "127 + 2**-17", round(time.perf_counter() - t0, 6),
                 None if ok else {"largest": worst}, {"largest product": worst, "significands above 127": above})


def round_claim(limbs: int) -> Claim:
    y = z3.FP("y", smt.F32)
    scaled = z3.fpMul(smt.RNE, y, f32v(float(2 ** (7 * (limbs - 1)))))
    q = z3.fpRoundToIntegral(smt.RNE, scaled)
    exact = z3.fpDiv(smt.RNE, scaled, f32v(float(2 ** (7 * (limbs - 1))))) == y
    return z3_claim(f"q_bound_{limbs}_limb{'s' if limbs > 1 else ''}", f"For binary32 y with |y| <= 127 + 2**-17 and "
                    f"{limbs} limb{'s' if limbs > 1 else ''}: y * 2**{7 * (limbs - 1)} is exact and Q = "
                    f"round_half_even(y * 2**{7 * (limbs - 1)}) has |Q| <= {q_max(limbs)}.",
                    [z3.fpLEQ(z3.fpAbs(y), f32v(Y_MAX))],
                    z3.And(exact, z3.fpLEQ(z3.fpAbs(q), f32v(float(q_max(limbs))))),
                    method="Z3 floating-point (binary32): the negation is unsat")


def chain_claim() -> Claim:
    """The lemmas joined at the terms of HSER-2.3, with the operations uninterpreted."""
    R = z3.RealSort()
    mul = z3.Function("mul", R, R, R)              # binary32 multiplication, correctly rounded
    x, a, r = z3.Reals("x a r")
    y, top = mul(x, r), mul(a, r)
    premises = [a >= 2.0 ** -85, z3.Abs(x) <= a, r > 0,
                # IEEE 754 rounding is monotone (a correctly rounded product is a non-decreasing function of the
                # exact product) and odd: the ground instance at (x, a, r)
                z3.Implies(z3.And(z3.Abs(x) <= a, r > 0), z3.Abs(y) <= top),
                z3.Implies(a >= 2.0 ** -85, top <= Y_MAX)]                        # largest_product at a
    return z3_claim("q_chain", "Joined at the terms of HSER-2.3 (r = fl(127 / a), y = fl(x * r)): with |x| <= a, "
                    "monotone rounding gives |y| <= fl(a * r) <= 127 + 2**-17 (largest_product), the premise of "
                    "q_bound_1_limb and q_bound_2_limbs, so |Q| <= 127 * 128**(L - 1) without clamping. Assumed, not "
                    "proved here: IEEE 754 correctly rounded multiplication is monotone and odd (IEEE 754-2019, 4.3; a "
                    "direct binary32 Z3 query with two products did not finish in 120 s).", premises,
                    z3.Abs(y) <= Y_MAX, method="Z3 (UF + linear real arithmetic): the lemmas as ground instances")


def limb_split_claim() -> Claim:
    """Every Q with |Q| <= 16256 splits exactly; checked for all 32,513 values, against the reference too."""
    from lite_llm.reference.quantize import split_limbs

    t0 = time.perf_counter()
    q = np.arange(-q_max(2), q_max(2) + 1, dtype=np.int64)
    hi = np.rint(q / 128.0).astype(np.int64)                  # round_half_even(Q / 128); Q / 128 is exact
    lo = q - 128 * hi
    ref_hi, ref_lo = split_limbs(q, 2)
    bad = np.flatnonzero((128 * hi + lo != q) | (np.abs(lo) > 64) | (np.abs(hi) > 127)
                         | (ref_hi.astype(np.int64) != hi) | (ref_lo.astype(np.int64) != lo))
    model = None if bad.size == 0 else {"Q": int(q[bad[0]]), "hi": int(hi[bad[0]]), "lo": int(lo[bad[0]])}
    return Claim("limb_split_exact", f"For every integer Q with |Q| <= {q_max(2)} (all {q.size:,} of them): hi = "
                 "round_half_even(Q / 128) and lo = Q - 128 hi satisfy Q = 128 hi + lo, |hi| <= 127 and |lo| <= 64, "
                 "so both limbs are int8 values (never -128); lite_llm.reference.quantize.split_limbs gives the same "
                 "limbs.", "spec", PROVED, PROVED if model is None else COUNTEREXAMPLE,
                 "exhaustive enumeration (NumPy integers; Q / 128 is exact in binary64)",
                 "for Q in [-16256, 16256]: hi = rint(Q / 128); lo = Q - 128 hi; "
                 "assert Q == 128 hi + lo and |lo| <= 64 and |hi| <= 127",
                 round(time.perf_counter() - t0, 6), model,
                 {"largest |hi|": int(np.abs(hi).max()), "largest |lo|": int(np.abs(lo).max())})


def partial_sum_claim() -> Claim:
    """Induction step: after j products of int8 limbs, |S_j| <= j * 127**2; for j <= d <= 2**17 that is < 2**31."""
    j, S, p, dd = z3.Ints("j S_j p d")
    premises = [0 <= j, j < dd, dd <= D_MAX, -j * LIMB_MAX ** 2 <= S, S <= j * LIMB_MAX ** 2,
                -LIMB_MAX ** 2 <= p, p <= LIMB_MAX ** 2]
    goal = z3.And(-(j + 1) * LIMB_MAX ** 2 <= S + p, S + p <= (j + 1) * LIMB_MAX ** 2,
                  S + p < 2 ** 31, S + p >= -(2 ** 31))
    return z3_claim("int32_limb_sums", "Each int8 x int8 limb sum S = sum_i limb_x[i] limb_w[i] (|limb| <= 127) fits "
                    "int32 for every d <= 2**17, and so does every partial sum, in any order: if j < d terms sum to "
                    "|S_j| <= j 127**2, adding one more gives |S_{j+1}| <= (j + 1) 127**2 <= 2**17 * 16129 = "
                    "2,114,060,288 < 2**31. By induction over the terms, no int32 accumulator overflows.",
                    premises, goal, method="Z3 linear integer arithmetic: the induction step")


def accumulator_claim(lx: int, lw: int) -> Claim:
    j, S, p, dd = z3.Ints("j acc_j p d")
    bound = q_max(lx) * q_max(lw)
    premises = [0 <= j, j < dd, dd <= D_MAX, -j * bound <= S, S <= j * bound, -bound <= p, p <= bound]
    goal = z3.And(z3.Abs(S + p) <= (j + 1) * bound, z3.Abs(S + p) < 2 ** 53)
    return z3_claim(f"int64_accumulator_{lx}x{lw}", f"With {lx} hidden and {lw} weight limb(s), every partial sum of "
                    f"acc = sum_i Q_x[i] Q_w[i] (|Q_x| <= {q_max(lx)}, |Q_w| <= {q_max(lw)}) satisfies |acc_j| <= j * "
                    f"{bound} < 2**53 for j <= d <= 2**17 (induction step), so acc fits int64 and converts to binary64 "
                    f"exactly (largest |acc|: {D_MAX * bound:,}).", premises, goal,
                    method="Z3 linear integer arithmetic: the induction step")


def recombination_claim() -> Claim:
    t0 = time.perf_counter()
    hx, lx_, hw, lw_ = sp.symbols("hi_x lo_x hi_w lo_w", integer=True)
    qx, qw = 128 * hx + lx_, 128 * hw + lw_
    two_by_two = sp.expand(qx * qw - (2 ** 14 * hx * hw + 2 ** 7 * (hx * lw_ + lx_ * hw) + lx_ * lw_))
    one_by_two = sp.expand(hx * qw - (2 ** 7 * hx * hw + hx * lw_))
    ok = two_by_two == 0 and one_by_two == 0
    terms = {"2**14 S_hh": 2 ** 14 * D_MAX * 127 * 127, "2**7 (S_hl + S_lh)": 2 ** 7 * 2 * D_MAX * 127 * 127,
             "S_ll": D_MAX * 127 * 127}
    return Claim("limb_recombination", "Per term, Q_x Q_w = 2**14 hi_x hi_w + 2**7 (hi_x lo_w + lo_x hi_w) + lo_x lo_w "
                 "(and with one hidden limb, Q_x (128 hi_w + lo_w) = 2**7 Q_x hi_w + Q_x lo_w), so summing the int32 "
                 "limb sums in int64 as 2**14 S_hh + 2**7 (S_hl + S_lh) + S_ll gives acc exactly; each scaled term is "
                 "below 2**63.", "spec", PROVED,
                 PROVED if ok and all(v < 2 ** 63 for v in terms.values()) else COUNTEREXAMPLE,
                 "SymPy polynomial identity (expand to 0) and exact integer bounds",
                 f"expand((128 hi_x + lo_x)(128 hi_w + lo_w) - (2**14 hi_x hi_w + 2**7 (hi_x lo_w + lo_x hi_w) + "
                 f"lo_x lo_w)) = {two_by_two}", round(time.perf_counter() - t0, 6), None,
                 {f"largest |{k}|": v for k, v in terms.items()})


def conversion_claim() -> Claim:
    n = z3.BitVec("acc", 64)
    f = z3.fpSignedToFP(smt.RNE, n, smt.F64)
    return z3_claim("binary64_conversion_exact", "Every int64 value with |acc| <= 2**53 converts to binary64 exactly "
                    "(converting back gives acc), so binary64(acc) in HSER-3.3 is exact.",
                    [n <= 2 ** 53, n >= -(2 ** 53)], z3.fpToSBV(z3.RTZ(), f, z3.BitVecSort(64)) == n,
                    method="Z3 bit-vectors + floating-point: the negation is unsat")


def scale_divisor_claim() -> Claim:
    t0 = time.perf_counter()
    ok = all(float(q_max(L)) == q_max(L) and q_max(L) < 2 ** 53 for L in (1, 2))
    return Claim("scale_divisor_exact", "The dequantization divisors 127 and 127 * 128 = 16256 of HSER-2.5 are exact "
                 "binary64 values, so the scale is one correctly rounded division.", "spec", PROVED,
                 PROVED if ok else COUNTEREXAMPLE, "exact evaluation", "float(127) == 127 and float(16256) == 16256",
                 round(time.perf_counter() - t0, 6))


def prove() -> Certificate:
    t0 = time.perf_counter()
    claims = [prescale_claim(), reciprocal_claim(), largest_product_claim(), round_claim(1), round_claim(2),
              chain_claim(), limb_split_claim(),
              partial_sum_claim(), *(accumulator_claim(a, b) for a in (1, 2) for b in (1, 2)), recombination_claim(),
              conversion_claim(), scale_divisor_claim()]
    cert = Certificate(
        NAME, TITLE,
        "For every finite binary32 row and every d <= 2**17: quantized values satisfy |Q| <= 127 * 128**(L - 1) "
        "without clamping (127 for one limb, 16256 for two); the limb split is exact with int8 limbs; every int32 "
        "limb sum and every partial sum fits int32; the combined accumulator and its partial sums stay below 2**53, "
        "fit int64 and convert to binary64 exactly.",
        CLAUSES, PAPER, claims,
        notes=["The binary32 lemmas quantify over every binary32 value, subnormals included; the uninterpreted chain "
               "uses them only at the terms HSER-2.3 computes.",
               "One premise is assumed rather than proved: IEEE 754 correctly rounded multiplication is monotone "
               "(and odd) in the exact product. A direct Z3 query over two binary32 products did not finish.",
               "Integer claims are induction steps over the number of terms, so they hold for every summation order, "
               "tile shape and batch split (HSER-3.1)."],
        method=__doc__)
    return finish(cert, t0)
