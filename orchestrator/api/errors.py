"""Every expected failure becomes {"error", "message"} JSON with the right status; no stack traces.

The gateway maps 503 {"error": "ML service unavailable"} to its own 503.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import ResponseSpec

from orchestrator.backtest.request import (
    BacktestRequestError,
    EmptyRangeError,
    InsufficientHistoryError,
    UnknownBacktestSymbolError,
)
from orchestrator.features.online import NotEnoughHistoryError
from orchestrator.features.spec import FeatureSpecMismatchError
from orchestrator.inference.client import ModelServiceUnavailableError
from orchestrator.inference.service import UnservedTimeframeError
from orchestrator.jobs.errors import JobQueueUnavailableError, RunFinishedError
from orchestrator.marketdata.db import DatabaseUnavailableError
from orchestrator.marketdata.store import UnknownSymbolError, UnsupportedTimeframeError
from orchestrator.marketdata.timeframes import InvalidSymbolError, InvalidTimeframeError

log = logging.getLogger("orchestrator.api")


class ErrorBody(msgspec.Struct, omit_defaults=True):
    error: str
    message: str
    field: str | None = None


_MEANINGS = {
    400: "Bad request: `field` names the parameter and `message` says how to fix it",
    401: "Missing or invalid credentials (X-API-Key, or Authorization: Bearer <key or JWT>)",
    404: "Unknown symbol, or no bars or models for the asked timeframe (`field` says which)",
    409: "Conflict: the job already finished (the message says with which status)",
    422: "Not enough history for the models (the message says how many bars are needed)",
    429: "Rate limit exceeded",
    503: 'Triton ("ML service unavailable") or the database is unavailable',
}


def error_responses(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the error statuses a route can answer, so generated clients know them."""
    return {
        status: ResponseSpec(
            data_container=ErrorBody, generate_examples=False, description=_MEANINGS[status]
        )
        for status in statuses
    }


PREDICTION_ERRORS = error_responses(400, 401, 404, 422, 429, 503)
MARKET_ERRORS = error_responses(400, 401, 404, 429, 503)


class NotFoundError(LookupError):
    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


class BadParameterError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


def describe(exc: Exception) -> tuple[int, ErrorBody]:
    """Status and body for an exception; the WebSocket stream reports failures the same way."""
    if isinstance(exc, ModelServiceUnavailableError | FeatureSpecMismatchError):
        return 503, ErrorBody("ML service unavailable", str(exc))
    if isinstance(exc, DatabaseUnavailableError):
        return 503, ErrorBody("Database unavailable", str(exc))
    if isinstance(exc, JobQueueUnavailableError):
        return 503, ErrorBody("Job queue unavailable", str(exc))
    if isinstance(exc, RunFinishedError):
        return 409, ErrorBody("Conflict", str(exc), "job_id")
    if isinstance(exc, UnknownSymbolError):
        return 404, ErrorBody("Unknown symbol", str(exc), "symbol")
    if isinstance(exc, InvalidSymbolError):
        return 400, ErrorBody("Bad request", str(exc), "symbol")
    if isinstance(exc, InvalidTimeframeError):
        return 400, ErrorBody("Bad request", str(exc), "timeframe")
    if isinstance(exc, UnsupportedTimeframeError | UnservedTimeframeError):
        # A valid timeframe that this symbol's bars or the served models cannot answer.
        return 404, ErrorBody("Not found", str(exc), "timeframe")
    if isinstance(exc, BadParameterError):
        return 400, ErrorBody("Bad request", str(exc), exc.field)
    if isinstance(exc, NotFoundError):
        return 404, ErrorBody("Not found", str(exc), exc.field)
    if isinstance(exc, UnknownBacktestSymbolError):
        return 404, ErrorBody("Unknown symbol", str(exc), "symbol")
    if isinstance(exc, EmptyRangeError | InsufficientHistoryError):
        return 422, ErrorBody("Cannot backtest", str(exc), exc.field)
    if isinstance(exc, BacktestRequestError):
        return 400, ErrorBody("Bad request", str(exc), exc.field)
    if isinstance(exc, NotEnoughHistoryError):
        return 422, ErrorBody("Not enough history", f"{exc}; ingest more bars for this symbol")
    if isinstance(exc, ValidationException):
        extra = exc.extra if isinstance(exc.extra, list) else []
        field = next(
            (str(e.get("key")) for e in extra if isinstance(e, dict) and e.get("key")), None
        )
        message = "; ".join(str(e.get("message", "")) for e in extra if isinstance(e, dict))
        return 400, ErrorBody("Bad request", message or exc.detail, field)
    if isinstance(exc, HTTPException):
        return exc.status_code, ErrorBody("Request failed", exc.detail)
    log.exception("unhandled error", exc_info=exc)
    return 500, ErrorBody("Internal server error", "unexpected error; see the orchestrator log")


def handle(_: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    status, body = describe(exc)
    # Litestar's own headers stay, e.g. the `Allow` of a 405 (RFC 9110 requires it).
    headers = exc.headers if isinstance(exc, HTTPException) else None
    return Response(body, status_code=status, headers=headers)
