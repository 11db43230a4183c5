#!/usr/bin/env bash
# One command for the GPU machine: install the package, run the CUDA tests, the conformance suite on
# CUDA and the benchmarks (S1, S2, S3), and write everything to $OUT (a short table is printed last).
#
#   OUT=/some/dir bash scripts/gpu_check.sh          # from the repository root; no network needed
#
# Budget: every step has a time limit so the whole run stays under 9 minutes; a step that runs out
# of time or fails is recorded as such and the next one runs. Files in $OUT (at most 8):
#   results.json  summary.txt  tests.log  junit.xml  bench.log  conform.log  (+ install.log on failure)
set -u
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=${OUT:-$ROOT/gpu-check-out}
mkdir -p "$OUT"
START=$(date +%s)
export CI=true HYPOTHESIS_PROFILE=ci PYTHONUNBUFFERED=1
PY=${PYTHON:-python}

step() {   # step NAME SECONDS LOGFILE COMMAND...: run with a time limit, append to the log, record rc
    local name=$1 limit=$2 log=$3; shift 3
    local t0=$(date +%s)
    echo "=== $name (limit ${limit}s) ===" | tee -a "$OUT/$log"
    timeout --kill-after=10 "$limit" "$@" >>"$OUT/$log" 2>&1
    local rc=$?
    echo "$name rc=$rc seconds=$(( $(date +%s) - t0 ))" | tee -a "$OUT/steps.txt"
    tail -n 25 "$OUT/$log"
}

# 1. Install: editable, no dependencies, no build isolation (torch/triton are preinstalled).
if ! $PY -c "import lite_llm.optimized, lite_llm.benchmarks" 2>/dev/null; then
    if ! $PY -m pip install --no-deps --no-build-isolation -e . >"$OUT/install.log" 2>&1; then
        echo "pip install -e . failed (see install.log); using a symlinked package on PYTHONPATH instead"
        SHIM=$(mktemp -d)/shim
        mkdir -p "$SHIM/lite_llm"
        for f in lite_llm/*; do ln -s "$ROOT/$f" "$SHIM/lite_llm/$(basename "$f")"; done
        for pair in spec:spec reference:reference optimized:optimized proofs:proofs conformance:conformance \
                    benchmarks:benchmarks; do
            ln -s "$ROOT/${pair%%:*}" "$SHIM/lite_llm/${pair##*:}"
        done
        export PYTHONPATH="$SHIM:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
    fi
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"      # for the tests package
$PY -c "import lite_llm.optimized.triton" || { echo "cannot import lite_llm; see $OUT/install.log"; exit 2; }

# 2. Environment.
$PY - <<'PYEOF' >"$OUT/env.json"
import json, sys, datetime, torch, triton
print(json.dumps({"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                  "capability": list(torch.cuda.get_device_capability(0)) if torch.cuda.is_available() else None,
                  "torch": torch.__version__, "triton": triton.__version__, "python": sys.version.split()[0],
                  "grouped_mm": hasattr(torch, "_grouped_mm")}))
PYEOF
cat "$OUT/env.json"

# 3. The optimized tests on CUDA, most telling first, one line per test as it finishes (so a run cut
#    by the time limit still shows what passed). The interpreter suite is CPU-only (CI runs it).
T=tests/optimized
step tests 180 tests.log $PY -m pytest -v --tb=short --maxfail=15 -p no:cacheprovider \
     $T/test_cuda.py $T/test_router.py $T/test_moe_model.py $T/test_numerics.py $T/test_checkpoint.py \
     $T/test_triton_compile.py $T/test_kv_cache.py --junitxml="$OUT/junit.xml" -o junit_family=xunit1

# 4. Benchmarks (each prints its table; JSON for the summary).
QUICK=${QUICK:+--quick}          # QUICK=1: tiny sizes (a dry run of this script on a CPU machine)
step bench_router 90 bench.log $PY -m lite_llm.cli bench router $QUICK --json "$OUT/bench_router.json"
step bench_moe 150 bench.log $PY -m lite_llm.cli bench moe $QUICK --json "$OUT/bench_moe.json"   # S3, S4, S5, E2E

# 5. Conformance on CUDA, if the runner exists.
if $PY -m lite_llm.cli conform --help >/dev/null 2>&1; then
    step conform 70 conform.log $PY -m lite_llm.cli conform --impl optimized --device cuda --json "$OUT/conform.json"
else
    echo "lite-llm conform is not available; the CUDA tests above stand in for it" | tee "$OUT/conform.log"
fi

# 6. One results.json and the short table.
$PY scripts/gpu_summary.py "$OUT" "$(( $(date +%s) - START ))" | tee "$OUT/summary.txt"
# keep $OUT within 8 files: the per-step JSON files are merged into results.json
rm -f "$OUT/bench_router.json" "$OUT/bench_moe.json" "$OUT/conform.json" "$OUT/env.json" "$OUT/steps.txt"
