#!/usr/bin/env bash
# One device call (about 2.5 minutes): does a host-speed index taken outside the engine (speed_sampler.py, its own
# process) follow the drift of the engine's host work? sarathi lognormal 70% three times in a row, every step timed
# (studies/2026-12-03-first-chunk/timeline.py), the sampler running throughout. Carry .whl and tmp/h200-sweep-carry.
#   source scripts/gpu_env.sh && bash studies/2026-12-03-host-state/run2.sh
set -uo pipefail
: "${OUT:?set OUT}"
PY=${PY:-python3}
S=studies/2026-12-03-host-state
{ date -u; uptime; nvidia-smi --query-gpu=name,uuid --format=csv; } >"$OUT/env.txt" 2>&1
"$PY" "$S/speed_sampler.py" "$OUT/speed.csv" &
sampler=$!
for cond in A B C; do
  mkdir -p "$OUT/$cond"
  echo "== $cond $(date +%s)" | tee -a "$OUT/env.txt"
  timeout 150 "$PY" studies/2026-12-03-first-chunk/timeline.py --out "$OUT/$cond" --root "tmp/host-speed-$cond" \
    --point sarathi:lognormal:0.7 2>&1 | grep -v "nothing rewritten" | tail -n 3
done
kill -TERM "$sampler"; wait "$sampler"
gzip -f "$OUT"/*/timeline-*.csv
tar -cf "$OUT/timelines.tar" -C "$OUT" A B C && rm -rf "$OUT/A" "$OUT/B" "$OUT/C"
{ echo; date -u; uptime; } >>"$OUT/env.txt"
ls -l "$OUT"
