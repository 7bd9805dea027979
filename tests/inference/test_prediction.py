"""The bar-close counters say why a key went unanswered: too young, Triton, the database."""

from __future__ import annotations

from asyncmy.errors import OperationalError

from orchestrator.features.online import NotEnoughHistoryError
from orchestrator.inference.client import ModelServiceUnavailableError
from orchestrator.inference.prediction import BarCloseStats


def test_failures_are_counted_by_cause() -> None:
    stats = BarCloseStats()
    for failure in (
        NotEnoughHistoryError(10, 664),
        NotEnoughHistoryError(600, 664),
        ModelServiceUnavailableError("Triton at localhost:8001 is not reachable"),
        OperationalError(2013, "Lost connection to server during query"),
        ConnectionRefusedError(111, "refused"),
        ValueError("bar at 2025-06-02 has a non-finite value"),
    ):
        stats.count_failure(failure)
    assert stats.not_enough_history == 2
    assert stats.errors == 4  # young symbols are not errors
    assert stats.triton_failures == 1
    assert stats.database_failures == 2
