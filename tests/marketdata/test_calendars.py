"""Each symbol's calendar is derived from its stored bars at ingest and read back by timeframe."""

from __future__ import annotations

from orchestrator.demo.generator import generate_bars
from orchestrator.ingest.pipeline import IngestOptions, ingest_frame
from orchestrator.marketdata.calendars import CalendarStore
from orchestrator.marketdata.db import Database
from orchestrator.marketdata.timeframes import Timeframe


async def _ingest(db: Database, symbol: str, days: int, end: str = "2025-06-30") -> dict[str, str]:
    frame = generate_bars(symbol, days=days, seed=3, end=end).reset_index()
    report = await ingest_frame(
        db,
        frame,
        IngestOptions(symbol=symbol, timeframe=Timeframe.M5, show_progress=False),
        source="test",
        rejects_path=None,
    )
    assert report.rejected == 0
    return report.calendars


async def test_an_ingest_stores_the_calendar_it_finds(clean_db: Database) -> None:
    calendars = await _ingest(clean_db, "ESDEMO", 28)
    assert calendars == {"ESDEMO": "5 sessions a week of 78 5m bars"}
    (stored,) = await CalendarStore(clean_db).get("ESDEMO")
    assert (stored.week.sessions_per_week, stored.week.session_bars) == (5, 78)
    assert stored.week.open_minutes[0] == 14 * 60 + 30  # Monday 14:30 UTC


async def test_coarser_timeframes_read_the_stored_week(clean_db: Database) -> None:
    await _ingest(clean_db, "ESDEMO", 28)
    await _ingest(clean_db, "BTCUSD", 14)
    store = CalendarStore(clean_db)
    hourly = await store.weeks(["ESDEMO", "BTCUSD", "NOSUCH"], Timeframe.H1)
    assert set(hourly) == {"ESDEMO", "BTCUSD"}
    # 14:00 .. 20:00 bars: the 14:30 open lands in the 14:00 hour.
    assert hourly["ESDEMO"].bars_per_week == 5 * 7
    assert hourly["BTCUSD"].always_open
    assert await store.weeks(["ESDEMO"], Timeframe.M1) == {}  # finer than what is stored


async def test_a_second_ingest_rewrites_the_calendar(clean_db: Database) -> None:
    await _ingest(clean_db, "ESDEMO", 14, end="2025-06-16")
    (first,) = await CalendarStore(clean_db).get("ESDEMO")
    await _ingest(clean_db, "ESDEMO", 28)
    (second,) = await CalendarStore(clean_db).get("ESDEMO")
    assert second.derived_through > first.derived_through
