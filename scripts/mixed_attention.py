"""GPU: one attention call of a prompt chunk beside decodes, against the two rows Vidur adds for it.

A native step runs its attention as one ``paged_attention`` call a layer: the decode launch, the merge of its
split-KV parts and, with a prompt chunk in the step, the prefill launch. The bundle times a chunk's row alone (the
same three launches, the decode one empty) and a decode batch's row alone (decode and merge), and vidur-sim adds
the two for a step that holds both, so the decode and merge launches' fixed cost may be counted twice. This times,
for each case, the chunk alone, the decodes alone and both in one call, exactly as the profiler times a row
(``EngineLayerOps``: a CUDA graph of the call over consecutive layers, each on its layer's K/V), with the engine of
the campaign's ``sarathi`` setup (random weights), and prints per layer and per 28-layer step: prefill row + decode
row - mixed call, the amount a summed prediction over-counts.

    source scripts/gpu_env.sh && python3 scripts/mixed_attention.py --out "$OUT/mixed_attention.csv"
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np

CASES = [  # (prompt chunk tokens, its cached prefix, decodes beside it, their KV)
    (512, 0, 0, 0), (512, 2048, 0, 0),
    (510, 256, 2, 512), (504, 256, 8, 512), (504, 2048, 8, 1024), (496, 256, 16, 512), (480, 512, 32, 2048),
    (256, 0, 4, 512), (256, 512, 4, 512), (128, 1024, 96, 2048),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="the CSV to write (one row a case)")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("overrides", nargs="*", help="config overrides after the H200 ones (a CPU smoke run: "
                    "model=qwen3-tiny hardware=cpu)")
    args = ap.parse_args()

    import torch

    from gpu_simulate_test.backends import get_backend
    from gpu_simulate_test.config import compose_app
    from gpu_simulate_test.vidur_ext.profiler.engine_ops import EngineLayerOps
    from gpu_simulate_test.vidur_ext.profiler.timing import TimingMethod, time_call
    from gpu_simulate_test.workloads.load import Workload, WorkloadRequest

    cfg = compose_app("vidur_profile", ["model=qwen3-0.6b", "hardware=h200", "backend=native",
                                        "backend.vidur_scheduler=sarathi", *args.overrides])
    t0 = time.monotonic()
    backend = get_backend(cfg.backend.name)(cfg.backend, cfg.model, cfg.hardware, cfg.seed)
    longest = max(max(prefix + chunk, kv + 1) for chunk, prefix, _, kv in CASES)  # the engine's pool holds them
    backend.check_workload(Workload(workload_id="mixed-attention", path=Path("<mixed_attention.py cases>"), meta={},
                                    requests=[WorkloadRequest(0, 0, longest, 1)]))
    backend.load()
    ops = EngineLayerOps(backend.native_engine())
    print(f"engine loaded in {time.monotonic() - t0:.1f} s; table width {ops._table_width} blocks")
    method = TimingMethod(warmup_iters=5, repeat_iters=args.repeats, calls_per_repeat=10)
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)

    def per_call_us(seqs: list[tuple[int, int]]) -> float:
        replay = ops._attend(seqs)  # the profiler's own path for a row: EngineLayerOps.prefill / .decode
        return float(np.median(time_call(replay, sync, method) / getattr(replay, "calls_per_run", 1))) * 1e3

    rows = []
    with torch.inference_mode():
        for chunk, prefix, decodes, kv in CASES:
            prefill = per_call_us([(prefix, chunk)])
            decode = per_call_us([(kv, 1)] * decodes) if decodes else 0.0
            mixed = per_call_us([(prefix, chunk)] + [(kv, 1)] * decodes)
            over = prefill + decode - mixed
            rows.append({"chunk": chunk, "prefix": prefix, "decodes": decodes, "decode_kv": kv,
                         "prefill_row_us": round(prefill, 2), "decode_row_us": round(decode, 2),
                         "mixed_call_us": round(mixed, 2), "summed_over_us": round(over, 2),
                         "summed_over_step_ms": round(over * ops.num_layers / 1e3, 4)})
            print(", ".join(f"{k} {v}" for k, v in rows[-1].items()), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    backend.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
