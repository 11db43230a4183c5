"""Top-k has exactly one answer: the ranking order is a strict total order (HSER-5.1, HSER-5.2).

Candidate i precedes j when z_i > z_j, or z_i = z_j and key(i) < key(j) (unsigned), with binary64
logits compared as IEEE numbers (so -0.0 = +0.0) and keys distinct (HSER-4.5, certificate
``seed_injectivity``). The order's four properties are proved on Z3's floating-point and bit-vector
theories; uniqueness of the sorted sequence is proved for a symbolic number of candidates n by the
first-difference argument, without enumerating permutations.
"""
from __future__ import annotations

import time

import z3

from . import smt
from .certificate import COUNTEREXAMPLE, Certificate, finish, z3_claim

NAME = "topk_determinism"
TITLE = "The ranking is a strict total order, so top-k has exactly one answer"
CLAUSES = ["HSER-5.1", "HSER-5.2", "HSER-5.3", "HSER-4.5", "HSER-1.3", "HSER-3.3"]
PAPER = "sections 5.2 and 11 (TopK_stable with seeded tie-breaking)"


def precedes(zi, ki, zj, kj):
    """HSER-5.1: i before j when z_i > z_j, or z_i = z_j (IEEE) and key_i < key_j (unsigned)."""
    return z3.Or(z3.fpGT(zi, zj), z3.And(z3.fpEQ(zi, zj), z3.ULT(ki, kj)))


def candidates(names: str, allow_nan: bool = False):
    """Symbolic candidates (z, key) with binary64 logits; logits are never NaN unless allow_nan."""
    out, assumptions = [], []
    for n in names.split():
        z, k = z3.FP(f"z_{n}", smt.F64), z3.BitVec(f"key_{n}", 64)
        out.append((z, k))
        if not allow_nan:
            assumptions.append(z3.Not(z3.fpIsNaN(z)))
    return out, assumptions


def order_claims() -> list:
    claims = []
    (i, j, k), nonan = candidates("i j k")

    claims.append(z3_claim("irreflexive", "No candidate precedes itself.", nonan, z3.Not(precedes(*i, *i)),
                           method="Z3 floating-point (binary64) + bit-vectors: the negation is unsat"))

    claims.append(z3_claim("asymmetric", "If i precedes j then j does not precede i.",
                           nonan + [precedes(*i, *j)], z3.Not(precedes(*j, *i)),
                           method="Z3 floating-point (binary64) + bit-vectors: the negation is unsat"))

    claims.append(z3_claim("transitive", "If i precedes j and j precedes k then i precedes k.",
                           nonan + [precedes(*i, *j), precedes(*j, *k)], precedes(*i, *k),
                           method="Z3 floating-point (binary64) + bit-vectors: the negation is unsat"))

    claims.append(z3_claim("total", "Any two candidates with distinct keys are ordered one way or the other "
                           "(logits not NaN).", nonan + [i[1] != j[1]], z3.Or(precedes(*i, *j), precedes(*j, *i)),
                           method="Z3 floating-point (binary64) + bit-vectors: the negation is unsat"))

    claims.append(z3_claim("signed_zeros_tie", "A logit of -0.0 and one of +0.0 are equal scores: which "
                           "comes first is decided by the keys alone.",
                           [i[0] == z3.fpMinusZero(smt.F64), j[0] == z3.fpPlusZero(smt.F64)],
                           precedes(*i, *j) == z3.ULT(i[1], j[1]),
                           method="Z3 floating-point (binary64): the negation is unsat"))

    (a, b), _ = candidates("a b", allow_nan=True)
    claims.append(z3_claim("total_with_nan", "The order would stay total if logits could be NaN (that is, "
                           "without HSER-1.3's rejection of non-finite inputs).", [a[1] != b[1]],
                           z3.Or(precedes(*a, *b), precedes(*b, *a)), expected=COUNTEREXAMPLE,
                           show=[a[0], a[1], b[0], b[1]],
                           method="Z3 floating-point: a model of the negation is a pair that neither "
                                  "precedes the other; HSER-1.3 and HSER-3.3 keep NaN out"))
    return claims


def ranking_unique_claim():
    """Two sequences that both sort the same n candidates by a strict order are equal everywhere.

    Sequences r1, r2 : Int -> Int (positions to candidates), symbolic n. Suppose they differ; let i be the
    first position where they do (a = r1[i], b = r2[i]). b occurs in r1 at some p and a in r2 at some q
    (both are arrangements of the same candidates). All lemmas enter as ground instances at these terms:
    prefix agreement (positions below i), injectivity of each sequence, sortedness (an earlier position
    precedes a later one), and asymmetry of the order (claim ``asymmetric``).
    """
    Int = z3.IntSort()
    r1, r2 = z3.Function("r1", Int, Int), z3.Function("r2", Int, Int)
    prec = z3.Function("precedes", Int, Int, z3.BoolSort())
    n, i, p, q = z3.Ints("n i p q")
    a, b = r1(i), r2(i)
    premises = [
        0 <= i, i < n,                                                  # i: the first position that differs
        0 <= p, p < n, r1(p) == b, 0 <= q, q < n, r2(q) == a,           # b is somewhere in r1, a in r2
        z3.Implies(p < i, r1(p) == r2(p)), z3.Implies(q < i, r1(q) == r2(q)),    # agreement before i
        z3.Implies(p != i, r2(p) != r2(i)), z3.Implies(q != i, r1(q) != r1(i)),  # injective sequences
        z3.Implies(i < p, prec(r1(i), r1(p))), z3.Implies(i < q, prec(r2(i), r2(q))),  # sorted
        z3.Not(z3.And(prec(a, b), prec(b, a))),                         # asymmetry, at (a, b)
    ]
    return z3_claim("ranking_unique", "For every number of candidates n, two rankings of the same candidates "
                    "that are both sorted by a strict total order are equal at every position. Hence the "
                    "ranking is unique and top-k (its first min(k, n) entries, HSER-5.2) has one answer on every "
                    "device. First-difference argument with symbolic n; the lemmas enter as ground instances.",
                    premises, a == b,
                    method="Z3 (QF_UFLIA): uninterpreted sequences and order, ground instances of the "
                           "lemmas at the first differing position")


def prove() -> Certificate:
    t0 = time.perf_counter()
    claims = order_claims() + [ranking_unique_claim()]
    cert = Certificate(
        NAME, TITLE,
        "The relation of HSER-5.1 (higher binary64 logit first, equal logits by ascending 64-bit tie key) is "
        "irreflexive, asymmetric, transitive and total on candidates with non-NaN logits and distinct keys. "
        "So the sorted order of any n candidates is unique, and top-k, its first min(k, n) entries, has "
        "exactly one answer: routing needs no library's notion of a stable sort.",
        CLAUSES, PAPER, claims,
        notes=["Keys are distinct because the tie key is a bijection of the candidate index for every level "
               "seed (certificate seed_injectivity, claim tie_key_injective).",
               "Enumerating permutations does not scale (it dies near n = 16); the first-difference argument "
               "is independent of n.",
               "NaN is the one value that breaks totality (claim total_with_nan); HSER-1.3 rejects "
               "non-finite hidden states and HSER-3.3 makes every finite input give a finite logit."],
        method=__doc__)
    return finish(cert, t0)
