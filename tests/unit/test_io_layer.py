"""The artifact IO layer: atomic directories, validated tables, consistent run files."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import pytest

from gpu_simulate_test.errors import ArtifactError, OutputExistsError
from gpu_simulate_test.io.ids import canonical_json, short_hash, without_defaults
from gpu_simulate_test.io.outputs import atomic_dir
from gpu_simulate_test.io.runs import RequestRecord, check_consistency, tables_from_records
from gpu_simulate_test.io.schemas import REQUEST_METRICS, TRACE_INTERVALS
from gpu_simulate_test.io.tables import read_table, write_table


def test_atomic_dir_commits_only_on_success(tmp_path: Path) -> None:
    final = tmp_path / "runs" / "r1"
    with pytest.raises(RuntimeError):
        with atomic_dir(final) as tmp:
            (tmp / "a.txt").write_text("x")
            raise RuntimeError("boom")
    assert not final.exists()
    assert list((tmp_path / "runs").iterdir()) == []
    with atomic_dir(final) as tmp:
        (tmp / "a.txt").write_text("x")
    assert (final / "a.txt").read_text() == "x"
    with pytest.raises(OutputExistsError):
        with atomic_dir(final):
            pass
    with atomic_dir(final, overwrite=True) as tmp:
        (tmp / "b.txt").write_text("y")
    assert sorted(p.name for p in final.iterdir()) == ["b.txt"]


def test_canonical_hash_ignores_key_order() -> None:
    assert short_hash(canonical_json({"a": 1, "b": [1, 2]})) == short_hash(canonical_json({"b": [1, 2], "a": 1}))
    assert short_hash(canonical_json({"a": 1})) != short_hash(canonical_json({"a": 2}))


@pytest.mark.parametrize(
    "body, fragment",
    [
        ("request_id,arrival_time_ns\n0,5\n1,x\n", "line 3, column 'arrival_time_ns' is not a number"),
        ("request_id,arrival_time_ns\n0,5\n1,3\n", "line 3 (request_id=1): violates 'arrival_time_ns is non-decreasing'"),
        ("request_id,arrival\n0,5\n", "missing column(s) ['arrival_time_ns']"),
        ("request_id,arrival_time_ns\n0,5\n0,6\n", "line 3: duplicate request_id=0"),
        ("request_id,arrival_time_ns\n0,5\n1,6.5\n", "is not an integer"),
        ("request_id,arrival_time_ns\n0,5\n1,-6\n", "below 0"),
        ("", "file is empty"),
    ],
)
def test_reader_names_file_line_and_column(tmp_path: Path, body: str, fragment: str) -> None:
    path = tmp_path / "trace_intervals.csv"
    path.write_text(body)
    with pytest.raises(ArtifactError) as err:
        read_table(path, TRACE_INTERVALS)
    assert str(path) in str(err.value)
    assert fragment in str(err.value)


def test_tables_from_records_follow_bench_serve_definitions(tmp_path: Path) -> None:
    recs = [
        RequestRecord(1, 100, 110, 8, 3, [200, 260, 330]),
        RequestRecord(0, 0, 5, 4, 1, [50]),
    ]
    req, tok = tables_from_records(recs)
    r1 = req.set_index("request_id").loc[1]
    assert r1.ttft_ns == 100 and r1.e2e_ns == 230 and r1.tpot_ns == 65
    assert pd.isna(req.set_index("request_id").loc[0].tpot_ns)
    assert tok["token_index"].tolist() == [0, 0, 1, 2]
    written = write_table(req, tmp_path / "request_metrics.csv", REQUEST_METRICS)
    check_consistency(written, tok, source="test")
    bad = tok.copy()
    bad.loc[3, "token_time_ns"] = 999
    with pytest.raises(ArtifactError, match="completion_time_ns"):
        check_consistency(written, bad, source="test")


def test_writer_refuses_invalid_frame(tmp_path: Path) -> None:
    df = pd.DataFrame({"request_id": [0, 1], "arrival_time_ns": [10, 5]})
    with pytest.raises(ArtifactError, match="row 1"):
        write_table(df, tmp_path / "x.csv", TRACE_INTERVALS)
    assert not (tmp_path / "x.csv").exists()



@dataclass
class _Inner:
    a: int = 1
    b: str = "x"


@dataclass
class _Old:
    name: str = "???"
    inner: _Inner = field(default_factory=_Inner)
    rate: float = 2.0


@dataclass
class _New(_Old):
    added: bool = False


def test_ids_ignore_fields_left_at_their_defaults() -> None:
    """A new config field with a default must not move existing ids; a changed value must."""
    old = asdict(_Old(name="m"))
    new = asdict(_New(name="m"))
    assert without_defaults(old, _Old) == without_defaults(new, _New) == {"name": "m"}
    assert without_defaults(asdict(_New(name="m", added=True)), _New) == {"name": "m", "added": True}
    assert without_defaults(asdict(_Old(name="m", inner=_Inner(a=2))), _Old) == {"name": "m", "inner": {"a": 2}}
    assert without_defaults({"name": "m", "extra": 3}, _Old) == {"name": "m", "extra": 3}


def test_iteration_kv_tokens_is_optional_and_checked(tmp_path: Path) -> None:
    """``kv_tokens`` (native's per-request KV lengths) may be absent (every older file and the other engines); when
    present it lists one length per request, each at least that request's tokens in the step."""
    from gpu_simulate_test.io.schemas import ITERATION_METRICS

    base = pd.DataFrame({"iteration_id": [0, 1], "start_time_ns": [0, 10], "end_time_ns": [10, 20], "batch_size": [2, 1],
                         "num_prefill_tokens": [40, 0], "num_decode_tokens": [0, 1], "requests": ["r0:30;r1:10", "r0:1"]})
    path = tmp_path / "iteration_metrics.csv"
    write_table(base, path, ITERATION_METRICS)
    assert list(read_table(path, ITERATION_METRICS).columns) == list(base.columns)
    write_table(base.assign(kv_tokens=["30;10", "31"]), path, ITERATION_METRICS)
    assert read_table(path, ITERATION_METRICS)["kv_tokens"].tolist() == ["30;10", "31"]
    for bad in (["30", "31"], ["30;9", "31"], ["30;x", "31"]):  # a length missing, below its tokens, not a number
        with pytest.raises(ArtifactError, match="kv_tokens"):
            write_table(base.assign(kv_tokens=bad), path, ITERATION_METRICS)


@pytest.mark.parametrize("suffix", [".tar.gz", ".tar.xz"])
def test_archive_compressed_as_its_name_says_and_unpacked_in_place(tmp_path: Path, suffix: str) -> None:
    import tarfile

    from gpu_simulate_test.io.outputs import write_archive

    (tmp_path / "root" / "runs" / "r1").mkdir(parents=True)
    (tmp_path / "root" / "runs" / "r1" / "a.csv").write_text("x\n1\n")
    dest = write_archive(tmp_path / "out" / f"r1{suffix}", tmp_path / "root", [tmp_path / "root" / "runs" / "r1"])
    with open(dest, "rb") as fh:  # the container's magic bytes
        assert fh.read(6).startswith(b"\x1f\x8b" if suffix == ".tar.gz" else b"\xfd7zXZ")
    with tarfile.open(dest) as tar:
        tar.extractall(tmp_path / "again", filter="data")
    assert (tmp_path / "again" / "runs" / "r1" / "a.csv").read_text() == "x\n1\n"
    with pytest.raises(ValueError, match="archive's name ends in"):
        write_archive(tmp_path / "out" / "r1.zip", tmp_path / "root", [tmp_path / "root" / "runs"])
