"""The experiment app: stages chained by id, outputs reused while what they were made from is unchanged (by
content), cheap checks before any measurement, capacity-relative load."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from gpu_simulate_test.errors import InputError
from gpu_simulate_test.experiment import StageFunctions, run_experiment
from gpu_simulate_test.io.ids import content_hash
from gpu_simulate_test.io.meta import build_meta, write_json
from gpu_simulate_test.io.runs import recorded_backend, run_content
from gpu_simulate_test.testing import make_workload
from gpu_simulate_test.vidur_ext.profiler import sized_for_workload
from gpu_simulate_test.vidur_ext.profiler.bundle import bundle_id
from gpu_simulate_test.vidur_ext.profiling_root import bundle_content


class FakeStages:
    """Stage functions that write what each real stage records of its inputs (ids and content fingerprints), without
    measuring or simulating anything, and count their calls."""

    def __init__(self, verdict_error_pct: float = 1.0, num_blocks: Optional[int] = None) -> None:
        self.calls: list[str] = []
        self.workload_qps: list[float] = []
        self.workload_sizes: list[int] = []
        self.time_scales: list[float] = []
        self.overwrite: list[bool] = []  # what the workload and real stages were told
        self.verdict_error_pct = verdict_error_pct  # the held-out error of the bundles the fake profile builds
        self.builds = 0
        self.num_blocks = num_blocks  # the KV pool the fake real runs record (an engine that sizes its own: native)

    @staticmethod
    def _meta(d: Path, meta_name: str, kind: str, extra: Optional[dict[str, Any]] = None, **inputs: Any) -> Path:
        write_json(d / meta_name, build_meta(kind=kind, id=d.name, config={}, inputs=inputs, **(extra or {})))
        return d

    def functions(self) -> StageFunctions:
        def workload(cfg: Any) -> Path:
            self.calls.append("workload")
            self.overwrite.append(cfg.overwrite)
            w = cfg.workload
            self.workload_qps.append(float(w.arrival.qps))
            self.workload_sizes.append(int(w.num_requests))
            self.time_scales.append(float(w.arrival.time_scale))
            # Arrivals 1/qps apart; a trace's own arrivals are 1 s apart, times time_scale.
            gap_ns = round(1e9 * (w.arrival.time_scale if w.arrival.process == "trace" else 1 / w.arrival.qps))
            wid = f"w{w.arrival.process}{w.arrival.qps:g}x{w.arrival.time_scale:g}n{w.num_requests}"
            path = Path(cfg.paths.workloads) / wid
            if not path.exists():
                make_workload(Path(cfg.paths.workloads), wid, [(i * gap_ns, 16, 4) for i in range(int(w.num_requests))])
            return path

        def real(cfg: Any) -> Path:
            self.calls.append("real")
            self.overwrite.append(cfg.overwrite)
            d = Path(cfg.paths.real_runs) / f"real-{len(self.calls)}"
            d.mkdir(parents=True)
            (d / "request_metrics.csv").write_text(f"measured by call {len(self.calls)}\n")
            backend = {"name": cfg.backend.name, "num_blocks": self.num_blocks}
            return self._meta(d, "run_meta.json", "real_run", {"backend": backend}, workload_id=cfg.workload_id)

        def profile(cfg: Any) -> Path:
            self.calls.append("profile")
            d = Path(cfg.paths.profiling) / bundle_id(sized_for_workload(cfg))  # as run_vidur_profile names it
            if d.exists() and not cfg.overwrite:
                return d
            self.builds += 1
            d.mkdir(parents=True, exist_ok=True)
            for name in ("mlp.csv", "attention.csv"):
                (d / name).write_text(f"measurements of build {self.builds}\n")
            err = self.verdict_error_pct
            write_json(d / "profile_meta.json", build_meta(
                kind="profile_bundle", id=d.name, config={}, inputs={"workload_id": cfg.workload_id}, source="measured",
                held_out_check={"num_shapes": 1, "median_abs_error_pct": err, "max_abs_error_pct": err, "tolerance_pct": 10.0,
                                "table": [{"shape": "decode:1x64", "error_pct": err}]},
                host_load={"other_cpu_cores": 0.0, "busy": False, "reasons": []}))
            return d

        def sim(cfg: Any) -> Path:
            self.calls.append("sim")
            assert cfg.profiling_root.startswith(f"qwen3-tiny-cpu-{cfg.backend.name}-")
            assert cfg.real_run.startswith("real-")  # the point's real run: its recorded KV pool (native)
            d = Path(cfg.paths.vidur_runs) / f"sim-{len(self.calls)}"
            d.mkdir(parents=True)
            (d / "request_metrics.csv").write_text(f"simulated by call {len(self.calls)}\n")
            taken = recorded_backend(Path(cfg.paths.real_runs) / cfg.real_run).get("num_blocks")
            pool = {"real_run_num_blocks": taken} if cfg.backend.num_blocks is None and taken is not None else {}
            return self._meta(d, "run_meta.json", "vidur_run", workload_id=cfg.workload_id, bundle_id=cfg.profiling_root,
                              bundle_content=bundle_content(Path(cfg.paths.profiling) / cfg.profiling_root),
                              real_run=cfg.real_run, **pool)

        def compare(cfg: Any) -> Path:
            self.calls.append("compare")
            assert cfg.real_run.startswith("real-") and cfg.sim_run.startswith("sim-") and cfg.overwrite
            d = Path(cfg.paths.comparisons) / f"cmp-{cfg.real_run}--{cfg.sim_run}"
            d.mkdir(parents=True, exist_ok=True)
            return self._meta(d, "comparison_meta.json", "comparison", real_run=cfg.real_run, sim_run=cfg.sim_run,
                              real_content=run_content(Path(cfg.paths.real_runs) / cfg.real_run),
                              sim_content=run_content(Path(cfg.paths.vidur_runs) / cfg.sim_run))

        return StageFunctions(workload, real, profile, sim, compare)


ALL = ["workload", "real", "profile", "sim", "compare"]


def test_point_runs_every_stage_once_then_resumes(compose_app: Callable[..., Any]) -> None:
    fake = FakeStages()
    cfg = compose_app("experiment", ["load.qps=3"])
    rec = run_experiment(cfg, fake.functions())
    assert fake.calls == ALL
    assert rec.offered_qps == 3 and rec.comparison_id
    again = run_experiment(cfg, fake.functions())
    assert fake.calls[5:] == ["workload", "profile"]  # content-addressed stages are asked again, runs are reused
    assert again == rec


def test_overwrite_runs_every_stage_of_the_point_again(compose_app: Callable[..., Any]) -> None:
    fake = FakeStages()
    first = run_experiment(compose_app("experiment", ["load.qps=3"]), fake.functions())
    again = run_experiment(compose_app("experiment", ["load.qps=3", "overwrite=true"]), fake.functions())
    assert fake.calls == ALL * 2 and fake.builds == 2
    assert fake.overwrite == [False, False, True, True]  # workload and real of each invocation
    assert again.point_key == first.point_key and again.real_run != first.real_run and again.sim_run != first.sim_run


def test_a_rebuilt_bundle_makes_the_simulation_and_comparison_again(compose_app: Callable[..., Any]) -> None:
    fake = FakeStages()
    cfg = compose_app("experiment", ["load.qps=3"])
    first = run_experiment(cfg, fake.functions())
    profile = fake.functions().profile
    rebuild = compose_app("vidur_profile", [f"workload_id={first.workload_id}", "overwrite=true"])
    assert profile(rebuild).name == first.bundle_id  # vidur-profile overwrite=true: same id, new measurements
    again = run_experiment(cfg, fake.functions())
    assert fake.calls[5:] == ["profile", "workload", "profile", "sim", "compare"]
    assert again.real_run == first.real_run and again.bundle_id == first.bundle_id
    assert again.sim_run != first.sim_run and again.comparison_id != first.comparison_id
    assert run_experiment(cfg, fake.functions()) == again  # and then it is current again


def test_a_real_run_with_another_kv_pool_makes_the_simulation_again(compose_app: Callable[..., Any]) -> None:
    """backend=native sizes its KV pool when it loads and vidur-sim takes the count the real run recorded: a new real
    run with the same count keeps the simulation, one with another count makes it again."""
    fake = FakeStages(num_blocks=9)
    cfg = compose_app("experiment", ["backend=native", "load.qps=3"])
    first = run_experiment(cfg, fake.functions())
    redo_real = compose_app("experiment", ["backend=native", "load.qps=3", "redo=[real]"])
    same = run_experiment(redo_real, fake.functions())
    assert fake.calls[5:] == ["workload", "real", "profile", "compare"]
    assert same.real_run != first.real_run and same.sim_run == first.sim_run
    fake.num_blocks = 12
    other = run_experiment(redo_real, fake.functions())
    assert fake.calls[9:] == ["workload", "real", "profile", "sim", "compare"] and other.sim_run != same.sim_run
    assert run_experiment(cfg, fake.functions()) == other  # and then it is current again


def test_redo_names_the_stages_to_run_again(compose_app: Callable[..., Any]) -> None:
    fake = FakeStages()
    first = run_experiment(compose_app("experiment", ["load.qps=3"]), fake.functions())
    again = run_experiment(compose_app("experiment", ["load.qps=3", "redo=[sim,compare]"]), fake.functions())
    assert fake.calls[5:] == ["workload", "profile", "sim", "compare"] and fake.builds == 1
    assert again.real_run == first.real_run and again.sim_run != first.sim_run
    with pytest.raises(InputError, match=r"redo: \['simulate'\] unknown"):
        run_experiment(compose_app("experiment", ["load.qps=3", "redo=[simulate]"]), fake.functions())


def test_a_run_replaced_in_place_makes_the_comparison_again(compose_app: Callable[..., Any]) -> None:
    fake = FakeStages()
    cfg = compose_app("experiment", ["load.qps=3"])
    first = run_experiment(cfg, fake.functions())
    (Path(cfg.paths.real_runs) / first.real_run / "request_metrics.csv").write_text("measured again\n")
    again = run_experiment(cfg, fake.functions())
    assert fake.calls[5:] == ["workload", "profile", "compare"]  # same ids, new content: compared again (overwrite)
    assert again.comparison_id == first.comparison_id


def test_a_bundle_that_is_not_pass_is_refused_before_the_real_run(compose_app: Callable[..., Any]) -> None:
    fake = FakeStages(verdict_error_pct=62.0)
    cfg = compose_app("experiment", ["load.qps=3"])
    wid = fake.functions().workload(compose_app("workload_spec", ["workload.arrival.qps=3"])).name
    fake.functions().profile(compose_app("vidur_profile", [f"workload_id={wid}"]))
    fake.calls.clear()
    with pytest.raises(InputError, match=r"verdict fail: held-out median \|error\| 62.0% > tolerance 10%.*accept_bundle=true"):
        run_experiment(cfg, fake.functions())
    assert fake.calls == ["workload"]  # nothing measured
    rec = run_experiment(compose_app("experiment", ["load.qps=3", "accept_bundle=true"]), fake.functions())
    assert rec.comparison_id and fake.calls.count("real") == 1


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
    cfg = compose_app("experiment", ["load.capacity_fraction=0.25"])
    rec = run_experiment(cfg, fake.functions())
    # The configured workload first (its lengths checked against the bundle grid before the probe measures), then the point's.
    assert fake.workload_qps == [cfg.workload.arrival.qps, 2.5] and rec.capacity_rps == 10.0


def test_a_trace_is_scaled_to_the_offered_rate(compose_app: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """A trace keeps its own arrival pattern; ``load`` reaches its rate through ``workload.arrival.time_scale``."""
    import gpu_simulate_test.experiment as exp

    monkeypatch.setattr(exp, "probe_capacity", lambda cfg, stages: 8.0)
    fake = FakeStages()
    trace = ["workload.arrival.process=trace", "workload.arrival.time_scale=2", "workload.num_requests=5"]
    rec = run_experiment(compose_app("experiment", [*trace, "load.capacity_fraction=0.5"]), fake.functions())
    # as traced: 5 requests 2 s apart (0.5 requests/s); 4 requests/s asked: 8 times faster
    assert fake.time_scales[-2:] == [2.0, 0.25] and rec.offered_qps == 4.0
    assert exp._arrival_rate(Path(compose_app("experiment").paths.workloads) / rec.workload_id) == pytest.approx(4.0)


def test_arrival_span_sizes_the_point(compose_app: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """A slow engine's low-load points get fewer requests: ceil(rate x span), never more than the workload has."""
    import gpu_simulate_test.experiment as exp

    sized = {}
    for fraction in (0.1, 0.5, 1.0):
        fake = FakeStages()
        cfg = compose_app("experiment", [f"load.capacity_fraction={fraction}", "load.max_arrival_span_s=7", "workload.num_requests=10"])
        exp.point_workload(cfg, fraction * 2.0, fake.functions())
        sized[fraction] = fake.workload_sizes[-1]
    assert sized == {0.1: 2, 0.5: 7, 1.0: 10}


