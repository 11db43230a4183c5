"""The architecture as enforced contracts: import-linter's contracts and no import cycle (issue: layout).

The real tree must keep every contract; a planted violation and a planted cycle must be caught and
named, so the check is known to be able to fail.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "lint_imports.py"

pytest.importorskip("importlinter", reason="pip install import-linter (the dev extra) to check the architecture")


def lint_module():
    spec = importlib.util.spec_from_file_location("lint_imports", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def lint_staged(root: Path) -> subprocess.CompletedProcess:
    lint = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    return subprocess.run([lint, str(ROOT / "pyproject.toml"), "--no-cache"], cwd=root, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(root)}, timeout=300)


def test_the_tree_keeps_every_contract_and_has_no_cycle():
    proc = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=300)
    print(proc.stdout[-3000:], proc.stderr[-2000:])
    assert proc.returncode == 0
    assert "4 kept, 0 broken" in proc.stdout and "no import cycle" in proc.stdout


@pytest.mark.parametrize("source, target, contract", [
    ("reference", "lite_llm.conformance.case", "no implementation imports the suite"),
    ("optimized", "lite_llm.reference.router", "never on each other"),
    ("spec", "lite_llm.optimized.router", "the spec imports no implementation"),
])
def test_a_planted_violation_is_named(tmp_path, source, target, contract):
    root = lint_module().stage(tmp_path)
    (root / "lite_llm" / source / "planted.py").write_text(f"import {target}\n")
    proc = lint_staged(root)
    print(proc.stdout[-3000:])
    assert proc.returncode != 0
    assert f"lite_llm.{source}.planted -> {target}" in proc.stdout
    assert contract in proc.stdout and "BROKEN" in proc.stdout


def test_a_planted_cycle_is_found(tmp_path):
    mod = lint_module()
    root = mod.stage(tmp_path)
    (root / "lite_llm" / "spec" / "cycle_a.py").write_text("from . import cycle_b\n")
    (root / "lite_llm" / "spec" / "cycle_b.py").write_text("def f():\n    from . import cycle_a\n")
    found = mod.cycles(root)
    assert ["lite_llm.spec.cycle_a", "lite_llm.spec.cycle_b"] in found
