"""Layout and validation of a profiling root (``tmp/profiling/<bundle_id>/``), the contract between
vidur-profile (writer) and vidur-sim (reader).

A root holds what ``vidur==0.0.26``'s sklearn execution-time predictor reads as its compute profile
(``mlp.csv``, ``attention.csv``, ``config.json``), the whole-iteration measurements and held-out check
that justify it, and ``profile_meta.json``. ``specs/profiling_root.md`` documents every file.
The grid limits live here so that vidur-sim can refuse a workload the profile does not cover.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

from gpu_simulate_test.config.limits import Limits
from gpu_simulate_test.errors import ArtifactError, InputError
from gpu_simulate_test.io.ids import canonical_json, content_hash, is_valid_id, short_hash
from gpu_simulate_test.io.meta import read_meta
from gpu_simulate_test.io.outputs import PROFILE_META
from gpu_simulate_test.vidur_ext.step_correction import META_KEY as STEP_CORRECTION_KEY
from gpu_simulate_test.vidur_ext.step_correction import OUTSIDE_KEY, ROW_KEYS_KEY
from gpu_simulate_test.vidur_ext.verdict import IMPORTED

BUNDLE_KIND = "profile_bundle"
MLP_FILE = "mlp.csv"
ATTENTION_FILE = "attention.csv"
DATASET_CONFIG_FILE = "config.json"  # what Vidur's HF compute datasets carry: model and device_sku
ITERATIONS_FILE = "iterations.csv"
HELD_OUT_FILE = "held_out_check.csv"
MLP_RAW_FILE = "mlp_raw.csv"  # the operator rows before the fold (optional: bundles before 2026-11-24 lack them)
ATTENTION_RAW_FILE = "attention_raw.csv"
VALIDATION_FILE = "validation_check.csv"  # each variant on the validation shapes (optional: bundles before issue 16)
REQUIRED_FILES = (PROFILE_META, MLP_FILE, ATTENTION_FILE, DATASET_CONFIG_FILE, ITERATIONS_FILE, HELD_OUT_FILE)
TENSOR_PARALLEL_SIZE = 1  # the bundles hold TP=1 rows only (no all_reduce/send_recv files)


# GridLimits field -> its key under profile_meta.json "grid_limits" (the names bundles have always been written with).
_STORED_KEYS = {"tokens_per_iteration": "max_tokens", "prefill_chunk": "max_prefill_chunk", "batch_size": "max_batch_size",
                "request_tokens": "max_kv_tokens", "block_size": "block_size"}


@dataclass(frozen=True)
class GridLimits:
    """What the profile covers; predictions outside it would be extrapolations, so vidur-sim refuses them.

    The names are those of ``config.limits.Limits``: ``tokens_per_iteration`` (the num_tokens grid of mlp.csv),
    ``prefill_chunk`` (tokens of one prefill chunk), ``batch_size`` (requests per iteration), ``request_tokens``
    (context, prompt + generated, of one request) and ``block_size`` (the KV block size the attention rows were
    filtered by). ``profile_meta.json`` stores them under the keys of :data:`_STORED_KEYS`.
    """

    tokens_per_iteration: int
    prefill_chunk: int
    batch_size: int
    request_tokens: int
    block_size: int

    def to_dict(self) -> dict[str, int]:
        return {_STORED_KEYS[k]: v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str) -> "GridLimits":
        try:
            return cls(**{field: int(data[key]) for field, key in _STORED_KEYS.items()})
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"{source}: 'grid_limits' must hold integers {list(_STORED_KEYS.values())} ({exc}); rebuild the bundle") from exc

    def violations(
        self,
        *,
        tokens_per_iteration: Optional[int] = None,
        prefill_chunk: Optional[int] = None,
        batch_size: Optional[int] = None,
        request_tokens: Optional[int] = None,
        block_size: Optional[int] = None,
    ) -> list[str]:
        """One sentence per requested quantity that exceeds the grid (empty: covered)."""
        checks = (
            ("tokens per iteration", tokens_per_iteration, self.tokens_per_iteration, "profile.max_tokens"),
            ("prefill chunk tokens", prefill_chunk, self.prefill_chunk, "profile.max_tokens"),
            ("requests per batch", batch_size, self.batch_size, "profile.max_batch_size"),
            ("tokens of one request (prompt + decode)", request_tokens, self.request_tokens, "profile.max_kv_tokens"),
        )
        out = [
            f"{what}: {asked} exceeds the profiled maximum {have} (rebuild the bundle with a larger {knob})"
            for what, asked, have, knob in checks
            if asked is not None and asked > have
        ]
        if block_size is not None and block_size != self.block_size:
            out.append(f"KV block size {block_size} differs from the profiled {self.block_size} (rebuild with that backend)")
        return out

    def require(self, what: str, **asked: Optional[int]) -> None:
        """Raise :class:`InputError` naming every way the request falls outside this grid (``what``: whose grid)."""
        bad = self.violations(**asked)
        if bad:
            raise InputError(f"{what} does not cover this workload: " + "; ".join(bad))

    def require_run(self, what: str, limits: Limits, request_tokens: int) -> None:
        """:meth:`require` for a run under ``limits`` (the backend's on the workload) whose longest request holds
        ``request_tokens`` tokens (prompt + decode)."""
        self.require(what, tokens_per_iteration=limits.tokens_per_iteration, prefill_chunk=limits.prefill_chunk,
                     batch_size=limits.batch_size, request_tokens=request_tokens, block_size=limits.block_size)


@dataclass(frozen=True)
class ProfilingRoot:
    """A validated bundle: its files, its grid and the model/hardware/backend it was measured for."""

    path: Path
    meta: dict[str, Any]
    limits: GridLimits

    @property
    def mlp_csv(self) -> Path:
        return self.path / MLP_FILE

    @property
    def attention_csv(self) -> Path:
        return self.path / ATTENTION_FILE

    @property
    def iterations_csv(self) -> Path:
        return self.path / ITERATIONS_FILE

    @property
    def held_out_csv(self) -> Path:
        return self.path / HELD_OUT_FILE

    @property
    def bundle_id(self) -> str:
        return str(self.meta["id"])

    @property
    def content(self) -> str:
        """:func:`bundle_content` of this bundle."""
        return _fingerprint((self.mlp_csv, self.attention_csv), self.meta)

    @property
    def model(self) -> dict[str, Any]:
        """The ``model`` config the bundle was measured with."""
        return dict(self.meta["config"]["model"])

    @property
    def hardware(self) -> dict[str, Any]:
        return dict(self.meta["config"]["hardware"])

    @property
    def backend(self) -> dict[str, Any]:
        return dict(self.meta["config"]["backend"])

    @property
    def imported(self) -> bool:
        """Imported from Vidur's own files: operator rows only, not tied to the backend that would run them."""
        return self.meta.get("source") == IMPORTED

    def require_match(self, *, model: str, hardware: str, backend: Optional[str] = None) -> None:
        """Refuse a bundle measured for another model/hardware/backend than the sim run's (an imported bundle fits
        any backend with its KV block size, which :meth:`GridLimits.require` checks)."""
        want = {"model": model, "hardware": hardware, "backend": None if self.imported else backend}
        have = {"model": self.model.get("name"), "hardware": self.hardware.get("name"), "backend": self.backend.get("name")}
        bad = [f"{k}={have[k]!r} (run asks for {want[k]!r})" for k in want if want[k] is not None and want[k] != have[k]]
        if bad:
            raise InputError(f"profiling root {self.path} was measured for {', '.join(bad)}; build a matching bundle with vidur-profile")


def bundle_content(path: Path) -> Optional[str]:
    """Fingerprint of what a simulation reads from the bundle at ``path`` (``mlp.csv``, ``attention.csv`` and the
    whole-step correction of its meta, if it has one), None if it has not both files: a bundle rebuilt from new
    measurements gets a new one, so what was simulated with the old one is simulated again."""
    files = (Path(path) / MLP_FILE, Path(path) / ATTENTION_FILE)
    if not all(f.is_file() for f in files):
        return None
    meta_path = Path(path) / PROFILE_META
    return _fingerprint(files, json.loads(meta_path.read_text()) if meta_path.is_file() else {})


def _fingerprint(files: tuple[Path, Path], meta: dict[str, Any]) -> str:
    """The files' bytes, plus the step terms and row keys where the bundle has them (``step_correction.py``: they
    change its predictions; a bundle with none keeps the fingerprint it always had, one with a step correction
    only the one it had before the others existed)."""
    record = meta.get(STEP_CORRECTION_KEY)
    others = {k: meta[k] for k in (OUTSIDE_KEY, ROW_KEYS_KEY) if meta.get(k) is not None}
    if record is None and not others:
        return content_hash(files)
    parts = [canonical_json(record)] if record is not None else []
    if others:
        parts.append(canonical_json(others))
    return short_hash(*(Path(p).read_bytes() for p in files), *parts, length=16)


def resolve_root(value: str, profiling_dir: Path) -> Path:
    """``value`` is a directory, or a bundle id under ``paths.profiling``."""
    as_path = Path(value)
    if as_path.is_dir():
        return as_path
    if is_valid_id(value) and (Path(profiling_dir) / value).is_dir():
        return Path(profiling_dir) / value
    raise InputError(
        f"profiling_root={value!r} is neither a directory nor a bundle id under {profiling_dir}; "
        "run vidur-profile first, or give the bundle's path"
    )


def load_profiling_root(path: Path, *, check_tables: bool = True) -> ProfilingRoot:
    """Validate the layout (files, meta kind/status, grid limits and, by default, every table's schema)."""
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"profiling root {path} does not exist; run vidur-profile first")
    missing = [f for f in REQUIRED_FILES if not (path / f).is_file()]
    if missing:
        raise ArtifactError(f"profiling root {path} lacks {missing}; it is incomplete or not a bundle (specs/profiling_root.md)")
    meta = read_meta(path / PROFILE_META, kind=BUNDLE_KIND)
    if meta["status"] != "complete":
        raise ArtifactError(f"{path / PROFILE_META}: status {meta['status']!r}; rebuild the bundle with vidur-profile")
    if "grid_limits" not in meta:
        raise ArtifactError(f"{path / PROFILE_META}: missing 'grid_limits'; rebuild the bundle with this version")
    limits = GridLimits.from_dict(meta["grid_limits"], str(path / PROFILE_META))
    try:
        json.loads((path / DATASET_CONFIG_FILE).read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path / DATASET_CONFIG_FILE}: line {exc.lineno}: not valid JSON; rebuild the bundle") from exc
    if check_tables:
        from gpu_simulate_test.io.tables import read_table
        from gpu_simulate_test.io.schemas import ATTENTION_PROFILE, HELD_OUT_CHECK, ITERATION_PROFILE, MLP_PROFILE

        for schema in (MLP_PROFILE, ATTENTION_PROFILE, ITERATION_PROFILE, HELD_OUT_CHECK):
            read_table(path / schema.filename, schema)
    return ProfilingRoot(path=path, meta=meta, limits=limits)
