"""`python -m orchestrator ingest` end to end against the real database."""

from __future__ import annotations

import asyncio
import csv
import itertools
import shutil
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from orchestrator.marketdata.db import Database
from orchestrator.settings import PROJECT_ROOT, DatabaseSettings
from tests.conftest import cli_env, run_cli, until

BARS = Path(__file__).parent.parent / "fixtures" / "bars"

EXPECTED_REJECTS = {
    3: "high is below max(open, close)",
    4: "low is above min(open, close)",
    5: "open must be positive",
    6: "volume must be >= 0",
    7: "timestamp '2024-05-06T00:23:00Z' is not aligned to the 5m grid (UTC)",
    8: "unparseable timestamp 'not-a-time'",
    9: "duplicate of line 3 (same symbol, timeframe, time)",
    10: "open is not a finite number",
    11: "close is not a finite number",
}


async def _table_digest(db: Database) -> tuple[object, ...]:
    rows = await db.fetchall(
        "SELECT COUNT(*), SUM(open), SUM(high), SUM(low), SUM(close), SUM(volume),"
        " MIN(ts), MAX(ts) FROM bars",
        (),
    )
    return tuple(rows[0])


async def test_good_file_is_written_and_reingest_changes_nothing(
    clean_db: Database, db_settings: DatabaseSettings
) -> None:
    env = cli_env(db_settings)
    first = run_cli(
        "ingest", str(BARS / "good_epoch_ms.csv"), "--symbol", "btcusd", "--quiet", env=env
    )
    assert first.returncode == 0, first.stderr
    assert "read 4, wrote 4, rejected 0 (timeframe 5m inferred from bar spacing)" in first.stdout
    digest = await _table_digest(clean_db)
    assert digest[0] == 4
    again = run_cli(
        "ingest", str(BARS / "good_epoch_ms.csv"), "--symbol", "BTCUSD", "--quiet", env=env
    )
    assert again.returncode == 0
    assert await _table_digest(clean_db) == digest
    symbols = await clean_db.fetchall("SELECT symbol, asset_class, base_timeframe FROM symbols", ())
    assert symbols == [("BTCUSD", "crypto", "5m")]


async def test_symbols_from_the_file(clean_db: Database, db_settings: DatabaseSettings) -> None:
    result = run_cli(
        "ingest",
        str(BARS / "good_iso_symbols.csv"),
        "--timeframe",
        "5m",
        "--quiet",
        env=cli_env(db_settings),
    )
    assert result.returncode == 0, result.stderr
    rows = await clean_db.fetchall(
        "SELECT symbol, ts, CAST(close AS CHAR) FROM bars ORDER BY symbol, ts", ()
    )
    assert [(s, ts.strftime("%H:%M"), c) for s, ts, c in rows] == [
        ("EURUSD", "00:00", "1.0751000000"),
        ("EURUSD", "00:05", "1.0752500000"),
        ("XAUUSD", "00:00", "2310.8000000000"),
    ]


def _ingest_bad_rows(
    tmp_path: Path, db_settings: DatabaseSettings, *extra: str
) -> subprocess.CompletedProcess[str]:
    """Ingests a copy of bad_rows.csv (so its rejects file lands in tmp_path)."""
    source = tmp_path / "bad_rows.csv"
    shutil.copy(BARS / "bad_rows.csv", source)
    args = ["ingest", str(source), "--symbol", "TESTUSD", "--timeframe", "5m", "--quiet", *extra]
    return run_cli(*args, env=cli_env(db_settings))


async def test_every_bad_row_is_reported_with_line_and_reason(
    clean_db: Database, db_settings: DatabaseSettings, tmp_path: Path
) -> None:
    result = _ingest_bad_rows(tmp_path, db_settings)
    assert result.returncode == 1
    assert "read 11, wrote 2, rejected 9" in result.stdout
    rejects_path = tmp_path / "bad_rows.csv.rejects.csv"
    with rejects_path.open() as handle:
        rejects = {int(row["line"]): row["reason"] for row in csv.DictReader(handle)}
    assert rejects == EXPECTED_REJECTS
    rows = await clean_db.fetchall("SELECT ts FROM bars", ())
    # Only the clean rows are stored: line 2 (00:00) and line 12 (00:40).
    assert sorted(r[0].strftime("%H:%M") for r in rows) == ["00:00", "00:40"]


async def test_strict_writes_nothing(
    clean_db: Database, db_settings: DatabaseSettings, tmp_path: Path
) -> None:
    result = _ingest_bad_rows(tmp_path, db_settings, "--strict")
    assert result.returncode == 1
    assert "--strict: nothing was written" in result.stdout
    assert await _table_digest(clean_db) == (0, None, None, None, None, None, None, None)


