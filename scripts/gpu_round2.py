"""GPU round 2 (issue 14) in one command: the CUDA tests, the MoE layer and decode regime (S4, S5), the
end-to-end decode, the ``_grouped_mm`` probe, the router and MoE benchmarks (S1 .. S3) and the
conformance suite on CUDA, each step under a time limit; one JSON with the date, the GPU and the command.

    OUT=dir python3 scripts/gpu_round2.py [--steps tests,S5,S4,E2E,probe,router,moe] [--budget 540] [--tests EXPR]

On the GPU machine, carry the wheels (.whl: jsonschema, jsonschema-specifications, referencing, rpds-py)
and start with ``python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade
--target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site``. The run of 2026-12-02 (every step
but the full test list) took 146 s: ``benchmarks/results/round2-2026-12-02-h200.*``.

Files in $OUT (at most 8): round2.json (everything), round2.log (all output), junit.xml. Needs
``jsonschema`` and its dependencies importable (carried as wheels to the GPU machine, README Notes).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def env_info() -> dict:
    import torch
    import triton

    cuda = torch.cuda.is_available()
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "gpu": torch.cuda.get_device_name(0) if cuda else None,
            "capability": list(torch.cuda.get_device_capability(0)) if cuda else None,
            "torch": torch.__version__, "triton": triton.__version__, "python": sys.version.split()[0],
            "command": " ".join(["python", *sys.argv])}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", default="tests,S5,S4,E2E,probe,router,moe,conform")
    p.add_argument("--tests", default="", help="pytest -k expression for the tests step (default: every test "
                                                 "of the CUDA test files, as scripts/gpu_check.sh runs them)")
    p.add_argument("--budget", type=int, default=540, help="seconds for all steps together (a 600 s call)")
    p.add_argument("--quick", action="store_true")
    a = p.parse_args()
    out = Path(os.environ.get("OUT") or ROOT / "gpu-round2-out")
    out.mkdir(parents=True, exist_ok=True)
    log = open(out / "round2.log", "a")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "CI": "true", "HYPOTHESIS_PROFILE": "ci",
           "PYTHONPATH": f"{ROOT}:{os.environ.get('PYTHONPATH', '')}"}
    res = {"env": env_info(), "steps": {}, "results": {}}
    res["install"] = install(env, log)
    start = time.time()
    q = ["--quick"] if a.quick else []
    dev = ["--device", "cuda"] if not a.quick else []
    limits = {"conform": 80, "tests": 200, "probe": 30, "S5": 80, "S4": 110, "E2E": 90, "router": 110, "moe": 90}
    for step in a.steps.split(","):
        left = a.budget - (time.time() - start)
        if left < 15:
            res["steps"][step] = {"rc": None, "skipped": "out of budget"}
            continue
        limit = int(min(limits.get(step, 100), left))
        js = out / f"{step}.json"
        if step == "tests":
            T = "tests/optimized"
            files = [f"{T}/{f}.py" for f in ("test_cuda", "test_kv_cache", "test_router", "test_moe_model",
                                                "test_numerics", "test_checkpoint", "test_triton_compile")]
            cmd = python_m("pytest", "-v", "--tb=short", "-p", "no:cacheprovider", "--maxfail=15", *files,
                           *(["-k", a.tests] if a.tests else []), f"--junitxml={out / 'junit.xml'}")
        elif step in ("probe", "S5", "S4", "E2E"):
            cmd = python_m("lite_llm.benchmarks.bench_layer", "--scenario", step, *dev, *q, "--json", str(js))
        elif step == "conform":                  # the conformance suite against the optimized implementation on CUDA
            cmd = python_m("lite_llm.cli", "conform", "--impl", "optimized", "--device", "cpu" if a.quick else "cuda",
                           "--json", str(js))
        elif step == "moe":
            cmd = python_m("lite_llm.cli", "bench", "moe", "--scenario", "S3", *q, "--json", str(js))
        else:
            cmd = python_m("lite_llm.cli", "bench", step, *q, "--json", str(js))
        t0 = time.time()
        print(f"=== {step} (limit {limit}s): {' '.join(cmd[1:])}", flush=True)
        log.write(f"=== {step}\n")
        log.flush()
        try:
            pr = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                timeout=limit)
            rc, text = pr.returncode, pr.stdout
        except subprocess.TimeoutExpired as e:
            rc, text = 124, (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        log.write(text)
        log.flush()
        print(text[-6000:], flush=True)
        res["steps"][step] = {"rc": rc, "seconds": round(time.time() - t0, 1), "command": " ".join(cmd[1:])}
        if js.exists():
            res["results"][step] = json.loads(js.read_text())
            js.unlink()
        (out / "round2.json").write_text(json.dumps(res, indent=1, default=str))
    res["seconds"] = round(time.time() - start, 1)
    (out / "round2.json").write_text(json.dumps(res, indent=1, default=str))
    summary(res)
    return 0


def summary(res: dict) -> None:
    """The short table, last (the reply of a remote run carries the end of the output)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from gpu_summary import row_line

    env = res["env"]
    print(f"\nround 2: {env['gpu']}, torch {env['torch']}, triton {env['triton']}, {env['date']}, {res['seconds']} s")
    for name, st in res["steps"].items():
        print(f"  step {name:<7} rc={st.get('rc')} {st.get('seconds', '')} s {st.get('skipped', '')}")
    for name, results in res["results"].items():
        for b in results if isinstance(results, list) else []:
            print(f"  {b.get('scenario')}:")
            for r in b.get("rows", []):
                print("    " + row_line(r))


def install(env: dict, log) -> str:
    """Make ``lite_llm`` importable: already, or ``pip install -e .`` (no deps, no build isolation, no
    network), as scripts/gpu_check.sh does."""
    probe = [sys.executable, "-c", "import lite_llm.optimized.triton, lite_llm.benchmarks.bench_layer"]
    if subprocess.run(probe, cwd=ROOT, env=env, capture_output=True).returncode == 0:
        return "already importable"
    pr = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-e", "."],
                        cwd=ROOT, env=env, capture_output=True, text=True)
    log.write(pr.stdout[-3000:] + pr.stderr[-3000:])
    ok = subprocess.run(probe, cwd=ROOT, env=env, capture_output=True, text=True)
    msg = f"pip install -e . rc={pr.returncode}; import {'ok' if ok.returncode == 0 else 'FAILED: ' + ok.stderr[-500:]}"
    if ok.returncode != 0:                      # fall back: a package of links, first on sys.path (BOOT)
        pkg = SHIM / "lite_llm"
        if not pkg.exists():
            pkg.mkdir(parents=True)
            for f in (ROOT / "lite_llm").iterdir():
                (pkg / f.name).symlink_to(f)
            for name in ("spec", "reference", "optimized", "proofs", "conformance", "benchmarks"):
                (pkg / name).symlink_to(ROOT / name)
        BOOTED.append(True)
        msg += "; running through a linked package (BOOT)"
    print(msg, flush=True)
    return msg


SHIM = Path("/tmp/lite_llm_round2_shim")
BOOTED: list = []
BOOT = ("import runpy, sys; sys.path.insert(0, %r); mod = sys.argv[1]; sys.argv = sys.argv[1:]; "
        "runpy.run_module(mod, run_name='__main__', alter_sys=True)")


def python_m(module: str, *args: str) -> list[str]:
    """``python -m module args`` (through BOOT when the package could not be installed)."""
    if BOOTED:
        return [sys.executable, "-c", BOOT % str(SHIM), module, *args]
    return [sys.executable, "-m", module, *args]


if __name__ == "__main__":
    raise SystemExit(main())
