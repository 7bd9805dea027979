"""Model outputs for every bar of a history, through the served `signal_ensemble` on Triton.

A backtest must score exactly what live serving would have said, so there is no second model
path: features come from the one pipeline (computed once over the whole frame, warm-up bars
included), are normalised with the *served* spec, and go to Triton in batches of at most the
ensemble's max_batch_size with several requests in flight. For any bar the tensors equal what
`online.inputs_for_latest` builds from the bars up to it (indicator memory decays within the
warm-up; see features/indicators.py), so the outputs equal a live request for that bar.

Results are cached on disk, keyed by everything they depend on (served model version and spec,
symbol, timeframe, the bars themselves), so re-running a backtest skips features and inference.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt
import pandas as pd

from orchestrator.errors import ModelsUnavailableError
from orchestrator.features.baseline import baseline_features, season_cells
from orchestrator.features.dataset import (
    F32,
    context_vectors,
    normalise,
    sequence_windows,
    tabular_vectors,
    valid_ends,
)
from orchestrator.features.head import apply_head
from orchestrator.features.indicators import compute_features
from orchestrator.features.online import ModelInputs, required_bars, seed_bars
from orchestrator.features.spec import FeatureSpec
from orchestrator.fileio import atomic_file
from orchestrator.inference.client import SignalModels
from orchestrator.marketdata.store import OHLCV
from orchestrator.marketdata.timeframes import Timeframe
from orchestrator.settings import RUN_DIR

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]

PREDICTION_CACHE_DIR = RUN_DIR / "cache" / "predictions"
MAX_BATCH = 256  # the ensemble's max_batch_size
DEFAULT_IN_FLIGHT = 4
CACHE_FORMAT = 2  # bump when the cached arrays change meaning
CACHE_KEEP = 64  # newest cache files kept (~22 MB each for 215k bars)

ProgressFn = Callable[[int, int], None]  # (bars done, bars total)


class ModelChangedError(ModelsUnavailableError):
    """The served ensemble changed version while a history was being scored: the models are
    being reloaded, so the API answers 503 and a retry succeeds."""


def warmup_bars(spec: FeatureSpec) -> int:
    """Bars needed before the first scored bar: what the live path needs, less the bar itself."""
    return required_bars(spec) - 1


def history_bars_wanted(spec: FeatureSpec) -> int:
    """Bars read before the first scored bar when the store has them: the baselines' week too,
    so their inputs equal the live ones (a live state is seeded from as many)."""
    return seed_bars(spec) - 1


@dataclass(frozen=True, eq=False)
class BarPredictions:
    """Per-bar model outputs aligned to the scored bars; NaN where `valid` is False."""

    times: I64  # bar open times, ns since the epoch (UTC)
    close: F64
    atr: F64  # price units, from the same features as the model inputs
    valid: Bool  # the bar had a full window of features and was scored
    direction: F32  # +1 long, -1 short
    # The served numbers (the spec's serving head applied, as the live API answers):
    confidence: F64  # P(the trade in `direction` wins), calibrated
    p_long: F64
    p_short: F64
    served_range: F64  # (N, 2H): [up, down] per horizon, ATR units
    gru_range: F32  # (N, 2H): the networks' own outputs
    transformer_range: F32
    model_version: str
    feature_fingerprint: str
    cached: bool = False
    features_s: float = 0.0
    inference_s: float = 0.0

    def __len__(self) -> int:
        return int(self.times.size)

    @property
    def up_atr(self) -> F64:
        """(N, H): the served up-range per horizon, as the live API answers it."""
        return self.served_range[:, 0::2]

    @property
    def down_atr(self) -> F64:
        return self.served_range[:, 1::2]

    def arrays(self) -> dict[str, npt.NDArray[Any]]:
        return {name: getattr(self, name) for name in _ARRAYS}

    def tail(self, skip: int) -> BarPredictions:
        """The same predictions without the first `skip` bars."""
        arrays: dict[str, Any] = {name: values[skip:] for name, values in self.arrays().items()}
        return dataclasses.replace(self, **arrays)

    @classmethod
    def concat(cls, parts: list[BarPredictions]) -> BarPredictions:
        """Consecutive stretches of one series (e.g. walk-forward windows) as one."""
        if not parts:
            raise ValueError("nothing to concatenate")
        fingerprints = {p.feature_fingerprint for p in parts}
        if len(fingerprints) != 1:
            raise ValueError(f"predictions from different feature pipelines: {fingerprints}")
        versions = list(dict.fromkeys(p.model_version for p in parts))
        arrays = {name: np.concatenate([getattr(p, name) for p in parts]) for name in _ARRAYS}
        return cls(
            **arrays,
            model_version=",".join(versions),
            feature_fingerprint=parts[0].feature_fingerprint,
            cached=all(p.cached for p in parts),
            features_s=sum(p.features_s for p in parts),
            inference_s=sum(p.inference_s for p in parts),
        )


_ARRAYS = (
    "times",
    "close",
    "atr",
    "valid",
    "direction",
    "confidence",
    "p_long",
    "p_short",
    "served_range",
    "gru_range",
    "transformer_range",
)


class FeatureBlock:
    """Model inputs for bars[first:], built once: tabular and context rows for every scored
    bar up front (small), sequence windows per batch (55x larger, so never all at once)."""

    def __init__(self, bars: pd.DataFrame, spec: FeatureSpec, first: int) -> None:
        features = compute_features(bars)
        self.spec = spec
        self.first = first
        self.z = normalise(features, spec)
        self.atr = features["atr"].to_numpy(np.float64)[first:]
        self.close = bars["close"].to_numpy(np.float64)[first:]
        self.times = pd.DatetimeIndex(bars.index).asi8[first:]
        ok = valid_ends(self.z, spec.window) & np.isfinite(features["atr"].to_numpy())
        ok[:first] = False
        self.ends: I64 = np.flatnonzero(ok).astype(np.int64)
        self.valid: Bool = ok[first:]
        self.tab = tabular_vectors(self.z, self.ends)
        self.ctx = context_vectors(self.z, self.ends)
        atr = features["atr"].to_numpy(np.float64)
        self.har: F64 = baseline_features(bars, atr, Timeframe(spec.timeframe))[first:]
        self.season: I64 = season_cells(pd.DatetimeIndex(bars.index))[first:]

    def __len__(self) -> int:
        return int(self.ends.size)

    def inputs(self, start: int, stop: int) -> ModelInputs:
        """Scored bars start..stop-1 as one batch. ModelInputs usually holds one bar ((1, ...)
        arrays); SignalModels.infer concatenates along the batch axis, so a block works as is."""
        ends = self.ends[start:stop]
        row = int(ends[-1]) - self.first
        return ModelInputs(
            sequence_windows(self.z, ends, self.spec.window),
            self.tab[start:stop],
            self.ctx[start:stop],
            float(self.atr[row]),
            float(self.close[row]),
            pd.Timestamp(int(self.times[row]), tz="UTC"),
            self.har[ends - self.first],
            self.season[ends - self.first],
        )


def cache_key(
    bars: pd.DataFrame, first: int, *, symbol: str, timeframe: str, version: str, spec: FeatureSpec
) -> str:
    """Hash of every input the predictions depend on; the spec carries the normalisation
    statistics, which tell apart models that reuse a version number in another repository."""
    digest = hashlib.sha256()
    header = {
        "format": CACHE_FORMAT,
        "version": version,
        "fingerprint": spec.fingerprint,
        "spec": hashlib.sha256(spec.dumps()).hexdigest(),
        "symbol": symbol,
        "timeframe": timeframe,
        "first_bar": str(bars.index[0]),
        "last_bar": str(bars.index[-1]),
        "scored_from": first,
    }
    digest.update(msgspec.json.encode(header))
    digest.update(np.ascontiguousarray(pd.DatetimeIndex(bars.index).asi8).tobytes())
    digest.update(np.ascontiguousarray(bars[OHLCV].to_numpy(np.float64)).tobytes())
    return digest.hexdigest()[:40]


def cache_path(cache_dir: Path, symbol: str, timeframe: str, key: str) -> Path:
    return cache_dir / f"{symbol}_{timeframe}_{key}.npz"


def load_cached(path: Path, expected_rows: int) -> BarPredictions | None:
    """The cached predictions, or None when missing or unreadable (then they are recomputed)."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in _ARRAYS}
            version, fingerprint = str(stored["model_version"]), str(stored["fingerprint"])
    except (OSError, KeyError, ValueError):
        return None
    if arrays["times"].shape != (expected_rows,):
        return None
    with contextlib.suppress(OSError):
        os.utime(path)  # recently used: pruned last
    return BarPredictions(
        **arrays, model_version=version, feature_fingerprint=fingerprint, cached=True
    )


