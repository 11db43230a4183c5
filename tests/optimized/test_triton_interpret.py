"""The Triton router kernels against the reference, bit for bit, on the CPU under TRITON_INTERPRET=1.

The interpreter must be chosen before the kernels are defined (at import), so the checks of
``triton_interp_checks`` run in one subprocess; each check is reported here as its own test.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest

from tests.optimized.triton_interp_checks import CHECKS

pytest.importorskip("triton")
ROOT = Path(__file__).resolve().parents[2]


@lru_cache(maxsize=None)
def interpreter_results() -> dict:
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONWARNINGS": "ignore"}
    p = subprocess.run([sys.executable, "-m", "tests.optimized.triton_interp_checks", "cpu"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=900)
    results = {}
    for line in p.stdout.splitlines():
        if line.startswith("{"):
            r = json.loads(line)
            results[r["name"]] = r
    if not results:
        raise AssertionError(f"the interpreter run reported nothing (exit {p.returncode}):\n{p.stderr[-3000:]}")
    return results


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_triton_kernels_under_the_interpreter(name):
    r = interpreter_results().get(name)
    assert r is not None, f"check {name} did not run"
    assert r["ok"], r["detail"]
