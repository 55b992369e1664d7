"""A request's first chunk against its second, on the same engine beside the same decodes (one H200).

The campaign's engine (sarathi, budget 512, cap 128, its graph buckets; random bf16 weights) runs a batch of decodes
(12 at KV ~1,024, then 64 at KV ~2,048: the bundle's mixed shapes missed more with more decodes); then, 16 times, two
fresh prompts of two budget-filling chunks each join at once. The first prompt joins at the in-flight step's end (that
step is packed again on the critical path); the second waits for the first's two chunks and its first chunk is packed
ahead, while the GPU runs the step before (the timeline's ``repacked`` flag says which, not this design). The rows
predict a later chunk ~0.3 ms dearer than a first (its attention reads ~500 more keys a layer); the campaign's steps
say a first chunk costs about as much. Per kind of step (medians): the wall time as the engine times a step and the
device's time from the launch to its last op (CUDA events, as ``timeline.py`` records them); then a first and a later
chunk's graph replays under ``torch.profiler``, kernels in launch order.

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

CASES, REPS = ((12, 1024), (64, 2048)), 16  # (decodes, their KV); the bundle's mixed shapes missed more with more decodes
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

    for decoders, context in ((8, 128), (16, 256)) if cpu else CASES:
        prompt = 2 * (config.max_batch_tokens - decoders)  # two chunks that fill the budget beside the decodes
        filling = decoders * context // config.max_batch_tokens  # steps until the last one decodes
        for _ in range(decoders):
            add(context, filling + 10 * REPS + 100)  # outlasts the reps and the profiles (about 7 steps a rep)
        while not (engine.in_flight is not None and engine.in_flight.is_decode_only
                   and len(engine.in_flight.entries) == decoders):
            engine.step()
        walls: dict[str, list[float]] = {}
        events: dict[str, list[tuple]] = {}  # read after the reps: a sync per step would stall the pipeline it times
        buckets: dict[str, set] = {}
        for _ in range(REPS):
            for _ in range(2):
                engine.step()
            # Two prompts at once: the first joins at the in-flight step's end (its step packed again then), the
            # second waits for the first's two chunks and is packed ahead, as the step before runs.
            mine = {add(prompt, 1), add(prompt, 1)}
            while True:
                launched = len(tl.steps)
                step = engine.step()
                row = tl.steps[launched - 1]  # launched by the call before (a step is always in flight here)
                chunks = [e for e in step.batch.entries if e.seq.seq_id in mine and e.is_prefill]
                if chunks:
                    kind = ("first chunk" if chunks[0].start == 0 else "later chunk") + \
                           (", packed again" if row.get("repacked") else ", packed ahead")
                elif step.batch.is_decode_only:
                    kind = "decodes only"
                else:
                    continue
                walls.setdefault(kind, []).append((step.end_ns - step.start_ns) / 1e3)
                buckets.setdefault(kind, set()).add(step.graph_shape)
                if row.get("ev_end") is not None:
                    events.setdefault(kind, []).append((row["ev_launch"], row["ev_end"]))
                if chunks and chunks[0].start > 0 and chunks[0].seq.seq_id == max(mine):
                    break
        out.append(f"\n{decoders} decodes at KV ~{context} beside two fresh {prompt}-token prompts, {REPS} times "
                   f"(sarathi, budget 512; medians, us)")
        out.append(f"{'step':<28}{'n':>4}{'wall':>9}{'gpu':>9}{'wall-gpu':>9}  bucket")
        if not cpu:
            torch.cuda.synchronize()
        gpus = {kind: [1e3 * a.elapsed_time(b) for a, b in pairs] for kind, pairs in events.items()}
        for kind in sorted(walls):
            w, g = statistics.median(walls[kind]), statistics.median(gpus.get(kind) or [float("nan")])
            out.append(f"{kind:<28}{len(walls[kind]):>4}{w:9.1f}{g:9.1f}{w - g:9.1f}  {sorted(buckets[kind], key=str)}")
        print("\n".join(out[-len(walls) - 2:]), flush=True)

        # Kernel by kernel: each kind's graph replay with its own inputs left on the device.
        rid = add(prompt, 1)
        for kind in ("first", "later"):
            def ours(e, kind=kind) -> bool:
                return e.seq.seq_id == rid and e.is_prefill and (e.start == 0) == (kind == "first")

            while True:  # bench_engine.step_until: the step that holds it returns with nothing after it in flight
                flight = engine.in_flight
                holds = flight is None or any(ours(e) for e in flight.entries)
                step = engine.step(pipeline=not holds)
                if any(ours(e) for e in step.batch.entries):
                    break
            if step.graph_shape is not None:
                _profile(engine.runner.graphs[step.graph_shape].graph.replay,
                         f"graph replay: {kind} chunk beside {decoders} decodes (bucket {step.graph_shape})", out,
                         order=40)
        while engine.has_unfinished():  # the decoders finish: the next case starts from an empty engine
            engine.step()
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "first_vs_later.txt").write_text("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
