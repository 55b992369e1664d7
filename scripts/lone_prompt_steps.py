"""The step of one prompt alone, split into device time and the host's hand-over, by what ran before it.

The published vllm setup's lone prompt steps move by up to 9% between runs on one GPU
(``studies/2026-12-04-lone-prompt/``). Here the native engine (the vllm setup: policy ``vllm``, token cap 4096,
graphs to 4096 tokens; Qwen3-0.6B's shape in bf16, random weights) runs a ``--tokens``-token prompt alone, by what
came before it:

- ``idle <gap>``: the engine had nothing to run for ``gap`` seconds, then the prompt is added (a prompt on an idle
  engine: ``packed_at_start`` False in the cells scripts);
- ``beside <k>``: ``k`` sequences decode and the prompt arrives during one of their steps; the vllm policy runs it
  alone next, packed at that step's start (``packed_at_start`` True);
- ``after_idle <m>``: the engine idled 50 ms, then one request decoded ``m`` steps, and the prompt arrives during
  the next (a low load's pattern: is the host slow for a while after an idle gap, not only for the step after it?).

Every condition runs in each of ``--rounds`` rounds, in a fresh random order a round (the host's and the GPU's drift
then spreads over all of them), ``--samples`` prompts a round. A step's wall is the engine's (its decision to its
tokens on the host); its device time is between CUDA events recorded just before and after its launch (the GPU then
has nothing queued before it: the step was packed after the one before ended). ``nvidia-smi`` samples the SM clock,
power and temperature every 50 ms beside it; each block's wall times go to ``--out``/blocks.csv so the two join.

Run on a GPU host (``source scripts/gpu_env.sh`` first): ``python3 scripts/lone_prompt_steps.py --out DIR``.
"""

from __future__ import annotations

import argparse
import csv
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/
from benchmarks.bench_engine_host import QWEN3_06B, TINY, _state_dict  # noqa: E402
from gpu_simulate_test.engine.config import EngineConfig  # noqa: E402
from gpu_simulate_test.engine.engine import LLMEngine  # noqa: E402

TOKEN_SIZES = (16, 32, 64, 128, 256, 512, 768, 1024, 1536, 2048, 3072, 4096)  # the vllm setup's graph buckets
GAPS_S = (0.0, 0.05, 0.5)
BESIDE = (1, 4, 16, 64)
IDLE_BEFORE_S, AFTER_IDLE = 0.05, (2, 20, 200)  # decode steps between an idle gap and the prompt


class Timed:
    """CUDA events around every launch of the engine's runner, in launch order (steps return in that order); on the
    CPU (a smoke run of this script) none, and a step's device time is reported as nan."""

    def __init__(self, engine: LLMEngine) -> None:
        self.events: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []
        self.cuda = engine.runner.device.type == "cuda"
        launch = engine.runner.launch

        def timed(packed: object) -> None:
            if not self.cuda:
                return launch(packed)
            e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            e0.record()
            launch(packed)
            e1.record()
            self.events.append((e0, e1))

        engine.runner.launch = timed  # type: ignore[method-assign]


def step(engine: LLMEngine, timed: Timed, launched: list[int]) -> tuple[object, float]:
    """One ``engine.step``; the step it returns and its device time (ms)."""
    out = engine.step()
    if not timed.cuda:
        return out, float("nan")
    e0, e1 = timed.events[launched[0]]
    launched[0] += 1
    e1.synchronize()
    return out, e0.elapsed_time(e1)


def add(engine: LLMEngine, rng: random.Random, ids: list[int], n: int, max_tokens: int) -> None:
    """A request of ``n`` random prompt tokens under the next id."""
    ids[0] += 1
    engine.add_request(ids[0], [rng.randrange(1000) for _ in range(n)], max_tokens)


