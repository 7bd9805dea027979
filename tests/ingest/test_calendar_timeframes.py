"""Weekly and monthly bars end to end: ingested from files (timeframe inferred from the spacing),
served by /api/history as stored, and resampled from daily bars on calendar boundaries."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from litestar.testing import AsyncTestClient

from orchestrator.api.app import create_app
from orchestrator.marketdata.db import Database
from orchestrator.settings import (
    ApiSettings,
    DatabaseSettings,
    RedisSettings,
    Settings,
    TritonSettings,
)
from tests.conftest import cli_env, run_cli

BARS = Path(__file__).parent.parent / "fixtures" / "bars"
OHLCV = ["open", "high", "low", "close", "volume"]


@pytest.fixture
async def client(
    clean_db: Database, db_settings: DatabaseSettings, redis_flushed: str
) -> AsyncIterator[AsyncTestClient]:  # type: ignore[type-arg]
    """The API without Triton: history needs only the store."""
    settings = Settings(
        db=db_settings,
        triton=TritonSettings(),
        api=ApiSettings(),
        redis=RedisSettings(url=redis_flushed),
    )
    async with AsyncTestClient(create_app(settings)) as test_client:
        yield test_client


def _ingest(db_settings: DatabaseSettings, path: Path, symbol: str) -> str:
    result = run_cli("ingest", str(path), "--symbol", symbol, "--quiet", env=cli_env(db_settings))
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _history_frame(body: dict[str, Any]) -> pd.DataFrame:
    bars = pd.DataFrame(body["bars"])
    return bars.set_index(pd.DatetimeIndex(pd.to_datetime(bars.pop("time"), utc=True)))


@pytest.mark.parametrize(
    ("name", "timeframe", "count"), [("weekly.csv", "1w", 6), ("monthly.csv", "1mo", 12)]
)
async def test_weekly_and_monthly_files_are_stored_and_served(
    clean_db: Database,
    db_settings: DatabaseSettings,
    client: AsyncTestClient,  # type: ignore[type-arg]
    name: str,
    timeframe: str,
    count: int,
) -> None:
    out = _ingest(db_settings, BARS / name, "BTCUSD")
    assert f"wrote {count}, rejected 0 (timeframe {timeframe} inferred from bar spacing)" in out
    symbols = await clean_db.fetchall("SELECT symbol, base_timeframe FROM symbols", ())
    assert symbols == [("BTCUSD", timeframe)]

    response = await client.get("/api/history/BTCUSD", params={"timeframe": timeframe})
    assert response.status_code == 200, response.text
    served = _history_frame(response.json())
    written = pd.read_csv(BARS / name, index_col="date")
    assert [ts.strftime("%Y-%m-%d") for ts in served.index] == written.index.tolist()
    assert served[OHLCV].to_numpy().tolist() == written[OHLCV].to_numpy().tolist()


async def test_daily_bars_are_served_as_calendar_weeks_and_months(
    db_settings: DatabaseSettings,
    client: AsyncTestClient,  # type: ignore[type-arg]
    tmp_path: Path,
) -> None:
    days = pd.date_range("2024-01-03", "2024-04-30", freq="1D", tz="UTC")  # from a Wednesday
    i = np.arange(len(days), dtype=float)
    daily = pd.DataFrame(
        {
            "open": 100 + i,
            "high": 110 + i + i % 7,
            "low": 90 + i - i % 5,
            "close": 101 + i,
            "volume": i,
        },
        index=days,
    )
    daily.to_csv(tmp_path / "daily.csv")  # a DatetimeIndex: the first header is empty
    assert "(timeframe 1d inferred" in _ingest(db_settings, tmp_path / "daily.csv", "ETHUSD")

    weeks = (await client.get("/api/history/ETHUSD", params={"timeframe": "1w"})).json()
    weekly = _history_frame(weeks)
    assert set(pd.DatetimeIndex(weekly.index).day_name()) == {"Monday"}
    assert weekly.index[0] == pd.Timestamp("2024-01-01", tz="UTC")  # the week of the 3rd
    second = daily[(daily.index >= "2024-01-08") & (daily.index < "2024-01-15")]
    assert weekly.iloc[1][OHLCV].tolist() == [
        second["open"].iloc[0],
        second["high"].max(),
        second["low"].min(),
        second["close"].iloc[-1],
        second["volume"].sum(),
    ]

    months = (
        await client.get(
            "/api/history/ETHUSD",
            params={
                "timeframe": "1mo",
                "start": "2024-02-01T00:00:00Z",
                "end": "2024-04-01T00:00:00Z",
            },
        )
    ).json()
    monthly = _history_frame(months)
    assert list(monthly.index) == list(pd.to_datetime(["2024-02-01", "2024-03-01"], utc=True))
    february = daily[(daily.index >= "2024-02-01") & (daily.index < "2024-03-01")]
    assert monthly.iloc[0]["volume"] == february["volume"].sum()  # all 29 days
    assert monthly.iloc[0]["close"] == february["close"].iloc[-1]


async def test_what_weekly_and_monthly_bars_cannot_answer_is_said_clearly(
    db_settings: DatabaseSettings,
    client: AsyncTestClient,  # type: ignore[type-arg]
) -> None:
    _ingest(db_settings, BARS / "weekly.csv", "BTCUSD")
    months = await client.get("/api/history/BTCUSD", params={"timeframe": "1mo"})
    assert months.status_code == 404
    assert "stored at 1w; 1mo is not a whole multiple of it" in months.json()["message"]
    signals = await client.get("/api/signals/BTCUSD", params={"timeframe": "1w"})
    assert signals.status_code == 400
    assert "use one of 5m, 15m, 1h" in signals.json()["message"]
