"""The C harness (conformance/examples/c_router), built with -O2 -ffp-contract=off, passes every
routing case through the JSON-lines protocol, error cases included."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from lite_llm.conformance.adapters import close_adapter
from lite_llm.conformance.implementations import load_adapter
from lite_llm.conformance.case import load_cases
from lite_llm.conformance.fuzz import run_fuzz
from lite_llm.conformance.runner import run_suite

EXAMPLE = Path(__file__).resolve().parents[2] / "conformance" / "examples" / "c_router"
COMPILER = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    if COMPILER is None:
        pytest.skip("no C compiler (cc, gcc or clang) on PATH: the C example cannot be built")
    out = tmp_path_factory.mktemp("c_router") / "router"
    build = subprocess.run(["sh", str(EXAMPLE / "build.sh"), str(out)], capture_output=True, text=True,
                           env={"CC": COMPILER, "PATH": "/usr/bin:/bin:/usr/local/bin"})
    assert build.returncode == 0, build.stderr
    assert "warning" not in build.stderr, build.stderr
    return out


def test_c_harness_passes_every_routing_case(harness):
    cases = load_cases(levels=["routing"])
    adapter = load_adapter(f"cmd:{harness}")
    try:
        assert adapter.name == "c-router"
        run = run_suite(adapter, cases, impl=f"cmd:{harness}")
    finally:
        close_adapter(adapter)
    bad = [f"{o.status} {o.case_id}: {o.detail}" for o in run.outcomes if o.status != "pass"]
    print(run.counts())
    assert not bad, "\n".join(bad[:10])
    assert run.counts()["pass"] == len(cases) and any(c.error for c in cases)


def test_c_harness_agrees_with_the_reference_on_random_requests(harness, capsys):
    assert run_fuzz(f"cmd:{harness}", None, 40, seed=1)
    assert "no difference in" in capsys.readouterr().out


def test_build_script_disables_fp_contraction():
    (line,) = [ln for ln in (EXAMPLE / "build.sh").read_text().splitlines() if ln.startswith('"$cc"')]
    flags = line.split()
    assert "-ffp-contract=off" in flags and "-O2" in flags and "-ffast-math" not in flags and "-Ofast" not in flags
