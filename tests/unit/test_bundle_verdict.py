"""The bundle verdict (specs/profiling_root.md, "Verdict"): one function, from the record in profile_meta.json."""

from __future__ import annotations

import re
from typing import Any

import pytest

from gpu_simulate_test.errors import InputError
from gpu_simulate_test.vidur_ext.verdict import bundle_verdict, require_accepted


def _meta(median: float | None, *, busy: bool | None = False, tolerance: float | None = 10.0, other: float = 0.1,
          **extra: Any) -> dict[str, Any]:
    table = [] if median is None else [{"shape": "prefill:128", "error_pct": -median}, {"shape": "decode:1x256", "error_pct": median}]
    check = {"num_shapes": len(table), "median_abs_error_pct": median, "max_abs_error_pct": median, "table": table}
    if tolerance is not None:
        check["tolerance_pct"] = tolerance
    host = {"other_cpu_cores": other, "busy": busy, "reasons": ["other processes used 1.40 CPU cores"] if busy else []}
    return {"source": "measured", "held_out_check": check, "host_load": host, **extra}


@pytest.mark.parametrize(("meta", "verdict", "reason"), [
    (_meta(3.7), "pass", r"held-out median \|error\| 3.7% <= tolerance 10% on 2 held-out shape\(s\)"),
    (_meta(62.0), "fail", r"62.0% > tolerance 10% .*decode:1x256 \+62.0%"),
    (_meta(4.0, busy=True, other=1.4), "busy", r"built on a busy host: other processes used 1.40 CPU cores"),
    (_meta(62.0, busy=True), "fail", r"built with other processes used"),  # both wrong: the errors speak first
    (_meta(12.0, tolerance=15.0), "pass", r"tolerance 15%"),
    (_meta(None), "unverified", r"no held-out shape"),
    # bundles made before verdicts: no tolerance and no host load recorded
    (_meta(3.7, tolerance=None), "unverified", r"built before bundles recorded a verdict .*; its held-out median \|error\| was 3.7%$"),
    ({"held_out_check": {"num_shapes": 1, "median_abs_error_pct": 3.7, "table": []}}, "unverified", r"built before"),
    # an imported bundle (Vidur's own profiles): never checked on this hardware
    ({"source": "imported", "verdict": "unverified"}, "unverified", r"imported bundle"),
])
def test_verdict(meta: dict[str, Any], verdict: str, reason: str) -> None:
    v = bundle_verdict(meta)
    assert v.verdict == verdict
    assert re.search(reason, v.reason), v.reason
    assert v.accepted is (verdict == "pass")


def _baselines(bundle: tuple[float, float], constant: tuple[float, float], linear: tuple[float, float]) -> dict[str, Any]:
    stat = lambda m, p: {"median_abs_error_pct": m, "p90_abs_error_pct": p}  # noqa: E731
    return {"num_shapes": 13, "fitted_on": "fit", "constant_ms": 3.0, "intercept_ms": 2.0, "per_token_ms": 0.01,
            "errors": {"bundle": stat(*bundle), "constant": stat(*constant), "linear": stat(*linear)}}


@pytest.mark.parametrize(("extra", "verdict", "reason"), [
    ({"baseline_check": _baselines((3.7, 6.0), (4.7, 70.0), (9.0, 15.0))}, "pass",
     r"beats the constant baseline \(4.7% median, 70.0% P90\) and the linear baseline \(9.0% median, 15.0% P90\)"),
    # the review's finding: a constant step scoring as well as the bundle on the median
    # on two test shapes a median and a P90 compare one or two noisy steps: not judged
    ({"baseline_check": {**_baselines((3.7, 6.0), (2.4, 70.0), (9.0, 15.0)), "num_shapes": 2}}, "pass", r"host quiet"),
    ({"baseline_check": _baselines((3.7, 6.0), (2.4, 70.0), (9.0, 15.0))}, "fail",
     r"does not beat its baselines on 2 held-out shape\(s\): median \|error\| 3.7% vs the constant baseline's 2.4%"),
    ({"baseline_check": _baselines((3.7, 16.0), (4.7, 70.0), (9.0, 15.0))}, "fail", r"P90 \|error\| 16.0% vs the linear"),
    ({"correction": {"variant": "step", "cap_pct": 10.0, "max_share_pct": 9.9}}, "pass", r"held-out median"),
    ({"correction": {"variant": "step", "cap_pct": 10.0, "max_share_pct": 12.5}}, "fail",
     r"whole-step correction is 12.5% of a predicted step, over its cap of 10%"),
    ({"correction": {"variant": "fold", "cap_pct": None, "max_share_pct": 60.0}}, "pass", r"held-out median"),  # no cap
    # the cap holds the fitted correction, not the measured decode graph term beside it (share_pct counts both)
    ({"correction": {"variant": "step", "cap_pct": 10.0, "max_share_pct": 11.9, "max_fitted_share_pct": 10.0}}, "pass",
     r"held-out median"),
    ({"correction": {"variant": "step", "cap_pct": 10.0, "max_share_pct": 11.9, "max_fitted_share_pct": 10.4}}, "fail",
     r"whole-step correction is 10.4% of a predicted step, over its cap of 10%"),
])
def test_baselines_and_correction_cap(extra: dict[str, Any], verdict: str, reason: str) -> None:
    v = bundle_verdict(_meta(3.7, **extra))
    assert (v.verdict, v.accepted) == (verdict, verdict == "pass")
    assert re.search(reason, v.reason), v.reason
    if "baseline_check" in extra and extra["baseline_check"]["num_shapes"] >= 5:
        assert v.p90_abs_error_pct == extra["baseline_check"]["errors"]["bundle"]["p90_abs_error_pct"]
        assert set(v.baselines) == {"constant", "linear"}


def test_a_bundle_that_is_not_pass_needs_accept_bundle() -> None:
    require_accepted(bundle_verdict(_meta(3.7)), "b", accept_bundle=False)
    for meta in (_meta(62.0), _meta(4.0, busy=True), {}):
        with pytest.raises(InputError, match=r"bundle b: verdict (fail|busy|unverified): .*accept_bundle=true") as exc:
            require_accepted(bundle_verdict(meta), "b", accept_bundle=False)
        assert "\n" not in str(exc.value)
        require_accepted(bundle_verdict(meta), "b", accept_bundle=True)
