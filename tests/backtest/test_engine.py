"""The simulator on tiny literal bar series whose trades are worked out by hand in the comments.

Bars are (open, high, low, close); the signal on bar t fills at open[t+1].
"""

from __future__ import annotations

import math

import msgspec
import numpy as np
import numpy.typing as npt
import pytest

from orchestrator.backtest.engine import BacktestConfig, ExitReason, Trades, simulate

TP, SL = ExitReason.TAKE_PROFIT, ExitReason.STOP_LOSS
TIME, END = ExitReason.TIME_STOP, ExitReason.END_OF_DATA

Bar = tuple[float, float, float, float]


def run(
    bars: list[Bar],
    signals: dict[int, int],
    *,
    tp: float | list[float] = 2.0,
    sl: float | list[float] = 1.0,
    horizon: int | list[int] = 5,
    fee_rate: float = 0.0,
    slippage: float = 0.0,
    allow_overlap: bool = False,
) -> Trades:
    ohlc = np.array(bars, dtype=np.float64)
    side = np.zeros(len(bars), dtype=np.int8)
    for t, s in signals.items():
        side[t] = s
    config = BacktestConfig(fee_rate=fee_rate, slippage=slippage, allow_overlap=allow_overlap)
    return simulate(
        ohlc[:, 0],
        ohlc[:, 1],
        ohlc[:, 2],
        ohlc[:, 3],
        side=side,
        tp_dist=np.asarray(tp, dtype=np.float64),
        sl_dist=np.asarray(sl, dtype=np.float64),
        horizon=np.asarray(horizon, dtype=np.int64),
        config=config,
    )


def only(trades: Trades) -> dict[str, float]:
    """The single trade as plain numbers."""
    assert len(trades) == 1
    return {
        name: getattr(trades, name)[0].item()
        for name in (
            "signal_idx",
            "entry_idx",
            "exit_idx",
            "side",
            "fill",
            "exit_price",
            "stop",
            "target",
            "risk",
            "r",
            "reason",
            "gap",
            "bars_held",
        )
    }


def test_long_take_profit() -> None:
    # Long signal at close of bar 0: fill open[1] = 100, stop 99, target 102, 1R = 1.
    # Bar 1 stays inside (99.5..101); bar 2's high 102.5 reaches 102 -> TP at 102: R = +2.
    bars = [
        (100.0, 101.0, 99.0, 100.0),
        (100.0, 101.0, 99.5, 100.5),
        (100.5, 102.5, 100.0, 102.0),
        (102.0, 103.0, 101.0, 102.5),
    ]
    trade = only(run(bars, {0: 1}))
    assert trade == {
        "signal_idx": 0,
        "entry_idx": 1,
        "exit_idx": 2,
        "side": 1,
        "fill": 100.0,
        "exit_price": 102.0,
        "stop": 99.0,
        "target": 102.0,
        "risk": 1.0,
        "r": pytest.approx(2.0, abs=1e-12),
        "reason": TP,
        "gap": False,
        "bars_held": 2,
    }


def test_short_stop_loss() -> None:
    # Short at close of bar 0, tp 1.0, sl 0.5: fill 50, stop 50.5, target 49, 1R = 0.5.
    # Bar 1 (49.75..50.25) touches neither; bar 2's high 50.75 >= 50.5 -> SL at 50.5:
    # R = -(50.5 - 50) / 0.5 = -1.
    bars = [
        (50.0, 51.0, 49.0, 50.0),
        (50.0, 50.25, 49.75, 50.0),
        (50.0, 50.75, 49.5, 50.5),
        (50.5, 51.0, 48.0, 49.0),
    ]
    trade = only(run(bars, {0: -1}, tp=1.0, sl=0.5))
    assert (trade["fill"], trade["stop"], trade["target"]) == (50.0, 50.5, 49.0)
    assert (trade["exit_idx"], trade["exit_price"], trade["reason"]) == (2, 50.5, SL)
    assert trade["r"] == pytest.approx(-1.0, abs=1e-12)


