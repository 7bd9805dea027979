"""`make run DATA=real`: the real series are loaded without their last days, and the replay
appends exactly those held-back bars, in order, then ends."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.demo.replay import Replay
from orchestrator.errors import BadParameterError
from orchestrator.marketdata.db import Database
from orchestrator.realdata.load import load_series
from orchestrator.realdata.pypi import PyPIClient
from orchestrator.realdata.replay import RealFeed
from tests.realdata.index import local_index
from tests.realdata.test_ingest import _catalogue

HOLD_BACK_DAYS = 0.1  # 2.4 h: the last three valid BTCUSD hours, the last SPX day


async def _stored(db: Database) -> list[tuple[str, str, str, float]]:
    rows = await db.fetchall(
        "SELECT symbol, timeframe, ts, close FROM bars ORDER BY symbol, ts", ()
    )
    return [(s, tf, str(ts), float(close)) for s, tf, ts, close in rows]


async def test_the_replay_appends_the_held_back_bars_and_ends(
    clean_db: Database, tmp_path: Path
) -> None:
    with local_index() as index:
        catalogue = _catalogue(index)
        with PyPIClient(tmp_path, index_url=index.url, show_progress=False, say=str) as client:
            results = await load_series(
                clean_db,
                catalogue,
                client,
                rejects_dir=tmp_path,
                show_progress=False,
                say=str,
                hold_back_days=HOLD_BACK_DAYS,
            )
            loaded = await _stored(clean_db)
            feed = RealFeed(client, catalogue)
            replay = Replay(clean_db, ["BTCUSD", "SPX"], feed=feed)
            await replay.run(interval_s=0.0, steps=10)
    assert [(r.symbol, r.bars_stored, r.last_ts) for r in results] == [
        ("BTCUSD", 1, "2018-03-02 00:00:00"),
        ("EURUSD", 2, "2017-01-13 21:00:00"),
        ("SPX", 3, "2016-03-01 00:00:00"),
    ]
    assert [row for row in loaded if row[0] != "EURUSD"] == [
        ("BTCUSD", "1h", "2018-03-02 00:00:00", 10820.0),
        ("SPX", "1d", "2016-02-26 00:00:00", 1948.0),
        ("SPX", "1d", "2016-02-29 00:00:00", 1932.25),
        ("SPX", "1d", "2016-03-01 00:00:00", 1978.5),
    ]
    # Three steps (BTCUSD's three held-back hours, SPX's one day in the first), then the end;
    # the bar that failed validation at load time is not replayed either.
    assert replay.appended == 4
    assert replay.ended == {"BTCUSD", "SPX"}
    replayed = [row for row in await _stored(clean_db) if row not in loaded]
    assert replayed == [
        ("BTCUSD", "1h", "2018-03-02 11:00:00", 10900.0),
        ("BTCUSD", "1h", "2018-03-02 12:00:00", 10950.5),
        ("BTCUSD", "1h", "2018-03-02 13:00:00", 10975.0),
        ("SPX", "1d", "2016-12-30 00:00:00", 2238.75),
    ]


def test_an_unknown_symbol_is_named_with_the_real_ones(tmp_path: Path) -> None:
    feed = RealFeed(PyPIClient(tmp_path, show_progress=False))
    with pytest.raises(
        BadParameterError, match=r"^no real series for DOGE; use BTCUSD, EURUSD, SPX, IXIC$"
    ) as refused:
        feed.check(["BTCUSD", "DOGE"])
    assert refused.value.field == "symbols"
