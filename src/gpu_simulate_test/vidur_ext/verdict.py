"""A bundle's verdict: may a simulation trust it? Defined in ``specs/profiling_root.md`` ("Verdict") and computed
here only, by :func:`bundle_verdict`, which vidur-profile (to record it), vidur-sim and experiment (to refuse a
bundle that is not ``pass`` without ``accept_bundle=true``) and compare-runs (to quote it next to the headline) call.

The verdict is derived from the record a bundle carries in ``profile_meta.json``: ``source``, ``held_out_check``
(the held-out errors and the tolerance they were judged against) and ``host_load`` (how busy the host was while it
was measured). A later check adds its own record and its own way to fail; these keys keep their meaning.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from gpu_simulate_test.errors import InputError

PASS, FAIL, BUSY, UNVERIFIED = "pass", "fail", "busy", "unverified"
VERDICTS = (PASS, FAIL, BUSY, UNVERIFIED)
MEASURED, IMPORTED = "measured", "imported"  # ``source``: built here by vidur-profile, or imported from elsewhere


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
        return BundleVerdict(UNVERIFIED, "no held-out shape was measured; list some in profile.held_out", **numbers)
    shapes = f"on {len(errors)} held-out shape(s)"
    if median > tol:
        return BundleVerdict(FAIL, f"held-out median |error| {median:.1f}% > tolerance {tol:g}% {shapes} ({_worst(errors)}); "
                                   f"built with {host_text}", **numbers)
    if busy is True:
        return BundleVerdict(BUSY, f"built on a busy host: {host_text} (held-out median |error| {median:.1f}%, "
                                   f"tolerance {tol:g}%)", **numbers)
    return BundleVerdict(PASS, f"held-out median |error| {median:.1f}% <= tolerance {tol:g}% {shapes} "
                               f"(max {worst if worst is not None else float('nan'):.1f}%); {host_text}", **numbers)


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
