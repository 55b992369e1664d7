#!/usr/bin/env bash
# One device call (about 4 minutes): is the host's packing time (a first chunk packed again at its step's start, the
# bundle's `serial` host term) set by where the OS runs the engine's threads? sarathi lognormal at 70% three times in
# one lease, every step timed (studies/2026-12-03-first-chunk/timeline.py; the engine untouched): as the campaign
# runs it, then with the process pinned to four cores of the GPU's NUMA node (taskset), then as the campaign again
# (A, B, A: a drift over the lease shows as A against A). The CPU's clock is sampled every second throughout.
# Carry .whl and tmp/h200-sweep-carry.   source scripts/gpu_env.sh && bash studies/2026-12-03-host-state/run.sh
set -uo pipefail
: "${OUT:?set OUT}"
PY=${PY:-python3}
{ date -u; uptime; nproc; lscpu; nvidia-smi topo -m; nvidia-smi --query-gpu=name,uuid,clocks.sm --format=csv
  ls /sys/devices/system/cpu/cpu0/cpufreq /sys/devices/system/cpu/cpu0/cpuidle 2>&1
  cat /sys/devices/system/cpu/cpu0/cpufreq/scaling_governor 2>&1; command -v taskset; } >"$OUT/env.txt" 2>&1
( while sleep 1; do echo "$(date +%s) $(awk '/cpu MHz/ {s+=$4; n++; if ($4>m) m=$4} END {printf "%.0f %.0f", s/n, m}' /proc/cpuinfo)"; done ) \
  >"$OUT/mhz.txt" 2>&1 &
sampler=$!
# the GPU's CPU affinity as nvidia-smi reports it (e.g. 0-15): its first four cores (0-3 if it says nothing usable)
cores=$(nvidia-smi topo -m 2>/dev/null | awk '$1=="GPU0" {for (i=2; i<=NF; i++) if ($i ~ /^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$/) {print $i; exit}}')
first=${cores%%[-,]*}; first=${first:-0}
cores="$first-$((first + 3))"  # four cores of the GPU's node: the engine's, the dispatcher's and two to spare
echo "pinned to cores: $cores" >>"$OUT/env.txt"
for cond in A B A2; do
  pin=(); [ "$cond" = B ] && pin=(taskset -c "$cores")
  mkdir -p "$OUT/$cond"
  echo "== $cond $(date +%s) ${pin[*]}" | tee -a "$OUT/env.txt"
  timeout 150 "${pin[@]}" "$PY" studies/2026-12-03-first-chunk/timeline.py --out "$OUT/$cond" --root "tmp/host-state-$cond" \
    --point sarathi:lognormal:0.7 2>&1 | grep -v "nothing rewritten" | tail -n 5
  echo "== $cond done $(date +%s)" >>"$OUT/env.txt"
done
kill "$sampler"
gzip -f "$OUT"/*/timeline-*.csv
tar -cf "$OUT/timelines.tar" -C "$OUT" A B A2 && rm -rf "$OUT/A" "$OUT/B" "$OUT/A2"
{ echo; date -u; uptime; } >>"$OUT/env.txt"
ls -l "$OUT"
