"""Importers of real trace formats (a registry keyed by ``workload.lengths.source``).

Each reads one file into a :class:`RawTrace` (texts or lengths, decode lengths, timestamps) and
checks it as it reads: every problem is one :class:`InputError` naming the file, the line (or
JSON entry), what is wrong and what to do. Tokenizing, selecting and clipping happen later, in
:mod:`.spec`, so only the requests that are used get tokenized.
"""

from __future__ import annotations

import difflib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np
import pandas as pd

from gpu_simulate_test.errors import InputError
from gpu_simulate_test.io.units import NS_PER_MS, NS_PER_S

log = logging.getLogger(__name__)
DRAW = -1  # a decode length the trace does not give: drawn from workload.lengths.decode


@dataclass
class RawTrace:
    """What a file holds, one entry per candidate request, in file order."""

    source: str  # the file (or "synthetic")
    unit: str  # how ``where`` counts: "line" (1-based file line) or "entry" (0-based JSON array index)
    where: np.ndarray  # per request: its line / entry, for messages
    decode: np.ndarray  # decode lengths, DRAW where the trace has none
    prefill: Optional[np.ndarray] = None  # prompt lengths, for traces without text
    texts: Optional[list[str]] = None  # prompt texts, tokenized later
    decode_texts: Optional[list[str]] = None  # ShareGPT: the reply whose token count is the decode length
    timestamps_ns: Optional[np.ndarray] = None  # the trace's own arrival times (ns, any origin)
    notes: dict[str, int] = field(default_factory=dict)  # e.g. rows skipped on purpose, with counts

    def __len__(self) -> int:
        return len(self.where)

    def locate(self, i: int) -> str:
        return f"{self.source}: {self.unit} {int(self.where[i])}"


def _fail(path: Path, where: str, what: str, fix: str) -> InputError:
    return InputError(f"{path}: {where}: {what}; {fix}")


def _check_nonempty(path: Path) -> None:
    if not path.is_file():
        raise InputError(f"{path}: no such file; set workload.lengths.path to an existing trace file")
    if path.stat().st_size == 0 or not path.read_bytes().strip():
        raise InputError(f"{path}: the file is empty; give a trace with at least one request")


# --- CSV helpers ---------------------------------------------------------------------------------------


def _read_csv(path: Path, required: tuple[str, ...], fmt: str) -> pd.DataFrame:
    """All columns as strings (converted one by one later, so the bad cell can be named)."""
    _check_nonempty(path)
    unterminated = not path.read_bytes().endswith(b"\n")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path}: not a valid CSV ({exc}); the {fmt} format is a CSV with header {list(required)}") from exc
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in required if c not in df.columns]
    if missing:
        hints = []
        spare = [c for c in df.columns if c not in required]  # a column the format needs as it is is no rename candidate
        for c in missing:
            close = difflib.get_close_matches(c, spare, n=1, cutoff=0.6)
            hints.append(f"{c!r}" + (f" (found {close[0]!r}: rename it)" if close else ""))
        raise InputError(
            f"{path}: line 1: missing column(s) {', '.join(hints)}; the header is {list(df.columns)}, "
            f"the {fmt} format needs {list(required)}"
        )
    if len(df) == 0:
        raise InputError(f"{path}: the file has a header but no rows; give a trace with at least one request")
    if unterminated:
        # A file cut short mid-line (an interrupted copy) reads as valid rows: say what its last row holds.
        log.warning("%s: line %d, the last line, has no final newline, as a file cut short would not either; its last "
                    "value read is %s=%r: check that the file is complete", path, len(df) + 1, df.columns[-1],
                    df.iloc[-1, -1])
    return df


