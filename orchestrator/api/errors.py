"""Every expected failure becomes {"error", "message"} JSON with the right status; no stack traces.

The gateway maps 503 {"error": "ML service unavailable"} to its own 503.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from orchestrator.features.online import NotEnoughHistoryError
from orchestrator.features.spec import FeatureSpecMismatchError
from orchestrator.inference.client import ModelServiceUnavailableError
from orchestrator.marketdata.db import DatabaseUnavailableError
from orchestrator.marketdata.store import UnknownSymbolError, UnsupportedTimeframeError
from orchestrator.marketdata.timeframes import InvalidSymbolError, InvalidTimeframeError

log = logging.getLogger("orchestrator.api")


class ErrorBody(msgspec.Struct, omit_defaults=True):
    error: str
    message: str
    field: str | None = None


class BadParameterError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


def _body(status: int, error: str, message: str, field: str | None = None) -> Response[ErrorBody]:
    return Response(ErrorBody(error, message, field), status_code=status)


def handle(_: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    if isinstance(exc, ModelServiceUnavailableError | FeatureSpecMismatchError):
        return _body(503, "ML service unavailable", str(exc))
    if isinstance(exc, DatabaseUnavailableError):
        return _body(503, "Database unavailable", str(exc))
    if isinstance(exc, UnknownSymbolError):
        return _body(404, "Unknown symbol", str(exc), "symbol")
    if isinstance(exc, InvalidSymbolError):
        return _body(400, "Bad request", str(exc), "symbol")
    if isinstance(exc, InvalidTimeframeError | UnsupportedTimeframeError):
        return _body(400, "Bad request", str(exc), "timeframe")
    if isinstance(exc, BadParameterError):
        return _body(400, "Bad request", str(exc), exc.field)
    if isinstance(exc, NotEnoughHistoryError):
        return _body(422, "Not enough history", f"{exc}; ingest more bars for this symbol")
    if isinstance(exc, ValidationException):
        extra = exc.extra if isinstance(exc.extra, list) else []
        field = next(
            (str(e.get("key")) for e in extra if isinstance(e, dict) and e.get("key")), None
        )
        message = "; ".join(str(e.get("message", "")) for e in extra if isinstance(e, dict))
        return _body(400, "Bad request", message or exc.detail, field)
    if isinstance(exc, HTTPException):
        return _body(exc.status_code, "Request failed", exc.detail)
    log.exception("unhandled error", exc_info=exc)
    return _body(500, "Internal server error", "unexpected error; see the orchestrator log")
