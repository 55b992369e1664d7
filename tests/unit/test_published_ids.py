"""The published results stay reachable: every archived workload regenerates byte for byte (with its id, for those made
since ids leave default fields out) from today's configs, the published bundles keep their ids (content ids
ignore the model fields that change no timing), and the H200 native result's publish command finds the bundles it
simulates with."""

from __future__ import annotations

import importlib.util
import json
import tarfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import pytest
from omegaconf import OmegaConf

from gpu_simulate_test.config.apps import VidurProfileAppConfig
from gpu_simulate_test.config.workload import WorkloadConfig

RESULTS = Path(__file__).resolve().parents[2] / "docs" / "results" / "h100-qwen3-0.6b"
POINTS = sorted((RESULTS / "points").glob("*.tar.gz"))
H200_NATIVE = RESULTS.parent / "h200-qwen3-0.6b-native"


def _members(archive: Path, suffix: str) -> list[dict[str, Any]]:
    with tarfile.open(archive) as tar:
        return [json.load(tar.extractfile(m)) for m in tar.getmembers() if m.name.endswith(suffix)]


@pytest.mark.parametrize("archive", POINTS, ids=lambda p: p.name)
def test_archived_workload_regenerates_with_its_id(archive: Path, compose_app: Callable[..., Any]) -> None:
    from gpu_simulate_test.workloads.spec import generate_workload

    (meta,) = _members(archive, "/workload_meta.json")
    stored = meta["config"]
    assert stored["model"]["name"] == "qwen3-0.6b"  # the shipped config, as it is today
    cfg = compose_app("workload_spec", ["model=qwen3-0.6b", f"seed={stored['seed']}"])
    workload = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(WorkloadConfig), stored["workload"]))
    path = generate_workload(replace(cfg, workload=workload))
    today = json.loads((path / "workload_meta.json").read_text())
    assert today["files"] == meta["files"]  # byte-identical requests, arrivals and prompt ids
    if today["id_basis"] == meta["id_basis"]:
        assert path.name == meta["id"]
    else:  # the first session's points predate ids without default fields (7eb3120): only the content can match
        assert meta["provenance"]["created_at"] < "2026-11-23T17:35"


def test_published_bundles_keep_their_ids(compose_app: Callable[..., Any]) -> None:
    from gpu_simulate_test.vidur_ext.profiler.bundle import bundle_id

    metas = _members(RESULTS / "bundles" / "profiling.tar.gz", "/profile_meta.json")
    assert len(metas) == 2
    today = compose_app("vidur_profile", ["model=qwen3-0.6b"]).model
    for meta in metas:
        groups = {g: meta["config"][g] for g in ("model", "hardware", "backend", "profile")}
        cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(VidurProfileAppConfig), groups))
        assert bundle_id(cfg) == meta["id"]
        assert bundle_id(replace(cfg, model=replace(today, dtype=cfg.model.dtype))) == meta["id"]  # today's yaml


def _sweep_script() -> Any:
    script = Path(__file__).resolve().parents[2] / "scripts" / "h200_native_sweep.py"
    spec = importlib.util.spec_from_file_location("h200_native_sweep", script)
    assert spec is not None and spec.loader is not None
    sweep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sweep)
    return sweep


def test_the_h200_native_result_finds_its_bundles(tmp_path: Path) -> None:
    """``publish`` simulates each setup's points with the bundle whose id today's code gives the setup's profile
    config, the engine named as the one the points ran on (``campaign.archived_engine_code``), or, where today's
    profiler files that request under an id not among the archives, with the bundle the folder's tables name for the
    setup if it was built for the same request: either way the one the published tables name."""
    from gpu_simulate_test.campaign import _existing_bundle, archived_engine_code, bundle_app, filed_bundles
    from gpu_simulate_test.engine import measured_with
    from gpu_simulate_test.experiment import default_stages
    from gpu_simulate_test.vidur_ext.profiler.bundle import bundle_id

    sweep = _sweep_script()
    assert sweep.FOLDER == Path("docs/results/h200-qwen3-0.6b-native")
    code = archived_engine_code(H200_NATIVE)
    assert code is not None
    filed = filed_bundles(H200_NATIVE)
    assert sorted(filed) == sorted(sweep.CAMPAIGN.setups)
    for setup in sweep.CAMPAIGN.setups:
        with measured_with(code):
            cfg = bundle_app(sweep.CAMPAIGN, tmp_path, setup, default_stages())
            bid = bundle_id(cfg)
            if not (H200_NATIVE / "bundles" / f"{bid}.tar.xz").is_file():
                name = f"profiling/{filed[setup]}/profile_meta.json"  # only the meta: the request it was built for
                with tarfile.open(H200_NATIVE / "bundles" / f"{filed[setup]}.tar.xz") as tar:
                    tar.extractall(Path(cfg.paths.profiling).parent, members=[tar.getmember(name)], filter="data")
                bid = _existing_bundle(cfg, filed=filed[setup]).name
        assert bid == filed[setup], setup