def test_short_take_profit_at_the_level() -> None:
    # Short fill 50, target 49: bar 2's low 48.75 reaches it, high 50.25 < stop 50.5 -> R = +2.
    bars = [
        (50.0, 51.0, 49.0, 50.0),
        (50.0, 50.25, 49.75, 50.0),
        (50.0, 50.25, 48.75, 49.0),
    ]
    trade = only(run(bars, {0: -1}, tp=1.0, sl=0.5))
    assert (trade["exit_idx"], trade["exit_price"], trade["reason"]) == (2, 49.0, TP)
    assert trade["r"] == pytest.approx(2.0, abs=1e-12)


def test_stop_and_target_in_the_same_bar_counts_as_stop() -> None:
    # Long fill 100, stop 99, target 102. Bar 1 (the entry bar) spans 98.5..102.5: both levels
    # inside, path unknown -> pessimistic SL at 99, R = -1, held 1 bar.
    bars = [
        (100.0, 100.5, 99.5, 100.0),
        (100.0, 102.5, 98.5, 101.0),
        (101.0, 101.5, 100.5, 101.0),
    ]
    trade = only(run(bars, {0: 1}))
    assert (trade["exit_idx"], trade["exit_price"], trade["reason"]) == (1, 99.0, SL)
    assert trade["r"] == pytest.approx(-1.0, abs=1e-12)
    assert trade["bars_held"] == 1


def test_gap_through_the_stop_fills_at_the_open() -> None:
    # Long fill 100, stop 99. Bar 2 opens at 98, already below the stop -> exit at 98 (gap):
    # R = (98 - 100) / 1 = -2, worse than -1.
    bars = [
        (100.0, 100.5, 99.5, 100.0),
        (100.0, 100.5, 99.5, 100.0),
        (98.0, 98.5, 97.0, 98.0),
    ]
    trade = only(run(bars, {0: 1}))
    assert (trade["exit_idx"], trade["exit_price"], trade["reason"]) == (2, 98.0, SL)
    assert trade["gap"] is True
    assert trade["r"] == pytest.approx(-2.0, abs=1e-12)


def test_gap_through_the_target_fills_at_the_better_open() -> None:
    # Short fill 100, target 98, stop 101. Bar 2 opens at 97, below the target -> TP at 97 (gap):
    # R = (100 - 97) / 1 = +3.
    bars = [
        (100.0, 100.5, 99.5, 100.0),
        (100.0, 100.5, 99.5, 99.5),
        (97.0, 97.5, 96.0, 97.0),
    ]
    trade = only(run(bars, {0: -1}))
    assert (trade["exit_idx"], trade["exit_price"], trade["reason"]) == (2, 97.0, TP)
    assert trade["gap"] is True
    assert trade["r"] == pytest.approx(3.0, abs=1e-12)


TIME_STOP_BARS = [
    (10.0, 10.5, 9.5, 10.0),
    (10.0, 10.5, 9.5, 10.0),  # signal (long) at this close
    (10.0, 10.5, 9.5, 10.25),  # entry: fill 10, stop 9, target 12
    (10.25, 10.75, 9.75, 10.5),
    (10.5, 11.0, 10.0, 10.75),  # t + horizon = 1 + 3
    (10.75, 13.0, 8.0, 11.0),  # would hit both levels, but lies past the horizon
]


def test_time_stop_exits_at_the_close_of_the_horizon_bar() -> None:
    # Horizon 3 from signal bar 1: bars 2..4 never touch 9 or 12 -> exit at close[4] = 10.75:
    # R = 0.75 / 1, held 3 bars.
    trade = only(run(TIME_STOP_BARS, {1: 1}, horizon=3))
    assert (trade["exit_idx"], trade["exit_price"], trade["reason"]) == (4, 10.75, TIME)
    assert trade["r"] == pytest.approx(0.75, abs=1e-12)
    assert trade["bars_held"] == 3


def test_end_of_data_exits_at_the_last_close() -> None:
    # Same trade with horizon 10 on the first 5 bars: the data ends at bar 4 before the horizon
    # (bar 11) -> end_of_data at close[4] = 10.75, R = 0.75.
    trade = only(run(TIME_STOP_BARS[:5], {1: 1}, horizon=10))
    assert (trade["exit_idx"], trade["exit_price"], trade["reason"]) == (4, 10.75, END)
    assert trade["r"] == pytest.approx(0.75, abs=1e-12)


def test_horizon_ending_on_the_last_bar_is_a_time_stop() -> None:
    trade = only(run(TIME_STOP_BARS[:5], {1: 1}, horizon=3))
    assert trade["reason"] == TIME


