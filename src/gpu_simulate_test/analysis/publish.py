"""A published result folder (``docs/results/<name>/``) from a campaign's compared points: tables, figures, the
summary with its acceptance checks, and ``MANIFEST.csv``.

Everything here reads directories that ``campaign.publish`` made from the folder's own archives, so the folder's
numbers are reproduced by one command from what it ships (``specs/experiment.md``, "Published campaigns").
Errors are signed, 100 (x - real) / real, where ``real`` is the first replicate of the point; ``spread_pct`` is the
second replicate's error against the first (the real-vs-real floor under any fidelity claim).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import pandas as pd

from gpu_simulate_test.analysis.metrics import HEADLINE, METRICS
from gpu_simulate_test.analysis.plots import DPI, plt
from gpu_simulate_test.analysis.tables import TABLES_DIR
from gpu_simulate_test.io.meta import read_meta
from gpu_simulate_test.io.outputs import COMPARISON_META, PROFILE_META, RUN_META
from gpu_simulate_test.io.schemas import (
    COMPARISON_ITERATION_PAIRS,
    COMPARISON_STATS,
    ITERATION_METRICS,
    KV_TOKENS,
    REQUEST_METRICS,
    parse_kv_tokens_field,
    parse_requests_field,
)
from gpu_simulate_test.io.tables import read_table

HEADLINE_STATS = ("p50", "p90", "p99")
CELL_TOLERANCE_PCT = 5.0  # a cell passes within 5%, or within the real-vs-real spread
STEP_TOLERANCE_PCT = 3.0  # matched-iteration step time: median |error| at every load
CHECKED_UP_TO = 0.7  # loads up to 70% of capacity are checked cell by cell; 90% is measured and explained
MANIFEST_COLUMNS = ["file", "kind", "backend", "load", "date", "superseded", "what"]


@dataclass(frozen=True)
class ComparedPoint:
    """One point of a campaign after the local half: its runs and its two comparisons."""

    setup: str
    workload: str
    fraction: float
    offered_qps: float
    capacity_rps: float
    point_keys: tuple[str, ...]  # one per replicate
    real_runs: tuple[str, ...]
    bundle_id: str
    comparison: Path  # the simulation against the first replicate
    spread: Optional[Path]  # the second replicate against the first (None with one replicate)


def _stats(comparison: Path) -> pd.DataFrame:
    return read_table(comparison / TABLES_DIR / COMPARISON_STATS.filename, COMPARISON_STATS).set_index(["metric", "statistic"])


def sweep_table(points: list[ComparedPoint]) -> pd.DataFrame:
    """Every metric and statistic of every point: real, simulated, error, second replicate and spread, and whether
    the cell is within 5% or the spread (checked up to 70% load; ``measured`` above)."""
    rows = []
    for p in points:
        st = _stats(p.comparison)
        sp = _stats(p.spread) if p.spread is not None else None
        for (metric, stat), r in st.iterrows():
            real_b = spread = None
            if sp is not None and (metric, stat) in sp.index:
                real_b, spread = sp.loc[(metric, stat), "sim"], sp.loc[(metric, stat), "error_pct"]
            err = r["error_pct"]
            if p.fraction > CHECKED_UP_TO + 1e-9:
                cell = "measured"
            elif pd.isna(err):
                cell = "n/a"
            elif abs(err) <= CELL_TOLERANCE_PCT:
                cell = "within 5%"
            elif spread is not None and pd.notna(spread) and abs(err) <= abs(spread):
                cell = "within spread"
            else:
                cell = "outside"
            rows.append({"setup": p.setup, "workload": p.workload, "load_fraction": p.fraction, "offered_qps": p.offered_qps,
                         "capacity_rps": p.capacity_rps, "metric": metric, "statistic": stat, "unit": r["unit"],
                         "real": r["real"], "sim": r["sim"], "error_pct": err, "real_b": real_b, "spread_pct": spread,
                         "cell": cell, "point_key": p.point_keys[0]})
    return pd.DataFrame(rows)


def iteration_table(points: list[ComparedPoint]) -> pd.DataFrame:
    """Per point: how many real steps found their simulated twin, and the step-time error of the matched pairs."""
    rows = []
    for p in points:
        it = read_meta(p.comparison / COMPARISON_META, "comparison").get("iterations") or {}
        med = it.get("matched_paired_abs_err_p50_pct")
        rows.append({"setup": p.setup, "workload": p.workload, "load_fraction": p.fraction, "point_key": p.point_keys[0],
                     "real_iterations": it.get("real_iterations"), "sim_iterations": it.get("sim_iterations"),
                     "matched_fraction_of_real": it.get("matched_fraction_of_real"),
                     "matched_abs_err_p50_pct": med, "matched_abs_err_p90_pct": it.get("matched_paired_abs_err_p90_pct"),
                     "matched_step_time_error_pct": it.get("matched_step_time_error_pct"),
                     "busy_time_error_pct": it.get("busy_time_error_pct"),
                     "within_3pct": None if med is None else bool(med <= STEP_TOLERANCE_PCT)})
    return pd.DataFrame(rows)


BATCH_BINS = (0, 1, 2, 4, 8, 16, 32, 64, 128, 10**9)  # requests in a step: (0, 1], (1, 2], (2, 4], ...


def iteration_kinds_table(points: list[ComparedPoint]) -> pd.DataFrame:
    """Per point, the matched steps by kind (``decode``: no prompt token; ``prefill``: no decode; ``mixed``) and batch
    size (``BATCH_BINS``): how many, the median real and simulated step, the median signed error. Where a point's
    cells are off, this says which steps make them so."""
    rows = []
    for p in points:
        path = p.comparison / TABLES_DIR / COMPARISON_ITERATION_PAIRS.filename
        if not path.is_file():
            continue
        d = read_table(path, COMPARISON_ITERATION_PAIRS)
        kind = np.where(d["num_prefill_tokens"] == 0, "decode", np.where(d["num_decode_tokens"] == 0, "prefill", "mixed"))
        err = 100.0 * (d["sim_step_ns"] - d["real_step_ns"]) / d["real_step_ns"]
        bins = pd.cut(d["batch_size"], BATCH_BINS)
        frame = pd.DataFrame({"kind": kind, "bin": bins, "real": d["real_step_ns"], "sim": d["sim_step_ns"], "err": err})
        for (k, b), g in frame.groupby(["kind", "bin"], observed=True, sort=True):
            rows.append({"setup": p.setup, "workload": p.workload, "load_fraction": p.fraction,
                         "point_key": p.point_keys[0], "kind": k, "batch_size_min": int(b.left) + 1,
                         "batch_size_max": int(min(b.right, d["batch_size"].max())), "steps": len(g),
                         "share_of_matched": len(g) / len(frame), "real_step_ns_p50": float(g["real"].median()),
                         "sim_step_ns_p50": float(g["sim"].median()), "error_pct_p50": float(g["err"].median())})
    return pd.DataFrame(rows)


def _matched_with_kv(points: list[ComparedPoint], root: Path, decodes: bool
                     ) -> Iterator[tuple[ComparedPoint, pd.DataFrame, pd.DataFrame]]:
    """Each point's matched steps, the decode-only ones (``decodes``) or those with a prefill chunk, beside the real
    run's rows of the same steps (in the same order, with ``kv_tokens``); points without matched pairs, without
    ``kv_tokens`` or without such steps are left out."""
    for p in points:
        path = p.comparison / TABLES_DIR / COMPARISON_ITERATION_PAIRS.filename
        if not path.is_file():
            continue
        steps = read_table(Path(root) / "real_runs" / p.real_runs[0] / ITERATION_METRICS.filename, ITERATION_METRICS)
        if KV_TOKENS not in steps.columns:
            continue
        d = read_table(path, COMPARISON_ITERATION_PAIRS)
        d = d[(d["num_prefill_tokens"] == 0) == decodes]
        if not d.empty:
            yield p, d, steps.set_index("iteration_id").loc[d["real_iteration_id"]]


UNEVEN_BINS = (1.0, 1.5, 3.0, np.inf)  # a decode batch's longest KV over its mean: [1, 1.5), [1.5, 3), [3, inf)


def decode_kv_table(points: list[ComparedPoint], root: Path) -> pd.DataFrame:
    """Per point, the matched decode steps by batch size (``BATCH_BINS``) and by how uneven their KV lengths are
    (longest over mean, ``UNEVEN_BINS``; from the real run's ``kv_tokens``): how many, their share of the matched
    decodes, the median mean and longest KV, the median real and simulated step, the median signed error. Vidur
    0.0.26 predicts decode attention from a batch's mean KV; an attention kernel that splits every sequence alike
    waits for the longest one, and this table shows what that costs the prediction. Points whose real run has no
    ``kv_tokens`` are left out."""
    rows = []
    for p, d, steps in _matched_with_kv(points, root, decodes=True):
        kv = steps[KV_TOKENS].astype(str)
        lengths = [np.array(parse_kv_tokens_field(k), dtype=float) for k in kv]
        mean, longest = np.array([x.mean() for x in lengths]), np.array([x.max() for x in lengths])
        frame = pd.DataFrame({"bin": pd.cut(d["batch_size"].to_numpy(), BATCH_BINS), "mean": mean, "longest": longest,
                              "uneven": pd.cut(longest / mean, UNEVEN_BINS, right=False),
                              "real": d["real_step_ns"].to_numpy(), "sim": d["sim_step_ns"].to_numpy()})
        frame["err"] = 100.0 * (frame["sim"] - frame["real"]) / frame["real"]
        for (b, u), g in frame.groupby(["bin", "uneven"], observed=True, sort=True):
            rows.append({"setup": p.setup, "workload": p.workload, "load_fraction": p.fraction,
                         "point_key": p.point_keys[0], "batch_size_min": int(b.left) + 1,
                         "batch_size_max": int(min(b.right, d["batch_size"].max())),
                         "uneven_min": float(u.left), "uneven_max": float(u.right), "steps": len(g),
                         "share_of_matched_decodes": len(g) / len(frame),
                         "kv_mean_p50": float(g["mean"].median()), "kv_longest_p50": float(g["longest"].median()),
                         "real_step_ns_p50": float(g["real"].median()), "sim_step_ns_p50": float(g["sim"].median()),
                         "error_pct_p50": float(g["err"].median())})
    return pd.DataFrame(rows)


PREFIX_BINS = (-1, 0, 512, 2048, 10**9)  # a chunk's prefix (prompt tokens processed before it): 0, 1-512, ...


def prefill_chunks_table(points: list[ComparedPoint], root: Path) -> pd.DataFrame:
    """Per point, the matched steps that run a prefill chunk (prefill and mixed), by the chunk's prefix: the prompt
    tokens its request processed in earlier steps (``PREFIX_BINS``; from the real run's ``requests`` and
    ``kv_tokens``: KV after the step less the chunk; a step of several chunks goes by the largest prefix): how many,
    their share of the matched chunk steps, the median chunk and decodes, the median real and simulated step, the
    median signed error. Vidur 0.0.26 looks a chunk's prefill attention up at the KV *after* the chunk while its rows
    hold the KV before it, and a fresh request's first step carries host work it does not model: this table shows
    both. Points whose real run has no ``kv_tokens`` are left out."""
    rows = []
    for p, d, steps in _matched_with_kv(points, root, decodes=False):
        prefix = []
        for entries, kv in zip(steps["requests"].astype(str), steps[KV_TOKENS].astype(str)):
            tokens = [n for _, n in parse_requests_field(entries)]
            after = parse_kv_tokens_field(kv)
            prefix.append(max((a - n for n, a in zip(tokens, after) if n > 1), default=0))
        frame = pd.DataFrame({"bin": pd.cut(np.array(prefix), PREFIX_BINS), "chunk": d["num_prefill_tokens"].to_numpy(),
                              "decodes": d["num_decode_tokens"].to_numpy(), "real": d["real_step_ns"].to_numpy(),
                              "sim": d["sim_step_ns"].to_numpy()})
        frame["err"] = 100.0 * (frame["sim"] - frame["real"]) / frame["real"]
        for b, g in frame.groupby("bin", observed=True, sort=True):
            rows.append({"setup": p.setup, "workload": p.workload, "load_fraction": p.fraction,
                         "point_key": p.point_keys[0], "prefix_min": int(b.left) + 1, "prefix_max": int(b.right),
                         "steps": len(g), "share_of_matched_chunk_steps": len(g) / len(frame),
                         "chunk_tokens_p50": float(g["chunk"].median()), "decodes_p50": float(g["decodes"].median()),
                         "real_step_ns_p50": float(g["real"].median()), "sim_step_ns_p50": float(g["sim"].median()),
                         "error_pct_p50": float(g["err"].median())})
    return pd.DataFrame(rows)


REPLAY_COLUMNS = ["setup", "workload", "load_fraction", "point_key", "bundle_id", "real_steps", "abs_err_p50_pct",
                  "abs_err_p90_pct", "error_p50_pct", "time_weighted_error_pct", "within_3pct"]


def replay_table(points: list[ComparedPoint], root: Path, apps: dict[str, Any]) -> pd.DataFrame:
    """Per point, every step of its first real run predicted from its own batch by the bundle the point was
    simulated with (``vidur_ext/replay.py``): the execution model on all the real steps, where the matched
    iterations see only those both runs share. ``apps``: each point's experiment config by its first point key (its
    model, hardware, Vidur settings, seed and cache); points whose real run has no ``kv_tokens`` are left out."""
    from gpu_simulate_test.vidur_ext.profiling_root import load_profiling_root
    from gpu_simulate_test.vidur_ext.replay import replay_steps

    rows = []
    for p in points:
        run = Path(root) / "real_runs" / p.real_runs[0]
        steps = read_table(run / ITERATION_METRICS.filename, ITERATION_METRICS)
        if KV_TOKENS not in steps.columns:
            continue
        requests = read_table(run / REQUEST_METRICS.filename, REQUEST_METRICS)
        app = apps[p.point_keys[0]]
        bundle = load_profiling_root(Path(root) / "profiling" / p.bundle_id, check_tables=False)
        d = replay_steps(bundle, steps, dispatched=dict(zip(requests["request_id"], requests["dispatch_time_ns"])),
                         model=app.model, hardware=app.hardware, vidur=app.vidur, seed=int(app.seed),
                         cache_root=Path(app.paths.cache))
        err = d["error_pct"].abs()
        rows.append({"setup": p.setup, "workload": p.workload, "load_fraction": p.fraction, "point_key": p.point_keys[0],
                     "bundle_id": p.bundle_id, "real_steps": len(d), "abs_err_p50_pct": float(err.median()),
                     "abs_err_p90_pct": float(err.quantile(0.9)), "error_p50_pct": float(d["error_pct"].median()),
                     # the run's steps summed: the bias a simulated server pays for, which queueing amplifies
                     "time_weighted_error_pct": 100.0 * (float(d["predicted_ns"].sum()) / float(d["measured_ns"].sum()) - 1.0),
                     "within_3pct": bool(err.median() <= STEP_TOLERANCE_PCT)})
    return pd.DataFrame(rows, columns=REPLAY_COLUMNS)


def points_table(points: list[ComparedPoint], root: Path) -> pd.DataFrame:
    """Per real run: what the engine did, its start-up (``load_s``: model, kernels, graphs; ``warmup_s``) and run time."""
    rows = []
    for p in points:
        for r, (key, run) in enumerate(zip(p.point_keys, p.real_runs)):
            meta = read_meta(Path(root) / "real_runs" / run / RUN_META, "real_run")
            stats = meta.get("engine_stats") or {}
            host = meta.get("host_load") or {}
            rows.append({"setup": p.setup, "workload": p.workload, "load_fraction": p.fraction, "replicate": r,
                         "point_key": key, "real_run": run, "num_requests": meta.get("num_requests"),
                         "offered_qps": p.offered_qps, "load_s": meta.get("load_s"), "warmup_s": meta.get("warmup_s"),
                         "run_s": meta.get("run_s"), "gpu": meta.get("gpu"), "gpu_uuid": host.get("gpu"),
                         "num_blocks": (meta.get("backend") or {}).get("num_blocks"),
                         "preemptions_during_run": stats.get("preemptions_during_run"),
                         "captures_during_run": stats.get("cuda_graph_captures_during_run"),
                         "host_busy": host.get("busy"), "created_at": meta["provenance"]["created_at"]})
    return pd.DataFrame(rows)


def bundle_tables(root: Path, bundle_ids: dict[str, str]) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, dict[str, Any]]]:
    """Each setup's bundle: its test check with both baselines, its validation check, and its meta."""
    tests, vals, metas = [], [], {}
    for setup, bid in bundle_ids.items():
        path = Path(root) / "profiling" / bid
        metas[setup] = read_meta(path / PROFILE_META, "profile_bundle")
        tests.append(pd.read_csv(path / "held_out_check.csv").assign(setup=setup, bundle_id=bid))
        if (path / "validation_check.csv").is_file():
            vals.append(pd.read_csv(path / "validation_check.csv").assign(setup=setup, bundle_id=bid))
    return (pd.concat(tests, ignore_index=True), pd.concat(vals, ignore_index=True) if vals else pd.DataFrame(), metas)


