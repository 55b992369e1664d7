#!/usr/bin/env bash
# The published H100 experiment (docs/results/h100-qwen3-0.6b/), in two halves.
#
#   GPU half, on the H100 machine (device tool: carry .whl; each call at most 10 minutes, so run it more than
#   once: finished points are kept in their records and skipped):
#       bash tests/manual/h100_experiment.sh gpu "$OUT" [fractions]
#   It writes one <point_key>.tar.gz per measured point and profiling.tgz (the bundle) into the given folder.
#
#   Local half, anywhere (no GPU): unpack those archives into tmp/ (or $GST_ROOT), simulate and compare every
#   point found in them, and write the sweep report:
#       bash tests/manual/h100_experiment.sh local <folder with the archives>
set -euo pipefail
cd "$(dirname "$0")/../.."
mode=${1:?gpu or local}; dir=${2:?folder for the archives}; fractions=${3:-0.8,0.5,0.3,0.2}
SETUP=(model=qwen3-0.6b hardware=h100 backend=hf-continuous backend.use_cuda_graph=true)
POINT=("${SETUP[@]}" workload=lognormal_long_tail)

case "$mode" in
  gpu)
    source tests/manual/gpu_env.sh
    export PYTHONPATH="$PWD/src:$PYTHONPATH"
    root=/tmp/gst
    python3 -m gpu_simulate_test.cli.experiment -m "${POINT[@]}" "load.capacity_fraction=$fractions" \
      'stages=[workload,real]' "archive_dir=$dir" "paths.root=$root"
    python3 -m gpu_simulate_test.cli.vidur_profile model=qwen3-0.6b hardware=h100 backend=hf-continuous \
      backend.use_cuda_graph=true "paths.root=$root"
    tar czf "$dir/profiling.tgz" -C "$root" profiling
    ;;
  local)
    # Driven by the point records that came back, not by recomputed ids: the ids hash the whole resolved config,
    # so a later version of the tool (a new config field) would not find these runs again by hashing.
    root=${GST_ROOT:-tmp}
    mkdir -p "$root"
    for a in "$dir"/*.tar.gz "$dir"/*.tgz; do [ -e "$a" ] && tar xzf "$a" -C "$root"; done
    bundle=$(ls -d "$root"/profiling/qwen3-0.6b-h100-hf-continuous-* | head -1)
    comparisons=()
    for rec in "$root"/experiments/*.json; do
      read -r wid real < <(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["workload_id"], r["real_run"])' "$rec")
      sim=$(uv run --frozen vidur-sim "${SETUP[@]}" "workload_id=$wid" "profiling_root=$bundle" "paths.root=$root" | tail -1)
      cmp=$(uv run --frozen compare-runs "real_run=$real" "sim_run=$(basename "$sim")" "paths.root=$root" | sed -n 's/^summary: //p')
      echo "$wid: $(dirname "$cmp")"
      comparisons+=("$(basename "$(dirname "$cmp")")")
    done
    uv run --frozen compare-runs mode=sweep "comparisons=[$(IFS=,; echo "${comparisons[*]}")]" "paths.root=$root"
    ;;
  *) echo "usage: $0 gpu|local <folder> [fractions]" >&2; exit 2 ;;
esac
