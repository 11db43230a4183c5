"""How many experts a token activates (HSER-9.1; paper section 5.3).

A selection is modelled as k_tier * k_group * k_expert *slots* (i, j, l): tier slot i holds the i-th
chosen tier t_i, group slot (i, j) its j-th chosen group, expert slot (i, j, l) that group's l-th
chosen expert. A level takes min(k, candidates) (HSER-5.2, HSER-5.3), so tier slot i is filled when
i < |T|, group slot (i, j) when j < G(t_i), expert slot (i, j, l) when l < E(t_i). The tier count |T|
and the functions G, E are symbolic (uninterpreted), so every claim holds for every configuration
with these fan-outs; the fan-outs themselves range over a grid, and the bound is also proved for
symbolic fan-outs by induction.
"""
from __future__ import annotations

import itertools
import time

import z3

from .certificate import COUNTEREXAMPLE, Certificate, finish, z3_claim

NAME = "active_set_cardinality"
TITLE = "The active set has exactly K members when every level has enough candidates, at most K always"
CLAUSES = ["HSER-9.1", "HSER-9.2", "HSER-5.2", "HSER-5.3"]
PAPER = "section 5.3 (|E_active| = k_tier k_g k_e)"
# the grid of (k_tier, k_group, k_expert): every fan-out up to 3 per level, and a few large ones
FANOUTS = tuple(itertools.product((1, 2, 3), repeat=3)) + ((2, 4, 8), (4, 4, 4), (8, 8, 8))


FANOUTS_TEXT = "every k in {1, 2, 3}^3, and (2, 4, 8), (4, 4, 4), (8, 8, 8)"
FANOUT_SHOWN = (1, 2, 2)     # the fan-out whose query a certificate prints (the paper's corollary's)


def zmin(a, b):
    return z3.If(a < b, a, b)


def product_small(a, b, amax: int):
    """a * b for an integer 1 <= a <= amax, written as a linear sum of cases (keeps the query linear)."""
    return z3.Sum([z3.If(a == x, x * b, 0) for x in range(1, amax + 1)])


def filled_pairs(G, E, k2: int, k3: int):
    """Filled (group, expert) slots under one filled tier slot: group slot j < G, expert slot l < E. The model's
    term; tier_lemma proves it equal to min(k2, G) * min(k3, E) and count_formula uses it at the chosen tiers."""
    return z3.Sum([z3.If(z3.And(j < G, l < E), 1, 0) for j in range(k2) for l in range(k3)])


class Slots:
    """The slot model of one token's selection for fan-outs k = (k1, k2, k3)."""

    def __init__(self, k):
        self.k = k1, k2, k3 = k
        self.n = z3.Int("n_tiers_in_T")                             # |T|
        self.G = z3.Function("G", z3.IntSort(), z3.IntSort())       # groups of a tier
        self.E = z3.Function("E", z3.IntSort(), z3.IntSort())       # experts per group of a tier
        self.tier = [z3.Int(f"t_{i}") for i in range(k1)]           # chosen tier in slot i
        self.premises = [self.n >= 1] + [c for t in self.tier for c in (self.G(t) >= 1, self.E(t) >= 1)]

    def tier_filled(self, i):
        return i < self.n

    def tier_slot_count(self, i):
        """Filled expert slots under tier slot i, if it is filled."""
        _, k2, k3 = self.k
        t = self.tier[i]
        return filled_pairs(self.G(t), self.E(t), k2, k3)

    def count(self):
        return z3.Sum([z3.If(self.tier_filled(i), self.tier_slot_count(i), 0) for i in range(self.k[0])])

    def spec_term(self, i):
        """HSER-9.1's term of tier slot i: min(k_group, G_t) * min(k_expert, E_t)."""
        _, k2, k3 = self.k
        t = self.tier[i]
        return product_small(zmin(k2, self.G(t)), zmin(k3, self.E(t)), k2)

    def feasible(self):
        k1, k2, k3 = self.k
        return [self.n >= k1] + [c for t in self.tier for c in (self.G(t) >= k2, self.E(t) >= k3)]


