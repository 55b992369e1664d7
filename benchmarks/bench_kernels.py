"""The engine's Triton kernels on the GPU at Qwen3-0.6B's serving shapes (bf16), each next to its floor.

First the two ceilings of this device (copy bandwidth: bytes read + written by a large device copy; bf16 matmul
8192^3), then every kernel timed as a CUDA graph replays it (median over repeats; inputs rotated among copies that
together exceed L2), with the bytes it must move, the achieved TB/s, its memory floor at the measured bandwidth, the
grid against the SMs, and what limits it. Decode attention at batch 1-128 x KV 512-8192 (block tables as wide as
the model's 40,960-token context, as the engine captures them); prefill attention TFLOP/s at chunks 512-8192
(beside torch's ``varlen_attn`` where it runs); the other kernels at 1, 128 and 2,048 tokens; last, each compiled
kernel's registers, spills and shared memory and the programs per SM they allow.

Run on a GPU: ``PYTHONPATH=src python3 benchmarks/bench_kernels.py`` (exits 0 with a message without one). With
``$OUT`` set, the table is also written to ``$OUT/bench_kernels.json``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import statistics
import sys
from typing import Callable, Optional

import torch

HIDDEN, N_Q, N_KV, HEAD_DIM, INTER, PAGE, MAX_CONTEXT = 1024, 16, 8, 128, 3072, 16, 40960
BF16 = torch.bfloat16
KV_BYTES_PER_TOKEN = 2 * N_KV * HEAD_DIM * 2  # one layer's K and V
ROTATE_BYTES = 256 << 20  # input copies per timing: at least this much in all (H200 L2: 50 MB)


def timed(launches: list[Callable[[], None]], target_s: float = 0.02, repeats: int = 7) -> float:
    """Median seconds per launch while a CUDA graph of ``launches`` replays back to back."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for launch in launches:  # compile and load outside the capture
            launch()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for launch in launches:
            launch()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    graph.replay()
    start.record()
    graph.replay()
    end.record()
    torch.cuda.synchronize()
    replays = max(1, min(1000, int(target_s / max(start.elapsed_time(end) / 1e3, 1e-7))))
    samples = []
    for _ in range(repeats):
        start.record()
        for _ in range(replays):
            graph.replay()
        end.record()
        torch.cuda.synchronize()
        samples.append(start.elapsed_time(end) / 1e3 / (replays * len(launches)))
    del graph
    return statistics.median(samples)


def copies(nbytes: int) -> int:
    """How many input sets to rotate among so that they do not all sit in L2."""
    return max(1, min(64, math.ceil(ROTATE_BYTES / max(nbytes, 1))))


