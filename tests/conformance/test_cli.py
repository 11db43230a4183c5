"""`lite-llm conform` and `lite-llm vectors` as a user runs them (CONF-3.5, CONF-5.1 .. CONF-5.6)."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from lite_llm.cli import main

PLANTED = "tests.conformance.planted:PlantedRouter"


def test_conform_reference_on_a_level_passes(capsys):
    assert main(["conform", "--impl", "reference", "--levels", "loss"]) == 0
    out = capsys.readouterr().out
    assert "reference       7 pass  PASS" in out


def test_several_implementations_end_in_one_table_and_reports(tmp_path, capsys):
    args = ["conform", "--impl", "reference", "--impl", PLANTED, "--case", "routing/op/*", "--case", "loss/aux-alpha",
            "--json", str(tmp_path / "r.json"), "--junit", str(tmp_path / "r.xml"), "--markdown", str(tmp_path / "r.md")]
    assert main(args) == 0
    out = capsys.readouterr().out
    table = out[out.index("implementation"):].splitlines()
    assert table[2].split()[:1] == ["reference"] and table[3].split()[0] == PLANTED
    assert "1 skip" in table[3]                                        # the planted router has no aux_loss
    report = json.loads((tmp_path / "r.json").read_text())
    assert [r["impl"] for r in report["runs"]] == ["reference", PLANTED] and report["ok"]
    assert len(ET.parse(tmp_path / "r.xml").getroot().findall("testsuite")) == 2
    assert "| implementation |" in (tmp_path / "r.md").read_text()


def test_a_failing_implementation_exits_1_and_says_where(tmp_path, capsys, monkeypatch):
    bug = tmp_path / "bugmod.py"
    bug.write_text("from tests.conformance.planted import PlantedRouter\n"
                   "def Adapter():\n    return PlantedRouter('plus-zero-padding')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["conform", "--impl", "bugmod:Adapter", "--case", "routing/op/tree-sum-*"]) == 1
    out = capsys.readouterr().out
    assert "FAIL routing/op/tree-sum-signed-zeros" in out
    assert "[HSER-6.5, OVW-2.1] output 'sum'" in out and "expected -0.0 (0x80000000)" in out
    assert "rerun: lite-llm conform --impl bugmod:Adapter --case routing/op/tree-sum-signed-zeros" in out


def test_list_and_bad_arguments(capsys):
    assert main(["conform", "--list", "--levels", "selection"]) == 0
    assert "selection/budget-worked-1" in capsys.readouterr().out
    assert main(["conform", "--impl", "nosuchmodule:X", "--levels", "loss"]) == 2
    assert "cannot import module" in capsys.readouterr().err
    assert main(["conform", "--case", "no/such/case"]) == 2
    assert main(["conform", "--impl", "optimized", "--device", "tpu", "--levels", "loss"]) == 2


def test_skips_file_and_xfails_file(tmp_path, capsys):
    skips = tmp_path / "skips.txt"
    skips.write_text("loss/aux-alpha  alpha is fixed in our trainer\n")
    xfails = tmp_path / "xfails.txt"
    xfails.write_text("loss/aux-collapsed  issue #7\n")
    assert main(["conform", "--levels", "loss", "--skips", str(skips), "--xfails", str(xfails)]) == 1
    out = capsys.readouterr().out
    assert "XPASS loss/aux-collapsed" in out and "1 skip" in out


def test_vectors_list_and_coverage(capsys):
    assert main(["vectors", "list", "--levels", "layer"]) == 0
    assert "layer/moe-basic" in capsys.readouterr().out
    assert main(["vectors", "coverage"]) == 0
    assert "MUST clauses have a case or an exemption" in capsys.readouterr().out
