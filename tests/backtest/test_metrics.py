"""Trade metrics on small R lists worked out by hand."""

from __future__ import annotations

import math

import msgspec
import numpy as np
import pytest

from orchestrator.backtest.engine import ExitReason, Trades
from orchestrator.backtest.metrics import compute_metrics, equity_curve, trade_stats

R = [2.0, -1.0, -1.0, 1.5, -1.0, 3.0]


def make_trades(
    r: list[float],
    entry: list[int],
    exit_: list[int],
    n_bars: int,
    side: list[int] | None = None,
    code: list[int] | None = None,
) -> Trades:
    n = len(r)
    entry_idx = np.array(entry, dtype=np.int64)
    exit_idx = np.array(exit_, dtype=np.int64)
    values = np.array(r, dtype=np.float64)
    return Trades(
        n_bars=n_bars,
        signal_idx=entry_idx - 1,
        entry_idx=entry_idx,
        exit_idx=exit_idx,
        side=np.array(side or [1] * n, dtype=np.int8),
        fill=np.full(n, 100.0),
        exit_price=100.0 + values,
        stop=np.full(n, 99.0),
        target=np.full(n, 102.0),
        risk=np.ones(n),
        r=values,
        reason=np.where(values > 0, ExitReason.TAKE_PROFIT, ExitReason.STOP_LOSS).astype(np.int8),
        gap=np.zeros(n, dtype=np.bool_),
        horizon_code=np.array(code or [0] * n, dtype=np.int64),
        bars_held=exit_idx - entry_idx + 1,
    )


def test_trade_stats_by_hand() -> None:
    stats = trade_stats(R)
    # total 2 - 1 - 1 + 1.5 - 1 + 3 = 3.5; mean 3.5 / 6 = 7/12.
    assert (stats.n_trades, stats.n_wins, stats.n_losses) == (6, 3, 3)
    assert stats.total_r == pytest.approx(3.5, abs=1e-12)
    assert stats.expectancy_r == pytest.approx(7 / 12, abs=1e-12)
    # Deviations from 7/12, in twelfths: 17, -19, -19, 11, -19, 29; squares sum 2334/144;
    # sample variance (2334/144)/5 = 389/120, std = 1.8004629.
    std = math.sqrt(389 / 120)
    assert stats.std_r == pytest.approx(std, abs=1e-12)
    # SQN = sqrt(6) * (7/12) / 1.8004629 = 0.7936120.
    assert stats.sqn == pytest.approx(0.7936120282694068, abs=1e-12)
    # 95% CI: 7/12 ± 1.96 * 1.8004629 / sqrt(6) = 0.5833 ± 1.4407 -> (-0.8573, 2.0240).
    assert stats.expectancy_ci95_low == pytest.approx(-0.8573370353183966, abs=1e-12)
    assert stats.expectancy_ci95_high == pytest.approx(2.0240037019850634, abs=1e-12)
    assert stats.win_rate == pytest.approx(0.5)
    # Gross win 2 + 1.5 + 3 = 6.5, gross loss 3 -> PF 6.5 / 3; avg win 6.5 / 3, avg loss -1.
    assert stats.profit_factor == pytest.approx(6.5 / 3, abs=1e-12)
    assert stats.avg_win_r == pytest.approx(6.5 / 3, abs=1e-12)
    assert stats.avg_loss_r == pytest.approx(-1.0, abs=1e-12)
    # Cumulative R from 0: 0, 2, 1, 0, 1.5, 0.5, 3.5 -> peak 2, trough 0: drawdown 2.
    assert stats.max_drawdown_r == pytest.approx(2.0, abs=1e-12)
    # Losses at positions 1-2 (run of 2) and 4 (run of 1).
    assert stats.longest_losing_streak == 2


def test_drawdown_counts_from_zero_before_the_first_trade() -> None:
    # Cumulative -1, -3, -2: the peak is the starting 0, so the drawdown is 3.
    assert trade_stats([-1.0, -2.0, 1.0]).max_drawdown_r == pytest.approx(3.0)


def test_no_trades() -> None:
    stats = trade_stats([])
    assert (stats.n_trades, stats.total_r, stats.max_drawdown_r) == (0, 0.0, 0.0)
    assert stats.longest_losing_streak == 0
    undefined = (
        stats.expectancy_r,
        stats.std_r,
        stats.sqn,
        stats.expectancy_ci95_low,
        stats.expectancy_ci95_high,
        stats.win_rate,
        stats.profit_factor,
        stats.avg_win_r,
        stats.avg_loss_r,
    )
    assert undefined == (None,) * 9


def test_one_winning_trade() -> None:
    stats = trade_stats([1.5])
    assert (stats.expectancy_r, stats.win_rate, stats.avg_win_r) == (1.5, 1.0, 1.5)
    # No spread with one trade; no losses, so the profit factor would be infinite.
    assert (stats.std_r, stats.sqn, stats.expectancy_ci95_low) == (None, None, None)
    assert (stats.profit_factor, stats.avg_loss_r) == (None, None)
    assert (stats.max_drawdown_r, stats.longest_losing_streak) == (0.0, 0)


