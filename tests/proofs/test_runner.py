"""``lite-llm prove``: which runs pass, which fail, and what is written."""
from __future__ import annotations

import json
import types

import z3

from lite_llm.cli import main
from lite_llm.proofs import runner
from lite_llm.proofs.certificate import COUNTEREXAMPLE, PROVED, Certificate, z3_claim


def statement(name, claims, clauses=("HSER-4.2",)):
    return types.SimpleNamespace(NAME=name, prove=lambda: Certificate(name, name, "demo", list(clauses), "", claims()))


def true_claim():
    x = z3.BitVec("x", 8)
    return [z3_claim("xor_self", "x ^ x = 0", [], x ^ x == 0)]


def false_claim():
    """A deliberately false statement the spec 'asserts': x + 1 > x on 8-bit words (255 + 1 wraps)."""
    x = z3.BitVec("x", 8)
    return [z3_claim("successor_larger", "x + 1 > x", [], z3.UGT(x + 1, x))]


def refuted_paper_claim(expected):
    x = z3.BitVec("x", 8)
    return [z3_claim("paper", "x + 1 > x", [], z3.UGT(x + 1, x), expected=expected, source="paper")]


def test_all_as_expected_exits_0_and_writes_certificates(tmp_path):
    certs, status = runner.run([statement("ok_one", true_claim),
                                statement("paper_refuted", lambda: refuted_paper_claim(COUNTEREXAMPLE))],
                               tmp_path, log=lambda *_: None)
    assert status == 0 and [c.name for c in certs] == ["ok_one", "paper_refuted"]
    assert {p.name for p in tmp_path.iterdir()} == {"ok_one.json", "ok_one.md", "paper_refuted.json",
                                                    "paper_refuted.md", "README.md", "timings.json"}
    assert json.loads((tmp_path / "paper_refuted.json").read_text())["claims"][0]["result"] == COUNTEREXAMPLE
    assert "paper_refuted" in (tmp_path / "README.md").read_text()


def test_a_false_statement_exits_1(tmp_path):
    lines = []
    _, status = runner.run([statement("ok_one", true_claim), statement("wrong", false_claim)], tmp_path,
                           log=lines.append)
    assert status == 1
    assert "FAILED: wrong" in lines[-1]
    assert json.loads((tmp_path / "wrong.json").read_text())["status"] == "fail"


def test_a_paper_claim_that_is_proved_instead_of_refuted_exits_1(tmp_path):
    """Expectations are two-sided: a claim expected to be refuted must be refuted."""
    _, status = runner.run([statement("flip", lambda: refuted_paper_claim(PROVED))], None, log=lambda *_: None)
    assert status == 1


def test_an_error_or_an_unknown_clause_exits_1(tmp_path):
    def boom():
        raise RuntimeError("solver crashed")

    _, status = runner.run([types.SimpleNamespace(NAME="boom", prove=boom)], tmp_path, log=lambda *_: None)
    assert status == 1
    missing = "HSER-" + "99.9"          # built at run time so this file does not itself dangle
    _, status = runner.run([statement("dangling", true_claim, clauses=(missing,))], tmp_path, log=lambda *_: None)
    assert status == 1


def test_cli_lists_runs_one_and_rejects_unknown_names(tmp_path, capsys):
    assert main(["prove", "--list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in runner.STATEMENTS)
    assert main(["prove", "--only", "no_such_statement"]) == 2
    assert "no_such_statement" in capsys.readouterr().err
    assert main(["prove", "--only", "corollary", "--out", str(tmp_path)]) == 0
    assert "every claim gave its expected result" in capsys.readouterr().out
    assert json.loads((tmp_path / "corollary.json").read_text())["status"] == "pass"


def test_every_statement_module_names_existing_clauses():
    from lite_llm.spec.clauses import registry

    for name in runner.STATEMENTS:
        mod = runner.load(name)
        assert mod.NAME == name and mod.CLAUSES and set(mod.CLAUSES) <= set(registry()), name


def test_committed_certificates_match_the_statements():
    """The certificates in the source tree exist for every statement, pass, and name its clauses."""
    for name in runner.STATEMENTS:
        d = json.loads((runner.DEFAULT_OUT / f"{name}.json").read_text())
        assert d["status"] == "pass" and d["clauses"] == runner.load(name).CLAUSES, name
        assert all(c["result"] == c["expected"] for c in d["claims"]), name
