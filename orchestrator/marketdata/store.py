"""Queries over the bars/symbols tables.

Parameterised SQL only; symbols and timeframes pass the allow-lists first.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal, NamedTuple

import msgspec
import numpy as np
import numpy.typing as npt
import pandas as pd
from asyncmy.connection import Connection

from orchestrator.dates import epoch_seconds
from orchestrator.errors import BadParameterError, NotFoundError
from orchestrator.marketdata.db import Database
from orchestrator.marketdata.resample import resample_bars
from orchestrator.marketdata.timeframes import Timeframe, is_multiple, newest_closed, parse_symbol

OHLCV = ["open", "high", "low", "close", "volume"]
SYMBOL_CACHE_S = 10.0
_TIMEFRAMES = {timeframe.value: timeframe for timeframe in Timeframe}
ASSET_CLASSES = ("crypto", "forex", "metal", "equity", "index", "commodity")

# The columns of a bar row as floats: ts, open, high, low, close, volume.
_OHLCV_AS_DOUBLES = (
    "CAST(open AS DOUBLE), CAST(high AS DOUBLE), CAST(low AS DOUBLE), CAST(close AS DOUBLE),"
    " CAST(volume AS DOUBLE)"
)
SELECT_BAR_VALUES = f"ts, {_OHLCV_AS_DOUBLES}"
_SELECT_BARS = f"SELECT {SELECT_BAR_VALUES} FROM bars"
DIVES_PER_STATEMENT = 500  # newest/oldest-bar dives per UNION ALL (BarStore.bar_time_dives)
_UPSERT_BARS = (
    "INSERT INTO bars (symbol, timeframe, ts, open, high, low, close, volume)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
    " ON DUPLICATE KEY UPDATE open = VALUES(open), high = VALUES(high), low = VALUES(low),"
    " close = VALUES(close), volume = VALUES(volume)"
)

_BUMP_REVISION = (
    "INSERT INTO bar_revisions (symbol, timeframe, oldest_ts) VALUES (%s, %s, %s)"
    " ON DUPLICATE KEY UPDATE revision = revision + 1,"
    " oldest_ts = LEAST(oldest_ts, VALUES(oldest_ts))"
)


class SymbolInfo(msgspec.Struct, frozen=True):
    symbol: str
    asset_class: str
    tick_size: float
    base_timeframe: Timeframe = Timeframe.M5
    description: str = ""


class UnknownSymbolError(NotFoundError):
    """No such symbol in the store (the API answers 404)."""

    title = "Unknown symbol"
    field = "symbol"

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        super().__init__(
            f"unknown symbol {symbol!r}: ingest its bars first (python -m orchestrator ingest ...)"
        )


class UnsupportedTimeframeError(NotFoundError):
    """A valid timeframe this symbol's bars cannot answer (not a whole multiple of its base;
    the API answers 404)."""

    field = "timeframe"


def empty_bars() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype="float64") for c in OHLCV})
    frame.index = pd.DatetimeIndex([], tz="UTC", name="ts")
    return frame


def bars_frame(rows: Sequence[tuple[Any, ...]]) -> pd.DataFrame:
    """(ts, o, h, l, c, v) rows as read from the store -> an OHLCV frame on a UTC index."""
    if not rows:
        return empty_bars()
    ts = pd.DatetimeIndex([r[0] for r in rows], name="ts").tz_localize("UTC")
    values = np.array([r[1:] for r in rows], dtype=np.float64)
    return pd.DataFrame(values, index=ts, columns=OHLCV)


class BarArrays(NamedTuple):
    """Bars as arrays: open times (epoch seconds, ascending) and (n, 5) open, high, low, close,
    volume."""

    times: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]

    @classmethod
    def of(cls, frame: pd.DataFrame) -> BarArrays:
        """The bars of an OHLCV frame on a UTC index."""
        index = pd.DatetimeIndex(frame.index).as_unit("s")
        return cls(index.asi8, frame[OHLCV].to_numpy(np.float64))

    def frame(self) -> pd.DataFrame:
        """The OHLCV frame bars_frame gives for the same bars."""
        index = pd.DatetimeIndex(pd.to_datetime(self.times, unit="s", utc=True), name="ts")
        return pd.DataFrame(self.values, index=index, columns=OHLCV)


def _naive_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


class BarStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- symbols -------------------------------------------------------------------------
    async def list_symbols(self) -> list[SymbolInfo]:
        rows = await self.db.fetchall(
            "SELECT symbol, asset_class, tick_size, base_timeframe, description"
            " FROM symbols ORDER BY symbol",
            (),
        )
        return [SymbolInfo(r[0], r[1], float(r[2]), Timeframe(r[3]), r[4]) for r in rows]

    async def get_symbol(self, symbol: str) -> SymbolInfo:
        """Known symbols are cached for SYMBOL_CACHE_S per pool; unknown ones are always re-read."""
        symbol = parse_symbol(symbol)
        cached = self.db.symbol_cache.get(symbol)
        if cached is not None and time.monotonic() - cached[0] < SYMBOL_CACHE_S:
            info: SymbolInfo = cached[1]
            return info
        rows = await self.db.fetchall(
            "SELECT symbol, asset_class, tick_size, base_timeframe, description"
            " FROM symbols WHERE symbol = %s",
            (symbol,),
        )
        if not rows:
            raise UnknownSymbolError(symbol)
        r = rows[0]
        info = SymbolInfo(r[0], r[1], float(r[2]), Timeframe(r[3]), r[4])
        self.db.symbol_cache[symbol] = (time.monotonic(), info)
        return info

    async def upsert_symbol(self, info: SymbolInfo) -> None:
        """Registers a symbol; an existing row keeps its settings (they are edited deliberately)."""
        if info.asset_class not in ASSET_CLASSES:
            raise BadParameterError(
                f"asset class {info.asset_class!r} is not one of {', '.join(ASSET_CLASSES)}",
                field="asset_class",
            )
        sql = (
            "INSERT IGNORE INTO symbols"
            " (symbol, asset_class, tick_size, base_timeframe, description)"
            " VALUES (%s, %s, %s, %s, %s)"
        )
        params = (
            parse_symbol(info.symbol),
            info.asset_class,
            Decimal(repr(info.tick_size)),
            info.base_timeframe.value,
            info.description,
        )
        async with self.db.transaction() as tx, tx.cursor() as cur:
            await cur.execute(sql, params)

    async def revisions(self) -> dict[tuple[str, Timeframe], int]:
        """Revision counter of every series whose history was ever rewritten (see upsert_rows)."""
        rows = await self.db.fetchall("SELECT symbol, timeframe, revision FROM bar_revisions", ())
        return {(r[0], Timeframe(r[1])): int(r[2]) for r in rows}

    # --- bars ----------------------------------------------------------------------------
    async def last_bar_times(
        self, others: Collection[tuple[str, Timeframe]] = ()
    ) -> dict[tuple[str, Timeframe], datetime]:
        """Newest bar open time of every symbol's base-timeframe series and of the `others`
        (series stored at another timeframe: stored_series() lists them), one primary-key dive
        per series (10,000 symbols: ~40 ms). Not `GROUP BY symbol, timeframe`: MariaDB's estimate
        for that loose index scan swings for seconds after a large commit, and then it read the
        whole index instead (4-5 s at 8.8 M rows, bench-scale); a dive has no estimate to miss."""
        rows = await self.db.fetchall(
            "SELECT s.symbol, s.base_timeframe, (SELECT b.ts FROM bars b WHERE b.symbol = s.symbol"
            " AND b.timeframe = s.base_timeframe ORDER BY b.ts DESC LIMIT 1) FROM symbols s",
            (),
        )
        out = {(r[0], _TIMEFRAMES[r[1]]): r[2].replace(tzinfo=UTC) for r in rows if r[2]}
        extra = [key for key in others if key not in out]
        out.update(await self.bar_time_dives("MAX", extra))
        return out

    async def bar_time_dives(
        self, aggregate: Literal["MAX", "MIN"], series: Sequence[tuple[str, Timeframe]]
    ) -> dict[tuple[str, Timeframe], datetime]:
        """MAX(ts) or MIN(ts) of each (symbol, timeframe), DIVES_PER_STATEMENT series to a
        statement; series without bars are left out. On constants the aggregate is read off the
        primary key while the statement is planned: `ORDER BY ts DESC LIMIT 1` is costed over
        both indexes first, ~1 ms a part (0.52 s per 500 series against 0.03 s: with 10,000
        symbols' 15m and 1h bars stored, ~20 s of MariaDB per poll, bench-scale --native-bars),
        and `GROUP BY symbol` over an IN list is a loose index scan only while MariaDB's
        estimate says so (a 10,000 x 3 cold start read 17 M rows that way, 20 s of the server).
        (The correlated query of the symbols' base series in last_bar_times is the other way
        round: MAX 15.7 s for 10,000 symbols, ORDER BY 0.08 s.)"""
        found: dict[tuple[str, Timeframe], datetime] = {}
        dive = (
            f"SELECT %s, %s, (SELECT {aggregate}(ts) FROM bars"
            " WHERE symbol = %s AND timeframe = %s)"
        )
        for start in range(0, len(series), DIVES_PER_STATEMENT):
            chunk = series[start : start + DIVES_PER_STATEMENT]
            params: list[str] = []
            for symbol, timeframe in chunk:
                params += [symbol, timeframe.value, symbol, timeframe.value]
            rows = await self.db.fetchall(" UNION ALL ".join([dive] * len(chunk)), tuple(params))
            found.update(
                {(r[0], _TIMEFRAMES[r[1]]): r[2].replace(tzinfo=UTC) for r in rows if r[2]}
            )
        return found

    async def stored_series(self) -> set[tuple[str, Timeframe]]:
        """Every (symbol, timeframe) with stored bars: one scan of the index (seconds on a big
        table when the optimizer misjudges it), so for discovering series now and then."""
        rows = await self.db.fetchall("SELECT DISTINCT symbol, timeframe FROM bars", ())
        return {(str(r[0]), _TIMEFRAMES[r[1]]) for r in rows}

    async def series_extent(
        self, symbol: str, timeframe: Timeframe
    ) -> tuple[int, datetime | None, datetime | None]:
        """How many bars one stored series holds, and its first and last open times."""
        rows = await self.db.fetchall(
            "SELECT COUNT(*), MIN(ts), MAX(ts) FROM bars WHERE symbol = %s AND timeframe = %s",
            (parse_symbol(symbol), timeframe.value),
        )
        count, first, last = rows[0] if rows else (0, None, None)
        return int(count), first, last

    async def first_bar_times(
        self, timeframe: Timeframe, symbols: Sequence[str]
    ) -> dict[str, datetime]:
        """Oldest stored `timeframe` bar of each of many symbols, a primary-key dive each (500
        to a statement); symbols without bars are left out."""
        if not symbols:
            return {}
        first = await self.bar_time_dives("MIN", [(symbol, timeframe) for symbol in symbols])
        return {symbol: moment for (symbol, _), moment in first.items()}

    async def first_bar_time(self, symbol: str) -> datetime | None:
        """Oldest stored bar of a symbol at any timeframe (None: no bars)."""
        rows = await self.db.fetchall(
            "SELECT MIN(ts) FROM bars WHERE symbol = %s", (parse_symbol(symbol),)
        )
        first = rows[0][0] if rows else None
        return first.replace(tzinfo=UTC) if first is not None else None

    async def bars_updated_at(self) -> datetime | None:
        """InnoDB's last commit time of the bars table (whole seconds, kept in memory; None on a
        server that does not track it): unchanged means no new bars since."""
        rows = await self.db.fetchall(
            "SELECT UPDATE_TIME FROM information_schema.TABLES"
            " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'bars'",
            (),
        )
        updated: datetime | None = rows[0][0] if rows else None
        return updated

    async def bar_rows_since(
        self, timeframe: Timeframe, symbols: Sequence[str], since: datetime
    ) -> list[tuple[Any, ...]]:
        """Stored `timeframe` bars of many symbols opening at or after `since`, in one query, as
        plain (symbol, ts, open, high, low, close, volume) rows ordered by symbol and time (a
        DataFrame per symbol costs more than the online feature updates that read them)."""
        if not symbols:
            return []
        marks = ",".join(["%s"] * len(symbols))
        return await self.db.fetchall(
            f"SELECT symbol, {SELECT_BAR_VALUES} FROM bars WHERE timeframe = %s"
            f" AND symbol IN ({marks}) AND ts >= %s ORDER BY symbol, ts",
            (timeframe.value, *symbols, _naive_utc(since)),
        )

    async def last_bar_time(self, symbol: str, timeframe: Timeframe) -> datetime | None:
        symbol = parse_symbol(symbol)
        return await self._newest_ts(symbol, await self.source_timeframe(symbol, timeframe))

    async def _newest_ts(self, symbol: str, stored: Timeframe) -> datetime | None:
        rows = await self.db.fetchall(
            "SELECT MAX(ts) FROM bars WHERE symbol = %s AND timeframe = %s",
            (symbol, stored.value),
        )
        return rows[0][0].replace(tzinfo=UTC) if rows and rows[0][0] else None

    async def last_closed_bar_time(self, symbol: str, timeframe: Timeframe) -> datetime | None:
        """Open time of the newest *closed* bar: for a resampled timeframe, a bucket closes when
        the base bar in its last slot has landed (the forming bucket does not count)."""
        symbol = parse_symbol(symbol)
        source = await self.source_timeframe(symbol, timeframe)
        newest = await self._newest_ts(symbol, source)
        return None if newest is None else newest_closed(newest, source, timeframe)

    async def latest_bars(
        self,
        symbol: str,
        timeframe: Timeframe,
        limit: int,
        *,
        closed_only: bool = False,
        before: datetime | None = None,
        source: Timeframe | None = None,
    ) -> pd.DataFrame:
        """The newest `limit` bars (opening before `before`, when given), oldest first; resampled
        from the base timeframe if needed. `closed_only` leaves out a resampled bucket that is
        still forming (models were trained on closed bars only). `source`: the stored timeframe
        behind `timeframe` when the caller knows it (a cold start reads thousands of symbols,
        and the lookup is a query each)."""
        if limit <= 0:
            raise BadParameterError("limit must be a positive number of bars", field="limit")
        symbol = parse_symbol(symbol)
        if source is None:
            source = await self.source_timeframe(symbol, timeframe)
        ratio = timeframe.seconds // source.seconds
        # Each bucket holds at most `ratio` base bars, so (limit + 1) * ratio base bars always
        # span at least limit + 1 buckets; the oldest one may be cut short and is dropped (and
        # with closed_only one more is fetched for the forming bucket that may be left out).
        fetch = limit if ratio == 1 else (limit + 1 + int(closed_only)) * ratio
        until, bound = ("", ()) if before is None else (" AND ts < %s", (_naive_utc(before),))
        rows = await self.db.fetchall(
            f"{_SELECT_BARS} WHERE symbol = %s AND timeframe = %s{until} ORDER BY ts DESC LIMIT %s",
            (symbol, source.value, *bound, fetch),
        )
        frame = bars_frame(rows[::-1])
        if ratio == 1:
            return frame
        resampled = resample_bars(frame, timeframe, complete_only=closed_only, base=source)
        if len(rows) == fetch:
            resampled = resampled.iloc[1:]
        return resampled.iloc[-limit:]

    async def latest_bar_arrays(
        self, symbol: str, timeframe: Timeframe, limit: int, *, source: Timeframe
    ) -> BarArrays:
        """latest_bars(symbol, timeframe, limit, closed_only=True, source=source) as arrays. A
        stored series is read as numbers only (open times as epoch seconds, counted by MariaDB)
        into one array: a cold start reads ~30,000 series of ~700 bars, and turning the rows'
        datetimes and tuples into a frame per series was a third of its main thread (py-spy,
        docs/benchmarks.md item 11), twice what the query cost."""
        if source != timeframe:  # resampled: the frame's way
            frame = await self.latest_bars(
                symbol, timeframe, limit, closed_only=True, source=source
            )
            return BarArrays.of(frame)
        if limit <= 0:  # as latest_bars says it
            raise BadParameterError("limit must be a positive number of bars", field="limit")
        rows = await self.db.fetchall(
            f"SELECT TIMESTAMPDIFF(SECOND, '1970-01-01', ts), {_OHLCV_AS_DOUBLES} FROM bars"
            " WHERE symbol = %s AND timeframe = %s ORDER BY ts DESC LIMIT %s",
            (parse_symbol(symbol), source.value, limit),
        )
        flat = np.fromiter(itertools.chain.from_iterable(rows), np.float64, 6 * len(rows))
        table = flat.reshape(len(rows), 6)[::-1]  # oldest first
        return BarArrays(table[:, 0].astype(np.int64), np.ascontiguousarray(table[:, 1:]))

    async def bars_between(
        self,
        symbol: str,
        timeframe: Timeframe,
        start: datetime,
        end: datetime | None,
        *,
        limit: int | None = None,
    ) -> pd.DataFrame:
        """Bars whose open time lies in [start, end) (end None: up to the newest), oldest first;
        only the first `limit` when given."""
        if end is not None and end <= start:
            raise BadParameterError("end must be after start", field="end")
        if limit is not None and limit <= 0:
            raise BadParameterError("limit must be a positive number of bars", field="limit")
        symbol = parse_symbol(symbol)
        source = await self.source_timeframe(symbol, timeframe)
        start_n = _naive_utc(start)
        until, bound = ("", ()) if end is None else (" AND ts < %s", (_naive_utc(end),))
        # Read whole buckets so the first resampled bucket is complete, then keep those >= start.
        # A bucket holds at most `ratio` base bars: (limit + 2) * ratio of them span the first
        # bucket (maybe before start), `limit` whole ones and the one the LIMIT may cut.
        ratio = timeframe.seconds // source.seconds
        most = "" if limit is None else f" LIMIT {limit if ratio == 1 else (limit + 2) * ratio:d}"
        rows = await self.db.fetchall(
            f"{_SELECT_BARS} WHERE symbol = %s AND timeframe = %s AND ts >= %s{until}"
            f" ORDER BY ts{most}",
            (
                symbol,
                source.value,
                timeframe.floor(start_n) if source != timeframe else start_n,
                *bound,
            ),
        )
        frame = bars_frame(rows)
        if source != timeframe:
            resampled = resample_bars(frame, timeframe)
            frame = resampled[resampled.index >= pd.Timestamp(start_n, tz="UTC")]
        return frame if limit is None else frame.iloc[:limit]

    async def bars_between_many(
        self, timeframe: Timeframe, spans: Mapping[str, tuple[datetime, datetime]]
    ) -> dict[str, BarArrays]:
        """Per symbol, the bars `bars_between(symbol, timeframe, start, end)` gives for its
        (start, end) span, as arrays, read in one query per source timeframe over the union of
        the spans: live quality reads the bars since its last pass for thousands of series at
        once, where a query and a DataFrame per series cost ~0.5 ms each."""
        by_source: dict[Timeframe, list[str]] = {}
        for symbol in spans:
            by_source.setdefault(await self.source_timeframe(symbol, timeframe), []).append(symbol)
        found: dict[str, BarArrays] = {}
        for source, symbols in by_source.items():
            first = _naive_utc(min(spans[symbol][0] for symbol in symbols))
            last = _naive_utc(max(spans[symbol][1] for symbol in symbols))
            marks = ",".join(["%s"] * len(symbols))
            rows = await self.db.fetchall(
                f"SELECT symbol, {SELECT_BAR_VALUES} FROM bars WHERE timeframe = %s"
                f" AND symbol IN ({marks}) AND ts >= %s AND ts < %s ORDER BY symbol, ts",
                (
                    source.value,
                    *symbols,
                    timeframe.floor(first) if source != timeframe else first,  # whole buckets
                    last,
                ),
            )
            times = np.array([row[1] for row in rows], "datetime64[s]").astype(np.int64)
            values = np.array([row[2:] for row in rows], np.float64).reshape(len(rows), 5)
            begin = 0
            for symbol, run in itertools.groupby(row[0] for row in rows):  # ordered by symbol
                end = begin + sum(1 for _ in run)
                bars = BarArrays(times[begin:end], values[begin:end])
                found[symbol] = self._span(bars, spans[symbol], source, timeframe)
                begin = end
            for symbol in symbols:
                found.setdefault(symbol, BarArrays(times[:0], values[:0]))
        return found

    @staticmethod
    def _span(
        bars: BarArrays, span: tuple[datetime, datetime], source: Timeframe, timeframe: Timeframe
    ) -> BarArrays:
        """The bars of one symbol within its span: source bars before its end (a bucket the end
        cuts holds only those, as when read alone), resampled if need be, from its start."""
        start, end = (epoch_seconds(moment) for moment in span)
        before = int(np.searchsorted(bars.times, end))
        times, values = bars.times[:before], bars.values[:before]
        if source != timeframe and len(times):
            resampled = resample_bars(BarArrays(times, values).frame(), timeframe)
            times, values = BarArrays.of(resampled)
        after = int(np.searchsorted(times, start))
        return BarArrays(times[after:], values[after:])

    async def source_timeframe(self, symbol: str, timeframe: Timeframe) -> Timeframe:
        """Bars stored at `timeframe` win; otherwise resample from the symbol's base timeframe.
        The probe's answer is cached like symbol metadata (writes clear it, see write_bars)."""
        info = await self.get_symbol(symbol)
        if timeframe == info.base_timeframe:
            return timeframe
        cached = self.db.stored_cache.get((symbol, timeframe))
        if cached is not None and time.monotonic() - cached[0] < SYMBOL_CACHE_S:
            stored = cached[1]
        else:
            rows = await self.db.fetchall(
                "SELECT 1 FROM bars WHERE symbol = %s AND timeframe = %s LIMIT 1",
                (symbol, timeframe.value),
            )
            stored = bool(rows)
            self.db.stored_cache[(symbol, timeframe)] = (time.monotonic(), stored)
        if stored:
            return timeframe
        if not is_multiple(timeframe, info.base_timeframe):
            raise UnsupportedTimeframeError(
                f"{symbol} is stored at {info.base_timeframe.value}; {timeframe.value} is not a "
                f"whole multiple of it, so it cannot be resampled"
            )
        return info.base_timeframe

    # --- writes --------------------------------------------------------------------------
    @staticmethod
    async def upsert_rows(conn: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
        """Idempotent upsert of (symbol, timeframe, ts, o, h, l, c, v) rows inside the caller's
        transaction: ingesting the same bars twice leaves the table identical. Rows at or before
        a series' newest stored bar (a correction, a backfill) bump its revision in the same
        transaction, so the bar-close engine knows to recompute that series' features."""
        oldest: dict[tuple[str, str], str] = {}
        for row in rows:
            key, ts = (row[0], str(row[1])), str(row[2])
            if key not in oldest or ts < oldest[key]:
                oldest[key] = ts
        async with conn.cursor() as cur:
            one = "SELECT %s, %s, MAX(ts) FROM bars WHERE symbol = %s AND timeframe = %s"
            await cur.execute(
                " UNION ALL ".join([one] * len(oldest)),
                [p for symbol, tf in oldest for p in (symbol, tf, symbol, tf)],
            )
            revised = [
                (symbol, tf, oldest[(symbol, tf)])
                for symbol, tf, newest in await cur.fetchall()
                if newest is not None and oldest[(symbol, tf)] <= str(newest)
            ]
            await cur.executemany(_UPSERT_BARS, rows)
            if revised:
                await cur.executemany(_BUMP_REVISION, revised)
