"""The one error model: every failure class of the engine is an EngineError whose class says the
HTTP status and exit code; anything else is a 500 that shows nothing of itself; the commands end
with one line and that exit code."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import orchestrator
from orchestrator.backtest.predictions import ModelChangedError
from orchestrator.errors import (
    EXIT_REJECTED,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    UNEXPECTED,
    BadParameterError,
    ConflictError,
    EngineError,
    ErrorBody,
    ModelsUnavailableError,
    NotEnoughDataError,
    NotFoundError,
    ServiceUnavailableError,
    describe,
    report,
)
from orchestrator.jobs.errors import JobQueueUnavailableError, RunFinishedError, RunNotFoundError
from orchestrator.marketdata.db import DatabaseUnavailableError
from orchestrator.settings import DatabaseSettings
from tests.conftest import cli_env, run_cli

# Exceptions that never leave the module that raises them (control flow, not failures).
INTERNAL = {"orchestrator.jobs.worker.AttemptStoppedError"}


def _engine_exceptions() -> list[type[BaseException]]:
    """Every exception class defined in the orchestrator package."""
    found = []
    for info in pkgutil.walk_packages(orchestrator.__path__, "orchestrator."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        found += [
            cls
            for _, cls in inspect.getmembers(module, inspect.isclass)
            if issubclass(cls, BaseException) and cls.__module__ == info.name
        ]
    return found


def test_every_failure_of_the_engine_is_an_engine_error() -> None:
    classes = _engine_exceptions()
    assert len(classes) > 20  # the walk sees the package
    outside = sorted(
        name
        for cls in classes
        if not issubclass(cls, EngineError)
        and (name := f"{cls.__module__}.{cls.__qualname__}") not in INTERNAL
    )
    assert outside == []


@pytest.mark.parametrize(
    ("error", "status", "exit_code", "title"),
    [
        (BadParameterError("limit must be positive", field="limit"), 400, EXIT_USAGE, None),
        (RunNotFoundError("0123456789abcdef"), 404, EXIT_USAGE, "Not found"),
        (NotEnoughDataError("10 bars, 663 needed"), 422, EXIT_USAGE, "Not enough history"),
        (RunFinishedError("0123456789abcdef", "done"), 409, EXIT_REJECTED, "Conflict"),
        (JobQueueUnavailableError("redis://x", "down"), 503, EXIT_UNAVAILABLE, None),
        (
            DatabaseUnavailableError(DatabaseSettings(), "refused"),
            503,
            EXIT_UNAVAILABLE,
            "Database unavailable",
        ),
        (ModelChangedError("reloaded; run it again"), 503, EXIT_UNAVAILABLE, None),
    ],
)
def test_the_class_says_the_status_and_the_exit_code(
    error: EngineError, status: int, exit_code: int, title: str | None
) -> None:
    answered, body = describe(error)
    assert (answered, error.exit_code) == (status, exit_code)
    assert body.message == str(error)
    if title is not None:
        assert body.error == title


def test_models_changing_under_a_backtest_is_a_retryable_503() -> None:
    """It was a 500; the models are being reloaded, so the answer says retry."""
    assert issubclass(ModelChangedError, ModelsUnavailableError)
    assert issubclass(ModelsUnavailableError, ServiceUnavailableError)
    status, body = describe(ModelChangedError("the ensemble changed; run it again"))
    assert (status, body.error) == (503, "ML service unavailable")


def test_fields_come_from_the_class_or_the_raise() -> None:
    assert RunNotFoundError("0123456789abcdef").body().field == "job_id"
    assert ConflictError("busy").body() == ErrorBody("Conflict", "busy")


@pytest.mark.parametrize("bug", [ValueError("x must be > 0"), KeyError("spec"), TypeError("None")])
def test_anything_else_is_a_500_that_shows_nothing_of_itself(bug: Exception) -> None:
    """ValueError is not "bad input": an unexpected one is a bug."""
    assert describe(bug) == (500, UNEXPECTED)


def test_report_prints_one_line_and_returns_the_exit_code(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert report(NotFoundError("no backtest job 'x'")) == EXIT_USAGE
    assert capsys.readouterr().err == "error: no backtest job 'x'\n"


def test_a_command_ends_with_one_plain_line_and_its_class_exit_code() -> None:
    """The backtest command's table is gone: its bad dates end through the CLI's one lookup."""
    result = run_cli(
        "backtest", "--symbol", "BTCUSD", "--start", "2100-01-01", "--end", "2100-02-01",
        env=cli_env(DatabaseSettings(port=1)),
    )  # fmt: skip
    assert result.returncode == EXIT_USAGE, result.stderr
    assert result.stderr.startswith("error: start must be a date between 1970-01-01 and 2099-12-31")
    assert "Traceback" not in result.stderr
