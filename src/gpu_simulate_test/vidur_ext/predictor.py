"""Vidur's own sklearn execution-time predictor, trained from a local profiling root, nothing downloaded.

``vidur==0.0.26`` fetches ``mlp.csv.xz``/``attention.csv.xz`` (and pre-computed predictions) from the
Hugging Face hub. The subclasses here read a bundle's ``mlp.csv``/``attention.csv`` instead, train in
a cache dir of their own per bundle content (Vidur's cache key ignores the model and the CSV bytes),
and are registered under Vidur's own predictor keys, so ``Simulator`` builds them unchanged.

Public API (the vidur-profile helper uses the first three to check a bundle on held-out shapes):
    PredictorGrid(tokens: int, prefill_chunk: int, batch_size: int)
        The predictor's pre-computed grid: tokens of one request or iteration, prefill chunk, decode batch.
    build_predictor(mlp_csv: Path, attention_csv: Path, *, model: ModelConfig, hardware: HardwareConfig,
                    block_size: int, grid: PredictorGrid, cache_root: Path, vidur: VidurConfig | None = None,
                    seed: int = 0, step_terms: StepTerms | None = None) -> SklearnExecutionTimePredictor
        Vidur's predictor (``vidur.execution_time_predictor_type``) trained on the two CSVs; the files
        may sit in a bundle that is still being written. ``step_terms`` (``step_correction.py``, from the
        bundle's meta) key its lookups and are added to every step it predicts.
    predict_batch_time_s(predictor, shapes: Sequence[tuple[int, int]], *, serial: bool) -> float
        Vidur's predicted time (seconds, its roundings included) of ONE iteration whose requests have
        ``(num_q_tokens, num_kv_tokens)`` each, exactly as Vidur's ``Batch`` takes them: ``num_q_tokens``
        = prompt tokens of the chunk (1 for a decode), ``num_kv_tokens`` = context after this iteration
        (tokens cached before + ``num_q_tokens``); ``serial``: the engine packs it at its start (it admits a
        request that arrived during the step before, or the engine was idle), for a bundle with a host term.
    predictor_config(...) -> the Vidur predictor config (used by vidur-sim's SimulationConfig).
    predictor_settings(vidur, seed) -> every setting that decides what the predictor learns (cache key, run meta).
    grid_for(limits, vidur) -> PredictorGrid covering a bundle's whole grid.
    grid_tokens_needed(request_tokens, tokens_per_iteration) -> the grid's least ``tokens`` for a run.
    grid_for_needs(tokens, prefill_chunk, batch_size) -> PredictorGrid covering a run's needs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from vidur.config import (
    BaseExecutionTimePredictorConfig,
    CacheConfig,
    LinearRegressionExecutionTimePredictorConfig,
    RandomForrestExecutionTimePredictorConfig,
)
from vidur.entities import Batch, Request
from vidur.execution_time_predictor import ExecutionTimePredictorRegistry
from vidur.execution_time_predictor.linear_regression_execution_time_predictor import (
    LinearRegressionExecutionTimePredictor,
)
from vidur.execution_time_predictor.random_forrest_execution_time_predictor import (
    RandomForrestExecutionTimePredictor,
)
from vidur.execution_time_predictor.sklearn_execution_time_predictor import SklearnExecutionTimePredictor
from vidur.types import ExecutionTimePredictorType, ReplicaId
from vidur.utils.random import set_seeds

from gpu_simulate_test.config.hardware import HardwareConfig
from gpu_simulate_test.config.model import ModelConfig
from gpu_simulate_test.config.vidur import VidurConfig
from gpu_simulate_test.errors import ArtifactError, GstError, InputError
from gpu_simulate_test.io.ids import canonical_json, short_hash
from gpu_simulate_test.vidur_ext.profiler.grid import pow2_at_least
from gpu_simulate_test.vidur_ext.profiling_root import GridLimits
from gpu_simulate_test.vidur_ext.registration import build_replica_config, replace_registration, vidur_model_name
from gpu_simulate_test.vidur_ext.step_correction import StepTerms

KV_GRANULARITY = 256  # Vidur's kv_cache_prediction_granularity (its default; KV lookups round up to it)
CHUNK_GRANULARITY = 32  # Vidur rounds prefill chunks up to multiples of 32
TOKEN_GRANULARITY = 8  # Vidur rounds an iteration's tokens up to multiples of 8


@dataclass(frozen=True)
class PredictorGrid:
    """What the predictor pre-computes; every lookup of a run must fall inside (else Vidur raises KeyError).

    ``tokens``: tokens of one request (its KV) or of one iteration, whichever is larger (Vidur's
    ``prediction_max_tokens_per_request``); ``prefill_chunk`` and ``batch_size`` as in ``config.limits``.
    """

    tokens: int
    prefill_chunk: int
    batch_size: int


@dataclass
class LocalRandomForrestConfig(RandomForrestExecutionTimePredictorConfig):
    """Vidur's random-forest config plus the bundle to read; ``get_type`` stays RANDOM_FORREST."""

    profiling_files: Optional[tuple[str, str]] = None  # (mlp.csv, attention.csv)
    random_state: Optional[int] = None
    step_terms: Optional[StepTerms] = None  # the bundle's step terms and row keys (step_correction.py)


