"""Quantized values and exact logits stay in range for every d the spec allows (HSER-2, HSER-3).

- HSER-2.3: the prescale of rows with a < 2**-64 is exact; r = fl(127 / a) is normal for every a
  after it; |fl(x * r)| <= fl(a * r) <= 127 + 2**-17: the binary32 products are exact in binary64, the
  binary64 -> binary32 rounding is monotone and odd (Z3, binary64 theory), and fl(a * r) <= 127 + 2**-17
  for every significand (exhaustive); so Q = round_half_even(y * 2**(7 (L - 1))) has
  |Q| <= 127 * 128**(L - 1) (the lemmas joined by ground instances);
- HSER-2.4: the limb split Q = 128 hi + lo, hi = round_half_even(Q / 128), is exact with |hi| <= 127,
  |lo| <= 64 (checked for every Q there is); with three hidden limbs the split applied again to hi,
  Q = 16384 top + 128 mid + lo, is exact with |top| <= 127, |mid|, |lo| <= 64 (every |Q| <= 2080768);
- HSER-3.2: each int8 x int8 limb sum, and every partial sum of it, fits int32 for d <= 2**17; the
  combined accumulator fits int64 and is below 2**53 for every limb count TIER-1.5 allows (3 + 2 at
  most), so it converts to binary64 exactly; 3 + 3 limbs would not (a counterexample, why TIER-1.5
  excludes them); the limb recombinations (2 + 2 and the six-term 3 + 2) are identities;
- HSER-2.5 / HSER-3.3: the dequantization divisors are exact, every scale of a binary32 a > 0 is a
  normal binary64 number, and every logit is finite and either zero or normal.
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


PRODUCT_EXPONENTS = (-85, -1, 0, 100, 127)     # unbiased exponents of a checked exhaustively (binary32's extremes)


def largest_product_claim() -> Claim:
    """max over a of fl(a * fl(127 / a)), all 2**23 significands at a few exponents (reciprocal_normal: the
    exponent does not change the product), computed as binary32 and as binary32(binary64 product)."""
    t0 = time.perf_counter()
    sig = np.arange(1 << 23, dtype=np.uint32)
    first = None
    worst, above, bad = 0.0, 0, None
    for e in PRODUCT_EXPONENTS:
        a = ((np.uint32(e + 127) << np.uint32(23)) | sig).view(np.float32)
        r = np.float32(127.0) / a                                # binary32 division (HSER-2.3 step 2)
        y = a * r                                                # binary32 multiplication (step 3)
        y64 = (a.astype(np.float64) * r.astype(np.float64)).astype(np.float32)   # exact product, rounded once
        if first is None:
            first = y
        worst = max(worst, float(y.max()))
        above = max(above, int((y > np.float32(127.0)).sum()))
        if bad is None and not np.array_equal(y.view(np.uint32), y64.view(np.uint32)):
            i = int(np.flatnonzero(y.view(np.uint32) != y64.view(np.uint32))[0])
            bad = {"exponent": e, "a": repr(float(a[i])), "binary32 product": repr(float(y[i])),
                   "binary32(binary64 product)": repr(float(y64[i]))}
        if bad is None and not np.array_equal(y.view(np.uint32), first.view(np.uint32)):
            i = int(np.flatnonzero(y.view(np.uint32) != first.view(np.uint32))[0])
            bad = {"exponent": e, "significand": i, "product": repr(float(y[i])),
                   f"product at exponent {PRODUCT_EXPONENTS[0]}": repr(float(first[i]))}
    ok = worst == Y_MAX and bad is None
    n = len(PRODUCT_EXPONENTS)
    return Claim("largest_product", f"For every binary32 a >= 2**-85 (HSER-2.3 after step 1), fl(a * fl(127 / a)) <= "
                 f"127 + 2**-17 = {Y_MAX!r}, and the bound is reached: {above:,} of the 2**23 significands give a "
                 f"value above 127. Checked for every significand at exponents {list(PRODUCT_EXPONENTS)}: the "
                 "products are bit-identical at every exponent (by reciprocal_normal, a * 2**k gives r * 2**-k "
                 "exactly and the same product, so every exponent gives these values), and each binary32 product "
                 "equals the binary64 product of the same operands rounded to binary32 (products_exact_in_binary64).",
                 "spec", PROVED, PROVED if ok else COUNTEREXAMPLE,
                 f"exhaustive enumeration (NumPy binary32 and binary64, {n} x 8,388,608 values, vectorised) + the "
                 "scaling argument",
                 f"for every significand m, e in {list(PRODUCT_EXPONENTS)}: a = (1 + m 2**-23) 2**e; r = fl32(127 / a); "
                 "y = fl32(a * r); assert y <= 127 + 2**-17 and y == binary32(float64(a) * float64(r)) and y is the "
                 f"same at every e", round(time.perf_counter() - t0, 6),
                 None if ok else {"largest": worst, **(bad or {})},
                 {"largest product": worst, "significands above 127": above})


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


F64_FINITE = "binary64, NaN excluded (infinities and both zeros included)"


def to32(u):
    """binary64 -> binary32 conversion, round to nearest even (IEEE 754 convertFormat)."""
    return z3.fpToFP(smt.RNE, u, smt.F32)


def rounding_monotone_claim() -> Claim:
    u, v = z3.FPs("u v", smt.F64)
    return z3_claim("rounding_monotone", "Rounding binary64 to binary32 (round to nearest even) is monotone: for every "
                    "binary64 u <= v (NaN excluded; infinities, subnormals and both zeros included), "
                    "binary32(u) <= binary32(v).", [z3.Not(z3.fpIsNaN(u)), z3.Not(z3.fpIsNaN(v)), z3.fpLEQ(u, v)],
                    z3.fpLEQ(to32(u), to32(v)),
                    method="Z3 floating-point (binary64 -> binary32 conversion): the negation is unsat")


def rounding_odd_claim() -> Claim:
    u = z3.FP("u", smt.F64)
    return z3_claim("rounding_odd", "Rounding binary64 to binary32 is odd, to the bit: binary32(-u) is the same "
                    "binary32 datum as -binary32(u) for every binary64 u (SMT equality, which tells -0.0 from +0.0; "
                    "not IEEE ==, which would not).", [], to32(z3.fpNeg(u)) == z3.fpNeg(to32(u)),
                    method="Z3 floating-point: SMT `=` (structural), not fp.eq; the negation is unsat")


def products_exact_claim() -> Claim:
    x, r = z3.FPs("x r", smt.F32)
    x64, r64 = (z3.fpToFP(smt.RNE, v, smt.F64) for v in (x, r))

    def prod(rm):
        return z3.fpMul(rm, x64, r64)

    finite = [z3.Not(z3.fpIsNaN(v)) for v in (x, r)] + [z3.Not(z3.fpIsInf(v)) for v in (x, r)]
    return z3_claim("products_exact_in_binary64", "The binary64 product of two finite binary32 numbers is exact: "
                    "rounding it down, to nearest and up gives the same binary64 datum (so the exact product is a "
                    "binary64 number; 24 + 24 significand bits fit in 53, and 2**-298 .. 2**256 in binary64's "
                    "range). Hence the correctly rounded binary32 product fl32(x * r) (IEEE 754: the exact product, "
                    "rounded once) is binary32(x64 * r64), the conversion of rounding_monotone and rounding_odd.",
                    finite, z3.And(prod(z3.RTN()) == prod(smt.RNE), prod(z3.RTP()) == prod(smt.RNE)),
                    method="Z3 floating-point (binary32 operands widened exactly to binary64): RTN, RNE and RTP "
                           "products are one datum; the negation is unsat")


def chain_claim(drop: tuple[str, ...] = ()) -> Claim:
    """The lemmas joined at the terms of HSER-2.3: real products, rounding as an uninterpreted function.

    ``drop`` leaves out ground instances by lemma name ("monotone", "odd", "largest_product"); the chain then
    has a counterexample, which shows each lemma is used (tests/proofs)."""
    R = z3.RealSort()
    rnd = z3.Function("binary32", R, R)            # binary64 -> binary32 rounding of an exact product
    x, a, r = z3.Reals("x a r")
    y, top = rnd(x * r), rnd(a * r)                 # fl32(x r) = binary32(x r): products_exact_in_binary64

    def monotone(u, v):                             # rounding_monotone, ground instance
        return z3.Implies(u <= v, rnd(u) <= rnd(v))

    lemmas = {"monotone": [monotone(x * r, a * r), monotone(-(a * r), x * r)],
              "odd": [rnd(-(a * r)) == -rnd(a * r)],                             # rounding_odd, ground instance
              "largest_product": [z3.Implies(a >= 2.0 ** -85, top <= Y_MAX)]}    # largest_product at a
    premises = [a >= 2.0 ** -85, z3.Abs(x) <= a, r > 0] + [p for k, ps in lemmas.items() if k not in drop for p in ps]
    return z3_claim("q_chain", "Joined at the terms of HSER-2.3 (r = fl(127 / a) > 0, reciprocal_normal; y = fl(x * r) "
                    "with |x| <= a): the products x r and a r are exact binary64 numbers and fl32 of each is their "
                    "binary32 rounding (products_exact_in_binary64); -a r <= x r <= a r, so by rounding_monotone and "
                    "rounding_odd -fl(a r) <= y <= fl(a r) <= 127 + 2**-17 (largest_product), the premise of "
                    "q_bound_1_limb, q_bound_2_limbs and q_bound_3_limbs: |Q| <= 127 * 128**(L - 1) without clamping. "
                    "Every lemma "
                    "used is proved in this certificate; nothing about rounding is assumed.", premises,
                    z3.And(-Y_MAX <= y, y <= Y_MAX),
                    method="Z3 (UF + nonlinear real arithmetic): rounding_monotone, rounding_odd and largest_product "
                           "as ground instances at the terms of HSER-2.3")


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


def limb_split_3_claim() -> Claim:
    """HSER-2.4 with three hidden limbs: every Q with |Q| <= 2080768 splits exactly (all 4,161,537 values)."""
    from lite_llm.reference.quantize import split_limbs

    t0 = time.perf_counter()
    q = np.arange(-q_max(3), q_max(3) + 1, dtype=np.int64)
    hi = np.rint(q / 128.0).astype(np.int64)                  # round_half_even(Q / 128); exact quotient
    lo = q - 128 * hi
    top = np.rint(hi / 128.0).astype(np.int64)                # round_half_even(hi / 128)
    mid = hi - 128 * top
    ref_top, ref_mid, ref_lo = (v.astype(np.int64) for v in split_limbs(q, 3))
    bad = np.flatnonzero((16384 * top + 128 * mid + lo != q) | (np.abs(top) > 127) | (np.abs(mid) > 64)
                         | (np.abs(lo) > 64) | (ref_top != top) | (ref_mid != mid) | (ref_lo != lo))
    model = None if bad.size == 0 else {"Q": int(q[bad[0]]), "top": int(top[bad[0]]), "mid": int(mid[bad[0]]),
                                        "lo": int(lo[bad[0]])}
    return Claim("limb_split_3_exact", f"For every integer Q with |Q| <= {q_max(3)} (all {q.size:,} of them): hi = "
                 "round_half_even(Q / 128), lo = Q - 128 hi, top = round_half_even(hi / 128), mid = hi - 128 top "
                 "satisfy Q = 16384 top + 128 mid + lo, |top| <= 127 and |mid|, |lo| <= 64, so all three limbs are "
                 "int8 values (never -128); lite_llm.reference.quantize.split_limbs(Q, 3) gives the same limbs.",
                 "spec", PROVED, PROVED if model is None else COUNTEREXAMPLE,
                 "exhaustive enumeration (NumPy integers; Q / 128 and hi / 128 are exact in binary64)",
                 "for Q in [-2080768, 2080768]: hi = rint(Q / 128); lo = Q - 128 hi; top = rint(hi / 128); "
                 "mid = hi - 128 top; assert Q == 16384 top + 128 mid + lo and |top| <= 127 and |mid|, |lo| <= 64",
                 round(time.perf_counter() - t0, 6), model,
                 {"largest |top|": int(np.abs(top).max()), "largest |mid|": int(np.abs(mid).max()),
                  "largest |lo|": int(np.abs(lo).max())})


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
    if D_MAX * bound >= 2 ** 53:      # 3 + 3 limbs: the bound fails, which is why TIER-1.5 excludes them
        return z3_claim(f"int64_accumulator_{lx}x{lw}", f"With {lx} hidden and {lw} weight limbs (excluded by "
                        f"TIER-1.5) the accumulator would NOT stay below 2**53: |Q_x|, |Q_w| <= {q_max(lx)} allow "
                        f"|acc| up to 2**17 * {bound:,} = {D_MAX * bound:,} ~ 2**{np.log2(float(D_MAX * bound)):.2f}, "
                        "beyond binary64's exact integers; the solver finds a partial sum of 2**53 or more.",
                        premises, goal, expected=COUNTEREXAMPLE, show=[j, S, p, dd],
                        method="Z3 linear integer arithmetic: the induction step has a model (a counterexample)")
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


def recombination_3_claim() -> Claim:
    """The six-term combine of HSER-3.2 for 3 hidden and 2 weight limbs (and 3 + 1) is an identity."""
    t0 = time.perf_counter()
    tx, mx, lx_, hw, lw_ = sp.symbols("top_x mid_x lo_x hi_w lo_w", integer=True)
    qx, qw = 16384 * tx + 128 * mx + lx_, 128 * hw + lw_
    six = sp.expand(qx * qw - (2 ** 21 * tx * hw + 2 ** 14 * (tx * lw_ + mx * hw) + 2 ** 7 * (mx * lw_ + lx_ * hw)
                               + lx_ * lw_))
    three = sp.expand(qx * hw - (2 ** 14 * tx * hw + 2 ** 7 * mx * hw + lx_ * hw))
    ok = six == 0 and three == 0
    s = D_MAX * 127 * 127                                      # largest |int32 limb sum|
    terms = {"2**21 S_tH": 2 ** 21 * s, "2**14 (S_tL + S_mH)": 2 ** 14 * 2 * s, "2**7 (S_mL + S_lH)": 2 ** 7 * 2 * s,
             "S_lL": s}
    return Claim("limb_recombination_3x2", "Per term, with Q_x = 16384 top + 128 mid + lo and Q_w = 128 H + L: Q_x Q_w "
                 "= 2**21 top H + 2**14 (top L + mid H) + 2**7 (mid L + lo H) + lo L (and with one weight limb, "
                 "Q_x Q_w = 2**14 top Q_w + 2**7 mid Q_w + lo Q_w), so the six int32 limb sums combined in int64 as "
                 "2**21 S_tH + 2**14 (S_tL + S_mH) + 2**7 (S_mL + S_lH) + S_lL give acc exactly; each scaled term "
                 "and their sum are below 2**63.", "spec", PROVED,
                 PROVED if ok and sum(terms.values()) < 2 ** 63 else COUNTEREXAMPLE,
                 "SymPy polynomial identity (expand to 0) and exact integer bounds",
                 f"expand((16384 top + 128 mid + lo)(128 H + L) - (2**21 top H + 2**14 (top L + mid H) + "
                 f"2**7 (mid L + lo H) + lo L)) = {six}", round(time.perf_counter() - t0, 6), None,
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
    ok = all(float(q_max(L)) == q_max(L) and q_max(L) < 2 ** 53 for L in (1, 2, 3))
    return Claim("scale_divisor_exact", "The dequantization divisors 127, 127 * 128 = 16256 and 127 * 128**2 = 2080768 "
                 "of HSER-2.5 are exact binary64 values, so the scale is one correctly rounded division.", "spec", PROVED,
                 PROVED if ok else COUNTEREXAMPLE, "exact evaluation",
                 "float(127) == 127 and float(16256) == 16256 and float(2080768) == 2080768",
                 round(time.perf_counter() - t0, 6))


def scale_normal_claim() -> Claim:
    """HSER-2.5 / HSER-3.3: a / S is normal for every binary32 a > 0 and S of 1, 2, 3 limbs; logits stay finite."""
    a = z3.FP("a", smt.F32)
    a64 = z3.fpToFP(smt.RNE, a, smt.F64)
    goals = []
    for L in (1, 2, 3):
        sc = z3.fpDiv(smt.RNE, a64, z3.FPVal(float(q_max(L)), smt.F64))
        goals += [z3.fpIsNormal(sc), z3.fpGEQ(sc, z3.FPVal(2.0 ** -170, smt.F64))]
    return z3_claim("scale_normal", "For every binary32 a > 0 (subnormals included, FLT_MAX included) and L = 1, 2, 3, "
                    "the HSER-2.5 scale binary64(a) / (127 * 128**(L - 1)) is a normal binary64 number, at least "
                    "2**-170. With |acc| <= 2**17 S_x S_w (HSER-3.2, scale = a / S) every non-zero logit of HSER-3.3 "
                    "lies in [2**-170 * 2**-170, 2**17 * FLT_MAX**2 (1 + 2**-52)**2] ~ [2**-340, 2**273]: finite and "
                    "normal, so the two multiplications of HSER-3.3 never overflow or lose bits to underflow.",
                    [z3.Not(z3.fpIsNaN(a)), z3.Not(z3.fpIsInf(a)), z3.fpGT(a, f32v(0.0))], z3.And(*goals),
                    method="Z3 floating-point (binary32 widened to binary64, binary64 division): the negation is unsat")


def prove() -> Certificate:
    t0 = time.perf_counter()
    claims = [prescale_claim(), reciprocal_claim(), largest_product_claim(), round_claim(1), round_claim(2),
              round_claim(3), rounding_monotone_claim(), rounding_odd_claim(), products_exact_claim(), chain_claim(),
              limb_split_claim(), limb_split_3_claim(),
              partial_sum_claim(), *(accumulator_claim(a, b) for a in (1, 2, 3) for b in (1, 2)),
              accumulator_claim(3, 3), recombination_claim(), recombination_3_claim(),
              conversion_claim(), scale_divisor_claim(), scale_normal_claim()]
    cert = Certificate(
        NAME, TITLE,
        "For every finite binary32 row and every d <= 2**17: quantized values satisfy |Q| <= 127 * 128**(L - 1) "
        "without clamping (127 for one limb, 16256 for two, 2080768 for three); the limb splits (two and three "
        "limbs) are exact with int8 limbs; every int32 limb sum and every partial sum fits int32; for every limb "
        "count TIER-1.5 allows (hidden 1-3, weights 1-2) the combined accumulator and its partial sums stay below "
        "2**53, fit int64 and convert to binary64 exactly, while 3 + 3 limbs could exceed 2**53 (the reason they "
        "are excluded); every dequantization scale is a normal binary64 number.",
        CLAUSES, PAPER, claims,
        notes=["The binary32 lemmas quantify over every binary32 value, subnormals included; the uninterpreted chain "
               "uses them only at the terms HSER-2.3 computes.",
               "Rounding is not assumed monotone: a direct Z3 query over two binary32 products does not finish, so "
               "the chain goes through the binary64 products, which are exact (products_exact_in_binary64), and "
               "the binary64 -> binary32 conversion, proved monotone and odd (rounding_monotone, rounding_odd). "
               "What remains is IEEE 754's definition of multiplication: the exact result, rounded once.",
               "Integer claims are induction steps over the number of terms, so they hold for every summation order, "
               "tile shape and batch split (HSER-3.1)."],
        method=__doc__)
    return finish(cert, t0)
