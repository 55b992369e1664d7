"""compare-runs sweep mode, the vLLM reader of the importer, and the CLI's mode registry and error exit."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import pytest

from gpu_simulate_test.cli.compare_runs import run_mode
from gpu_simulate_test.errors import InputError, OutputExistsError
from gpu_simulate_test.io.meta import build_meta, read_meta, write_json
from gpu_simulate_test.io.schemas import COMPARISON_STATS, COMPARISON_SWEEP, TRACE_INTERVALS, TRACE_LENGTHS
from gpu_simulate_test.io.tables import read_table, write_table
from gpu_simulate_test.testing import SyntheticRun, sequential_run, write_run

REPO = Path(__file__).resolve().parents[2]


def _config(qps: float) -> dict:
    return {"model": {"name": "qwen3-tiny"}, "hardware": {"name": "cpu"}, "backend": {"name": "hf-generate"},
            "workload": {"arrival": {"process": "poisson", "qps": qps}}}


def test_sweep_tables_and_figures_over_load(compose_app: Callable[..., Any], tmp_path: Path) -> None:
    for i, (qps, factor) in enumerate(((1.0, 1.05), (2.0, 1.1), (4.0, 1.2))):
        run = sequential_run(12, 6, seed=i)
        write_run(tmp_path / "real_runs", f"real-{i}", "real_run", f"wl-{i}", run, with_iterations=False, config=_config(qps))
        write_run(tmp_path / "vidur_runs", f"sim-{i}", "vidur_run", f"wl-{i}", run.scaled(factor), with_iterations=False)
        run_mode(compose_app("compare_runs", [f"real_run=real-{i}", f"sim_run=sim-{i}", "compare.timeline_requests=2"]))
    text = run_mode(compose_app("compare_runs", ["mode=sweep", "comparisons=[cmp-*]", "sweep_id=sw"]))
    out = tmp_path / "comparisons" / "sw"
    assert str(out / "summary.md") in text
    sweep = read_table(out / "tables" / COMPARISON_SWEEP.filename, COMPARISON_SWEEP)
    p50 = sweep[(sweep.metric == "e2e") & (sweep.statistic == "p50")].sort_values("load_qps")
    assert p50["load_qps"].tolist() == [1.0, 2.0, 4.0] and set(sweep["load_source"]) == {"workload_config"}
    assert np.allclose(p50["error_pct"], [5.0, 10.0, 20.0], atol=1e-3)
    assert sorted(p.name for p in (out / "figs").iterdir()) == ["sweep_error.png", "sweep_latency.png"]
    rows = [line for line in (out / "summary.md").read_text().splitlines() if line.startswith("| `cmp-")]
    assert [row.split(" | ")[1] for row in rows] == ["`wl-0`", "`wl-1`", "`wl-2`"]  # each row names its workload
    assert read_meta(out / "sweep_meta.json", "comparison_sweep")["inputs"]["comparisons"] == [
        "cmp-real-0--sim-0", "cmp-real-1--sim-1", "cmp-real-2--sim-2"]
    with pytest.raises(InputError, match="matches nothing"):
        run_mode(compose_app("compare_runs", ["mode=sweep", "comparisons=[nope-*]"]))


def test_unknown_mode_is_refused(compose_app: Callable[..., Any]) -> None:
    with pytest.raises(InputError, match="not one of"):
        run_mode(compose_app("compare_runs", ["mode=plot"]))


def _write_workload(root: Path, run: SyntheticRun) -> str:
    d = root / "workloads" / "wl-v"
    d.mkdir(parents=True)
    rid = np.arange(len(run.counts))
    write_table(pd.DataFrame({"request_id": rid, "num_prefill_tokens": run.num_prefill, "num_decode_tokens": run.num_decode}),
                d / TRACE_LENGTHS.filename, TRACE_LENGTHS)
    write_table(pd.DataFrame({"request_id": rid, "arrival_time_ns": run.arrival_ns,
                              "inter_arrival_ns": np.diff(run.arrival_ns, prepend=0)}), d / TRACE_INTERVALS.filename, TRACE_INTERVALS)
    write_json(d / "workload_meta.json", build_meta(kind="workload", id="wl-v", config={}, inputs={}))
    return "wl-v"


def _vllm_json(run: SyntheticRun, n: int) -> dict:
    off = run.offsets
    series = [run.times_ns[off[i]:off[i + 1]] for i in range(n)]
    return {
        "model_id": "Qwen/Qwen3-0.6B", "backend": "openai", "request_rate": 2.0,
        "ttfts": [float((s[0] - run.arrival_ns[i]) / 1e9) for i, s in enumerate(series)],
        "itls": [(np.diff(s) / 1e9).tolist() for s in series],
        "input_lens": run.num_prefill[:n].tolist(),
        "output_lens": run.counts[:n].tolist(),
        "start_times": [1000.0 + a / 1e9 for a in run.arrival_ns[:n]],
        "errors": [""] * n,
    }


def test_vllm_import_round_trips_and_compares(compose_app: Callable[..., Any], tmp_path: Path) -> None:
    run = sequential_run(10, 5, seed=3)
    wl = _write_workload(tmp_path, run)
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(_vllm_json(run, 10)))
    text = run_mode(compose_app("compare_runs", ["mode=import", f"import_file={path}", f"workload_id={wl}", "run_id=vllm-1"]))
    assert "vllm-1" in text
    meta = read_meta(tmp_path / "real_runs" / "vllm-1" / "run_meta.json", "real_run")
    assert meta["status"] == "complete" and meta["config"]["model"]["name"] == "Qwen/Qwen3-0.6B"
    write_run(tmp_path / "vidur_runs", "sim-v", "vidur_run", wl, run, with_iterations=False)
    run_mode(compose_app("compare_runs", ["real_run=vllm-1", "sim_run=sim-v"]))
    stats = read_table(tmp_path / "comparisons" / "cmp-vllm-1--sim-v" / "tables" / COMPARISON_STATS.filename, COMPARISON_STATS)
    assert (stats["diff"].abs() <= 1.0).all()  # seconds -> ns round trip is exact to the ns


def test_reimporting_the_same_file_is_a_no_op(compose_app: Callable[..., Any], tmp_path: Path) -> None:
    """Like workload-spec: the same content for the same workload finds the run it made; other content is refused."""
    run = sequential_run(4, 3, seed=7)
    wl = _write_workload(tmp_path, run)
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(_vllm_json(run, 4)))
    args = ["mode=import", "import_format=vllm", f"import_file={path}", f"workload_id={wl}"]
    first = run_mode(compose_app("compare_runs", args))
    meta = (tmp_path / "real_runs").glob("vllm-*/run_meta.json")
    written = [(p, p.stat().st_mtime_ns) for p in meta]
    assert len(written) == 1
    assert run_mode(compose_app("compare_runs", args)) == first
    assert [(p, p.stat().st_mtime_ns) for p in (tmp_path / "real_runs").glob("vllm-*/run_meta.json")] == written
    other = _vllm_json(run, 4)
    other["request_rate"] = 3.0  # other content under the same explicit run id
    path.write_text(json.dumps(other))
    run_id = written[0][0].parent.name
    with pytest.raises(OutputExistsError, match="exists already"):
        run_mode(compose_app("compare_runs", [*args, f"run_id={run_id}"]))


@pytest.mark.parametrize(
    "edit, fragment",
    [
        (lambda o: o["input_lens"].__setitem__(1, 99999), "request 1 (workload request_id 1): the input length is 99999"),
        (lambda o: o["output_lens"].__setitem__(2, 0), "request 2 (workload request_id 2): the output length is 0"),
        (lambda o: o.pop("ttfts"), "missing key(s) ['ttfts']"),
        (lambda o: o["output_lens"].pop(), "must be a list as long as 'ttfts'"),
    ],
)
def test_vllm_import_rejects_bad_files(compose_app: Callable[..., Any], tmp_path: Path,
                                       edit: Callable[[dict], object], fragment: str) -> None:
    run = sequential_run(4, 5, seed=4)
    wl = _write_workload(tmp_path, run)
    obj = _vllm_json(run, 4)
    edit(obj)
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(obj))
    with pytest.raises(InputError) as err:
        run_mode(compose_app("compare_runs", ["mode=import", f"import_file={path}", f"workload_id={wl}"]))
    assert fragment in str(err.value)
    assert not (tmp_path / "real_runs").exists()


def test_vllm_failed_and_missing_requests(compose_app: Callable[..., Any], tmp_path: Path) -> None:
    """A failed request is counted and left out; a missing one (the file stops early) makes the run incomplete."""
    run = sequential_run(6, 3, seed=5)
    wl = _write_workload(tmp_path, run)
    obj = _vllm_json(run, 5)  # the sixth request is missing, the second failed
    obj["errors"][1] = "timeout"
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(obj))
    text = run_mode(compose_app("compare_runs", ["mode=import", f"import_file={path}", f"workload_id={wl}", "run_id=v"]))
    assert "left out: 1 failed and 1 missing requests" in text
    meta = read_meta(tmp_path / "real_runs" / "v" / "run_meta.json")
    assert meta["status"] == "incomplete" and (meta["num_failed"], meta["missing"], meta["num_finished"]) == (1, 1, 4)


def test_vllm_multi_token_chunks_keep_first_and_last_token(compose_app: Callable[..., Any], tmp_path: Path) -> None:
    """Fewer ITLs than output tokens (several tokens per chunk): only the first and last token's times are kept, so
    TTFT, TPOT and E2E compare exactly and ITL is declared not comparable (nothing is interpolated)."""
    run = sequential_run(4, 5, seed=4)
    wl = _write_workload(tmp_path, run)
    obj = _vllm_json(run, 4)
    obj["itls"][2] = [obj["itls"][2][0] + obj["itls"][2][1], *obj["itls"][2][2:]]  # tokens 1 and 2 in one chunk
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(obj))
    text = run_mode(compose_app("compare_runs", ["mode=import", f"import_file={path}", f"workload_id={wl}", "run_id=v"]))
    assert "cannot be compared (the file has no per-token times): itl of 1 of 4 requests" in text
    meta = read_meta(tmp_path / "real_runs" / "v" / "run_meta.json")
    assert meta["token_times"] == {"every_token": 3, "first_and_last_only": 1}
    write_run(tmp_path / "vidur_runs", "s", "vidur_run", wl, run, with_iterations=False)
    run_mode(compose_app("compare_runs", ["real_run=v", "sim_run=s"]))
    out = tmp_path / "comparisons" / "cmp-v--s"
    stats = read_table(out / "tables" / COMPARISON_STATS.filename, COMPARISON_STATS)
    assert (stats["diff"].abs() <= 1.0).all()  # ITL too: it pairs the three requests with every token time
    assert "ITL compared over 3 of 4 requests: 1 real and 0 simulated series have only some token times" in \
        (out / "summary.md").read_text()


def test_cli_prints_one_error_line_and_exits_2(tmp_path: Path) -> None:
    run = sequential_run(4, 3, seed=6)
    write_run(tmp_path / "real_runs", "r", "real_run", "wl-a", run, with_iterations=False)
    write_run(tmp_path / "vidur_runs", "s", "vidur_run", "wl-b", run, with_iterations=False)
    proc = subprocess.run([str(REPO / ".venv/bin/compare-runs"), f"paths.root={tmp_path}", "real_run=r", "sim_run=s"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: real run 'r' replayed workload 'wl-a' but simulated run 's'")
    assert not (tmp_path / "comparisons").exists()
