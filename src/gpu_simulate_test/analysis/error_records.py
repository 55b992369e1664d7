"""``tables/error_records.csv``: the headline errors in the layout of a published sim-to-real study.

The inference-sim project's ``sim-to-real-accuracy-validation`` repository compares simulators (Vidur among them)
with vLLM runs and writes one ``error_records.csv`` row per (stage, metric): ``metric_name`` is ``e2e``, ``ttft`` or
``itl`` with ``_mean``, ``_p90`` or ``_p99``, ``predicted`` and ``actual`` in milliseconds, ``mape`` and ``mpe`` in
percent, then the experiment's settings (its ``experiment/report.py``, ``save_csv``; ``experiment/metrics.py``).
Writing ours in that layout lets a reader concatenate the two files.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import pandas as pd

from gpu_simulate_test.io.schemas import ERROR_RECORDS
from gpu_simulate_test.io.units import NS_PER_MS

METRICS = ("e2e", "ttft", "itl")
STATISTICS = ("mean", "p90", "p99")
PRECISION = {"bfloat16": "BF16", "float16": "FP16", "float32": "FP32"}


def _group(meta: dict[str, Any], group: str) -> dict[str, Any]:
    node = (meta.get("config") or {}).get(group)
    return node if isinstance(node, dict) else {}


def _pick(metas: tuple[dict[str, Any], ...], group: str, key: str) -> Optional[Any]:
    """``config.<group>.<key>`` of the first run that records it (the simulated run's config is the fuller one)."""
    return next((_group(m, group)[key] for m in metas if _group(m, group).get(key) is not None), None)


def error_records(stats: pd.DataFrame, comparison: dict[str, Any], real_meta: dict[str, Any],
                  sim_meta: dict[str, Any]) -> pd.DataFrame:
    """The rows of ``error_records.csv`` from ``stats.csv``; a statistic that is undefined in either run, or of a metric
    not compared (ITL without per-token times: ``unavailable_metrics``), is left out."""
    metas = (sim_meta, real_meta)
    s = stats.set_index(["metric", "statistic"])
    dtype = str(_pick(metas, "model", "dtype") or "")
    budget = _pick(metas, "backend", "max_batch_tokens")
    rows = []
    for metric in METRICS:
        for stat in STATISTICS:
            if (metric, stat) not in s.index:
                continue
            real, sim = (float(s.loc[(metric, stat), col]) / NS_PER_MS for col in ("real", "sim"))
            if not (np.isfinite(real) and np.isfinite(sim)) or real == 0:
                continue
            rows.append({
                "simulator": "vidur",
                "experiment_folder": comparison["id"],
                "model": str(_pick(metas, "model", "hf_id") or _pick(metas, "model", "name") or "?"),
                "workload": comparison["inputs"]["workload_id"],
                "stage_index": -1,
                "metric_name": f"{metric}_{stat}",
                "predicted": sim,
                "actual": real,
                "mape": 100.0 * abs(sim - real) / real,
                "mpe": 100.0 * (sim - real) / real,
                "absolute_error": abs(sim - real),
                "exp_id": None,
                "hardware": str(_pick(metas, "hardware", "name") or "?").upper(),
                "dp": None,
                "cpu_offload": False,
                "gpu_mem_util": None,
                "precision": PRECISION.get(dtype, dtype.upper() or "?"),
                "tp": 1,
                "max_num_batched_tokens": None if budget is None else int(budget),
            })
    frame = pd.DataFrame(rows, columns=ERROR_RECORDS.column_names)
    for col in ("exp_id", "dp", "max_num_batched_tokens"):
        frame[col] = frame[col].astype("Int64")
    frame["gpu_mem_util"] = frame["gpu_mem_util"].astype("float64")
    return frame
