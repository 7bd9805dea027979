"""Polygon.io aggregates importer: pagination via `next_url`, backoff on 429/5xx.

Response shape (Polygon docs, "Aggregates (Bars)"): {"status": "OK"|"DELAYED", "resultsCount",
"results": [{"t": ms, "o", "h", "l", "c", "v", "vw", "n"}], "next_url"?}. The API key goes in
the `apiKey` query parameter, also on every `next_url` page.
"""

from __future__ import annotations

import asyncio
import random
from datetime import date
from types import TracebackType
from typing import Any

import httpx
import msgspec
import numpy as np
import numpy.typing as npt
import pandas as pd
from tqdm import tqdm

from orchestrator.errors import BadParameterError, ServiceUnavailableError, SettingsError
from orchestrator.ingest.pipeline import guess_asset_class
from orchestrator.marketdata.timeframes import Timeframe
from orchestrator.settings import env_text

_TIMESPAN = {
    Timeframe.M1: (1, "minute"),
    Timeframe.M5: (5, "minute"),
    Timeframe.M15: (15, "minute"),
    Timeframe.M30: (30, "minute"),
    Timeframe.H1: (1, "hour"),
    Timeframe.H4: (4, "hour"),
    Timeframe.D1: (1, "day"),
}
_PREFIX = {"crypto": "X:", "forex": "C:", "metal": "C:"}


class PolygonError(ServiceUnavailableError):
    """Polygon cannot be reached or refuses the request (exit 3)."""


class PolygonSettings(msgspec.Struct, frozen=True):
    api_key: str
    base_url: str = "https://api.polygon.io"
    timeout_s: float = 30.0
    max_retries: int = 6
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 60.0
    page_limit: int = 50_000

    @classmethod
    def from_env(cls) -> PolygonSettings:
        key = env_text("POLYGON_API_KEY")
        if not key:
            raise SettingsError("set POLYGON_API_KEY to your Polygon.io API key")
        base = env_text("POLYGON_BASE_URL", "https://api.polygon.io")
        return cls(api_key=key, base_url=base.rstrip("/"))


def polygon_ticker(symbol: str) -> str:
    """BTCUSD -> X:BTCUSD, EURUSD -> C:EURUSD, AAPL -> AAPL."""
    return _PREFIX.get(guess_asset_class(symbol), "") + symbol


class PolygonClient:
    def __init__(
        self, settings: PolygonSettings, transport: httpx.AsyncBaseTransport | None = None
    ):
        self.settings = settings
        self._client = httpx.AsyncClient(timeout=settings.timeout_s, transport=transport)
        self.retries = 0

    async def __aenter__(self) -> PolygonClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._client.aclose()

    async def _get(self, url: str, params: dict[str, str] | None) -> dict[str, Any]:
        attempt = 0
        while True:
            try:
                response = await self._client.get(url, params=params)
            except httpx.TransportError as exc:
                if attempt >= self.settings.max_retries:
                    raise PolygonError(f"Polygon unreachable at {url}: {exc}") from exc
                response = None
            if response is not None and response.status_code in (401, 403):
                raise PolygonError(
                    f"Polygon rejected the API key (HTTP {response.status_code}); "
                    "check POLYGON_API_KEY"
                )
            retryable = (
                response is None or response.status_code == 429 or response.status_code >= 500
            )
            if not retryable:
                assert response is not None
                if response.status_code != 200:
                    raise PolygonError(
                        f"Polygon answered HTTP {response.status_code}: {response.text[:200]}"
                    )
                payload: dict[str, Any] = response.json()
                if payload.get("status") not in ("OK", "DELAYED"):
                    raise PolygonError(f"Polygon error: {payload.get('error') or payload}")
                return payload
            if attempt >= self.settings.max_retries:
                code = "no response" if response is None else f"HTTP {response.status_code}"
                raise PolygonError(f"Polygon still failing after {attempt} retries ({code})")
            await asyncio.sleep(self._delay_s(attempt, response))
            attempt += 1
            self.retries += 1

    def _delay_s(self, attempt: int, response: httpx.Response | None) -> float:
        """Retry-After when given, else capped exponential backoff with full jitter."""
        if response is not None:
            header = response.headers.get("Retry-After")
            if header is not None:
                try:
                    return min(float(header), self.settings.backoff_cap_s)
                except ValueError:
                    pass
        ceiling = min(self.settings.backoff_cap_s, self.settings.backoff_base_s * 2**attempt)
        return random.uniform(ceiling / 2, ceiling)

    async def aggregates(
        self,
        symbol: str,
        timeframe: Timeframe,
        start: date,
        end: date,
        *,
        ticker: str | None = None,
        show_progress: bool = True,
    ) -> pd.DataFrame:
        """All bars of [start, end] (days, inclusive) in the ingestion pipeline's raw shape."""
        if end < start:
            raise BadParameterError("--to is before --from", field="end")
        if timeframe not in _TIMESPAN:
            # Weeks and months come from resampling stored bars, which fixes their alignment.
            raise BadParameterError(
                f"Polygon ingestion takes {', '.join(tf.value for tf in _TIMESPAN)}; ingest 1d "
                f"bars and ask history for {timeframe.value} (resampled from them)",
                field="timeframe",
            )
        multiplier, timespan = _TIMESPAN[timeframe]
        ticker = ticker or polygon_ticker(symbol.upper())
        url: str | None = (
            f"{self.settings.base_url}/v2/aggs/ticker/{ticker}/range/{multiplier}/{timespan}/"
            f"{start.isoformat()}/{end.isoformat()}"
        )
        params: dict[str, str] | None = {
            "adjusted": "true",
            "sort": "asc",
            "limit": str(self.settings.page_limit),
            "apiKey": self.settings.api_key,
        }
        results: list[dict[str, Any]] = []
        seen: set[str] = set()
        with tqdm(unit="bars", desc=f"polygon {ticker}", disable=not show_progress) as progress:
            while url:
                payload = await self._get(url, params)
                page = payload.get("results") or []
                results.extend(page)
                progress.update(len(page))
                next_url = payload.get("next_url")
                if not next_url:
                    break
                if next_url in seen:
                    raise PolygonError(f"Polygon pagination loops back to {next_url}")
                seen.add(next_url)
                # next_url carries every parameter except the key; keep its query, add the key.
                url = str(httpx.URL(next_url).copy_merge_params({"apiKey": self.settings.api_key}))
                params = None
        return _to_raw_frame(results, symbol.upper(), timeframe)


def _to_raw_frame(results: list[dict[str, Any]], symbol: str, timeframe: Timeframe) -> pd.DataFrame:
    def column(key: str) -> npt.NDArray[np.float64]:
        return np.array([r.get(key, np.nan) for r in results], dtype=np.float64)

    millis = column("t")
    frame = pd.DataFrame(
        {
            "line": np.arange(1, len(results) + 1),
            "raw_ts": [str(r.get("t")) for r in results],
            "ts": pd.to_datetime(millis, unit="ms", utc=True),
            "open": column("o"),
            "high": column("h"),
            "low": column("l"),
            "close": column("c"),
            "volume": column("v"),
        }
    )
    frame["symbol"] = symbol
    frame["timeframe"] = timeframe.value
    return frame