@dataclass
class LocalLinearRegressionConfig(LinearRegressionExecutionTimePredictorConfig):
    profiling_files: Optional[tuple[str, str]] = None
    random_state: Optional[int] = None
    step_terms: Optional[StepTerms] = None


def measured_decode_batches(attention_csv: Path) -> list[int]:
    """The batch sizes a profile's decode attention rows were measured at."""
    attention = pd.read_csv(attention_csv, usecols=["batch_size", "prefill_chunk_size"])
    return sorted(int(b) for b in attention.loc[attention["prefill_chunk_size"] == 0, "batch_size"].unique())


def measured_prefill_chunks(attention_csv: Path) -> list[int]:
    """The chunk sizes a profile's prefill attention rows were measured at."""
    attention = pd.read_csv(attention_csv, usecols=["prefill_chunk_size"])
    return sorted(int(c) for c in attention["prefill_chunk_size"].unique() if c > 0)


def _between_measured(rows: dict[Any, float], measured: Sequence[int], axis: int) -> dict[Any, float]:
    """Predictions keyed by pairs, each key between two measured values on ``axis`` (0 or 1) read linearly between the
    predictions at those two, the other part of the key held; the measured keys, and those outside them, as
    predicted. Vidur's random forest answers a key between two measured ones with one of them (a sawtooth)."""
    keys_by_other: dict[int, list[int]] = {}
    for key in rows:
        keys_by_other.setdefault(int(key[1 - axis]), []).append(int(key[axis]))

    def pair(on_axis: int, other: int) -> tuple[int, int]:
        return (on_axis, other) if axis == 0 else (other, on_axis)

    out = dict(rows)
    for other, values in keys_by_other.items():
        points = [m for m in measured if pair(m, other) in rows]
        if len(points) < 2:
            continue
        times = [float(rows[pair(m, other)]) for m in points]
        for v in values:
            if points[0] < v < points[-1]:
                out[pair(v, other)] = float(np.interp(v, points, times))
    return out


def between_measured_batches(rows: dict[Any, float], measured: Sequence[int]) -> dict[Any, float]:
    """Vidur's decode attention predictions ``(batch size, KV) -> ms``, each batch size between two measured ones read
    linearly between the predictions at those two, at its KV (``decode_attention_batch: between_measured``)."""
    return _between_measured(rows, measured, axis=0)


def between_measured_chunks(rows: dict[Any, float], measured: Sequence[int]) -> dict[Any, float]:
    """Vidur's prefill attention predictions ``(KV, chunk) -> ms``, each chunk between two measured chunk sizes read
    linearly between the predictions at those two, at its KV (``prefill_attention_chunk: between_measured``)."""
    return _between_measured(rows, measured, axis=1)