def _numbers(df: pd.DataFrame, col: str, path: Path) -> np.ndarray:
    """A column as float64; a blank or non-numeric cell is an error naming its line."""
    vals = pd.to_numeric(df[col].str.strip(), errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(vals)
    if bad.any():
        i = int(np.argmax(bad))
        raise _fail(path, f"line {i + 2}, column {col!r}", f"{df[col].iloc[i]!r} is not a number", "fix or remove that row")
    return vals


def _lengths(vals: np.ndarray, where: np.ndarray, unit: str, path: Path, col: str, *, allow_zero: bool = False) -> np.ndarray:
    """Token counts: whole numbers, > 0 (or >= 0 with ``allow_zero``)."""
    frac = vals != np.round(vals)
    low = vals < 0 if allow_zero else vals <= 0
    for bad, what in ((frac, "is not a whole number of tokens"), (low, "is not a positive number of tokens")):
        if bad.any():
            i = int(np.argmax(bad))
            raise _fail(path, f"{unit} {int(where[i])}, {col!r}", f"{vals[i]:g} {what}", "fix or remove that request")
    return vals.astype(np.int64)


def _monotonic(ts_ns: np.ndarray, where: np.ndarray, unit: str, path: Path, col: str) -> np.ndarray:
    dec = np.zeros(len(ts_ns), dtype=bool)
    dec[1:] = ts_ns[1:] < ts_ns[:-1]
    if dec.any():
        i = int(np.argmax(dec))
        raise _fail(
            path, f"{unit} {int(where[i])}, {col!r}",
            "timestamp goes backwards (before the previous request's)", "sort the trace by its timestamp column",
        )
    return ts_ns


def _line_numbers(n: int) -> np.ndarray:
    return np.arange(2, n + 2, dtype=np.int64)  # line 1 is the header


# --- JSON helpers --------------------------------------------------------------------------------------


def _json_msg(exc: json.JSONDecodeError) -> str:
    """json's message without its dangling "at" ("Unterminated string starting at"): the caller says where."""
    return exc.msg.removesuffix(" at")


def _jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; malformed lines are errors."""
    _check_nonempty(path)
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise _fail(path, f"line {lineno}", f"not valid JSON ({_json_msg(exc)} at column {exc.colno})",
                            "each line must be one JSON object; fix or remove it") from exc
            if not isinstance(obj, dict):
                raise _fail(path, f"line {lineno}", f"a JSON {type(obj).__name__}, not an object", "each line must be one JSON object")
            yield lineno, obj


def _field(obj: dict[str, Any], key: str, path: Path, lineno: int, kinds: tuple[type, ...], fix: str) -> Any:
    if key not in obj:
        close = difflib.get_close_matches(key, list(obj), n=1, cutoff=0.6)
        hint = f" (found {close[0]!r}: rename it)" if close else ""
        raise _fail(path, f"line {lineno}", f"missing key {key!r}{hint}", fix)
    val = obj[key]
    if isinstance(val, bool) or not isinstance(val, kinds):
        raise _fail(path, f"line {lineno}, {key!r}", f"{val!r} is not a {'/'.join(k.__name__ for k in kinds)}", fix)
    return val


# --- importers ----------------------------------------------------------------------------------------


def import_azure(path: Path) -> RawTrace:
    """Azure LLM inference trace: ``TIMESTAMP,ContextTokens,GeneratedTokens`` (datetime strings or seconds)."""
    df = _read_csv(path, ("TIMESTAMP", "ContextTokens", "GeneratedTokens"), "Azure LLM inference trace")
    where = _line_numbers(len(df))
    raw = df["TIMESTAMP"].str.strip()
    numeric = pd.to_numeric(raw, errors="coerce")
    if numeric.notna().all():
        ts = np.rint(numeric.to_numpy(dtype=np.float64) * NS_PER_S).astype(np.int64)
    else:
        parsed = pd.to_datetime(raw, format="ISO8601", errors="coerce")
        bad = parsed.isna().to_numpy()
        if bad.any():
            i = int(np.argmax(bad))
            raise _fail(path, f"line {i + 2}, column 'TIMESTAMP'", f"{df['TIMESTAMP'].iloc[i]!r} is not a timestamp",
                        "use 'YYYY-MM-DD HH:MM:SS.ffffff' (or seconds) in every row")
        ts = parsed.to_numpy().astype("datetime64[ns]").astype(np.int64)
    return RawTrace(
        source=str(path), unit="line", where=where,
        prefill=_lengths(_numbers(df, "ContextTokens", path), where, "line", path, "ContextTokens"),
        decode=_lengths(_numbers(df, "GeneratedTokens", path), where, "line", path, "GeneratedTokens"),
        timestamps_ns=_monotonic(ts, where, "line", path, "TIMESTAMP"),
    )


def import_burstgpt(path: Path) -> RawTrace:
    """BurstGPT: ``Timestamp`` (s), ``Request tokens``, ``Response tokens``; rows with 0 response tokens are
    failed requests in BurstGPT's logs and are skipped (counted in the workload's meta)."""
    cols = ("Timestamp", "Request tokens", "Response tokens")
    df = _read_csv(path, cols, "BurstGPT")
    lines = _line_numbers(len(df))
    ts = np.rint(_numbers(df, "Timestamp", path) * NS_PER_S).astype(np.int64)
    _monotonic(ts, lines, "line", path, "Timestamp")
    resp = _lengths(_numbers(df, "Response tokens", path), lines, "line", path, "Response tokens", allow_zero=True)
    ok = resp > 0
    if not ok.any():
        raise InputError(f"{path}: every row has 0 'Response tokens' (failed requests); give a trace with successful requests")
    return RawTrace(
        source=str(path), unit="line", where=lines[ok],
        prefill=_lengths(_numbers(df, "Request tokens", path)[ok], lines[ok], "line", path, "Request tokens"),
        decode=resp[ok], timestamps_ns=ts[ok], notes={"skipped_failed_requests": int((~ok).sum())},
    )


def import_vidur_trace(path: Path) -> RawTrace:
    """Vidur's processed traces: ``arrived_at`` (s), ``num_prefill_tokens``, ``num_decode_tokens`` (extra columns ignored)."""
    df = _read_csv(path, ("arrived_at", "num_prefill_tokens", "num_decode_tokens"), "Vidur processed trace")
    where = _line_numbers(len(df))
    ts = np.rint(_numbers(df, "arrived_at", path) * NS_PER_S).astype(np.int64)
    return RawTrace(
        source=str(path), unit="line", where=where,
        prefill=_lengths(_numbers(df, "num_prefill_tokens", path), where, "line", path, "num_prefill_tokens"),
        decode=_lengths(_numbers(df, "num_decode_tokens", path), where, "line", path, "num_decode_tokens"),
        timestamps_ns=_monotonic(ts, where, "line", path, "arrived_at"),
    )


