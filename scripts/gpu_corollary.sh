#!/usr/bin/env bash
# Issue 13 on a CUDA machine, in at most 4 minutes: the quadrillion corollary swept over its seven
# cumulative TierSets (CUDA full run + the CPU counted-not-computed run) and the routing-scaling bench
# (flat vs HSER vs product keys, 1e3 .. 1e7 experts; CUDA + CPU quick), plus the generated-tier tests.
#
#   OUT=/some/dir bash scripts/gpu_corollary.sh        # from the repository root; no network needed
#   QUICK=1 OUT=/tmp/x bash scripts/gpu_corollary.sh   # CPU only: the --quick runs (a smoke test of this script)
#
# Files in $OUT: corollary-<date>-cuda.json/.png, corollary-<date>-cpu.json/.png, scaling-<date>-cuda.json/.png,
# scaling-<date>-cpu.json/.png (PNGs only where matplotlib is installed; otherwise draw them elsewhere with
# `lite-llm bench corollary --plot-from FILE.json`), steps.txt, corollary.log, scaling.log, tests.log, env.json.
# Every step has a time limit taken from a 232 s budget (QUICK=1: 300 s); a step that fails or runs out is recorded and the
# next one runs. Copy the JSON/PNG files into benchmarks/results/ to commit them.
set -u
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=${OUT:-$ROOT/gpu-corollary-out}
QUICK=${QUICK:-0}
mkdir -p "$OUT"
START=$(date +%s)
if [ "$QUICK" = "1" ]; then BUDGET=${BUDGET:-300}; else BUDGET=${BUDGET:-232}; fi
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python}

left() { echo $(( BUDGET - ($(date +%s) - START) )); }
step() {   # step NAME SECONDS LOGFILE COMMAND...: run with min(SECONDS, what is left), log, record rc
    local name=$1 limit=$2 log=$3; shift 3
    local l; l=$(left)
    if [ "$l" -lt 5 ]; then echo "$name rc=skipped (budget spent)" | tee -a "$OUT/steps.txt"; return; fi
    [ "$limit" -gt "$l" ] && limit=$l
    local t0; t0=$(date +%s)
    echo "=== $name (limit ${limit}s) ===" | tee -a "$OUT/$log"
    timeout --kill-after=5 "$limit" "$@" >>"$OUT/$log" 2>&1
    local rc=$?
    echo "$name rc=$rc seconds=$(( $(date +%s) - t0 ))" | tee -a "$OUT/steps.txt"
    tail -n 30 "$OUT/$log"
}

# 1. Install: editable, no dependencies (torch/triton preinstalled); a symlinked package if that fails.
if ! $PY -c "import lite_llm.optimized.generated, lite_llm.benchmarks.bench_corollary" 2>/dev/null; then
    if ! $PY -m pip install --no-deps --no-build-isolation -e . >"$OUT/install.log" 2>&1; then
        echo "pip install -e . failed (see install.log); using a symlinked package on PYTHONPATH instead"
        SHIM=$(mktemp -d)/shim
        mkdir -p "$SHIM/lite_llm"
        for f in lite_llm/*; do ln -s "$ROOT/$f" "$SHIM/lite_llm/$(basename "$f")"; done
        for d in spec reference optimized proofs conformance benchmarks; do ln -s "$ROOT/$d" "$SHIM/lite_llm/$d"; done
        export PYTHONPATH="$SHIM${PYTHONPATH:+:$PYTHONPATH}"
    fi
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"      # the tests package
$PY -c "import lite_llm.optimized.generated" || { echo "cannot import lite_llm; see $OUT/install.log"; exit 2; }
CLI="$PY -m lite_llm.cli"

$PY - <<'PYEOF' >"$OUT/env.json"
import json, sys, datetime, torch
try:
    import triton; tv = triton.__version__
except ImportError:
    tv = None
try:
    import matplotlib; mv = matplotlib.__version__
except ImportError:
    mv = None
print(json.dumps({"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                  "torch": torch.__version__, "triton": tv, "matplotlib": mv, "python": sys.version.split()[0]}))
PYEOF
cat "$OUT/env.json"

if [ "$QUICK" = "1" ]; then
    step corollary-cpu-quick 200 corollary.log $CLI bench corollary --device cpu --quick --out "$OUT"
    step scaling-cpu-quick 90 scaling.log $CLI bench scaling --device cpu --quick --out "$OUT"
else
    # 2. Generated tiers bit for bit on CUDA (INIT-3): slices, routing on generated rows, a whole forward.
    step tests 25 tests.log $PY -m pytest -q -x -p no:cacheprovider tests/optimized/test_generated.py -k cuda
    # 3. The corollary, CUDA full run: 4 tokens, 3 repetitions (fewer when the budget runs short).
    step corollary-cuda 90 corollary.log $CLI bench corollary --device cuda --tokens 4 --reps 3 --max-seconds 70 \
        --out "$OUT"
    # 4. The same sweep on the CPU: counted, not computed (routing and router-row generation timed).
    step corollary-cpu-quick 30 corollary.log $CLI bench corollary --device cpu --quick --max-seconds 20 --out "$OUT"
    # 5. Routing scaling on CUDA (1e3 .. 1e7 experts, d = 1024, batch 1 and 4096), then the CPU quick one.
    step scaling-cuda 75 scaling.log $CLI bench scaling --device cuda --reps 10 --max-seconds 50 --out "$OUT"
    step scaling-cpu-quick 12 scaling.log $CLI bench scaling --device cpu --quick --max-seconds 6 --out "$OUT"
fi
echo "total $(( $(date +%s) - START )) s" | tee -a "$OUT/steps.txt"
ls -la "$OUT"
