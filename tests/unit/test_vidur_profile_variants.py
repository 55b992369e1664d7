"""The bundle's variants and baselines on numbers worked out by hand: the step correction (fitted on fit shapes, capped
share of the step), the validation choice, and the constant and linear baselines of the test check."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from gpu_simulate_test.config.vidur import LinearRegressionGridConfig, VidurConfig
from gpu_simulate_test.errors import ArtifactError, InputError
from gpu_simulate_test.testing import make_profile
from gpu_simulate_test.vidur_ext.predictor import PredictorGrid, build_predictor, predict_batch_time_s
from gpu_simulate_test.vidur_ext.profiler.baselines import abs_error_stats, baseline_record, baseline_table, fit_baselines
from gpu_simulate_test.vidur_ext.profiler.shapes import BatchShape
from gpu_simulate_test.vidur_ext.profiler.variants import (
    Candidate,
    check_variants,
    choose,
    chunk_graph_term,
    decode_graph_term,
    eager_term,
    first_chunks,
    fit_step_correction,
    head_term,
    host_share_term,
    packed_at_start,
    share_pct,
    tokens_8,
    with_graph,
    with_outside,
    with_step,
)
from gpu_simulate_test.vidur_ext.profiling_root import GridLimits
from gpu_simulate_test.vidur_ext.step_correction import (
    ChunkGraph,
    DecodeGraph,
    HostTerm,
    IdleStart,
    OutsideLayers,
    RequestCurve,
    RowKeys,
    StepCorrection,
    StepTerms,
    TokenCurve,
    idle_start,
    step_correction,
    step_terms,
)

FIT = [BatchShape.parse(s) for s in ("prefill:32", "prefill:200", "prefill:512", "decode:1x128", "decode:8x1024",
                                     "decode:64x2048", "mixed:256+16x1024", "prefill:512@2048")]


def _raw(shapes: list[BatchShape]) -> np.ndarray:
    """An operator sum that grows with tokens and KV (ms)."""
    return np.array([2.0 + 0.004 * s.num_tokens + 0.0002 * s.decode_batch * s.decode_kv + 0.0001 * s.prefill_kv
                     for s in shapes])


def test_step_correction_is_recovered_when_within_the_cap() -> None:
    truth = StepCorrection(c_iter_ms=0.15, c_token_ms=0.0002)  # embedding + LM head + sampling + host: ~5% here
    raw = _raw(FIT)
    measured = with_step(truth, FIT, raw)
    got = fit_step_correction(FIT, list(measured), list(raw), cap_pct=10.0)
    assert got.c_iter_ms == pytest.approx(truth.c_iter_ms, abs=1e-9)
    assert got.c_token_ms == pytest.approx(truth.c_token_ms, abs=1e-12)
    assert share_pct(with_step(got, FIT, raw), raw).max() <= 10.0


def test_step_correction_recovers_a_cost_per_first_chunk() -> None:
    """The engine admits a request in the step that runs its first chunk: 0.1 ms a first chunk on top of 0.05 ms a
    step (under the cap: at most 7% of a step here), recovered from the fit shapes (four of them run a first chunk:
    prefill:32/200/512, mixed:256+16x1024)."""
    truth = StepCorrection(c_iter_ms=0.05, c_token_ms=0.0, c_first_ms=0.1)
    raw = _raw(FIT)
    got = fit_step_correction(FIT, list(with_step(truth, FIT, raw)), list(raw), cap_pct=10.0)
    assert got == StepCorrection(pytest.approx(0.05, abs=1e-9), pytest.approx(0.0, abs=1e-12), pytest.approx(0.1, abs=1e-9))
    assert [first_chunks(BatchShape.parse(s)) for s in ("prefill:32", "prefill:512@2048", "mixed:256+16x1024",
                                                         "decode:8x1024", "prefill:1")] == [1, 0, 1, 0, 0]
    assert StepCorrection(0.1, 0.001, 0.25).ms(256, 2) == pytest.approx(0.856)


def test_step_correction_never_exceeds_its_cap_on_a_fit_shape() -> None:
    raw = _raw(FIT)
    measured = raw * 1.5  # the engine costs 50% more than its operators: far beyond what a 10% correction may add
    got = fit_step_correction(FIT, list(measured), list(raw), cap_pct=10.0)
    share = share_pct(with_step(got, FIT, raw), raw)
    assert share.max() <= 10.0 + 1e-6 and share.max() > 9.9  # bound, and binding


def test_step_correction_holds_its_cap_on_the_other_shapes_too() -> None:
    """A validation or test shape (its operators' prediction only) with a small step binds the cap as a fit shape
    would: without it the fit adds more than 10% of that shape's step."""
    raw = _raw(FIT)
    measured = raw + 0.3  # a constant 0.3 ms the operators miss: 6-12% of these fit steps
    small = (BatchShape.parse("decode:1x128", "test"), 1.0)  # a 1 ms step: 0.3 ms would be 23% of it
    free = fit_step_correction(FIT, list(measured), list(raw), cap_pct=10.0)
    assert free.ms(tokens_8(small[0])) > 0.1 * (1.0 + free.ms(tokens_8(small[0])))
    got = fit_step_correction(FIT, list(measured), list(raw), cap_pct=10.0, also_capped=[small])
    corr = got.ms(tokens_8(small[0]))
    assert abs(corr) <= 0.1 * (1.0 + corr) + 1e-9 and share_pct(with_step(got, FIT, raw), raw).max() <= 10.0 + 1e-6
    with pytest.raises(InputError, match="capped shapes"):
        fit_step_correction(FIT, list(measured), list(raw), cap_pct=10.0, also_capped=[(small[0], float("nan"))])


def test_step_correction_may_be_negative() -> None:
    raw = _raw(FIT)
    measured = raw - 0.1  # operators timed one by one overcount the step by a constant 0.1 ms
    got = fit_step_correction(FIT, list(measured), list(raw), cap_pct=10.0)
    assert got.c_iter_ms == pytest.approx(-0.1, abs=1e-9) and got.c_token_ms == pytest.approx(0.0, abs=1e-12)


def test_step_correction_refuses_bad_inputs() -> None:
    with pytest.raises(InputError, match="profile.fit"):
        fit_step_correction([], [], [], cap_pct=10.0)
    with pytest.raises(InputError, match="correction_cap_pct"):
        fit_step_correction(FIT[:1], [1.0], [1.0], cap_pct=0.0)
    with pytest.raises(InputError, match="positive"):
        fit_step_correction(FIT[:1], [0.0], [1.0], cap_pct=10.0)


def test_tokens_rounded_as_vidur_looks_rows_up() -> None:
    assert [tokens_8(BatchShape.parse(s)) for s in ("decode:1x8", "prefill:9", "mixed:250+6x10")] == [8, 16, 256]
    assert StepCorrection(0.1, 0.001).ms(256) == pytest.approx(0.356)


def test_head_term_is_the_median_by_rows_interpolated_by_hand() -> None:
    """Timings at 1, 2, 4 rows and twice at 4 (a prefill's tokens sample the cap's rows): the median per row count,
    interpolated in the step's requests, flat beyond; a negative or missing time refused."""
    term = head_term({"num_tokens": [1, 2, 4, 512], "rows": [1, 2, 4, 4], "ms": [0.10, 0.12, 0.14, 0.18]})
    assert term == OutsideLayers((1, 2, 4), (0.10, 0.12, pytest.approx(0.16)))
    assert [term.at(n) for n in (1, 3, 4, 64)] == [0.10, pytest.approx(0.14), pytest.approx(0.16), pytest.approx(0.16)]
    shapes = [BatchShape.parse(s) for s in ("prefill:512", "decode:3x64", "mixed:32+3x64")]
    assert with_outside(term, shapes, np.array([1.0, 2.0, 3.0])).tolist() == pytest.approx([1.10, 2.14, 3.16])
    # read at the graph that runs the step (decodes 1, 2, 4; tokens 16 ... 512): 3 decodes as 4 sequences, a chunk
    # of 32 beside 3 decodes as 8 (35 tokens: the 64-token graph, whose 4 + 1 sequences take the bucket of 8)
    graphs = RowKeys(token_rows="graph_bucket", graph_batch_sizes=(1, 2, 4, 8), graph_token_sizes=(16, 64, 512))
    assert with_outside(term, shapes, np.zeros(3), graphs).tolist() == pytest.approx([0.10, 0.16, 0.16])
    for rows, ms in (([1, 2], [0.1, -0.1]), ([1], []), ([], []), ([0], [0.1])):
        with pytest.raises(InputError, match="head term"):
            head_term({"rows": rows, "ms": ms})


def test_host_share_term_is_the_median_by_requests_per_packing_by_hand() -> None:
    """The host grid's measured shares (wall less device, per shape): first chunks (packed at their start) in one
    curve, decodes (packed ahead) in the other, the median per request count, interpolated in the step's requests; a
    shape the engine packed otherwise than the rule says is listed; a missing share or a grid of one kind is
    refused."""
    grid = [("decode:1x512", 0.085, 0.0), ("prefill:256", 0.25, 1.0), ("decode:2x512", 0.035, 0.0),
            ("mixed:256+1x512", 0.33, 1.0), ("decode:4x512", 0.04, 0.0), ("mixed:256+3x512", 0.37, 1.0),
            ("decode:8x512", 0.045, 0.0), ("mixed:256+7x512", 0.41, 1.0)]
    record = {"shape": [g[0] for g in grid], "requests": [BatchShape.parse(g[0]).batch_size for g in grid],
              "at_start": [packed_at_start(BatchShape.parse(g[0])) for g in grid],
              "packed_at_start": [g[2] for g in grid], "host_ms": [g[1] for g in grid]}
    assert record["requests"] == [1, 1, 2, 2, 4, 4, 8, 8] and record["at_start"] == [False, True] * 4
    term, kept = host_share_term(record)
    assert term == HostTerm(RequestCurve((1, 2, 4, 8), (0.085, 0.035, 0.04, 0.045)),
                            RequestCurve((1, 2, 4, 8), (0.25, 0.33, 0.37, 0.41)))
    assert term.at(3, serial=False) == pytest.approx(0.0375) and term.at(64, serial=True) == pytest.approx(0.41)
    assert kept == {**record, "packed_otherwise": []}
    assert [packed_at_start(BatchShape.parse(s)) for s in ("prefill:512@2048", "mixed:64@64+3x64")] == [False, False]
    # what the head variant predicts: the rows, the work outside the layers and the host's share, as packed
    outside = OutsideLayers((1,), (0.1,))
    shapes = [BatchShape.parse(s) for s in ("prefill:64", "decode:3x64", "mixed:32+5x64")]
    assert with_outside(outside, shapes, np.ones(3), host=term).tolist() == pytest.approx(
        [1.1 + 0.25, 1.1 + 0.0375, 1.1 + 0.37 + 0.04 * 2 / 4])
    odd = {**record, "packed_at_start": [0.0, 1.0, 0.0, 1.0, 0.9, 1.0, 0.0, 1.0]}
    assert host_share_term(odd)[1]["packed_otherwise"] == ["decode:4x512"]
    with pytest.raises(InputError, match="request grid"):
        host_share_term({**record, "host_ms": [float("nan")] + record["host_ms"][1:]})
    with pytest.raises(InputError, match="request grid"):
        host_share_term({})
    with pytest.raises(InputError, match="only one kind"):
        host_share_term({k: v[::2] for k, v in record.items()})


def test_eager_term_is_what_a_step_no_graph_holds_costs_beyond_the_rest_by_hand() -> None:
    """The host grid's prefills that no graph holds (``eager``): their measured wall less what the head variant
    predicts of them otherwise, the median at each token count, held at >= 0, interpolated in the step's tokens and
    added to a step no graph holds only; those rows stay out of the ahead and serial curves."""
    grid = [("decode:1x512", 1, 1, False, 0.04, 1.2, False), ("prefill:256", 1, 256, True, 0.3, 2.0, False),
            ("decode:2x512", 2, 2, False, 0.035, 1.3, False), ("mixed:256+1x512", 2, 257, True, 0.33, 2.4, False),
            ("prefill:768", 1, 768, True, 0.02, 15.0, True), ("prefill:1280", 1, 1280, True, 0.03, 16.0, True),
            ("prefill:1792", 1, 1792, True, 0.03, 3.0, True)]
    record = {k: [g[i] for g in grid] for i, k in enumerate(
        ("shape", "requests", "tokens", "at_start", "host_ms", "wall_ms", "eager"))}
    record["packed_at_start"] = [float(a) for a in record["at_start"]]
    host, kept = host_share_term(record)
    assert host == HostTerm(RequestCurve((1, 2), (0.04, 0.035)), RequestCurve((1, 2), (0.3, 0.33)))  # no eager row
    assert kept["packed_otherwise"] == []
    rest = [3.0, 4.0, 5.0]  # what the operators, the work outside and the host's share predict of the three
    eager = eager_term(record, rest)
    assert eager == TokenCurve((768, 1280, 1792), (12.0, 12.0, 0.0))  # 3 - 5 < 0: held at 0
    assert [eager.at(n) for n in (600, 1024, 1536, 4096)] == pytest.approx([12.0, 12.0, 6.0, 0.0])
    term = replace(host, eager=eager)
    assert term.eager_at(1024, None) == pytest.approx(12.0) and term.eager_at(1024, (1024, 2)) == 0.0
    assert host.eager_at(1024, None) == 0.0  # a bundle without the term
    assert eager_term({**record, "eager": [False] * len(grid)}, []) is None
    with pytest.raises(InputError, match="one prediction"):
        eager_term(record, rest[:2])
    # what the head variant predicts: the eager term on a step no graph holds (graphs up to 512 tokens) only
    outside = OutsideLayers((1,), (0.1,))
    keys = RowKeys(token_rows="graph_bucket", graph_batch_sizes=(1, 2, 4), graph_token_sizes=(256, 512))
    shapes = [BatchShape.parse(s) for s in ("prefill:1024", "prefill:512", "decode:2x64")]
    assert with_outside(outside, shapes, np.ones(3), keys, term).tolist() == pytest.approx(
        [1.1 + 0.3 + 12.0, 1.1 + 0.3, 1.1 + 0.035])


def test_decode_graph_term_is_what_a_decode_graph_costs_beyond_its_parts_by_hand() -> None:
    """The host grid's decodes a graph runs: their device time (wall less the host's share) less what the bundle
    predicts of them without the term, the median at each count of decodes with the graph that ran it, signed (a graph
    may cost less than its parts); added to a decode batch a graph runs only, by ``step`` and ``head`` alike, read
    between the points of the step's own graph (its padding sequences), never across two graphs."""
    grid = [("decode:1x512", 1.20, 0.04), ("prefill:256", 2.00, 0.30), ("decode:3x512", 1.40, 0.03),
            ("decode:4x512", 1.45, 0.05), ("decode:6x512", 1.55, 0.03), ("decode:8x512", 1.60, 0.04),
            ("decode:8x512", 1.62, 0.04)]
    record = {"shape": [g[0] for g in grid], "requests": [BatchShape.parse(g[0]).batch_size for g in grid],
              "wall_ms": [g[1] for g in grid], "host_ms": [g[2] for g in grid]}
    seqs = [1, None, 4, 4, 8, 8, 8]  # the prefill: no decode graph
    predicted = [1.20, 1.30, 1.42, 1.40, 1.46, 1.46]  # the operators and the work outside, one a decode a graph runs
    term = decode_graph_term(record, seqs, predicted)
    assert term.requests == (1, 3, 4, 6, 8) and term.graphs == (1, 4, 4, 8, 8)
    assert term.ms == pytest.approx((-0.04, 0.07, -0.02, 0.12, (0.10 + 0.12) / 2))
    assert decode_graph_term(record, [None] * 7, []) is None
    with pytest.raises(InputError, match="one prediction"):
        decode_graph_term(record, seqs, predicted[:3])
    with pytest.raises(InputError, match="one graph a count"):
        decode_graph_term(record, [1, None, 4, 4, 8, 8, 16], predicted)
    keys = RowKeys(token_rows="graph_bucket", graph_batch_sizes=(1, 2, 4, 8), graph_token_sizes=(256, 512))
    shapes = [BatchShape.parse(s) for s in ("decode:5x512", "decode:7x512", "decode:3x64", "decode:2x64",
                                            "mixed:32+3x64", "prefill:64", "decode:9x64")]
    # 5: below graph 8's fewest point (6), held; 7: between 6 and 8; 3: graph 4's point; 2: graph 2 has no point,
    # read at its sequences across the others (1 and 3); a mixed step, a prefill, a batch no graph holds: none
    assert with_graph(term, shapes, np.ones(7), keys).tolist() == pytest.approx(
        [1.12, 1.115, 1.07, 1.015, 1.0, 1.0, 1.0])
    assert with_graph(None, shapes, np.ones(7), keys).tolist() == [1.0] * 7
    # a bundle from before: one point a graph, by its sequences, flat across the graph
    old = DecodeGraph((1, 4, 8), (-0.04, 0.025, 0.11))
    assert [old.at_step((b, b), True, n) for n, b in ((5, 8), (3, 4), (2, 2))] == pytest.approx([0.11, 0.025, -0.04 + 0.065 / 3])


def test_chunk_graph_term_is_what_a_chunk_steps_graph_costs_beyond_its_parts_by_hand() -> None:
    """The host grid's steps with a prompt chunk that a graph runs: their device time less what the bundle predicts of
    them without the term, the median at each count of requests, signed (on the H200 such a step of a few requests ran
    0.12-0.19 ms under its operators and the work outside them); added to a step with a chunk a graph runs only, by
    its requests, by ``step`` and ``head`` alike beside the decode graph term."""
    grid = [("decode:1x512", 1.20, 0.04), ("prefill:256", 2.00, 0.30), ("mixed:256+1x512", 2.40, 0.25),
            ("mixed:256+3x512", 2.50, 0.20), ("mixed:256+3x512", 2.54, 0.20), ("prefill:768", 14.0, 0.3)]
    record = {"shape": [g[0] for g in grid], "requests": [BatchShape.parse(g[0]).batch_size for g in grid],
              "wall_ms": [g[1] for g in grid], "host_ms": [g[2] for g in grid]}
    graph_tokens = [1, 256, 512, 512, 512, None]  # the 768-token prompt: no graph holds it (the eager term's)
    predicted = [1.85, 2.30, 2.45, 2.45]  # the operators and the work outside, one a chunk step a graph runs
    term = chunk_graph_term(record, graph_tokens, predicted)
    assert term.requests == (1, 2, 4) and term.ms == pytest.approx((-0.15, -0.15, (-0.15 - 0.11) / 2))
    assert term.max_graph_tokens == 512  # the largest graph a grid chunk step ran in
    assert chunk_graph_term(record, [1, None, None, None, None, None], []) is None  # a decode only
    with pytest.raises(InputError, match="one prediction"):
        chunk_graph_term(record, graph_tokens, predicted[:2])
    keys = RowKeys(token_rows="graph_bucket", graph_batch_sizes=(1, 2, 4, 8), graph_token_sizes=(256, 512))
    shapes = [BatchShape.parse(s) for s in ("mixed:32+2x64", "prefill:512@2048", "mixed:200+7x64", "decode:3x64",
                                            "prefill:1024")]
    # 3 requests: between 2 and 4; a later chunk alone: 1 request; 8: held past the last point; a decode batch and a
    # step no graph holds: none
    assert with_graph(None, shapes, np.ones(5), keys, term).tolist() == pytest.approx(
        [1 - 0.14, 1 - 0.15, 1 - 0.13, 1.0, 1.0])
    graph = DecodeGraph((1, 4), (0.01, 0.02))
    assert with_graph(graph, shapes, np.ones(5), keys, term).tolist() == pytest.approx(
        [1 - 0.14, 1 - 0.15, 1 - 0.13, 1.02, 1.0])
    one = ChunkGraph((1,), (-0.1,), max_graph_tokens=256)
    assert one.at_step((256, 1), False, 1) == -0.1 and one.at_step(None, False, 1) == 0.0
    assert one.at_step((16, 1), True, 1) == 0.0  # a decode batch
    assert one.at_step((512, 1), False, 1) == 0.0  # a graph larger than any the grid's chunks ran in: not measured


def test_decode_attention_between_measured_batch_sizes_by_hand() -> None:
    """A model that answers 33-40 decodes with the 32-decode row and 41-47 with the 48's (a forest's steps) is read
    linearly between the measured 32 and 48 at each KV; the measured sizes and those beyond them as predicted."""
    from gpu_simulate_test.vidur_ext.predictor import between_measured_batches

    rows = {(b, kv): (1.0 if b <= 40 else 2.0) * (1 + kv / 256) for b in range(30, 51) for kv in (0, 256)}
    got = between_measured_batches(rows, [16, 32, 48])
    assert got[(32, 0)] == 1.0 and got[(48, 256)] == 4.0 and got[(40, 0)] == pytest.approx(1.5)
    assert got[(36, 256)] == pytest.approx(2 * 1.25) and got[(44, 0)] == pytest.approx(1.75)
    assert got[(30, 0)] == 1.0 and got[(50, 256)] == 4.0  # 30: no measured 16 in the grid at this KV; 50: beyond 48
    assert between_measured_batches(rows, [32]) == rows  # one measured size: nothing to read between


def test_prefill_attention_between_measured_chunk_sizes_by_hand() -> None:
    """A model that answers chunks of 1,056-1,280 tokens with the 1,024 row and 1,312-1,504 with the 1,536's is read
    linearly between the measured 1,024 and 1,536 at each KV (the key's second part); measured chunks, those outside
    them and a chunk at a KV where only one measured size was predicted stay as predicted."""
    from gpu_simulate_test.vidur_ext.predictor import between_measured_chunks

    rows = {(kv, c): (1.0 if c <= 1280 else 3.0) + kv / 1024 for kv in (0, 1024) for c in range(992, 1600, 32)}
    rows[(2048, 1280)] = 7.0  # only one measured size (none) at this KV: nothing to read between
    got = between_measured_chunks(rows, [512, 1024, 1536, 2048])
    assert got[(0, 1024)] == 1.0 and got[(1024, 1536)] == 4.0 and got[(0, 1280)] == pytest.approx(2.0)
    assert got[(1024, 1152)] == pytest.approx(2.0 + 0.5) and got[(0, 1504)] == pytest.approx(1.0 + 2 * 480 / 512)
    assert got[(0, 992)] == 1.0 and got[(1024, 1568)] == 4.0 and got[(2048, 1280)] == 7.0
    assert between_measured_chunks(rows, [1024]) == rows


def test_eager_points_lie_above_the_largest_graph_between_powers_of_two() -> None:
    from types import SimpleNamespace

    from gpu_simulate_test.vidur_ext.profiler.bundle import eager_points, host_grid

    assert eager_points(512, 512) == [] and eager_points(512, 600) == [600]
    assert eager_points(512, 4096) == [768, 1280, 1792, 2560, 3584]  # 4096: not 1.25 x 3584 beyond
    assert eager_points(512, 8191) == [768, 1280, 1792, 2560, 3584, 5120, 7168]
    assert eager_points(512, 1024) == [768, 1024]
    # the host grid: decodes and first chunks at every request count, then the eager prefills, less the tokens of a
    # configured shape (taken)
    grid = SimpleNamespace(limits=SimpleNamespace(batch_size=2, request_tokens=8192, prefill_chunk=4096))
    timer = SimpleNamespace(limits=SimpleNamespace(token_budget=4096), unsupported=lambda s: None)
    shapes = [str(s) for s in host_grid(grid, timer, [16, 256, 512], taken=[1280, 9])]
    assert shapes == ["decode:1x512", "prefill:256", "decode:2x512", "mixed:256+1x512",
                      "prefill:768", "prefill:1792", "prefill:2560", "prefill:3584"]
    assert [str(s) for s in host_grid(grid, timer)] == shapes[:4]  # no graphs (off a GPU): no eager step to time
    small = SimpleNamespace(limits=SimpleNamespace(batch_size=2, request_tokens=8192, prefill_chunk=128))
    assert [str(s) for s in host_grid(small, timer)][:2] == ["decode:1x512", "prefill:128"]  # the rows' largest chunk
    # decodes also at the fewest of every decode graph up to the cap (one more than the bucket below), those the
    # ladder lacks, without a first chunk beside them
    grid = SimpleNamespace(limits=SimpleNamespace(batch_size=16, request_tokens=8192, prefill_chunk=4096))
    decodes = [str(s) for s in host_grid(grid, timer, graph_seqs=[1, 2, 4, 8, 16, 24]) if s.kind == "decode"]
    assert decodes == [f"decode:{n}x512" for n in (1, 2, 3, 4, 5, 6, 8, 9, 12, 16)]
    assert len(host_grid(grid, timer, graph_seqs=[1, 2, 4, 8, 16, 24])) == len(host_grid(grid, timer)) + 2


def test_step_terms_from_meta_and_refused_when_malformed() -> None:
    """A bundle from before the terms: none, Vidur's keys; each record read back; a bad one named in a one-line error."""
    assert step_terms({}) == StepTerms()
    meta = {"step_correction": None, "outside_layers": {"requests": [1, 8], "ms": [0.1, 0.2]},
            "host_term": {"ahead": {"requests": [1, 64], "ms": [0.03, 0.05]}, "serial": {"requests": [1], "ms": [0.3]}},
            "row_keys": {"prefill_attention_kv": "before_chunk", "token_rows": "exact", "decode_batching": "as_measured",
                         "prefill_chunks": "one_wave", "prefill_wave_blocks": 16, "prefill_block_q": 64,
                         "graph_batch_sizes": [], "graph_token_sizes": [], "token_fit": "every_row",
                         "decode_attention_kv": "rounded_up", "decode_attention_batch": "vidur_model",
                         "prefill_attention_chunk": "vidur_model", "prefill_attention_kv_read": "rounded_up"}}  # Vidur's readings
    terms = step_terms(meta)
    assert terms.outside == OutsideLayers((1, 8), (0.1, 0.2))
    assert terms.host == HostTerm(RequestCurve((1, 64), (0.03, 0.05)), RequestCurve((1,), (0.3,)))
    assert terms.host.at(32, serial=False) == pytest.approx(0.03 + 0.02 * 31 / 63) and terms.host.at(128, True) == 0.3
    assert terms.keys == RowKeys("before_chunk", "exact", "as_measured", "one_wave", 16, 64, token_fit="every_row")
    assert terms.keys.one_wave([480, 32]) and terms.keys.one_wave([512] + [64] * 8)  # 16 query blocks of 64
    assert not terms.keys.one_wave([512] + [64] * 9) and not RowKeys().one_wave([32, 32])
    assert replace(terms.keys, prefill_chunks="one_launch").one_wave([480, 32])  # one launch reads one wave alike
    assert step_terms({"row_keys": {"token_rows": "exact"}}).keys == RowKeys(token_rows="exact")  # the rest: Vidur's
    assert terms.record() == {**meta, "decode_graph": None, "chunk_graph": None, "idle_start": None}
    eager = {**meta, "host_term": {**meta["host_term"], "eager": {"tokens": [768, 1280], "ms": [12.0, 13.0]}},
             "row_keys": {**meta["row_keys"], "token_rows": "graph_bucket", "graph_batch_sizes": [1, 2],
                          "graph_token_sizes": [256, 512]}}
    got = step_terms(eager)
    assert got.host.eager == TokenCurve((768, 1280), (12.0, 13.0)) and got.record() == {**eager, "decode_graph": None,
                                                                                         "chunk_graph": None,
                                                                                         "idle_start": None}
    graphed = {**eager, "decode_graph": {"requests": [1, 8], "ms": [-0.01, 0.1]},
               "row_keys": {**eager["row_keys"], "decode_attention_kv": "mean"}}
    got = step_terms(graphed)
    assert got.graph == DecodeGraph((1, 8), (-0.01, 0.1)) and got.keys.decode_attention_kv == "mean"
    assert got.record() == {**graphed, "chunk_graph": None, "idle_start": None}
    padded = {**graphed, "decode_graph": {"requests": [1, 5, 8], "ms": [-0.01, 0.2, 0.1], "graphs": [1, 8, 8]}}
    got = step_terms(padded)
    assert got.graph == DecodeGraph((1, 5, 8), (-0.01, 0.2, 0.1), (1, 8, 8)) and got.record() == {
        **padded, "chunk_graph": None, "idle_start": None}
    chunked = {**padded, "chunk_graph": {"requests": [1, 16], "ms": [-0.15, -0.1], "max_graph_tokens": 512},
               "idle_start": {"gap_ms": [0.3, 50.0], "ms": [0.35, 0.8]}}
    got = step_terms(chunked)
    assert got.chunk == ChunkGraph((1, 16), (-0.15, -0.1), 512) and got.idle == IdleStart((0.3, 50.0), (0.35, 0.8))
    assert got.record() == chunked
    for bad in ({"outside_layers": {"requests": [2, 1], "ms": [0.1, 0.2]}}, {"outside_layers": {"ms": [0.1]}},
                {"row_keys": {"token_rows": "rounded_16"}}, {"row_keys": {"kv": "before_chunk"}},
                {"row_keys": {"prefill_chunks": "one_wave"}}, {"row_keys": {"prefill_chunks": "one_launch"}},
                {"row_keys": {"prefill_wave_blocks": -1}}, {"row_keys": {"prefill_attention_chunk": "linear"}},
                {"row_keys": {"prefill_block_q": "64"}}, {"row_keys": {"token_rows": "graph_bucket"}},
                {"row_keys": {"graph_batch_sizes": [4, 2]}}, {"row_keys": {"token_fit": "exact"}},
                {"host_term": {"ahead": {"requests": [1], "ms": [0.1]}}},
                {"host_term": {"ahead": {"requests": [1], "ms": [0.1]}, "serial": {"requests": [0], "ms": [0.1]}}},
                {"host_term": {"ahead": {"requests": [1], "ms": [-0.1]}, "serial": {"requests": [1], "ms": [0.1]}}},
                {"host_term": {**meta["host_term"], "eager": {"requests": [768], "ms": [1.0]}}},
                {"host_term": {**meta["host_term"], "eager": {"tokens": [768, 700], "ms": [1.0, 2.0]}}},
                {"host_term": {**meta["host_term"], "eager": {"tokens": [768], "ms": [1.0]}}},  # graphs: none
                {"decode_graph": {"requests": [1], "ms": [0.1]}},  # graphs: none
                {**graphed, "decode_graph": {"requests": [1], "ms": [float("nan")]}},
                {**graphed, "decode_graph": {"requests": [1, 5], "ms": [0.1, 0.2], "graphs": [1]}},
                {**graphed, "decode_graph": {"requests": [1, 5], "ms": [0.1, 0.2], "graphs": [1, 4]}},
                {**graphed, "decode_graph": {"requests": [1], "ms": [0.1], "graphs": ["one"]}},
                {"chunk_graph": {"requests": [1], "ms": [-0.1], "max_graph_tokens": 512}},  # graphs: none
                {**graphed, "chunk_graph": {"requests": [1, 1], "ms": [-0.1, 0.1], "max_graph_tokens": 512}},
                {**graphed, "chunk_graph": {"requests": [1], "ms": [float("inf")], "max_graph_tokens": 512}},
                {**graphed, "chunk_graph": {"requests": [1], "ms": [-0.1]}},
                {**graphed, "chunk_graph": {"requests": [1], "ms": [-0.1], "max_graph_tokens": 0}},
                {"row_keys": {"decode_attention_kv": "interpolated"}}, {"row_keys": {"prefill_attention_kv_read": "mean"}}):
        with pytest.raises(ArtifactError, match="rebuild the bundle|row_keys|host_term"):
            step_terms(bad)


def test_step_correction_from_meta() -> None:
    assert step_correction({}) is None and step_correction({"step_correction": None}) is None
    assert step_correction({"step_correction": {"c_iter_ms": 0.1, "c_token_ms": 0.002}}) == StepCorrection(0.1, 0.002)
    assert step_correction({"step_correction": {"c_iter_ms": 0.1, "c_token_ms": 0.002, "c_first_ms": 0.3}}) \
        == StepCorrection(0.1, 0.002, 0.3)
    with pytest.raises(Exception, match="c_iter_ms"):
        step_correction({"step_correction": {"c_iter": 1}})


def test_validation_chooses_the_lowest_median_and_the_first_of_ties() -> None:
    shapes = [BatchShape.parse(s) for s in ("decode:4x4096", "decode:16x2048", "prefill:256")]
    measured = np.array([10.0, 20.0, 5.0])
    ops = Candidate("operators", np.array([9.0, 18.0, 4.5]))  # |errors| 10 10 10: median 10
    step = Candidate("step", np.array([10.2, 19.8, 5.0]), StepCorrection(0.2, 0.0))  # 2 1 0: median 1
    names = [str(s) for s in shapes]
    chosen, table, record = choose([ops, step], names, measured)
    assert chosen == "step" and record["variants"]["step"]["median_abs_error_pct"] == pytest.approx(1.0)
    assert record["variants"]["operators"]["p90_abs_error_pct"] == pytest.approx(10.0)
    assert len(table) == 6 and set(table["variant"]) == {"operators", "step"}
    tie = Candidate("fold", step.validation_ms)
    assert choose([ops, tie, step], names, measured)[0] == "fold"  # same median as step: the one listed first
    none = [Candidate(c.name, np.array([])) for c in (step, ops)]
    assert choose(none, [], np.array([]))[0] == "step"  # no validation shape: the first listed
    assert check_variants(["operators", "step"]) == ["operators", "step"]
    for bad in ([], ["step", "step"], ["magic"]):
        with pytest.raises(InputError, match="profile.variants"):
            check_variants(bad)


def test_baselines_fitted_on_fit_shapes_by_hand() -> None:
    shapes = [BatchShape.parse(s) for s in ("decode:1x128", "decode:8x128", "prefill:64", "prefill:256")]  # 1 8 64 256 tokens
    measured = [3.0, 3.5, 4.0, 10.0]
    b = fit_baselines(shapes, measured)
    assert b.constant_ms == pytest.approx(3.75)  # median of 3, 3.5, 4, 10
    slope, intercept = np.polyfit([1, 8, 64, 256], measured, 1)
    assert (b.per_token_ms, b.intercept_ms) == pytest.approx((slope, intercept))
    flat = fit_baselines([BatchShape.parse("decode:1x8"), BatchShape.parse("decode:1x64")], [2.0, 4.0])
    assert (flat.per_token_ms, flat.intercept_ms, flat.constant_ms) == (0.0, 3.0, 3.0)  # one token count: no slope


def test_baseline_table_and_record_by_hand() -> None:
    shapes = [BatchShape.parse(s) for s in ("decode:10x1024", "decode:20x1024", "mixed:100+10x512", "prefill:300", "prefill:400")]
    b = fit_baselines([BatchShape.parse("decode:10x8"), BatchShape.parse("prefill:390")], [2.0, 6.0])  # line 2 + 4 (t - 10) / 380
    measured = np.array([2.0, 2.5, 3.0, 5.0, 6.0])
    bundle = np.array([2.1, 2.5, 3.3, 4.5, 6.0])  # errors +5 0 +10 -10 0
    table = baseline_table([str(s) for s in shapes], shapes, measured, bundle, b)
    assert table["error_pct"].tolist() == pytest.approx([5.0, 0.0, 10.0, -10.0, 0.0])
    assert table["constant_ns"].tolist() == [4_000_000] * 5  # median of 2 and 6
    assert table["constant_error_pct"].tolist() == pytest.approx([100.0, 60.0, 100 / 3, -20.0, -100 / 3])
    line = 2.0 + 4.0 * (np.array([10, 20, 110, 300, 400]) - 10) / 380
    assert table["linear_error_pct"].to_numpy() == pytest.approx(100 * (line - measured) / measured)
    rec = baseline_record(table, b)
    assert rec["errors"]["bundle"] == {"median_abs_error_pct": pytest.approx(5.0), "p90_abs_error_pct": pytest.approx(10.0)}
    assert rec["errors"]["constant"]["median_abs_error_pct"] == pytest.approx(100 / 3)  # sorted 20 33.3 33.3 60 100
    assert rec["errors"]["constant"]["p90_abs_error_pct"] == pytest.approx(60 + 0.6 * 40)  # rank 3.6
    assert abs_error_stats(np.array([])) == (None, None)


def _linear_bundle(compose_app, tmp_path):
    """A native bundle whose rows are linear (op rows 0.2 + 0.002 tokens ms a layer; prefill attention 0.5 + 0.004
    chunk + 0.001 KV; decode 0.3 + 0.05 batch + 0.0005 KV), read by Vidur's linear regression, which fits them
    exactly: the config, the bundle and build_predictor's keywords."""
    cfg = compose_app("vidur_sim", ["backend=native", "workload_id=w", "profiling_root=b"])
    limits = GridLimits(tokens_per_iteration=512, prefill_chunk=512, batch_size=32, request_tokens=1024, block_size=16)
    root = make_profile(tmp_path / "p", "b", model=cfg.model, hardware=cfg.hardware, backend=cfg.backend, limits=limits,
                        op_ms=lambda n: 0.2 + 0.002 * n, prefill_ms=lambda c, k: 0.5 + 0.004 * c + 0.001 * k,
                        decode_ms=lambda b, k: 0.3 + 0.05 * b + 0.0005 * k)
    vidur = VidurConfig(execution_time_predictor="linear_regression", k_fold_cv_splits=2,
                        linear_regression=LinearRegressionGridConfig(polynomial_degree=[1]))
    kw = dict(model=cfg.model, hardware=cfg.hardware, block_size=16, grid=PredictorGrid(1024, 512, 32),
              cache_root=tmp_path / "c", vidur=vidur)
    return cfg, root, kw


def test_vidur_adds_the_step_correction_to_every_step_exactly(compose_app, tmp_path) -> None:
    """The runtime path vidur-sim takes: Vidur's own predictor with the bundle's correction adds c_iter + c_token x
    tokens_8 + c_first x first chunks to each step it predicts, whatever the batch, and changes nothing else (Vidur is
    not patched)."""
    cfg, root, kw = _linear_bundle(compose_app, tmp_path)
    correction = StepCorrection(c_iter_ms=0.4, c_token_ms=-0.0003, c_first_ms=0.2)
    plain = build_predictor(root / "mlp.csv", root / "attention.csv", **kw)
    corrected = build_predictor(root / "mlp.csv", root / "attention.csv", step_terms=StepTerms(correction), **kw)
    for text in ("prefill:200", "decode:1x64", "decode:24x500", "mixed:300+12x100", "prefill:256@512"):
        shape = BatchShape.parse(text)
        batch = list(zip(*shape.vidur_batch()))
        diff_ms = (predict_batch_time_s(corrected, batch, serial=False) - predict_batch_time_s(plain, batch, serial=False)) * 1e3
        assert diff_ms == pytest.approx(correction.ms(tokens_8(shape), first_chunks(shape)), abs=1e-9), text
    # the head term at the step's requests; the row keys where the native profiler measured them: a chunk's
    # attention at the KV cached before it (prefill rows are 0.5 + 0.004 chunk + 0.001 KV ms a layer, fitted exactly
    # by the linear model), token rows at the step's own tokens (op rows grow with tokens: one decode costs less
    # than the 8 Vidur would look up; 8 or 24 tokens look up the same rows either way)
    outside = OutsideLayers((1, 8, 32), (0.1, 0.2, 0.4))
    keyed = build_predictor(root / "mlp.csv", root / "attention.csv",
                            step_terms=StepTerms(outside=outside, keys=RowKeys("before_chunk", "exact")), **kw)
    layers = cfg.model.num_layers

    def diff(text: str) -> float:
        batch = list(zip(*BatchShape.parse(text).vidur_batch()))
        return (predict_batch_time_s(keyed, batch, serial=False) - predict_batch_time_s(plain, batch, serial=False)) * 1e3

    assert diff("prefill:256@512") == pytest.approx(0.1 + layers * 0.001 * (512 - 768), abs=1e-6)  # KV 768 -> 512
    assert diff("prefill:200") == pytest.approx(0.1 + layers * 0.001 * (0 - 256), abs=1e-6)  # a first chunk: KV 0
    assert diff("decode:8x64") == pytest.approx(0.2, abs=1e-9) 
    assert diff("decode:24x500") == pytest.approx(0.2 + 0.2 * 16 / 24, abs=1e-9)  # 24 requests: between 8 and 32
    assert diff("decode:1x64") < 0.1 - layers * 0.002  # token rows at 1, not 8: at least one op's 7 tokens less a layer
    # batched decode attention as measured: without Vidur's x (1 + 0.1) for a batch over one (decode rows are
    # 0.3 + 0.05 batch + 0.0005 KV ms a layer; 24 decodes at KV 501 are read at 512)
    measured = build_predictor(root / "mlp.csv", root / "attention.csv",
                               step_terms=StepTerms(keys=RowKeys(decode_batching="as_measured")), **kw)
    for text, want in (("decode:24x500", -0.1 * layers * (0.3 + 0.05 * 24 + 0.0005 * 512)), ("decode:1x64", 0.0)):
        batch = list(zip(*BatchShape.parse(text).vidur_batch()))
        got = (predict_batch_time_s(measured, batch, serial=False) - predict_batch_time_s(plain, batch, serial=False)) * 1e3
        assert got == pytest.approx(want, abs=1e-6), text
    # decode attention at the batch's mean KV, between Vidur's lookup points (its own: the mean rounded up to 256):
    # 24 decodes at KV 501 read at 501, not 512 (the linear rows are exact in between), with or without Vidur's
    # factor; 4 at KV 101 between the rows at 0 and 256; a batch at a multiple of 256 as Vidur reads it
    for batching, factor in (("as_measured", 1.0), ("vidur_overhead", 1.1)):
        mean = build_predictor(root / "mlp.csv", root / "attention.csv", step_terms=StepTerms(
            keys=RowKeys(decode_batching=batching, decode_attention_kv="mean")), **kw)
        rounded = build_predictor(root / "mlp.csv", root / "attention.csv", step_terms=StepTerms(
            keys=RowKeys(decode_batching=batching)), **kw)
        for shapes, want in (([(1, 501)] * 24, layers * 0.0005 * (501 - 512)), ([(1, 101)] * 4, layers * 0.0005 * -155),
                             ([(1, 512)] * 3, 0.0), ([(1, 100), (1, 301)], layers * 0.0005 * (200.5 - 256))):
            got = (predict_batch_time_s(mean, shapes, serial=False) - predict_batch_time_s(rounded, shapes, serial=False)) * 1e3
            assert got == pytest.approx(want * (factor if len(shapes) > 1 else 1.0), abs=1e-6), (batching, shapes)
    # decode attention at every batch size between the measured ones, and prefill attention at every chunk between
    # the measured chunk sizes, linearly between the model's predictions there: the predictor's grid is Vidur's,
    # post-processed (linear rows stay as they are), the other attention operator untouched
    from gpu_simulate_test.vidur_ext.predictor import (between_measured_batches, between_measured_chunks,
                                                       measured_decode_batches, measured_prefill_chunks)

    for field, op, other, measured, between in (
            ("decode_attention_batch", "attn_decode", "attn_prefill", measured_decode_batches, between_measured_batches),
            ("prefill_attention_chunk", "attn_prefill", "attn_decode", measured_prefill_chunks, between_measured_chunks)):
        sizes = measured(root / "attention.csv")
        assert len(sizes) >= 3 and sizes == sorted(sizes), field
        read = build_predictor(root / "mlp.csv", root / "attention.csv",
                               step_terms=StepTerms(keys=RowKeys(**{field: "between_measured"})), **kw)
        assert read._predictions[op] == pytest.approx(between(plain._predictions[op], sizes)), field
        assert read._predictions[other] == plain._predictions[other], field
    # a step's chunks in one wave of the engine's launch: the longest one's row, not the sum (a first chunk of 64 at
    # KV 0: 0.756 ms a layer, a later one of 32 at KV 512: 1.14); beyond the wave, summed as Vidur does
    before = RowKeys(prefill_attention_kv="before_chunk")
    summed = build_predictor(root / "mlp.csv", root / "attention.csv", step_terms=StepTerms(keys=before), **kw)
    for wave, want in ((2, -layers * (0.5 + 0.004 * 64)), (1, 0.0)):
        keys = replace(before, prefill_chunks="one_wave", prefill_wave_blocks=wave, prefill_block_q=64)
        waved = build_predictor(root / "mlp.csv", root / "attention.csv", step_terms=StepTerms(keys=keys), **kw)
        two = [(64, 64), (32, 544)]
        got = (predict_batch_time_s(waved, two, serial=False) - predict_batch_time_s(summed, two, serial=False)) * 1e3
        assert got == pytest.approx(want, abs=1e-6), wave
        one = [(200, 200), (1, 65)]  # one chunk: nothing to read side by side
        assert predict_batch_time_s(waved, one, serial=False) == predict_batch_time_s(summed, one, serial=False)
    # one launch: one wave as one_wave reads it; beyond it the summed rows less a launch's fixed cost (the row of 32
    # tokens at KV 0: 0.5 + 0.004 * 32 ms a layer) for each chunk after the first
    launch_row = layers * (0.5 + 0.004 * 32)
    for wave, chunks, want in ((2, [(64, 64), (32, 544)], -layers * (0.5 + 0.004 * 64)),
                               (1, [(64, 64), (32, 544)], -launch_row),
                               (1, [(64, 64), (32, 544), (96, 96)], -2 * launch_row)):
        keys = replace(before, prefill_chunks="one_launch", prefill_wave_blocks=wave, prefill_block_q=64)
        launched = build_predictor(root / "mlp.csv", root / "attention.csv", step_terms=StepTerms(keys=keys), **kw)
        got = (predict_batch_time_s(launched, chunks, serial=False) - predict_batch_time_s(summed, chunks, serial=False)) * 1e3
        assert got == pytest.approx(want, abs=1e-6), (wave, len(chunks))
    # a chunk's attention at its KV itself, between Vidur's lookup points (its own: the KV rounded up to 256; the
    # linear rows are exact in between): a chunk of 256 after 300 tokens read at 300, not 512; after 100 between the
    # rows at 0 and 256; after 512, or a first chunk, as Vidur reads it; one wave's longest chunk and a launch's
    # summed rows read the same way (before_chunk: the KV is the prefix)
    for keys, chunks, want in (
            (before, [(256, 556)], layers * 0.001 * (300 - 512)),
            (before, [(256, 356)], layers * 0.001 * (100 - 256)),
            (before, [(256, 768)], 0.0),
            (before, [(200, 200)], 0.0),
            (before, [(256, 556), (1, 65)], layers * 0.001 * (300 - 512)),
            (replace(before, prefill_chunks="one_wave", prefill_wave_blocks=8, prefill_block_q=64),
             [(64, 64), (64, 364)], layers * 0.001 * (300 - 512)),
            (replace(before, prefill_chunks="one_launch", prefill_wave_blocks=1, prefill_block_q=64),
             [(64, 364), (64, 428)], layers * 0.001 * (300 - 512 + 364 - 512))):
        exact_kv = build_predictor(root / "mlp.csv", root / "attention.csv", step_terms=StepTerms(
            keys=replace(keys, prefill_attention_kv_read="between")), **kw)
        rounded_kv = build_predictor(root / "mlp.csv", root / "attention.csv", step_terms=StepTerms(keys=keys), **kw)
        got = (predict_batch_time_s(exact_kv, chunks, serial=False) - predict_batch_time_s(rounded_kv, chunks, serial=False)) * 1e3
        assert got == pytest.approx(want, abs=1e-6), (keys.prefill_chunks, chunks)
    # token rows at the CUDA graph the engine replays the step in (decode buckets 1, 2, 4, 8, 16, 32; token buckets
    # 16 ... 512; a mixed bucket needs one more sequence for its padding tokens): op rows grow linearly with tokens,
    # so 3 decodes (graph 4) gain one token's worth, a chunk of 100 beside 3 decodes (103 tokens: graph 128 x 8) 25;
    # a lone decode (graph 1) and a step no graph holds (520 tokens: eager) none; the work outside the layers at the
    # graph's sequences
    sizes = dict(graph_batch_sizes=(1, 2, 4, 8, 16, 32), graph_token_sizes=(16, 32, 64, 128, 256, 512))
    exact = build_predictor(root / "mlp.csv", root / "attention.csv",
                            step_terms=StepTerms(keys=RowKeys(token_rows="exact")), **kw)
    bucket = build_predictor(root / "mlp.csv", root / "attention.csv",
                             step_terms=StepTerms(keys=RowKeys(token_rows="graph_bucket", **sizes)), **kw)

    def padded(shapes: list[tuple[int, int]]) -> float:
        return (predict_batch_time_s(bucket, shapes, serial=False) - predict_batch_time_s(exact, shapes, serial=False)) * 1e3

    one_token = padded([(1, 65)] * 3)
    assert one_token > 0 and padded([(100, 100)] + [(1, 65)] * 3) == pytest.approx(25 * one_token, rel=1e-6)
    assert padded([(1, 65)]) == 0 and padded([(500, 500)] + [(1, 65)] * 20) == 0
    with_head = build_predictor(root / "mlp.csv", root / "attention.csv",
                                step_terms=StepTerms(outside=outside, keys=RowKeys(token_rows="graph_bucket", **sizes)),
                                **kw)
    head_ms = (predict_batch_time_s(with_head, [(1, 65)] * 3, serial=False) - predict_batch_time_s(bucket, [(1, 65)] * 3, serial=False)) * 1e3
    assert head_ms == pytest.approx(outside.at(4), abs=1e-9)  # the graph's 4 sequences, not the batch's 3
    # the decode graph term: a decode batch a graph runs gets it at the graph's sequences (3 decodes: graph 4; 20:
    # graph 32, held flat past the last point); a mixed step or a prefill none
    graph = DecodeGraph((1, 4, 8), (-0.01, 0.02, 0.1))
    with_graph_term = build_predictor(root / "mlp.csv", root / "attention.csv", step_terms=StepTerms(
        keys=RowKeys(token_rows="graph_bucket", **sizes), graph=graph), **kw)
    for shapes, want in (([(1, 65)] * 3, 0.02), ([(1, 65)] * 6, 0.1), ([(1, 65)], -0.01), ([(1, 65)] * 20, 0.1),
                         ([(100, 100)] + [(1, 65)] * 3, 0.0), ([(200, 200)], 0.0)):
        got = (predict_batch_time_s(with_graph_term, shapes, serial=False) - predict_batch_time_s(bucket, shapes, serial=False)) * 1e3
        assert got == pytest.approx(want, abs=1e-9), len(shapes)
    # the chunk graph term: a step with a prompt chunk a graph runs gets it at its requests (a chunk beside 3 decodes:
    # 4; a lone chunk: 1); a decode batch and a step no graph holds (520 tokens) none
    chunk = ChunkGraph((1, 8), (-0.15, -0.08), max_graph_tokens=512)
    with_chunk_term = build_predictor(root / "mlp.csv", root / "attention.csv", step_terms=StepTerms(
        keys=RowKeys(token_rows="graph_bucket", **sizes), graph=graph, chunk=chunk), **kw)
    for shapes, want in (([(100, 100)] + [(1, 65)] * 3, -0.12), ([(200, 200)], -0.15), ([(1, 65)] * 3, 0.02),
                         ([(500, 500)] + [(1, 65)] * 20, 0.0)):
        got = (predict_batch_time_s(with_chunk_term, shapes, serial=False) - predict_batch_time_s(bucket, shapes, serial=False)) * 1e3
        assert got == pytest.approx(want, abs=1e-9), len(shapes)


def test_vidur_adds_the_host_share_as_the_engine_packs_each_step(compose_app, tmp_path) -> None:
    """The host term at the step's requests, from the curve of how the engine packed it: given by the caller
    (``serial``), or, as vidur-sim runs, decided from Vidur's own batches in schedule order: packed at its start
    when it holds a request that arrived after the replica's previous batch was scheduled (the engine formed that
    step ahead without it), or when it is the replica's first; ahead otherwise."""
    from vidur.entities import Batch, Request
    from vidur.types import ReplicaId

    cfg, root, kw = _linear_bundle(compose_app, tmp_path)
    host = HostTerm(RequestCurve((1, 9), (0.04, 0.06)), RequestCurve((1,), (0.35,)))
    plain = build_predictor(root / "mlp.csv", root / "attention.csv", **kw)
    hosted = build_predictor(root / "mlp.csv", root / "attention.csv", step_terms=StepTerms(host=host), **kw)
    for shapes, serial, want in (([(1, 65)] * 5, False, 0.05), ([(1, 65)] * 5, True, 0.35), ([(200, 200)], True, 0.35),
                                 ([(1, 65)] * 20, False, 0.06)):
        got = (predict_batch_time_s(hosted, shapes, serial=serial) - predict_batch_time_s(plain, shapes, serial=serial)) * 1e3
        assert got == pytest.approx(want, abs=1e-9), (len(shapes), serial)

    # a step no graph of the engine holds (graphs up to 64 tokens here) gets the eager term at its tokens as well;
    # one a graph runs does not
    keys = RowKeys(token_rows="graph_bucket", graph_batch_sizes=(1, 2, 4, 8, 16, 32), graph_token_sizes=(16, 64))
    eager = replace(host, eager=TokenCurve((128, 384), (10.0, 12.0)))
    graphed = build_predictor(root / "mlp.csv", root / "attention.csv", step_terms=StepTerms(keys=keys), **kw)
    both = build_predictor(root / "mlp.csv", root / "attention.csv", step_terms=StepTerms(keys=keys, host=eager), **kw)
    for shapes, want in (([(200, 200)], 0.35 + 10 + 2 * 72 / 256), ([(64, 64)], 0.35), ([(1, 65)] * 5, 0.35)):
        got = (predict_batch_time_s(both, shapes, serial=True) - predict_batch_time_s(graphed, shapes, serial=True)) * 1e3
        assert got == pytest.approx(want, abs=1e-9), shapes

    def scheduled(at: float, reqs: list, q: list[int], kv: list[int], replica: int = 0) -> float:
        """One batch as Vidur runs it: scheduled at ``at``, then predicted once; the host share it got (ms)."""
        batch, twin = Batch(ReplicaId(replica), reqs, q, kv), Batch(ReplicaId(replica), reqs, q, kv)
        batch.on_schedule(at)
        with_host = hosted.get_execution_time(batch, 0).total_time
        return (with_host - plain.get_execution_time(twin, 0).total_time) * 1e3

    a, b = Request(arrived_at=0.0, num_prefill_tokens=64, num_decode_tokens=4), \
        Request(arrived_at=0.0, num_prefill_tokens=64, num_decode_tokens=4)
    assert scheduled(0.0, [a, b], [64, 64], [64, 64]) == pytest.approx(0.35)  # the replica's first batch
    assert scheduled(0.001, [a, b], [1, 1], [65, 65]) == pytest.approx(0.0425)  # nothing new: packed ahead
    c = Request(arrived_at=0.0015, num_prefill_tokens=32, num_decode_tokens=2)  # arrived during that batch
    assert scheduled(0.002, [a, b, c], [1, 1, 32], [66, 66, 32]) == pytest.approx(0.35)
    d = Request(arrived_at=0.0019, num_prefill_tokens=32, num_decode_tokens=2)  # queued before the batch before began:
    assert scheduled(0.003, [a, b, c, d], [1, 1, 1, 32], [67, 67, 33, 32]) == pytest.approx(0.0475)  # packed ahead
    assert scheduled(0.0031, [d], [1], [33], replica=1) == pytest.approx(0.35)  # another replica: its own first


def test_the_idle_start_term_by_hand() -> None:
    """``IdleStart``: nothing back to back, linear from 0 at no gap to the first measured gap, between the measured
    gaps, flat past the last (and for a replica's first batch, an infinite gap); the record checked on read; derived
    from the build's ``idle_timing`` as wake-up + wall less the wall at no gap, a gap that came out no longer than the
    one before it dropped."""
    from gpu_simulate_test.vidur_ext.profiler.bundle import idle_start_term

    term = IdleStart((0.2, 5.0, 50.0), (0.4, 0.6, 0.9))
    assert [term.at(g) for g in (0.0, -1.0, 0.1, 0.2, 2.6, 27.5, 50.0, 500.0, float("inf"))] == \
        pytest.approx([0.0, 0.0, 0.2, 0.4, 0.5, 0.75, 0.9, 0.9, 0.9])
    assert idle_start({"gap_ms": [0.2, 5.0, 50.0], "ms": [0.4, 0.6, 0.9]}) == term
    assert idle_start(None) is None
    for bad in ({"gap_ms": [0.0, 5.0], "ms": [0.1, 0.2]}, {"gap_ms": [5.0, 1.0], "ms": [0.1, 0.2]},
                {"gap_ms": [1.0], "ms": [0.1, 0.2]}, {"gap_ms": [1.0], "ms": [float("nan")]}, {"ms": [0.1]}):
        with pytest.raises(ArtifactError, match="idle_start"):
            idle_start(bad)
    record = {"prompt_tokens": 256, "nominal_gap_ms": [0.0, 1.0, 5.0, 20.0],
              "gap_ms": [0.3, 1.1, 0.9, 20.2], "wake_ms": [0.35, 0.4, 0.5, 0.45], "wall_ms": [2.0, 2.1, 2.2, 2.4]}
    # 5 ms came out at 0.9 ms, below 1 ms's 1.1: the points go by the gap each got, each wake + wall - 2.0
    got = idle_start_term(record)
    assert got.gap_ms == pytest.approx((0.3, 0.9, 1.1, 20.2)) and got.ms == pytest.approx((0.35, 0.7, 0.5, 0.85))
    record["gap_ms"] = [0.3, 1.1, 1.1, 20.2]  # a tie: the second of the two is dropped
    assert idle_start_term(record).gap_ms == pytest.approx((0.3, 1.1, 20.2))


def test_vidur_adds_the_idle_start_term_to_a_step_that_starts_on_an_idle_replica(compose_app, tmp_path) -> None:
    """As vidur-sim runs: the replica's first batch gets the term at its longest gap; a batch scheduled when the one
    before it ended (scheduled plus predicted) none; one scheduled later gets it at the gap, per replica; a shape
    predicted on its own (``predict_batch_time_s``, back to back) none."""
    from vidur.entities import Batch, Request
    from vidur.types import ReplicaId

    cfg, root, kw = _linear_bundle(compose_app, tmp_path)
    idle = IdleStart((1.0, 10.0), (0.3, 0.5))
    plain = build_predictor(root / "mlp.csv", root / "attention.csv", **kw)
    with_idle = build_predictor(root / "mlp.csv", root / "attention.csv", step_terms=StepTerms(idle=idle), **kw)
    assert predict_batch_time_s(with_idle, [(64, 64)], serial=True) == predict_batch_time_s(plain, [(64, 64)], serial=True)

    def scheduled(at: float, q: int, replica: int = 0) -> tuple[float, float]:
        """One batch scheduled at ``at`` (s) and predicted once: the term it got (ms), and its end (s)."""
        req = Request(arrived_at=0.0, num_prefill_tokens=q, num_decode_tokens=2)
        batch, twin = Batch(ReplicaId(replica), [req], [q], [q]), Batch(ReplicaId(replica), [req], [q], [q])
        batch.on_schedule(at)
        total = with_idle.get_execution_time(batch, 0).total_time
        return (total - plain.get_execution_time(twin, 0).total_time) * 1e3, at + total

    term, end = scheduled(0.0, 64)
    assert term == pytest.approx(0.5)  # the replica's first batch: idle since its warm-up
    term, end = scheduled(end, 32)
    assert term == pytest.approx(0.0)  # back to back
    term, end = scheduled(end + 0.0055, 32)  # 5.5 ms idle: halfway between the measured gaps
    assert term == pytest.approx(0.4)
    term, _ = scheduled(end + 0.0005, 32)  # 0.5 ms: from 0 at no gap to 1 ms's point
    assert term == pytest.approx(0.15)
    assert scheduled(0.0, 32, replica=1)[0] == pytest.approx(0.5)  # another replica: its own first


def test_a_real_steps_packing_read_from_the_runs_dispatch_times_by_hand() -> None:
    """``replay.steps_packed_at_start``: the run's first step; a step holding a request handed to the engine after the
    step before it started (the engine packs it again at its start); ahead otherwise, also a request that waited
    (queued before, admitted later). A step naming a request the run lacks is refused."""
    from gpu_simulate_test.vidur_ext.replay import steps_packed_at_start

    steps = pd.DataFrame({"start_time_ns": [100, 200, 300, 400, 500],
                          "requests": ["r0:64", "r0:1", "r0:1;r1:32", "r0:1;r1:1;r2:16", "r1:1;r2:1"]})
    dispatched = {0: 50, 1: 250, 2: 290}  # r1 and r2 during step 1; r2 admitted in step 3 only (it waited)
    assert steps_packed_at_start(steps, dispatched).tolist() == [True, False, True, False, False]
    with pytest.raises(ArtifactError, match="lack"):
        steps_packed_at_start(steps, {0: 50, 1: 250})


def test_token_operators_fitted_on_every_row_read_back_exactly(compose_app, tmp_path) -> None:
    """``token_fit: every_row``: Vidur's random forest for a token operator sees every row in every tree, so a row
    unlike its neighbours (one token: the engine fuses the norms there) reads back as measured; Vidur's bootstrap
    forest blurs it toward them. The two are trained in separate caches."""
    from gpu_simulate_test.config.vidur import RandomForrestGridConfig

    cfg = compose_app("vidur_sim", ["backend=native", "workload_id=w", "profiling_root=b"])
    limits = GridLimits(tokens_per_iteration=64, prefill_chunk=64, batch_size=8, request_tokens=256, block_size=16)
    root = make_profile(tmp_path / "p", "b", model=cfg.model, hardware=cfg.hardware, backend=cfg.backend, limits=limits,
                        op_ms=lambda n: 0.05 if n == 1 else 0.2 + 0.002 * n,
                        prefill_ms=lambda c, k: 0.5 + 0.004 * c + 0.001 * k, decode_ms=lambda b, k: 0.3 + 0.05 * b + 0.0005 * k)
    vidur = VidurConfig(k_fold_cv_splits=2, random_forrest=RandomForrestGridConfig(num_estimators=[10], max_depth=[8],
                                                                                  min_samples_split=[2]))
    kw = dict(model=cfg.model, hardware=cfg.hardware, block_size=16, grid=PredictorGrid(256, 64, 8),
              cache_root=tmp_path / "c", vidur=vidur)
    rows = {}
    for fit in ("bootstrap", "every_row"):
        predictor = build_predictor(root / "mlp.csv", root / "attention.csv",
                                    step_terms=StepTerms(keys=RowKeys(token_rows="exact", token_fit=fit)), **kw)
        rows[fit] = {n: float(predictor._predictions["mlp_up_proj"][(n,)]) for n in (1, 2, 4, 8)}
    assert rows["every_row"] == pytest.approx({1: 0.05, 2: 0.204, 4: 0.208, 8: 0.216})
    assert rows["bootstrap"][1] > 0.06  # a tree that missed the row answers with a neighbour's
    assert len(list((tmp_path / "c" / "vidur_predictor").iterdir())) == 2


def test_vidur_profile_prints_the_test_shapes_beside_both_baselines(tmp_path) -> None:
    from gpu_simulate_test.cli.vidur_profile import _report
    from gpu_simulate_test.vidur_ext.profiler.bundle import BundleResult
    from gpu_simulate_test.vidur_ext.verdict import bundle_verdict

    shapes = [BatchShape.parse(s) for s in ("decode:24x2048", "mixed:448+12x1024")]
    b = fit_baselines([BatchShape.parse("decode:1x8"), BatchShape.parse("prefill:500")], [2.0, 6.0])
    table = baseline_table([str(s) for s in shapes], shapes, np.array([4.0, 5.0]), np.array([4.2, 4.9]), b)
    text = _report(BundleResult(tmp_path, False, table, bundle_verdict({})))
    header = text.splitlines()[1].split()
    assert header == ["shape", "measured_ms", "bundle_ms", "constant_ms", "linear_ms", "error_pct", "constant_error_pct",
                      "linear_error_pct"]
    assert "decode:24x2048" in text and "mixed:448+12x1024" in text
    assert "median |error| on the test (held-out) shapes: bundle 3.5%, constant 10.0%, linear" in text


def test_stepping_runs_the_loop_under_real_benchs_conditions_and_stops_it() -> None:
    """The engine loop starts inside real-bench's conditions (GC paused, the short switch interval), with the step
    probe on the runner when ``probed``, and stops when the block ends, before the conditions lift and the probe
    leaves the runner, also when the block raises."""
    import gc
    import sys
    from types import SimpleNamespace

    from gpu_simulate_test.backends.conditions import SWITCH_INTERVAL_S
    from gpu_simulate_test.vidur_ext.profiler.host_share import StepProbe, stepping

    class Runner:
        device = SimpleNamespace(type="cpu")

        def prepare(self, *args: object) -> None: ...

        def launch(self, packed: object) -> None: ...

        def wait(self) -> list[int]:
            return []

    runner = Runner()
    calls: list[tuple[str, bool, float, str]] = []

    class Backend:
        def native_engine(self) -> SimpleNamespace:
            return SimpleNamespace(runner=runner, in_flight=None)

        def _note(self, what: str) -> None:
            calls.append((what, gc.isenabled(), sys.getswitchinterval(), runner.launch.__name__))

        def start(self, recorder: object) -> None:
            self._note("start")

        def stop(self) -> None:
            self._note("stop")

    was = (gc.isenabled(), sys.getswitchinterval())
    with stepping(Backend(), recorder=None) as probe:
        assert isinstance(probe, StepProbe)
    assert [(c[0], c[1], c[3]) for c in calls] == [("start", False, "probed_launch"), ("stop", False, "probed_launch")]
    assert [c[2] for c in calls] == pytest.approx([SWITCH_INTERVAL_S] * 2)
    assert (gc.isenabled(), sys.getswitchinterval()) == was and "launch" not in runner.__dict__
    calls.clear()
    with pytest.raises(RuntimeError, match="shape failed"):
        with stepping(Backend(), recorder=None, probed=False) as probe:
            assert probe is None
            raise RuntimeError("shape failed")
    assert [(c[0], c[3]) for c in calls] == [("start", "launch"), ("stop", "launch")]


def test_the_step_probe_launches_untimed_within_untimed_and_keeps_its_records_in_step() -> None:
    """On CUDA, within ``untimed()`` a step launches alone (its record: how it was packed, no device time), outside
    it between its two events; the records stay one a launch, in order, and the probe times again after the block,
    also when the block raises. On the CPU the launch's own clock stays on (it slows nothing). ``untimed(None)`` (no
    probe installed) switches nothing."""
    import time
    from types import SimpleNamespace

    from gpu_simulate_test.vidur_ext.profiler.host_share import StepProbe, untimed

    class Event:  # a CUDA timing event, on the host's clock
        def record(self) -> None:
            self.t = time.perf_counter()

        def synchronize(self) -> None: ...

        def elapsed_time(self, end: "Event") -> float:
            return (end.t - self.t) * 1e3

    def records(device: str) -> list:
        launched: list[object] = []

        class Runner:
            def prepare(self, *args: object) -> None: ...

            def launch(self, packed: object) -> None:
                launched.append(packed)

            def wait(self) -> list[int]:
                return []

        runner = Runner()
        runner.device = SimpleNamespace(type=device)  # type: ignore[attr-defined]
        engine = SimpleNamespace(runner=runner, in_flight=None)

        def step(n: object) -> None:
            runner.prepare()
            runner.launch(n)
            runner.wait()

        with StepProbe(engine) as probe:
            probe._events = lambda: (Event(), Event())  # type: ignore[method-assign]
            step(1)
            with untimed(probe):
                step(2)
                engine.in_flight = "a step"  # the next one is packed ahead
                step(3)
            with pytest.raises(RuntimeError, match="shape failed"):
                with probe.untimed():
                    raise RuntimeError("shape failed")
            step(4)
            got = probe.records()
        assert probe.times_apart is (device == "cuda")  # the CPU's clock slows nothing: no round apart
        assert launched == [1, 2, 3, 4] and [r.at_start for r in got] == [True, True, False, False]
        assert all(r.device_ns >= 0 for r in got if r.device_ns is not None)
        return got

    assert [r.device_ns is None for r in records("cuda")] == [False, True, True, False]
    assert [r.device_ns is None for r in records("cpu")] == [False] * 4
    with untimed(None):  # no probe: nothing to switch
        pass


def test_the_host_share_is_each_wall_less_its_device_time_or_the_median_wall_less_a_timed_rounds() -> None:
    """Walls whose steps carry their own device time (the CPU): the median of each wall less its device time. Walls
    launched untimed (CUDA): their median less the timed round's median device time; a timed round without device
    times, or none, is refused."""
    import numpy as np

    from gpu_simulate_test.vidur_ext.profiler.bundle import host_share_ns
    from gpu_simulate_test.vidur_ext.profiler.iterations import ShapeSamples

    ns = np.array([1000, 1100, 1300], dtype=np.int64)
    paired = [ShapeSamples(ns, None, ns - np.array([10, 20, 30])), ShapeSamples(ns + 5, None, ns - 40)]
    assert host_share_ns(paired, ShapeSamples(ns, None, ns)) == 37.5  # the median of 10, 20, 30, 45, 45, 45
    bare = [ShapeSamples(ns, None), ShapeSamples(ns + 100, None)]
    timed = ShapeSamples(ns, None, np.array([900, 950, 1000], dtype=np.int64))
    assert host_share_ns(bare, timed) == 1150 - 950
    with pytest.raises(RuntimeError, match="untimed"):
        host_share_ns(bare, ShapeSamples(ns, None))
    with pytest.raises(RuntimeError, match="untimed"):
        host_share_ns(bare, None)  # no timed round was run
