"""Dates as people type them: plain dates and RFC 3339 alike, one rule for every endpoint and
command, and the pattern the OpenAPI document declares is exactly what parses."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.dates import MOMENT_MAX_LENGTH, MOMENT_PATTERN, parse_day, parse_moment
from orchestrator.errors import BadParameterError


@pytest.mark.parametrize(
    ("raw", "end", "moment"),
    [
        ("2025-06-01", False, datetime(2025, 6, 1, tzinfo=UTC)),
        ("2025-06-01", True, datetime(2025, 6, 2, tzinfo=UTC)),  # that whole day included
        ("2025-06-01T14:30:00Z", False, datetime(2025, 6, 1, 14, 30, tzinfo=UTC)),
        ("2025-06-01t14:30:00z", True, datetime(2025, 6, 1, 14, 30, tzinfo=UTC)),
        ("2025-06-01 14:30", False, datetime(2025, 6, 1, 14, 30, tzinfo=UTC)),  # naive: UTC
        ("2025-06-01T16:30:00+02:00", False, datetime(2025, 6, 1, 14, 30, tzinfo=UTC)),
        ("2025-06-01T09:30-0500", False, datetime(2025, 6, 1, 14, 30, tzinfo=UTC)),
        ("2024-02-29T00:00:00.123456789Z", False, datetime(2024, 2, 29, 0, 0, 0, 123456, UTC)),
    ],
)
def test_plain_dates_and_rfc_3339_alike(raw: str, end: bool, moment: datetime) -> None:
    assert parse_moment("start", raw, end=end) == moment


@pytest.mark.parametrize(
    "raw",
    ["2100-01-01", "1969-12-31", "2025-02-30", "2023-02-29", "2025-06-01T24:00:00Z",
     "10/06/2025", "2025-06-01T14:30:00+24:00", "", "2025-6-1", " 2025-06-01"],
)  # fmt: skip
def test_anything_else_is_refused_in_plain_words(raw: str) -> None:
    with pytest.raises(BadParameterError) as refused:
        parse_moment("end_date", raw, end=True)
    assert refused.value.field == "end_date"
    assert str(refused.value) == (
        "end_date must be a date between 1970-01-01 and 2099-12-31: YYYY-MM-DD (that whole day "
        "included) or an RFC 3339 date-time such as 2025-06-01T14:30:00Z (seconds optional; "
        f"without an offset: UTC), got {raw!r}"
    )


@settings(max_examples=300, deadline=None)
@given(st.from_regex(MOMENT_PATTERN, fullmatch=True))
def test_every_value_the_document_allows_parses(raw: str) -> None:
    """The contract fuzzer sends values valid by the declared pattern and expects them taken."""
    assert len(raw) <= MOMENT_MAX_LENGTH
    moment = parse_moment("start", raw)
    assert moment.tzinfo is UTC


def test_a_day_for_commands() -> None:
    assert parse_day("--from", "2024-01-31") == date(2024, 1, 31)
    with pytest.raises(BadParameterError, match=re.escape("--to must be a date between")):
        parse_day("--to", "2024-01-31T00:00:00Z")
