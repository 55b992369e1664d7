"""compare-runs, mode ``compare``: one real run against one simulated run -> ``<paths.comparisons>/<id>/``.

Everything is computed and checked before the output directory is created, and the directory is
written atomically: a bad input leaves no comparison behind.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from gpu_simulate_test.analysis.align import PairedRuns, load_pair
from gpu_simulate_test.analysis.caveats import caveats
from gpu_simulate_test.analysis.error_records import error_records
from gpu_simulate_test.analysis.iterations import IterationMatch, match_iterations
from gpu_simulate_test.analysis.metrics import metric_values, unavailable_metrics
from gpu_simulate_test.analysis.phases import phase_stats, workload_phases
from gpu_simulate_test.analysis.plots import figures_dir, optional_step_figure, plot_cdfs, plot_scatter, plot_timeline
from gpu_simulate_test.analysis.report import HEADLINE_STATS, setup, write_summary
from gpu_simulate_test.analysis.sweep import offered_load
from gpu_simulate_test.analysis.tables import requests_frame, stats_and_distribution, write_comparison_tables
from gpu_simulate_test.config.apps import CompareRunsAppConfig
from gpu_simulate_test.errors import InputError
from gpu_simulate_test.io.ids import canonical_json, is_valid_id, short_hash
from gpu_simulate_test.io.meta import build_meta, write_json
from gpu_simulate_test.io.outputs import COMPARISON_META, stage_output
from gpu_simulate_test.io.runs import run_content
from gpu_simulate_test.vidur_ext.verdict import simulated_with

STEPS = ("load runs", "metrics", "iterations", "tables", "figures")


def comparison_id(real_id: str, sim_id: str) -> str:
    """``cmp-<real>--<sim>`` when that is a valid id, else a hash of the two ids: the same pair, the same id."""
    readable = f"cmp-{real_id}--{sim_id}"
    return readable if is_valid_id(readable) else f"cmp-{short_hash(canonical_json([real_id, sim_id]))}"


def _check_settings(app: CompareRunsAppConfig) -> list[float]:
    pcts = [float(p) for p in app.compare.percentiles]
    missing = [p for p in (50.0, 90.0, 99.0) if p not in pcts]
    if missing or any(not 0 <= p <= 100 for p in pcts) or len(set(pcts)) != len(pcts):
        raise InputError(
            f"compare.percentiles={pcts}: need distinct values in [0, 100] including 50, 90 and 99 (the headline's "
            f"{', '.join(s.upper() for s in HEADLINE_STATS)})"
        )
    if app.compare.tolerance_pct <= 0 or app.compare.max_plot_points < 10 or app.compare.timeline_requests < 0:
        raise InputError("compare: tolerance_pct must be > 0, max_plot_points >= 10 and timeline_requests >= 0")
    return pcts


def _counts(pair: PairedRuns, one_token: int) -> dict[str, int]:
    return {
        "requests_compared": len(pair.request_ids),
        "left_out_real": pair.left_out_real,
        "left_out_sim": pair.left_out_sim,
        "truncated_sim": pair.truncated_sim,
        "truncated_real": pair.truncated_real,
        "one_token_outputs": one_token,
        "arrival_mismatches": pair.arrival_mismatches,
    }


def compare_runs(app: CompareRunsAppConfig) -> Path:
    """Compare ``app.real_run`` with ``app.sim_run``; returns the comparison directory."""
    pcts = _check_settings(app)
    c = app.compare
    columns = (TextColumn("compare-runs: {task.description}"), BarColumn(), TimeElapsedColumn())
    console = Console(stderr=True)  # stdout stays for the headline; no bar (nor blank line) when not a terminal
    with Progress(*columns, transient=True, console=console, disable=not console.is_terminal) as progress:
        task = progress.add_task(STEPS[0], total=len(STEPS))

        def step(i: int) -> None:
            progress.update(task, completed=i, description=STEPS[i] if i < len(STEPS) else "done")

        pair = load_pair(Path(app.paths.real_runs), Path(app.paths.vidur_runs), app.real_run, app.sim_run,
                         allow_incomplete=bool(app.allow_incomplete))
        out = stage_output(app.paths.comparisons, app.comparison_id, lambda: comparison_id(pair.real.id, pair.sim.id),
                           overwrite=bool(app.overwrite), key="comparison_id")
        step(1)
        values = metric_values(pair)
        stats, dist = stats_and_distribution(values, pcts)
        requests = requests_frame(pair)
        step(2)
        phases = workload_phases(Path(app.paths.workloads), pair.real.workload_id)
        per_phase, phase_info = phase_stats(pair, phases, pcts) if phases else (None, [])
        iterations: Optional[IterationMatch] = None
        if pair.real.iterations is not None and pair.sim.iterations is not None:
            iterations = match_iterations(pair.real.iterations, pair.sim.iterations, list(c.prefill_bin_edges))
        step(3)
        verdict = simulated_with(pair.sim.meta, Path(app.paths.profiling))
        meta: dict[str, Any] = build_meta(
            kind="comparison", id=out.id, config=asdict(app),
            inputs={"real_run": pair.real.id, "sim_run": pair.sim.id, "workload_id": pair.real.workload_id,
                    "real_content": run_content(pair.real.path), "sim_content": run_content(pair.sim.path)},
            bundle={"id": pair.sim.meta["inputs"].get("bundle_id"), **({} if verdict is None else verdict.to_dict())},
            setup=setup(pair.real.meta, pair.sim.meta),
            load=offered_load(pair.real, pair.sim, Path(app.paths.workloads)),
            counts=_counts(pair, values["tpot"].excluded),
            unavailable_metrics=unavailable_metrics(pair),
            phases=phase_info,
            iterations=None if iterations is None else iterations.summary,
            caveats=caveats(pair),
            run_paths={"real": str(pair.real.path), "sim": str(pair.sim.path)},
        )
        records = error_records(stats, meta, pair.real.meta, pair.sim.meta)
        with out.write() as tmp:
            write_comparison_tables(tmp, stats, dist, requests, iterations, records, per_phase)
            step(4)
            figs = figures_dir(tmp)
            written = [
                plot_cdfs(figs / "cdf.png", values, dist, c.max_plot_points),
                plot_scatter(figs / "scatter.png", values, c.tolerance_pct, c.max_plot_points),
                plot_timeline(figs / "timeline.png", pair, c.timeline_requests),
                optional_step_figure(figs, pair, None if iterations is None else iterations.pairs, c.max_plot_points),
            ]
            names = [str(p.relative_to(tmp)) for p in written if p is not None]
            write_json(tmp / COMPARISON_META, meta)
            write_summary(tmp, meta, pair.real.meta, pair.sim.meta, stats, dist, names, float(c.tolerance_pct), per_phase)
            step(5)
    return out.path
