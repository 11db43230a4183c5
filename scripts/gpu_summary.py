"""Merge the GPU check's outputs into OUT/results.json and print a short table (scripts/gpu_check.sh)."""
from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def load(p: Path):
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def junit(p: Path) -> dict:
    try:
        root = ET.parse(p).getroot()
    except (OSError, ET.ParseError):
        return from_log(p.parent / "tests.log")
    suites = [root] if root.tag == "testsuite" else list(root)
    out = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    out["failed"] = [f"{c.get('classname')}::{c.get('name')}" for s in suites for c in s.iter("testcase")
                     if c.find("failure") is not None or c.find("error") is not None][:40]
    return out


def from_log(log: Path) -> dict:
    """Counts from pytest -v lines when no junit.xml was written (the step ran out of time)."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return {"error": "no test output"}
    res = [l for l in lines if "::" in l and any(w in l for w in (" PASSED", " FAILED", " ERROR", " SKIPPED"))]
    return {"tests": len(res), "failures": sum(" FAILED" in l for l in res), "errors": sum(" ERROR" in l for l in res),
            "skipped": sum(" SKIPPED" in l for l in res), "note": "from tests.log: the step did not finish",
            "failed": [l.split(" ")[0] for l in res if " FAILED" in l or " ERROR" in l][:40]}


def row_line(r: dict) -> str:
    """One benchmark row, whatever the scenario (S1-S3: us and ratios; S4/S5: T, us, host us, bits;
    E2E: prefill and decode)."""
    name = (f"T={r['T']} " if "T" in r else "") + str(r.get("method", ""))
    if "decode tok/s" in r:
        return (f"{name[:70]:<70} prefill {r['prefill ms']:.1f} ms, decode {r['decode ms/token']:.2f} ms/token "
                f"({r['decode tok/s']:.0f} tok/s, {r.get('x usual (decode tok/s)', float('nan')):.2f}x usual)")
    if "us" not in r:
        return f"{name[:70]:<70} {str(r.get('note', ''))[:120]}"
    us = r["us"] if isinstance(r["us"], (int, float)) else float("nan")
    if "TFLOP/s" in r:
        extra = f"{r['TFLOP/s']:.0f} TFLOP/s ({r.get('x dense', float('nan')):.2f}x dense)"
    else:
        parts = [f"{r['x baseline']:.2f}x baseline" if isinstance(r.get("x baseline"), float) else "",
                 f"{r['x floor']:.2f}x floor" if isinstance(r.get("x floor"), float) else "",
                 f"host {r['host us']:.0f} us" if isinstance(r.get("host us"), float) else "",
                 f"exact: {r['exact']}" if "exact" in r else "", f"bits: {r['bits']}" if "bits" in r else ""]
        extra = ", ".join(p for p in parts if p)
    return f"{name[:60]:<60} {us:>9.1f} us  {extra}"


def main(out: Path, seconds: str) -> int:
    steps = {}
    if (out / "steps.txt").exists():
        for line in (out / "steps.txt").read_text().splitlines():
            name, rc, secs = line.split()
            steps[name] = {"rc": int(rc.split("=")[1]), "seconds": int(secs.split("=")[1])}
    bench = (load(out / "bench_router.json") or []) + (load(out / "bench_moe.json") or [])
    conform = load(out / "conform.json")
    res = {"env": load(out / "env.json"), "steps": steps, "tests": junit(out / "junit.xml"),
           "benchmarks": bench, "conformance": conform, "seconds": int(seconds)}
    (out / "results.json").write_text(json.dumps(res, indent=1, default=str))

    env = res["env"] or {}
    print(f"\nGPU check: {env.get('gpu')} (sm {env.get('capability')}), torch {env.get('torch')}, "
          f"triton {env.get('triton')}, {res['seconds']} s")
    for name, s in steps.items():
        print(f"  step {name:<13} rc={s['rc']:<4} {s['seconds']:>4} s" + ("  TIMED OUT" if s["rc"] in (124, 137) else ""))
    t = res["tests"]
    print(f"  tests: {t.get('tests')} run, {t.get('failures')} failed, {t.get('errors')} errors, "
          f"{t.get('skipped')} skipped {t.get('note', '')}" if "tests" in t else f"  tests: {t.get('error')}")
    for f in t.get("failed", [])[:10]:
        print(f"    FAILED {f}")
    if isinstance(conform, dict):
        summary = {k: v for k, v in conform.items() if isinstance(v, (int, float, str))}
        print(f"  conformance: {json.dumps(summary)[:300]}")
    for b in bench:
        meta = b["meta"]
        floor = meta.get("floor_us")
        extra = f", bucketed-design floor {meta['design_floor_us']:.1f} us" if "design_floor_us" in meta else ""
        print(f"  {b['scenario']}: " + (f"floor {floor:.1f} us{extra}" if isinstance(floor, float) else ""))
        if "parts_us" in meta:
            print("    parts: " + ", ".join(f"{k} {v:.0f} us" for k, v in meta["parts_us"].items()))
        for r in b["rows"]:
            print("    " + row_line(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "0"))
