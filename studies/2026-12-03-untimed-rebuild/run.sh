#!/usr/bin/env bash
# One device call (about 3 minutes): sarathi lognormal at 50%, 70% and 90% rerun with every step's host phases and
# device interval timed (studies/2026-12-03-first-chunk/timeline.py; the engine untouched). Why do first chunks packed
# at their step's start cost ~250 us more than the bundle says at 70% only? Carry .whl and tmp/h200-sweep-carry.
#   source scripts/gpu_env.sh && bash studies/2026-12-03-untimed-rebuild/run.sh
set -uo pipefail
: "${OUT:?set OUT}"
PY=${PY:-python3}
{ date -u; uptime; nvidia-smi --query-gpu=name,uuid,utilization.gpu,memory.used,clocks.sm --format=csv; } >"$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
timeout 420 "$PY" studies/2026-12-03-first-chunk/timeline.py --out "$OUT" --root tmp/untimed-rebuild \
  --point sarathi:lognormal:0.5 --point sarathi:lognormal:0.7 --point sarathi:lognormal:0.9 2>&1 \
  | grep -v "nothing rewritten" | tail -n 20
# The device tool brings back at most 8 files: the timelines go back as one tar.
gzip -f "$OUT"/timeline-*.csv
tar -cf "$OUT/timelines.tar" -C "$OUT" $(cd "$OUT" && ls timeline-*) && rm -f "$OUT"/timeline-*
{ echo; date -u; uptime; } >>"$OUT/env.txt"
ls -l "$OUT"
