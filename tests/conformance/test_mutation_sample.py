"""The mutation score's CI sample (issue 11): the conformance suite must go on killing what it killed.

The full runs (``scripts/mutation.py --group routing|model|other``) take tens of minutes on two cores;
CI replays a small fixed sample of the committed reports (6 routing mutants, 2 of the other group): each mutant is applied to a staged
copy of the package, ``lite-llm conform`` is run on it, and the check fails if a mutant the report
records as killed is no longer killed (a vector that stopped checking what it checked). Mutants
whose code was edited away since the report are skipped as stale (``--check`` prints them).
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
REPORT = RESULTS / "mutation-routing.json"

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("cosmic_ray") is None,
                       reason="cosmic-ray is not installed: pip install 'lite-llm[mutation]'"),
    pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                       reason="the sample holds mutants of lite_llm.optimized: pip install 'lite-llm[torch]'"),
    pytest.mark.skipif(not REPORT.exists(), reason=f"no committed mutation report {REPORT.name}"),
]


@pytest.mark.parametrize("group, sample", [("routing", 6), ("other", 2)])
def test_mutation_sample_keeps_its_kills(group, sample):
    report = RESULTS / f"mutation-{group}.json"
    if not report.exists():
        pytest.skip(f"no committed mutation report {report.name}")
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "mutation.py"), "--check", str(report),
                           "--sample", str(sample), "--seed", "1"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert f"{sample} of {sample} replayed mutants keep" in proc.stdout, proc.stdout[-4000:]
