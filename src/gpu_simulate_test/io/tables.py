"""Read and write CSV artifacts, validated against their :mod:`.schemas` on both sides.

A violation raises :class:`ArtifactError` with one message: the file, the line (or row), the
column, what is wrong and what to do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from gpu_simulate_test.errors import ArtifactError
from gpu_simulate_test.io.schemas import TableSchema

_FIX = "regenerate it with the stage that writes it, or fix the file by hand as specs/{spec} describes"


def _where(reading: bool, i: int) -> str:
    # Line 1 is the header, so data row i sits on line i + 2.
    return f"line {i + 2}" if reading else f"row {i}"


def _fail(source: str, schema: TableSchema, msg: str) -> ArtifactError:
    return ArtifactError(f"{source}: {msg}; {_FIX.format(spec=schema.spec_file)}")


def _coerce(series: pd.Series, dtype: str, nullable: bool) -> tuple[pd.Series, Optional[int], str]:
    """Convert a column; return (converted, first bad row or None, what is wrong with it)."""
    if dtype == "str":
        isna = series.isna().to_numpy()
        if not nullable and isna.any():
            return series, int(np.argmax(isna)), "is empty"
        return series.astype("string" if nullable else str), None, ""
    if dtype == "bool":
        if series.dtype == bool:
            return series, None, ""
        mapped = series.map({"true": True, "false": False, "True": True, "False": False, True: True, False: False})
        bad = mapped.isna().to_numpy() & (~series.isna().to_numpy() | (not nullable))
        if bad.any():
            return series, int(np.argmax(bad)), "is not true/false"
        return mapped.astype("boolean" if nullable else bool), None, ""
    num = series if pd.api.types.is_numeric_dtype(series) and series.dtype != bool else pd.to_numeric(series, errors="coerce")
    values = num.to_numpy(dtype=np.float64, na_value=np.nan) if num.dtype != np.int64 else None
    if values is not None:
        nonnum = np.isnan(values) & ~series.isna().to_numpy()
        if nonnum.any():
            return series, int(np.argmax(nonnum)), f"is not a number ({series.iloc[int(np.argmax(nonnum))]!r})"
        if not nullable and np.isnan(values).any():
            return series, int(np.argmax(np.isnan(values))), "is empty"
    if dtype == "float":
        return num.astype("float64"), None, ""
    if values is None:  # already int64
        return num, None, ""
    finite = ~np.isnan(values)
    frac = finite & (values != np.round(values))
    if frac.any():
        return series, int(np.argmax(frac)), f"is not an integer ({series.iloc[int(np.argmax(frac))]})"
    if nullable:
        return num.astype("Int64"), None, ""
    return num.astype(np.int64), None, ""


def validate_frame(df: pd.DataFrame, schema: TableSchema, *, source: str, reading: bool) -> pd.DataFrame:
    """Check columns, dtypes, bounds, keys and invariants; return the frame with canonical dtypes and order."""
    names = schema.column_names
    missing = [c for c in names if c not in df.columns and c not in schema.optional]
    extra = [c for c in df.columns if c not in names]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing column(s) {missing}")
        if extra:
            parts.append(f"unexpected column(s) {extra}")
        raise _fail(source, schema, f"{' and '.join(parts)} (expected {names})")
    present = [c for c in schema.columns if c.name in df.columns]
    out = {}
    for col in present:
        converted, bad, what = _coerce(df[col.name], col.dtype, col.nullable)
        if bad is not None:
            raise _fail(source, schema, f"{_where(reading, bad)}, column {col.name!r} {what}")
        if col.min is not None:
            vals = converted.to_numpy(dtype=np.float64, na_value=np.nan)
            below = vals < col.min
            if below.any():
                i = int(np.argmax(below))
                raise _fail(source, schema, f"{_where(reading, i)}, column {col.name!r} is {converted.iloc[i]}, below {col.min:g} ({col.unit})")
        out[col.name] = converted.reset_index(drop=True)
    frame = pd.DataFrame(out, columns=[c.name for c in present])
    if schema.key:
        dup = frame.duplicated(list(schema.key)).to_numpy()
        if dup.any():
            i = int(np.argmax(dup))
            key = ", ".join(f"{k}={frame[k].iloc[i]}" for k in schema.key)
            raise _fail(source, schema, f"{_where(reading, i)}: duplicate {key}")
    for inv in schema.invariants:
        if not all(c in frame.columns for c in names if c not in schema.optional):
            continue
        bad = inv.bad_rows(frame)
        if bad.any():
            i = int(np.argmax(bad))
            ident = ", ".join(f"{k}={frame[k].iloc[i]}" for k in schema.key) if schema.key else ""
            raise _fail(source, schema, f"{_where(reading, i)} ({ident}): violates '{inv.description}'")
    return frame


def read_table(path: Path, schema: TableSchema) -> pd.DataFrame:
    """Read ``path`` as ``schema``; every problem becomes one :class:`ArtifactError`."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: missing; {_FIX.format(spec=schema.spec_file)}")
    if path.stat().st_size == 0:
        raise _fail(str(path), schema, "file is empty (expected a header line)")
    try:
        df = pd.read_csv(path, engine="pyarrow")
    except (pa.ArrowInvalid, ValueError):
        try:  # the slower parser names the offending line
            df = pd.read_csv(path, engine="python")
        except (pd.errors.ParserError, ValueError) as exc:
            raise _fail(str(path), schema, f"not a valid CSV ({exc})") from exc
    return validate_frame(df, schema, source=str(path), reading=True)


def write_table(df: pd.DataFrame, path: Path, schema: TableSchema) -> pd.DataFrame:
    """Validate ``df`` against ``schema`` and write it as CSV (columns in schema order); return what was written."""
    frame = validate_frame(df, schema, source=f"{path} (being written)", reading=False)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    with open(path, "wb") as fh:  # header by hand: pyarrow would quote the column names
        fh.write((",".join(frame.columns) + "\n").encode())
        pacsv.write_csv(table, fh, write_options=pacsv.WriteOptions(include_header=False, quoting_style="needed"))
    return frame
