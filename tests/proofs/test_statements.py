"""Each fast statement proves what it says, and every counterexample is checked again here, independently.

Models are re-evaluated with plain Python integers, NumPy binary32 arithmetic or the reference
implementation, never with the solver that produced them. Mutation tests show the proofs are not
vacuous: weaken one lemma or premise and the same query finds a counterexample.
"""
from __future__ import annotations

import re
from functools import lru_cache

import numpy as np
import pytest
import z3

from lite_llm.proofs import runner
from lite_llm.proofs.certificate import COUNTEREXAMPLE, PROVED, z3_claim

FAST = [n for n in runner.STATEMENTS if n != "canonical_exp_accuracy"]


@lru_cache(maxsize=None)
def cert(name):
    return runner.prove_isolated(name)          # a fresh process, as lite-llm prove runs it


def claim(name, claim_name):
    return next(c for c in cert(name).claims if c.name == claim_name)


def word(v) -> int:
    """An integer from a model value: an int, or 'decimal (0xHEX)' / '0xHEX (decimal)'."""
    if isinstance(v, int):
        return v
    return int(re.search(r"0x([0-9a-f]+)", v).group(1), 16)


def f32(v) -> np.float32:
    return np.uint32(word(v)).view(np.float32)


def f64(v) -> np.float64:
    return np.uint64(word(v)).view(np.float64)


@pytest.mark.parametrize("name", FAST)
def test_statement_gives_every_expected_result(name):
    c = cert(name)
    table = "\n".join(f"{x.name}: {x.result} (expected {x.expected}) {x.details}" for x in c.claims)
    print(table)
    assert c.ok, table
    assert any(x.expected == PROVED for x in c.claims)


@pytest.mark.parametrize("name", FAST)
def test_committed_certificate_is_current(name):
    """The committed certificate has the claims and results a fresh run gives (regenerate with lite-llm prove)."""
    import json

    committed = json.loads((runner.DEFAULT_OUT / f"{name}.json").read_text())
    fresh = [(c.name, c.expected, c.result) for c in cert(name).claims]
    assert fresh == [(c["name"], c["expected"], c["result"]) for c in committed["claims"]], \
        f"proofs/certificates/{name}.json is stale: run `lite-llm prove --only {name}`"


def test_paper_seed_collisions_are_real():
    m = claim("seed_injectivity", "paper_level3_seeds_distinct").model
    s, t1, g1, t2, g2 = (word(m[k]) for k in ("s", "t1", "g1", "t2", "g2"))
    assert (t1, g1) != (t2, g2) and s ^ t1 ^ g1 == s ^ t2 ^ g2
    m = claim("seed_injectivity", "paper_level2_level3_distinct").model
    s, t, t3, g3 = (word(m[k]) for k in ("s", "t", "t3", "g3"))
    assert t != t3 and s ^ t == s ^ t3 ^ g3
    m = claim("seed_injectivity", "level_word_needs_ranges").model
    w1, w2 = ((word(m[f"l{i}"]) << 62 | word(m[f"t{i}"]) << 32 | word(m[f"g{i}"])) % 2 ** 64 for i in (1, 2))
    assert w1 == w2 and (m["t1"], m["g1"]) != (m["t2"], m["g2"])


def test_nan_breaks_totality_in_the_model():
    m = claim("topk_determinism", "total_with_nan").model
    za, zb = f64(m["z_a"]), f64(m["z_b"])
    ka, kb = word(m["key_a"]), word(m["key_b"])

    def precedes(z1, k1, z2, k2):
        return bool(z1 > z2 or (z1 == z2 and k1 < k2))

    assert ka != kb and not precedes(za, ka, zb, kb) and not precedes(zb, kb, za, ka)


def test_positive_zero_padding_model_changes_bits():
    m = claim("tree_sum_padding", "pos_zero_padding_same_bits").model
    v = [f32(m[f"v{i}"]) for i in range(3)]
    minus = (v[0] + v[1]) + (v[2] + np.float32(-0.0))
    plus = (v[0] + v[1]) + (v[2] + np.float32(0.0))
    assert minus.view(np.uint32) != plus.view(np.uint32)


def test_masking_counterexample_through_the_reference_softmax():
    from lite_llm.reference.softmax import softmax

    m = claim("backward_compatibility", "masking_equals_exclusion").model
    z = m["logits of tiers 0, 2, 3 (binary64)"]
    excl = softmax(np.array([z]))[0]
    masked = softmax(np.array([[z[0], -np.inf, z[1], z[2]]]))[0][[0, 2, 3]]
    assert np.any(excl.view(np.uint32) != masked.view(np.uint32))


def test_masked_topk_counterexample_with_reference_keys():
    from lite_llm.reference.ranking import top_k
    from lite_llm.reference.seeds import level_seed, tie_keys

    m = claim("backward_compatibility", "masked_topk_unchanged_by_expansion").model
    s = m["seed"]
    chosen = [sorted(top_k(np.array([[0.5] + [-np.inf] * (n - 1)]), tie_keys(level_seed(s, 1), n), 2)[0].tolist())
              for n in (2, 3)]
    assert chosen[0] != chosen[1] and 0 in chosen[0] and 0 in chosen[1]