class _LocalProfileMixin:
    """Read the profile from local files; without ``profiling_files`` behave exactly as Vidur does."""

    _config: BaseExecutionTimePredictorConfig

    def _local_files(self) -> Optional[tuple[str, str]]:
        return getattr(self._config, "profiling_files", None)

    def _predict_from_models(self, models: dict[str, Any]) -> dict[str, Any]:
        """Vidur's predictions on its grid; with ``decode_attention_batch: between_measured`` the decode attention
        of every batch size read linearly between the batch sizes its rows were measured at, with
        ``prefill_attention_chunk: between_measured`` the prefill attention of every chunk between its measured
        chunk sizes."""
        predictions = super()._predict_from_models(models)  # type: ignore[misc]
        files = self._local_files()
        keys = self._terms().keys
        if files is not None and keys.decode_attention_batch == "between_measured":
            predictions["attn_decode"] = between_measured_batches(predictions["attn_decode"],
                                                                  measured_decode_batches(Path(files[1])))
        if files is not None and keys.prefill_attention_chunk == "between_measured":
            predictions["attn_prefill"] = between_measured_chunks(predictions["attn_prefill"],
                                                                  measured_prefill_chunks(Path(files[1])))
        return predictions

    def _get_input_files(self) -> tuple[str, str, str, str]:
        files = self._local_files()
        if files is None:
            return super()._get_input_files()  # type: ignore[misc]
        mlp, attention = files
        # all_reduce / send_recv are read only with TP > 1 or PP > 1, which vidur-sim never sets.
        return mlp, attention, f"{mlp}.no_all_reduce_at_tp1", f"{mlp}.no_send_recv_at_pp1"

    def _load_predictions_from_hf(self) -> dict[str, Any]:
        """The hub fetch, replaced: train on the local profile (cached per bundle) and predict the grid."""
        if self._local_files() is None:
            return super()._load_predictions_from_hf()  # type: ignore[misc]
        return self._predict_from_models(self._train_models())  # type: ignore[attr-defined]

    def _train_models(self) -> dict[str, BaseEstimator]:
        try:
            return super()._train_models()  # type: ignore[misc]
        except GstError:
            raise
        except Exception as exc:  # noqa: BLE001 - Vidur raises bare Exceptions (e.g. empty training data)
            raise ArtifactError(
                f"Vidur's predictor could not be trained from {self._local_files()}: {exc}; "
                "check that the bundle was profiled for this model, TP=1 and this KV block size"
            ) from exc

    def _terms(self) -> StepTerms:
        return getattr(self._config, "step_terms", None) or StepTerms()

    def _graph(self, batch: Batch) -> Optional[tuple[int, int]]:
        """The ``(tokens, sequences)`` of the engine's graph that runs the batch (``token_rows: graph_bucket``)."""
        if not hasattr(batch, "_gst_graph"):
            decode_only = all(q == 1 for q in batch.num_q_tokens)
            batch._gst_graph = self._terms().keys.graph(batch._total_num_q_tokens, batch.size, decode_only)
        return batch._gst_graph

    def _serial(self, batch: Batch) -> bool:
        """Whether the engine packs the batch at its start rather than while the batch before it ran
        (``step_correction.HostTerm``): it holds a request that arrived after the replica's previous batch was
        scheduled, or it is the replica's first. Decided once a batch, in the order Vidur schedules them (its stage
        scheduler predicts each batch once, when it starts); :func:`predict_batch_time_s` sets it instead."""
        if not hasattr(batch, "_gst_serial"):
            last: dict[int, float] = self.__dict__.setdefault("_gst_last_scheduled", {})
            before = last.get(batch.replica_id)
            batch._gst_serial = before is None or any(r.arrived_at > before for r in batch.requests)
            last[batch.replica_id] = batch.scheduled_at
        return batch._gst_serial

    def _idle_gap_ms(self, batch: Batch) -> float:
        """How long the replica was idle before the batch (ms): from its previous batch's end (scheduled plus
        predicted) to this one's start; 0 back to back, the longest gap for the replica's first batch (the engine idle
        since its warm-up). Decided once a batch, in schedule order (``get_execution_time`` then records its end);
        :func:`predict_batch_time_s` sets it instead (0: a shape timed back to back)."""
        if not hasattr(batch, "_gst_idle_gap_ms"):
            ends: dict[int, float] = self.__dict__.setdefault("_gst_last_end", {})
            end = ends.get(batch.replica_id)
            start = batch._scheduled_at  # None where no scheduler placed it (Vidur's property raises then)
            batch._gst_idle_gap_ms = 0.0 if start is None else float("inf") if end is None else \
                max(0.0, (start - end) * 1e3)
        return batch._gst_idle_gap_ms

    def get_execution_time(self, batch: Batch, pipeline_stage: int) -> Any:
        """Vidur's step; with ``token_rows: exact`` or ``graph_bucket`` (``step_correction.RowKeys``) its token rows
        are looked up at the step's own tokens or its graph's for this one prediction, the batch left as Vidur made
        it."""
        if self._terms().host is not None:
            self._serial(batch)  # before anything else reads the batch: once, in schedule order
        if self._terms().idle is not None:
            self._idle_gap_ms(batch)
        out = self._execution_time(batch, pipeline_stage)
        if self._terms().idle is not None and batch._scheduled_at is not None:
            self.__dict__.setdefault("_gst_last_end", {})[batch.replica_id] = batch._scheduled_at + out.total_time
        return out

    def _execution_time(self, batch: Batch, pipeline_stage: int) -> Any:
        token_rows = self._terms().keys.token_rows
        if token_rows not in ("exact", "graph_bucket"):
            return super().get_execution_time(batch, pipeline_stage)  # type: ignore[misc]
        graph = self._graph(batch) if token_rows == "graph_bucket" else None
        rounded = batch._total_num_q_tokens_rounded
        batch._total_num_q_tokens_rounded = batch._total_num_q_tokens if graph is None else graph[0]
        try:
            return super().get_execution_time(batch, pipeline_stage)  # type: ignore[misc]
        finally:
            batch._total_num_q_tokens_rounded = rounded

    def _prefill_kv(self, batch: Batch) -> list[tuple[int, int]]:
        """The ``(KV, chunk)`` of the batch's prompt chunks, the KV not rounded: with ``prefill_attention_kv:
        before_chunk`` the context cached before the chunk, where the rows were measured; else Vidur's, after it.
        Computed once a batch: the keys and the ``between`` reading both use it."""
        if not hasattr(batch, "_gst_prefill_kv"):
            before = self._terms().keys.prefill_attention_kv == "before_chunk"
            batch._gst_prefill_kv = [(int(kv - q) if before else int(kv), int(q))
                                     for q, kv in zip(batch.num_q_tokens, batch.num_kv_tokens) if q != 1]
        return batch._gst_prefill_kv

    def _get_batch_prefill_attention_params(self, batch: Batch) -> list[tuple[int, int]]:
        """Vidur's ``(KV, chunk)`` keys of the batch's prompt chunks, the KV rounded up to Vidur's KV granularity (the
        KV before the chunk with ``prefill_attention_kv: before_chunk``, Vidur's: after it)."""
        if self._terms().keys.prefill_attention_kv != "before_chunk":
            return super()._get_batch_prefill_attention_params(batch)  # type: ignore[misc]
        if not hasattr(batch, "_prefill_params"):
            g = int(self._config.kv_cache_prediction_granularity)
            batch._prefill_params = [(_round_up(kv, g), q) for kv, q in self._prefill_kv(batch)]
        return batch._prefill_params

    def _prefill_rows(self, batch: Batch) -> list[float]:
        """Each prompt chunk's attention row at its key; with ``prefill_attention_kv_read: between`` read at its KV
        itself, linearly between the rows at the granularity points on either side (Vidur's: the point above)."""
        rows = self._predictions["attn_prefill"]  # type: ignore[attr-defined]
        params = self._get_batch_prefill_attention_params(batch)
        out = [rows[(kv, _round_up(c, CHUNK_GRANULARITY))] for kv, c in params]
        if self._terms().keys.prefill_attention_kv_read == "between":
            g = int(self._config.kv_cache_prediction_granularity)
            for k, ((kv, c), (exact, _)) in enumerate(zip(params, self._prefill_kv(batch))):
                below = rows.get((kv - g, _round_up(c, CHUNK_GRANULARITY)))
                if below is not None and exact < kv:
                    out[k] = below + (exact - (kv - g)) / g * (out[k] - below)
        return out

    def _get_attention_prefill_execution_time(self, batch: Batch) -> float:
        """Vidur's prefill attention, one row a chunk, summed; with ``prefill_chunks: one_wave`` (or ``one_launch``) a
        step whose chunks fit one wave of the engine's launch costs its longest chunk's row; with ``one_launch`` a
        bigger step costs the summed rows less a launch's fixed cost (the row of 32 tokens at KV 0) for every chunk
        after the first, the engine running all of a step's chunks in one launch."""
        keys = self._terms().keys
        if keys.prefill_attention_kv_read != "between" and keys.prefill_chunks == "summed":
            return super()._get_attention_prefill_execution_time(batch)  # type: ignore[misc]
        params = self._get_batch_prefill_attention_params(batch)
        if not params:
            return 0.0
        chunk_rows = self._prefill_rows(batch)
        if len(params) > 1 and keys.one_wave([c for _, c in params]):
            return max(chunk_rows)
        if len(params) > 1 and keys.prefill_chunks == "one_launch":
            launch = self._predictions["attn_prefill"][(0, CHUNK_GRANULARITY)]  # type: ignore[attr-defined]
            return sum(chunk_rows) - (len(params) - 1) * launch
        return sum(chunk_rows)

    def _get_attention_decode_execution_time(self, batch: Batch) -> float:
        """Vidur's batched decode attention; with ``decode_batching: as_measured`` the row alone, without Vidur's
        overhead factor for ragged batches; with ``decode_attention_kv: mean`` the row at the batch's mean KV, between
        Vidur's lookup points (its own: the mean rounded up to the KV granularity)."""
        keys = self._terms().keys
        if keys.decode_batching != "as_measured" and keys.decode_attention_kv != "mean":
            return super()._get_attention_decode_execution_time(batch)  # type: ignore[misc]
        size, kv = self._get_batch_decode_attention_params(batch)  # type: ignore[attr-defined]
        if size == 0:
            return 0.0
        rows = self._predictions["attn_decode"]  # type: ignore[attr-defined]
        row = rows[(size, kv)]
        if keys.decode_attention_kv == "mean":
            g = int(self._config.kv_cache_prediction_granularity)
            below = rows.get((size, kv - g))
            if below is not None:
                mean = float(np.mean([k for q, k in zip(batch.num_q_tokens, batch.num_kv_tokens) if q == 1]))
                row = below + (mean - (kv - g)) / g * (row - below)
        if keys.decode_batching != "as_measured" and size > 1:
            row *= 1 + self._attention_decode_batching_overhead_fraction  # type: ignore[attr-defined]
        return row

    def _get_add_layer_act_execution_time(self, batch: Batch) -> float:
        """Vidur's ``add`` row plus the bundle's step terms (the whole-step correction at the step's tokens rounded up
        to 8 and its requests' first chunks: a chunk of more than one token whose KV after the step is the chunk, the
        work outside the layers at its requests, the host's share at its requests, packed ahead or at its start, and
        for a step no graph holds the eager term at its tokens; for a step a graph runs, what that graph costs beyond
        its parts: a decode batch's, or one with a prompt chunk's; for a step that starts on an idle replica, the
        engine's wake-up and slower first step at that idle gap)
        over the layers that Vidur multiplies it by
        (``step_correction.py``): the step comes out as the operators plus the terms, nothing patched."""
        base = super()._get_add_layer_act_execution_time(batch)  # type: ignore[misc]
        terms = self._terms()
        extra = 0.0
        if terms.correction is not None:
            first = sum(1 for q, kv in zip(batch.num_q_tokens, batch.num_kv_tokens) if 1 < q == kv)
            extra += terms.correction.ms(_round_up(batch._total_num_q_tokens, TOKEN_GRANULARITY), first)
        if terms.outside is not None:
            extra += terms.outside.at_step(batch.size, self._graph(batch))
        if terms.host is not None:
            extra += terms.host.at(batch.size, self._serial(batch))
            extra += terms.host.eager_at(batch._total_num_q_tokens, self._graph(batch))
        decode_only = all(q == 1 for q in batch.num_q_tokens)
        if terms.graph is not None:
            extra += terms.graph.at_step(self._graph(batch), decode_only, batch.size)
        if terms.chunk is not None:
            extra += terms.chunk.at_step(self._graph(batch), decode_only, batch.size)
        if terms.idle is not None:
            extra += terms.idle.at(self._idle_gap_ms(batch))
        return base + extra / self._num_layers_per_pipeline_stage  # type: ignore[attr-defined]

    def _train_model(self, model_name: str, model_type: Any, df: pd.DataFrame, feature_cols: list[str],
                     target_col: str) -> BaseEstimator:
        """Vidur's training of one operator's model; notes whether it is a token operator (one row per token count),
        which ``token_fit: every_row`` fits without bootstrap samples (``_get_estimator``)."""
        self._gst_token_model = list(feature_cols) == ["num_tokens"]
        return super()._train_model(model_name, model_type, df, feature_cols, target_col)  # type: ignore[misc]

    def _get_estimator(self) -> BaseEstimator:
        """Vidur's estimator with a fixed random state, so one bundle always trains the same model; a token operator's
        forest without bootstrap samples where the bundle's ``token_fit`` is ``every_row``."""
        est = super()._get_estimator()  # type: ignore[misc]
        state = getattr(self._config, "random_state", None)
        params = est.get_params()
        if state is not None and "random_state" in params:
            est.set_params(random_state=state)
        if self._terms().keys.token_fit == "every_row" and getattr(self, "_gst_token_model", False) \
                and "bootstrap" in params:
            est.set_params(bootstrap=False)
        return est


