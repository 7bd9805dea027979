"""Each symbol's trading calendar, stored with the symbol (table `symbol_calendars`).

The calendar is derived from the symbol's own stored bars (marketdata/sessions.py) after every
ingest, over the last CALENDAR_SPAN of them, so a holiday or a stray bar does not move it. The
engine and the API read it instead of guessing from the few weeks a feature state was seeded
with; a symbol without a stored calendar falls back to those bars.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

import msgspec
import pandas as pd

from orchestrator.marketdata.db import Database
from orchestrator.marketdata.sessions import TradingWeek, infer_week, shared_week
from orchestrator.marketdata.timeframes import Timeframe

CALENDAR_SPAN = timedelta(weeks=8)

_UPSERT = (
    "INSERT INTO symbol_calendars (symbol, timeframe, open_minutes, sessions_per_week,"
    " session_bars, derived_from, derived_through) VALUES (%s, %s, %s, %s, %s, %s, %s)"
    " ON DUPLICATE KEY UPDATE open_minutes = VALUES(open_minutes),"
    " sessions_per_week = VALUES(sessions_per_week), session_bars = VALUES(session_bars),"
    " derived_from = VALUES(derived_from), derived_through = VALUES(derived_through)"
)


class SymbolCalendar(msgspec.Struct, frozen=True):
    """A symbol's stored calendar at its stored timeframe."""

    symbol: str
    week: TradingWeek
    derived_from: datetime
    derived_through: datetime

    def describe(self) -> str:
        week = self.week
        if not week.open_minutes:
            return "no bars"
        return (
            f"{week.sessions_per_week} sessions a week of {week.session_bars} {week.timeframe} bars"
        )


class CalendarStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def refresh(self, series: Iterable[tuple[str, Timeframe]]) -> list[SymbolCalendar]:
        """Derives and stores the calendar of each (symbol, stored timeframe) from its newest
        CALENDAR_SPAN of bars (their open times only)."""
        derived = []
        for symbol, timeframe in series:
            rows = await self.db.fetchall(
                "SELECT ts FROM bars WHERE symbol = %s AND timeframe = %s AND ts >= ("
                " SELECT MAX(ts) FROM bars WHERE symbol = %s AND timeframe = %s) - INTERVAL %s DAY"
                " ORDER BY ts",
                (symbol, timeframe.value, symbol, timeframe.value, CALENDAR_SPAN.days),
            )
            if not rows:
                continue
            index = pd.DatetimeIndex([r[0] for r in rows]).tz_localize("UTC")
            week = infer_week(index, timeframe)
            calendar = SymbolCalendar(
                symbol, week, rows[0][0].replace(tzinfo=None), rows[-1][0].replace(tzinfo=None)
            )
            async with self.db.transaction() as tx, tx.cursor() as cur:
                await cur.execute(
                    _UPSERT,
                    (
                        symbol,
                        timeframe.value,
                        msgspec.json.encode(week.open_minutes).decode(),
                        week.sessions_per_week,
                        week.session_bars,
                        calendar.derived_from,
                        calendar.derived_through,
                    ),
                )
            derived.append(calendar)
        return derived

    async def weeks(self, symbols: list[str], timeframe: Timeframe) -> dict[str, TradingWeek]:
        """The stored trading week of each of `symbols` at `timeframe` (a symbol without a
        stored calendar, or stored only at a coarser timeframe, is left out)."""
        if not symbols:
            return {}
        marks = ", ".join(["%s"] * len(symbols))
        rows = await self.db.fetchall(
            "SELECT symbol, timeframe, open_minutes FROM symbol_calendars"
            f" WHERE symbol IN ({marks})",
            tuple(symbols),
        )
        finest: dict[str, tuple[int, TradingWeek]] = {}
        for symbol, stored, minutes in rows:
            step = Timeframe(stored).seconds
            if step <= timeframe.seconds and (symbol not in finest or step < finest[symbol][0]):
                week = shared_week(
                    TradingWeek(stored, msgspec.json.decode(minutes, type=list[int]))
                )
                finest[symbol] = (step, week.at(timeframe))
        return {symbol: week for symbol, (_, week) in finest.items()}

    async def get(self, symbol: str) -> list[SymbolCalendar]:
        """Every stored calendar of `symbol` (one per stored timeframe)."""
        rows = await self.db.fetchall(
            "SELECT timeframe, open_minutes, derived_from, derived_through"
            " FROM symbol_calendars WHERE symbol = %s ORDER BY timeframe",
            (symbol,),
        )
        return [
            SymbolCalendar(
                symbol,
                shared_week(TradingWeek(tf, msgspec.json.decode(minutes, type=list[int]))),
                first,
                last,
            )
            for tf, minutes, first, last in rows
        ]
