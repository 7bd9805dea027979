"""Dates and times as people type them, read one way by every endpoint and command.

A plain date (2025-06-01) means 00:00 UTC of that day, or, as the end of a range, the whole day
included (the next day's 00:00). A date-time is RFC 3339 (2025-06-01T14:30:00Z) with the
leniencies people expect: seconds may be left out, a space may stand for the T, and without an
offset the time is UTC. Days run from 1970-01-01 to 2099-12-31.

`MOMENT_PATTERN` is exactly what `parse_moment` accepts, so the OpenAPI document can declare it
and every value valid by the document parses (the contract fuzzer relies on it); a refused value
is answered with `describe_moment`, the words the document uses too.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

from orchestrator.errors import BadParameterError

FIRST_DAY, LAST_DAY = date(1970, 1, 1), date(2099, 12, 31)
# Real calendar days of 1970-2099: 29 February in leap years only.
_DAY = (
    r"(?:(?:19[7-9][0-9]|20[0-9]{2})-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
    r"|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))"
    r"|(?:19(?:7[26]|8[048]|9[26])|20(?:[02468][048]|[13579][26]))-02-29)"
)
_TIME = r"[Tt ](?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\.[0-9]{1,9})?)?"
_OFFSET = r"(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):?[0-5][0-9])"
DAY_PATTERN = f"^{_DAY}$"
MOMENT_PATTERN = f"^{_DAY}(?:{_TIME}{_OFFSET}?)?$"
MOMENT_MAX_LENGTH = 35  # 2025-06-01T14:30:00.123456789+05:30
_MOMENT = re.compile(MOMENT_PATTERN)
_DAY_ONLY = re.compile(DAY_PATTERN)


def epoch_seconds(moment: datetime) -> int:
    """Seconds since the epoch of a time; a naive one is UTC, as the store's are."""
    return int(moment.replace(tzinfo=moment.tzinfo or UTC).timestamp())


def describe_moment(*, end: bool) -> str:
    """What a date parameter accepts, in words that follow "<field> must be"."""
    day = "that whole day included" if end else "from 00:00 UTC"
    return (
        f"a date between {FIRST_DAY} and {LAST_DAY}: YYYY-MM-DD ({day}) or an RFC 3339 "
        "date-time such as 2025-06-01T14:30:00Z (seconds optional; without an offset: UTC)"
    )


def parse_moment(field: str, raw: str, *, end: bool = False) -> datetime:
    """The UTC moment `raw` names; a plain date as an `end` is the next day's 00:00 (that whole
    day included). Anything else is a BadParameterError naming `field` and the rule."""
    if not _MOMENT.fullmatch(raw):
        rule = describe_moment(end=end)
        raise BadParameterError(f"{field} must be {rule}, got {raw!r}", field=field)
    if _DAY_ONLY.fullmatch(raw):
        moment = datetime.combine(date.fromisoformat(raw), datetime.min.time(), UTC)
        return moment + timedelta(days=1) if end else moment
    parsed = datetime.fromisoformat(raw.upper())
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def parse_day(field: str, raw: str) -> date:
    """A plain date (YYYY-MM-DD, 1970-2099), e.g. a command's --from."""
    if not _DAY_ONLY.fullmatch(raw):
        raise BadParameterError(
            f"{field} must be a date between {FIRST_DAY} and {LAST_DAY} as YYYY-MM-DD, got {raw!r}",
            field=field,
        )
    return date.fromisoformat(raw)