class LocalRandomForrestPredictor(_LocalProfileMixin, RandomForrestExecutionTimePredictor):
    pass


class LocalLinearRegressionPredictor(_LocalProfileMixin, LinearRegressionExecutionTimePredictor):
    def _get_kv_parallel_communication_time(self, batch: Batch) -> float:
        """Vidur 0.0.26 left this abstract here (its random forest delegates it the same way): without it the
        linear-regression predictor cannot even be built."""
        return super()._get_kv_parallel_communication_time(batch)


@dataclass(frozen=True)
class _PredictorKind:
    key: ExecutionTimePredictorType
    predictor: type[SklearnExecutionTimePredictor]
    config: type[BaseExecutionTimePredictorConfig]  # Vidur's own config class plus the bundle's files
    grid: Callable[[VidurConfig], dict[str, list[Any]]]  # the project's narrowed hyper-parameter grid


PREDICTORS: dict[str, _PredictorKind] = {
    "random_forrest": _PredictorKind(
        ExecutionTimePredictorType.RANDOM_FORREST, LocalRandomForrestPredictor, LocalRandomForrestConfig,
        lambda v: {"num_estimators": list(v.random_forrest.num_estimators), "max_depth": list(v.random_forrest.max_depth),
                   "min_samples_split": list(v.random_forrest.min_samples_split)},
    ),
    "linear_regression": _PredictorKind(
        ExecutionTimePredictorType.LINEAR_REGRESSION, LocalLinearRegressionPredictor, LocalLinearRegressionConfig,
        lambda v: {"polynomial_degree": list(v.linear_regression.polynomial_degree),
                   "polynomial_include_bias": list(v.linear_regression.polynomial_include_bias),
                   "polynomial_interaction_only": list(v.linear_regression.polynomial_interaction_only),
                   "fit_intercept": list(v.linear_regression.fit_intercept)},
    ),
}
PREDICTOR_GRIDS = ("narrow", "stock")  # vidur.predictor_grid: the project's grid, or Vidur's own defaults