def test_fees_and_slippage_on_a_take_profit() -> None:
    # Long, slippage 1%: fill = 100 * 1.01 = 101; sl 2 -> stop 99 (1R = 2); tp 4 -> target 105.
    # The target is a limit order: exit at 105 without slippage. Fees 0.1% per side:
    # 0.001 * (101 + 105) = 0.206. R = (105 - 101 - 0.206) / 2 = 1.897 (vs 2.0 without costs).
    bars = [
        (100.0, 100.5, 99.5, 100.0),
        (100.0, 102.0, 100.0, 101.5),
        (101.5, 105.5, 101.0, 105.0),
    ]
    trade = only(run(bars, {0: 1}, tp=4.0, sl=2.0, fee_rate=0.001, slippage=0.01))
    assert trade["fill"] == pytest.approx(101.0, abs=1e-12)
    assert trade["stop"] == pytest.approx(99.0, abs=1e-12)
    assert trade["target"] == pytest.approx(105.0, abs=1e-12)
    assert trade["risk"] == pytest.approx(2.0, abs=1e-12)
    assert trade["exit_price"] == pytest.approx(105.0, abs=1e-12)
    assert trade["r"] == pytest.approx(1.897, abs=1e-12)


def test_fees_and_slippage_on_a_stop() -> None:
    # Short, slippage 0.5%: fill = 200 * 0.995 = 199; sl 2 -> stop 201; tp 3 -> target 196.
    # Bar 2's high 201.5 hits the stop; the stop is a market order: 201 * 1.005 = 202.005.
    # Fees 0.05% per side: 0.0005 * (199 + 202.005) = 0.2005025.
    # R = (-(202.005 - 199) - 0.2005025) / 2 = -1.60275125 (vs -1.0 without costs).
    bars = [
        (200.0, 200.5, 199.5, 200.0),
        (200.0, 200.5, 198.5, 200.0),
        (200.0, 201.5, 199.5, 201.0),
    ]
    trade = only(run(bars, {0: -1}, tp=3.0, sl=2.0, fee_rate=0.0005, slippage=0.005))
    assert trade["fill"] == pytest.approx(199.0, abs=1e-12)
    assert trade["exit_price"] == pytest.approx(202.005, abs=1e-12)
    assert trade["reason"] == SL
    assert trade["r"] == pytest.approx(-1.60275125, abs=1e-12)


OVERLAP_BARS = [
    (100.0, 100.5, 99.5, 100.0),  # 0: long signal
    (100.0, 101.0, 99.5, 100.5),  # 1: long signal; A entered at 100 (stop 99, target 102)
    (100.5, 102.5, 100.0, 102.0),  # 2: long signal; A hits 102 -> TP, +2R
    (102.0, 102.5, 101.5, 102.0),  # 3: C entered at 102 (stop 101, target 104)
    (102.0, 102.5, 100.5, 101.0),  # 4: C's stop 101 hit -> -1R
    (101.0, 101.5, 100.5, 101.0),
]


def test_one_position_at_a_time_skips_overlapping_signals() -> None:
    # Signal 1 arrives while A (signal 0) is open -> ignored. A exits on bar 2, so signal 2
    # (that bar's close) trades: C.
    trades = run(OVERLAP_BARS, {0: 1, 1: 1, 2: 1})
    assert trades.signal_idx.tolist() == [0, 2]
    assert trades.exit_idx.tolist() == [2, 4]
    assert trades.r.tolist() == pytest.approx([2.0, -1.0], abs=1e-12)


def test_allow_overlap_trades_every_signal() -> None:
    # Signal 1 now trades too: B fills open[2] = 100.5, stop 99.5, target 102.5; bar 2's high
    # 102.5 reaches the target (low 100 stays above the stop) -> +2R on its entry bar.
    trades = run(OVERLAP_BARS, {0: 1, 1: 1, 2: 1}, allow_overlap=True)
    assert trades.signal_idx.tolist() == [0, 1, 2]
    assert trades.fill.tolist() == [100.0, 100.5, 102.0]
    assert trades.exit_idx.tolist() == [2, 2, 4]
    assert trades.r.tolist() == pytest.approx([2.0, 2.0, -1.0], abs=1e-12)


