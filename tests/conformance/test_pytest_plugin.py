"""The pytest plugin (CONF-6.3): the cases run inside a user's own pytest session."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def load_plugin() -> list[str]:
    """``-p`` the plugin unless the installed package registers it (pytest11 entry point ``lite_llm``):
    pytest refuses to register one plugin twice."""
    from importlib.metadata import entry_points

    registered = any(ep.name == "lite_llm" for ep in entry_points(group="pytest11"))
    return [] if registered else ["-p", "lite_llm.conformance.pytest_plugin"]


def pytest_run(tmp_path, *args):
    (tmp_path / "test_mine.py").write_text("def test_users_own_test():\n    assert 1 + 1 == 2\n")
    return subprocess.run([sys.executable, "-m", "pytest", *load_plugin(), "-q",
                           "-p", "no:cacheprovider", "--rootdir", str(tmp_path), str(tmp_path), *args],
                          capture_output=True, text=True, cwd=str(tmp_path),
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})


def test_plugin_adds_nothing_without_an_implementation(tmp_path):
    r = pytest_run(tmp_path)
    assert r.returncode == 0 and "1 passed" in r.stdout, r.stdout + r.stderr


def test_plugin_runs_the_cases_beside_the_users_tests(tmp_path):
    r = pytest_run(tmp_path, "--lite-llm-impl=reference", "--lite-llm-levels=loss,selection")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr
    from lite_llm.conformance.case import load_cases

    n = len(load_cases(levels=["loss", "selection"]))             # every committed case of the two levels
    assert f"{n + 1} passed" in r.stdout                          # the cases and the user's own test


def test_plugin_reports_failures_skips_and_xfails(tmp_path):
    (tmp_path / "bugmod.py").write_text("from tests.conformance.planted import PlantedRouter\n"
                                        "def Adapter():\n    return PlantedRouter('plus-zero-padding')\n")
    (tmp_path / "xfails.txt").write_text("routing/op/tree-sum-n3  known padding bug\n")
    (tmp_path / "skips.txt").write_text("routing/op/tree-sum-n5  not today\n")
    env_path = f"{tmp_path}"
    r = subprocess.run([sys.executable, "-m", "pytest", *load_plugin(), "-q",
                        "-p", "no:cacheprovider", "--rootdir", str(tmp_path), str(tmp_path), "--lite-llm-only",
                        "--lite-llm-impl=bugmod:Adapter", "--lite-llm-case=routing/op/tree-sum-*",
                        f"--lite-llm-xfails={tmp_path / 'xfails.txt'}", f"--lite-llm-skips={tmp_path / 'skips.txt'}"],
                       capture_output=True, text=True, cwd=str(tmp_path),
                       env={"PYTHONPATH": f"{env_path}:{REPO}", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    out = r.stdout
    print(out[-3000:])
    assert r.returncode == 1
    # What the runner itself says of the same cases, in this process: the plugin must agree case for case.
    from fnmatch import fnmatch

    from lite_llm.conformance.case import ReadLog, load_cases
    from lite_llm.conformance.runner import run_case
    from tests.conformance.planted import PlantedRouter

    cases = [c for c in load_cases(levels=["routing"]) if fnmatch(c.id, "routing/op/tree-sum-*")
             and c.id not in ("routing/op/tree-sum-n3", "routing/op/tree-sum-n5")]
    statuses = [run_case(PlantedRouter("plus-zero-padding"), c, ReadLog())[0] for c in cases]
    failed = sum(st != "pass" for st in statuses)
    assert failed >= 3                                                # the bug is caught, by several cases
    want = f"{failed} failed, {len(statuses) - failed} passed, 1 skipped, 1 xfailed"
    assert want in out                                                # the user's test is left out (--lite-llm-only)
    assert "tree-sum-signed-zeros: [HSER-6.5, OVW-2.1] output 'sum'" in out
    assert "rerun: lite-llm conform --impl bugmod:Adapter --case routing/op/tree-sum-signed-zeros" in out
