"""The certificate format: how a Z3 answer becomes a result, and what the JSON and Markdown hold."""
from __future__ import annotations

import json

import z3

from lite_llm.proofs.certificate import (COUNTEREXAMPLE, PROVED, UNKNOWN, Certificate, Claim, fp_readable,
                                         markdown, write, z3_claim)


def test_unsat_negation_is_proved_and_sat_gives_the_model():
    x = z3.BitVec("x", 8)
    proved = z3_claim("xor_self", "x ^ x = 0", [], x ^ x == 0)
    assert proved.result == PROVED and proved.ok and proved.model is None
    assert proved.details["premises_satisfiable"] is True
    assert "(declare-fun x () (_ BitVec 8))" in proved.solver_form

    refuted = z3_claim("all_small", "x < 200", [], z3.ULT(x, 200), expected=COUNTEREXAMPLE, source="paper")
    assert refuted.result == COUNTEREXAMPLE and refuted.ok
    assert refuted.model["x"] >= 200                    # the model really violates the claim


def test_contradictory_premises_do_not_prove_anything():
    """A claim proved from premises that cannot hold is vacuous: reported unknown, so the run fails."""
    x = z3.Int("x")
    c = z3_claim("vacuous", "anything", [x > 1, x < 0], x == 42)
    assert c.result == UNKNOWN and not c.ok
    assert "vacuous" in c.details["reason"]


def test_timeout_is_unknown():
    """A query the solver cannot finish is unknown, never proved."""
    a, b, c = z3.Ints("a b c")
    n = z3.Int("n")
    hard = z3_claim("fermat", "no a^n + b^n = c^n for n > 2", [a > 0, b > 0, c > 0, n > 2, n < 6],
                    a ** n + b ** n != c ** n, timeout_ms=50)
    assert hard.result == UNKNOWN and not hard.ok


def test_fp_values_are_readable_with_bits():
    assert fp_readable(z3.simplify(z3.fpMinusZero(z3.Float32()))) == "-0.0 (0x80000000)"
    assert fp_readable(z3.simplify(z3.FPVal(1.0, z3.Float64()))) == "1.0 (0x3ff0000000000000)"
    assert fp_readable(z3.simplify(z3.fpMinusInfinity(z3.Float32()))) == "-inf (0xff800000)"


def sample_certificate(result=COUNTEREXAMPLE, expected=COUNTEREXAMPLE) -> Certificate:
    claim = Claim("demo", "a demo claim", "paper", expected, result, "hand-made", "(assert false)", 0.5,
                  {"x": 3, "|T|": 1} if result == COUNTEREXAMPLE else None, {"note": "n"})
    return Certificate("demo_cert", "A demo", "The statement.", ["HSER-4.2"], "section 5.2", [claim],
                       notes=["a note"], method="The plan.")


def test_json_and_markdown_hold_statement_method_result_and_model(tmp_path):
    cert = sample_certificate()
    j, m = write(cert, tmp_path)
    d = json.loads(j.read_text())
    assert d["status"] == "pass" and d["clauses"] == ["HSER-4.2"] and d["method"] == "The plan."
    (c,) = d["claims"]
    assert (c["expected"], c["result"], c["as_expected"], c["model"]) == (COUNTEREXAMPLE, COUNTEREXAMPLE, True,
                                                                          {"x": 3, "|T|": 1})
    page = m.read_text()
    for text in ("The statement.", "The plan.", "Counterexample:", "`x`", "`\\|T\\|`", "hand-made", "(assert false)",
                 "a note", "PASS"):
        assert text in page, text
    assert not list(tmp_path.glob(".*.tmp")), "no temporary file is left behind"


def test_a_claim_that_differs_fails_the_certificate():
    cert = sample_certificate(result=PROVED, expected=COUNTEREXAMPLE)
    assert not cert.ok and cert.to_json()["status"] == "fail"
    assert "**(differs)**" in markdown(cert) and "FAIL" in markdown(cert)
