"""Every Triton kernel on the GPU at Qwen3-0.6B's serving shapes in bfloat16, against the plain-torch reference
computed in float32 from the same bfloat16 values; and a decode call captured in a CUDA graph, replayed with new
lengths, against an eager call.

Error is ``||out - ref|| / ||ref||``. Bound: 1e-2 (bfloat16 operands, with the output and the attention
probabilities rounded to bfloat16, land near 3e-3; an indexing or masking error lands near 1). Outputs and unused
cache slots are NaN before each run, so an unwritten element or a read past a context fails.
Run: ``pytest -m gpu tests/gpu/test_kernels_gpu.py``.
"""

from __future__ import annotations

import dataclasses
import zlib

import pytest
import torch

from gpu_simulate_test.engine.kernels import activation, attention, cache, matmul, norm, reference, rope

pytestmark = pytest.mark.gpu

DEV = "cuda"
BF16 = torch.bfloat16
HIDDEN, N_Q, N_KV, HEAD_DIM, INTER, PAGE = 1024, 16, 8, 128, 3072, 16
MAX_POSITION, THETA, EPS = 40960, 1_000_000.0, 1e-6
TOL = 1e-2


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    assert not out.isnan().any(), "NaN in the output: an element was not written, or a poisoned slot was read"
    return ((out.double() - ref.double()).norm() / ref.double().norm()).item()


@pytest.fixture
def gen(request: pytest.FixtureRequest) -> torch.Generator:
    """Fresh inputs for every check (seeded by the test's id, so a failure reproduces)."""
    return torch.Generator(device=DEV).manual_seed(zlib.crc32(request.node.nodeid.encode()))


def randn(gen: torch.Generator, *shape: int, dtype: torch.dtype = BF16) -> torch.Tensor:
    return torch.randn(*shape, generator=gen, device=DEV, dtype=dtype)


def f32(t: torch.Tensor) -> torch.Tensor:
    """A float32 copy, never a view: the references work in place."""
    return t.to(torch.float32, copy=True)


