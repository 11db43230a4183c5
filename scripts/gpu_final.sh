#!/usr/bin/env bash
# One device call for the end of a round: CUDA tests + conformance on CUDA (gpu_round2.py), the
# training check (gpu_train_check.py), the corollary sweep (gpu_corollary.sh) and, when STORAGE=1,
# the storage check; every result packed into $OUT/results.tgz (the device returns at most 8 files).
#   OUT=dir bash scripts/gpu_final.sh
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:?set OUT}
W=$(mktemp -d)
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
python3 -m pip install -q --no-deps --no-build-isolation -e . >"$W/install.log" 2>&1 || echo "editable install failed (see install.log)"
echo "== round2 (tests, conform)"; mkdir -p "$W/round2"
OUT="$W/round2" timeout 300 python3 scripts/gpu_round2.py --steps ${R2_STEPS:-tests,conform} --budget ${R2_BUDGET:-220} 2>&1 | tail -25
echo "== train"; mkdir -p "$W/train"
timeout 200 python3 scripts/gpu_train_check.py --out "$W/train" --budget ${TRAIN_BUDGET:-150} 2>&1 | tail -25
echo "== corollary"; mkdir -p "$W/corollary"
OUT="$W/corollary" BUDGET=${COR_BUDGET:-160} timeout 200 bash scripts/gpu_corollary.sh 2>&1 | tail -25
if [ "${STORAGE:-0}" = "1" ]; then
    echo "== storage"; mkdir -p "$W/storage"
    timeout ${STORAGE_LIMIT:-300} python3 scripts/gpu_storage_check.py --out "$W/storage" 2>&1 | tail -25
fi
tar czf "$OUT/results.tgz" -C "$W" . && ls -la "$OUT"
