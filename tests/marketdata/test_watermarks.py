"""Freshness reads against the real database: concurrent checks share one query, each caller
sees a read that started after it asked, and revisions mark rewritten history."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pandas as pd

from orchestrator.ingest.writer import write_bars
from orchestrator.marketdata.db import Database
from orchestrator.marketdata.store import BarStore, SymbolInfo
from orchestrator.marketdata.timeframes import Timeframe, newest_closed
from orchestrator.marketdata.watermarks import WatermarkReader
from tests.marketdata.test_store import START, _bars, _load

M5, M15, H1 = Timeframe.M5, Timeframe.M15, Timeframe.H1


def test_newest_closed_bucket() -> None:
    at = datetime(2024, 5, 6, 10, 50, tzinfo=UTC)  # the 5m bar 10:50-10:55
    assert newest_closed(at, M5, M5) == at
    assert newest_closed(at, M5, M15) == datetime(2024, 5, 6, 10, 30, tzinfo=UTC)  # 10:45 forming
    assert newest_closed(at + pd.Timedelta(minutes=5), M5, M15) == datetime(
        2024, 5, 6, 10, 45, tzinfo=UTC
    )
    assert newest_closed(at + pd.Timedelta(minutes=5), M5, H1) == datetime(
        2024, 5, 6, 10, 0, tzinfo=UTC
    )


async def test_concurrent_checks_share_one_query(clean_db: Database) -> None:
    for symbol, count in (("WMAUSD", 30), ("WMBUSD", 12)):
        await _load(clean_db, symbol, count)
    reader = WatermarkReader(clean_db)
    keys = [("WMAUSD", M5), ("WMBUSD", M5), ("WMAUSD", M15), ("NOPEUSD", M5)] * 8
    answers = await asyncio.gather(*(reader.newest(s, tf) for s, tf in keys))
    assert answers[:4] == [
        (START + pd.Timedelta(minutes=5 * 29)).to_pydatetime(),
        (START + pd.Timedelta(minutes=5 * 11)).to_pydatetime(),
        None,  # nothing stored at 15m
        None,
    ]
    assert answers == answers[:4] * 8
    assert reader.queries == 1  # 32 callers, 4 distinct keys, one round trip
    assert reader.keys_read == 4
    newest = await BarStore(clean_db).last_bar_times()
    assert newest[("WMAUSD", M5)] == answers[0]


async def test_a_check_always_sees_bars_committed_before_it_asked(clean_db: Database) -> None:
    await _load(clean_db, "WMCUSD", 10)
    reader = WatermarkReader(clean_db)
    first = await reader.newest("WMCUSD", M5)
    info = {"WMCUSD": SymbolInfo("WMCUSD", "crypto", 0.01, M5)}
    await write_bars(clean_db, _bars("WMCUSD", 11).iloc[-1:], info, show_progress=False)
    second = await reader.newest("WMCUSD", M5)
    assert second is not None
    assert first is not None
    assert second - first == pd.Timedelta(minutes=5)


async def test_rewriting_history_bumps_the_revision_appending_does_not(
    clean_db: Database,
) -> None:
    await _load(clean_db, "WMDUSD", 10)
    store = BarStore(clean_db)
    info = {"WMDUSD": SymbolInfo("WMDUSD", "crypto", 0.01, M5)}
    await write_bars(clean_db, _bars("WMDUSD", 12).iloc[-2:], info, show_progress=False)
    assert ("WMDUSD", M5) not in await store.revisions()  # new bars only
    corrected = _bars("WMDUSD", 12).iloc[[3]].assign(close=1004.5)
    await write_bars(clean_db, corrected, info, show_progress=False)
    assert (await store.revisions())[("WMDUSD", M5)] == 1
    await write_bars(clean_db, corrected, info, show_progress=False)  # a re-run counts too
    assert (await store.revisions())[("WMDUSD", M5)] == 2
