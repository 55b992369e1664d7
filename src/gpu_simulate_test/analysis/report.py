"""summary.md: the comparison in one page, with the headline table and a verdict per metric.

:func:`headline_text` gives the same headline table as text (for the demo and the CLI to print).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from gpu_simulate_test.analysis.caveats import caveat_lines
from gpu_simulate_test.analysis.metrics import HEADLINE, METRICS
from gpu_simulate_test.analysis.tables import TABLES_DIR
from gpu_simulate_test.io.outputs import SUMMARY
from gpu_simulate_test.io.schemas import COMPARISON_STATS
from gpu_simulate_test.io.tables import read_table

HEADLINE_STATS = ("p50", "p90", "p99")
SETUP_GROUPS = ("model", "hardware", "backend")  # named in summary.md from the runs' meta config


def _ms(v: float) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{v * 1e-6:,.3f}"


def _pct(v: Optional[float]) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{v:+.1f}%"


def headline_table(stats: pd.DataFrame) -> str:
    """P50/P90/P99 of TTFT, TPOT and E2E: real, simulated (ms) and the signed error, as a Markdown table."""
    s = stats.set_index(["metric", "statistic"])
    lines = ["| metric | statistic | real (ms) | sim (ms) | error |", "| --- | --- | ---: | ---: | ---: |"]
    for m in HEADLINE:
        for st in HEADLINE_STATS:
            row = s.loc[(m, st)]
            lines.append(f"| {METRICS[m].label} | {st.upper()} | {_ms(row['real'])} | {_ms(row['sim'])} | {_pct(row['error_pct'])} |")
    return "\n".join(lines)


def headline_text(comparison_dir: Path) -> str:
    """The headline table of a written comparison directory (reads ``tables/stats.csv``)."""
    return headline_table(read_table(Path(comparison_dir) / TABLES_DIR / COMPARISON_STATS.filename, COMPARISON_STATS))


def verdicts(stats: pd.DataFrame, tolerance_pct: float) -> list[str]:
    """One line per headline metric: is the worst headline-percentile error within the tolerance?"""
    s = stats.set_index(["metric", "statistic"])
    out = []
    for m in HEADLINE:
        errs = {st: s.loc[(m, st), "error_pct"] for st in HEADLINE_STATS}
        known = {st: e for st, e in errs.items() if e is not None and np.isfinite(e)}
        label = METRICS[m].label
        if not known:
            out.append(f"{label}: no verdict (no values to compare)")
            continue
        worst = max(known, key=lambda st: abs(known[st]))
        e = known[worst]
        direction = "overestimates" if e > 0 else "underestimates"
        if abs(e) <= tolerance_pct:
            out.append(f"{label}: within ±{tolerance_pct:g}% (worst {worst.upper()} {_pct(e)})")
        else:
            out.append(f"{label}: OUTSIDE ±{tolerance_pct:g}% (worst {worst.upper()} {_pct(e)}: the simulation {direction})")
    return out


def _names(meta: dict[str, Any], group: str) -> str:
    cfg = meta.get("config") or {}
    node = cfg.get(group) if isinstance(cfg, dict) else None
    if isinstance(node, dict):
        return str(node.get("name") or node.get("hf_id") or "?")
    return str(node) if node else "?"


def describe(real_meta: dict[str, Any], sim_meta: dict[str, Any], group: str) -> str:
    """``name`` from both runs' config, or ``real / sim`` when they differ (a warning sign in itself)."""
    r, s = _names(real_meta, group), _names(sim_meta, group)
    return r if r == s else f"{r} (real) / {s} (sim)"