def fused_qkv(gen: torch.Generator, tokens: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The qkv projection's output and q/k/v as views into it (token stride 4096, as in the model)."""
    qkv = randn(gen, tokens, (N_Q + 2 * N_KV) * HEAD_DIM)
    q = qkv[:, : N_Q * HEAD_DIM].view(tokens, N_Q, HEAD_DIM)
    k = qkv[:, N_Q * HEAD_DIM: (N_Q + N_KV) * HEAD_DIM].view(tokens, N_KV, HEAD_DIM)
    v = qkv[:, (N_Q + N_KV) * HEAD_DIM:].view(tokens, N_KV, HEAD_DIM)
    return qkv, q, k, v


# --- norms, activation, qk-norm + RoPE, KV store ---------------------------------------------------------------


@pytest.mark.parametrize("tokens", [1, 7, 4096])
def test_rms_norm(gen: torch.Generator, tokens: int) -> None:
    x, w = randn(gen, tokens, HIDDEN), randn(gen, HIDDEN)
    assert rel_err(norm.rms_norm(x, w, EPS), reference.rms_norm(x.float(), w.float(), EPS)) < TOL


@pytest.mark.parametrize("tokens", [1, 7, 4096])
def test_add_rms_norm(gen: torch.Generator, tokens: int) -> None:
    x, residual, w = randn(gen, tokens, HIDDEN), randn(gen, tokens, HIDDEN), randn(gen, HIDDEN)
    ref_residual = f32(residual)
    ref_out, _ = reference.add_rms_norm(x.float(), ref_residual, w.float(), EPS)
    out, _ = norm.add_rms_norm(x, residual, w, EPS)
    assert rel_err(residual, ref_residual) < TOL
    assert rel_err(out, ref_out) < TOL


@pytest.mark.parametrize("rows", [1, 2, 3, 8, 16, 64])
@pytest.mark.parametrize("n,k", [(4096, HIDDEN), (HIDDEN, 2048), (2 * INTER, HIDDEN), (HIDDEN, INTER)])
def test_skinny_matmul(gen: torch.Generator, rows: int, n: int, k: int) -> None:
    """Each projection of a layer at decode batch sizes, the shipped tile, against a float32 product."""
    x, w = randn(gen, rows, k), randn(gen, n, k) * k ** -0.5
    assert rel_err(matmul.skinny_matmul(x, w), x.float() @ w.float().T) < TOL


@pytest.mark.parametrize("rows", [1, 3, 8])
def test_skinny_fused_producers(gen: torch.Generator, rows: int) -> None:
    """The fused forms at their shipped tiles: add + RMSNorm into qkv, silu * up into down; at one row, where the
    engine runs them, and at 3 and 8 rows (the kernel's reach, slower there than the pair: matmul's docstring)."""
    x, residual, nw = randn(gen, rows, HIDDEN), randn(gen, rows, HIDDEN), randn(gen, HIDDEN)
    w = randn(gen, 4096, HIDDEN) * HIDDEN ** -0.5
    ref_y, ref_res = reference.add_rms_norm_linear(x.float(), f32(residual), nw.float(), EPS, w.float())
    y, res = matmul.skinny_add_rms_norm_matmul(x, residual, nw, EPS, w)
    assert rel_err(res, ref_res) < TOL and rel_err(y, ref_y) < TOL
    gate_up, wd = randn(gen, rows, 2 * INTER) * 3, randn(gen, HIDDEN, INTER) * INTER ** -0.5
    out = matmul.skinny_silu_and_mul_matmul(gate_up, wd)
    assert rel_err(out, reference.silu_and_mul_linear(gate_up.float(), wd.float())) < TOL


@pytest.mark.parametrize("tokens", [1, 333, 4096])
def test_silu_and_mul(gen: torch.Generator, tokens: int) -> None:
    x = randn(gen, tokens, 2 * INTER) * 3
    assert rel_err(activation.silu_and_mul(x), reference.silu_and_mul(x.float())) < TOL


def _rope_inputs(gen: torch.Generator, tokens: int):
    qkv, q, k, v = fused_qkv(gen, tokens)
    qw, kw = randn(gen, HEAD_DIM), randn(gen, HEAD_DIM)
    positions = torch.randint(0, MAX_POSITION, (tokens,), generator=gen, device=DEV)
    cos_sin = reference.rope_cos_sin(HEAD_DIM, MAX_POSITION, THETA, device=DEV)
    q32, k32 = f32(q), f32(k)
    reference.qk_norm_rope(q32, k32, qw.float(), kw.float(), positions, cos_sin, EPS)
    return qkv, q, k, v, qw, kw, positions, cos_sin, q32, k32


@pytest.mark.parametrize("tokens", [1, 64, 4096])
def test_qk_norm_rope(gen: torch.Generator, tokens: int) -> None:
    qkv, q, k, v, qw, kw, positions, cos_sin, q32, k32 = _rope_inputs(gen, tokens)
    v_before = v.clone()
    rope.qk_norm_rope(q, k, qw, kw, positions, cos_sin, EPS)
    assert rel_err(q, q32) < TOL and rel_err(k, k32) < TOL
    assert torch.equal(v, v_before)


def _poisoned_cache(num_blocks: int) -> tuple[torch.Tensor, torch.Tensor]:
    shape = (num_blocks, PAGE, N_KV, HEAD_DIM)
    return (torch.full(shape, float("nan"), device=DEV, dtype=BF16),
            torch.full(shape, float("nan"), device=DEV, dtype=BF16))


def _slots(gen: torch.Generator, tokens: int, num_blocks: int) -> torch.Tensor:
    slots = torch.randperm(num_blocks * PAGE, generator=gen, device=DEV)[:tokens]
    slots[torch.randperm(tokens, generator=gen, device=DEV)[: tokens // 8]] = -1
    return slots


def _assert_same_cache(got: torch.Tensor, ref: torch.Tensor) -> None:
    assert torch.equal(got.isnan(), ref.isnan()), "a slot was written that should not be, or the reverse"
    assert torch.equal(got.nan_to_num(), ref.nan_to_num())


@pytest.mark.parametrize("tokens", [1, 64, 4096])
def test_store_kv(gen: torch.Generator, tokens: int) -> None:
    _, _, k, v = fused_qkv(gen, tokens)
    num_blocks = tokens // PAGE + 8
    slots = _slots(gen, tokens, num_blocks)
    k_cache, v_cache = _poisoned_cache(num_blocks)
    ref_k, ref_v = k_cache.clone(), v_cache.clone()
    reference.store_kv(k, v, ref_k, ref_v, slots)
    cache.store_kv(k, v, k_cache, v_cache, slots)
    _assert_same_cache(k_cache, ref_k)
    _assert_same_cache(v_cache, ref_v)


@pytest.mark.parametrize("tokens", [1, 64, 4096])
def test_qk_norm_rope_store_kv(gen: torch.Generator, tokens: int) -> None:
    qkv, q, k, v, qw, kw, positions, cos_sin, q32, k32 = _rope_inputs(gen, tokens)
    num_blocks = tokens // PAGE + 8
    slots = _slots(gen, tokens, num_blocks)
    k_cache, v_cache = _poisoned_cache(num_blocks)
    ref_k, ref_v = k_cache.clone(), v_cache.clone()
    v_before = v.clone()
    rope.qk_norm_rope_store_kv(q, k, v, qw, kw, positions, cos_sin, EPS, k_cache, v_cache, slots)
    assert rel_err(q, q32) < TOL and rel_err(k, k32) < TOL
    reference.store_kv(k, v_before, ref_k, ref_v, slots)  # the cache holds exactly the rotated k and the v
    _assert_same_cache(k_cache, ref_k)
    _assert_same_cache(v_cache, ref_v)


# --- paged attention -----------------------------------------------------------------------------------------


@dataclasses.dataclass
class Batch:
    q: torch.Tensor
    k_cache: torch.Tensor
    v_cache: torch.Tensor
    cu_seqlens_q: torch.Tensor
    seq_lens: torch.Tensor
    block_tables: torch.Tensor

    def reference(self) -> torch.Tensor:
        """The reference in float32 (it upcasts the bfloat16 cache and q itself)."""
        out = torch.empty(self.q.shape, device=DEV, dtype=torch.float32)
        return reference.paged_attention(self.q, self.k_cache, self.v_cache, self.cu_seqlens_q, self.seq_lens,
                                         self.block_tables, HEAD_DIM ** -0.5, out=out)

    def run(self, plan: attention.AttentionPlan | None = None) -> torch.Tensor:
        out = torch.full_like(self.q, float("nan"))
        return attention.paged_attention(self.q, self.k_cache, self.v_cache, self.cu_seqlens_q, self.seq_lens,
                                         self.block_tables, HEAD_DIM ** -0.5, out=out, plan=plan)


def make_batch(gen: torch.Generator, seqs: list[tuple[int, int]], width: int | None = None) -> Batch:
    """``seqs``: (new tokens, context after the step). Blocks come shuffled from the pool; block 0 (where table
    entries past a context point) and the slots past each context hold NaN."""
    need = [-(-ctx // PAGE) for _, ctx in seqs]
    width = width or max(max(need), 1)
    num_blocks = sum(need) + 1
    k_cache, v_cache = randn(gen, num_blocks, PAGE, N_KV, HEAD_DIM), randn(gen, num_blocks, PAGE, N_KV, HEAD_DIM)
    k_cache[0], v_cache[0] = float("nan"), float("nan")
    order = torch.randperm(num_blocks - 1, generator=gen, device=DEV).to(torch.int32) + 1
    tables = torch.zeros(len(seqs), width, device=DEV, dtype=torch.int32)
    used = 0
    for b, (_, ctx) in enumerate(seqs):
        tables[b, : need[b]] = order[used: used + need[b]]
        used += need[b]
        if ctx % PAGE:
            last = int(tables[b, need[b] - 1])
            k_cache[last, ctx % PAGE:], v_cache[last, ctx % PAGE:] = float("nan"), float("nan")
    cu = torch.zeros(len(seqs) + 1, device=DEV, dtype=torch.int32)
    cu[1:] = torch.tensor([n for n, _ in seqs], device=DEV).cumsum(0)
    q = fused_qkv(gen, int(cu[-1]))[1]
    lens = torch.tensor([ctx for _, ctx in seqs], device=DEV, dtype=torch.int32)
    return Batch(q, k_cache, v_cache, cu, lens, tables)


def decode_seqs(gen: torch.Generator, batch: int, kv: int) -> list[tuple[int, int]]:
    """``batch`` decodes: the first at context ``kv``, the rest uniform in ``kv / 2 .. kv``."""
    lens = torch.randint(kv // 2, kv + 1, (batch,), generator=gen, device=DEV).tolist()
    return [(1, kv)] + [(1, n) for n in lens[1:]]


@pytest.mark.parametrize("kv", [512, 2048, 8192])
@pytest.mark.parametrize("batch", [1, 8, 32, 64, 128])
def test_paged_attention_decode(gen: torch.Generator, batch: int, kv: int) -> None:
    b = make_batch(gen, decode_seqs(gen, batch, kv))
    assert rel_err(b.run(), b.reference()) < TOL


@pytest.mark.parametrize("num_splits", [1, 5, 64])
def test_paged_attention_decode_split_count_is_free(gen: torch.Generator, num_splits: int) -> None:
    b = make_batch(gen, decode_seqs(gen, 16, 4096) + [(1, 0), (1, 0)])
    plan = dataclasses.replace(attention.plan_attention(18, N_KV, 4096, 132, balanced=False), num_splits=num_splits)
    out = b.run(plan)
    assert rel_err(out, b.reference()) < TOL
    assert torch.equal(out[-2:], torch.zeros_like(out[-2:]))  # padding rows: zeros


@pytest.mark.parametrize("contexts", [[8192] + [512] * 7, [4096] * 2 + [300] * 14 + [0, 0], [40960, 17, 1],
                                      [6144] * 2 + [512] * 60 + [0, 0], [2048] * 128])
def test_paged_attention_decode_balanced_splits(gen: torch.Generator, contexts: list[int]) -> None:
    """Decode work dealt out by key tiles (AttentionPlan.balanced), uneven contexts and padding rows, against the
    reference: a context of the model's whole length among tiny ones takes almost every unit; at batches that fill
    the SMs, the long contexts of a few split, the rest whole."""
    b = make_batch(gen, [(1, kv) for kv in contexts], width=MAX_POSITION // PAGE)
    plan = attention.plan_attention(len(contexts), N_KV, MAX_POSITION, 132, balanced=True)
    assert plan.num_splits > 1
    out = b.run(plan)
    assert rel_err(out, b.reference()) < TOL
    padding = [i for i, kv in enumerate(contexts) if kv == 0]
    assert torch.equal(out[padding], torch.zeros_like(out[padding]))


@pytest.mark.parametrize("chunk,prefix", [(512, 0), (512, 3584), (2048, 0), (2048, 2048), (4096, 0), (4096, 4096)])
def test_paged_attention_prefill_chunk(gen: torch.Generator, chunk: int, prefix: int) -> None:
    b = make_batch(gen, [(chunk, prefix + chunk)])
    assert rel_err(b.run(), b.reference()) < TOL


def test_paged_attention_several_prefills(gen: torch.Generator) -> None:
    b = make_batch(gen, [(1000, 1000), (517, 817), (2048, 7048), (3, 3)])
    assert rel_err(b.run(), b.reference()) < TOL


def test_paged_attention_mixed_batch(gen: torch.Generator) -> None:
    """What sarathi schedules: decodes, a chunk over a cached prefix and a fresh prefill, plus graph padding."""
    seqs = decode_seqs(gen, 100, 4096) + [(512, 1536), (300, 300), (1, 0), (1, 0), (1, 0)]
    b = make_batch(gen, seqs, width=MAX_POSITION // PAGE)
    out = b.run()
    assert rel_err(out, b.reference()) < TOL
    assert torch.equal(out[-3:], torch.zeros_like(out[-3:]))


def test_paged_attention_float32(gen: torch.Generator) -> None:
    """float32 takes its own tiles (exact dots): decodes and prefills against the reference at float32 precision."""
    b = make_batch(gen, decode_seqs(gen, 8, 2048) + [(512, 512), (300, 1324)])
    b.q, b.k_cache, b.v_cache = f32(b.q), f32(b.k_cache), f32(b.v_cache)
    assert rel_err(b.run(), b.reference()) < 1e-5


@pytest.mark.parametrize("batch", [1, 64])
def test_decode_captured_in_a_cuda_graph_replays_with_new_lengths(gen: torch.Generator, batch: int) -> None:
    """The engine's use: one capture per batch bucket at start-up, replays with new lengths, tables and queries.
    The replay must equal an eager call on the same inputs, bit for bit; two rows are graph padding."""
    rows, width, kv = batch + 2, 8192 // PAGE, 8192
    static = make_batch(gen, [(1, kv)] * batch + [(1, 0), (1, 0)], width=width)
    scale = HEAD_DIM ** -0.5
    out = torch.empty_like(static.q)

    def call() -> None:
        attention.paged_attention(static.q, static.k_cache, static.v_cache, static.cu_seqlens_q, static.seq_lens,
                                  static.block_tables, scale, out=out)

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        call()  # compiles and loads the kernels outside the capture
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        call()

    for _ in range(3):
        fresh = make_batch(gen, decode_seqs(gen, batch, kv) + [(1, 0), (1, 0)], width=width)
        for name in ("q", "seq_lens", "block_tables"):
            getattr(static, name).copy_(getattr(fresh, name))
        static.k_cache[: len(fresh.k_cache)].copy_(fresh.k_cache)  # the fresh pool is smaller: contexts <= kv
        static.v_cache[: len(fresh.v_cache)].copy_(fresh.v_cache)
        out.fill_(float("nan"))
        graph.replay()
        torch.cuda.synchronize()
        assert torch.equal(out, fresh.run()), "the replay differs from an eager call"
        assert rel_err(out, fresh.reference()) < TOL
        assert torch.equal(out[rows - 2:], torch.zeros_like(out[rows - 2:]))
