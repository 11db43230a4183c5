"""Reports (CONF-5.6): the implementations x levels table, JSON, JUnit XML and Markdown."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from lite_llm.conformance.report import table, to_json, to_junit, to_markdown
from lite_llm.conformance.runner import Outcome, SuiteRun


def runs():
    a = SuiteRun("reference", "reference", [Outcome("routing/op/mix64", "routing", "mix64", ("HSER-4.3",), "pass"),
                                            Outcome("loss/aux-alpha", "loss", "aux_loss", ("AUX-1.4",), "pass")])
    b = SuiteRun("cmd:./h", "h", [
        Outcome("routing/op/mix64", "routing", "mix64", ("HSER-4.3",), "fail", "[HSER-4.3] output 'y': 1 of 32 differ",
                0.01, "lite-llm conform --impl cmd:./h --case routing/op/mix64"),
        Outcome("loss/aux-alpha", "loss", "aux_loss", ("AUX-1.4",), "skip", "not offered")])
    b.stray = ["/v/routing/x.npy"]
    return [a, b]


def test_table_counts_per_implementation_and_level():
    text = table(runs())
    print(text)
    lines = text.splitlines()
    assert lines[0].split() == ["implementation", "routing", "loss", "result"]
    assert lines[2].split() == ["reference", "1", "pass", "1", "pass", "PASS"]
    assert lines[3].split() == ["cmd:./h", "1", "FAIL", "1", "skip", "FAIL"]


def test_json_report():
    d = to_json(runs(), ["OVW-1.1"])
    json.dumps(d)
    assert d["ok"] is False and d["uncovered_clauses"] == ["OVW-1.1"]
    bad = d["runs"][1]
    assert bad["counts"]["fail"] == 1 and bad["stray_files"] == ["/v/routing/x.npy"]
    assert bad["cases"][0]["rerun"].endswith("--case routing/op/mix64")


def test_junit_report_parses_and_counts():
    root = ET.fromstring(to_junit(runs()))
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["reference", "cmd:./h"]
    assert suites[1].get("failures") == "1" and suites[1].get("skipped") == "1"
    failure = suites[1].find("testcase[@name='routing/op/mix64']/failure")
    assert "rerun: lite-llm conform" in failure.text
    assert suites[1].find("testcase[@name='/v/routing/x.npy']/failure") is not None


def test_markdown_summary():
    md = to_markdown(runs(), ["OVW-1.1"])
    assert "| implementation | routing | loss | result |" in md
    assert "| cmd:./h | 1 FAIL | 1 skip | FAIL |" in md
    assert "`routing/op/mix64`" in md and "stray vector file" in md and "`OVW-1.1`" in md


def test_report_paths_are_checked_up_front(tmp_path):
    """CONF-5.7: a report path is refused before the run when it cannot be written."""
    from lite_llm.conformance.report import check_writable

    assert check_writable(None, "--json") is None and check_writable("-", "--json") is None
    assert check_writable(tmp_path / "r.json", "--json") is None
    assert "does not exist" in check_writable(tmp_path / "no" / "r.json", "--json")
    assert "is a directory" in check_writable(tmp_path, "--junit")
    assert check_writable(tmp_path / "new", "--fuzz-out", directory=True) is None
    (tmp_path / "f").write_text("")
    assert "not a directory" in check_writable(tmp_path / "f", "--fuzz-out", directory=True)


def test_json_report_to_stdout(capsys):
    """CONF-5.9: ``--json -`` is standard output."""
    from lite_llm.conformance.report import write_json

    write_json("-", runs())
    d = json.loads(capsys.readouterr().out)
    assert [r["ran"] for r in d["runs"]] == [2, 1]


def test_a_run_that_skipped_everything_says_nothing_run():
    only_skips = SuiteRun("x", "x", [Outcome("loss/aux-alpha", "loss", "aux_loss", ("AUX-1.4",), "skip", "no")])
    assert table([only_skips]).splitlines()[2].split()[-2:] == ["nothing", "run"]