def save_cached(path: Path, predictions: BarPredictions) -> None:
    """Written to a temporary file in the same directory and renamed: readers never see half."""
    payload: dict[str, Any] = {
        "model_version": np.str_(predictions.model_version),
        "fingerprint": np.str_(predictions.feature_fingerprint),
        **predictions.arrays(),
    }
    with atomic_file(path) as stream:
        np.savez(stream, **payload)
    prune_cache(path.parent)


def prune_cache(cache_dir: Path, keep: int = CACHE_KEEP) -> None:
    """Deletes all but the `keep` most recently used cache files."""
    entries = []
    for entry in cache_dir.glob("*.npz"):
        with contextlib.suppress(OSError):
            entries.append((entry.stat().st_mtime, entry))
    for _, stale in sorted(entries, reverse=True)[keep:]:
        stale.unlink(missing_ok=True)


def _batches(total: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, total, size):
        yield start, min(start + size, total)


async def _infer_all(
    models: SignalModels,
    block: FeatureBlock,
    *,
    batch_size: int,
    in_flight: int,
    progress: ProgressFn | None,
) -> tuple[dict[str, F32], set[str]]:
    """Every scored bar through the ensemble: `in_flight` workers pull batches from one queue,
    so at most that many requests (and sequence tensors) exist at a time."""
    n = len(block)
    n_ranges = block.spec.n_ranges
    out: dict[str, F32] = {
        "direction": np.empty(n, np.float32),
        "confidence": np.empty(n, np.float32),
        "p_long": np.empty(n, np.float32),
        "p_short": np.empty(n, np.float32),
        "gru_range": np.empty((n, n_ranges), np.float32),
        "transformer_range": np.empty((n, n_ranges), np.float32),
    }
    versions: set[str] = set()
    pending = _batches(n, batch_size)
    done = 0

    async def worker() -> None:
        nonlocal done
        for start, stop in pending:  # one shared iterator: each batch is taken exactly once
            result = await models.infer([block.inputs(start, stop)])
            versions.add(result.model_version)
            out["direction"][start:stop] = result.direction
            out["confidence"][start:stop] = result.confidence
            out["p_long"][start:stop] = result.p_long
            out["p_short"][start:stop] = result.p_short
            out["gru_range"][start:stop] = result.gru_range
            out["transformer_range"][start:stop] = result.transformer_range
            done += stop - start
            if progress is not None:
                progress(done, n)

    tasks = [asyncio.create_task(worker()) for _ in range(max(1, in_flight))]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    return out, versions


