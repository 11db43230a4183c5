"""`lite-llm conform` and `lite-llm vectors` as a user runs them (CONF-3.5, CONF-5.1 .. CONF-5.9)."""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
import xml.etree.ElementTree as ET

import pytest

from lite_llm import exit_codes
from lite_llm.cli import main
from lite_llm.conformance.case import default_vectors_root

PLANTED = "tests.conformance.planted:PlantedRouter"


def n_loss() -> int:
    """How many loss-level cases the committed vectors hold (the runs below select that level)."""
    from lite_llm.conformance.case import load_cases

    return len(load_cases(levels=["loss"]))


def test_conform_reference_on_a_level_passes(capsys):
    assert main(["conform", "--impl", "reference", "--levels", "loss"]) == 0
    out = capsys.readouterr().out
    assert f"reference       {n_loss()} pass  PASS" in out


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
    assert main(["conform", "--case", "no/such/case"]) == exit_codes.NOTHING_RAN
    assert "nothing ran: no case matches no/such/case" in capsys.readouterr().err
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
    """CONF-5.5: the MUST clauses without a case or an exemption are listed."""
    assert main(["vectors", "list", "--levels", "layer"]) == 0
    assert "layer/moe-basic" in capsys.readouterr().out
    assert main(["vectors", "coverage"]) == 0
    assert "MUST clauses have a case or an exemption" in capsys.readouterr().out


# --- exit statuses (CONF-5.2, CONF-5.7) ---------------------------------------------------------

def one_line_error(capsys, *words) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert all(w in err for w in words), err
    return err


def test_a_vectors_directory_that_does_not_exist_is_rejected(tmp_path, capsys):
    assert main(["conform", "--vectors", str(tmp_path / "nope")]) == exit_codes.REJECTED
    one_line_error(capsys, "no vectors directory")


def test_a_vectors_directory_without_cases_ran_nothing(tmp_path, capsys):
    assert main(["conform", "--vectors", str(tmp_path)]) == exit_codes.NOTHING_RAN
    one_line_error(capsys, "nothing ran", "no case in")


def test_usage_errors_are_rejected(tmp_path, capsys):
    assert main(["conform", "--levels", "routing,nosuchlevel"]) == exit_codes.REJECTED
    one_line_error(capsys, "unknown level(s) nosuchlevel")
    bad = tmp_path / "skips.txt"
    bad.write_text("loss/*\n")                                  # no reason
    assert main(["conform", "--levels", "loss", "--skips", str(bad)]) == exit_codes.REJECTED
    one_line_error(capsys, "has no reason")
    assert main(["conform", "--levels", "loss", "--xfails", str(tmp_path / "missing.txt")]) == exit_codes.REJECTED
    one_line_error(capsys, "missing.txt")
    with pytest.raises(SystemExit) as e:                        # argparse: a bad --timeout
        main(["conform", "--timeout", "0"])
    assert e.value.code == exit_codes.REJECTED


def test_every_case_skipped_ran_nothing(tmp_path, capsys):
    skips = tmp_path / "skips.txt"
    skips.write_text("*  we only ship the router\n")
    assert main(["conform", "--levels", "loss", "--skips", str(skips)]) == exit_codes.NOTHING_RAN
    captured = capsys.readouterr()
    assert "nothing ran: every selected case was skipped" in captured.err and "nothing run" in captured.out


@pytest.mark.parametrize("flag", ["--json", "--junit", "--markdown", "--fuzz-out"])
def test_report_paths_are_checked_before_any_case_runs(tmp_path, capsys, flag):
    target = tmp_path / "no" / "such" / "dir" / "report"
    args = ["conform", "--levels", "model", flag, str(target)] + (["--fuzz", "5"] if flag == "--fuzz-out" else [])
    t0 = time.monotonic()
    assert main(args) == exit_codes.REJECTED
    assert time.monotonic() - t0 < 5
    one_line_error(capsys, flag, "does not exist")
    assert not (tmp_path / "no").exists()


def test_a_read_only_report_directory_is_rejected(tmp_path, capsys):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only directories")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        assert main(["conform", "--levels", "loss", "--json", str(ro / "r.json")]) == exit_codes.REJECTED
        one_line_error(capsys, "not writable")
    finally:
        ro.chmod(0o700)


def test_a_report_path_that_is_a_directory_is_rejected(tmp_path, capsys):
    assert main(["conform", "--levels", "loss", "--junit", str(tmp_path)]) == exit_codes.REJECTED
    one_line_error(capsys, "is a directory")


def test_json_to_stdout_keeps_stdout_parseable(capsys):
    """CONF-5.9: ``--json -`` writes the report to stdout; the table and progress go to stderr."""
    assert main(["conform", "--levels", "loss", "--json", "-", "-v"]) == exit_codes.OK
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["ok"] and report["runs"][0]["counts"]["pass"] == n_loss()
    assert f"reference       {n_loss()} pass  PASS" in captured.err and "pass  loss/aux-alpha" in captured.err


def test_a_missing_extra_is_named_in_one_line(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)             # as if torch were not installed
    assert main(["conform", "--impl", "optimized", "--levels", "loss"]) == exit_codes.REJECTED
    one_line_error(capsys, "--impl optimized needs torch", "pip install 'lite-llm[torch]'")
    monkeypatch.setitem(sys.modules, "hypothesis", None)
    assert main(["conform", "--fuzz", "5"]) == exit_codes.REJECTED
    one_line_error(capsys, "--fuzz needs hypothesis", "pip install 'lite-llm[dev]'")


# --- rerun hints (CONF-5.8) and progress ------------------------------------------------------------

def test_rerun_hint_names_a_non_default_vectors_directory(tmp_path, capsys, monkeypatch):
    vectors = tmp_path / "my vectors"
    shutil.copytree(default_vectors_root() / "routing" / "op", vectors / "routing" / "op")
    bug = tmp_path / "bugmod2.py"
    bug.write_text("from tests.conformance.planted import PlantedRouter\n"
                   "def Adapter():\n    return PlantedRouter('plus-zero-padding')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    case = "routing/op/tree-sum-signed-zeros"
    args = ["conform", "--impl", "bugmod2:Adapter", "--vectors", str(vectors), "--case", case]
    assert main(args) == exit_codes.FAILED
    out = capsys.readouterr().out
    hint = f"rerun: lite-llm conform --impl bugmod2:Adapter --vectors '{vectors}' --case {case}"
    assert hint in out
    assert main(args[:-2] + ["--case", "routing/op/tree-sum-*"]) == exit_codes.FAILED   # the hint's own form
    assert main(["conform", "--impl", "optimized", "--device", "cpu", "--vectors", str(default_vectors_root()),
                 "--case", "routing/op/mix64", "--json", str(tmp_path / "r.json")]) == exit_codes.OK
    (entry,) = json.loads((tmp_path / "r.json").read_text())["runs"][0]["cases"]
    # the committed vectors: no --vectors in the hint
    assert entry["rerun"] == "lite-llm conform --impl optimized --device cpu --case routing/op/mix64"


def test_progress_bar_only_on_a_terminal(capsys, monkeypatch):
    assert main(["conform", "--levels", "loss"]) == exit_codes.OK
    assert "case/s" not in capsys.readouterr().err               # not a terminal: no bar
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert main(["conform", "--levels", "loss"]) == exit_codes.OK
    err = capsys.readouterr().err
    assert "reference:" in err and f"/{n_loss()} [" in err and "case/s" in err
