"""The sign of a zero maximum does not change any softmax output (OVW-2.5, HSER-6.6).

When the largest logit is zero, ``max`` may return -0.0 or +0.0 (OVW-2.5). Chain of lemmas, each on
Z3's IEEE theory with SMT equality (bit identity):

1. ``z - (+0.0)`` and ``z - (-0.0)`` (binary64) are equal bit for bit unless both are zeros;
2. rounding a binary64 zero to binary32 gives a binary32 zero, and a zero is never ``< -87``;
3. ``canonical_exp(+0.0) = canonical_exp(-0.0) = 1.0`` in the spec's binary32 operations;
4. so every ``e_j`` has the same bits for either maximum (the lemmas as ground instances), and the
   tree sum and the quotients ``e_j / S``, functions of the ``e_j`` alone, do too.
"""
from __future__ import annotations

import time

import z3

from . import smt
from .certificate import COUNTEREXAMPLE, PROVED, Certificate, Claim, finish, fp_bits, z3_claim

NAME = "softmax_zero_sign"
TITLE = "A zero maximum's sign does not change any softmax output"
CLAUSES = ["OVW-2.5", "HSER-6.6", "HSER-6.2", "HSER-6.1"]
PAPER = ""

PZ64, NZ64 = z3.fpPlusZero(smt.F64), z3.fpMinusZero(smt.F64)
FLUSH = z3.FPVal(-87.0, smt.F64)


def sub64(a, b):
    return z3.fpSub(smt.RNE, a, b)


def to32(d):
    return z3.fpFPToFP(smt.RNE, d, smt.F32)


def difference_claim():
    z = z3.FP("z", smt.F64)
    dp, dm = sub64(z, PZ64), sub64(z, NZ64)
    return z3_claim("difference_differs_only_in_zero_sign", "For every binary64 logit z that is not NaN, "
                    "d+ = z - (+0.0) and d- = z - (-0.0) are equal bit for bit, or both are zeros.",
                    [z3.Not(z3.fpIsNaN(z))], z3.Or(dp == dm, z3.And(z3.fpIsZero(dp), z3.fpIsZero(dm))),
                    method="Z3 floating-point (binary64), SMT equality: the negation is unsat")


def zero_path_claim():
    d = z3.FP("d", smt.F64)
    return z3_claim("zero_stays_zero", "A binary64 zero d is not below -87 (so it is not flushed) and rounds "
                    "to a binary32 zero.", [z3.fpIsZero(d)],
                    z3.And(z3.Not(z3.fpLT(d, FLUSH)), z3.fpIsZero(to32(d))),
                    method="Z3 floating-point: the negation is unsat")


def cexp_of_zero_claim():
    t = z3.FP("t", smt.F32)
    one = z3.FPVal(1.0, smt.F32)
    return z3_claim("canonical_exp_of_signed_zero", "canonical_exp(+0.0) = canonical_exp(-0.0) = 1.0 bit for "
                    "bit, computed by the binary32 operations of HSER-6.2 with the constants of HSER-6.3 (read "
                    "from the spec text).", [z3.fpIsZero(t)], smt.canonical_exp(t) == one,
                    method="Z3 floating-point (binary32), SMT equality: the negation is unsat over both zeros")


def exp_input_claim():
    """e_j is the same bits for m = +0.0 and m = -0.0, from lemmas 1-3 as ground instances."""
    z = z3.FP("z", smt.F64)
    cexp = z3.Function("canonical_exp", smt.F32, smt.F32)
    one = z3.FPVal(1.0, smt.F32)

    def e(m):
        d = sub64(z, m)
        return z3.If(z3.fpLT(d, FLUSH), z3.fpPlusZero(smt.F32), cexp(to32(d)))

    dp, dm = sub64(z, PZ64), sub64(z, NZ64)
    lemmas = [
        z3.Or(dp == dm, z3.And(z3.fpIsZero(dp), z3.fpIsZero(dm))),               # claim 1, at z
        z3.Implies(z3.fpIsZero(dp), z3.fpIsZero(to32(dp))),                      # claim 2, at d+ and d-
        z3.Implies(z3.fpIsZero(dm), z3.fpIsZero(to32(dm))),
        cexp(z3.fpPlusZero(smt.F32)) == one, cexp(z3.fpMinusZero(smt.F32)) == one,   # claim 3
    ]
    return z3_claim("exp_terms_identical", "For every non-NaN logit z: e = (d < -87 ? +0.0 : canonical_exp("
                    "binary32(d))) with d = z - m gives the same bits for m = +0.0 and m = -0.0. canonical_exp "
                    "is uninterpreted; the claims above enter as ground instances. S = tree_sum(e) and p_j = "
                    "e_j / S are functions of the e_j alone, so every probability is the same too.",
                    [z3.Not(z3.fpIsNaN(z))] + lemmas, e(PZ64) == e(NZ64),
                    method="Z3 floating-point + uninterpreted canonical_exp with ground instances of the lemmas")


def encoding_check_claim():
    """The Z3 encoding of canonical_exp computes what the reference computes, on sample inputs."""
    import numpy as np

    from lite_llm.reference.cexp import canonical_exp

    t0 = time.perf_counter()
    ts = np.array([-0.0, 0.0, -1e-45, -1e-8, -0.5, -0.6931472, -1.0, -10.0, -59.954247, -86.99999, -87.0],
                  np.float32)
    t = z3.FP("t", smt.F32)
    term = smt.canonical_exp(t)
    bad = None
    for x in ts:
        gb = fp_bits(z3.simplify(z3.substitute(term, (t, z3.FPVal(float(x), smt.F32)))))
        rb = int(canonical_exp(np.array([x], np.float32)).view(np.uint32)[0])
        if gb != rb:
            bad = {"t": repr(float(x)), "encoding": f"0x{gb:08x}", "reference": f"0x{rb:08x}"}
            break
    return Claim("encoding_matches_reference", f"The Z3 encoding of canonical_exp (from the spec's text) and "
                 f"lite_llm.reference.cexp.canonical_exp give the same bits on {len(ts)} inputs in [-87, 0], "
                 "both zeros included (a check of the encoding, not a proof).", "spec", PROVED,
                 PROVED if bad is None else COUNTEREXAMPLE, "evaluation of the Z3 term on sample inputs",
                 "canonical_exp(t) as in lite_llm.proofs.smt.canonical_exp", round(time.perf_counter() - t0, 6), bad)


def prove() -> Certificate:
    t0 = time.perf_counter()
    claims = [difference_claim(), zero_path_claim(), cexp_of_zero_claim(), exp_input_claim(),
              encoding_check_claim()]
    cert = Certificate(
        NAME, TITLE,
        "In the canonical softmax (HSER-6.6), replacing a maximum m = +0.0 by m = -0.0 (or the reverse) changes "
        "no output bit: d_j = z_j - m differs at most in the sign of a zero, a zero is never flushed and "
        "rounds to a binary32 zero, and canonical_exp of either zero is exactly 1.0. This is why OVW-2.5 lets "
        "max return either zero.",
        CLAUSES, PAPER, claims,
        notes=["Ranking (HSER-5.1) compares the logits z_j themselves, where -0.0 = +0.0, so it does not "
               "depend on m at all.",
               "Subnormal logits need no special case: every claim quantifies over all binary64 / binary32 "
               "values, subnormals included."],
        method=__doc__)
    return finish(cert, t0)