def grid_claim(name, statement, build, fanouts=FANOUTS, expected="proved", method=""):
    """One claim over a grid of fan-outs: one query per k, reported together."""
    t0 = time.perf_counter()
    readable = FANOUT_SHOWN if FANOUT_SHOWN in fanouts else fanouts[0]
    results = [(k, z3_claim(name, "", *build(k), keep_form=k == readable)) for k in fanouts]
    bad = [k for k, c in results if c.result != expected]
    k_shown = bad[0] if bad else readable
    shown = dict(results)[k_shown]
    if not shown.solver_form:                                  # a failing fan-out: run it again for its form
        shown = z3_claim(name, "", *build(k_shown))
    shown.name, shown.statement, shown.expected = name, statement, expected
    shown.method = method + f"; one query per fan-out, {len(fanouts)} fan-outs (the solver form shown is for " \
                            f"k = {k_shown})"
    shown.time_s = round(time.perf_counter() - t0, 6)
    shown.details = {**shown.details, "fan-outs (k_tier, k_group, k_expert)": FANOUTS_TEXT if fanouts == FANOUTS
                     else [list(k) for k in fanouts], "fan-outs not as expected": [list(k) for k in bad]}
    return shown


def tier_lemma(k2: int, k3: int):
    """Filled (group, expert) slots of a filled tier slot = min(k2, G) * min(k3, E)."""
    G, E = z3.Ints("G E")
    return [G >= 1, E >= 1], filled_pairs(G, E, k2, k3) == product_small(zmin(k2, G), zmin(k3, E), k2)


def spec_count(m: Slots):
    """HSER-9.1's count written from the spec's text, independently of the slot model's predicates: the
    chosen tiers are the first min(k_tier, |T|) (HSER-5.3, PARAM-3.2's |S|), each contributing
    min(k_group, G_t) * min(k_expert, E_t). Uses neither ``tier_filled`` nor ``count``."""
    k1 = m.k[0]
    chosen = zmin(k1, m.n)                                      # |S| = min(k_tier, |T|)
    return z3.Sum([z3.If(z3.IntVal(i) < chosen, m.spec_term(i), 0) for i in range(k1)])


def formula(k):
    """count (the slot model) = HSER-9.1's sum (spec_count), with the tier lemma as instances."""
    m = Slots(k)
    lemma = [m.tier_slot_count(i) == m.spec_term(i) for i in range(k[0])]   # tier_lemma at G(t_i), E(t_i)
    return m.premises + lemma, m.count() == spec_count(m)


def at_most_k(k):
    m = Slots(k)
    return m.premises, m.count() <= k[0] * k[1] * k[2]


def exactly_k(k):
    m = Slots(k)
    return m.premises + m.feasible(), m.count() == k[0] * k[1] * k[2]


def bound_every_fanout_claim():
    """Induction step for symbolic fan-outs: after i tier slots at most i*k2*k3 experts are filled."""
    k2, k3, i, c, a, b = z3.Ints("k_group k_expert i C_i a b")
    filled = z3.Bool("tier_slot_i_filled")
    premises = [k2 >= 1, k3 >= 1, i >= 0, 0 <= c, c <= i * k2 * k3, 1 <= a, a <= k2, 1 <= b, b <= k3]
    goal = c + z3.If(filled, a * b, 0) <= (i + 1) * k2 * k3
    return z3_claim("at_most_K_every_fanout", "For symbolic k_group, k_expert: if the first i tier slots fill at "
                    "most i * k_group * k_expert expert slots, the first i + 1 fill at most (i + 1) * k_group * "
                    "k_expert (a filled tier slot adds min(k_group, G) * min(k_expert, E) <= k_group * k_expert). "
                    "By induction on i up to k_tier, |active set| <= k_tier * k_group * k_expert = K for every "
                    "fan-out.", premises, goal, method="Z3 nonlinear integer arithmetic: the induction step")


def slots_distinct_claim():
    """Distinct slots name distinct (tier, group, expert) triples, so the set has as many members as slots."""
    Int = z3.IntSort()
    tier = z3.Function("tier", Int, Int)
    group = z3.Function("group", Int, Int, Int)
    expert = z3.Function("expert", Int, Int, Int, Int)
    i, j, l, i2, j2, l2 = z3.Ints("i j l i2 j2 l2")
    premises = [
        z3.Or(i != i2, j != j2, l != l2),
        z3.Implies(i != i2, tier(i) != tier(i2)),                 # top-k picks distinct tiers (HSER-5.2)
        z3.Implies(j != j2, group(i, j) != group(i, j2)),         # distinct groups within a chosen tier
        z3.Implies(l != l2, expert(i, j, l) != expert(i, j, l2)),  # distinct experts within a chosen group
    ]
    goal = z3.Or(tier(i) != tier(i2), group(i, j) != group(i2, j2), expert(i, j, l) != expert(i2, j2, l2))
    return z3_claim("slots_distinct", "Two different filled slots name different (tier, group, expert) triples: "
                    "top-k returns distinct candidates at each level, and a group index is only compared within "
                    "its tier, an expert index within its group. So the active set has exactly as many members "
                    "as filled slots.", premises, goal,
                    method="Z3 (QF_UFLIA): symbolic slot indices, ground instances of per-level distinctness")


