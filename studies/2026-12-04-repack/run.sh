#!/usr/bin/env bash
# One device call: the engine's GPU tests, then its host work old (c4c55ba, the published campaign's engine) against
# new (this tree), interleaved on one lease. Needs tmp/oldsrc (git archive c4c55ba src | tar -x -C tmp/oldsrc) carried.
#   source scripts/gpu_env.sh && bash studies/2026-12-04-repack/run.sh
set -u
OUT=${OUT:?}
t0=$SECONDS
{ nvidia-smi --query-gpu=uuid,name,clocks.sm,clocks.max.sm --format=csv; uptime; nproc; } > "$OUT/host.txt" 2>&1
timeout 300 python3 -m pytest -m gpu -q -x -p no:cacheprovider tests/gpu/test_engine_gpu.py tests/gpu/test_native_gpu.py \
  > "$OUT/pytest-gpu.txt" 2>&1
echo "pytest rc $? after $((SECONDS - t0)) s" | tee -a "$OUT/host.txt"
tail -3 "$OUT/pytest-gpu.txt"
old="$PWD/tmp/oldsrc/src"
for r in 1 2; do  # the forward stubbed on the CPU: the packing alone, on this host's CPU
  PYTHONPATH="$old:$PYTHONPATH" python3 benchmarks/bench_engine_host.py > "$OUT/cpu-old-$r.txt" 2>&1
  python3 benchmarks/bench_engine_host.py > "$OUT/cpu-new-$r.txt" 2>&1
done
echo "cpu benches done after $((SECONDS - t0)) s" | tee -a "$OUT/host.txt"
for r in 1; do  # the real steps from their graphs (one round: the campaign needs the device time)
  [ $((SECONDS - t0)) -gt 420 ] && break
  PYTHONPATH="$old:$PYTHONPATH" timeout 150 python3 benchmarks/bench_engine_host.py --device cuda > "$OUT/cuda-old-$r.txt" 2>&1
  timeout 150 python3 benchmarks/bench_engine_host.py --device cuda > "$OUT/cuda-new-$r.txt" 2>&1
  echo "cuda round $r done after $((SECONDS - t0)) s" | tee -a "$OUT/host.txt"
done
uptime >> "$OUT/host.txt"
tail -n 4 "$OUT"/c*.txt
