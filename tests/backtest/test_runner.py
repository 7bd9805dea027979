"""Backtests over the Triton-served models: batched predictions equal live single-bar requests,
re-runs come from the cache, signals equal build_signal, no look-ahead, clear request errors.

Runs against the real MariaDB and a real tritonserver serving the suite's TINY models.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import numpy as np
import pandas as pd
import pytest
import tritonclient.grpc.aio as grpc_aio

from orchestrator.backtest.engine import BacktestConfig
from orchestrator.backtest.predictions import (
    FeatureBlock,
    history_bars_wanted,
    predict_bars,
    prune_cache,
    warmup_bars,
)
from orchestrator.backtest.report import MAX_EQUITY_POINTS, BacktestResult, downsample_equity
from orchestrator.backtest.request import (
    BacktestRequest,
    BacktestRequestError,
    EmptyRangeError,
    InsufficientHistoryError,
    UnknownBacktestSymbolError,
)
from orchestrator.backtest.runner import Levels, bar_signals, run_backtest
from orchestrator.devstack.triton import TritonServer
from orchestrator.errors import EngineError
from orchestrator.features.head import apply_head
from orchestrator.features.online import ModelInputs, inputs_for_latest
from orchestrator.inference.client import EnsembleOutput, SignalModels
from orchestrator.inference.models import ENSEMBLE
from orchestrator.ingest.writer import write_bars
from orchestrator.marketdata.db import Database
from orchestrator.marketdata.store import SymbolInfo
from orchestrator.marketdata.timeframes import Timeframe
from orchestrator.signals.barriers import Barrier, barrier_question, evaluate
from orchestrator.signals.logic import build_signal
from orchestrator.signals.strategies import STRATEGIES
from tests.conftest import TrainedRepository

SYMBOL = "BTCUSD"


@pytest.fixture
async def bars(clean_db: Database, trained: TrainedRepository) -> pd.DataFrame:
    """The training bars of BTCUSD (40 days of 5m) in the store."""
    item = trained.data[0]
    frame = item.bars.reset_index().assign(symbol=SYMBOL, timeframe="5m")
    info = {SYMBOL: SymbolInfo(SYMBOL, "crypto", 0.01, Timeframe.M5)}
    await write_bars(clean_db, frame, info, show_progress=False)
    return item.bars


@pytest.fixture
async def models(model_server: TritonServer) -> AsyncIterator[SignalModels]:
    client = grpc_aio.InferenceServerClient(f"127.0.0.1:{model_server.grpc_port}")
    yield SignalModels(client, timeout_s=30.0)
    await client.close()


def _request(bars: pd.DataFrame, **changes: object) -> BacktestRequest:
    start = bars.index[2000].to_pydatetime()
    end = bars.index[-1].to_pydatetime() + timedelta(minutes=5)
    return msgspec.structs.replace(
        BacktestRequest(
            symbol=SYMBOL, start=start, end=end, strategy="aggressive_filter", min_expected_r=-1.0
        ),
        **changes,
    )


async def _ensemble_inferences(models: SignalModels) -> int:
    stats = await models.client.get_inference_statistics(ENSEMBLE, as_json=True)
    return sum(int(m.get("inference_count", 0)) for m in stats["model_stats"])


async def _live_signal_inputs(
    models: SignalModels, history: pd.DataFrame
) -> tuple[ModelInputs, EnsembleOutput]:
    """What /api/signals computes for the newest bar of `history`."""
    spec = await models.spec()
    inputs = inputs_for_latest(history, spec)
    return inputs, await models.infer([inputs])


async def test_batched_predictions_equal_live_single_bar_requests(
    bars: pd.DataFrame, models: SignalModels, tmp_path: Path
) -> None:
    spec = await models.spec()
    first = warmup_bars(spec)
    frame = bars.iloc[: first + 1200]
    predictions = await predict_bars(models, frame, symbol=SYMBOL, first=first, cache_dir=tmp_path)
    block = FeatureBlock(frame, spec, first)
    assert predictions.valid.all()
    assert np.array_equal(block.ends, np.arange(first, len(frame)))
    for row in (0, 1, 257, 600, 1199):  # rows of the scored bars; 0 is the first after warm-up
        t = first + row
        live = inputs_for_latest(frame.iloc[: t + 1], spec)
        batch = block.inputs(row, row + 1)
        np.testing.assert_allclose(batch.seq, live.seq, atol=1e-6, rtol=0)
        np.testing.assert_allclose(batch.tab, live.tab, atol=1e-6, rtol=0)
        np.testing.assert_allclose(batch.ctx, live.ctx, atol=1e-6, rtol=0)
        assert predictions.times[row] == live.bar_time.value
        assert predictions.close[row] == live.close
        assert predictions.atr[row] == pytest.approx(live.atr, rel=1e-9)
        np.testing.assert_allclose(batch.har, live.har, atol=1e-9, rtol=0)
        np.testing.assert_array_equal(batch.season, live.season)
        out = await models.infer([live])
        assert predictions.direction[row] == out.direction[0]
        np.testing.assert_allclose(predictions.gru_range[row], out.gru_range[0], atol=1e-5)
        np.testing.assert_allclose(
            predictions.transformer_range[row], out.transformer_range[0], atol=1e-5
        )
        # The served numbers: the spec's head over the live outputs, as the API answers.
        served = apply_head(
            spec.head,
            out.gru_range,
            out.transformer_range,
            live.har,
            live.season,
            out.p_long,
            out.p_short,
            out.confidence,
        )
        assert spec.head is not None
        for name in ("confidence", "p_long", "p_short"):
            assert getattr(predictions, name)[row] == pytest.approx(
                float(getattr(served, name)[0]), abs=1e-5
            ), name
        np.testing.assert_allclose(predictions.served_range[row], served.ranges[0], atol=1e-5)
    assert predictions.model_version == await models.served_version()
    assert predictions.feature_fingerprint == spec.fingerprint


async def test_a_second_run_comes_from_the_cache(
    bars: pd.DataFrame, models: SignalModels, clean_db: Database, tmp_path: Path
) -> None:
    request = _request(bars)
    phases: list[str] = []

    def progress(phase: str, fraction: float) -> None:
        assert 0.0 <= fraction <= 1.0
        if not phases or phases[-1] != phase:
            phases.append(phase)

    before = await _ensemble_inferences(models)
    first = await run_backtest(
        request, db=clean_db, models=models, cache_dir=tmp_path, progress=progress
    )
    middle = await _ensemble_inferences(models)
    second = await run_backtest(request, db=clean_db, models=models, cache_dir=tmp_path)
    after = await _ensemble_inferences(models)

    assert phases == ["loading", "features", "inference", "simulation"]
    assert middle - before == first.predicted_bars > 0
    assert after == middle, "the cached re-run sent inferences to Triton"
    assert not first.cached
    assert second.cached
    assert second.timings.inference_s == 0.0
    assert second.timings.features_s == 0.0
    assert second.metrics == first.metrics
    assert second.trades == first.trades
    assert len(await asyncio.to_thread(lambda: list(tmp_path.glob("*.npz")))) == 1

    # A changed bar is another history: the key hashes the bars, so it misses.
    spec = await models.spec()
    frame = bars.iloc[: warmup_bars(spec) + 300].copy()
    await predict_bars(models, frame, symbol=SYMBOL, first=warmup_bars(spec), cache_dir=tmp_path)
    volume = frame["volume"].to_numpy(copy=True)
    volume[-1] += 1.0
    frame["volume"] = volume
    changed = await predict_bars(
        models, frame, symbol=SYMBOL, first=warmup_bars(spec), cache_dir=tmp_path
    )
    assert not changed.cached


async def test_the_result_is_json_with_times_and_a_bounded_equity_curve(
    bars: pd.DataFrame, models: SignalModels, clean_db: Database, tmp_path: Path
) -> None:
    request = _request(bars, fee_rate=0.0002, slippage=0.0001, horizon="scalping")
    result = await run_backtest(request, db=clean_db, models=models, cache_dir=tmp_path)
    decoded = msgspec.json.decode(msgspec.json.encode(result), type=BacktestResult)
    assert decoded.metrics == result.metrics
    assert result.request.start == request.start.replace(tzinfo=UTC)
    assert result.bars == len(bars) - 2000
    assert result.first_bar == bars.index[2000]
    spec = await models.spec()
    # Bars before start: the baselines' week where stored (2,000 here), at least the networks'.
    assert result.warmup_bars == min(2000, history_bars_wanted(spec))
    assert result.warmup_bars >= warmup_bars(spec)
    assert result.horizon == "scalping"
    assert result.horizon_bars == 6
    assert 0 < len(result.equity.times) <= MAX_EQUITY_POINTS
    assert result.metrics.overall.n_trades == len(result.trades)
    for trade in result.trades:
        assert result.first_bar <= trade.signal_time < trade.entry_time <= trade.exit_time
        assert trade.entry_time - trade.signal_time == timedelta(minutes=5)
        assert trade.side in ("long", "short")
        assert trade.exit_reason in ("take_profit", "stop_loss", "time_stop", "end_of_data")
        assert trade.bars_held <= 6
    assert sorted(result.metrics.by_horizon) == ["scalping"]


async def test_backtest_signals_equal_build_signal(
    bars: pd.DataFrame, models: SignalModels, clean_db: Database, tmp_path: Path
) -> None:
    spec = await models.spec()
    first = min(2000, history_bars_wanted(spec))  # what the backtest reads before its start
    frame = bars.iloc[2000 - first :]
    predictions = await predict_bars(models, frame, symbol=SYMBOL, first=first, cache_dir=tmp_path)
    # A range threshold in the middle of the predicted moves, so both outcomes are sampled (the
    # confidence may be the constant base rate where the gate found no skill).
    k = spec.horizons.index(spec.label_horizon)
    toward_tp = np.where(
        predictions.direction > 0, predictions.up_atr[:, k], predictions.down_atr[:, k]
    )
    ratio = float(np.nanmedian(toward_tp[predictions.valid])) / spec.tp_atr
    strategy = msgspec.structs.replace(
        STRATEGIES["aggressive_filter"],
        min_expected_r=-1.0,
        min_confidence=0.0,
        min_range_tp_ratio=ratio,
    )
    request = _request(bars, min_confidence=0.0, min_range_tp_ratio=ratio)
    result = await run_backtest(request, db=clean_db, models=models, cache_dir=tmp_path)
    assert result.cached, "the same bars and models: the run reuses the predictions"
    assert result.strategy == strategy
    k = spec.horizons.index(spec.label_horizon)
    signals = bar_signals(predictions, spec, strategy, k, BacktestConfig())  # no costs
    assert result.signals == int(signals.passed.sum()) > 0
    assert (~signals.passed).any()

    rng = np.random.default_rng(0)
    passing, failing = np.flatnonzero(signals.passed), np.flatnonzero(~signals.passed)
    rows = [*rng.choice(passing, 4, replace=False), *rng.choice(failing, 4, replace=False)]
    for row in rows:
        inputs, out = await _live_signal_inputs(models, frame.iloc[: first + row + 1])
        served = apply_head(
            spec.head,
            out.gru_range,
            out.transformer_range,
            inputs.har,
            inputs.season,
            out.p_long,
            out.p_short,
            out.confidence,
        )
        live = build_signal(
            close=inputs.close,
            atr=inputs.atr,
            direction=float(out.direction[0]),
            confidence=float(served.confidence[0]),
            p_long=float(served.p_long[0]),
            p_short=float(served.p_short[0]),
            up_atr=float(served.ranges[0, 2 * k]),
            down_atr=float(served.ranges[0, 2 * k + 1]),
            tp_atr=spec.tp_atr,
            sl_atr=spec.sl_atr,
            cost_r=0.0,
            horizon=spec.label_horizon,
            horizon_bars=spec.horizon_bars[k],
            strategy=strategy,
        )
        assert live.passed_filter == bool(signals.passed[row]), row
        assert live.direction == ("long" if signals.side[row] > 0 else "short"), row
        assert live.confidence == pytest.approx(float(signals.score[row]), abs=1e-5)

    # Every trade comes from a passing bar, on its side, with the live signal's SL distance.
    times = pd.DatetimeIndex(frame.index[first:])
    for trade in result.trades[:20]:
        row = times.get_loc(pd.Timestamp(trade.signal_time))
        assert isinstance(row, int)
        assert signals.passed[row]
        assert trade.side == ("long" if signals.side[row] > 0 else "short")
        sign = 1.0 if trade.side == "long" else -1.0
        assert sign * (trade.entry - trade.stop) == pytest.approx(
            spec.sl_atr * predictions.atr[row], rel=1e-9
        )


async def test_no_look_ahead(bars: pd.DataFrame, models: SignalModels) -> None:
    """Rewriting every bar after t changes nothing at or before t."""
    spec = await models.spec()
    first = warmup_bars(spec)
    original = bars.iloc[: first + 800]
    t = first + 400  # bars after t are rewritten
    rng = np.random.default_rng(3)
    factor = np.exp(np.cumsum(rng.normal(0, 0.01, len(original) - t - 1)))
    altered = original.copy()
    for column, scale in (("open", factor), ("high", factor), ("low", factor), ("close", factor)):
        values = altered[column].to_numpy(copy=True)
        values[t + 1 :] *= scale
        altered[column] = values
    volume = altered["volume"].to_numpy(copy=True)
    volume[t + 1 :] *= 3.0
    altered["volume"] = volume

    a = await predict_bars(models, original, symbol=SYMBOL, first=first, cache_dir=None)
    b = await predict_bars(models, altered, symbol=SYMBOL, first=first, cache_dir=None)
    upto = t - first + 1
    for name in ("direction", "confidence", "p_long", "p_short", "gru_range", "atr", "close"):
        np.testing.assert_allclose(
            getattr(a, name)[:upto], getattr(b, name)[:upto], atol=1e-6, err_msg=name
        )
    strategy = STRATEGIES["aggressive_filter"]
    k = spec.horizons.index(spec.label_horizon)
    config = BacktestConfig()
    sa, sb = bar_signals(a, spec, strategy, k, config), bar_signals(b, spec, strategy, k, config)
    assert np.array_equal(sa.side[:upto], sb.side[:upto])
    assert np.array_equal(sa.passed[:upto], sb.passed[:upto])
    assert not np.allclose(a.close[upto:], b.close[upto:]), "the rewrite must matter after t"
    assert not np.allclose(a.gru_range[upto:], b.gru_range[upto:], atol=1e-6)


@pytest.mark.parametrize(
    ("changes", "error", "field", "message"),
    [
        ({"strategy": "yolo"}, BacktestRequestError, "strategy", "choose from aggressive_filter"),
        ({"end": "start"}, BacktestRequestError, "end", "must be after start"),
        ({"timeframe": "15m"}, BacktestRequestError, "timeframe", "trained on 5m bars"),
        ({"timeframe": "7m"}, BacktestRequestError, "timeframe", "invalid timeframe"),
        ({"horizon": "weekly"}, BacktestRequestError, "horizon", "choose from scalping"),
        ({"symbol": "NOPEUSD"}, UnknownBacktestSymbolError, "symbol", "unknown symbol"),
        ({"min_confidence": 1.5}, BacktestRequestError, "min_confidence", r"within \[0, 1\]"),
        ({"fee_rate": 2.0}, BacktestRequestError, "fee_rate", "fraction"),
        ({"start": 2040}, EmptyRangeError, "start", "no 5m bars of BTCUSD"),
        ({"start": 10}, InsufficientHistoryError, "start", "663 warm-up bars"),
    ],
    ids=[
        "unknown-strategy",
        "end-not-after-start",
        "other-timeframe-than-the-models",
        "invalid-timeframe",
        "unknown-horizon",
        "unknown-symbol",
        "min-confidence-out-of-range",
        "fee-rate-not-a-fraction",
        "empty-range",
        "not-enough-history",
    ],
)
async def test_request_errors(
    bars: pd.DataFrame,
    models: SignalModels,
    clean_db: Database,
    changes: dict[str, object],
    error: type[EngineError],
    field: str,
    message: str,
) -> None:
    request = _request(bars)
    if changes.get("end") == "start":
        changes = {"end": request.start}
    elif changes.get("start") == 2040:
        changes = {"start": datetime(2040, 1, 1, tzinfo=UTC), "end": datetime(2040, 2, 1)}
    elif changes.get("start") == 10:
        changes = {"start": bars.index[10].to_pydatetime()}
    with pytest.raises(error, match=message) as caught:
        await run_backtest(
            msgspec.structs.replace(request, **changes), db=clean_db, models=models, cache_dir=None
        )
    assert isinstance(caught.value, EngineError)  # an expected failure, with its status
    assert caught.value.field == field
    if isinstance(caught.value, InsufficientHistoryError):
        assert (caught.value.have, caught.value.need) == (10, 663)
        assert f"{bars.index[663]:%Y-%m-%d %H:%M}" in str(caught.value)


def test_equity_downsampling_keeps_the_peak_and_the_deepest_drawdown() -> None:
    rng = np.random.default_rng(1)
    equity = np.cumsum(rng.normal(0, 1, 50_000))
    drawdown = equity - np.maximum(np.maximum.accumulate(equity), 0.0)
    index = pd.date_range("2025-01-01", periods=equity.size, freq="5min", tz="UTC")
    curve = downsample_equity(index, equity, drawdown)
    assert len(curve.times) <= MAX_EQUITY_POINTS
    assert max(curve.equity_r) == equity.max()
    assert min(curve.drawdown_r) == drawdown.min()
    assert curve.times[0] == index[0]
    assert curve.times[-1] == index[-1]
    assert curve.times == sorted(curve.times)
    small = downsample_equity(index[:10], equity[:10], drawdown[:10])
    assert small.equity_r == equity[:10].tolist()


def test_the_cache_keeps_the_most_recently_used_files(tmp_path: Path) -> None:
    for i in range(5):
        path = tmp_path / f"f{i}.npz"
        path.write_bytes(b"x")
        os.utime(path, (1000 + i, 1000 + i))
    os.utime(tmp_path / "f0.npz")  # just used
    prune_cache(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.glob("*.npz")) == ["f0.npz", "f4.npz"]


async def test_a_backtest_on_the_callers_levels_trades_them_as_the_live_barrier_says(
    bars: pd.DataFrame, models: SignalModels, clean_db: Database, tmp_path: Path
) -> None:
    spec = await models.spec()
    request = _request(bars, tp_atr=2.0, sl_atr=0.5, min_confidence=0.0, min_expected_r=-1.0)
    result = await run_backtest(request, db=clean_db, models=models, cache_dir=tmp_path)
    assert (result.tp_atr, result.sl_atr) == (2.0, 0.5)
    assert result.trades
    first = min(2000, history_bars_wanted(spec))
    frame = bars.iloc[2000 - first :]
    predictions = await predict_bars(models, frame, symbol=SYMBOL, first=first, cache_dir=tmp_path)
    times = pd.DatetimeIndex(frame.index[first:])
    for trade in result.trades[:10]:
        row = times.get_loc(pd.Timestamp(trade.signal_time))
        assert isinstance(row, int)
        sign = 1.0 if trade.side == "long" else -1.0
        atr = predictions.atr[row]
        assert sign * (trade.entry - trade.stop) == pytest.approx(0.5 * atr, rel=1e-9)
        assert sign * (trade.target - trade.entry) == pytest.approx(2.0 * atr, rel=1e-9)
    # The score each bar was decided on is the live answer for the same levels and side.
    k = spec.horizons.index(spec.label_horizon)
    levels = Levels(2.0, 0.5, True)
    signals = bar_signals(
        predictions, spec, STRATEGIES["baseline"], k, BacktestConfig(), levels, 48
    )
    for row in np.flatnonzero(predictions.valid)[::400][:4]:
        side = "long" if predictions.direction[row] > 0 else "short"
        live = evaluate(
            barrier_question(
                spec,
                predictions.served_range[row],
                float(predictions.p_long[row]),
                float(predictions.p_short[row]),
                float(predictions.close[row]),
                float(predictions.atr[row]),
                [48] * len(spec.horizons),
                Barrier(side, k, 2.0, 0.5),
                0.0,
            )
        )
        assert float(signals.score[row]) == pytest.approx(live.p_tp_first, abs=1e-12)
        assert float(signals.expected_r[row]) == pytest.approx(live.expected_r, abs=1e-9)
    with pytest.raises(BacktestRequestError, match=r"between 0\.1 and 20 ATR") as bad:
        await run_backtest(_request(bars, tp_atr=0.0), db=clean_db, models=models)
    assert bad.value.field == "tp_atr"
