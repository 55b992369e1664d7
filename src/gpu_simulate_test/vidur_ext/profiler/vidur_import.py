"""``vidur-profile mode=import source=<folder>``: a profile in Vidur's own layout, as a bundle marked imported.

Vidur keeps its operator profiles in ``data/profiling/compute/<device>/<model>/`` of its repository (``mlp.csv``,
``attention.csv``; its Hugging Face datasets hold the same as ``.csv.xz``). They hold more than a bundle does, and
the import (``specs/profiling_root.md``, "Imported bundles") turns them into one:

- rows: those of the model's layer shape, the tensor-parallel size asked for and the backend's KV block size;
- columns: the bundle's own; the others (``emb``, the attention reshapes) are dropped and listed in the meta;
- a key given more than once (``num_tokens``; batch, chunk and KV of an attention row) becomes one row whose every
  ``time_stats`` value is the median of the repeats' (their mean for two);
- ``vocab_size``: the model's (Vidur's Llama-2 profiles say 32768; no per-layer operator depends on it);
- the meta records where each file came from (path, SHA-256) and marks the bundle ``source: imported``,
  ``verdict: unverified``: no held-out check is possible without the hardware, so ``iterations.csv`` and
  ``held_out_check.csv`` are empty.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from gpu_simulate_test.config.apps import VidurProfileAppConfig
from gpu_simulate_test.config.model import ModelConfig
from gpu_simulate_test.errors import InputError
from gpu_simulate_test.io.ids import canonical_json, file_sha256, short_hash, without_defaults
from gpu_simulate_test.io.meta import build_meta, write_json
from gpu_simulate_test.io.outputs import PROFILE_META, atomic_dir
from gpu_simulate_test.io.schemas import (
    ATTENTION_PROFILE,
    HELD_OUT_CHECK,
    ITERATION_PROFILE,
    MLP_PROFILE,
    TableSchema,
)
from gpu_simulate_test.io.tables import write_table
from gpu_simulate_test.vidur_ext import profiling_root as pr
from gpu_simulate_test.vidur_ext.verdict import IMPORTED, bundle_verdict

def _find(source: Path, name: str) -> Path:
    for candidate in (source / name, source / f"{name}.xz"):
        if candidate.is_file():
            return candidate
    raise InputError(f"source={source}: no {name} (nor {name}.xz); give the folder of Vidur's profile, "
                     "data/profiling/compute/<device>/<model>/ in its repository")


def _read(path: Path, schema: TableSchema) -> pd.DataFrame:
    try:
        df = pd.read_csv(path)  # .xz is decompressed by its suffix
    except (OSError, EOFError, UnicodeDecodeError, ValueError, pd.errors.ParserError) as exc:
        raise InputError(
            f"{path}: not a readable CSV ({exc}); give Vidur's {schema.filename} as its profiler wrote it"
        ) from exc
    missing = [c for c in schema.column_names if c not in df.columns]
    if missing:
        raise InputError(f"{path}: lacks column(s) {missing[:6]}{' ...' if len(missing) > 6 else ''}; "
                         f"Vidur's {schema.filename} has them (specs/profiling_root.md)")
    return df


def _select(df: pd.DataFrame, path: Path, wanted: dict[str, Any], what: str) -> pd.DataFrame:
    """The rows whose columns equal ``wanted``; none is an error listing what the file holds instead."""
    mask = pd.Series(True, index=df.index)
    for col, value in wanted.items():
        mask &= df[col] == value
    if not mask.any():
        have = df[list(wanted)].drop_duplicates().head(6).to_dict("records")
        raise InputError(f"{path}: no rows for {what} {wanted}; it holds {have}")
    return df[mask]


def _merge_repeats(df: pd.DataFrame, key: tuple[str, ...]) -> tuple[pd.DataFrame, int]:
    """One row per key: the median of each time_stats column over the repeats; how many rows were merged away."""
    agg = {c: ("median" if c.startswith("time_stats.") else "first") for c in df.columns if c not in key}
    out = df.groupby(list(key), sort=True, as_index=False, dropna=False).agg(agg)
    return out[list(df.columns)], len(df) - len(out)


def _layer_shape(model: ModelConfig) -> dict[str, Any]:
    return {"n_head": model.num_attention_heads, "n_kv_head": model.num_kv_heads, "n_embd": model.hidden_size,
            "n_expanded_embd": model.intermediate_size, "use_gated_mlp": True}


def import_bundle(cfg: VidurProfileAppConfig) -> tuple[Path, bool]:
    """Write ``<paths.profiling>/<bundle_id>/`` from ``cfg.source``; an existing import of the same files is reused.
    Returns the bundle's directory and whether it existed already."""
    if not cfg.source:
        raise InputError("mode=import needs source=<folder with Vidur's mlp.csv and attention.csv>")
    source = Path(str(cfg.source)).expanduser()
    if not source.is_dir():
        raise InputError(f"source={cfg.source}: no such folder")
    tp = int(cfg.tensor_parallel_size)
    if tp != pr.TENSOR_PARALLEL_SIZE:
        raise InputError(f"tensor_parallel_size={tp}: vidur-sim simulates TP={pr.TENSOR_PARALLEL_SIZE} replicas only; "
                         f"import the TP={pr.TENSOR_PARALLEL_SIZE} rows")
    model, block = cfg.model, int(cfg.backend.block_size)
    files = {schema.filename: _find(source, schema.filename) for schema in (MLP_PROFILE, ATTENTION_PROFILE)}
    digests = {name: file_sha256(path) for name, path in files.items()}
    basis = {"files": digests, "model": without_defaults(asdict(model), ModelConfig), "device": cfg.hardware.vidur_device,
             "block_size": block, "tensor_parallel_size": tp}
    bid = f"{model.name}-{cfg.hardware.name}-vidur-{short_hash(canonical_json(basis))}"
    final = Path(cfg.paths.profiling) / bid
    if final.exists() and not cfg.overwrite:
        pr.load_profiling_root(final)
        return final, True

    record: dict[str, Any] = {"path": str(source.resolve()), "tensor_parallel_size": tp, "block_size": block,
                              "files": {}}
    tables = {}
    for schema, wanted, what in (
        (MLP_PROFILE, _layer_shape(model), f"model {model.name}'s layers"),
        (ATTENTION_PROFILE, {"n_embd": model.hidden_size, "n_q_head": model.num_attention_heads,
                             "n_kv_head": model.num_kv_heads, "block_size": block}, f"model {model.name}'s attention"),
    ):
        path = files[schema.filename]
        raw = _read(path, schema)
        tps = sorted(int(t) for t in raw["num_tensor_parallel_workers"].unique())
        if tp not in tps:
            raise InputError(f"{path}: no rows for tensor_parallel_size={tp}; it holds TP sizes {tps}")
        rows = _select(raw, path, {"num_tensor_parallel_workers": tp, **wanted}, what)
        merged, repeats = _merge_repeats(rows, schema.key)
        entry = {"path": str(path.resolve()), "sha256": digests[schema.filename], "rows": len(raw),
                 "rows_selected": len(rows), "repeated_keys_merged": repeats,
                 "dropped_columns": [c for c in raw.columns if c not in schema.column_names]}
        if schema is MLP_PROFILE:
            entry["vocab_size_in_source"] = sorted(int(v) for v in merged["vocab_size"].unique())
            merged = merged.assign(vocab_size=model.vocab_size)
        record["files"][schema.filename] = entry
        tables[schema.filename] = merged[schema.column_names]
    mlp, att = tables[MLP_PROFILE.filename], tables[ATTENTION_PROFILE.filename]
    prefill, decode = att[att["is_prefill"].astype(bool)], att[~att["is_prefill"].astype(bool)]
    if prefill.empty or decode.empty:
        raise InputError(f"{files[ATTENTION_PROFILE.filename]}: the selected rows need both prefill and decode rows")
    limits = pr.GridLimits(tokens_per_iteration=int(mlp["num_tokens"].max()),
                           prefill_chunk=int(prefill["prefill_chunk_size"].max()),
                           batch_size=int(decode["batch_size"].max()),
                           request_tokens=int(att["max_model_len"].max()), block_size=block)
    from gpu_simulate_test.vidur_ext.registration import vidur_model_name

    with atomic_dir(final, overwrite=bool(cfg.overwrite)) as out:
        write_table(mlp, out / pr.MLP_FILE, MLP_PROFILE)
        write_table(att, out / pr.ATTENTION_FILE, ATTENTION_PROFILE)
        write_table(pd.DataFrame(columns=ITERATION_PROFILE.column_names), out / pr.ITERATIONS_FILE, ITERATION_PROFILE)
        write_table(pd.DataFrame(columns=HELD_OUT_CHECK.column_names), out / pr.HELD_OUT_FILE, HELD_OUT_CHECK)
        write_json(out / pr.DATASET_CONFIG_FILE, {"model": vidur_model_name(model), "device_sku": cfg.hardware.vidur_device})
        config = {"model": asdict(model), "hardware": asdict(cfg.hardware), "backend": asdict(cfg.backend),
                  "import": {"source": str(cfg.source), "tensor_parallel_size": tp}}
        write_json(out / PROFILE_META, build_meta(
            kind=pr.BUNDLE_KIND, id=bid, config=config, inputs={"source": str(source.resolve())},
            grid_limits=limits.to_dict(), source=IMPORTED, verdict=bundle_verdict({"source": IMPORTED}).verdict,
            imported_from=record,
            held_out_check={"num_shapes": 0, "median_abs_error_pct": None, "table": []},
        ))
    return final, False