def paper_claim(k=(1, 2, 2)):
    m = Slots(k)
    show = {"|T|": m.n, **{f"G(t_{i})": m.G(m.tier[i]) for i in range(k[0])},
            **{f"E(t_{i})": m.E(m.tier[i]) for i in range(k[0])}, "active experts": m.count()}
    return z3_claim("paper_always_K", f"The paper's |E_active| = k_tier k_g k_e holds for every configuration "
                    f"(checked at k = {k}).", m.premises, m.count() == k[0] * k[1] * k[2],
                    expected=COUNTEREXAMPLE, source="paper", show=show,
                    method="Z3 linear integer arithmetic: a model of the negation")


def prove() -> Certificate:
    t0 = time.perf_counter()
    pairs = sorted({(k2, k3) for _, k2, k3 in FANOUTS})
    t_lem = time.perf_counter()
    lemmas = [(p, z3_claim(f"tier_lemma_{p}", "", *tier_lemma(*p), keep_form=False)) for p in pairs]
    p_shown = next((p for p, c in lemmas if not c.ok), FANOUT_SHOWN[1:])
    lemma = z3_claim("tier_slot_count", "", *tier_lemma(*p_shown))
    lemma.statement = ("A filled tier slot with G groups of E experts fills exactly min(k_group, G) * min(k_expert, "
                       "E) expert slots, for every G, E >= 1.")
    lemma.method = (f"Z3 linear integer arithmetic, one query per (k_group, k_expert) in {pairs} (the solver form "
                    f"shown is for {p_shown})")
    lemma.details["pairs not proved"] = [list(p) for p, c in lemmas if not c.ok]
    lemma.time_s = round(time.perf_counter() - t_lem, 6)
    claims = [
        lemma,
        grid_claim("count_formula", "The number of filled expert slots is HSER-9.1's sum over the min(k_tier, |T|) "
                   "chosen tiers (HSER-5.3) of min(k_group, G_t) * min(k_expert, E_t), for every |T| >= 1 and all "
                   "G, E >= 1. The two sides are independent: the left counts the slot model's filled slots, the "
                   "right is the clause's formula with |S| = min(k_tier, |T|) written out (it does not reuse the "
                   "model's filling predicate), so a model that fills one tier slot too many fails here.", formula,
                   method="Z3 linear integer arithmetic, tier_slot_count as ground instances"),
        grid_claim("at_most_K", "For every configuration, at most K = k_tier * k_group * k_expert expert slots "
                   "are filled.", at_most_k, method="Z3 linear integer arithmetic"),
        grid_claim("exactly_K_when_enough_candidates", "When |T| >= k_tier and every chosen tier has G_t >= "
                   "k_group and E_t >= k_expert, exactly K expert slots are filled.", exactly_k,
                   method="Z3 linear integer arithmetic"),
        bound_every_fanout_claim(),
        slots_distinct_claim(),
        paper_claim(),
    ]
    cert = Certificate(
        NAME, TITLE,
        "A token's active set has sum over chosen tiers of min(k_group, G_t) * min(k_expert, E_t) members: at "
        "most K = k_tier * k_group * k_expert for every configuration, and exactly K when the TierSet has at "
        "least k_tier tiers and every chosen tier has at least k_group groups of at least k_expert experts. "
        "The paper's unconditional |E_active| = K is false when a level has fewer candidates than its k.",
        CLAUSES, PAPER, claims,
        notes=["Slots instead of one boolean per expert make the query independent of the number of tiers, "
               "groups and experts; one boolean per expert stops scaling near 256 experts.",
               f"The grid covers {FANOUTS_TEXT}; at_most_K_every_fanout covers all fan-outs symbolically "
               "(induction over tier slots)."],
        method=__doc__)
    return finish(cert, t0)
