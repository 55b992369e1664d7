"""vidur-profile mode=import: Vidur's own profile layout (extra columns, several TP sizes, repeated keys, its padded
vocabulary) becomes a bundle that reads as imported and unverified, and that vidur-sim can read."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import pytest

from gpu_simulate_test.errors import GstError
from gpu_simulate_test.io.tables import read_table
from gpu_simulate_test.io.schemas import ATTENTION_PROFILE, MLP_PROFILE
from gpu_simulate_test.vidur_ext.profiler import run_vidur_profile
from gpu_simulate_test.vidur_ext.profiling_root import load_profiling_root

SOURCE = Path(__file__).resolve().parents[1] / "fixtures" / "vidur_profile" / "h100" / "meta-llama" / "Llama-2-7b-hf"
BASE = ["mode=import", f"source={SOURCE}", "model=llama-2-7b", "hardware=h100", "backend=sarathi"]


def _import(compose_app: Callable[..., Any], *extra: str) -> Any:
    return run_vidur_profile(compose_app("vidur_profile", [*BASE, *extra]))


def test_vidur_layout_becomes_an_unverified_bundle(compose_app) -> None:
    result = _import(compose_app)
    assert result.imported and not result.reused and result.check.empty
    root = load_profiling_root(result.path)  # the layout and every table's schema
    assert root.imported and root.bundle_id.startswith("llama-2-7b-h100-vidur-")
    meta = root.meta
    assert (meta["source"], meta["verdict"]) == ("imported", "unverified")
    files = meta["imported_from"]["files"]
    for name in ("mlp.csv", "attention.csv"):
        assert files[name]["path"] == str(SOURCE / name)
        assert len(files[name]["sha256"]) == 64
    assert files["mlp.csv"]["dropped_columns"] == [f"time_stats.emb.{s}" for s in ("min", "max", "mean", "median", "std")]
    assert files["mlp.csv"]["vocab_size_in_source"] == [32768]
    assert meta["grid_limits"] == {"max_tokens": 4096, "max_prefill_chunk": 4096, "max_batch_size": 128,
                                   "max_kv_tokens": 4096, "block_size": 16}
    assert json.loads((result.path / "config.json").read_text()) == {"model": "gst/llama-2-7b", "device_sku": "h100"}
    assert pd.read_csv(root.iterations_csv).empty and pd.read_csv(root.held_out_csv).empty  # nothing was measured
    # the same files again: the same bundle, found by content
    again = _import(compose_app)
    assert again.reused and again.path == result.path


def test_rows_selected_and_repeated_keys_merged_by_median(compose_app) -> None:
    src = pd.read_csv(SOURCE / "mlp.csv")
    path = _import(compose_app).path
    mlp = read_table(path / "mlp.csv", MLP_PROFILE)
    att = read_table(path / "attention.csv", ATTENTION_PROFILE)
    assert set(mlp["num_tensor_parallel_workers"]) == {1} and set(att["num_tensor_parallel_workers"]) == {1}
    assert set(mlp["vocab_size"]) == {32000} and set(att["block_size"]) == {16}
    tp1 = src[src["num_tensor_parallel_workers"] == 1]
    assert sorted(mlp["num_tokens"]) == sorted(set(tp1["num_tokens"]))  # one row per key
    for n in (2048, 4096):  # given twice in Vidur's file: the median of the two (their mean)
        twice = tp1[tp1["num_tokens"] == n]["time_stats.mlp_up_proj.median"]
        assert len(twice) == 2
        merged = float(mlp.loc[mlp["num_tokens"] == n, "time_stats.mlp_up_proj.median"].iloc[0])
        assert merged == pytest.approx(twice.mean())
    meta = json.loads((path / "profile_meta.json").read_text())["imported_from"]["files"]
    assert meta["mlp.csv"]["repeated_keys_merged"] == 2 and meta["attention.csv"]["repeated_keys_merged"] == 2
    assert att["is_prefill"].any() and (~att["is_prefill"]).any()


@pytest.mark.parametrize("extra, message", [
    (["tensor_parallel_size=2"], "simulates TP=1 replicas only"),
    (["backend=hf-continuous"], "no rows for model llama-2-7b's attention {'num_tensor_parallel_workers': 1"),
    (["model=llama-3-8b"], "no rows for model llama-3-8b's layers"),
    (["source=/nonexistent/vidur"], "no such folder"),
    (["mode=measured"], "mode='measured' is not one of"),
])
def test_bad_imports_fail_clearly(compose_app, extra: list[str], message: str) -> None:
    with pytest.raises(GstError, match=re.escape(message)):
        _import(compose_app, *extra)


def test_missing_columns_and_tp_are_named(compose_app, tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(SOURCE, src)
    mlp = pd.read_csv(src / "mlp.csv")
    mlp[mlp["num_tensor_parallel_workers"] == 2].to_csv(src / "mlp.csv", index=False)
    with pytest.raises(GstError, match=r"no rows for tensor_parallel_size=1; it holds TP sizes \[2\]"):
        _import(compose_app, f"source={src}")
    mlp.drop(columns=["time_stats.add.median"]).to_csv(src / "mlp.csv", index=False)
    with pytest.raises(GstError, match=r"lacks column\(s\) \['time_stats.add.median'\]"):
        _import(compose_app, f"source={src}")
    (src / "mlp.csv").unlink()
    with pytest.raises(GstError, match=r"no mlp.csv \(nor mlp.csv.xz\)"):
        _import(compose_app, f"source={src}")


def test_xz_files_as_vidur_datasets_carry_them(compose_app, tmp_path: Path) -> None:
    src = tmp_path / "xz"
    src.mkdir()
    for name in ("mlp.csv", "attention.csv"):
        pd.read_csv(SOURCE / name).to_csv(src / f"{name}.xz", index=False)
    path = _import(compose_app, f"source={src}").path
    assert len(read_table(path / "mlp.csv", MLP_PROFILE)) == len(read_table(_import(compose_app).path / "mlp.csv", MLP_PROFILE))
