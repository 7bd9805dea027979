"""What a person who sent a bad request reads: the field, what it must be and what was sent, in
plain words (never a regular expression, a type name or a traceback); and /api/history's dates,
typed as people type them, on the real app and store (Triton is not needed: it is never
reached)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from orchestrator.api.app import create_app
from orchestrator.ingest.writer import write_bars
from orchestrator.marketdata.db import Database
from orchestrator.marketdata.store import SymbolInfo
from orchestrator.marketdata.timeframes import Timeframe
from orchestrator.settings import (
    ApiSettings,
    DatabaseSettings,
    RedisSettings,
    Settings,
    TritonSettings,
)
from tests.marketdata.test_store import _bars

SYMBOL = "AAAUSD"
BARS = 600  # 5m bars from Monday 2024-05-06 00:00 UTC: two whole days and 24 bars of a third
# What no answer may contain: a regular expression, msgspec's wording, a type or class name.
NOT_PLAIN = re.compile(
    r"regex|Expected `|`(?:int|str|float|bool)`|Traceback|\w+(?:Error|Exception)\b"
)
BODY: dict[str, Any] = {"symbol": SYMBOL, "start_date": "2024-05-07", "end_date": "2024-05-07"}


@pytest.fixture
async def client(
    clean_db: Database, db_settings: DatabaseSettings, redis_flushed: str
) -> AsyncIterator[AsyncTestClient]:  # type: ignore[type-arg]
    info = SymbolInfo(SYMBOL, "crypto", 0.01, Timeframe.M5)
    await write_bars(clean_db, _bars(SYMBOL, BARS), {SYMBOL: info}, show_progress=False)
    settings = Settings(
        db=db_settings,
        triton=TritonSettings(grpc_port=1),
        api=ApiSettings(rate_limit_per_minute=10**6),
        redis=RedisSettings(url=redis_flushed),
    )
    async with AsyncTestClient(create_app(settings)) as test_client:
        yield test_client


def _refused(response: Any, field: str | None) -> str:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body.get("field") == field, body
    assert not NOT_PLAIN.search(body["message"]), body["message"]
    return str(body["message"])


async def test_the_issue_example_reads_as_a_sentence(
    client: AsyncTestClient,  # type: ignore[type-arg]
) -> None:
    response = await client.post("/api/backtest", json={**BODY, "end_date": "2100-01-01"})
    message = _refused(response, "end_date")
    assert message.startswith("end_date must be a date between 1970-01-01 and 2099-12-31")
    assert message.endswith("got '2100-01-01'")


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"symbol": "BTC USD"}, "symbol", "symbol must be 1-20 characters"),
        ({"start_date": 5}, "start_date", "start_date must be a date between 1970-01-01"),
        ({"strategy": "yolo"}, "strategy", "strategy must be one of aggressive_filter"),
        ({"timeframe": 5}, "timeframe", "timeframe must be one of 15m, 1d, 1h, 1m"),
        ({"params": {"fee_rate": -1}}, "params.fee_rate", "at least 0 and below 0.1, got -1"),
        ({"params": {"walk_forward": 99}}, "params.walk_forward", "from 2 to 24, or null"),
        ({"params": {"use_metamodel": "yes"}}, "params.use_metamodel", "true or false"),
        ({"params": {"leverage": 10}}, "params.leverage", "leverage is not a field of params"),
        ({"leverage": 10}, "leverage", "use symbol, start_date, end_date"),
    ],
)
async def test_bad_bodies_say_what_the_field_must_be(
    client: AsyncTestClient,  # type: ignore[type-arg]
    change: dict[str, Any],
    field: str,
    words: str,
) -> None:
    message = _refused(await client.post("/api/backtest", json={**BODY, **change}), field)
    assert words in message


@pytest.mark.parametrize(
    ("content", "field", "words"),
    [
        (b'{"symbol": "AAAUSD"', None, "the request body is not valid JSON"),
        (b"[1, 2]", None, "the body must be a JSON object with the fields symbol"),
        (msgspec.json.encode({"symbol": SYMBOL}), "start_date", "start_date is required"),
    ],
)
async def test_bodies_that_are_not_the_object_say_so(
    client: AsyncTestClient,  # type: ignore[type-arg]
    content: bytes,
    field: str | None,
    words: str,
) -> None:
    headers = {"content-type": "application/json"}
    response = await client.post("/api/backtest", content=content, headers=headers)
    assert words in _refused(response, field)


@pytest.mark.parametrize(
    ("path", "field", "words"),
    [
        ("/api/backtest?limit=500", "limit", "limit must be an integer from 1 to 100, got '500'"),
        ("/api/backtest?offset=-1", "offset", "offset must be an integer from 0 to 1000000"),
        ("/api/backtest?status=lost", "status", "status must be one of cancelled, done"),
        ("/api/backtest/xyz", "job_id", "job_id must be a job id (16 hex digits), got 'xyz'"),
        ("/api/history/AAAUSD?limit=many", "limit", "limit must be an integer, got 'many'"),
    ],
)
async def test_bad_parameters_say_what_they_must_be(
    client: AsyncTestClient,  # type: ignore[type-arg]
    path: str,
    field: str,
    words: str,
) -> None:
    assert words in _refused(await client.get(path), field)


# --- /api/history: plain dates and RFC 3339 alike, start or end alone ----------------------------
async def _times(client: AsyncTestClient, **query: Any) -> list[str]:  # type: ignore[type-arg]
    response = await client.get(f"/api/history/{SYMBOL}", params={"limit": 10_000, **query})
    assert response.status_code == 200, response.text
    return [bar["time"] for bar in response.json()["bars"]]


async def test_plain_dates_and_rfc_3339_name_the_same_bars(
    client: AsyncTestClient,  # type: ignore[type-arg]
) -> None:
    day = await _times(client, start="2024-05-06", end="2024-05-06")  # that whole day
    assert len(day) == 288
    assert (day[0], day[-1]) == ("2024-05-06T00:00:00Z", "2024-05-06T23:55:00Z")
    assert await _times(client, start="2024-05-06T00:00:00Z", end="2024-05-07T00:00:00Z") == day
    assert await _times(client, start="2024-05-06T02:00:00+02:00", end="2024-05-07 00:00") == day


async def test_start_alone_runs_to_the_newest_bar(
    client: AsyncTestClient,  # type: ignore[type-arg]
) -> None:
    rest = await _times(client, start="2024-05-07")
    assert len(rest) == BARS - 288
    assert rest[-1] == "2024-05-08T01:55:00Z"  # the newest
    assert await _times(client, start="2024-05-07", limit=3) == rest[:3]
    hours = (await client.get(f"/api/history/{SYMBOL}", params={
        "start": "2024-05-06T01:30:00Z", "timeframe": "1h", "limit": 2,
    })).json()["bars"]  # fmt: skip
    assert [b["time"] for b in hours] == ["2024-05-06T02:00:00Z", "2024-05-06T03:00:00Z"]
    assert [b["volume"] for b in hours] == [
        sum(1 + i / 4 for i in range(k, k + 12)) for k in (24, 36)
    ]


async def test_end_alone_is_the_newest_bars_before_it(
    client: AsyncTestClient,  # type: ignore[type-arg]
) -> None:
    before = await _times(client, end="2024-05-06T01:00:00Z", limit=3)
    assert before == ["2024-05-06T00:45:00Z", "2024-05-06T00:50:00Z", "2024-05-06T00:55:00Z"]
    assert len(await _times(client, end="2024-05-06")) == 288  # up to the end of that day


@pytest.mark.parametrize(
    ("query", "field", "words"),
    [
        ({"start": "2024-05-07", "end": "2024-05-06"}, "end", "end (2024-05-06) must be after"),
        ({"start": "2024-13-01"}, "start", "start must be a date between 1970-01-01"),
        ({"end": "yesterday"}, "end", "got 'yesterday'"),
    ],
)
async def test_bad_history_dates_say_the_rule(
    client: AsyncTestClient,  # type: ignore[type-arg]
    query: dict[str, str],
    field: str,
    words: str,
) -> None:
    assert words in _refused(await client.get(f"/api/history/{SYMBOL}", params=query), field)


def test_the_document_says_how_dates_are_typed() -> None:
    document = create_app().openapi_schema.to_schema()
    history = document["paths"]["/api/history/{symbol}"]["get"]
    described = {p["name"]: p["description"] for p in history["parameters"]}
    for name in ("start", "end"):
        assert "YYYY-MM-DD" in described[name]
        assert "RFC 3339" in described[name]
    assert "alone" in described["start"]
    assert "alone" in described["end"]
    body = document["components"]["schemas"]["BacktestBody"]["properties"]
    assert "YYYY-MM-DD" in body["end_date"]["description"]
    assert "that whole day included" in body["end_date"]["description"]