def test_cardinality_and_bound_counterexamples_recount():
    m = claim("active_set_cardinality", "paper_always_K").model
    active = min(1, m["|T|"]) * min(2, m["G(t_0)"]) * min(2, m["E(t_0)"])      # HSER-9.1 at k = (1, 2, 2)
    assert active == m["active experts"] < 4
    m = claim("bounded_active_compute", "paper_bound_with_routers").model
    assert m["layer reads (routers counted)"] > m["paper's per-layer bound"]
    m = claim("bounded_active_compute", "independent_of_p_total_with_routers").model
    G, E, d, L, F, V = m["G"], m["E"], 2048, 128, 1302, 131072
    es, C = 3 * d * F, 4 * d * d + 2 * d
    p_active = L * (C + d * (1 + G + min(2, G) * E) + min(2, G) * min(2, E) * es) + 2 * d + V * d
    p_total = L * C + 2 * V * d + d + L * (d * (1 + G + G * E) + G * E * es)
    assert p_active == m["P_active (routers counted)"] > 10 * m["paper's bound"]
    assert p_total == m["P_total"] <= 1_000_528_570_746_880


def test_corollary_numbers_against_lite_llm_params(capsys):
    import json

    from lite_llm.cli import main

    assert main(["params", "quadrillion", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    c = claim("corollary", "paper_4_1B_is_p_active").model
    assert c["P_active"] == report["p_active"] and c["P_total"] == report["p_total"]
    assert c["experts only"] == 128 * 4 * 7_999_488


def test_greedy_counterexamples_with_the_reference():
    from lite_llm.reference.selection import greedy_budget, select_budget

    B = ((1.0, 3 / 64, 1.0, 1.0), (0.25, 1 / 64, 0.75, 0.0), (0.25, 1 / 64, 0.0, 0.75), 1.0, 1.0)
    m = claim("budget_selection", "sel3_greedy_is_optimal").model
    assert list(greedy_budget(*B)) == m["greedy_budget"] and list(select_budget(*B)) == m["Z3 optimum"]
    assert sum(B[0][t] for t in m["Z3 optimum"]) > 2.8 * sum(B[0][t] for t in m["greedy_budget"])


# --- the proofs are not vacuous: weaken one ingredient and they fail -------------------------------

def test_wrong_xorshift_inverse_is_caught():
    from lite_llm.proofs import seed_injectivity, smt

    bad = seed_injectivity.step_inverse_claim("bad", lambda x: smt.xorshift(x, 30), lambda y: y ^ z3.LShR(y, 30))
    assert bad.result == COUNTEREXAMPLE                      # one xorshift round is not its own inverse


def test_ranking_uniqueness_needs_asymmetry():
    from lite_llm.proofs import topk_determinism

    full = topk_determinism.ranking_unique_claim()
    weakened = z3_claim("no_asymmetry", "", [p for p in _premises(full) if "Not(And(precedes" not in str(p)],
                        _goal(full))
    assert full.result == PROVED and weakened.result == COUNTEREXAMPLE


def _premises(c):
    """Rebuild a claim's premises from its solver form (every assertion but the last, the negated goal)."""
    assertions = z3.parse_smt2_string(c.solver_form)
    return list(assertions)[:-1]


def _goal(c):
    return z3.Not(list(z3.parse_smt2_string(c.solver_form))[-1])


def test_operands_proof_needs_existing_rows_untouched():
    from lite_llm.proofs import backward_compatibility

    assert backward_compatibility.operands_claim().result == PROVED
    assert backward_compatibility.operands_claim(rows_untouched=False).result == COUNTEREXAMPLE


def test_padding_proof_needs_the_lemma():
    """Without the ground instances of x + (-0.0) = x the padded trees are not provably equal."""
    from lite_llm.proofs import smt, tree_sum_padding

    B32 = z3.DeclareSort("b32")
    add = z3.Function("add", B32, B32, B32)
    nz = z3.Const("nz", B32)
    v = [z3.Const(f"v{i}", B32) for i in range(3)]
    c = z3_claim("no_lemma", "", [], smt.tree_sum(v, nz, 4, add) == tree_sum_padding.carry_sum(v, add))
    assert c.result == COUNTEREXAMPLE


def test_appended_masking_fails_when_negative_zero_terms_are_allowed():
    from lite_llm.proofs import backward_compatibility, smt

    e = [z3.FP(f"e{i}", smt.F32) for i in range(2)]
    base = backward_compatibility.exclusion_sum(e)
    c = z3_claim("with_neg_zero", "", [z3.Not(z3.fpIsInf(x)) for x in e],
                 backward_compatibility.exclusion_sum(e + [smt.POS_ZERO32]) == base, timeout_ms=60_000)
    assert c.result == COUNTEREXAMPLE


def test_quantization_bound_fails_without_the_absmax_premise():
    from lite_llm.proofs import smt

    x, a = z3.FPs("x a", smt.F32)
    finite = [z3.Not(z3.fpIsNaN(v)) for v in (x, a)] + [z3.Not(z3.fpIsInf(v)) for v in (x, a)]
    c = z3_claim("no_absmax", "", finite + [z3.fpGT(a, z3.FPVal(0.0, smt.F32))],
                 z3.fpLEQ(z3.fpAbs(z3.fpDiv(smt.RNE, x, a)), z3.FPVal(1.0, smt.F32)), timeout_ms=60_000)
    assert c.result == COUNTEREXAMPLE
