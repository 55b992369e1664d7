"""analysis/metrics.py against values worked out by hand on a four-request run (not against scaled copies of a run).

The run, in milliseconds from the run's start (``A`` scheduled arrival, ``D`` dispatch, then each token's time):

    request 0: A 0,  D 1,  tokens 10, 14, 20         TTFT 10, E2E 20, TPOT (20-10)/2 = 5,     gaps 4, 6
    request 1: A 5,  D 5,  token  25                 TTFT 20, E2E 20, TPOT undefined,        no gap
    request 2: A 30, D 38, tokens 40, 43, 45, 53     TTFT 10, E2E 23, TPOT (53-40)/3 = 13/3,  gaps 3, 2, 8
    request 3: A 50, D 50, tokens 70, 71             TTFT 20, E2E 21, TPOT (71-70)/1 = 1,     gap 1

Dispatch is later than arrival for requests 0 and 2: TTFT and E2E count from the *scheduled* arrival, so a
late dispatch (queueing in the client) is part of the latency. Percentiles interpolate linearly between order
statistics (numpy's default, ``method="linear"``): P_q of sorted x_0..x_{n-1} sits at rank q/100 * (n - 1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import pytest

from gpu_simulate_test.analysis.align import load_pair
from gpu_simulate_test.analysis.compare import compare_runs
from gpu_simulate_test.analysis.metrics import metric_values, paired_abs_error_pct, summary_statistics
from gpu_simulate_test.io.meta import build_meta
from gpu_simulate_test.io.outputs import atomic_dir
from gpu_simulate_test.io.runs import write_run_meta, write_run_tables
from gpu_simulate_test.io.schemas import COMPARISON_STATS
from gpu_simulate_test.io.tables import read_table

MS = 1_000_000
ARRIVAL = [0, 5, 30, 50]
DISPATCH = [1, 5, 38, 50]
TOKENS = [[10, 14, 20], [25], [40, 43, 45, 53], [70, 71]]
PREFILL = [32, 16, 64, 8]

TTFT = [10, 20, 10, 20]
E2E = [20, 20, 23, 21]
TPOT = [5, 13 / 3, 1]  # requests 0, 2, 3: request 1 has one token, so no TPOT
ITL = [4, 6, 3, 2, 8, 1]  # every request's gaps, pooled; never the gap from one request's last token to the next's first


def _write(root: Path, run_id: str, kind: str, tokens_ms: list[list[int]]) -> None:
    counts = [len(t) for t in tokens_ms]
    rid = np.arange(len(counts))
    requests = pd.DataFrame({
        "request_id": rid, "arrival_time_ns": np.array(ARRIVAL) * MS, "dispatch_time_ns": np.array(DISPATCH) * MS,
        "first_token_time_ns": [t[0] * MS for t in tokens_ms], "completion_time_ns": [t[-1] * MS for t in tokens_ms],
        "num_prefill_tokens": PREFILL, "num_decode_tokens": counts, "num_decode_tokens_actual": counts,
        "ttft_ns": [(t[0] - a) * MS for t, a in zip(tokens_ms, ARRIVAL)],
        "e2e_ns": [(t[-1] - a) * MS for t, a in zip(tokens_ms, ARRIVAL)],
        "tpot_ns": pd.array([(t[-1] - t[0]) * MS // (len(t) - 1) if len(t) > 1 else None for t in tokens_ms], dtype="Int64"),
    })
    tokens = pd.DataFrame({
        "request_id": np.repeat(rid, counts),
        "token_index": np.concatenate([np.arange(c) for c in counts]),
        "token_time_ns": np.concatenate(tokens_ms) * MS,
    })
    with atomic_dir(root / run_id) as tmp:
        write_run_tables(tmp, requests, tokens)
        write_run_meta(tmp, build_meta(kind=kind, id=run_id, config={"model": {"name": "qwen3-tiny"}, "hardware": {"name": "cpu"},
                                                                     "backend": {"name": "native"}},
                                       inputs={"workload_id": "wl"}))


def _pair(tmp_path: Path, sim_tokens_ms: list[list[int]]):  # noqa: ANN202 - PairedRuns
    _write(tmp_path / "real_runs", "real-1", "real_run", TOKENS)
    _write(tmp_path / "vidur_runs", "sim-1", "vidur_run", sim_tokens_ms)
    return load_pair(tmp_path / "real_runs", tmp_path / "vidur_runs", "real-1", "sim-1", allow_incomplete=False)


def test_each_metric_by_hand(tmp_path: Path) -> None:
    values = metric_values(_pair(tmp_path, TOKENS))
    assert values["ttft"].real / MS == pytest.approx(TTFT)
    assert values["e2e"].real / MS == pytest.approx(E2E)
    assert values["tpot"].real / MS == pytest.approx(TPOT)  # denominator n - 1: the first token is TTFT's
    assert values["tpot"].excluded == 1  # the one-token output is counted as excluded, never as a 0 or a NaN value
    assert values["itl"].real / MS == pytest.approx(ITL)  # pooled across requests, in request order
    assert values["itl"].excluded == 0  # a one-token output simply has no gap
    assert values["e2e_per_token"].real / MS == pytest.approx([20 / 3, 20 / 1, 23 / 4, 21 / 2])


def test_percentiles_interpolate_linearly_by_hand() -> None:
    itl = np.array(ITL, dtype=float)  # sorted: 1 2 3 4 6 8 (n = 6, ranks 0..5)
    mean, p50, p90, p99 = summary_statistics(itl, [50.0, 90.0, 99.0])
    assert mean == pytest.approx(24 / 6)
    assert p50 == pytest.approx(3.5)  # rank 2.5: halfway between 3 and 4
    assert p90 == pytest.approx(7.0)  # rank 4.5: halfway between 6 and 8
    assert p99 == pytest.approx(7.9)  # rank 4.95: 6 + 0.95 * 2
    tpot = np.array(TPOT)  # sorted: 1, 13/3, 5
    assert summary_statistics(tpot, [50.0, 90.0])[1:] == pytest.approx([13 / 3, 13 / 3 + 0.8 * (5 - 13 / 3)])
    assert np.isnan(summary_statistics(np.array([]), [50.0])).all()  # no value: undefined, not 0


def test_paired_errors_by_hand() -> None:
    real = np.array([10.0, 20.0, 10.0, 20.0, 0.0])
    sim = np.array([11.0, 18.0, 13.0, 20.0, 5.0])  # |errors| 10%, 10%, 30%, 0%; the real 0 has no relative error
    p50, p90 = paired_abs_error_pct(real, sim)
    assert p50 == pytest.approx(10.0)  # sorted 0 10 10 30, rank 1.5
    assert p90 == pytest.approx(10 + 0.7 * 20)  # rank 2.7


def test_compare_runs_stats_table_by_hand(compose_app: Callable[..., Any], tmp_path: Path) -> None:
    """The published table end to end: real values from the hand run, sim from a run whose every gap is 2 ms longer
    and whose first token is 1 ms later (so TTFT +1, TPOT +2, ITL +2, E2E +1 + 2 (n - 1))."""
    sim = [[t[0] + 1 + 2 * i + (t[i] - t[0]) for i in range(len(t))] for t in TOKENS]
    _write(tmp_path / "real_runs", "real-1", "real_run", TOKENS)
    _write(tmp_path / "vidur_runs", "sim-1", "vidur_run", sim)
    out = compare_runs(compose_app("compare_runs", ["real_run=real-1", "sim_run=sim-1", "compare.percentiles=[50,90,99]"]))
    st = read_table(out / "tables" / COMPARISON_STATS.filename, COMPARISON_STATS).set_index(["metric", "statistic"])

    def cell(metric: str, stat: str) -> tuple[float, float]:
        return st.loc[(metric, stat), "real"] / MS, st.loc[(metric, stat), "sim"] / MS

    assert cell("ttft", "mean") == pytest.approx((15.0, 16.0))
    assert cell("ttft", "p50") == pytest.approx((15.0, 16.0))  # sorted 10 10 20 20, rank 1.5
    assert cell("ttft", "p90") == pytest.approx((20.0, 21.0))  # rank 2.7, between the two 20s
    e2e_sim = [20 + 1 + 4, 20 + 1, 23 + 1 + 6, 21 + 1 + 2]  # 25 21 30 24
    assert cell("e2e", "p50") == pytest.approx((20.5, np.percentile(e2e_sim, 50)))  # real sorted 20 20 21 23
    assert cell("e2e", "p99") == pytest.approx((21 + 0.97 * 2, np.percentile(e2e_sim, 99)))  # rank 2.97
    assert cell("tpot", "mean") == pytest.approx((np.mean(TPOT), np.mean(TPOT) + 2))
    assert cell("tpot", "p50") == pytest.approx((13 / 3, 13 / 3 + 2))
    assert cell("itl", "mean") == pytest.approx((4.0, 6.0))
    assert cell("itl", "p90") == pytest.approx((7.0, 9.0))
    assert st.loc[("ttft", "p50"), "error_pct"] == pytest.approx(100 * (16 - 15) / 15)