def test_one_losing_trade() -> None:
    stats = trade_stats([-1.0])
    assert (stats.profit_factor, stats.win_rate, stats.avg_loss_r) == (0.0, 0.0, -1.0)
    assert (stats.max_drawdown_r, stats.longest_losing_streak) == (1.0, 1)


def test_breakdowns_exposure_and_equity() -> None:
    # Six trades on 20 bars, entered on odd bars and exited the bar after: 12 bars exposed.
    trades = make_trades(
        R,
        entry=[1, 3, 5, 7, 9, 11],
        exit_=[2, 4, 6, 8, 10, 12],
        n_bars=20,
        side=[1, -1, 1, 1, -1, -1],
        code=[0, 0, 1, 1, 0, 1],
    )
    metrics = compute_metrics(trades, {0: "scalping", 1: "intraday"})
    assert metrics.overall == trade_stats(R)
    assert metrics.exposure == pytest.approx(12 / 20)
    assert metrics.exit_reasons == {
        "take_profit": 3,
        "stop_loss": 3,
        "time_stop": 0,
        "end_of_data": 0,
    }
    # scalping [2, -1, -1]: total 0, PF 2/2, cumulative 2, 1, 0 -> drawdown 2, streak 2.
    scalping = metrics.by_horizon["scalping"]
    assert (scalping.total_r, scalping.profit_factor) == (0.0, 1.0)
    assert (scalping.max_drawdown_r, scalping.longest_losing_streak) == (2.0, 2)
    assert scalping.sqn == 0.0
    # intraday [-1, 1.5, 3]: total 3.5, mean 7/6, PF 4.5, drawdown 1.
    intraday = metrics.by_horizon["intraday"]
    assert intraday.total_r == pytest.approx(3.5)
    assert intraday.expectancy_r == pytest.approx(7 / 6)
    assert (intraday.profit_factor, intraday.max_drawdown_r) == (4.5, 1.0)
    # long [2, -1, 1.5]: total 2.5, win rate 2/3; short [-1, -1, 3]: total 1, PF 1.5, streak 2.
    long, short = metrics.by_direction["long"], metrics.by_direction["short"]
    assert long.total_r == 2.5
    assert long.win_rate == pytest.approx(2 / 3)
    assert (short.total_r, short.profit_factor, short.longest_losing_streak) == (1.0, 1.5, 2)

    equity, drawdown = equity_curve(trades)
    # R lands on the exit bars 2, 4, 6, 8, 10, 12.
    expected = [0, 0, 2, 2, 1, 1, 0, 0, 1.5, 1.5, 0.5, 0.5, 3.5, *[3.5] * 7]
    assert equity.tolist() == pytest.approx(expected)
    expected_dd = [0, 0, 0, 0, -1, -1, -2, -2, -0.5, -0.5, -1.5, -1.5, *[0] * 8]
    assert drawdown.tolist() == pytest.approx(expected_dd)

    # An API can return the result as it is.
    decoded = msgspec.json.decode(msgspec.json.encode(metrics))
    assert decoded["by_direction"]["short"]["profit_factor"] == 1.5


def test_overlapping_trades_are_ordered_by_exit() -> None:
    # Signal order A (-1, exits bar 5), B (+2, exits bar 3), C (-1, exits bar 6).
    # By exit: +2, -1, -1 -> cumulative 2, 1, 0: drawdown 2 and a losing streak of 2 (in signal
    # order it would be 1 and 1). Open bars: A 1..5, B 2..3, C 3..6 -> 1..6 = 6 of 10.
    trades = make_trades([-1.0, 2.0, -1.0], entry=[1, 2, 3], exit_=[5, 3, 6], n_bars=10)
    metrics = compute_metrics(trades)
    assert (metrics.overall.max_drawdown_r, metrics.overall.longest_losing_streak) == (2.0, 2)
    assert metrics.exposure == pytest.approx(0.6)
    assert list(metrics.by_horizon) == ["0"]
    equity, drawdown = equity_curve(trades)
    assert equity.tolist() == [0, 0, 0, 2, 2, 1, 0, 0, 0, 0]
    assert drawdown.tolist() == [0, 0, 0, 0, 0, -1, -2, -2, -2, -2]


def test_metrics_of_no_trades() -> None:
    trades = make_trades([], entry=[], exit_=[], n_bars=5)
    metrics = compute_metrics(trades)
    assert (metrics.overall.n_trades, metrics.exposure) == (0, 0.0)
    assert (metrics.by_horizon, metrics.by_direction) == ({}, {})
    equity, drawdown = equity_curve(trades)
    assert equity.tolist() == [0.0] * 5
    assert drawdown.tolist() == [0.0] * 5