def _dist_table(dist: pd.DataFrame) -> str:
    lines = [
        "| metric | pairs | excluded | KS | Wasserstein | paired abs err P50 | paired abs err P90 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in dist.itertuples(index=False):
        unit = "ms/token" if r.unit == "ns/token" else "ms"
        ks = "n/a" if pd.isna(r.ks_statistic) else f"{r.ks_statistic:.3f}"
        w = "n/a" if pd.isna(r.wasserstein) else f"{r.wasserstein * 1e-6:.4g} {unit}"
        p50 = "n/a" if pd.isna(r.paired_abs_err_p50_pct) else f"{r.paired_abs_err_p50_pct:.1f}%"
        p90 = "n/a" if pd.isna(r.paired_abs_err_p90_pct) else f"{r.paired_abs_err_p90_pct:.1f}%"
        lines.append(f"| {METRICS[r.metric].label} | {r.n_pairs:,} | {r.n_excluded:,} | {ks} | {w} | {p50} | {p90} |")
    return "\n".join(lines)


def _iteration_section(it: Optional[dict[str, Any]]) -> list[str]:
    if it is None:
        return ["## Iterations", "", "Not compared: at least one run has no `iteration_metrics.csv`.", ""]
    return [
        "## Iterations (execution-time model vs scheduler)",
        "",
        f"- real iterations: {it['real_iterations']:,}; simulated: {it['sim_iterations']:,}; matched by batch "
        f"composition: {it['matched']:,} ({100 * it['matched_fraction_of_real']:.1f}% of real, "
        f"{100 * it['matched_fraction_of_sim']:.1f}% of simulated). Unmatched iterations mean the schedulers "
        "formed different batches.",
        f"- matched steps (same batch on both sides, so this is the execution-time model's error): total time "
        f"{_pct(it['matched_step_time_error_pct'])}, paired abs error P50 {_pct_abs(it['matched_paired_abs_err_p50_pct'])}, "
        f"P90 {_pct_abs(it['matched_paired_abs_err_p90_pct'])}.",
        f"- busy time over all iterations: real {_ms(it['busy_time_real_ns'])} ms, simulated "
        f"{_ms(it['busy_time_sim_ns'])} ms ({_pct(it['busy_time_error_pct'])}).",
        "- by batch size and prefill/decode tokens: `tables/iteration_error.csv`; figure `figs/step_time.png`.",
        "",
    ]


def _bundle_line(bundle: dict[str, Any]) -> str:
    """The bundle's verdict and held-out errors (specs/profiling_root.md), so that no headline reads without them."""
    name = f"`{bundle['id']}`" if bundle.get("id") else "(not recorded)"
    if "verdict" not in bundle:
        return f"Simulated with bundle {name}: verdict unknown (the bundle is not at hand and the simulated run does not record it)."
    errors = ", ".join(f"{shape} {err:+.1f}%" for shape, err in (bundle.get("errors_pct") or {}).items())
    line = f"Simulated with bundle {name}: verdict **{bundle['verdict']}**: {bundle['reason']}."
    return line + (f" Held-out errors: {errors}." if errors else "")


def _pct_abs(v: Optional[float]) -> str:
    return "n/a" if v is None else f"{v:.1f}%"


def setup(real_meta: dict[str, Any], sim_meta: dict[str, Any]) -> dict[str, str]:
    """model, hardware and backend as summary.md and sweeps name them."""
    return {g: describe(real_meta, sim_meta, g) for g in SETUP_GROUPS}


def _phase_section(phases: list[dict[str, Any]], phase_stats: Optional[pd.DataFrame]) -> list[str]:
    """One headline table per phase of a workload in phases (nothing otherwise)."""
    if not phases or phase_stats is None:
        return []
    lines = ["## Per phase", "", "Requests belong to the phase they were sent in (`tables/phase_stats.csv`).", ""]
    for ph in phases:
        k = int(ph["phase"])
        lines += [f"### Phase {k + 1}: {ph['qps']:g} requests/s for {ph['duration_s']:g} s "
                  f"({ph['requests_compared']:,} of {ph['num_requests']:,} requests compared)", ""]
        lines += [headline_table(phase_stats[phase_stats["phase"] == k].drop(columns="phase")) if ph["requests_compared"]
                  else "No request of this phase finished in both runs.", ""]
    return lines


def write_summary(dest: Path, meta: dict[str, Any], real_meta: dict[str, Any], sim_meta: dict[str, Any],
                  stats: pd.DataFrame, dist: pd.DataFrame, figures: list[str], tolerance_pct: float,
                  phase_stats: Optional[pd.DataFrame] = None) -> Path:
    """Render ``summary.md`` from the comparison's meta and tables (and the per-phase stats of a phased workload)."""
    c = meta["counts"]
    load = meta["load"]
    lines = [
        f"# Comparison `{meta['id']}`",
        "",
        f"- real run: `{meta['inputs']['real_run']}` ({real_meta['status']}); simulated run: "
        f"`{meta['inputs']['sim_run']}` ({sim_meta['status']})",
        f"- workload: `{meta['inputs']['workload_id']}`; load {load['qps']:.3g} requests/s ({load['source']})",
        "- " + "; ".join(f"{g}: {meta['setup'][g]}" for g in SETUP_GROUPS),
        f"- requests compared: {c['requests_compared']:,} (left out: {c['left_out_real']:,} finished only in the real "
        f"run, {c['left_out_sim']:,} only in the simulated run)",
        f"- early stop: {c['truncated_sim']:,} simulated token series truncated to the real run's length"
        f" ({c['truncated_real']:,} real series truncated to a shorter simulated one)",
        f"- TPOT undefined (one-token outputs, counted, not averaged): {c['one_token_outputs']:,}",
    ]
    if c["arrival_mismatches"]:
        lines.append(f"- warning: {c['arrival_mismatches']:,} requests have different arrival times in the two runs")
    lines += caveat_lines(meta["caveats"], c["requests_compared"])
    host = real_meta.get("host_load") or {}
    if host.get("busy"):
        lines.append(f"- warning: the real run was measured on a busy host ({'; '.join(host.get('reasons') or [])}): "
                     "its latencies may hold another tenant's load")
    lines += [
        "",
        "## Headline",
        "",
        _bundle_line(meta.get("bundle") or {}),
        "",
        headline_table(stats),
        "",
        *_phase_section(meta.get("phases") or [], phase_stats),
        f"## Verdicts (tolerance ±{tolerance_pct:g}% on P50/P90/P99)",
        "",
        *(f"- {v}" for v in verdicts(stats, tolerance_pct)),
        "",
        "## Distributions",
        "",
        _dist_table(dist),
        "",
        "Every statistic (mean, percentiles, signed errors): `tables/stats.csv`; per request: `tables/requests.csv`; "
        "E2E, TTFT and ITL errors in the layout of the sim-to-real-accuracy-validation study: `tables/error_records.csv`. "
        "Definitions: specs/comparison.md.",
        "",
        *_iteration_section(meta.get("iterations")),
        "## Figures",
        "",
        *(f"- `{f}`" for f in figures),
        "",
    ]
    path = Path(dest) / SUMMARY
    path.write_text("\n".join(lines))
    return path