def _kind(vidur: VidurConfig) -> _PredictorKind:
    kind = PREDICTORS.get(str(vidur.execution_time_predictor))
    if kind is None:
        raise InputError(
            f"vidur.execution_time_predictor={vidur.execution_time_predictor!r} is not one of {sorted(PREDICTORS)}"
        )
    return kind


def predictor_settings(vidur: VidurConfig, seed: int) -> dict[str, Any]:
    """Every setting that decides what Vidur's predictor learns from a bundle, resolved: the predictor, its
    hyper-parameter grid and cross-validation folds (``vidur.predictor_grid``: ``narrow``, the project's from
    ``vidur.random_forrest`` / ``vidur.linear_regression`` / ``vidur.k_fold_cv_splits``, or ``stock``, Vidur's own
    defaults), the random state and the GQA decode overhead. All of it enters the predictor cache key and
    ``run_meta.json``; only the number of training threads is left out (it changes how fast, not what, it learns)."""
    kind = _kind(vidur)
    if vidur.predictor_grid not in PREDICTOR_GRIDS:
        raise InputError(f"vidur.predictor_grid={vidur.predictor_grid!r} is not one of {list(PREDICTOR_GRIDS)}")
    if vidur.predictor_grid == "stock":
        stock = kind.config()
        grid = {name: list(getattr(stock, name)) for name in kind.grid(vidur)}
        folds = int(stock.k_fold_cv_splits)
    else:
        grid, folds = kind.grid(vidur), int(vidur.k_fold_cv_splits)
    return {"execution_time_predictor": str(vidur.execution_time_predictor), "predictor_grid": str(vidur.predictor_grid),
            **grid, "k_fold_cv_splits": folds, "random_state": int(seed), "kv_cache_prediction_granularity": KV_GRANULARITY,
            "attention_decode_batching_overhead_fraction": float(vidur.attention_decode_batching_overhead_fraction)}