def _aligned(block: FeatureBlock, outputs: dict[str, F32]) -> dict[str, F32]:
    """Outputs for the scored bars spread over every bar (NaN where a bar was not scored)."""
    rows = block.ends - block.first
    aligned = {}
    for name, values in outputs.items():
        full = np.full((block.valid.size, *values.shape[1:]), np.nan, np.float32)
        full[rows] = values
        aligned[name] = full
    return aligned


async def predict_bars(
    models: SignalModels,
    bars: pd.DataFrame,
    *,
    symbol: str,
    first: int,
    cache_dir: Path | None = PREDICTION_CACHE_DIR,
    batch_size: int = MAX_BATCH,
    in_flight: int = DEFAULT_IN_FLIGHT,
    progress: ProgressFn | None = None,
) -> BarPredictions:
    """Predictions for bars[first:]; the `first` bars before them are warm-up only.

    progress(done, total) is called once the features are ready (done=0), after every batch,
    and once on a cache hit.
    """
    if not 0 <= first < len(bars):
        raise ValueError(f"first={first} must index a bar of the {len(bars)} given")
    if not 1 <= batch_size <= MAX_BATCH:
        raise ValueError(f"batch_size must be within 1..{MAX_BATCH} (the ensemble's limit)")
    version = await models.served_version()
    spec = await models.spec(version)
    path = None
    if cache_dir is not None:
        key = cache_key(
            bars, first, symbol=symbol, timeframe=spec.timeframe, version=version, spec=spec
        )
        path = cache_path(cache_dir, symbol, spec.timeframe, key)
        hit = load_cached(path, len(bars) - first)
        if hit is not None:
            if progress is not None:
                progress(len(hit), len(hit))
            return hit

    started = time.perf_counter()
    block = await asyncio.to_thread(FeatureBlock, bars, spec, first)
    features_s = time.perf_counter() - started
    if progress is not None:
        progress(0, len(block))
    started = time.perf_counter()
    outputs, versions = await _infer_all(
        models, block, batch_size=batch_size, in_flight=in_flight, progress=progress
    )
    inference_s = time.perf_counter() - started
    if versions - {version}:
        raise ModelChangedError(
            f"{symbol}: the served signal_ensemble changed from version {version} to "
            f"{', '.join(sorted(versions - {version}))} while it was being scored; run it again"
        )
    aligned = _aligned(block, outputs)
    served = apply_head(
        spec.head,
        aligned["gru_range"],
        aligned["transformer_range"],
        block.har,
        block.season,
        aligned["p_long"],
        aligned["p_short"],
        aligned["confidence"],
    )
    predictions = BarPredictions(
        times=block.times,
        close=block.close,
        atr=block.atr,
        valid=block.valid,
        direction=aligned["direction"],
        confidence=served.confidence,
        p_long=served.p_long,
        p_short=served.p_short,
        served_range=served.ranges,
        gru_range=aligned["gru_range"],
        transformer_range=aligned["transformer_range"],
        model_version=version,
        feature_fingerprint=spec.fingerprint,
        features_s=features_s,
        inference_s=inference_s,
    )
    if path is not None:
        await asyncio.to_thread(save_cached, path, predictions)
    return predictions
