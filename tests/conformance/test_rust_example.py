"""The Rust harness (conformance/examples/rust_router), written from the spec text alone with the
standard library only, passes every routing case through the JSON-lines protocol (CONF-4), and
the suite catches a bug planted in it (tie keys compared as signed words, HSER-5.1)."""
from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from lite_llm.cli import main
from lite_llm.conformance.case import load_cases

EXAMPLE = Path(__file__).resolve().parents[2] / "conformance" / "examples" / "rust_router"
CARGO = shutil.which("cargo")


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    """Build with `cargo build --release --offline --locked` into a temporary CARGO_TARGET_DIR, so
    that no target/ appears inside the repository (the package data globs conformance/examples/**)."""
    if CARGO is None:
        pytest.skip("cargo is not on PATH: the Rust example (conformance/examples/rust_router) cannot be built")
    target = tmp_path_factory.mktemp("rust_router_target")
    env = {**os.environ, "CARGO_TARGET_DIR": str(target), "CARGO_TERM_COLOR": "never"}
    start = time.monotonic()
    run = subprocess.run([CARGO, "build", "--release", "--offline", "--locked", "--manifest-path", str(EXAMPLE / "Cargo.toml")],
                         capture_output=True, text=True, env=env)
    seconds = time.monotonic() - start
    assert run.returncode == 0, run.stderr
    assert "warning" not in run.stderr, run.stderr
    assert not (EXAMPLE / "target").exists()
    binary = target / "release" / "rust_router"
    assert binary.is_file()
    return {"binary": binary, "env": env, "seconds": seconds}


def conform(tmp_path, impl: str, *args: str) -> tuple[int, dict]:
    report = tmp_path / "report.json"
    status = main(["conform", "--impl", impl, "--json", str(report), *args])
    return status, json.loads(report.read_text())


def test_rust_harness_passes_every_routing_case(build, tmp_path, capsys):
    print(f"cargo build --release: {build['seconds']:.1f} s")
    status, report = conform(tmp_path, f"cmd:{shlex.quote(str(build['binary']))}", "--levels", "routing")
    (run,) = report["runs"]
    bad = [f"{c['status']} {c['id']}: {c['detail']}" for c in run["cases"] if c["status"] != "pass"]
    assert not bad, "\n".join(bad[:10])
    n_routing = len(load_cases(levels=["routing"]))
    assert status == 0 and report["ok"] and run["ok"] and run["name"] == "rust-router"
    assert run["counts"]["pass"] == len(run["cases"]) == n_routing
    assert any(c["id"].startswith("routing/errors/") for c in run["cases"])
    assert f"{n_routing} pass" in capsys.readouterr().out


def test_rust_harness_skips_what_it_does_not_offer(build, tmp_path):
    status, report = conform(tmp_path, f"cmd:{shlex.quote(str(build['binary']))}", "--case", "loss/*", "--case", "routing/op/mix64")
    (run,) = report["runs"]
    statuses = {c["id"]: c["status"] for c in run["cases"]}
    assert status == 0 and statuses.pop("routing/op/mix64") == "pass"
    assert statuses and set(statuses.values()) == {"skip"}


def test_the_suite_fails_the_rust_harness_with_a_planted_bug(build, tmp_path, capsys):
    """RUST_ROUTER_BUG=signed-tie-key compares tie keys as signed words; the top-k cases with keys
    that have the top bit set must catch it."""
    impl = f"cmd:env RUST_ROUTER_BUG=signed-tie-key {shlex.quote(str(build['binary']))}"
    status, report = conform(tmp_path, impl, "--case", "routing/op/top-k-*")
    (run,) = report["runs"]
    failed = {c["id"] for c in run["cases"] if c["status"] == "fail"}
    assert status == 1 and not report["ok"]
    assert "routing/op/top-k-ties-k1" in failed
    assert "FAIL routing/op/top-k-ties-k1" in capsys.readouterr().out


def test_rust_unit_tests(build):
    run = subprocess.run([CARGO, "test", "--release", "--offline", "--locked", "--quiet", "--manifest-path",
                          str(EXAMPLE / "Cargo.toml")], capture_output=True, text=True, env=build["env"])
    assert run.returncode == 0, run.stdout + run.stderr