def plot_errors(dest: Path, sweep: pd.DataFrame, setup: str, workload: str) -> Path:
    """Error vs load for TTFT, TPOT and E2E (P50/P90/P99): simulated (solid) and the second real run (dotted)."""
    fig, axes = plt.subplots(1, len(HEADLINE), figsize=(5 * len(HEADLINE), 4.2), squeeze=False)
    colors = dict(zip(HEADLINE_STATS, ("tab:blue", "tab:orange", "tab:red")))
    d = sweep[(sweep["setup"] == setup) & (sweep["workload"] == workload)]
    for ax, m in zip(axes[0], HEADLINE):
        for st in HEADLINE_STATS:
            s = d[(d["metric"] == m) & (d["statistic"] == st)].sort_values("load_fraction")
            ax.plot(100 * s["load_fraction"], s["error_pct"], "-o", color=colors[st], label=f"{st} sim")
            if s["spread_pct"].notna().any():
                ax.plot(100 * s["load_fraction"], s["spread_pct"].astype(float), ":", color=colors[st], label=f"{st} real B")
        ax.axhspan(-CELL_TOLERANCE_PCT, CELL_TOLERANCE_PCT, color="green", alpha=0.08)
        ax.axhline(0, color="k", lw=0.8)
        ax.set_title(f"{METRICS[m].label}: error vs load")
        ax.set_xlabel("load (% of measured capacity)")
        ax.set_ylabel("100 (x − real A) / real A (%)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"{setup}, {workload}: simulated and second real run against the first")
    fig.tight_layout()
    return _save(fig, Path(dest) / f"error_{setup}_{workload}.png")


def plot_bundle_test(dest: Path, test: pd.DataFrame, setup: str) -> Path:
    """|error| per test shape: the bundle against the constant and the linear baseline."""
    d = test[test["setup"] == setup]
    x = np.arange(len(d))
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(d) + 2), 4.2))
    for i, (col, label) in enumerate((("error_pct", "bundle"), ("constant_error_pct", "constant"),
                                      ("linear_error_pct", "linear in tokens"))):
        if col in d.columns:
            ax.bar(x + (i - 1) * 0.27, d[col].abs(), width=0.27, label=label)
    ax.set_xticks(x, d["shape"], rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("|error| (%)")
    ax.set_title(f"{setup} bundle: test shapes (never fitted, never used to choose)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend()
    fig.tight_layout()
    return _save(fig, Path(dest) / f"bundle_test_{setup}.png")


def _save(fig: Any, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def _fmt_ms(ns: Any) -> str:
    return "n/a" if ns is None or pd.isna(ns) else f"{ns / 1e6:,.1f}"


def _fmt_pct(x: Any, signed: bool = True) -> str:
    return "n/a" if x is None or pd.isna(x) else (f"{x:+.1f}%" if signed else f"{x:.1f}%")


def summary_text(title: str, sweep: pd.DataFrame, iters: pd.DataFrame, runs: pd.DataFrame, test: pd.DataFrame,
                 verdicts: dict[str, str], reproduce: str, kinds: Optional[pd.DataFrame] = None,
                 decode_kv: Optional[pd.DataFrame] = None, chunks: Optional[pd.DataFrame] = None,
                 replay: Optional[pd.DataFrame] = None) -> str:
    """``summary.md``: the acceptance checks first, then the headline tables and the facts behind them."""
    checked = sweep[(sweep["load_fraction"] <= CHECKED_UP_TO + 1e-9) & sweep["metric"].isin(HEADLINE)
                    & sweep["statistic"].isin(HEADLINE_STATS)]
    outside = checked[checked["cell"] == "outside"]
    slow = iters[iters["within_3pct"] == False]  # noqa: E712 - None (not matched) is not a failure here
    lines = [f"# {title}", "", "## Acceptance", "",
             "| check | result |", "| --- | --- |"]
    for setup, line in verdicts.items():
        lines.append(f"| {setup} bundle verdict (test shapes vs constant and linear baselines) | {line} |")
    lines.append(f"| matched-iteration step time, median \\|error\\| <= {STEP_TOLERANCE_PCT:g}% at every load | "
                 + ("yes" if slow.empty else f"no: {len(slow)} point(s) above") + " |")
    if replay is not None and not replay.empty:
        over = replay[~replay["within_3pct"].astype(bool)]
        lines.append(f"| every real step predicted from its own batch (the execution model apart from the scheduler), "
                     f"median \\|error\\| <= {STEP_TOLERANCE_PCT:g}% at every load | "
                     + ("yes" if over.empty else f"no: {len(over)} point(s) above") + " |")
    lines.append(f"| every P50/P90/P99 cell of TTFT, TPOT, E2E up to {CHECKED_UP_TO:.0%} load within "
                 f"{CELL_TOLERANCE_PCT:g}% or the real-vs-real spread | "
                 + ("yes" if outside.empty else f"no: {len(outside)} of {len(checked)} cells outside (listed below)") + " |")
    lines += ["", "Errors are 100 (sim - real) / real against the first real run; *spread* is the second real run of "
              "the same point against the first.", ""]
    for (setup, workload), d in sweep.groupby(["setup", "workload"], sort=False):
        cap = d["capacity_rps"].iloc[0]
        lines += [f"## {setup}, {workload} (capacity {cap:.3g} requests/s)", "",
                  "| load | metric | " + " | ".join(f"{s.upper()} real | {s.upper()} sim | err | spread" for s in HEADLINE_STATS) + " |",
                  "| --- | --- | " + " | ".join("---: | ---: | ---: | ---:" for _ in HEADLINE_STATS) + " |"]
        for fraction, pt in d.groupby("load_fraction"):
            cells = pt.set_index(["metric", "statistic"])
            for m in HEADLINE:
                row = []
                for s in HEADLINE_STATS:
                    if (m, s) not in cells.index:
                        row.append("n/a | n/a | n/a | n/a")
                        continue
                    c = cells.loc[(m, s)]
                    row.append(f"{_fmt_ms(c['real'])} | {_fmt_ms(c['sim'])} | {_fmt_pct(c['error_pct'])} | {_fmt_pct(c['spread_pct'])}")
                lines.append(f"| {fraction:.0%} ({pt['offered_qps'].iloc[0]:.3g}/s) | {METRICS[m].label} (ms) | " + " | ".join(row) + " |")
        it = iters[(iters["setup"] == setup) & (iters["workload"] == workload)]
        lines += ["", "Matched iterations (same batch in both runs): " + "; ".join(
            f"{f:.0%}: {_fmt_pct(r['matched_abs_err_p50_pct'], False)} median |error|, "
            f"{_fmt_pct(100 * r['matched_fraction_of_real'] if r['matched_fraction_of_real'] is not None else None, False)} of real steps matched"
            for f, r in it.set_index("load_fraction").iterrows()), ""]
        if replay is not None and not replay.empty:
            rp = replay[(replay["setup"] == setup) & (replay["workload"] == workload)]
            if not rp.empty:
                lines += ["Every real step predicted from its own batch (first replicate): " + "; ".join(
                    f"{f:.0%}: {_fmt_pct(r['abs_err_p50_pct'], False)} median |error| (signed median "
                    f"{_fmt_pct(r['error_p50_pct'])}; summed over the run {_fmt_pct(r['time_weighted_error_pct'])}) over "
                    f"{int(r['real_steps']):,} steps"
                    for f, r in rp.set_index("load_fraction").iterrows()), ""]
        lines += _kinds_lines(kinds, setup, workload)
        lines += _kv_lines(decode_kv, setup, workload)
        lines += _chunk_lines(chunks, setup, workload)
    if not outside.empty:
        lines += ["## Cells outside 5% and the spread", "", "| setup | workload | load | metric | statistic | error | spread |",
                  "| --- | --- | --- | --- | --- | ---: | ---: |"]
        for _, c in outside.iterrows():
            lines.append(f"| {c['setup']} | {c['workload']} | {c['load_fraction']:.0%} | {c['metric']} | {c['statistic']} | "
                         f"{_fmt_pct(c['error_pct'])} | {_fmt_pct(c['spread_pct'])} |")
        lines.append("")
    lines += ["## Bundles: test shapes", "", "| setup | shape | measured (ms) | bundle | constant | linear |",
              "| --- | --- | ---: | ---: | ---: | ---: |"]
    for _, t in test.iterrows():
        lines.append(f"| {t['setup']} | {t['shape']} | {_fmt_ms(t['measured_ns'])} | {_fmt_pct(t['error_pct'])} | "
                     f"{_fmt_pct(t.get('constant_error_pct'))} | {_fmt_pct(t.get('linear_error_pct'))} |")
    starts = runs["load_s"].dropna()
    lines += ["", "## Engine", "",
              f"- {len(runs)} real runs on {', '.join(sorted(set(runs['gpu'].dropna().astype(str)))) or 'n/a'} "
              f"({runs['gpu_uuid'].nunique()} distinct GPU(s) by UUID); start-up (model, kernels, graphs) "
              + (f"median {starts.median():.1f} s, max {starts.max():.1f} s" if len(starts) else "not recorded")
              + f"; preemptions during runs: {int(runs['preemptions_during_run'].fillna(0).sum())}; graph captures "
              f"during runs: {int(runs['captures_during_run'].fillna(0).sum())}; runs on a busy host: "
              f"{int((runs['host_busy'] == True).sum())}.", "",  # noqa: E712
              "## Reproduce", "", "Every number above comes from the archives in `points/` and `bundles/`:", "",
              f"```bash\n{reproduce}\n```", ""]
    return "\n".join(lines)


def _by_load_lines(table: Optional[pd.DataFrame], setup: str, workload: str, title: str, headers: tuple[str, ...],
                   keys: list[str], label: Any, share: str) -> list[str]:
    """One setup and workload's rows of ``table`` as a markdown table: a row per ``keys`` group (``label(key, rows)``
    names it), a column per load, each cell the median error (the ``share`` column, in %)."""
    if table is None or table.empty:
        return []
    k = table[(table["setup"] == setup) & (table["workload"] == workload)]
    if k.empty:
        return []
    loads = sorted(set(k["load_fraction"]))
    lines = [title, "", "| " + " | ".join(headers) + " | " + " | ".join(f"{f:.0%}" for f in loads) + " |",
             "| " + " | ".join("---" for _ in headers) + " | " + " | ".join("---:" for _ in loads) + " |"]
    for key, g in k.groupby(keys, sort=True):
        by_load = g.set_index("load_fraction")
        cells = [f"{_fmt_pct(by_load.loc[f, 'error_pct_p50'])} ({100 * by_load.loc[f, share]:.0f}%)"
                 if f in by_load.index else "" for f in loads]
        lines.append("| " + " | ".join(label(key, g)) + " | " + " | ".join(cells) + " |")
    return lines + [""]


def _requests(lo: int, rows: pd.DataFrame) -> str:
    hi = int(rows["batch_size_max"].max())
    return str(lo) if lo == hi else f"{lo}-{hi}"


def _kinds_lines(kinds: Optional[pd.DataFrame], setup: str, workload: str) -> list[str]:
    """The matched steps by kind and batch size, one column a load: median error (share of the matched steps)."""
    return _by_load_lines(kinds, setup, workload, "Matched steps by kind and batch size: median error of the simulated "
                          "step (share of the matched steps):", ("kind", "requests"), ["kind", "batch_size_min"],
                          lambda key, g: (key[0], _requests(key[1], g)), "share_of_matched")


def _kv_lines(kv: Optional[pd.DataFrame], setup: str, workload: str) -> list[str]:
    """The matched decodes by batch size and KV unevenness, one column a load: median error (share of the matched
    decodes)."""
    def label(key: tuple[int, float], g: pd.DataFrame) -> tuple[str, str]:
        top = float(g["uneven_max"].iloc[0])
        return _requests(key[0], g), f"{key[1]:g}-{top:g}" if np.isfinite(top) else f">= {key[1]:g}"

    return _by_load_lines(kv, setup, workload, "Matched decode steps by batch size and by their longest KV over their "
                          "mean KV (Vidur predicts decode attention from the mean): median error of the simulated step "
                          "(share of the matched decodes):", ("requests", "longest / mean KV"),
                          ["batch_size_min", "uneven_min"], label, "share_of_matched_decodes")


def _chunk_lines(chunks: Optional[pd.DataFrame], setup: str, workload: str) -> list[str]:
    """The matched steps with a prefill chunk by the chunk's prefix, one column a load: median error (share)."""
    def label(key: tuple[int], g: pd.DataFrame) -> tuple[str]:
        low, top = key[0], int(g["prefix_max"].iloc[0])
        return ("0 (a first chunk)" if top == 0 else f"{low}-{top}" if top < PREFIX_BINS[-1] else f"> {low - 1}",)

    return _by_load_lines(chunks, setup, workload, "Matched steps with a prefill chunk by the chunk's prefix (Vidur "
                          "0.0.26 reads its attention at a KV rounded up to 256 tokens: the bundle's `row_keys` say "
                          "which KV and whether rounded; a first chunk also carries the engine's host work for a new "
                          "request): median error of the simulated step (share of the matched chunk steps):",
                          ("prefix (tokens)",), ["prefix_min"], label, "share_of_matched_chunk_steps")


def write_manifest(folder: Path, describe: dict[str, dict[str, str]]) -> Path:
    """``MANIFEST.csv``: every file of the folder, with ``describe``'s row for it (kind, backend, load, date, what)."""
    folder = Path(folder)
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != "MANIFEST.csv")
    missing = [f for f in files if f not in describe]
    if missing:
        raise ValueError(f"{folder}: no manifest row for {missing}")
    with open(folder / "MANIFEST.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
        w.writeheader()
        for f in files:
            w.writerow({"file": f, "superseded": "no", **describe[f]})
    return folder / "MANIFEST.csv"


def archive_date(archive: Path) -> str:
    """The date the archive's first meta JSON was created (its provenance), for the manifest."""
    import tarfile

    with tarfile.open(archive) as tar:
        for m in tar.getmembers():
            if m.isfile() and m.name.endswith("_meta.json"):
                return str(json.load(tar.extractfile(m))["provenance"]["created_at"])[:10]  # type: ignore[arg-type]
    return "unknown"
