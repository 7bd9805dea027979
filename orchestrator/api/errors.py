"""HTTP answers for failures, keyed by exception class: an EngineError answers its own status and
body (orchestrator/errors.py), Litestar's validation errors are rewritten in plain words
(api/validation.py), Litestar's other HTTP errors keep their status, and anything else is a 500
without details. Every answer is {"error", "message", "field"} JSON; never a stack trace.

The gateway maps 503 {"error": "ML service unavailable"} to its own 503.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import ResponseSpec
from litestar.types import ExceptionHandlersMap

from orchestrator.api.validation import BAD_REQUEST, plain_detail, plain_validation
from orchestrator.errors import EngineError, ErrorBody, describe

_MEANINGS = {
    400: "Bad request: `field` names the parameter and `message` says how to fix it",
    401: "Missing or invalid credentials (X-API-Key, or Authorization: Bearer <key or JWT>)",
    403: "Valid credentials without the admin scope (ADMIN_API_KEY, or a JWT whose scope "
    "includes admin)",
    404: "Unknown symbol, or no bars or models for the asked timeframe (`field` says which)",
    409: "Conflict: the job already finished, or a model version cannot move to that status "
    "(the message says why)",
    422: "Not enough history for the models (the message says how many bars are needed)",
    429: "Rate limit exceeded",
    503: 'Triton ("ML service unavailable", also while models are reloaded: retry), the '
    "database or the job queue is unavailable",
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


def _engine_error(_: Request[Any, Any, Any], exc: EngineError) -> Response[ErrorBody]:
    status, body = describe(exc)
    return Response(body, status_code=status)


def _invalid_request(
    request: Request[Any, Any, Any], exc: ValidationException
) -> Response[ErrorBody]:
    return Response(plain_validation(request, exc), status_code=exc.status_code)


def _http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[ErrorBody]:
    # Litestar's own headers stay, e.g. the `Allow` of a 405 (RFC 9110 requires it).
    title = BAD_REQUEST if exc.status_code == 400 else "Request failed"
    return Response(
        ErrorBody(title, plain_detail(exc.detail)), status_code=exc.status_code, headers=exc.headers
    )


def _unexpected(_: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    status, body = describe(exc)  # a bug: logged with its traceback, answered without it
    return Response(body, status_code=status)


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    EngineError: _engine_error,
    ValidationException: _invalid_request,
    HTTPException: _http_error,
    Exception: _unexpected,
}
