"""The host's share of a native engine step: ``LLMEngine.step`` with the model's forward replaced by a stub (no
kernels, no device), so what is left is the Python and numpy work the GPU waits through in a synchronous step:
scheduling, packing the step's inputs, applying its tokens. Decode batches of 1-128 sequences (the median of 7
rounds of 50 steps each), then a fresh prompt of 32, 256 and 512 tokens reaching an idle engine (the median of 30:
with nothing running, all of that step's host work is on the GPU's path; a decode step's overlaps the step before
it, ``engine/engine.py``), then a 512-token prompt arriving while 1-64 sequences decode (the median of 30): the step
formed ahead is revised and packed again at its start (``LLMEngine._decide``), on the GPU's path too; it is the
bundle's ``serial`` host term (``studies/2026-12-03-host-state/``). Wall time: a loaded machine inflates it, read it
beside ``uptime``. Needs no GPU: a tiny random Qwen3 on the CPU (the host work does not depend on the model's size).

``--device cuda`` (on a GPU host): the same, with Qwen3-0.6B's shape in bf16 on the GPU, every step run for real
from its CUDA graph (nothing stubbed), 4,096 KV blocks of 16. The decode rows are then a step's wall (the device's
time and the hand-over; the host's packing overlaps the step before), and the revision rows the decision's host time
beside the wall of the step it launches (the arriving chunk's step: device time, the re-packing and the hand-over).

Run: ``PYTHONPATH=src python3 benchmarks/bench_engine_host.py [--device cuda]``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch
import transformers

from gpu_simulate_test.engine.config import EngineConfig, ModelShape
from gpu_simulate_test.engine.engine import LLMEngine

QWEN3_06B = ModelShape(hidden_size=1024, num_layers=28, num_attention_heads=16, num_kv_heads=8, head_dim=128,
                       intermediate_size=3072, vocab_size=151936, max_position_embeddings=40960, rope_theta=1e6,
                       rms_norm_eps=1e-6, tie_word_embeddings=True)
TINY = ModelShape(hidden_size=128, num_layers=2, num_attention_heads=4, num_kv_heads=2, head_dim=32,
                  intermediate_size=384, vocab_size=151936, max_position_embeddings=40960, rope_theta=1e6,
                  rms_norm_eps=1e-6, tie_word_embeddings=True)
BATCHES, ROUNDS, STEPS, PROMPTS = (1, 16, 64, 128), 7, 50, (32, 256, 512)
REVISED = (1, 16, 64)  # decodes running when a 512-token prompt arrives


def _state_dict(shape: ModelShape) -> dict:
    cfg = transformers.Qwen3Config(
        vocab_size=shape.vocab_size, hidden_size=shape.hidden_size, intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_layers, num_attention_heads=shape.num_attention_heads,
        num_key_value_heads=shape.num_kv_heads, head_dim=shape.head_dim,
        max_position_embeddings=shape.max_position_embeddings, rope_theta=shape.rope_theta,
        rms_norm_eps=shape.rms_norm_eps, tie_word_embeddings=shape.tie_word_embeddings)
    torch.manual_seed(0)
    return transformers.Qwen3ForCausalLM(cfg).state_dict()


DEVICE = "cpu"  # --device


def _engine(state_dict: dict) -> LLMEngine:
    if DEVICE == "cuda":  # the real step from its graphs
        config = EngineConfig(model=QWEN3_06B, dtype="bfloat16", device="cuda", num_blocks=4096, block_size=16,
                              max_batch_tokens=512, max_requests_per_batch=128)
        return LLMEngine(config, state_dict)
    config = EngineConfig(model=TINY, dtype="float32", device="cpu", num_blocks=4096, block_size=16,
                          max_batch_tokens=512, max_requests_per_batch=128)
    engine = LLMEngine(config, state_dict)
    engine.runner._forward = lambda layout: torch.zeros(layout.S, dtype=torch.int64)  # the host's work only
    return engine


def host_step_us(batch: int, state_dict: dict) -> float:
    """Median wall us of one decode step of ``batch`` sequences, the forward stubbed."""
    engine = _engine(state_dict)
    rng = random.Random(0)
    for i in range(batch):
        engine.add_request(i, [rng.randrange(100) for _ in range(64)], 10_000)
    while not ((step := engine.step()).batch.is_decode_only and len(step.batch.entries) == batch):
        pass
    rounds = []
    for _ in range(ROUNDS):
        t0 = time.perf_counter_ns()
        for _ in range(STEPS):
            engine.step()
        rounds.append((time.perf_counter_ns() - t0) / STEPS / 1e3)
    return statistics.median(rounds)


def fresh_prompt_us(tokens: int, state_dict: dict) -> float:
    """Median wall us of the step of a fresh ``tokens``-token prompt added to an idle engine, the forward stubbed."""
    engine = _engine(state_dict)
    rng = random.Random(tokens)
    times = []
    for i in range(31):  # the first warms up
        engine.add_request(i, [rng.randrange(100) for _ in range(tokens)], 1)
        out = engine.step()
        times.append((out.end_ns - out.start_ns) / 1e3)
    return statistics.median(times[1:])


def repack_us(decodes: int, state_dict: dict) -> tuple[float, float]:
    """Median wall us of ``LLMEngine._decide`` when a 512-token prompt arrived during a step of ``decodes`` decodes
    (the step formed ahead without it is revised and packed again; on the CPU the forward stubbed), and of the step
    it launches (from that decision to its tokens on the host)."""
    engine = _engine(state_dict)
    rng = random.Random(decodes)
    for i in range(decodes):
        engine.add_request(i, [rng.randrange(100) for _ in range(64)], 10_000)
    while not ((step := engine.step()).batch.is_decode_only and len(step.batch.entries) == decodes):
        pass
    times: list[int] = []
    decide = engine._decide

    def timed(*args: object) -> object:
        t0 = time.perf_counter_ns()
        out = decide(*args)
        times.append(time.perf_counter_ns() - t0)
        return out

    engine._decide = timed  # type: ignore[method-assign]
    walls: list[int] = []
    for k in range(31):  # the first warms up
        engine.add_request(decodes + k, [rng.randrange(100) for _ in range(512)], 1)  # arrives during the step
        n = len(times)
        engine.step()  # its decision: the request joins the step formed ahead, which is packed again
        out = engine.step()  # that step: the prompt's chunk beside the decodes
        walls.append(out.end_ns - out.start_ns)
        for _ in range(2):  # the request has finished; the decodes go on
            engine.step()
        del times[n + 1:]  # only that decision
    return statistics.median(times[1:]) / 1e3, statistics.median(walls[1:]) / 1e3


def main() -> int:
    global DEVICE
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    DEVICE = ap.parse_args().device
    state_dict = _state_dict(QWEN3_06B if DEVICE == "cuda" else TINY)
    what = "step wall" if DEVICE == "cuda" else "host work"
    for batch in BATCHES:
        print(f"decode batch {batch:4d}: {what} {host_step_us(batch, state_dict):7.0f} us a step", flush=True)
    for tokens in PROMPTS:
        print(f"fresh prompt of {tokens:4d} tokens, engine idle: {what} {fresh_prompt_us(tokens, state_dict):7.0f} "
              "us", flush=True)
    for decodes in REVISED:
        decide, wall = repack_us(decodes, state_dict)
        print(f"512-token prompt arriving beside {decodes:3d} decodes: packed again at the step's start "
              f"{decide:7.0f} us (the step: {wall:7.0f} us)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