def test_unreachable_database_is_one_clear_line(
    tmp_path: Path, db_settings: DatabaseSettings
) -> None:
    env = cli_env(db_settings, MYSQL_PORT="1")
    result = run_cli("ingest", str(BARS / "good_epoch_ms.csv"), "--symbol", "BTCUSD", env=env)
    assert result.returncode == 3
    assert "127.0.0.1:1" in result.stderr
    assert "make db" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_symbol_is_a_usage_error(db_settings: DatabaseSettings) -> None:
    result = run_cli("ingest", str(BARS / "good_epoch_ms.csv"), env=cli_env(db_settings))
    assert result.returncode == 2
    assert "no symbol/ticker column; pass --symbol" in result.stderr


ROWS = 60_000
BLOCKED = 1_000  # the bar whose row the test holds locked


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


async def test_interrupted_run_keeps_whole_batches_and_rerun_completes(
    clean_db: Database, db_settings: DatabaseSettings, tmp_path: Path
) -> None:
    path = tmp_path / "big.csv"
    generated = run_cli(
        "demo",
        "--symbols",
        "BTCUSD",
        "--bars",
        str(ROWS),
        "--out",
        str(path),
        env=cli_env(db_settings),
    )
    assert generated.returncode == 0, generated.stderr
    batch = 200
    # Deterministic, not a race against the clock: a transaction of the test's holds the row of
    # bar BLOCKED, so the ingest commits the batches before it and then waits on that row's lock;
    # the interrupt lands there. (Racing it, the whole file was once written before SIGINT came.)
    with path.open() as source:
        blocked_ts = next(itertools.islice(csv.DictReader(source), BLOCKED, None))["ts"]
    blocked = datetime.fromisoformat(blocked_ts.replace("Z", "+00:00")).replace(tzinfo=None)
    async with clean_db.transaction() as conn, conn.cursor() as cur:
        await cur.execute(
            "INSERT INTO symbols (symbol, asset_class, tick_size, base_timeframe)"
            " VALUES ('INTUSD', 'crypto', 0.01, '5m')"
        )
    args = [
        sys.executable,
        "-m",
        "orchestrator",
        "ingest",
        str(path),
        "--symbol",
        "INTUSD",
        "--batch-rows",
        str(batch),
        "--quiet",
    ]
    async with clean_db.connection() as holder, holder.cursor() as cur:
        await holder.begin()
        await cur.execute(
            "INSERT INTO bars (symbol, timeframe, ts, open, high, low, close, volume)"
            " VALUES ('INTUSD', '5m', %s, 1, 1, 1, 1, 0)",
            (blocked,),
        )
        proc = await asyncio.create_subprocess_exec(
            *args,
            env=cli_env(db_settings),
            cwd=PROJECT_ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            # A suite started in the background (`make test &`, some CI runners) has SIGINT
            # ignored; the child inherits that and Python then never raises KeyboardInterrupt:
            # the ingest ran to the end with exit 0 (twice today). Ctrl-C as in a terminal.
            preexec_fn=_default_sigint,
        )

        async def waiting_on_the_held_row() -> bool:
            count = (await clean_db.fetchall("SELECT COUNT(*) FROM bars", ()))[0][0]
            return bool(count >= BLOCKED - BLOCKED % batch)

        await until(
            waiting_on_the_held_row,
            what="the batches before the held row to be committed",
            timeout_s=120,
            every_s=0.05,
            abort=lambda: None if proc.returncode is None else f"exit {proc.returncode}",
        )
        proc.send_signal(signal.SIGINT)
        # Let go of the row at once: the interrupted ingest closes its connections on the way
        # out, and one still waiting on this lock would hold its exit up.
        await holder.rollback()
    _, stderr_bytes = await asyncio.wait_for(proc.communicate(), timeout=120)
    stderr = stderr_bytes.decode()
    count = (await clean_db.fetchall("SELECT COUNT(*) FROM bars", ()))[0][0]
    assert proc.returncode == 130, stderr  # interrupted mid-way
    assert "interrupted" in stderr
    assert "Traceback" not in stderr
    assert count % batch == 0  # only whole, committed batches
    assert 0 < count < ROWS
    rerun = run_cli("ingest", str(path), "--symbol", "INTUSD", "--quiet", env=cli_env(db_settings))
    assert rerun.returncode == 0
    assert (await clean_db.fetchall("SELECT COUNT(*) FROM bars", ()))[0][0] == ROWS