@pytest.mark.parametrize(("overrides", "message"), [
    (["stages=[workload,magic]"], r"stages: \['magic'\] unknown"),
    (["load.qps=1", "load.capacity_fraction=0.5"], "not both"),
    (["load.capacity_fraction=0"], r"load.capacity_fraction=0.0 must be > 0"),
    (["load.capacity_fraction=0.5", "workload.arrival.process=all_at_once"],
     r"load.capacity_fraction needs a rate-based arrival process \(poisson, gamma, constant\) or a trace to scale"),
    (["load.max_arrival_span_s=7"], "load.max_arrival_span_s needs a positive value and load.qps"),
    (["load.qps=1", "load.max_arrival_span_s=0"], "load.max_arrival_span_s needs a positive value"),
    (["workload.max_context=50000"], r"workload.max_context=50000 must be in 1..40960, the context of model qwen3-tiny"),
    (["load.qps=1", "profile.max_kv_tokens=16"], r"does not cover this workload: tokens of one request \(prompt \+ decode\): 20 exceeds"),
])
@pytest.mark.parametrize("backend", ["hf-generate", "native"])
def test_cheap_checks_come_before_any_measurement(compose_app: Callable[..., Any], overrides: list[str], message: str,
                                                  backend: str) -> None:
    fake = FakeStages()
    with pytest.raises(InputError, match=message):
        run_experiment(compose_app("experiment", [f"backend={backend}", "workload.num_requests=4", *overrides]),
                       fake.functions())
    assert "real" not in fake.calls  # neither the capacity probe nor the point's real run measured anything
    assert set(fake.calls) <= {"workload"}


