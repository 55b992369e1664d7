"""A bundle's verdict: may a simulation trust it? Defined in ``specs/profiling_root.md`` ("Verdict") and computed
here only, by :func:`bundle_verdict`, which vidur-profile (to record it), vidur-sim and experiment (to refuse a
bundle that is not ``pass`` without ``accept_bundle=true``) and compare-runs (to quote it next to the headline) call.

The verdict is derived from the record a bundle carries in ``profile_meta.json``: ``source``, ``held_out_check``
(the held-out errors and the tolerance they were judged against) and ``host_load`` (how busy the host was while it
was measured). A later check adds its own record and its own way to fail; these keys keep their meaning. Issue 16
added two: ``baseline_check`` (the bundle must beat a constant step and a step linear in tokens, both fitted on its
fit shapes, on the median and the P90 |error| of its test shapes) and ``correction`` (the step variant's whole-step
correction must stay within its cap on every measured shape). Bundles without them are judged as before.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from gpu_simulate_test.errors import InputError

PASS, FAIL, BUSY, UNVERIFIED = "pass", "fail", "busy", "unverified"
VERDICTS = (PASS, FAIL, BUSY, UNVERIFIED)
MEASURED, IMPORTED = "measured", "imported"  # ``source``: built here by vidur-profile, or imported from elsewhere
# The baselines are judged on at least this many test shapes: a median and a P90 over fewer are one or two noisy
# shapes, not a comparison (the CPU profile runs 2-4; the H200 profile 13).
MIN_BASELINE_SHAPES = 5


@dataclass(frozen=True)
class BundleVerdict:
    """The verdict and the numbers behind it (errors in %, signed as (predicted - measured) / measured)."""

    verdict: str
    reason: str
    tolerance_pct: Optional[float] = None
    median_abs_error_pct: Optional[float] = None
    max_abs_error_pct: Optional[float] = None
    errors_pct: dict[str, float] = field(default_factory=dict)  # held-out shape -> signed error
    other_cpu_cores: Optional[float] = None
    busy: Optional[bool] = None
    p90_abs_error_pct: Optional[float] = None  # the bundle's on the test shapes (baseline_check)
    baselines: dict[str, dict[str, Optional[float]]] = field(default_factory=dict)  # constant / linear: median, p90
    correction_share_pct: Optional[float] = None  # the largest share of a predicted step that is correction
    correction_cap_pct: Optional[float] = None  # the step variant's cap on that share

    @property
    def accepted(self) -> bool:
        """Whether a simulation may use the bundle without ``accept_bundle=true``."""
        return self.verdict == PASS

    def line(self) -> str:
        """One line for logs and summaries: the verdict, then why."""
        return f"{self.verdict}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _num(value: Any) -> Optional[float]:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def bundle_verdict(meta: Mapping[str, Any]) -> BundleVerdict:
    """The verdict of the bundle whose ``profile_meta.json`` is ``meta`` (see the module docstring)."""
    source = meta.get("source", MEASURED)
    if source != MEASURED:
        return BundleVerdict(UNVERIFIED, f"{source} bundle: no held-out check was measured on this hardware")
    check = meta.get("held_out_check") if isinstance(meta.get("held_out_check"), Mapping) else {}
    host = meta.get("host_load")
    errors = {str(r["shape"]): float(r["error_pct"]) for r in check.get("table") or []}
    median, worst = _num(check.get("median_abs_error_pct")), _num(check.get("max_abs_error_pct"))
    tol = _num(check.get("tolerance_pct"))
    if tol is None or not isinstance(host, Mapping):
        recorded = f"; its held-out median |error| was {median:.1f}%" if median is not None else ""
        return BundleVerdict(UNVERIFIED, f"built before bundles recorded a verdict (no tolerance or host load recorded){recorded}",
                             median_abs_error_pct=median, max_abs_error_pct=worst, errors_pct=errors)
    other, busy = _num(host.get("other_cpu_cores")), host.get("busy")
    numbers = dict(tolerance_pct=tol, median_abs_error_pct=median, max_abs_error_pct=worst, errors_pct=errors,
                   other_cpu_cores=other, busy=busy if isinstance(busy, bool) else None)
    host_text = "; ".join(host.get("reasons") or []) or "host quiet" + (f" ({other:.2f} other CPU cores)" if other is not None else "")
    if median is None:
        return BundleVerdict(UNVERIFIED, "no held-out shape was measured; list some in profile.test", **numbers)
    shapes = f"on {len(errors)} held-out shape(s)"
    if median > tol:
        return BundleVerdict(FAIL, f"held-out median |error| {median:.1f}% > tolerance {tol:g}% {shapes} ({_worst(errors)}); "
                                   f"built with {host_text}", **numbers)
    baselines, baseline_fail = _baselines(meta)
    share, cap = _correction(meta)
    numbers.update(p90_abs_error_pct=(baselines.pop("bundle", {}) or {}).get("p90_abs_error_pct"), baselines=baselines,
                   correction_share_pct=share, correction_cap_pct=cap)
    if baseline_fail:
        return BundleVerdict(FAIL, f"does not beat its baselines {shapes}: {baseline_fail}; built with {host_text}",
                             **numbers)
    if share is not None and cap is not None and share > cap + 1e-6:
        return BundleVerdict(FAIL, f"its whole-step correction is {share:.1f}% of a predicted step, over its cap of "
                                   f"{cap:g}% (profile.correction_cap_pct); built with {host_text}", **numbers)
    if busy is True:
        return BundleVerdict(BUSY, f"built on a busy host: {host_text} (held-out median |error| {median:.1f}%, "
                                   f"tolerance {tol:g}%)", **numbers)
    beats = ("; beats " + " and ".join(f"the {k} baseline ({_pct(v.get('median_abs_error_pct'))} median, "
                                        f"{_pct(v.get('p90_abs_error_pct'))} P90)" for k, v in baselines.items())
             if baselines else "")
    return BundleVerdict(PASS, f"held-out median |error| {median:.1f}% <= tolerance {tol:g}% {shapes} "
                               f"(max {worst if worst is not None else float('nan'):.1f}%){beats}; {host_text}", **numbers)


def _pct(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.1f}%"


def _baselines(meta: Mapping[str, Any]) -> tuple[dict[str, dict[str, Optional[float]]], Optional[str]]:
    """``baseline_check``'s errors (bundle, constant, linear: median and P90 |error|) and, if the bundle does not
    have a lower median and a lower P90 than each baseline, why (None when it does; nothing without the record or on
    fewer than :data:`MIN_BASELINE_SHAPES` test shapes)."""
    record = meta.get("baseline_check")
    if not isinstance(record, Mapping) or not isinstance(record.get("errors"), Mapping):
        return {}, None
    if int(record.get("num_shapes") or 0) < MIN_BASELINE_SHAPES:
        return {}, None
    errors = {str(k): {s: _num((v or {}).get(s)) for s in ("median_abs_error_pct", "p90_abs_error_pct")}
              for k, v in record["errors"].items()}
    bundle = errors.get("bundle", {})
    worse = []
    for name in ("constant", "linear"):
        base = errors.get(name)
        if base is None:
            continue
        for stat, label in (("median_abs_error_pct", "median"), ("p90_abs_error_pct", "P90")):
            b, o = bundle.get(stat), base.get(stat)
            if b is None or o is None or not b < o:
                worse.append(f"{label} |error| {_pct(b)} vs the {name} baseline's {_pct(o)}")
    return errors, "; ".join(worse) or None


def _correction(meta: Mapping[str, Any]) -> tuple[Optional[float], Optional[float]]:
    """``correction``'s largest share of a predicted step that the cap holds, and the cap (None: no cap, or no
    record): the fitted correction's (``max_fitted_share_pct``); bundles built before it recorded only the share
    beside the operators (``max_share_pct``), measured terms included."""
    record = meta.get("correction")
    if not isinstance(record, Mapping):
        return None, None
    fitted = _num(record.get("max_fitted_share_pct"))
    return fitted if fitted is not None else _num(record.get("max_share_pct")), _num(record.get("cap_pct"))


def _worst(errors: Mapping[str, float], n: int = 3) -> str:
    top = sorted(errors.items(), key=lambda kv: -abs(kv[1]))[:n]
    return ", ".join(f"{shape} {err:+.1f}%" for shape, err in top)


def simulated_with(sim_meta: Mapping[str, Any], profiling_dir: Path) -> Optional[BundleVerdict]:
    """The verdict of the bundle a simulated run used: computed from that bundle when it is under ``profiling_dir``,
    else as the run recorded it (``bundle_verdict`` in its meta); None when neither is at hand."""
    from gpu_simulate_test.io.meta import read_meta
    from gpu_simulate_test.io.outputs import PROFILE_META

    bundle = (sim_meta.get("inputs") or {}).get("bundle_id")
    meta_path = Path(profiling_dir) / str(bundle) / PROFILE_META
    if bundle and meta_path.is_file():
        return bundle_verdict(read_meta(meta_path))
    record = sim_meta.get("bundle_verdict")
    return BundleVerdict(**record) if isinstance(record, Mapping) else None


def require_accepted(verdict: BundleVerdict, bundle: Path | str, accept_bundle: bool) -> None:
    """Refuse a bundle whose verdict is not ``pass``, unless the user accepts it (``accept_bundle=true``)."""
    if verdict.accepted or accept_bundle:
        return
    raise InputError(
        f"bundle {bundle}: verdict {verdict.line()}; rebuild it (vidur-profile ... overwrite=true, on a quiet host) "
        "or pass accept_bundle=true to simulate with it anyway"
    )
