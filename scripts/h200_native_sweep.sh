#!/usr/bin/env bash
# Issue 16's campaign on the H200: Vidur against the native engine (scripts/h200_native_sweep.py says what it runs;
# context/h200-native-sweep-runbook.md says how, call by call).
#
#   on the GPU host (device tool; carry .whl and tmp/h200-sweep-carry; each call at most 10 minutes):
#       bash scripts/h200_native_sweep.sh run                 # the pending tasks that fit, packed into $OUT/pack-*.tar
#   here, between calls and after the last:
#       bash scripts/h200_native_sweep.sh collect <files_at>  # a call's files into the result folder, carry refreshed
#       bash scripts/h200_native_sweep.sh collect             # a new checkout: the carry from the committed folder
#       bash scripts/h200_native_sweep.sh publish [--folder F] # tables, figures, summary.md, MANIFEST.csv from archives
#       bash scripts/h200_native_sweep.sh plan                # the calls the campaign needs (assumed capacities)
#       bash scripts/h200_native_sweep.sh rederive S --from ID # S's bundle derived again from a filed one (no GPU)
#   anywhere without a GPU:
#       OUT=/tmp/h200-dry bash scripts/h200_native_sweep.sh --dry-run   # every config composed, the bundles' shapes
#
# A call stops starting tasks when the next would not fit BUDGET_S (default 540 s of the 10-minute call); the outer
# timeout (LIMIT_S, 580 s) is the hard stop. Everything a call makes comes back in $OUT: pack-<i>.tar (archives),
# summary.txt (one line per task), call.log.
set -uo pipefail
cd "$(dirname "$0")/.."
cmd=${1:?run, collect, publish, rederive, plan or --dry-run}; shift

case "$cmd" in
  run)
    OUT=${OUT:?set OUT to the folder that comes back}
    mkdir -p "$OUT"
    source scripts/gpu_env.sh || exit 1
    timeout --signal=INT --kill-after=15 "${LIMIT_S:-580}" python3 scripts/h200_native_sweep.py run --out "$OUT" \
      --budget "${BUDGET_S:-540}" "$@" 2>&1 | tee "$OUT/call.log"
    rc=${PIPESTATUS[0]}
    echo "== summary (rc $rc)"; cat "$OUT/summary.txt" 2>/dev/null; ls -la "$OUT"
    exit "$rc"
    ;;
  --dry-run)
    OUT=${OUT:?set OUT to a scratch folder}
    mkdir -p "$OUT"
    export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
    .venv/bin/python scripts/h200_native_sweep.py dry-run --out "$OUT" "$@" && .venv/bin/python scripts/h200_native_sweep.py plan
    ;;
  plan|collect|publish|rederive)
    python3 -m uv run --frozen python scripts/h200_native_sweep.py "$cmd" "$@"
    ;;
  *) echo "unknown command $cmd (run, collect, publish, rederive, plan, --dry-run)" >&2; exit 2 ;;
esac
