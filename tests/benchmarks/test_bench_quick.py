"""``lite-llm bench router --quick`` and ``bench moe --quick`` on the CPU, as CI runs them: every scenario
runs its code path at tiny sizes and the JSON it writes carries bit checks of the timed outputs, all
true (the routing records against the reference, the combine against the torch and reference combines,
the exact layer bit-identical across runs and batch sizes). Timings on the CPU mean nothing."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECK_FIELDS = ("bits_vs_torch_path", "bits_vs_reference", "combine_bits_vs_torch", "combine_bits_vs_reference")


def bench(tmp_path, what: str) -> list[dict]:
    out = tmp_path / f"{what}.json"
    p = subprocess.run([sys.executable, "-m", "lite_llm.cli", "bench", what, "--quick", "--device", "cpu",
                        "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    return json.loads(out.read_text())


def checks_in(obj, found: list) -> None:
    """Every bit-check field anywhere in the JSON, with its value."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k in CHECK_FIELDS or k.startswith("same_across") and not k.endswith("note"):
                found.append((k, v))
            checks_in(v, found)
    elif isinstance(obj, list):
        for v in obj:
            checks_in(v, found)


def test_bench_router_quick_checks_the_bits(tmp_path):
    res = bench(tmp_path, "router")
    assert [r["scenario"] for r in res] == ["S1", "S2"]
    found = []
    checks_in(res, found)
    assert {k for k, _ in found} >= {"bits_vs_torch_path", "bits_vs_reference"}
    assert all(v is True for _, v in found), found
    ours = [r for s in res for r in s["rows"] if r["method"].startswith("exact")]
    assert ours and all(r["exact"] == "yes" for r in ours)


def test_bench_moe_quick_checks_the_bits(tmp_path):
    res = bench(tmp_path, "moe")
    assert [r["scenario"] for r in res] == ["S3", "S4/S5 layer", "S5 route", "E2E decode"]
    found = []
    checks_in(res, found)
    keys = {k for k, _ in found}
    assert {"combine_bits_vs_torch", "combine_bits_vs_reference", "bits_vs_torch_path", "bits_vs_reference"} <= keys
    ours_layer = [r for r in res[1]["rows"] if r["method"].startswith("ours")]
    assert ours_layer and all(r["same_across_runs"] and r["same_across_batch_sizes"] for r in ours_layer)
    route_rows = [r for r in res[2]["rows"] if r["method"].startswith("ours")]
    assert route_rows and all(r["bits_vs_torch_path"] and r["bits_vs_reference"] for r in route_rows)
    exact = [(k, v) for k, v in found if k in CHECK_FIELDS]
    assert all(v is True for _, v in exact), exact
    assert all(r["same tokens across runs"] for r in res[3]["rows"])


if __name__ == "__main__":
    raise SystemExit(pytest.main([__file__, "-q"]))
