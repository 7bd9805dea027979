"""Which version answers a bar: the promoted one from its first bar on, the replaced champion
before it (orchestrator/inference/client.py: Serving)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from orchestrator.inference.client import Serving

FIRST = datetime(2026, 12, 6, 22, 35, tzinfo=UTC)


def test_bars_before_the_named_bar_stay_with_the_replaced_version() -> None:
    serving = Serving("9", previous="8", first_bar=FIRST)
    assert serving.for_bar(FIRST - timedelta(minutes=5)) == "8"
    assert serving.for_bar(FIRST) == "9"
    assert serving.for_bar(FIRST + timedelta(days=1)) == "9"


def test_without_a_named_bar_one_version_answers_every_bar() -> None:
    assert Serving("9").for_bar(FIRST - timedelta(days=365)) == "9"
    assert Serving("9", previous="8").for_bar(FIRST - timedelta(days=365)) == "9"