def ceilings() -> dict:
    n = 1 << 30
    src = torch.randn(n // 4, device="cuda")
    dst = torch.empty_like(src)
    copy_s = timed([lambda: dst.copy_(src)], target_s=0.2)
    del src, dst
    a = torch.randn(8192, 8192, device="cuda", dtype=BF16)
    b = torch.randn(8192, 8192, device="cuda", dtype=BF16)
    mm_s = timed([lambda: torch.mm(a, b)], target_s=0.2)
    return {"copy_TBps": 2 * n / copy_s / 1e12, "matmul_TFLOPs": 2 * 8192 ** 3 / mm_s / 1e12}


class Report:
    """Rows of the table; each row knows its floor and says what limits it."""

    def __init__(self, ceil: dict, num_sms: int) -> None:
        self.ceil, self.num_sms, self.rows = ceil, num_sms, []

    def add(self, kernel: str, shape: str, seconds: float, nbytes: float, programs: int, flops: float = 0.0,
            note: str = "", **extra) -> None:
        mem_floor = nbytes / (self.ceil["copy_TBps"] * 1e12)
        flop_floor = flops / (self.ceil["matmul_TFLOPs"] * 1e12)
        floor = max(mem_floor, flop_floor)
        tbps = nbytes / seconds / 1e12
        if flop_floor > mem_floor:
            rate = flops / seconds / 1e12
            limit = f"compute: {rate:.0f} TFLOP/s = {rate / self.ceil['matmul_TFLOPs']:.0%} of matmul"
        elif seconds < 8e-6 and mem_floor < 2e-6:
            limit = "latency: too little work to fill the chip"
        elif tbps > 0.8 * self.ceil["copy_TBps"]:
            limit = "memory bandwidth"
        else:
            limit = f"under bandwidth ({tbps / self.ceil['copy_TBps']:.0%}), grid {programs / self.num_sms:.2f}/SM"
        self.rows.append({"kernel": kernel, "shape": shape, "us": seconds * 1e6, "MB": nbytes / 1e6, "TBps": tbps,
                          "floor_us": floor * 1e6, "x_floor": seconds / floor, "programs": programs,
                          "programs_per_sm": programs / self.num_sms, "limit": note or limit, **extra})
        r = self.rows[-1]
        print(f"{kernel:<22} {shape:<44} {r['us']:9.1f} {r['MB']:9.2f} {r['TBps']:6.2f} {r['floor_us']:9.1f} "
              f"{r['x_floor']:7.2f} {programs:8d} {r['programs_per_sm']:6.2f}  {r['limit']}", flush=True)


def qkv_views(tokens: int):
    qkv = torch.randn(tokens, (N_Q + 2 * N_KV) * HEAD_DIM, device="cuda", dtype=BF16)
    return (qkv[:, : N_Q * HEAD_DIM].view(tokens, N_Q, HEAD_DIM),
            qkv[:, N_Q * HEAD_DIM: (N_Q + N_KV) * HEAD_DIM].view(tokens, N_KV, HEAD_DIM),
            qkv[:, (N_Q + N_KV) * HEAD_DIM:].view(tokens, N_KV, HEAD_DIM))


def attention_inputs(seqs: list[tuple[int, int]], sets: int):
    """``sets`` independent batches of ``seqs`` ((new tokens, context)), their blocks shuffled across one pool."""
    need = [-(-ctx // PAGE) for _, ctx in seqs]
    per_set = sum(need)
    k_cache = torch.randn(sets * per_set + 1, PAGE, N_KV, HEAD_DIM, device="cuda", dtype=BF16)
    v_cache = torch.randn_like(k_cache)
    cu = torch.zeros(len(seqs) + 1, device="cuda", dtype=torch.int32)
    cu[1:] = torch.tensor([n for n, _ in seqs], device="cuda").cumsum(0)
    lens = torch.tensor([ctx for _, ctx in seqs], device="cuda", dtype=torch.int32)
    batches = []
    for s in range(sets):
        order = torch.randperm(per_set, device="cuda", dtype=torch.int32) + 1 + s * per_set
        tables = torch.zeros(len(seqs), MAX_CONTEXT // PAGE, device="cuda", dtype=torch.int32)
        used = 0
        for b, n in enumerate(need):
            tables[b, :n] = order[used: used + n]
            used += n
        batches.append((qkv_views(int(cu[-1]))[0], tables))
    return k_cache, v_cache, cu, lens, batches


def bench_attention(report: Report, name: str, seqs: list[tuple[int, int]], plan=None, variant: str = "") -> None:
    """``plan``: None for the shipped one (``plan_attention``), or a variant of it (the sweep)."""
    from gpu_simulate_test.engine.kernels import attention

    tokens, num_seqs = sum(n for n, _ in seqs), len(seqs)
    kv_bytes = sum(ctx for _, ctx in seqs) * KV_BYTES_PER_TOKEN + 2 * tokens * N_Q * HEAD_DIM * 2
    pairs = sum(n * (ctx - n) + n * (n + 1) // 2 for n, ctx in seqs if ctx)  # context 0: padding, no key
    flops = 4 * N_Q * HEAD_DIM * pairs
    k_cache, v_cache, cu, lens, batches = attention_inputs(seqs, copies(kv_bytes))
    outs = [torch.empty_like(q) for q, _ in batches]
    scale = HEAD_DIM ** -0.5
    plan = plan or attention.plan_attention(num_seqs, N_KV, MAX_CONTEXT, report.num_sms)
    # a balanced launch's work table is made once a step for all layers (the model's ``with_decode_work``): made
    # here before the timing, and timed on its own
    works = [attention.decode_work(cu, lens, t, k_cache, plan) for _, t in batches]
    launches = [lambda q=q, t=t, o=o, w=w: attention.paged_attention(q, k_cache, v_cache, cu, lens, t, scale, out=o,
                                                                     work=w, plan=plan)
                for (q, t), o, w in zip(batches, outs, works)]
    seconds = timed(launches)
    if works[0] is not None:
        work_s = timed([lambda t=t: attention.decode_work(cu, lens, t, k_cache, plan) for _, t in batches])
        units = num_seqs * plan.num_splits
        report.add("decode work table", f"B={num_seqs} units={units}{variant}", work_s,
                   4 * (2 * num_seqs + 1 + 1 + 2 * units + num_seqs), -(-units // attention.WORK_UNITS),
                   note="once a step, for every layer")
    grids = attention.launches(tokens, num_seqs, N_Q, N_KV, plan)
    decodes = sum(1 for n, _ in seqs if n == 1)
    # programs with work: a decode launch over a batch without decodes exits at once, so it does not count
    programs = (math.prod(grids.decode_grid) if decodes else 0) + \
        (math.prod(grids.prefill_grid) if grids.prefill_grid else 0)
    shape = f"B={num_seqs} T={tokens} KV<={max(c for _, c in seqs)}{variant}"
    report.add(name, shape, seconds, kv_bytes, programs, flops if tokens > num_seqs else 0.0,
               splits=plan.num_splits if decodes else None, kv_TBps=kv_bytes / seconds / 1e12)
    del k_cache, v_cache, batches, outs
    torch.cuda.empty_cache()


# Decode batches whose contexts are uneven, as a long-tail workload's are (one long context among short ones), and
# an even one for reference: the unbalanced split-KV launch waits for the longest context, the balanced one
# (AttentionPlan.balanced) deals the key tiles out evenly (studies/2026-12-02-native-h200-in-layer).
UNEVEN_DECODES = {"4: 4096 + 3 x 256": [4096] + [256] * 3, "8: 8192 + 7 x 512": [8192] + [512] * 7,
                  "8: 2 x 2048 + 6 x 256": [2048] * 2 + [256] * 6, "16: 4096 + 15 x 512": [4096] + [512] * 15,
                  "16: even 1024": [1024] * 16, "32: 2 x 6144 + 30 x 512": [6144] * 2 + [512] * 30,
                  "32: even 2048": [2048] * 32, "64: 2 x 6144 + 62 x 512": [6144] * 2 + [512] * 62,
                  "64: even 2048": [2048] * 64, "128: 4 x 8192 + 124 x 1024": [8192] * 4 + [1024] * 124,
                  "128: even 2048": [2048] * 128}


def bench_balanced(report: Report) -> None:
    """Each of ``UNEVEN_DECODES`` planned unbalanced and balanced (``plan_attention``'s ``balanced``)."""
    from gpu_simulate_test.engine.kernels import attention

    for label, contexts in UNEVEN_DECODES.items():
        seqs = [(1, kv) for kv in contexts]
        for name, balanced in (("decode unbalanced", False), ("decode balanced", True)):
            plan = attention.plan_attention(len(seqs), N_KV, MAX_CONTEXT, report.num_sms, balanced=balanced)
            bench_attention(report, name, seqs, plan, f" {label} splits={plan.num_splits}")


def sweep_attention(report: Report) -> None:
    """Tile and split variants at a few points, for tuning: tile = (rows, keys per step, warps, stages)."""
    from gpu_simulate_test.engine.kernels import attention

    def tile_name(t: attention.TileConfig) -> str:
        return f"{t.block_m}x{t.block_n} w{t.num_warps} s{t.num_stages}"

    for batch, kv in ((1, 512), (1, 2048), (1, 8192), (8, 2048), (32, 2048), (64, 2048), (64, 8192), (128, 2048),
                      (128, 8192)):
        shipped = attention.plan_attention(batch, N_KV, MAX_CONTEXT, report.num_sms)
        variants = [dataclasses.replace(shipped, decode=attention.TileConfig(16, n, w, st))
                    for n, w, st in ((64, 4, 3), (64, 4, 4), (32, 4, 5), (32, 4, 3), (128, 4, 3), (64, 8, 5),
                                     (128, 8, 2), (128, 8, 3), (64, 2, 3))]
        splits = {1, 2, 4, max(shipped.num_splits // 2, 1), min(shipped.num_splits * 2, attention.MAX_SPLITS)}
        variants += [dataclasses.replace(shipped, num_splits=s) for s in sorted(splits - {shipped.num_splits})]
        for plan in variants:
            bench_attention(report, "sweep decode", [(1, kv)] * batch, plan,
                            f" {tile_name(plan.decode)} splits {plan.num_splits}")
    for chunk in (2048, 8192):
        shipped = attention.plan_attention(1, N_KV, MAX_CONTEXT, report.num_sms)
        for m, n, w, st in ((128, 64, 8, 3), (128, 32, 8, 5), (128, 128, 8, 3), (64, 64, 4, 5)):
            plan = dataclasses.replace(shipped, prefill=attention.TileConfig(m, n, w, st))
            bench_attention(report, "sweep prefill", [(chunk, chunk)], plan, f" {tile_name(plan.prefill)}")


def bench_mixed(report: Report) -> None:
    """Mixed steps as the engine's graphs run them: the decodes alone, the chunk alone, both exactly, and both at
    the graph bucket ``(T, B)`` the runner pads them to (the padding tokens in one sequence of context 0, the
    other padding sequences empty: ``runner._fill_padding``), and the chunk alone at that bucket."""
    from gpu_simulate_test.engine.runner import pick_graph_shape

    seq_sizes, token_sizes = [1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128], [16, 32, 64, 128, 256, 512]  # native.yaml
    for decodes, ctx, chunk in ((64, 2048, 256), (127, 2048, 384), (96, 4096, 64), (12, 1024, 448)):
        mixed = [(1, ctx)] * decodes + [(chunk, chunk)]
        t, n = decodes + chunk, decodes + 1
        T, B = pick_graph_shape(t, n, False, seq_sizes, token_sizes) or (t, n)
        pad = [(T - t, 0)] * (T > t) + [(0, 0)] * (B - n - (T > t))
        chunk_pad = [(T - chunk, 0)] * (T > chunk) + [(0, 0)] * (B - 1 - (T > chunk))
        bench_attention(report, "mixed: decodes", [(1, ctx)] * decodes)
        bench_attention(report, "mixed: chunk", [(chunk, chunk)])
        bench_attention(report, "mixed: both", mixed)
        bench_attention(report, "mixed: both padded", mixed + pad, variant=f" bucket ({T}, {B})")
        bench_attention(report, "mixed: chunk padded", [(chunk, chunk)] + chunk_pad, variant=f" bucket ({T}, {B})")


def bench_varlen(report: Report, chunk: int) -> None:
    """torch's flash ``varlen_attn`` on the same fresh prefill (contiguous K/V, no cache): what routing fresh
    prefills to it would give."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return
    q, k, v = qkv_views(chunk)
    cu = torch.tensor([0, chunk], device="cuda", dtype=torch.int32)
    flops = 4 * N_Q * HEAD_DIM * chunk * (chunk + 1) // 2
    try:
        seconds = timed([lambda: varlen_attn(q, k, v, cu, cu, chunk, chunk, window_size=(-1, 0))])
    except Exception as exc:  # report, do not fail the benchmark: it is only a comparison
        print(f"varlen_attn chunk {chunk}: {exc!r}"[:300])
        return
    report.add("varlen_attn (torch)", f"B=1 T={chunk} fresh", seconds, 4 * chunk * N_Q * HEAD_DIM * 2, 0, flops,
               note=f"{flops / seconds / 1e12:.0f} TFLOP/s (reference point for prefill attention)")


def bench_elementwise(report: Report, tokens: int) -> None:
    from gpu_simulate_test.engine.kernels import activation, cache, norm, reference, rope

    cos_sin = reference.rope_cos_sin(HEAD_DIM, MAX_CONTEXT, 1e6, device="cuda")
    w = torch.randn(HIDDEN, device="cuda", dtype=BF16)
    hw = torch.randn(HEAD_DIM, device="cuda", dtype=BF16)
    positions = torch.randint(0, MAX_CONTEXT, (tokens,), device="cuda")
    e = 2  # bytes per element
    qk_bytes = 2 * tokens * (N_Q + N_KV) * HEAD_DIM * e
    kv_bytes = tokens * N_KV * HEAD_DIM * e
    num_blocks = tokens // PAGE + 1
    specs: list[tuple[str, float, int, Callable[[], Callable[[], None]]]] = [
        ("rms_norm", 2 * tokens * HIDDEN * e, tokens,
         lambda: (lambda x=torch.randn(tokens, HIDDEN, device="cuda", dtype=BF16): norm.rms_norm(x, w, 1e-6))),
        ("add_rms_norm", 4 * tokens * HIDDEN * e, tokens,
         lambda: (lambda x=torch.randn(tokens, HIDDEN, device="cuda", dtype=BF16),
                  r=torch.randn(tokens, HIDDEN, device="cuda", dtype=BF16): norm.add_rms_norm(x, r, w, 1e-6))),
        ("silu_and_mul", 3 * tokens * INTER * e, tokens * -(-INTER // 1024),
         lambda: (lambda x=torch.randn(tokens, 2 * INTER, device="cuda", dtype=BF16): activation.silu_and_mul(x))),
        ("store_kv", 4 * kv_bytes, tokens,
         lambda: (lambda kv=qkv_views(tokens), c=torch.empty(2, num_blocks, PAGE, N_KV, HEAD_DIM, device="cuda",
                                                             dtype=BF16):
                  cache.store_kv(kv[1], kv[2], c[0], c[1], torch.arange(tokens, device="cuda")))),
        ("qk_norm_rope", qk_bytes, tokens,
         lambda: (lambda qkv=qkv_views(tokens): rope.qk_norm_rope(qkv[0], qkv[1], hw, hw, positions, cos_sin, 1e-6))),
        ("qk_norm_rope_store_kv", qk_bytes + 3 * kv_bytes, tokens,
         lambda: (lambda qkv=qkv_views(tokens), c=torch.empty(2, num_blocks, PAGE, N_KV, HEAD_DIM, device="cuda",
                                                              dtype=BF16):
                  rope.qk_norm_rope_store_kv(qkv[0], qkv[1], qkv[2], hw, hw, positions, cos_sin, 1e-6, c[0], c[1],
                                             torch.arange(tokens, device="cuda")))),
    ]
    for name, nbytes, programs, make in specs:
        launches = [make() for _ in range(copies(int(nbytes)))]
        report.add(name, f"T={tokens}", timed(launches), nbytes, programs)
        del launches
    torch.cuda.empty_cache()


LINEAR_SHAPES = (("qkv_proj", (N_Q + 2 * N_KV) * HEAD_DIM, HIDDEN), ("o_proj", HIDDEN, N_Q * HEAD_DIM),
                 ("gate_up_proj", 2 * INTER, HIDDEN), ("down_proj", HIDDEN, INTER), ("lm_head", 151936, HIDDEN))


def bench_linear(report: Report, rows_list: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)) -> None:
    """Each projection of a layer (and the LM head) at decode batch sizes: cuBLAS (``F.linear``) beside the
    engine's ``skinny_matmul`` (its shipped tile). Weights rotate among copies that exceed L2, as 28 layers'
    weights do."""
    import torch.nn.functional as F

    from gpu_simulate_test.engine.kernels import matmul

    for name, n, k in LINEAR_SHAPES:
        nbytes_w = n * k * 2
        weights = [torch.randn(n, k, device="cuda", dtype=BF16) for _ in range(copies(nbytes_w))]
        for rows in rows_list:
            x = torch.randn(rows, k, device="cuda", dtype=BF16)
            nbytes = nbytes_w + 2 * rows * (n + k)
            report.add("linear cuBLAS", f"{name} {n}x{k} rows={rows}", timed([lambda w=w: F.linear(x, w)
                                                                              for w in weights]), nbytes, 0)
            if rows <= matmul.MAX_ROWS:
                _skinny(report, "linear skinny" if rows <= matmul.CUTOVER_ROWS else "linear skinny (off)", name,
                        x, weights, matmul.skinny_plan(rows, n, k), nbytes)
        del weights
        torch.cuda.empty_cache()


def _skinny(report: Report, label: str, name: str, x: torch.Tensor, weights: list, tile, nbytes: float) -> None:
    from gpu_simulate_test.engine.kernels import matmul

    try:
        seconds = timed([lambda w=w: matmul.skinny_matmul(x, w, tile) for w in weights])
    except Exception as exc:  # a tile that does not compile (shared memory): say so, go on
        print(f"{label} {name} rows={x.shape[0]} {tile}: {exc!r}"[:200])
        return
    report.add(label, f"{name} rows={x.shape[0]} n{tile.block_n} k{tile.block_k} w{tile.num_warps} "
               f"s{tile.num_stages}{' dot' if tile.dot else ''}", seconds, nbytes, -(-weights[0].shape[0] // tile.block_n))


def bench_skinny(report: Report, rows_list: tuple[int, ...] = (1, 2, 4, 8), sweep: bool = False) -> None:
    """What extending the one-row path (``matmul.CUTOVER_ROWS``) to a few rows is worth, per layer projection:
    cuBLAS, the shipped skinny tile (with ``sweep``, its alternatives: broadcast and ``tl.dot``); then the fused forms the
    engine would run (add + RMSNorm into qkv / gate-up, silu * up into down) against the pair of kernels they
    replace (``norm.add_rms_norm`` or ``activation.silu_and_mul``, then cuBLAS)."""
    import torch.nn.functional as F

    from gpu_simulate_test.engine.kernels import activation, matmul, norm

    for name, n, k in LINEAR_SHAPES[:4]:
        nbytes_w = n * k * 2
        weights = [torch.randn(n, k, device="cuda", dtype=BF16) for _ in range(copies(nbytes_w))]
        for rows in rows_list:
            x = torch.randn(rows, k, device="cuda", dtype=BF16)
            nbytes = nbytes_w + 2 * rows * (n + k)
            report.add("skinny cuBLAS", f"{name} rows={rows}", timed([lambda w=w: F.linear(x, w) for w in weights]),
                       nbytes, 0)
            shipped = matmul.skinny_plan(rows, n, k)
            tiles = [shipped] + [matmul.SkinnyTile(bn, bk, w, st, dot) for dot in (False, True)
                                 for bn in ((8, 16, 32) if not dot else (16, 32))
                                 for bk in ((128, 256, 512) if dot else (128, 256, 512, 1024))
                                 for w, st in ((4, 3), (4, 4), (8, 3))
                                 if sweep and bn * bk <= 16384 and (dot or rows * bn * bk <= 16384)]
            for i, tile in enumerate(dict.fromkeys(tiles)):
                _skinny(report, "skinny shipped" if i == 0 else "skinny sweep", name, x, weights, tile, nbytes)
            if name in ("qkv_proj", "gate_up_proj"):
                w_norm = torch.randn(k, device="cuda", dtype=BF16)
                res = torch.randn(rows, k, device="cuda", dtype=BF16)
                fused = [lambda w=w: matmul.skinny_add_rms_norm_matmul(x, res, w_norm, 1e-6, w) for w in weights]
                pair = [lambda w=w: F.linear(norm.add_rms_norm(x, res, w_norm, 1e-6)[0], w) for w in weights]
                what = "add+norm"
            elif name == "down_proj":
                gate_up = torch.randn(rows, 2 * k, device="cuda", dtype=BF16)
                fused = [lambda w=w: matmul.skinny_silu_and_mul_matmul(gate_up, w) for w in weights]
                pair = [lambda w=w: F.linear(activation.silu_and_mul(gate_up), w) for w in weights]
                what = "silu*up"
            else:
                continue
            report.add("skinny fused", f"{what} + {name} rows={rows}", timed(fused), nbytes, -(-n // shipped.block_n))
            report.add("skinny pair", f"{what} then cuBLAS {name} rows={rows}", timed(pair), nbytes, 0)
        del weights
        torch.cuda.empty_cache()


def resources(num_sms: int) -> list[dict]:
    """Every compiled variant: registers, spills, shared memory, and how many programs fit on one SM."""
    from gpu_simulate_test.engine.kernels import activation, attention, cache, matmul, norm, rope

    device = torch.cuda.current_device()
    props = torch.cuda.get_device_properties(device)
    smem = getattr(props, "shared_memory_per_multiprocessor", 228 * 1024)
    regs_per_sm = getattr(props, "regs_per_multiprocessor", 65536)
    out = []
    for fn in (attention._paged_attention_kernel, attention._merge_splits_kernel, norm._rms_norm_kernel,
               activation._silu_and_mul_kernel, cache._store_kv_kernel, rope._qk_norm_rope_kernel,
               matmul._skinny_matmul_kernel):
        for kernel in fn.device_caches[device][0].values():
            warps, shared = kernel.metadata.num_warps, kernel.metadata.shared
            fit = min(regs_per_sm // max(kernel.n_regs * 32 * warps, 1), smem // max(shared + 1024, 1),
                      2048 // (32 * warps), 32)
            out.append({"kernel": fn.fn.__name__, "num_warps": warps, "num_stages": kernel.metadata.num_stages,
                        "registers": kernel.n_regs, "spills": kernel.n_spills, "shared_bytes": shared,
                        "programs_per_sm_max": fit})
    return out


PARTS = ("attention", "balanced", "mixed", "elementwise", "linear", "skinny", "sweep")


def main(argv: Optional[list[str]] = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS),
                        help="what to measure (default: all; 'balanced': uneven decode batches, split work balanced or not; 'skinny': the one-row path's "
                             "tiles and fused forms at 1-8 rows; 'sweep': the attention's tiles, and with 'skinny' "
                             "the skinny tiles)")
    parts = set(parser.parse_args(argv).parts)
    if not torch.cuda.is_available():
        print("bench_kernels: no CUDA GPU here; nothing to measure (run it on the GPU host)")
        return 0
    torch.manual_seed(0)
    props = torch.cuda.get_device_properties(0)
    num_sms = props.multi_processor_count
    print(f"{props.name}: {num_sms} SMs, {props.total_memory / 2**30:.0f} GiB; torch {torch.__version__}", flush=True)
    ceil = ceilings()
    print(f"copy bandwidth {ceil['copy_TBps']:.2f} TB/s (read + write); bf16 matmul 8192^3 "
          f"{ceil['matmul_TFLOPs']:.0f} TFLOP/s", flush=True)
    report = Report(ceil, num_sms)
    print(f"\n{'kernel':<22} {'shape':<44} {'us':>9} {'MB':>9} {'TB/s':>6} {'floor_us':>9} {'xfloor':>7} "
          f"{'programs':>8} {'/SM':>6}  limit")
    if "attention" in parts:
        for batch in (1, 8, 32, 64, 128):
            for kv in (512, 2048, 8192):
                bench_attention(report, "attention decode", [(1, kv)] * batch)
        for chunk in (512, 2048, 8192):
            bench_attention(report, "attention prefill", [(chunk, chunk)])
            bench_varlen(report, chunk)
        bench_attention(report, "attention prefill", [(2048, 8192)])  # a chunk over a 6,144-token prefix
        bench_attention(report, "attention mixed", [(1, 2048)] * 127 + [(512, 2048)])  # a sarathi step
    if "balanced" in parts:
        bench_balanced(report)
    if "mixed" in parts:
        bench_mixed(report)
    if "elementwise" in parts:
        for tokens in (1, 128, 2048):
            bench_elementwise(report, tokens)
    if "linear" in parts:
        bench_linear(report)
    if "skinny" in parts:
        bench_skinny(report, sweep="sweep" in parts)
    if "sweep" in parts:
        print("\nsweep (decode and prefill tiles and splits against the shipped plan_attention)")
        sweep_attention(report)
    res = resources(num_sms)
    print(f"\n{'compiled kernel':<26} {'warps':>5} {'stages':>6} {'regs':>5} {'spills':>6} {'shared':>8} "
          f"{'fit/SM':>6}")
    for r in res:
        print(f"{r['kernel']:<26} {r['num_warps']:5d} {r['num_stages']:6d} {r['registers']:5d} {r['spills']:6d} "
              f"{r['shared_bytes']:8d} {r['programs_per_sm_max']:6d}")
    out_dir: Optional[str] = os.environ.get("OUT")
    if out_dir:
        path = os.path.join(out_dir, "bench_kernels.json")
        with open(path, "w") as f:
            json.dump({"device": props.name, "num_sms": num_sms, "torch": torch.__version__, **ceil,
                       "rows": report.rows, "resources": res}, f, indent=1)
        print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
