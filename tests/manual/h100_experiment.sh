#!/usr/bin/env bash
# The published H100 experiment (docs/results/h100-qwen3-0.6b/), in two halves.
#
#   GPU half, on the H100 machine (device tool: carry .whl; each call at most 10 minutes, so run it more than
#   once: finished points are kept in their records and skipped):
#       bash tests/manual/h100_experiment.sh gpu "$OUT" [fractions]
#   It writes one <point_key>.tar.gz per measured point and profiling.tgz (the bundle) into the given folder.
#
#   Local half, anywhere (no GPU): unpack those archives into tmp/ and simulate + compare every point:
#       bash tests/manual/h100_experiment.sh local <folder with the archives> [fractions]
set -euo pipefail
cd "$(dirname "$0")/../.."
mode=${1:?gpu or local}; dir=${2:?folder for the archives}; fractions=${3:-0.8,0.5,0.3,0.2}
POINT=(model=qwen3-0.6b hardware=h100 workload=lognormal_long_tail backend=hf-continuous backend.use_cuda_graph=true)

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
    mkdir -p tmp
    for a in "$dir"/*.tar.gz "$dir"/*.tgz; do [ -e "$a" ] && tar xzf "$a" -C tmp; done
    uv run --frozen experiment -m "${POINT[@]}" "load.capacity_fraction=$fractions"
    ;;
  *) echo "usage: $0 gpu|local <folder> [fractions]" >&2; exit 2 ;;
esac
