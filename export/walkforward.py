"""Walk-forward backtest: out-of-sample by construction.

[start, end) is cut into K consecutive test windows. For each window the export pipeline trains
models (export/train.py) on bars *before* the window only, exports them as a new version, a
Triton server loads that version, and the window's bars are scored through it exactly as in a
plain backtest (predictions.py). The per-window predictions are concatenated and simulated once,
so trades may run from one window into the next as they would live.

Purging: training gets the bars strictly before the window start and computes its targets from
them alone, so a label that would need a bar at or after the window start is NaN and its sample
is dropped (collect_samples) -- no training row looks into the test window. The per-window report
records the newest training bar and the newest bar any label used; both precede the window.

Serving: a short-lived tritonserver in explicit model-control mode with an empty scratch
repository, one per walk-forward run (not per window: start-up costs seconds), started once the
first window's models are trained so that a range that cannot be trained fails fast. Each
window's version is exported into it and loaded with load_model, composing models first and the
ensemble last; the version policy (latest 1) retires the previous window's models. A scratch
repository rather than the served one, so a backtest never publishes models into production.
Callers that already run such a server pass it as a ModelSlot.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import itertools
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import tritonclient.grpc.aio as grpc_aio
from tritonclient.utils import InferenceServerException

from export.exporter import export_profiles
from export.train import (
    SymbolData,
    TrainConfig,
    TrainedModels,
    collect_samples,
    config_dict,
    prepare_symbol,
    spec_from_stats,
    train_all,
)
from orchestrator.backtest.predictions import (
    DEFAULT_IN_FLIGHT,
    MAX_BATCH,
    BarPredictions,
    predict_bars,
    warmup_bars,
)
from orchestrator.backtest.report import BacktestResult, WalkForwardReport, WindowReport
from orchestrator.backtest.request import (
    BacktestRequest,
    BacktestRequestError,
    check_timeframe,
    resolve_horizon,
    resolve_request,
)
from orchestrator.backtest.runner import (
    PhaseProgress,
    Stage,
    load_history,
    simulate_and_report,
    symbol_horizon_bars,
)
from orchestrator.devstack.process import free_ports
from orchestrator.devstack.triton import TritonServer
from orchestrator.features.indicators import FEATURE_NAMES
from orchestrator.inference.client import ModelServiceUnavailableError, SignalModels
from orchestrator.inference.models import BASE_TIMEFRAME, ENSEMBLE, feature_models, served_name
from orchestrator.marketdata.db import Database
from orchestrator.settings import RUN_DIR

Trainer = Callable[[list[SymbolData], TrainConfig], TrainedModels]
SCRATCH_DIR = RUN_DIR / "walkforward"


@dataclass(frozen=True)
class WalkForwardConfig:
    windows: int = 4
    train: TrainConfig = field(default_factory=lambda: TrainConfig(show_progress=False))
    train_bars: int | None = None  # history per window; None: every bar before the window
    timeout_s: float = 60.0  # per inference request and per model load


@dataclass(frozen=True)
class ModelSlot:
    """A Triton server in explicit model-control mode serving `<root>/cpu`, reserved for
    walk-forward models (every window exports a version into `root` and loads it)."""

    root: Path
    client: grpc_aio.InferenceServerClient
    description: str


@asynccontextmanager
async def scratch_slot() -> AsyncIterator[ModelSlot]:
    """A tritonserver on free ports with an empty scratch repository; stopped and deleted after."""
    parent = SCRATCH_DIR
    parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="walkforward-", dir=parent))
    repository = scratch / "models" / "cpu"
    repository.mkdir(parents=True)
    http, grpc, metrics = free_ports(3)
    server = TritonServer(
        repository, http, grpc, metrics, run_dir=scratch, name="triton-walkforward", load_models=[]
    )
    client: grpc_aio.InferenceServerClient | None = None
    try:
        await asyncio.to_thread(server.start)
        client = grpc_aio.InferenceServerClient(f"127.0.0.1:{grpc}")
        yield ModelSlot(
            repository.parent,
            client,
            f"scratch tritonserver (explicit model control) on gRPC 127.0.0.1:{grpc}, "
            "one model version per window",
        )
    finally:
        if client is not None:
            await client.close()
        await asyncio.to_thread(server.stop)
        shutil.rmtree(scratch, ignore_errors=True)


async def load_version(
    slot: ModelSlot, version: int, timeout_s: float, timeframe: str = BASE_TIMEFRAME
) -> None:
    """Composing models first (concurrently: each Python-backend stub takes seconds to start),
    the ensemble last, then check that the new version answers."""
    ensemble = served_name(ENSEMBLE, timeframe)
    steps = [name for name in feature_models(timeframe) if name != ensemble]
    try:
        await asyncio.gather(
            *(slot.client.load_model(name, client_timeout=timeout_s) for name in steps)
        )
        await slot.client.load_model(ensemble, client_timeout=timeout_s)
        ready = await slot.client.is_model_ready(ensemble, str(version))
    except InferenceServerException as exc:
        raise ModelServiceUnavailableError(
            f"loading walk-forward models version {version} failed: {exc.message() or exc}"
        ) from exc
    if not ready:
        raise ModelServiceUnavailableError(
            f"{ensemble} version {version} is not ready after load_model"
        )


@dataclass(frozen=True)
class _Trained:
    models: TrainedModels
    samples: int
    last_sample: int  # row (in the training frame) of the newest sample
    train_s: float
    label_span: int  # bars after a sample that its longest label reads (its calendar's)


def _train_window(
    symbol: str, frame: pd.DataFrame, cfg: TrainConfig, trainer: Trainer, window: int
) -> _Trained:
    """Train on `frame` (bars before the window) and check that no label reached past it."""
    started = time.perf_counter()
    data = prepare_symbol(symbol, frame, cfg)
    samples = collect_samples([data])
    try:
        models = trainer([data], cfg)
    except ValueError as exc:
        raise BacktestRequestError(
            "walk_forward",
            f"window {window}: cannot train on the {len(frame)} bars before "
            f"{frame.index[-1]:%Y-%m-%d %H:%M} ({exc}); start later, use fewer windows or "
            "ingest more history",
        ) from None
    last = int(samples.end.max())
    if last + data.label_span >= len(frame):
        raise RuntimeError(f"window {window}: a training label looks past the training bars")
    return _Trained(models, len(samples), last, time.perf_counter() - started, data.label_span)


def _window_report(
    number: int,
    frame: pd.DataFrame,
    tested: pd.Index,
    end: datetime,
    trained: _Trained,
    part: BarPredictions,
    export_s: float,
    load_s: float,
) -> WindowReport:
    newest_label = trained.last_sample + trained.label_span
    return WindowReport(
        index=number,
        start=tested[0].to_pydatetime(),
        end=end,
        test_bars=len(tested),
        train_first_bar=frame.index[0].to_pydatetime(),
        train_last_bar=frame.index[-1].to_pydatetime(),
        last_label_bar=frame.index[newest_label].to_pydatetime(),
        train_samples=trained.samples,
        model_version=part.model_version,
        train_s=trained.train_s,
        export_s=export_s,
        load_s=load_s,
        inference_s=part.features_s + part.inference_s,
    )


async def run_walk_forward(
    request: BacktestRequest,
    *,
    db: Database,
    config: WalkForwardConfig,
    slot: ModelSlot | None = None,
    progress: PhaseProgress | None = None,
    trainer: Trainer = train_all,
    batch_size: int = MAX_BATCH,
    in_flight: int = DEFAULT_IN_FLIGHT,
) -> BacktestResult:
    """Backtest [start, end) with models retrained before each of config.windows windows.

    Without a slot, a scratch server starts once the first window's models are trained (so a
    request that cannot train fails fast) and stops at the end. progress gets the phases
    "loading", "training", "inference" and "simulation"; training and inference fractions
    count over all windows.
    """
    started = time.perf_counter()
    notify = progress or (lambda phase, fraction: None)
    resolved = resolve_request(request)
    # Models are trained on the timeframe the backtest asks for (15m bars -> a 15m set).
    cfg = dataclasses.replace(config.train, timeframe=resolved.timeframe)
    # The spec every window's models will carry, less the normalisation statistics.
    template = spec_from_stats([0.0] * len(FEATURE_NAMES), [1.0] * len(FEATURE_NAMES), cfg)
    check_timeframe(resolved, template)
    k = resolve_horizon(request, template)
    if config.windows < 1:
        raise BacktestRequestError("walk_forward", "walk_forward needs at least 1 window")
    if config.train_bars is not None and config.train_bars < 1:
        raise BacktestRequestError("train_bars", "train_bars must be a positive number of bars")

    notify("loading", 0.0)
    warmup = warmup_bars(template)
    before = None if config.train_bars is None else max(config.train_bars, warmup)
    bars, first = await load_history(db, resolved, before=before, need=warmup)
    loading_s = time.perf_counter() - started
    notify("loading", 1.0)
    n_test = len(bars) - first
    if n_test < config.windows:
        raise BacktestRequestError(
            "walk_forward", f"{n_test} bars cannot be split into {config.windows} windows"
        )
    bounds = (first + np.linspace(0, n_test, config.windows + 1)).astype(np.int64).tolist()

    parts: list[BarPredictions] = []
    reports: list[WindowReport] = []
    training_s = 0.0
    last_spec = template
    windows = config.windows
    async with contextlib.AsyncExitStack() as stack:
        for i, (lo, hi) in enumerate(itertools.pairwise(bounds)):
            notify("training", i / windows)
            train_from = 0 if config.train_bars is None else max(0, lo - config.train_bars)
            frame = bars.iloc[train_from:lo]
            trained = await asyncio.to_thread(
                _train_window, resolved.symbol, frame, cfg, trainer, i + 1
            )
            if slot is None:
                slot = await stack.enter_async_context(scratch_slot())
            began = time.perf_counter()
            versions = await asyncio.to_thread(  # the scratch server serves the cpu profile only
                functools.partial(export_profiles, profiles=("cpu",)), trained.models, slot.root
            )
            export_s = time.perf_counter() - began
            began = time.perf_counter()
            await load_version(slot, versions["cpu"], config.timeout_s, cfg.timeframe.value)
            load_s = time.perf_counter() - began
            training_s += trained.train_s + export_s + load_s
            last_spec = trained.models.spec
            notify("training", (i + 1) / windows)

            def on_batch(done: int, total: int, i: int = i) -> None:
                notify("inference", (i + (done / total if total else 1.0)) / windows)

            part = await predict_bars(
                # fresh: no cached spec/version
                SignalModels(
                    slot.client, config.timeout_s, served_name(ENSEMBLE, cfg.timeframe.value)
                ),
                bars.iloc[lo - warmup : hi],
                symbol=resolved.symbol,
                first=warmup,
                cache_dir=None,  # version numbers repeat across scratch repositories
                batch_size=batch_size,
                in_flight=in_flight,
                progress=on_batch,
            )
            if part.model_version != str(versions["cpu"]):
                raise ModelServiceUnavailableError(
                    f"window {i + 1} was scored by version {part.model_version}, "
                    f"expected {versions['cpu']}"
                )
            parts.append(part)
            end = bars.index[hi].to_pydatetime() if hi < len(bars) else resolved.end
            reports.append(
                _window_report(
                    i + 1, frame, bars.index[lo:hi], end, trained, part, export_s, load_s
                )
            )
        serving = slot.description if slot is not None else ""

    notify("simulation", 0.0)
    # Any window's spec will do: tp/sl/horizons come from cfg; statistics are in the predictions.
    horizons = symbol_horizon_bars(last_spec, bars)
    stage = Stage(resolved, last_spec, k, bars.iloc[first:], horizons, first, loading_s, started)
    report = WalkForwardReport(
        windows=reports,
        train_config=config_dict(cfg),
        train_bars=config.train_bars,
        serving=serving,
    )
    result = simulate_and_report(
        stage, BarPredictions.concat(parts), training_s=training_s, walk_forward=report
    )
    notify("simulation", 1.0)
    return result
