#!/usr/bin/env bash
# Issue 15 on the H200: the native engine's GPU tests, its kernel and engine benchmarks, then a short backend=native
# experiment point (real-bench, vidur-profile, vidur-sim, compare-runs), each part under its own timeout.
#
#   on the GPU machine (device tool, carry .whl; at most 10 minutes a call):
#       bash scripts/native_h200.sh [parts...]    # parts, in this order: tests kernels engine point (default: all);
#                                                 # also breakdown (bench_engine_breakdown.py). TESTS=<paths> narrows
#                                                 # the tests, KERNEL_PARTS="linear skinny" the kernel benchmark
#   anywhere without a GPU (checks the script, the pytest collection, the benchmarks' skip, the point's config):
#       OUT=/tmp/native-dry bash scripts/native_h200.sh --dry-run
#
# All parts share one budget (BUDGET_S, default 570 s: the 10-minute call less start-up and transfers); a part gets
# at most its own cap and what is left, and one whose minimum no longer fits is skipped with a line saying so. All
# four need about 15 minutes, so run them as three calls: `tests kernels`, then `engine`, then `point`
# (context/native-h200-runbook.md says what each prints and what to expect). Everything goes under $OUT, at most 8
# files (what the device tool brings back):
#   summary.txt                   one line per part: status (ok, failed rc, timeout, skipped) and seconds; the
#                                 point's bundle verdict
#   tests.log                     pytest -m gpu tests/gpu -s: kernels vs references (bf16, serving shapes), engine
#                                 logits vs HF, native real-bench and the profiler's graph-replayed ops
#   bench_kernels.log/.json       benchmarks/bench_kernels.py
#   bench_engine.log/.json        benchmarks/bench_engine.py (acceptance table: decode steps vs floors, prefill, offline)
#   point.log                     the experiment point's output (headline table at the end)
#   point/<point_key>.tar.gz      its record, workload, real run, bundle, simulation and comparison (paths.root layout)
set -uo pipefail
cd "$(dirname "$0")/.."

dry=0
if [ "${1:-}" = "--dry-run" ]; then dry=1; shift; fi
parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(tests kernels engine point)
OUT=${OUT:?set OUT to the folder that comes back}
mkdir -p "$OUT"
budget=${BUDGET_S:-570}
start=$SECONDS

if [ $dry = 1 ]; then
  PY=${PY:-.venv/bin/python}
  export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
else
  PY=python3
  source scripts/gpu_env.sh || exit 1
fi

# The point: native with its own defaults (sarathi policy, budget 512, cap 128, pool from gpu_memory_utilization 0.9)
# on lognormal chat-like lengths, 200 requests at 8 per second, random weights unless Qwen3-0.6B is cached offline.
POINT=(model=qwen3-0.6b hardware=h200 backend=native workload=lognormal_long_tail workload.num_requests=200 load.qps=8
       "paths.root=${GST_ROOT:-tmp}" "archive_dir=$OUT/point")
# Its bundle is built in the same call, the native engine's first on a GPU: a quiet H200 should give it a "pass"
# verdict, but a first build may well miss the 10% held-out tolerance. The point then still runs to its comparison
# (accepted explicitly, as make demo accepts its CPU bundle), and the verdict is said: a line of summary.txt and,
# next to the headline, the comparison's summary.md. A verdict other than pass means: rebuild before trusting it.
ACCEPT=(accept_bundle=true)

# The headline table (and the engine's facts) of every point recorded under the artifact root.
HEADLINE='
import json, pathlib, sys
from gpu_simulate_test.analysis.report import headline_text
root = pathlib.Path(sys.argv[1])
for rec in sorted((root / "experiments").glob("*.json")):
    r = json.loads(rec.read_text())
    print("point", r["point_key"], "real", r["real_run"], "bundle", r["bundle_id"])
    meta = json.loads((root / "real_runs" / r["real_run"] / "run_meta.json").read_text())
    print("engine:", {k: v for k, v in meta["engine_stats"].items() if k != "engine"}, "num_blocks",
          meta["backend"]["num_blocks"], "run_s", round(meta["run_s"], 1))
    if r.get("bundle_id"):
        from gpu_simulate_test.vidur_ext.verdict import bundle_verdict
        bundle = json.loads((root / "profiling" / r["bundle_id"] / "profile_meta.json").read_text())
        print("bundle held-out median |error| %:", bundle["held_out_check"]["median_abs_error_pct"])
        print("bundle verdict (accepted by the script):", bundle_verdict(bundle).line())
    if r.get("comparison_id"):
        print(headline_text(root / "comparisons" / r["comparison_id"]))
'

run_part() {  # name cap_s min_s log command...: run under timeout within the budget; one line into summary.txt
  local name=$1 cap=$2 min=$3 log=$4; shift 4
  local left=$((budget - (SECONDS - start)))
  local limit=$(( cap < left ? cap : left ))
  if [ "$limit" -lt "$min" ]; then
    echo "$name skipped: ${left}s of the budget left, it needs at least ${min}s" | tee -a "$OUT/summary.txt"
    return 0
  fi
  echo "== $name (at most ${limit}s) -> $log"
  local t0=$SECONDS
  timeout --signal=INT --kill-after=30 "$limit" "$@" >>"$OUT/$log" 2>&1
  local rc=$?
  local status=ok
  [ $rc -ne 0 ] && status="failed rc=$rc"
  [ $rc -eq 124 ] || [ $rc -eq 137 ] && status="timeout after ${limit}s"
  echo "$name $status $((SECONDS - t0))s" | tee -a "$OUT/summary.txt"
  tail -n 25 "$OUT/$log"
}

for part in "${parts[@]}"; do
  case "$part" in
    tests)
      if [ $dry = 1 ]; then
        run_part tests 120 10 tests.log "$PY" -m pytest -m gpu tests/gpu --collect-only -q
      else
        run_part tests 300 60 tests.log "$PY" -m pytest -m gpu ${TESTS:-tests/gpu} -s -q -rs
      fi ;;
    kernels) run_part kernels 300 60 bench_kernels.log "$PY" benchmarks/bench_kernels.py \
               ${KERNEL_PARTS:+--parts $KERNEL_PARTS} ;;
    engine) run_part engine 420 120 bench_engine.log "$PY" benchmarks/bench_engine.py ;;
    breakdown) run_part breakdown 180 60 bench_engine_breakdown.log "$PY" benchmarks/bench_engine_breakdown.py ;;
    point)
      if [ $dry = 1 ]; then
        run_part point 120 10 point.log "$PY" -m gpu_simulate_test.cli.experiment "${POINT[@]}" "${ACCEPT[@]}" --cfg job
      else
        # First the real run alone (archived at once, so it comes back even if the rest runs out of time), then the
        # same point again: the record finds the real run, and profile, sim and compare follow.
        run_part point-real 240 90 point.log "$PY" -m gpu_simulate_test.cli.experiment "${POINT[@]}" \
          "stages=[workload,real]"
        run_part point-rest 420 120 point.log "$PY" -m gpu_simulate_test.cli.experiment "${POINT[@]}" "${ACCEPT[@]}"
        run_part point-table 60 5 point.log "$PY" -c "$HEADLINE" "${GST_ROOT:-tmp}"
        grep -h "^bundle verdict" "$OUT/point.log" | tail -n 1 >>"$OUT/summary.txt"
      fi ;;
    *) echo "unknown part $part (tests kernels engine breakdown point)" >&2; exit 2 ;;
  esac
done
echo "== summary ($((SECONDS - start))s)"
cat "$OUT/summary.txt"
