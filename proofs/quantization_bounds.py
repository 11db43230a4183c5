"""Quantized values and exact logits stay in range for every d the spec allows (HSER-2, HSER-3).

- HSER-2.3: for binary32 x and a = max|x_i| > 0, fl(x / a) is in [-1, 1], fl(fl(x / a) * 127) in
  [-127, 127], so Q = round_half_even(y * 2**(7 (L - 1))) has |Q| <= 127 * 128**(L - 1) (binary32 lemmas,
  joined by ground instances);
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


def division_claim() -> Claim:
    x, a = z3.FPs("x a", smt.F32)
    finite = [z3.Not(z3.fpIsNaN(v)) for v in (x, a)] + [z3.Not(z3.fpIsInf(v)) for v in (x, a)]
    return z3_claim("ratio_at_most_one", "For binary32 x and a with a > 0 finite and |x| <= a (a is the row's absolute "
                    "maximum, HSER-2.1): |fl(x / a)| <= 1. Rounding is monotone and 1 is a binary32 number, so the "
                    "rounded quotient cannot pass it; subnormal x and a included.",
                    finite + [z3.fpGT(a, f32v(0.0)), z3.fpLEQ(z3.fpAbs(x), a)],
                    z3.fpLEQ(z3.fpAbs(z3.fpDiv(smt.RNE, x, a)), f32v(1.0)),
                    method="Z3 floating-point (binary32): the negation is unsat")


def scale_claim() -> Claim:
    u = z3.FP("u", smt.F32)
    return z3_claim("scaled_at_most_127", "For binary32 u with |u| <= 1: |fl(u * 127)| <= 127.",
                    [z3.fpLEQ(z3.fpAbs(u), f32v(1.0))],
                    z3.fpLEQ(z3.fpAbs(z3.fpMul(smt.RNE, u, f32v(127.0))), f32v(127.0)),
                    method="Z3 floating-point (binary32): the negation is unsat")


def round_claim(limbs: int) -> Claim:
    y = z3.FP("y", smt.F32)
    scaled = z3.fpMul(smt.RNE, y, f32v(float(2 ** (7 * (limbs - 1)))))
    q = z3.fpRoundToIntegral(smt.RNE, scaled)
    exact = z3.fpDiv(smt.RNE, scaled, f32v(float(2 ** (7 * (limbs - 1))))) == y
    return z3_claim(f"q_bound_{limbs}_limb{'s' if limbs > 1 else ''}", f"For binary32 y with |y| <= 127 and {limbs} "
                    f"limb{'s' if limbs > 1 else ''}: y * 2**{7 * (limbs - 1)} is exact and Q = round_half_even(y * "
                    f"2**{7 * (limbs - 1)}) has |Q| <= {q_max(limbs)}.", [z3.fpLEQ(z3.fpAbs(y), f32v(127.0))],
                    z3.And(exact, z3.fpLEQ(z3.fpAbs(q), f32v(float(q_max(limbs))))),
                    method="Z3 floating-point (binary32): the negation is unsat")


def chain_claim() -> Claim:
    """The three lemmas joined at the terms of HSER-2.3, with the operations uninterpreted."""
    R = z3.RealSort()
    ratio, times127 = z3.Function("ratio", R, R, R), z3.Function("times127", R, R)
    x, a = z3.Reals("x a")
    u = ratio(x, a)
    y = times127(u)
    premises = [a > 0, z3.Abs(x) <= a,
                z3.Implies(z3.And(a > 0, z3.Abs(x) <= a), z3.Abs(u) <= 1),       # ratio_at_most_one at (x, a)
                z3.Implies(z3.Abs(u) <= 1, z3.Abs(y) <= 127)]                    # scaled_at_most_127 at u
    return z3_claim("q_chain", "Joined at the terms of HSER-2.3 (u = fl(x / a), y = fl(u * 127)): every quantized "
                    "input y satisfies |y| <= 127, the premise of q_bound_1_limb and q_bound_2_limbs, so |Q| <= "
                    "127 * 128**(L - 1) without clamping.", premises, z3.Abs(y) <= 127,
                    method="Z3 (UF + linear real arithmetic): the lemmas as ground instances")


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
    claims = [division_claim(), scale_claim(), round_claim(1), round_claim(2), chain_claim(), limb_split_claim(),
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
               "Integer claims are induction steps over the number of terms, so they hold for every summation order, "
               "tile shape and batch split (HSER-3.1)."],
        method=__doc__)
    return finish(cert, t0)
