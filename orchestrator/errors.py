"""One error model for the API, the commands and the job worker.

Every expected failure is an `EngineError`: its message says what was wrong and how to fix it,
and its class says what it means, hence the HTTP status the API answers (`describe`) and the exit
code a command ends with (`report`). Anything else is a bug: the API answers 500 without details
and logs the traceback; a command shows the traceback. A `ValueError` is therefore never "bad
input" by default: code that refuses input raises one of the classes below.

This module imports nothing of the engine, so every layer (features, market data, jobs, the API,
the CLI, training) can raise and map these errors without importing another layer.
"""

from __future__ import annotations

import logging
import sys
from typing import ClassVar

import msgspec

log = logging.getLogger("orchestrator.errors")

# Exit codes of every command (`python -m orchestrator`, `ml-engine`, `python -m export`).
EXIT_OK = 0
EXIT_REJECTED = 1  # ran, but refused something: rejected rows, a bad download, a conflict, a bug
EXIT_USAGE = 2  # bad input: an argument, a file, an unknown symbol, too little history
EXIT_UNAVAILABLE = 3  # a service (database, Redis, Triton, PyPI, Polygon) cannot answer
EXIT_INTERRUPTED = 130  # Ctrl-C


class ErrorBody(msgspec.Struct, omit_defaults=True):
    """What the API answers for every failure; `field` names the parameter to change."""

    error: str
    message: str
    field: str | None = None


class EngineError(Exception):
    """An expected failure (the API answers `status` with `title` as the body's `error`; a command
    exits with `exit_code`). Subclasses set the three on the class and may name a `field`."""

    status: ClassVar[int] = 500
    exit_code: ClassVar[int] = EXIT_REJECTED
    title: ClassVar[str] = "Internal server error"
    field: str | None = None

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        if field is not None:
            self.field = field

    def body(self) -> ErrorBody:
        return ErrorBody(self.title, str(self), self.field)


class BadParameterError(EngineError):
    """A parameter, argument or input file that cannot be used as given (the API answers 400)."""

    status = 400
    exit_code = EXIT_USAGE
    title = "Bad request"


class UnauthorizedError(EngineError):
    """No credentials where the action needs them (401)."""

    status = 401
    exit_code = EXIT_USAGE
    title = "Unauthorized"


class ForbiddenError(EngineError):
    """Valid credentials without the scope the action needs (403)."""

    status = 403
    exit_code = EXIT_USAGE
    title = "Forbidden"


class NotFoundError(EngineError):
    """An unknown symbol, job, or no bars or models for the asked timeframe (404)."""

    status = 404
    exit_code = EXIT_USAGE
    title = "Not found"


class NotEnoughDataError(EngineError):
    """Too little history for what was asked: features, a backtest range, training (422)."""

    status = 422
    exit_code = EXIT_USAGE
    title = "Not enough history"


class ConflictError(EngineError):
    """The request contradicts the current state, e.g. cancelling a finished job (409)."""

    status = 409
    exit_code = EXIT_REJECTED
    title = "Conflict"


class InvalidDataError(EngineError):
    """Data read from a file or a download is not what it must be; nothing of it is used (422)."""

    status = 422
    exit_code = EXIT_REJECTED
    title = "Invalid data"


class SettingsError(EngineError):
    """An environment setting cannot be read; the message names it and its form (500: the
    server is misconfigured; exit 2 for a command)."""

    status = 500
    exit_code = EXIT_USAGE
    title = "Server misconfigured"


class ServiceUnavailableError(EngineError):
    """A service the engine depends on cannot answer now; retrying later can succeed (503)."""

    status = 503
    exit_code = EXIT_UNAVAILABLE
    title = "Service unavailable"


class ModelsUnavailableError(ServiceUnavailableError):
    """Triton or its models cannot answer: down, incompatible, or being reloaded (503, which the
    gateway maps from the body's "ML service unavailable")."""

    title = "ML service unavailable"


UNEXPECTED = ErrorBody("Internal server error", "unexpected error; see the orchestrator log")


def describe(exc: BaseException) -> tuple[int, ErrorBody]:
    """The status and body for any failure: an EngineError's own, anything else a 500 without
    details (logged with its traceback). The HTTP handlers, the WebSocket stream and failed jobs
    all answer through this one lookup."""
    if isinstance(exc, EngineError):
        return exc.status, exc.body()
    log.error("unexpected error", exc_info=exc)
    return 500, UNEXPECTED


def report(exc: EngineError) -> int:
    """Prints the one line a command shows for an expected failure; returns its exit code."""
    print(f"error: {exc}", file=sys.stderr)
    return exc.exit_code
