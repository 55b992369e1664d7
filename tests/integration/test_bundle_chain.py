"""Issue 14's story, end to end on the CPU: a bundle measured beside a busy neighbour, a sweep that would have
trusted it, and the rebuild that must replace what was made from it, with no file deleted by hand.

The distortion is injected where a busy host distorts a build: the step times the profiler reads (one held-out
decode shape 40x slower, as the 141 ms against 3 ms of the issue) and the busy-host probe (reporting a neighbour).
The rebuilt bundle gets a quiet probe: on a shared test host the real probe would call it busy too.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import pytest

import gpu_simulate_test.vidur_ext.profiler.bundle as bundle_mod
from gpu_simulate_test.device.busy import HostLoad
from gpu_simulate_test.errors import InputError
from gpu_simulate_test.experiment import run_experiment
from gpu_simulate_test.io.meta import read_meta
from gpu_simulate_test.vidur_ext.profiler import run_vidur_profile
from gpu_simulate_test.vidur_ext.profiler.iterations import ShapeSamples, StepTimer

pytestmark = pytest.mark.slow

POINT = ["workload=demo", "workload.num_requests=4", "workload.lengths.prefill.max=64", "workload.lengths.decode.max=8",
         "profile.held_out_tolerance_pct=30"]
LOADS = (2.0, 4.0)  # the sweep: two offered rates


class _Probe:
    """Stands in for the busy-host probe: reports the host as ``busy`` or quiet, whatever it really is."""

    busy = False

    def __init__(self, gpu: Any = None) -> None:
        pass

    def start(self) -> "_Probe":
        return self

    def stop(self) -> HostLoad:
        other = 1.6 if self.busy else 0.0
        return HostLoad(wall_s=10.0, cpu_count=2, threshold_cores=0.5, own_cpu_cores=1.0, other_cpu_cores=other, busy=self.busy,
                        reasons=[f"other processes used {other:.2f} CPU cores on average (more than 0.5)"] if self.busy else [])


def _summary_line(paths: Any, comparison_id: str) -> str:
    text = (Path(paths.comparisons) / comparison_id / "summary.md").read_text()
    return next(line for line in text.splitlines() if line.startswith("Simulated with bundle"))


def test_a_bad_bundle_is_refused_then_its_rebuild_replaces_what_was_made_from_it(
        compose_app: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    points = {qps: compose_app("experiment", [*POINT, f"load.qps={qps}"]) for qps in LOADS}
    paths = points[LOADS[0]].paths
    # The point's workload, as experiment writes it, and the bundle vidur-profile builds for it.
    wid = run_experiment(compose_app("experiment", [*POINT, f"load.qps={LOADS[0]}", "stages=[workload]"])).workload_id
    profile = compose_app("vidur_profile", [f"workload_id={wid}", "profile.held_out_tolerance_pct=30"])

    # 1. Built beside a busy neighbour: a held-out decode step 40x slow, and the probe sees the neighbour.
    measure = StepTimer.measure

    def distorted(self: StepTimer, backend: Any, recorder: Any, shape: Any, probe: Any = None) -> ShapeSamples:
        got = measure(self, backend, recorder, shape, probe)
        return replace(got, ns=got.ns * 40) if str(shape) == "decode:1x256" else got

    monkeypatch.setattr(StepTimer, "measure", distorted)
    monkeypatch.setattr(bundle_mod, "BusyProbe", type("Busy", (_Probe,), {"busy": True}))
    bad = run_vidur_profile(profile)
    assert bad.verdict.verdict == "fail" and bad.verdict.median_abs_error_pct > 30 and bad.verdict.busy is True
    assert read_meta(bad.path / "profile_meta.json")["verdict"] == "fail"

    # 2. The sweep is refused, point by point, before anything is measured.
    for qps, cfg in points.items():
        with pytest.raises(InputError, match=rf"bundle {bad.path}: verdict fail: held-out median \|error\| .*accept_bundle=true"):
            run_experiment(cfg)
    assert not Path(paths.real_runs).exists()

    # 3. Accepted on purpose: the comparisons say which bundle they trusted, and how bad it was.
    first = {qps: run_experiment(compose_app("experiment", [*POINT, f"load.qps={qps}", "accept_bundle=true"])) for qps in LOADS}
    for rec in first.values():
        assert rec.bundle_id == bad.path.name
        assert _summary_line(paths, rec.comparison_id).startswith(f"Simulated with bundle `{bad.path.name}`: verdict **fail**")

    # 4. Rebuilt on a quiet host: same id, new measurements.
    monkeypatch.setattr(StepTimer, "measure", measure)
    monkeypatch.setattr(bundle_mod, "BusyProbe", _Probe)
    good = run_vidur_profile(compose_app("vidur_profile", [f"workload_id={wid}", "profile.held_out_tolerance_pct=30",
                                                           "overwrite=true"]))
    assert good.path == bad.path and good.verdict.verdict == "pass", good.verdict.line()

    # 5. The same sweep again, nothing deleted by hand: the real runs are kept, simulations and comparisons are new.
    for qps, cfg in points.items():
        again = run_experiment(cfg)
        before = first[qps]
        assert again.real_run == before.real_run and again.bundle_id == before.bundle_id
        assert again.sim_run != before.sim_run and again.comparison_id != before.comparison_id
        sim = read_meta(Path(paths.vidur_runs) / again.sim_run / "run_meta.json")
        assert sim["bundle_verdict"]["verdict"] == "pass"
        assert _summary_line(paths, again.comparison_id).startswith(f"Simulated with bundle `{good.path.name}`: verdict **pass**")
        assert run_experiment(cfg) == again  # and from now on, reused
