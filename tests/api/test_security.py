"""API key / JWT authentication, rate limiting behind a proxy, and CORS, on the real app and DB."""

from __future__ import annotations

import time
from urllib.parse import urlencode

import jwt
import msgspec
import pytest
from litestar.exceptions import WebSocketDisconnect
from litestar.testing import AsyncTestClient, TestClient

from orchestrator.api.app import create_app
from orchestrator.ingest.writer import write_bars
from orchestrator.marketdata.db import Database
from orchestrator.marketdata.store import SymbolInfo
from orchestrator.settings import (
    ApiSettings,
    DatabaseSettings,
    RedisSettings,
    Settings,
    TritonSettings,
)
from tests.marketdata.test_store import _bars

KEY = "s3cret-key"
SECRET = "jwt-secret"


def _app(db: DatabaseSettings, redis_url: str, **api: object) -> object:
    settings = Settings(
        db=db,
        triton=TritonSettings(grpc_port=1),
        api=msgspec.structs.replace(ApiSettings(), **api),
        redis=RedisSettings(url=redis_url),
    )
    return create_app(settings)


async def _seed(db: Database) -> None:
    await write_bars(
        db,
        _bars("AAAUSD", 10),
        {"AAAUSD": SymbolInfo("AAAUSD", "crypto", 0.01)},
        show_progress=False,
    )


async def test_api_key_and_jwt(
    clean_db: Database, db_settings: DatabaseSettings, redis_url: str
) -> None:
    await _seed(clean_db)
    app = _app(db_settings, redis_url, internal_api_key=KEY, jwt_secret=SECRET)
    good_jwt = jwt.encode(
        {"sub": "user-1", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256"
    )
    old_jwt = jwt.encode({"sub": "user-1", "exp": int(time.time()) - 60}, SECRET, algorithm="HS256")
    async with AsyncTestClient(app) as client:  # type: ignore[arg-type]
        url = "/api/history/AAAUSD?limit=2"
        missing = await client.get(url)
        assert missing.status_code == 401
        assert "X-API-Key" in missing.json()["message"]
        assert (await client.get(url, headers={"X-API-Key": "nope"})).status_code == 401
        assert (await client.get(url, headers={"X-API-Key": KEY})).status_code == 200
        assert (
            await client.get(url, headers={"Authorization": f"Bearer {KEY}"})
        ).status_code == 200
        assert (
            await client.get(url, headers={"Authorization": f"Bearer {good_jwt}"})
        ).status_code == 200
        expired = await client.get(url, headers={"Authorization": f"Bearer {old_jwt}"})
        assert expired.status_code == 401
        assert expired.json()["message"] == "token expired"
        assert (await client.get("/health")).status_code == 200  # liveness stays open


def test_a_websocket_token_is_url_decoded(db_settings: DatabaseSettings, redis_url: str) -> None:
    """Browsers send the key as ?token= (they cannot set headers on a WebSocket), encoded as
    URLSearchParams does; the key is compared once decoded."""
    key = "k+y/with=sign%s"
    app = _app(db_settings, redis_url, internal_api_key=key)
    with TestClient(app) as client:  # type: ignore[arg-type]
        # Authenticated: the handler runs and says the symbol is unknown (404 -> close 4404).
        with client.websocket_connect(f"/ws/NOPEUSD?{urlencode({'token': key})}") as ws:
            message = ws.receive_json()
            assert (message["type"], message["status"]) == ("error", 404), message
        # The same characters unencoded read as another key ("+" is a space): refused.
        with client.websocket_connect(f"/ws/NOPEUSD?token={key}") as ws:
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
            assert closed.value.code == 4401


async def test_rate_limit_per_forwarded_client(
    clean_db: Database, db_settings: DatabaseSettings, redis_flushed: str
) -> None:
    await _seed(clean_db)
    app = _app(db_settings, redis_flushed, rate_limit_per_minute=3, trusted_proxies=("testclient",))
    async with AsyncTestClient(app) as client:  # type: ignore[arg-type]
        url = "/api/history/AAAUSD?limit=1"
        alice = {"X-Forwarded-For": "203.0.113.7, 10.0.0.1"}
        codes = [(await client.get(url, headers=alice)).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        bob = {"X-Forwarded-For": "198.51.100.9"}
        assert (await client.get(url, headers=bob)).status_code == 200


async def test_forwarded_header_from_an_untrusted_peer_is_ignored(
    clean_db: Database, db_settings: DatabaseSettings, redis_flushed: str
) -> None:
    await _seed(clean_db)
    app = _app(db_settings, redis_flushed, rate_limit_per_minute=2, trusted_proxies=())
    async with AsyncTestClient(app) as client:  # type: ignore[arg-type]
        url = "/api/history/AAAUSD?limit=1"
        codes = [
            (await client.get(url, headers={"X-Forwarded-For": f"192.0.2.{i}"})).status_code
            for i in range(3)
        ]
        assert codes == [200, 200, 429]  # spoofed addresses all count as the same peer


async def test_cors_preflight(db_settings: DatabaseSettings, redis_url: str) -> None:
    app = _app(db_settings, redis_url, internal_api_key=KEY)
    async with AsyncTestClient(app) as client:  # type: ignore[arg-type]
        headers = {
            "Origin": "http://localhost:5173",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "x-api-key",
        }
        allowed = await client.options("/api/history/AAAUSD", headers=headers)
        assert allowed.status_code in (200, 204)
        assert allowed.headers["access-control-allow-origin"] == "http://localhost:5173"
        other = await client.options(
            "/api/history/AAAUSD", headers={**headers, "Origin": "http://evil.example"}
        )
        assert "access-control-allow-origin" not in other.headers