def register_predictors() -> None:
    """Put the local-profile predictors under Vidur's own keys (unregistering Vidur's first)."""
    for kind in PREDICTORS.values():
        replace_registration(ExecutionTimePredictorRegistry, kind.key, kind.predictor)


def _round_up(value: int, step: int) -> int:
    return -(-int(value) // step) * step


def grid_tokens_needed(request_tokens: int, tokens_per_iteration: int) -> int:
    """The least ``prediction_max_tokens_per_request`` that every lookup of a run falls inside, after Vidur's
    roundings: a request's KV length (up to ``request_tokens``) and an iteration's tokens (up to
    ``tokens_per_iteration``, several prompt chunks packed together)."""
    return max(_round_up(request_tokens, KV_GRANULARITY), _round_up(tokens_per_iteration, TOKEN_GRANULARITY))

def grid_for_needs(tokens: int, prefill_chunk: int, batch_size: int) -> PredictorGrid:
    """A grid over the needs, rounded up to powers of two so that similar runs reuse Vidur's cache."""
    return PredictorGrid(
        tokens=pow2_at_least(tokens, KV_GRANULARITY),
        prefill_chunk=pow2_at_least(prefill_chunk, CHUNK_GRANULARITY),
        batch_size=int(batch_size),
    )


def grid_for(limits: GridLimits, vidur: Optional[VidurConfig] = None) -> PredictorGrid:
    """The grid covering a bundle's whole :class:`~.profiling_root.GridLimits`."""
    top = max(limits.request_tokens, limits.tokens_per_iteration)
    if vidur is not None and vidur.prediction_max_tokens_per_request:
        top = int(vidur.prediction_max_tokens_per_request)
    return PredictorGrid(_round_up(top, KV_GRANULARITY), _round_up(limits.prefill_chunk, CHUNK_GRANULARITY), limits.batch_size)


def bundle_cache_dir(cache_root: Path, mlp_csv: Path, attention_csv: Path, model: ModelConfig,
                     settings: dict[str, Any]) -> Path:
    """``<cache_root>/vidur_predictor/<hash of the CSV bytes, the model and every predictor setting>``: one dir per
    bundle and setting (Vidur's own cache key ignores the CSVs, the model and the hyper-parameter grid)."""
    for path in (mlp_csv, attention_csv):
        if not Path(path).is_file():
            raise ArtifactError(f"profiling root: {path} is missing; rebuild the bundle with vidur-profile")
    model_key = canonical_json({"name": vidur_model_name(model), "head_dim": int(model.head_dim), "predictor": settings})
    digest = short_hash(Path(mlp_csv).read_bytes(), Path(attention_csv).read_bytes(), model_key, length=16)
    return Path(cache_root) / "vidur_predictor" / digest


def predictor_config(
    mlp_csv: Path, attention_csv: Path, *, model: ModelConfig, grid: PredictorGrid, cache_root: Path,
    vidur: Optional[VidurConfig] = None, seed: int = 0, step_terms: Optional[StepTerms] = None,
) -> BaseExecutionTimePredictorConfig:
    """Vidur's predictor config reading the two CSVs, with :func:`predictor_settings` and a cache dir of their own;
    ``step_terms`` (the bundle's: ``step_correction.step_terms``) key the lookups and are added to every step after
    them, so they change no trained model and no cache."""
    vidur = vidur or VidurConfig()
    settings = predictor_settings(vidur, seed)
    token_fit = (step_terms or StepTerms()).keys.token_fit
    cache_dir = bundle_cache_dir(cache_root, mlp_csv, attention_csv, model,
                                 settings if token_fit == "bootstrap" else {**settings, "token_fit": token_fit})
    kind = _kind(vidur)
    cfg = kind.config(**{name: settings[name] for name in kind.grid(vidur)})
    cfg.profiling_files = (str(Path(mlp_csv).resolve()), str(Path(attention_csv).resolve()))
    cfg.random_state = settings["random_state"]
    cfg.model_profiling_dataset = f"local:{cache_dir.name}"  # enters Vidur's own cache key
    cfg.network_profiling_dataset = "none:tp1-pp1"
    cfg.cache_dir = str(cache_dir)
    cfg.k_fold_cv_splits = settings["k_fold_cv_splits"]
    cfg.num_training_job_threads = int(vidur.num_training_job_threads)
    cfg.attention_decode_batching_overhead_fraction = settings["attention_decode_batching_overhead_fraction"]
    cfg.kv_cache_prediction_granularity = settings["kv_cache_prediction_granularity"]
    cfg.prediction_max_tokens_per_request = int(grid.tokens)
    cfg.prediction_max_prefill_chunk_size = int(grid.prefill_chunk)
    cfg.prediction_max_batch_size = int(grid.batch_size)
    cfg.upload_predictions = False
    cfg.no_cache = False
    cfg.use_native_execution_time_predictor = False
    cfg.step_terms = step_terms
    return cfg


def build_predictor(
    mlp_csv: Path, attention_csv: Path, *, model: ModelConfig, hardware: HardwareConfig, block_size: int,
    grid: PredictorGrid, cache_root: Path, vidur: Optional[VidurConfig] = None, seed: int = 0,
    step_terms: Optional[StepTerms] = None,
) -> SklearnExecutionTimePredictor:
    """Vidur's own predictor for ``model`` on ``hardware`` (TP=1, PP=1), trained on the two CSVs (with the bundle's
    step terms and row keys, if any)."""
    vidur = vidur or VidurConfig()
    logging.getLogger("vidur").setLevel(str(vidur.log_level).upper())
    register_predictors()
    replica = build_replica_config(model, hardware)
    cfg = predictor_config(mlp_csv, attention_csv, model=model, grid=grid, cache_root=cache_root, vidur=vidur, seed=seed,
                           step_terms=step_terms)
    check_profile_rows(mlp_csv, attention_csv, model=model, block_size=block_size)
    set_seeds(seed)
    return _kind(vidur).predictor(predictor_config=cfg, replica_config=replica, cache_config=CacheConfig(block_size=int(block_size)))


def check_profile_rows(mlp_csv: Path, attention_csv: Path, *, model: ModelConfig, block_size: int) -> None:
    """The rows Vidur will select (its filter columns) exist for this model, TP=1 and KV block size."""
    mlp = pd.read_csv(mlp_csv)
    attention = pd.read_csv(attention_csv)
    mlp_keys = {"n_head": int(model.num_attention_heads), "n_kv_head": int(model.num_kv_heads), "n_embd": int(model.hidden_size),
                "n_expanded_embd": int(model.intermediate_size), "vocab_size": int(model.vocab_size),
                "num_tensor_parallel_workers": 1}
    attn_keys = {"n_embd": int(model.hidden_size), "n_q_head": int(model.num_attention_heads),
                 "n_kv_head": int(model.num_kv_heads), "num_tensor_parallel_workers": 1, "block_size": int(block_size)}
    for path, df, keys in ((mlp_csv, mlp, mlp_keys), (attention_csv, attention, attn_keys)):
        for col, want in keys.items():
            if col not in df.columns:
                raise ArtifactError(f"{path}: no column {col!r}, which Vidur filters on; rebuild the bundle (specs/profiling_root.md)")
            have = sorted(set(df[col].tolist()))
            if want not in have:
                raise ArtifactError(
                    f"{path}: no rows with {col}={want} (model {model.name}, TP=1, block size {block_size}); it has {have[:8]}: "
                    "the bundle was profiled for another model or backend"
                )
    decode = attention[attention["prefill_chunk_size"] == 0]
    if decode.empty or len(decode) == len(attention):
        raise ArtifactError(f"{attention_csv}: needs both prefill rows (prefill_chunk_size > 0) and decode rows (= 0)")


def predict_batch_time_s(predictor: SklearnExecutionTimePredictor, shapes: Sequence[tuple[int, int]], *,
                         serial: bool) -> float:
    """Vidur's predicted time of one iteration, built from Vidur's own ``Request``/``Batch`` objects; ``serial``: the
    engine packs it at its start (``step_correction.HostTerm``; a bundle without a host term reads nothing of it)."""
    if not shapes:
        raise ValueError("a batch needs at least one (num_q_tokens, num_kv_tokens) pair")
    for q, kv in shapes:
        if q < 1 or kv < q:
            raise ValueError(f"bad batch shape ({q}, {kv}): need num_q_tokens >= 1 and num_kv_tokens >= num_q_tokens")
    requests = [Request(arrived_at=0.0, num_prefill_tokens=int(kv), num_decode_tokens=1) for _, kv in shapes]
    batch = Batch(ReplicaId(0), requests, [int(q) for q, _ in shapes], [int(kv) for _, kv in shapes])
    batch._gst_serial = bool(serial)
    batch._gst_idle_gap_ms = 0.0
    return float(predictor.get_execution_time(batch, 0).total_time)
