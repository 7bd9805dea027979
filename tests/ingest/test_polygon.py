"""The Polygon importer against a local HTTP server speaking Polygon's aggregates shape:
pagination through next_url, 429 + Retry-After and 5xx backoff, API key on every page."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import msgspec
import pytest

from orchestrator.ingest.pipeline import IngestOptions, ingest_frame
from orchestrator.ingest.polygon import PolygonClient, PolygonError, PolygonSettings, polygon_ticker
from orchestrator.marketdata.db import Database
from orchestrator.marketdata.timeframes import Timeframe

START_MS = 1714953600000  # 2024-05-06 00:00 UTC
PAGE_SIZE = 5
TOTAL = 12


def _bar(i: int) -> dict[str, Any]:
    price = 63000.0 + i
    return {
        "v": 1.5 + i,
        "vw": price,
        "o": price,
        "c": price + 0.5,
        "h": price + 1,
        "l": price - 1,
        "t": START_MS + i * 300_000,
        "n": 10,
    }


class FakePolygon(BaseHTTPRequestHandler):
    """Pages of 5 bars; the second page first answers 429 then 503 before succeeding."""

    calls: list[str] = []  # noqa: RUF012
    failures_left = {"429": 1, "503": 1}  # noqa: RUF012

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        url = urlparse(self.path)
        query = parse_qs(url.query)
        FakePolygon.calls.append(self.path)
        if query.get("apiKey") != ["test-key"]:
            self._send(401, {"status": "ERROR", "error": "Unknown API Key"})
            return
        cursor = int(query.get("cursor", ["0"])[0])
        if cursor == PAGE_SIZE and FakePolygon.failures_left["429"]:
            FakePolygon.failures_left["429"] -= 1
            self._send(429, {"status": "ERROR", "error": "too many requests"}, {"Retry-After": "0"})
            return
        if cursor == PAGE_SIZE and FakePolygon.failures_left["503"]:
            FakePolygon.failures_left["503"] -= 1
            self._send(503, {"status": "ERROR"})
            return
        page = [_bar(i) for i in range(cursor, min(cursor + PAGE_SIZE, TOTAL))]
        body: dict[str, Any] = {
            "ticker": url.path.split("/")[4],
            "queryCount": len(page),
            "resultsCount": len(page),
            "adjusted": True,
            "results": page,
            "status": "OK",
            "request_id": f"req-{cursor}",
        }
        if cursor + PAGE_SIZE < TOTAL:
            host = f"http://127.0.0.1:{self.server.server_address[1]}"
            body["next_url"] = f"{host}{url.path}?cursor={cursor + PAGE_SIZE}"
        self._send(200, body)

    def _send(self, code: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def polygon_url() -> Iterator[str]:
    FakePolygon.calls = []
    FakePolygon.failures_left = {"429": 1, "503": 1}
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakePolygon)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _settings(url: str, key: str = "test-key") -> PolygonSettings:
    return PolygonSettings(api_key=key, base_url=url, backoff_base_s=0.01, max_retries=3)


async def test_pages_and_backoff_then_ingest(polygon_url: str, clean_db: Database) -> None:
    async with PolygonClient(_settings(polygon_url)) as client:
        frame = await client.aggregates(
            "BTCUSD", Timeframe.M5, date(2024, 5, 6), date(2024, 5, 6), show_progress=False
        )
        assert client.retries == 2
    assert len(frame) == TOTAL
    assert frame["open"].tolist() == [63000.0 + i for i in range(TOTAL)]
    paths = [urlparse(c).path for c in FakePolygon.calls]
    assert paths[0] == "/v2/aggs/ticker/X:BTCUSD/range/5/minute/2024-05-06/2024-05-06"
    assert len(FakePolygon.calls) == 3 + 2  # three pages, two retried attempts
    report = await ingest_frame(
        clean_db,
        frame,
        IngestOptions(symbol="BTCUSD", show_progress=False),
        source="polygon",
        rejects_path=None,
    )
    assert (report.rows_written, report.rejected) == (TOTAL, 0)
    rows = await clean_db.fetchall("SELECT COUNT(*), MAX(CAST(close AS DOUBLE)) FROM bars", ())
    assert rows[0] == (TOTAL, 63011.5)


async def test_bad_key_is_a_clear_error(polygon_url: str) -> None:
    async with PolygonClient(_settings(polygon_url, key="wrong")) as client:
        with pytest.raises(PolygonError, match="rejected the API key"):
            await client.aggregates(
                "BTCUSD", Timeframe.M5, date(2024, 5, 6), date(2024, 5, 6), show_progress=False
            )


async def test_gives_up_after_max_retries(polygon_url: str) -> None:
    FakePolygon.failures_left = {"429": 10, "503": 0}
    settings = msgspec.structs.replace(_settings(polygon_url), max_retries=2)
    async with PolygonClient(settings) as client:
        with pytest.raises(PolygonError, match="after 2 retries"):
            await client.aggregates(
                "BTCUSD", Timeframe.M5, date(2024, 5, 6), date(2024, 5, 6), show_progress=False
            )


def test_ticker_prefixes() -> None:
    assert polygon_ticker("BTCUSD") == "X:BTCUSD"
    assert polygon_ticker("EURUSD") == "C:EURUSD"
    assert polygon_ticker("XAUUSD") == "C:XAUUSD"
    assert polygon_ticker("AAPL") == "AAPL"
