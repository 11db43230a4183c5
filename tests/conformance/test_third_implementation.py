"""A new implementation plugs in by ``module:attr`` alone, with no change to ``lite_llm.conformance`` (CONF-3.5)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def conform(impl: str, tmp_path: Path) -> tuple[int, dict]:
    report = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, "-m", "lite_llm.cli", "conform", "--impl", impl, "--levels", "routing",
                           "--json", str(report)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert report.exists(), proc.stderr
    return proc.returncode, json.loads(report.read_text())


def counts(rep: dict) -> dict:
    return rep["runs"][0]["counts"]


def test_third_implementation_passes_through_module_attr(tmp_path):
    code, rep = conform("tests.conformance.third_implementation:MixedAdapter", tmp_path)
    c = counts(rep)
    print("mixed adapter:", c)
    assert rep["runs"][0]["name"].startswith("mixed")
    assert code == 0 and c.get("fail", 0) == 0 and c.get("error", 0) == 0
    assert c.get("pass", 0) >= 100          # route, tier_set and the three pieces: most of the routing level


def test_third_implementation_with_a_planted_error_fails(tmp_path):
    code, rep = conform("tests.conformance.third_implementation:BrokenAdapter", tmp_path)
    failed = [c["id"] for c in rep["runs"][0]["cases"] if c["status"] == "fail"]
    print("broken adapter failed:", failed[:5], "...", len(failed))
    assert code == 1 and failed and all("exp" in f for f in failed)
