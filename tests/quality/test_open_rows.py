"""Open predictions folded bar by bar give what scoring their horizon's bars at once gives."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.quality.open_rows import (
    ATR,
    CLOSE,
    HIGHEST,
    LONG_TRADE,
    LOST,
    LOWEST,
    SHORT_TRADE,
    TRADE_COLUMNS,
    WON,
    Horizon,
    OpenRows,
    ReadBars,
    fold_blocks,
)

STEP_S = 300


def _horizon(bars: int, is_label: bool = True) -> Horizon:
    return Horizon("7", 1, "intraday", bars, 1, is_label, 1.5, 1.0, True, True)


def _won(d: float, close: float, atr: float, high: np.ndarray, low: np.ndarray) -> float:
    """The batch definition: TP strictly before SL over the horizon's bars (a bar touching both
    is a stop)."""
    take, stop = close + d * 1.5 * atr, close - d * 1.0 * atr
    stopped = low <= stop if d > 0 else high >= stop
    profited = high >= take if d > 0 else low <= take
    first_stop = int(np.argmax(stopped)) if stopped.any() else len(high)
    first_take = int(np.argmax(profited)) if profited.any() else len(high)
    return WON if first_take < first_stop else LOST


@pytest.mark.parametrize("seed", range(5))
def test_bars_folded_as_they_arrive_equal_the_horizon_scored_at_once(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_bars, bars = 400, 24
    times = np.arange(n_bars, dtype=np.int64) * STEP_S
    times[rng.random(n_bars) < 0.1] = -1  # gaps: bars that were never stored
    times = times[times >= 0]
    close = 100 + np.cumsum(rng.normal(0, 0.3, len(times)))
    highs = close + rng.exponential(0.3, len(times))
    lows = close - rng.exponential(0.3, len(times))
    block = OpenRows(_horizon(bars), STEP_S, capacity=2)
    expected: dict[int, tuple[float, float, float, float]] = {}
    resolved: dict[int, np.ndarray] = {}
    i = 0
    while i < len(times):
        # a prediction of bar i (sometimes one of an older bar, recorded late)
        at = i if rng.random() > 0.1 or i < 5 else i - int(rng.integers(1, 5))
        if at not in expected and at + bars < len(times):
            row = np.full(TRADE_COLUMNS, np.nan)
            row[CLOSE], row[ATR] = close[at], 0.5
            block.add(int(times[at]), row)
            window = slice(at + 1, at + 1 + bars)
            h, low = highs[window], lows[window]
            expected[at] = (
                h.max(),
                low.min(),
                _won(1.0, close[at], 0.5, h, low),
                _won(-1.0, close[at], 0.5, h, low),
            )
        # the next read covers the bars after the oldest any row has seen, in chunks of 1-6
        i += int(rng.integers(1, 7))
        after = block.oldest_seen()
        if after is None:
            continue
        new = (times > after) & (times <= times[min(i, len(times) - 1)])
        ended = block.fold(times[new], highs[new], lows[new], after)
        if ended is not None:
            for epoch, values in zip(ended.epochs, ended.values, strict=True):
                resolved[int(np.searchsorted(times, epoch))] = values
    assert set(resolved) == set(expected)
    for at, (high, low, long_trade, short_trade) in expected.items():
        values = resolved[at]
        assert values[HIGHEST] == high
        assert values[LOWEST] == low
        assert values[LONG_TRADE] == long_trade
        assert values[SHORT_TRADE] == short_trade


def test_a_row_of_an_older_bar_waits_for_a_read_that_covers_it() -> None:
    block = OpenRows(_horizon(2, is_label=False), STEP_S)
    block.add(10 * STEP_S, np.full(TRADE_COLUMNS, 1.0))
    times = np.array([11, 12], np.int64) * STEP_S
    late = np.full(TRADE_COLUMNS, 1.0)
    block.add(5 * STEP_S, late)  # recorded late: bars 6-10 were read before
    ended = block.fold(times, np.array([3.0, 4.0]), np.array([0.5, 0.25]), after=10 * STEP_S)
    assert ended is not None
    assert ended.epochs.tolist() == [10 * STEP_S]
    assert block.n == 1
    assert block.oldest_seen() == 5 * STEP_S
    older = np.array([6, 7], np.int64) * STEP_S
    ended = block.fold(older, np.array([2.0, 9.0]), np.array([0.9, 0.8]), after=5 * STEP_S)
    assert ended is not None
    assert ended.values[:, HIGHEST].tolist() == [9.0]
    assert block.n == 0


def test_blocks_grow_and_keep_their_oldest_rows_first() -> None:
    block = OpenRows(_horizon(1000, is_label=False), STEP_S, capacity=1)
    for k in range(50):
        block.add(k * STEP_S, np.full(TRADE_COLUMNS, float(k)))
    assert block.n == 50
    assert block.epochs[:3].tolist() == [0, STEP_S, 2 * STEP_S]
    assert block.due_at() == 1000 * STEP_S
    assert block.holds(49 * STEP_S)
    assert not block.holds(50 * STEP_S)


def test_blocks_folded_together_end_as_each_folded_alone() -> None:
    """fold_blocks over many series' blocks (different bars read per series, some none, rows
    that wait for an older read) leaves each block as its own fold does, bounds included, and
    hands over the same ended rows."""
    rng = np.random.default_rng(7)
    horizon = _horizon(5)
    alone, together, ended_alone, reads = [], [], [], []
    for s in range(40):
        a, b = OpenRows(horizon, STEP_S), OpenRows(horizon, STEP_S)
        for k in sorted(rng.choice(30, size=int(rng.integers(0, 6)), replace=False)):
            row = np.full(TRADE_COLUMNS, np.nan)
            row[CLOSE], row[ATR] = 100.0 + s, 0.5
            a.add(int(k) * STEP_S, row)
            b.add(int(k) * STEP_S, row)
        # most read from the oldest row's bar; every fifth from bar 10 (older rows wait)
        after = a.oldest_seen() if a.n and s % 5 else 10 * STEP_S
        assert after is not None
        n_bars = int(rng.integers(0, 9))
        times = after + STEP_S * np.arange(1, n_bars + 1, dtype=np.int64)
        highs = 100.0 + s + rng.exponential(0.6, n_bars)
        lows = 100.0 + s - rng.exponential(0.6, n_bars)
        ended_alone.append(a.fold(times, highs, lows, after) if n_bars else None)
        alone.append(a)
        together.append(b)
        reads.append((times, highs, lows, after))
    bars = ReadBars.padded([(t, h, low) for t, h, low, _ in reads])
    afters = np.array([after for *_, after in reads], np.int64)
    owners = np.arange(len(together), dtype=np.intp)
    ended_together = fold_blocks(together, owners, bars, afters)
    assert sum(r is not None for r in ended_together) >= 5
    for a_ended, b_ended in zip(ended_alone, ended_together, strict=True):
        assert (a_ended is None) == (b_ended is None)
        if a_ended is not None and b_ended is not None:
            assert np.array_equal(a_ended.epochs, b_ended.epochs)
            assert np.array_equal(a_ended.values, b_ended.values, equal_nan=True)
    for a, b in zip(alone, together, strict=True):
        n = a.n
        assert b.n == n
        assert np.array_equal(a.values[:n], b.values[:n], equal_nan=True)
        assert np.array_equal(a.seen[:n], b.seen[:n])
        assert np.array_equal(a.counted[:n], b.counted[:n])
        assert (a.oldest_seen(), a.due_at()) == (b.oldest_seen(), b.due_at())
        if n:  # the kept bounds are what the rows say
            left = horizon.bars - b.counted[:n]
            assert b.due_at() == int((b.seen[:n] + left * STEP_S).min())
            assert b.oldest_seen() == int(b.seen[:n].min())
