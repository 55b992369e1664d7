"""A request's first chunk against its second, on the same engine beside the same decodes (one H200).

The campaign's engine (sarathi, budget 512, cap 128, its graph buckets; random bf16 weights) runs 12 requests that
decode at KV ~1,024; then, again and again, a fresh prompt of 1,000 tokens (one token out) joins while they run: its
first chunk (500 tokens, no prefix) and its second (500 at prefix 500) run in two steps of the same graph bucket
beside the same decodes. The rows predict the second ~0.3 ms dearer (its attention reads 500 more keys a layer);
the campaign's steps say a first chunk costs about as much. Per step (medians): the wall time as the engine times a
step, and the device's time from the launch to its last op (CUDA events, as ``timeline.py`` records them); then
each kind's graph replay under ``torch.profiler``, kernels in launch order (the first layer and the step's end).

    python studies/2026-12-03-first-chunk/first_vs_later.py     # writes $OUT/first_vs_later.txt too
    python studies/2026-12-03-first-chunk/first_vs_later.py --cpu   # a tiny model on the CPU: checks the script
"""

from __future__ import annotations

import os
import random
import statistics
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[1] / "benchmarks")]

from bench_engine import QWEN3_06B, random_state_dict  # noqa: E402
from bench_engine_breakdown import _profile  # noqa: E402
from timeline import Timeline  # noqa: E402

DECODERS, CONTEXT, PROMPT, REPS = 12, 1024, 1000, 24
TINY = dict(hidden_size=128, num_layers=2, num_attention_heads=4, num_kv_heads=2, head_dim=32, intermediate_size=256,
            vocab_size=512, max_position_embeddings=4096, rope_theta=1e6, rms_norm_eps=1e-6, tie_word_embeddings=True)


def main() -> int:
    cpu = "--cpu" in sys.argv[1:]  # a tiny model on the CPU: the script's own check, nothing measured
    if not (cpu or torch.cuda.is_available()):
        print("first_vs_later: no CUDA GPU here; skipped (--cpu: check the script on a tiny model)")
        return 0
    from gpu_simulate_test.engine.config import EngineConfig, ModelShape
    from gpu_simulate_test.engine.engine import LLMEngine

    out: list[str] = []
    shape = ModelShape(**(TINY if cpu else QWEN3_06B))
    config = EngineConfig(model=shape, policy="sarathi", max_batch_tokens=512, max_requests_per_batch=128,
                          block_size=16, num_blocks=2048 if cpu else None, gpu_memory_utilization=0.5,
                          dtype="float32" if cpu else "bfloat16", device="cpu" if cpu else "cuda",
                          cuda_graph_batch_sizes=[1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128],
                          cuda_graph_token_sizes=[16, 32, 64, 128, 256, 512])  # configs/backend/native.yaml
    tl = Timeline()
    tl.install()
    engine = LLMEngine(config, random_state_dict(shape, device="cpu" if cpu else "cuda"))
    rng, next_id = random.Random(0), [0]

    def add(n: int, out_tokens: int) -> int:
        rid = next_id[0]
        engine.add_request(rid, [rng.randrange(shape.vocab_size) for _ in range(n)], out_tokens)
        next_id[0] += 1
        return rid

    for _ in range(DECODERS):
        add(CONTEXT, 2000)  # outlasts every rep and the profiles (about 8 steps a rep)
    while not (engine.in_flight is not None and engine.in_flight.is_decode_only
               and len(engine.in_flight.entries) == DECODERS):
        engine.step()
    walls: dict[str, list[float]] = {"first": [], "later": [], "decode": []}
    gpus: dict[str, list[float]] = {"first": [], "later": [], "decode": []}
    buckets: dict[str, set] = {"first": set(), "later": set(), "decode": set()}
    for _ in range(REPS):
        for _ in range(3):
            engine.step()
        rid = add(PROMPT, 1)
        while True:
            launched = len(tl.steps)
            step = engine.step()
            kinds = [("first" if e.start == 0 else "later") for e in step.batch.entries
                     if e.seq.seq_id == rid and e.is_prefill]
            kind = kinds[0] if kinds else ("decode" if step.batch.is_decode_only else None)
            if kind is not None:
                walls[kind].append((step.end_ns - step.start_ns) / 1e3)
                buckets[kind].add(step.graph_shape)
                row = tl.steps[launched - 1] if launched else None  # this step was launched by the call before
                if row is not None and row.get("ev_end") is not None:
                    torch.cuda.synchronize()
                    gpus[kind].append(1e3 * row["ev_launch"].elapsed_time(row["ev_end"]))
            if kind == "later":
                break
    out.append(f"engine: sarathi, budget 512; {DECODERS} decodes at KV ~{CONTEXT} beside a fresh {PROMPT}-token prompt, "
               f"{REPS} times (medians, us; the first rep's steps included)")
    out.append(f"{'step':<8}{'n':>4}{'wall':>9}{'gpu':>9}  bucket")
    for kind in ("decode", "first", "later"):
        w, g = walls[kind], gpus[kind]
        out.append(f"{kind:<8}{len(w):>4}{statistics.median(w):9.1f}"
                   f"{statistics.median(g) if g else float('nan'):9.1f}  {sorted(buckets[kind], key=str)}")
    print("\n".join(out), flush=True)

    # Kernel by kernel: each kind's graph replay with its own inputs left on the device.
    rid = add(PROMPT, 1)
    for kind in ("first", "later"):
        def mine(e, kind=kind) -> bool:
            return e.seq.seq_id == rid and e.is_prefill and (e.start == 0) == (kind == "first")

        while True:  # bench_engine.step_until: the step that holds it returns with nothing after it in flight
            flight = engine.in_flight
            holds = flight is None or any(mine(e) for e in flight.entries)
            step = engine.step(pipeline=not holds)
            if any(mine(e) for e in step.batch.entries):
                break
        if step.graph_shape is not None:
            _profile(engine.runner.graphs[step.graph_shape].graph.replay,
                     f"graph replay: {kind} chunk beside {DECODERS} decodes (bucket {step.graph_shape})", out, order=40)
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "first_vs_later.txt").write_text("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
