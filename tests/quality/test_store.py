"""Outcomes counted in Redis a batch at a time add up to what counting each once would give."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import numpy as np
import pytest
from redis.asyncio import Redis

from orchestrator.quality.store import SEND_BATCH, SharedTotals
from orchestrator.quality.totals import DRIFT_WINDOW, Outcome, Totals

NAMESPACE = "test-store"
HORIZONS = ["scalping", "intraday"]
RESOLVED_AT = datetime(2026, 1, 5, tzinfo=UTC)


def _outcomes(n: int) -> list[Outcome]:
    """n outcomes over two horizons; the label horizon's confidence bin (part of its field
    names) varies, so the outcomes fall into several batches alike."""
    rng = np.random.default_rng(3)
    out = []
    for k in range(n):
        horizon = HORIZONS[k % 2]
        w = int(rng.integers(1, 4))
        high_in, low_in = int(rng.integers(0, 2)), int(rng.integers(0, 2))
        increments: list[tuple[str, int | float]] = [
            (f"{horizon}:resolved", w),
            (f"{horizon}:sse_served", w * float(rng.exponential(2.0))),
            (f"{horizon}:inside_high", w * high_in),
            (f"{horizon}:inside_low", w * low_in),
        ]
        if horizon == "intraday":
            b = int(rng.integers(5, 8))
            increments += [("trades", w), (f"bin{b}:count", w), (f"bin{b}:confidence", w * 0.6)]
        out.append(
            Outcome(
                timeframe="5m",
                version="7",
                horizon=horizon,
                claim=f"S{k % 37}:5m:{k}:v7:{horizon}",
                resolved_at=RESOLVED_AT,
                level=0.8,
                horizons=HORIZONS,
                increments=increments,
                drift=f"{high_in}{low_in}",
            )
        )
    return out


@pytest.fixture
async def clients(redis_flushed: str) -> AsyncIterator[tuple[Redis, Redis]]:
    first, second = Redis.from_url(redis_flushed), Redis.from_url(redis_flushed)
    yield first, second
    await first.aclose()
    await second.aclose()


async def test_batches_claim_each_outcome_once_and_sum_as_one_by_one(
    clients: tuple[Redis, Redis],
) -> None:
    outcomes = _outcomes(2 * SEND_BATCH + 203)
    one, other = (SharedTotals(c, namespace=NAMESPACE, claim_ttl_s=3600) for c in clients)
    await one.count(outcomes[:800], RESOLVED_AT)
    await other.count(outcomes, RESOLVED_AT)  # the same 800 again, and the rest
    assert (one.counted, one.counted_elsewhere) == (800, 0)
    assert (other.counted, other.counted_elsewhere) == (len(outcomes) - 800, 800)

    expected = Totals(0.8, HORIZONS)
    for outcome in outcomes:
        expected.add(outcome)
    await other.refresh()
    shared = other.totals()[("5m", "7")]
    assert shared.level == 0.8
    assert shared.horizons == HORIZONS
    assert shared.sums.keys() == expected.sums.keys()
    for name, value in expected.sums.items():
        assert shared.sums[name] == pytest.approx(value, rel=1e-12), name
    # The drift list of a horizon whose outcomes share their fields, newest first, as sent.
    scalping = [o.drift for o in outcomes if o.horizon == "scalping"]
    assert list(shared.drift["scalping"]) == scalping[::-1][:DRIFT_WINDOW]
