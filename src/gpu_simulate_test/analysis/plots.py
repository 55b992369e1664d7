"""The comparison's figures (matplotlib, Agg backend: no display needed).

Statistics use every value; plots draw at most ``max_points`` per series (evenly spaced quantiles
for CDFs, a seeded subsample for scatters) so that ten million tokens plot in a second.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from gpu_simulate_test.analysis.align import PairedRuns  # noqa: E402
from gpu_simulate_test.analysis.metrics import METRICS, MetricValues  # noqa: E402

FIGS_DIR = "figs"
REAL_STYLE = {"color": "tab:blue", "label": "real"}
SIM_STYLE = {"color": "tab:orange", "label": "sim (Vidur)"}
MS = 1e-6
DPI = 110


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def _wide(values: np.ndarray) -> bool:
    """Log axes when the positive values span more than two decades."""
    pos = values[values > 0]
    return len(pos) > 1 and pos.max() / pos.min() > 100


def _quantile_points(sorted_values: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    n = len(sorted_values)
    if n <= max_points:
        return sorted_values, np.arange(1, n + 1) / n
    idx = np.unique(np.linspace(0, n - 1, max_points).round().astype(np.int64))
    return sorted_values[idx], (idx + 1) / n


def _subsample(n: int, max_points: int, seed: int = 0) -> np.ndarray:
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))


def plot_cdfs(path: Path, values: dict[str, MetricValues], dist: pd.DataFrame, max_points: int) -> Path:
    """CDF overlays of TTFT, TPOT, ITL and E2E, with KS and Wasserstein in each title."""
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    d = dist.set_index("metric")
    for ax, name in zip(axes.ravel(), ("ttft", "tpot", "itl", "e2e")):
        mv = values.get(name)
        if mv is None:  # not comparable (no request has every token's time): summary.md says why
            ax.set_title(f"{METRICS[name].label} CDF")
            ax.text(0.5, 0.5, "not compared (see summary.md)", ha="center", transform=ax.transAxes)
            continue
        ax.set_title(f"{mv.metric.label} CDF")
        if len(mv.real) == 0:
            ax.text(0.5, 0.5, "no values", ha="center", transform=ax.transAxes)
            continue
        for data, style in ((mv.real, REAL_STYLE), (mv.sim, SIM_STYLE)):
            x, y = _quantile_points(np.sort(data), max_points)
            ax.step(x * MS, y, where="post", **style)
        if _wide(np.concatenate((mv.real, mv.sim))):
            ax.set_xscale("log")
        ks, w = d.loc[name, "ks_statistic"], d.loc[name, "wasserstein"]
        ax.set_title(f"{mv.metric.label} CDF  (n={len(mv.real):,}, KS={ks:.3f}, W1={w * MS:.3g} ms)", fontsize=10)
        ax.set_xlabel(f"{mv.metric.label} (ms)")
        ax.set_ylabel("fraction ≤ x")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    fig.suptitle("Latency distributions: real vs simulated")
    fig.tight_layout()
    return _save(fig, path)


def plot_scatter(path: Path, values: dict[str, MetricValues], tolerance_pct: float, max_points: int) -> Path:
    """Per-request sim vs real with the y = x line and the ±tolerance band."""
    fig, axes = plt.subplots(2, 2, figsize=(10, 9))
    for ax, name in zip(axes.ravel(), ("ttft", "tpot", "e2e", "e2e_per_token")):
        mv = values[name]
        ax.set_title(f"{mv.metric.label} per request")
        if len(mv.real) == 0:
            ax.text(0.5, 0.5, "no values", ha="center", transform=ax.transAxes)
            continue
        idx = _subsample(len(mv.real), max_points)
        x, y = mv.real[idx] * MS, mv.sim[idx] * MS
        ax.scatter(x, y, s=9, alpha=0.5, color="tab:purple", linewidths=0,
                   label=f"request ({len(idx):,} of {len(mv.real):,})" if len(idx) < len(mv.real) else "request")
        lo = float(min(x.min(), y.min()))
        hi = float(max(x.max(), y.max()))
        if _wide(np.concatenate((x, y))):
            ax.set_xscale("log")
            ax.set_yscale("log")
            lo = max(lo, float(np.concatenate((x, y))[np.concatenate((x, y)) > 0].min()))
        line = np.linspace(lo, hi, 100)
        ax.plot(line, line, "k-", lw=1, label="y = x")
        t = tolerance_pct / 100
        ax.plot(line, line * (1 + t), "k:", lw=0.8, label=f"±{tolerance_pct:g}%")
        ax.plot(line, line * (1 - t), "k:", lw=0.8)
        unit = "ms/token" if mv.metric.unit == "ns/token" else "ms"
        ax.set_xlabel(f"real {mv.metric.label} ({unit})")
        ax.set_ylabel(f"simulated {mv.metric.label} ({unit})")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
    fig.suptitle("Per-request latency: simulated vs real")
    fig.tight_layout()
    return _save(fig, path)


def timeline_requests(pair: PairedRuns, k: int) -> np.ndarray:
    """Positions of ``k`` requests spread over the real E2E range (shortest, ..., longest)."""
    n = len(pair.request_ids)
    if n == 0 or k <= 0:
        return np.empty(0, dtype=np.int64)
    ts = pair.real_tokens
    e2e = ts.times_ns[ts.offsets[1:] - 1] - ts.arrival_ns
    order = np.argsort(e2e, kind="stable")
    return order[np.unique(np.linspace(0, n - 1, min(k, n)).round().astype(np.int64))]


def plot_timeline(path: Path, pair: PairedRuns, k: int) -> Path:
    """Token index against time since arrival for a few requests: real solid, simulated dashed; a series with only
    some token times (imported without per-token times) shows those tokens alone (circles), nothing drawn between."""
    fig, ax = plt.subplots(figsize=(10, 6))
    colors = plt.get_cmap("tab10")
    for j, i in enumerate(timeline_requests(pair, k)):
        c = colors(j % 10)
        rid = int(pair.request_ids[i])
        for ts, ls, who in ((pair.real_tokens, "-", "real"), (pair.sim_tokens, "--", "sim")):
            off = ts.offsets
            t = (ts.times_ns[off[i]:off[i + 1]] - ts.arrival_ns[i]) * MS
            y = ts.index[off[i]:off[i + 1]] + 1
            if ts.partial[i]:  # a line would stand for the unknown times between
                ax.plot(t, y, "o", color=c, mfc="none", label=f"r{rid} {who} (some tokens)")
            else:
                ax.plot(t, y, ls, color=c, lw=1.5, marker="." if len(t) <= 50 else None, label=f"r{rid} {who}")
    ax.set_xlabel("time since scheduled arrival (ms)")
    ax.set_ylabel("output tokens produced")
    ax.set_title("Token timelines (solid: real, dashed: simulated); requests from shortest to longest real E2E")
    ax.grid(alpha=0.3)
    ax.legend(ncol=2, fontsize=8, loc="upper left")
    fig.tight_layout()
    return _save(fig, path)


def _steps(it: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "batch_size": it["batch_size"].to_numpy(),
            "prefill": it["num_prefill_tokens"].to_numpy(),
            "step_ms": (it["end_time_ns"] - it["start_time_ns"]).to_numpy() * MS,
        }
    )


def _band(ax: Axes, df: pd.DataFrame, by: str, style: dict[str, str], dx: float = 0.0) -> None:
    """Median per ``by`` value, with a P10-P90 error bar (readable even for a single batch size)."""
    if df.empty:
        return
    q = df.groupby(by)["step_ms"].quantile([0.1, 0.5, 0.9]).unstack()
    x = q.index.to_numpy(dtype=np.float64) + dx
    err = np.vstack((q[0.5] - q[0.1], q[0.9] - q[0.5]))
    ax.errorbar(x, q[0.5], yerr=err, marker="o", ms=4, capsize=3, lw=1.2, **style)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def plot_step_time(path: Path, real_it: pd.DataFrame, sim_it: pd.DataFrame, pairs: pd.DataFrame, max_points: int) -> Path:
    """Step time vs batch size (decode-only steps), vs prefill tokens (steps with prefill), and matched-step error."""
    fig, axes = plt.subplots(1, 3, figsize=(16, 5))
    real, sim = _steps(real_it), _steps(sim_it)
    ax = axes[0]
    for df, style in ((real, REAL_STYLE), (sim, SIM_STYLE)):
        _band(ax, df[df["prefill"] == 0], "batch_size", style, dx=-0.08 if style is REAL_STYLE else 0.08)
    ax.set_title("Decode-only steps: median, P10–P90 bars")
    ax.set_xlabel("batch size (requests)")
    ax.set_ylabel("step time (ms)")
    ax.legend()
    ax = axes[1]
    for df, style in ((real, REAL_STYLE), (sim, SIM_STYLE)):
        p = df[df["prefill"] > 0]
        idx = _subsample(len(p), max_points)
        ax.scatter(p["prefill"].to_numpy()[idx], p["step_ms"].to_numpy()[idx], s=8, alpha=0.5, linewidths=0, **style)
    ax.set_title("Steps with prefill")
    ax.set_xlabel("prefill tokens in the step")
    ax.set_ylabel("step time (ms)")
    ax.legend()
    ax = axes[2]
    if len(pairs):
        real_ns = pairs["real_step_ns"].to_numpy(np.float64)
        err = np.where(real_ns > 0, 100 * (pairs["sim_step_ns"] - real_ns) / np.where(real_ns > 0, real_ns, 1), np.nan)
        df = pd.DataFrame({"batch_size": pairs["batch_size"], "step_ms": err, "kind": pairs["num_prefill_tokens"] > 0})
        _band(ax, df[~df["kind"]], "batch_size", {"color": "tab:green", "label": "decode-only"}, dx=-0.08)
        _band(ax, df[df["kind"]], "batch_size", {"color": "tab:red", "label": "with prefill"}, dx=0.08)
        ax.axhline(0, color="k", lw=0.8)
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no iteration matched\n(schedulers diverged)", ha="center", transform=ax.transAxes)
    n_r, n_s = len(real_it), len(sim_it)
    ax.set_title(f"Matched steps: step-time error ({len(pairs):,} matched of {n_r:,} real / {n_s:,} sim)", fontsize=9)
    ax.set_xlabel("batch size (requests)")
    ax.set_ylabel("100 (sim − real) / real (%)")
    sizes = np.concatenate((real["batch_size"].to_numpy(), sim["batch_size"].to_numpy()))
    for a in (axes[0], axes[2]):
        a.set_xlim(sizes.min() - 0.5, sizes.max() + 0.5)
    for a in axes:
        a.grid(alpha=0.3)
    fig.suptitle("Engine step time: real vs predicted")
    fig.tight_layout()
    return _save(fig, path)


def plot_sweep(dest: Path, sweep: pd.DataFrame, tolerance_pct: float, metrics: tuple[str, ...], labels: dict[str, str],
               stats: tuple[str, ...] = ("p50", "p90", "p99")) -> list[Path]:
    """Latency vs load (real solid, sim dashed) and error vs load, one panel per metric."""
    out: list[Path] = []
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 4.5), squeeze=False)
    colors = dict(zip(stats, ("tab:blue", "tab:orange", "tab:red", "tab:green")))
    for ax, m in zip(axes[0], metrics):
        for st in stats:
            d = sweep[(sweep["metric"] == m) & (sweep["statistic"] == st)].sort_values("load_qps")
            ax.plot(d["load_qps"], d["real"] * MS, "-o", color=colors[st], label=f"{st} real")
            ax.plot(d["load_qps"], d["sim"] * MS, "--s", color=colors[st], label=f"{st} sim")
        ax.set_title(f"{labels[m]} vs load")
        ax.set_xlabel("load (requests/s)")
        ax.set_ylabel(f"{labels[m]} (ms)")
        ax.grid(alpha=0.3)
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=len(names), fontsize=9)
    fig.suptitle("Latency vs load: real (solid) and simulated (dashed)")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    out.append(_save(fig, dest / "sweep_latency.png"))
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 4.5), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        for st in stats:
            d = sweep[(sweep["metric"] == m) & (sweep["statistic"] == st)].sort_values("load_qps")
            ax.plot(d["load_qps"], d["error_pct"], "-o", color=colors[st], label=st)
        ax.axhspan(-tolerance_pct, tolerance_pct, color="green", alpha=0.1, label=f"±{tolerance_pct:g}%")
        ax.axhline(0, color="k", lw=0.8)
        ax.set_title(f"{labels[m]} error vs load")
        ax.set_xlabel("load (requests/s)")
        ax.set_ylabel("100 (sim − real) / real (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Simulation error vs load")
    fig.tight_layout()
    out.append(_save(fig, dest / "sweep_error.png"))
    return out


def figures_dir(dest: Path) -> Path:
    d = Path(dest) / FIGS_DIR
    d.mkdir(parents=True, exist_ok=True)
    return d


def optional_step_figure(dest: Path, pair: PairedRuns, pairs: Optional[pd.DataFrame], max_points: int) -> Optional[Path]:
    """The step-time figure when both runs recorded iterations."""
    if pairs is None or pair.real.iterations is None or pair.sim.iterations is None:
        return None
    return plot_step_time(dest / "step_time.png", pair.real.iterations, pair.sim.iterations, pairs, max_points)