def import_mooncake(path: Path) -> RawTrace:
    """Mooncake traces: JSONL with ``timestamp`` (ms), ``input_length``, ``output_length`` (other keys ignored)."""
    fix = "each line needs numeric 'timestamp' (ms), 'input_length' and 'output_length'"
    where, ts, pre, dec = [], [], [], []
    for lineno, obj in _jsonl(path):
        where.append(lineno)
        ts.append(_field(obj, "timestamp", path, lineno, (int, float), fix))
        pre.append(_field(obj, "input_length", path, lineno, (int, float), fix))
        dec.append(_field(obj, "output_length", path, lineno, (int, float), fix))
    w = np.array(where, dtype=np.int64)
    t = np.rint(np.array(ts, dtype=np.float64) * NS_PER_MS).astype(np.int64)
    return RawTrace(
        source=str(path), unit="line", where=w,
        prefill=_lengths(np.array(pre, dtype=np.float64), w, "line", path, "input_length"),
        decode=_lengths(np.array(dec, dtype=np.float64), w, "line", path, "output_length"),
        timestamps_ns=_monotonic(t, w, "line", path, "timestamp"),
    )


def import_prompts_jsonl(path: Path) -> RawTrace:
    """Prompt texts: JSONL of ``{"prompt": str}`` with an optional ``num_decode_tokens`` (or ``output_len``, or
    vLLM's custom-dataset ``output_tokens``); without one, the decode length is drawn from ``workload.lengths.decode``."""
    fix = 'each line must look like {"prompt": "...", "num_decode_tokens": 64} (the count is optional)'
    where, texts, dec = [], [], []
    for lineno, obj in _jsonl(path):
        text = _field(obj, "prompt", path, lineno, (str,), fix)
        if not text.strip():
            raise _fail(path, f"line {lineno}, 'prompt'", "the prompt is empty (zero tokens)", "give a non-empty prompt or remove the line")
        key = next((k for k in ("num_decode_tokens", "output_len", "output_tokens") if obj.get(k) is not None), None)
        n = DRAW if key is None else _field(obj, key, path, lineno, (int,), fix)
        if key is not None and n <= 0:
            raise _fail(path, f"line {lineno}, {key!r}", f"{n} is not a positive number of tokens", fix)
        where.append(lineno)
        texts.append(text)
        dec.append(n)
    return RawTrace(source=str(path), unit="line", where=np.array(where, dtype=np.int64), texts=texts,
                    decode=np.array(dec, dtype=np.int64))


