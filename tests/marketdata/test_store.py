"""Queries against the real database, on bars whose values are known."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from orchestrator.ingest.writer import write_bars
from orchestrator.marketdata import store as store_module
from orchestrator.marketdata.db import Database
from orchestrator.marketdata.store import BarStore, SymbolInfo, UnknownSymbolError
from orchestrator.marketdata.timeframes import (
    InvalidSymbolError,
    InvalidTimeframeError,
    Timeframe,
    parse_timeframe,
)

START = pd.Timestamp("2024-05-06 00:00", tz="UTC")  # a Monday


def _bars(symbol: str, count: int, start: pd.Timestamp = START) -> pd.DataFrame:
    ts = pd.date_range(start, periods=count, freq="5min", tz="UTC")
    i = np.arange(count, dtype=float)
    return pd.DataFrame(
        {
            "symbol": symbol,
            "timeframe": "5m",
            "ts": ts,
            "open": 1000 + i,
            "high": 1002 + i,
            "low": 999 + i,
            "close": 1001 + i,
            "volume": 1 + i / 4,
        }
    )


async def _load(db: Database, symbol: str, count: int) -> None:
    info = SymbolInfo(symbol, "crypto", 0.01, Timeframe.M5)
    await write_bars(db, _bars(symbol, count), {symbol: info}, show_progress=False)


async def test_latest_bars_are_the_newest_oldest_first(clean_db: Database) -> None:
    await _load(clean_db, "AAAUSD", 100)
    latest = await BarStore(clean_db).latest_bars("AAAUSD", Timeframe.M5, 3)
    assert list(latest["close"]) == [1098.0, 1099.0, 1100.0]
    assert latest.index[-1] == START + pd.Timedelta(minutes=5 * 99)
    assert str(latest.index.tz) == "UTC"


async def test_bars_between_is_half_open(clean_db: Database) -> None:
    await _load(clean_db, "AAAUSD", 100)
    store = BarStore(clean_db)
    got = await store.bars_between(
        "AAAUSD",
        Timeframe.M5,
        datetime(2024, 5, 6, 1, 0, tzinfo=UTC),
        datetime(2024, 5, 6, 1, 20, tzinfo=UTC),
    )
    assert [ts.strftime("%H:%M") for ts in got.index] == ["01:00", "01:05", "01:10", "01:15"]
    assert got["open"].iloc[0] == 1012.0


async def test_hourly_bars_resampled_from_the_store(clean_db: Database) -> None:
    await _load(clean_db, "AAAUSD", 12 * 5 + 4)  # five full hours and a forming one
    store = BarStore(clean_db)
    hourly = await store.latest_bars("AAAUSD", Timeframe.H1, 3)
    assert [ts.hour for ts in hourly.index] == [3, 4, 5]
    third = hourly.iloc[0]  # 03:00 bucket = 5m bars 36..47
    assert (third["open"], third["high"], third["low"], third["close"]) == (
        1036.0,
        1049.0,
        1035.0,
        1048.0,
    )
    assert third["volume"] == pytest.approx(sum(1 + i / 4 for i in range(36, 48)))
    ranged = await store.bars_between(
        "AAAUSD",
        Timeframe.H1,
        datetime(2024, 5, 6, 3, 30, tzinfo=UTC),
        datetime(2024, 5, 6, 6, 0, tzinfo=UTC),
    )
    assert [ts.hour for ts in ranged.index] == [4, 5]


@pytest.mark.parametrize("timeframe", [Timeframe.M5, Timeframe.M15, Timeframe.H1])
async def test_many_series_read_at_once_equal_each_read_alone(
    clean_db: Database, timeframe: Timeframe
) -> None:
    """Stored (5m) and resampled (15m, 1h) bars of several symbols over spans of their own, one
    query per source timeframe: each symbol's arrays hold what bars_between gives for its span
    (a span's end inside a bucket included)."""
    for symbol, count in (("AAAUSD", 100), ("BBBUSD", 64), ("CCCUSD", 3)):
        await _load(clean_db, symbol, count)
    store = BarStore(clean_db)
    at = [datetime(2024, 5, 6, h, m, tzinfo=UTC) for h, m in ((0, 10), (1, 0), (2, 35), (5, 0))]
    spans = {"AAAUSD": (at[0], at[3]), "BBBUSD": (at[1], at[2]), "CCCUSD": (at[0], at[1])}
    many = await store.bars_between_many(timeframe, spans)
    assert set(many) == set(spans)
    for symbol, (start, end) in spans.items():
        alone = await store.bars_between(symbol, timeframe, start, end)
        assert many[symbol].times.tolist() == (alone.index.as_unit("s").asi8).tolist()
        assert many[symbol].values.tolist() == alone.to_numpy().tolist()
    assert len(many["AAAUSD"].times) > 0


@pytest.mark.parametrize("timeframe", [Timeframe.M5, Timeframe.H1])
async def test_the_newest_bars_as_arrays_are_the_frame_latest_bars_gives(
    clean_db: Database, timeframe: Timeframe
) -> None:
    """A cold start's seed read: stored bars as numbers (open times counted by MariaDB), and
    resampled ones through the frame; both the frame latest_bars gives, value for value."""
    await _load(clean_db, "AAAUSD", 12 * 5 + 4)  # five full hours and a forming one
    store = BarStore(clean_db)
    for limit in (3, 500):
        arrays = await store.latest_bar_arrays("AAAUSD", timeframe, limit, source=Timeframe.M5)
        frame = await store.latest_bars(
            "AAAUSD", timeframe, limit, closed_only=True, source=Timeframe.M5
        )
        pd.testing.assert_frame_equal(arrays.frame(), frame, check_freq=False)
    none = await store.latest_bar_arrays("BBBUSD", timeframe, 3, source=Timeframe.M5)
    assert len(none.times) == 0
    assert none.values.shape == (0, 5)


async def test_symbols_and_last_bar_times(clean_db: Database) -> None:
    await _load(clean_db, "AAAUSD", 10)
    await _load(clean_db, "BBBUSD", 20)
    store = BarStore(clean_db)
    assert [s.symbol for s in await store.list_symbols()] == ["AAAUSD", "BBBUSD"]
    last = await store.last_bar_times()
    assert last[("AAAUSD", Timeframe.M5)] == (START + pd.Timedelta(minutes=45)).to_pydatetime()
    assert last[("BBBUSD", Timeframe.M5)] == (START + pd.Timedelta(minutes=95)).to_pydatetime()


async def test_first_bar_times_are_each_series_oldest_bar(
    clean_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One primary-key dive per series, several statements (two dives each here); a symbol
    without bars at that timeframe is left out."""
    await _load(clean_db, "AAAUSD", 10)
    await write_bars(
        clean_db,
        _bars("BBBUSD", 5, START + pd.Timedelta(hours=1)),
        {"BBBUSD": SymbolInfo("BBBUSD", "crypto", 0.01, Timeframe.M5)},
        show_progress=False,
    )
    monkeypatch.setattr(store_module, "DIVES_PER_STATEMENT", 2)
    store = BarStore(clean_db)
    first = await store.first_bar_times(Timeframe.M5, ["AAAUSD", "BBBUSD", "CCCUSD"])
    assert first == {
        "AAAUSD": START.to_pydatetime(),
        "BBBUSD": (START + pd.Timedelta(hours=1)).to_pydatetime(),
    }
    assert await store.first_bar_times(Timeframe.H1, ["AAAUSD"]) == {}


async def test_prices_round_trip_exactly(clean_db: Database) -> None:
    info = SymbolInfo("EURUSD", "forex", 0.00001, Timeframe.M5)
    frame = _bars("EURUSD", 1).assign(
        open=1.08423, high=1.08431, low=1.08417, close=1.08425, volume=1234.56789012
    )
    await write_bars(clean_db, frame, {"EURUSD": info}, show_progress=False)
    rows = await clean_db.fetchall("SELECT open, high, low, close, volume FROM bars", ())
    assert [str(v) for v in rows[0]] == [
        "1.0842300000",
        "1.0843100000",
        "1.0841700000",
        "1.0842500000",
        "1234.56789012",
    ]


async def test_unknown_and_hostile_symbols(clean_db: Database) -> None:
    store = BarStore(clean_db)
    with pytest.raises(UnknownSymbolError, match="NOPE"):
        await store.latest_bars("NOPE", Timeframe.M5, 10)
    with pytest.raises(InvalidSymbolError, match="invalid symbol"):
        await store.latest_bars("BTC'; DROP TABLE bars; --", Timeframe.M5, 10)
    with pytest.raises(InvalidTimeframeError, match="invalid timeframe"):
        parse_timeframe("7m")


async def test_forming_bucket_is_left_out_for_predictions(clean_db: Database) -> None:
    # 14 bars from 00:00: the 15m bucket opening 01:00 holds 01:00 and 01:05 and is still forming.
    await _load(clean_db, "BTCUSD", 14)
    store = BarStore(clean_db)
    shown = await store.latest_bars("BTCUSD", Timeframe.M15, 3)
    closed = await store.latest_bars("BTCUSD", Timeframe.M15, 3, closed_only=True)
    assert [t.strftime("%H:%M") for t in shown.index] == ["00:30", "00:45", "01:00"]
    assert [t.strftime("%H:%M") for t in closed.index] == ["00:15", "00:30", "00:45"]
    last_closed = await store.last_closed_bar_time("BTCUSD", Timeframe.M15)
    assert last_closed is not None
    assert last_closed.strftime("%H:%M") == "00:45"
    # The 01:10 bar fills the bucket's last slot: now it is closed.
    info = {"BTCUSD": SymbolInfo("BTCUSD", "crypto", 0.01, Timeframe.M5)}
    await write_bars(clean_db, _bars("BTCUSD", 15).iloc[14:], info, show_progress=False)
    last_closed = await store.last_closed_bar_time("BTCUSD", Timeframe.M15)
    assert last_closed is not None
    assert last_closed.strftime("%H:%M") == "01:00"
    closed = await store.latest_bars("BTCUSD", Timeframe.M15, 2, closed_only=True)
    assert [t.strftime("%H:%M") for t in closed.index] == ["00:45", "01:00"]
    assert float(closed["close"].iloc[-1]) == 1001 + 14  # the 01:10 bar's close
    five = await store.last_closed_bar_time("BTCUSD", Timeframe.M5)
    assert five is not None
    assert five.strftime("%H:%M") == "01:10"  # stored timeframe: the newest bar is closed
