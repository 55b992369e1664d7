"""Per-layer operator timings of the native engine: its own layer methods and kernels (the layers of the engine the
driver built), in Vidur's ``mlp.csv``/``attention.csv`` rows.

On a GPU each op is timed as the engine's step graph runs it. Vidur's num_tokens-indexed ops are timed in their
layer (``InLayer``): a CUDA graph of the whole layer sequence for all 28 layers (each op in its order, with the
attention between them), against the same graph without the op; the op costs the difference, so its kernels pay
the launch gap after the kernel before them, as in a step (timed alone, over consecutive layers, a short kernel
follows itself and costs less: on the H200 a decode of 2-8 ran 11 kernels a layer with ~0.7 us of gap each that
the ops timed alone missed, 0.19-0.29 ms a step; studies/2026-12-02-native-h200-pipelined). Attention is timed
alone, in a graph that calls it for consecutive layers, each on that layer's K/V pool (two kernels a layer, each
after the other), the time of one call being a replay's over its layers (all 28 for a short call, fewer for a long
one: ``EngineLayerOps._run``). On the CPU every op runs eagerly alone, layer 0 (the reference ops). Ops the engine
fuses into another have no cost of their own and get 0 (``None`` below): the residual ``add`` lives in the fused
add + RMSNorm that feeds ``input_layernorm`` and ``post_attention_layernorm`` (at one token on the GPU those norms
live in the projections they feed, and the activation in the down projection), and the KV store in the fused
qk-norm + RoPE + store that feeds ``attn_rope`` (Vidur 0.0.26 leaves ``attn_kv_cache_save`` out of its total, so
the store must sit in ``attn_rope`` to be counted). The mapping is in specs/profiling_root.md.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

from gpu_simulate_test.engine import kernels
from gpu_simulate_test.engine.model import AttentionInputs, with_decode_work
from gpu_simulate_test.vidur_ext.profiler.operators import Op
from gpu_simulate_test.vidur_ext.profiler.timing import TimingMethod, time_call, time_difference


REPLAY_TARGET_US = 200.0  # a timed replay's length: ~30 host launches (~7 us each) of the next replay hidden
FIRST_LOOK = TimingMethod(warmup_iters=3, repeat_iters=1, calls_per_repeat=5)  # a graph of one call, before sizing


class _Replay:
    """A captured graph of ``calls_per_run`` calls together with the closure they were captured from: the graph
    reads that closure's tensors through raw pointers, so they must live as long as the graph (once freed, the next
    capture's ``empty_cache`` can unmap them, and a replay then faults with an illegal memory access)."""

    def __init__(self, graph: Any, fn: Callable[[int], Any], calls_per_run: int) -> None:
        self.graph, self.fn, self.calls_per_run = graph, fn, calls_per_run

    def __call__(self) -> None:
        self.graph.replay()


LayerFn = Callable[[int], Any]  # an op of layer i


class InLayer:
    """The ops of a layer in the order a step runs them (name None: a neighbour that is not timed here, the
    attention), for ``layers`` consecutive layers. ``op(name)`` is that op timed in its layer: replays of the whole
    sequence against replays of it without the op, the difference over the layers (``time_difference``). The whole
    sequence is captured once and kept; each op's other graph lives while it is timed. ``capture(fns, layers)``
    returns a callable that runs them (a CUDA graph's replay on a GPU); the closures' tensors live as long as this."""

    def __init__(self, steps: list[tuple[Optional[str], LayerFn]], layers: int,
                 capture: Callable[[list[LayerFn], int], Callable[[], Any]]) -> None:
        self.steps, self.layers, self._capture = steps, layers, capture
        self._full: Optional[Callable[[], Any]] = None

    def op(self, name: str) -> "_InLayerOp":
        if name not in {n for n, _ in self.steps}:
            raise KeyError(f"{name} is not one of this layer's ops")
        return _InLayerOp(self, name)

    def measure(self, name: Optional[str], sync: Callable[[], None], method: TimingMethod) -> Any:
        """Per-call ms of op ``name`` in its layer (None: the neighbour's), one per repeat."""
        if self._full is None:
            self._full = self._capture([fn for _, fn in self.steps], self.layers)
        without = self._capture([fn for n, fn in self.steps if n != name], self.layers)
        return time_difference(self._full, without, sync, method) / self.layers


