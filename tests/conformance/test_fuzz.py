"""Differential fuzzing (CONF-6.2): agreement is reported, a difference is shrunk to a minimal
request and printed as a runnable snippet and a case directory that reruns it."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from lite_llm.cli import main
from lite_llm.conformance.case import load_cases
from lite_llm.conformance.fuzz import run_fuzz
from lite_llm.conformance.runner import run_suite

from .planted import PlantedRouter


def test_independent_router_agrees_with_the_reference(capsys):
    assert run_fuzz("tests.conformance.planted:PlantedRouter", None, 25, seed=3)
    assert "no difference in" in capsys.readouterr().out


def test_a_planted_bug_is_shrunk_to_a_runnable_reproducer(tmp_path, capsys, monkeypatch):
    (tmp_path / "fuzzbug.py").write_text("from tests.conformance.planted import PlantedRouter\n"
                                         "def Adapter():\n    return PlantedRouter('library-exp')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    out_dir = tmp_path / "found"
    assert main(["conform", "--impl", "fuzzbug:Adapter", "--fuzz", "100", "--fuzz-ops", "canonical_exp,tree_sum",
                 "--fuzz-out", str(out_dir)]) == 1
    out = capsys.readouterr().out
    print(out)
    assert "DIFFERENCE" in out and "minimal reproducer" in out
    snippet = out[out.index("import numpy as np"):out.index("\n\nas a case:")]
    run = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True,
                         cwd=str(tmp_path), env={"PYTHONPATH": f"{tmp_path}:{Path(__file__).resolve().parents[2]}", "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() not in ("", "None")                 # the snippet reproduces the difference
    (case,) = load_cases(out_dir)
    assert case.id.startswith("routing/fuzz/")
    assert run_suite(PlantedRouter("library-exp"), [case]).outcomes[0].status == "fail"
    assert run_suite(PlantedRouter(), [case]).outcomes[0].status == "pass"
    assert case.operation == "canonical_exp" and case.inputs["t"].shape == (1,)     # shrunk to one value
