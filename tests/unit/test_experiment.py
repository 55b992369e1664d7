"""The experiment app: stages chained by id, finished stages reused, capacity-relative load."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from gpu_simulate_test.errors import InputError
from gpu_simulate_test.experiment import StageFunctions, run_experiment
from gpu_simulate_test.io.meta import build_meta, write_json


class FakeStages:
    """Stage functions that only write a meta file, and count their calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.workload_qps: list[float] = []
        self.overwrite: list[bool] = []  # what each stage was told

    def _dir(self, root: str, name: str, meta_name: str, kind: str) -> Path:
        d = Path(root) / name
        d.mkdir(parents=True, exist_ok=True)
        write_json(d / meta_name, build_meta(kind=kind, id=name, config={}, inputs={}))
        return d

    def functions(self) -> StageFunctions:
        def workload(cfg: Any) -> Path:
            self.calls.append("workload")
            self.overwrite.append(cfg.overwrite)
            self.workload_qps.append(float(cfg.workload.arrival.qps))
            return self._dir(cfg.paths.workloads, f"w{cfg.workload.arrival.qps:g}", "workload_meta.json", "workload")

        def real(cfg: Any) -> Path:
            self.calls.append("real")
            self.overwrite.append(cfg.overwrite)
            return self._dir(cfg.paths.real_runs, f"real-{len(self.calls)}", "run_meta.json", "real_run")

        def profile(cfg: Any) -> Path:
            self.calls.append("profile")
            return self._dir(cfg.paths.profiling, "bundle", "profile_meta.json", "profile_bundle")

        def sim(cfg: Any) -> Path:
            self.calls.append("sim")
            assert cfg.profiling_root == "bundle"
            assert cfg.real_run.startswith("real-")  # the point's real run: its recorded KV pool (native)
            return self._dir(cfg.paths.vidur_runs, f"sim-{len(self.calls)}", "run_meta.json", "vidur_run")

        def compare(cfg: Any) -> Path:
            self.calls.append("compare")
            assert cfg.real_run.startswith("real-") and cfg.sim_run.startswith("sim-")
            return self._dir(cfg.paths.comparisons, f"cmp-{len(self.calls)}", "comparison_meta.json", "comparison")

        return StageFunctions(workload, real, profile, sim, compare)


def test_point_runs_every_stage_once_then_resumes(compose_app: Callable[..., Any]) -> None:
    fake = FakeStages()
    cfg = compose_app("experiment", ["load.qps=3"])
    rec = run_experiment(cfg, fake.functions())
    assert fake.calls == ["workload", "real", "profile", "sim", "compare"]
    assert rec.offered_qps == 3 and rec.comparison_id
    again = run_experiment(cfg, fake.functions())
    assert fake.calls[5:] == ["workload", "profile"]  # content-addressed stages are asked again, runs are reused
    assert again == rec


def test_overwrite_runs_every_stage_of_the_point_again(compose_app: Callable[..., Any]) -> None:
    fake = FakeStages()
    first = run_experiment(compose_app("experiment", ["load.qps=3"]), fake.functions())
    again = run_experiment(compose_app("experiment", ["load.qps=3", "overwrite=true"]), fake.functions())
    assert fake.calls == ["workload", "real", "profile", "sim", "compare"] * 2
    assert fake.overwrite == [False, False, True, True]  # workload and real of each invocation
    assert again.point_key == first.point_key and again.real_run != first.real_run


def test_gpu_half_then_local_half(compose_app: Callable[..., Any]) -> None:
    """A GPU machine runs workload/real/profile and archives; the sim and comparison run later from the record."""
    fake = FakeStages()
    gpu = compose_app("experiment", ["load.qps=2", "stages=[workload,real,profile]"])
    archive = Path(gpu.paths.root) / "archives"
    gpu.archive_dir = str(archive)
    rec = run_experiment(gpu, fake.functions())
    assert rec.sim_run is None and "sim" not in fake.calls
    assert (archive / f"{rec.point_key}.tar.gz").is_file()
    local = run_experiment(compose_app("experiment", ["load.qps=2"]), fake.functions())
    assert local.real_run == rec.real_run and fake.calls.count("real") == 1
    assert local.sim_run and local.comparison_id


def test_capacity_fraction_scales_the_offered_rate(compose_app: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    import gpu_simulate_test.experiment as exp

    monkeypatch.setattr(exp, "probe_capacity", lambda cfg, stages: 10.0)
    fake = FakeStages()
    rec = run_experiment(compose_app("experiment", ["load.capacity_fraction=0.25"]), fake.functions())
    assert fake.workload_qps == [2.5] and rec.capacity_rps == 10.0


def test_arrival_span_sizes_the_point(compose_app: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """A slow engine's low-load points get fewer requests: ceil(rate x span), never more than the workload has."""
    import gpu_simulate_test.experiment as exp

    monkeypatch.setattr(exp, "probe_capacity", lambda cfg, stages: 2.0)
    sized = {}
    for fraction in (0.1, 0.5, 1.0):
        cfg = compose_app("experiment", [f"load.capacity_fraction={fraction}", "load.max_arrival_span_s=7", "workload.num_requests=10"])
        sized[fraction] = exp._workload_cfg(cfg, fraction * 2.0).workload.num_requests
    assert sized == {0.1: 2, 0.5: 7, 1.0: 10}
    with pytest.raises(InputError, match="max_arrival_span_s"):
        exp._workload_cfg(compose_app("experiment", ["load.max_arrival_span_s=7"]), None)
    with pytest.raises(InputError, match="max_arrival_span_s"):
        exp._workload_cfg(compose_app("experiment", ["load.qps=1", "load.max_arrival_span_s=0"]), 1.0)


def test_bad_stage_and_conflicting_load(compose_app: Callable[..., Any]) -> None:
    with pytest.raises(InputError, match="unknown"):
        run_experiment(compose_app("experiment", ["stages=[workload,magic]"]), FakeStages().functions())
    with pytest.raises(InputError, match="not both"):
        run_experiment(compose_app("experiment", ["load.qps=1", "load.capacity_fraction=0.5"]), FakeStages().functions())