def test_signal_on_the_last_bar_does_not_trade() -> None:
    bars = [(100.0, 100.5, 99.5, 100.0)] * 3
    assert len(run(bars, {2: 1})) == 0
    assert len(run(bars, {2: -1}, allow_overlap=True)) == 0


@pytest.mark.parametrize(
    ("tp", "sl", "horizon"),
    [
        (math.nan, 1.0, 5),
        (2.0, math.nan, 5),
        (2.0, 0.0, 5),
        (2.0, -1.0, 5),
        (2.0, math.inf, 5),
        (0.0, 1.0, 5),
        (2.0, 1.0, 0),
    ],
)
def test_invalid_rows_do_not_trade_nor_block(tp: float, sl: float, horizon: int) -> None:
    # Signal 0 carries the invalid value; signal 1 is valid and, as nothing is open, trades
    # (fill open[2] = 100.5, target 102.5, hit on bar 2).
    trades = run(
        OVERLAP_BARS,
        {0: 1, 1: 1},
        tp=[tp, 2.0, 2.0, 2.0, 2.0, 2.0],
        sl=[sl, 1.0, 1.0, 1.0, 1.0, 1.0],
        horizon=[horizon, 5, 5, 5, 5, 5],
    )
    assert trades.signal_idx.tolist() == [1]


def test_infinite_target_means_no_take_profit() -> None:
    # Long fill 10, stop 9, no target: bar 5's high 13 would have hit a 2R target; the trade
    # runs to its horizon instead: stop 9 is hit on bar 5 (low 8) -> -1R.
    trade = only(run(TIME_STOP_BARS, {1: 1}, tp=math.inf, horizon=4))
    assert (trade["exit_idx"], trade["reason"], trade["target"]) == (5, SL, math.inf)
    assert trade["r"] == pytest.approx(-1.0, abs=1e-12)


def test_horizon_code_and_frame() -> None:
    ohlc = np.array(OVERLAP_BARS)
    trades = simulate(
        ohlc[:, 0],
        ohlc[:, 1],
        ohlc[:, 2],
        ohlc[:, 3],
        side=np.array([1, 0, 1, 0, 0, 0]),
        tp_dist=2.0,
        sl_dist=1.0,
        horizon=5,
        horizon_code=np.array([7, 0, 9, 0, 0, 0]),
    )
    assert trades.horizon_code.tolist() == [7, 9]
    assert trades.to_frame()["reason"].tolist() == ["take_profit", "stop_loss"]


def test_config_validation() -> None:
    with pytest.raises(ValueError, match=r"fee_rate must be a fraction in \[0, 0.1\)"):
        BacktestConfig(fee_rate=2.0)
    with pytest.raises(ValueError, match="slippage"):
        BacktestConfig(slippage=-0.001)
    with pytest.raises(ValueError, match="slippage"):
        BacktestConfig(slippage=math.nan)
    with pytest.raises(TypeError, match="allow_overlap must be a bool"):
        BacktestConfig(allow_overlap="yes")  # type: ignore[arg-type]
    with pytest.raises(msgspec.ValidationError, match="fee_rate"):
        msgspec.convert({"fee_rate": 5}, BacktestConfig)
    assert msgspec.convert({"fee_rate": 0.0002}, BacktestConfig).fee_rate == 0.0002


def test_input_validation() -> None:
    prices = np.full(4, 100.0)
    bad = prices.copy()
    bad[2] = np.nan

    def call(open_: npt.ArrayLike, close: npt.ArrayLike, side: npt.ArrayLike) -> Trades:
        return simulate(
            open_, prices, prices, close, side=side, tp_dist=2.0, sl_dist=1.0, horizon=3
        )

    with pytest.raises(ValueError, match="side must hold only"):
        call(prices, prices, np.array([2, 0, 0, 0]))
    with pytest.raises(ValueError, match="close has 1 non-finite"):
        call(prices, bad, 0)
    with pytest.raises(ValueError, match="lengths differ"):
        call(prices[:3], prices, 0)
    with pytest.raises(ValueError, match="tp_dist must be a scalar or have shape"):
        simulate(prices, prices, prices, prices, side=0, tp_dist=[1.0], sl_dist=1.0, horizon=3)
    with pytest.raises(TypeError, match="horizon must hold integers"):
        simulate(prices, prices, prices, prices, side=0, tp_dist=1.0, sl_dist=1.0, horizon=3.5)