def test_content_fingerprints_follow_the_bytes(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("1")
    b.write_text("2")
    before = content_hash([a, b])
    assert content_hash([a, b]) == before != content_hash([b, a])
    b.write_text("3")
    assert content_hash([a, b]) != before


def test_native_ids_follow_the_engine_source(compose_app, monkeypatch):
    """A native bundle, point or capacity measured with other engine code is never found again; HF ids are as they
    were (specs/experiment.md, "Ids across versions")."""
    from gpu_simulate_test import engine
    from gpu_simulate_test.experiment import capacity_path, point_key
    from gpu_simulate_test.vidur_ext.profiler.bundle import bundle_id

    def ids() -> dict[str, str]:
        out = {}
        for backend in ("native", "hf-continuous"):
            app = compose_app("experiment", [f"backend={backend}", "load.qps=3"])
            prof = compose_app("vidur_profile", [f"backend={backend}"])
            out[backend] = (bundle_id(prof), point_key(app, "w-1"), capacity_path(app).name)
        return out

    fingerprint = engine.source_fingerprint()
    assert len(fingerprint) == 12 and int(fingerprint, 16) >= 0
    before = ids()
    monkeypatch.setattr(engine, "source_fingerprint", lambda: "0" * 12)
    after = ids()
    assert after["hf-continuous"] == before["hf-continuous"]
    assert all(a != b for a, b in zip(after["native"], before["native"]))


def test_a_capacity_is_keyed_by_its_trace_content_not_where_the_trace_lies(compose_app, tmp_path):
    """The same trace in two checkouts gives one capacity key (a fresh clone finds the archived capacity); another
    trace's content gives another."""
    from gpu_simulate_test.config import shipped_file
    from gpu_simulate_test.experiment import capacity_path

    trace = Path(shipped_file("traces/azure_conv_2023_first1200.csv"))
    keys = []
    for where in ("a", "b"):
        (tmp_path / where).mkdir()
        copy = tmp_path / where / trace.name
        copy.write_bytes(trace.read_bytes())
        app = compose_app("experiment", ["workload=conversation", f"workload.lengths.path={copy}",
                                         "load.capacity_fraction=0.5"])
        keys.append(capacity_path(app).name)
    assert keys[0] == keys[1]
    changed = tmp_path / "c.csv"
    lines = trace.read_text().splitlines(keepends=True)
    changed.write_text("".join(lines[:-1]))  # one request less
    app = compose_app("experiment", ["workload=conversation", f"workload.lengths.path={changed}",
                                     "load.capacity_fraction=0.5"])
    assert capacity_path(app).name != keys[0]
