#!/usr/bin/env bash
# One device call (about 4 minutes): the first chunk against the second beside the same decodes, then two campaign
# points rerun with every step timed (sarathi lognormal 30% and 70%). Carry .whl and tmp/h200-sweep-carry (the
# campaign's capacities: the same offered loads, no probe). Writes under $OUT.
#   source scripts/gpu_env.sh && bash studies/2026-12-03-first-chunk/run.sh
set -uo pipefail
: "${OUT:?set OUT}"
PY=${PY:-python3}
S=studies/2026-12-03-first-chunk
{ date -u; uptime; nvidia-smi --query-gpu=name,uuid,utilization.gpu,memory.used,clocks.sm --format=csv; } >"$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
timeout 150 "$PY" $S/first_vs_later.py 2>&1 | tail -n 120 | tee "$OUT/first_vs_later.log"
timeout 240 "$PY" $S/timeline.py --out "$OUT" --root tmp/first-chunk \
  --point sarathi:lognormal:0.3 --point sarathi:lognormal:0.7 2>&1 | grep -v "nothing rewritten" | tail -n 20
# The device tool brings back at most 8 files: the timelines (two points, three files each) go back as one tar.
gzip -f "$OUT"/timeline-*.csv
tar -cf "$OUT/timelines.tar" -C "$OUT" $(cd "$OUT" && ls timeline-*) && rm -f "$OUT"/timeline-*
ls -l "$OUT"