_HUMAN = ("human", "user")
_BOT = ("gpt", "chatgpt", "assistant", "bard", "bing", "model")


def import_sharegpt(path: Path) -> RawTrace:
    """ShareGPT JSON: a list of ``{"conversations": [{"from": "human"|"gpt", "value": str}, ...]}``.

    The first human turn is the prompt; the first reply after it gives the decode length (its
    token count). Conversations without such a pair, or with an empty one, are skipped (counted).
    """
    _check_nonempty(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise _fail(path, f"line {exc.lineno}", f"not valid JSON ({_json_msg(exc)} at column {exc.colno})",
                    "the ShareGPT format is one JSON array of conversations") from exc
    if not isinstance(data, list) or not data:
        raise InputError(f"{path}: expected a non-empty JSON array of conversations (the ShareGPT format)")
    fix = 'each entry must look like {"conversations": [{"from": "human", "value": "..."}, {"from": "gpt", ...}]}'
    where, prompts, replies = [], [], []
    skipped = 0
    for i, entry in enumerate(data):
        conv = entry.get("conversations") if isinstance(entry, dict) else None
        if not isinstance(conv, list) or not all(
            isinstance(t, dict) and isinstance(t.get("from"), str) and isinstance(t.get("value"), str) for t in conv
        ):
            ident = f" (id {entry.get('id')!r})" if isinstance(entry, dict) and "id" in entry else ""
            raise _fail(path, f"entry {i}{ident}", "malformed conversation", fix)
        h = next((j for j, t in enumerate(conv) if t["from"].lower() in _HUMAN), None)
        g = next((j for j in range(h + 1, len(conv)) if conv[j]["from"].lower() in _BOT), None) if h is not None else None
        if g is None or not conv[h]["value"].strip() or not conv[g]["value"].strip():
            skipped += 1
            continue
        where.append(i)
        prompts.append(conv[h]["value"])
        replies.append(conv[g]["value"])
    if not prompts:
        raise InputError(f"{path}: no conversation has a non-empty human turn followed by a reply; {fix}")
    return RawTrace(
        source=str(path), unit="entry", where=np.array(where, dtype=np.int64), texts=prompts, decode_texts=replies,
        decode=np.full(len(prompts), DRAW, dtype=np.int64), notes={"skipped_conversations": skipped},
    )


IMPORTERS: dict[str, Callable[[Path], RawTrace]] = {
    "sharegpt": import_sharegpt,
    "azure": import_azure,
    "mooncake": import_mooncake,
    "burstgpt": import_burstgpt,
    "vidur_trace": import_vidur_trace,
    "prompts_jsonl": import_prompts_jsonl,
}