class _InLayerOp:
    def __init__(self, seq: InLayer, name: str) -> None:
        self.seq, self.name = seq, name

    def measure(self, sync: Callable[[], None], method: TimingMethod) -> Any:
        return self.seq.measure(self.name, sync, method)


def _graph_of(fns: list[LayerFn], layers: int) -> Callable[[], Any]:
    """A CUDA graph that runs ``fns`` in order for layers 0..layers-1 (each run eagerly once before: kernels
    loaded, workspaces allocated); its replay."""
    import torch

    for fn in fns:
        fn(0)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for i in range(layers):
            for fn in fns:
                fn(i)
    return _Replay(graph, lambda i: [fn(i) for fn in fns], layers)


class EngineLayerOps:
    """Closures that run one op of the engine's layers on inputs of a given shape (the profiler's ``LayerOps``)."""

    def __init__(self, engine: Any) -> None:
        self.model = engine.model
        self.layer = engine.model.layers[0]
        self.num_layers = len(engine.model.layers)
        self.shape = engine.config.model
        self.block_size = engine.config.block_size
        self.device = self.model.embed_tokens.device
        self.dtype = self.model.embed_tokens.dtype
        self.attention_backend = f"native-{kernels.kernel_path(self.device)}"  # native-triton | native-reference
        self._kv = engine.runner.kv_cache  # the engine's own pool, [K/V, layer, block, ...]
        # Block-table rows as wide as the runner's (the model's whole context): the attention kernel plans its
        # split-KV from that width, so a narrower table would time another launch than a step runs.
        self._table_width = engine.runner.tables.width
        self._graph_sizes, self._graph_token_sizes = engine.runner.graph_sizes, engine.runner.graph_token_sizes
        self._graphs = self.device.type == "cuda"

    # ---- inputs -----------------------------------------------------------------------------------------------

    def _rand(self, *shape: int) -> Any:
        import torch

        return torch.randn(*shape, device=self.device, dtype=self.dtype)

    def _int32(self, values: Any) -> Any:
        import torch

        return torch.as_tensor(values, dtype=torch.int32, device=self.device)

    def _caches(self, num_blocks: int) -> list[tuple[Any, Any]]:
        """Each layer's K and V caches of ``num_blocks`` blocks: the engine's own pool while it is large enough (on a
        GPU it holds most of the memory: a second one would not fit), else one fresh cache of the same layout that
        every layer shares."""
        import torch

        if num_blocks <= self._kv.shape[2]:
            return [(self._kv[0, i], self._kv[1, i]) for i in range(self.num_layers)]
        s = self.shape
        fresh = tuple(torch.zeros(num_blocks, self.block_size, s.num_kv_heads, s.head_dim, dtype=self.dtype,
                                  device=self.device) for _ in range(2))
        return [fresh] * self.num_layers

    def _attention_inputs(self, seqs: list[tuple[int, int]]) -> tuple[AttentionInputs, list[tuple[Any, Any]]]:
        """Sequences of (cached tokens, new tokens), each on its own consecutive blocks; the new tokens' slots; each
        layer's K/V caches."""
        bs = self.block_size
        widths = [math.ceil((cached + new) / bs) for cached, new in seqs]
        table, slots, first = [], [], 0
        for (cached, new), width in zip(seqs, widths):
            table.append(list(range(first, first + width)) + [0] * (self._table_width - width))
            slots += [first * bs + p for p in range(cached, cached + new)]
            first += width
        cu = [0]
        for _, new in seqs:
            cu.append(cu[-1] + new)
        attn = AttentionInputs(slot_mapping=self._int32(slots), cu_seqlens_q=self._int32(cu),
                               seq_lens=self._int32([c + n for c, n in seqs]), block_tables=self._int32(table))
        caches = self._caches(first)
        return with_decode_work(attn, caches[0][0]), caches  # the work table: once a step, as the model makes it

    def _run(self, fn: Callable[[int], Any]) -> Callable[[], Any]:
        """``fn(i)``, the op of layer ``i``, as the engine runs it: on a GPU a CUDA graph of it for consecutive layers
        (kernels loaded before the capture; the timing divides a replay by ``calls_per_run``), on the CPU layer 0's
        call. As many layers as make a replay last ``REPLAY_TARGET_US`` (all of them for a short op, one for an op
        that long on its own), judged from a graph of one call: a replay that long hides the host's launch of the
        next, and an op that long has no launch floor to hide, so the build does not time every long op 28 times."""
        if not self._graphs:
            return lambda: fn(0)
        import torch

        def capture(calls: int) -> Any:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                for i in range(calls):
                    fn(i)
            return graph

        fn(0)
        torch.cuda.synchronize()
        graph = capture(1)
        one_us = float(time_call(graph.replay, torch.cuda.synchronize, FIRST_LOOK)[0]) * 1e3  # >= a launch
        calls = min(self.num_layers, max(1, math.ceil(REPLAY_TARGET_US / one_us)))
        if calls > 1:
            del graph
            graph = capture(calls)
        return _Replay(graph, fn, calls)

    # ---- Vidur's operators --------------------------------------------------------------------------------------

    def token_ops(self, n: int) -> dict[str, Op]:
        """Vidur's num_tokens-indexed operators, each the engine's own call for ``n`` tokens; on a GPU each timed in
        its layer (``InLayer``), on the CPU alone. Where the engine fuses a norm into the projection it feeds, and the
        activation into the down projection (one token on the GPU: ``kernels.fuses_projection_input``), the fused
        call is timed under the projection's row and the norm's and the activation's rows get 0."""
        import torch

        layers, s, eps = self.model.layers, self.shape, self.shape.rms_norm_eps
        x, residual = self._rand(n, s.hidden_size), self._rand(n, s.hidden_size)
        q, k, v = self.layer.qkv_proj(x)
        positions = torch.arange(n, dtype=torch.int32, device=self.device)  # int32, as the runner packs them
        attn, caches = self._attention_inputs([(0, n)])
        o = self._rand(n, s.num_attention_heads * s.head_dim)
        gate_up = self._rand(n, 2 * s.intermediate_size)
        rope = ("attn_rope", lambda i: layers[i].rope_and_store(q, k, v, positions, attn, *caches[i],
                                                                self.model.cos_sin))
        attend = (None, lambda i: layers[i].attend(q, attn, *caches[i]))  # the neighbour, timed apart
        post = ("attn_post_proj", lambda i: layers[i].o_proj(o))
        if kernels.fuses_projection_input(x):
            steps = [("attn_pre_proj", lambda i: layers[i].input_norm_qkv_proj(x, residual)), rope, attend, post,
                     ("mlp_up_proj", lambda i: layers[i].post_norm_up_proj(x, residual)),
                     ("mlp_down_proj", lambda i: layers[i].mlp_act_down_proj(gate_up))]
            fused = ["input_layernorm", "post_attention_layernorm", "mlp_act"]
        else:  # the same calls' two halves, each timed on its own
            act = self._rand(n, s.intermediate_size)
            steps = [("input_layernorm", lambda i: kernels.add_rms_norm(x, residual, layers[i].w.input_norm, eps)),
                     ("attn_pre_proj", lambda i: layers[i].qkv_proj(x)), rope, attend, post,
                     ("post_attention_layernorm",
                      lambda i: kernels.add_rms_norm(x, residual, layers[i].w.post_norm, eps)),
                     ("mlp_up_proj", lambda i: kernels.linear(x, layers[i].w.gate_up_proj)),
                     ("mlp_act", lambda i: kernels.silu_and_mul(gate_up)),
                     ("mlp_down_proj", lambda i: kernels.linear(act, layers[i].w.down_proj))]
            fused = []
        ops: dict[str, Op] = {name: None for name in [*fused, "add"]}
        if self._graphs:
            seq = InLayer(steps, self.num_layers, _graph_of)
            ops.update({name: seq.op(name) for name, _ in steps if name is not None})
        else:
            ops.update({name: (lambda fn=fn: fn(0)) for name, fn in steps if name is not None})
        return ops

    def _attend(self, seqs: list[tuple[int, int]]) -> Callable[[], Any]:
        attn, caches = self._attention_inputs(seqs)
        q = self._rand(sum(new for _, new in seqs), self.shape.num_attention_heads, self.shape.head_dim)
        return self._run(lambda i: self.model.layers[i].attend(q, attn, *caches[i]))

    def prefill(self, chunk: int, kv: int) -> Callable[[], Any]:
        """One request's chunk attending to ``kv`` cached tokens plus itself (causal)."""
        return self._attend([(kv, chunk)])

    def decode(self, batch: int, kv: int) -> Callable[[], Any]:
        """``batch`` single-token queries, each over its own ``kv + 1`` keys."""
        return self._attend([(kv, 1)] * batch)

    # ---- the step outside its layers ----------------------------------------------------------------------------

    def graph_buckets(self) -> tuple[list[int], list[int]]:
        """The engine's CUDA graph buckets, ``(sequences, tokens)`` as its runner captured them (none off a GPU): a
        step runs padded up to the smallest that holds it (``RowKeys.token_rows: graph_bucket``)."""
        return list(self._graph_sizes), list(self._graph_token_sizes)

    def prefill_wave(self) -> tuple[int, int]:
        """``(query blocks a KV head in one wave, tokens a query block)`` of the engine's prefill attention launch on
        this GPU (its SMs over the KV heads: one prefill program an SM, ``kernels/attention.py``), or ``(0, 0)`` off
        a GPU (the reference ops run a step's chunks one after another): ``RowKeys.prefill_chunks``."""
        if self.device.type != "cuda":
            return 0, 0
        import torch

        from gpu_simulate_test.engine.kernels.attention import launches, plan_attention

        s = self.shape
        sms = torch.cuda.get_device_properties(self.device).multi_processor_count
        plan = plan_attention(1, s.num_kv_heads, self._table_width * self.block_size, sms, self.dtype)
        block_q = launches(2, 1, s.num_attention_heads, s.num_kv_heads, plan).prefill_block_q
        return sms // s.num_kv_heads, int(block_q)

    def outside_layers(self, n: int, rows: int) -> Callable[[], Any]:
        """A step's work outside its layers, ``n`` tokens of ``rows`` sequences (each sampling one row), as the
        runner's ``_forward`` and ``Qwen3Model.forward`` run it: the step's block-table uploads (as many as a graph
        bucket of ``n`` tokens and ``rows`` sequences has places for) and the patches of the token ids of the step
        before it (one a row), the sequences' block-table rows gathered, the decode work table
        (``kernels.decode_work``), the embeddings, the final add + norm and the LM head on the sampling rows, and the
        argmax. Those few lines are written out here, not called (the engine's source is part of every native id, and
        these lines of it are inside ``forward``): keep them in step with ``ModelRunner._forward`` and
        ``Qwen3Model.forward``."""
        import torch
        import torch.nn.functional as F

        s, model = self.shape, self.model
        ids = torch.randint(s.vocab_size, (n,), device=self.device, dtype=torch.int32)
        h, residual = self._rand(n, s.hidden_size), self._rand(n, s.hidden_size)
        logits = torch.arange(n - rows, n, device=self.device, dtype=torch.int32)  # each sequence's last token
        table = self._int32([[0] * self._table_width] * (rows + 1))
        uploads = n // self.block_size + rows  # ModelRunner._max_uploads
        upload_index = torch.arange(uploads, device=self.device, dtype=torch.int32) % table.numel()
        upload_block = torch.zeros(uploads, device=self.device, dtype=torch.int32)
        patch_target = torch.zeros(n + 1, device=self.device, dtype=torch.int32)
        patch_at = torch.arange(rows, device=self.device, dtype=torch.int32) % (n + 1)
        sampled = torch.zeros(rows, device=self.device, dtype=torch.int64)
        seq_rows = torch.arange(rows, device=self.device, dtype=torch.int32)
        attn, caches = self._attention_inputs([(15, 1)] * rows)

        def step(_: int) -> Any:
            table.view(-1).index_put_((upload_index,), upload_block)
            patch_target.index_put_((patch_at,), sampled.index_select(0, seq_rows).to(torch.int32))
            tables = table.index_select(0, seq_rows)
            kernels.decode_work(attn.cu_seqlens_q, attn.seq_lens, tables, caches[0][0])
            F.embedding(ids, model.embed_tokens)
            out, _ = kernels.add_rms_norm(h.index_select(0, logits), residual.index_select(0, logits),
                                          model.final_norm, s.rms_norm_eps)
            return torch.argmax(kernels.lm_head(out, model.lm_head), dim=-1, out=sampled)

        return self._run(step)

    def kv_cache_save(self, n: int, capacity: int) -> Op:
        """Fused into ``attn_rope`` (the engine has no KV store of its own)."""
        return None