def lone_prompt(engine: LLMEngine, timed: Timed, launched: list[int], rng: random.Random, tokens: int,
                condition: str, value: float, ids: list[int]) -> tuple[float, float, int]:
    """The prompt's step after ``condition``: (wall ms, device ms, entries in it)."""
    if condition == "idle":
        time.sleep(value)
        add(engine, rng, ids, tokens, 1)
        out, device_ms = step(engine, timed, launched)
        while engine.has_unfinished():
            step(engine, timed, launched)
        return (out.end_ns - out.start_ns) / 1e6, device_ms, len(out.batch.entries)
    if condition == "after_idle":  # idle, then one request decodes ``value`` steps before the prompt arrives
        time.sleep(IDLE_BEFORE_S)
        add(engine, rng, ids, 64, int(value) + 4)
        for _ in range(int(value) + 1):  # its prefill, then ``value`` decodes
            step(engine, timed, launched)
    add(engine, rng, ids, tokens, 1)  # arrives during the step in flight
    step(engine, timed, launched)  # that step: its end decides the next, the prompt alone (vllm: prompts first)
    out, device_ms = step(engine, timed, launched)
    if condition == "after_idle":
        while engine.has_unfinished():
            step(engine, timed, launched)
    return (out.end_ns - out.start_ns) / 1e6, device_ms, len(out.batch.entries)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--tokens", type=int, nargs="+", default=[200, 512])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="cpu: a smoke run, a tiny model")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    cuda = args.device == "cuda"
    smi = subprocess.Popen(["nvidia-smi", "--query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu,"
                            "utilization.gpu", "--format=csv,noheader,nounits", "-lms", "50"],
                           stdout=(args.out / "clocks.csv").open("w"), stderr=subprocess.STDOUT) if cuda else None
    try:
        shape = QWEN3_06B if cuda else TINY
        config = EngineConfig(model=shape, policy="vllm", dtype="bfloat16" if cuda else "float32", device=args.device,
                              num_blocks=8192, block_size=16, max_batch_tokens=4096, max_requests_per_batch=128,
                              cuda_graph_token_sizes=TOKEN_SIZES)
        t0 = time.time()
        engine = LLMEngine(config, _state_dict(shape))
        print(f"engine up in {time.time() - t0:.1f} s", flush=True)
        timed, launched, ids = Timed(engine), [0], [0]
        rng = random.Random(0)
        conditions = [(t, "idle", g) for t in args.tokens for g in GAPS_S] + \
                     [(t, "beside", k) for t in args.tokens for k in BESIDE] + \
                     [(t, "after_idle", m) for t in args.tokens for m in AFTER_IDLE]
        for tokens in args.tokens:  # warm every path once
            lone_prompt(engine, timed, launched, rng, tokens, "idle", 0.0, ids)
        rows, blocks = [], []
        for r in range(args.rounds):
            order = conditions[:]
            rng.shuffle(order)
            for tokens, condition, value in order:
                if condition == "beside":  # k decodes that outlast the block (a prompt takes 2 of their steps)
                    for _ in range(int(value)):
                        add(engine, rng, ids, 64, 2 * args.samples + 8)
                    while not ((out := step(engine, timed, launched)[0]).batch.is_decode_only
                               and len(out.batch.entries) == value):
                        pass
                w0 = time.time()
                for s in range(args.samples):
                    wall, device, entries = lone_prompt(engine, timed, launched, rng, tokens, condition, value, ids)
                    assert entries == 1, f"{condition} {value}: the prompt's step held {entries} entries"
                    rows.append({"round": r, "tokens": tokens, "condition": condition, "value": value, "sample": s,
                                 "wall_ms": round(wall, 4), "device_ms": round(device, 4)})
                blocks.append({"round": r, "tokens": tokens, "condition": condition, "value": value,
                               "start_unix_s": w0, "end_unix_s": time.time()})
                while engine.has_unfinished():  # the decodes run out
                    step(engine, timed, launched)
            print(f"round {r} done", flush=True)
    finally:
        if smi is not None:
            smi.terminate()
    for name, table in (("steps.csv", rows), ("blocks.csv", blocks)):
        with (args.out / name).open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(table[0]))
            w.writeheader()
            w.writerows(table)
    print(f"{'tokens':>6} {'condition':>10} {'value':>6} {'n':>4} {'wall_ms':>8} {'device_ms':>9} {'hand-over_ms':>12}")
    for tokens, condition, value in conditions:
        sel = [x for x in rows if (x["tokens"], x["condition"], x["value"]) == (tokens, condition, value)]
        wall = statistics.median(x["wall_ms"] for x in sel)
        device = statistics.median(x["device_ms"] for x in sel)
        over = statistics.median(x["wall_ms"] - x["device_ms"] for x in sel)
        print(f"{tokens:6d} {condition:>10} {value:6g} {len(sel):4d} {wall:8.3f} {device:9.3f} {over:12.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
