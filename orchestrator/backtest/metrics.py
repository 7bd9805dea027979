"""Trade statistics in R multiples, as msgspec Structs of plain floats/ints/None so an API can
return them as they are.

Conventions:

* A win is r > 0, a loss r < 0; r == 0 (a scratch) is neither, and it breaks a losing streak.
* Order-dependent numbers (drawdown, streak) follow the exit order (exit bar, then signal bar).
* Undefined numbers are None rather than NaN/inf, which JSON cannot carry: expectancy, win rate
  with no trades; std, SQN and the 95% interval with fewer than 2 trades (SQN also when every R is
  equal); average win/loss without wins/losses; profit factor without losses (it would be
  infinite, or 0/0).
* SQN = sqrt(N) * mean(R) / std(R) with the sample std (ddof=1). The 95% interval of the
  expectancy is mean ± 1.96 * std / sqrt(N): a leaky model shows up as an interval far above 0.
* Max drawdown is the largest fall of cumulative R from its running peak, the peak starting at 0
  before the first trade; it is reported as a positive number of R.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec
import numpy as np
import numpy.typing as npt

from orchestrator.backtest.engine import ExitReason, Trades

F64 = npt.NDArray[np.float64]
Z95 = 1.96


class TradeStats(msgspec.Struct, frozen=True):
    n_trades: int
    n_wins: int
    n_losses: int
    total_r: float
    expectancy_r: float | None  # mean R per trade
    std_r: float | None
    sqn: float | None
    expectancy_ci95_low: float | None
    expectancy_ci95_high: float | None
    win_rate: float | None
    profit_factor: float | None  # gross win R / gross loss R
    avg_win_r: float | None
    avg_loss_r: float | None  # negative
    max_drawdown_r: float  # positive: peak-to-trough of cumulative R
    longest_losing_streak: int


class BacktestMetrics(msgspec.Struct, frozen=True):
    overall: TradeStats
    n_bars: int
    exposure: float  # fraction of bars with at least one open position
    exit_reasons: dict[str, int]
    gap_exits: int
    by_horizon: dict[str, TradeStats]  # keyed by horizon name (or the code as text)
    by_direction: dict[str, TradeStats]  # "long" / "short"


def _optional(value: float | np.floating, defined: bool) -> float | None:
    return float(value) if defined else None


def max_drawdown(r: F64) -> float:
    """Largest peak-to-trough fall of cumulative R, starting from 0 before the first trade."""
    if r.size == 0:
        return 0.0
    equity = np.concatenate(([0.0], np.cumsum(r)))
    return float(np.max(np.maximum.accumulate(equity) - equity))


def longest_streak(mask: npt.NDArray[np.bool_]) -> int:
    """Longest run of consecutive True values."""
    if not mask.any():
        return 0
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return int(np.max(ends - starts))


def trade_stats(r: npt.ArrayLike) -> TradeStats:
    """Statistics of R multiples given in the order the trades closed."""
    values = np.asarray(r, dtype=np.float64)
    n = int(values.size)
    wins, losses = values[values > 0], values[values < 0]
    mean = float(values.mean()) if n else 0.0
    std = float(values.std(ddof=1)) if n >= 2 else 0.0
    half_width = Z95 * std / np.sqrt(n) if n >= 2 else 0.0
    gross_loss = float(-losses.sum())
    return TradeStats(
        n_trades=n,
        n_wins=int(wins.size),
        n_losses=int(losses.size),
        total_r=float(values.sum()),
        expectancy_r=_optional(mean, n > 0),
        std_r=_optional(std, n >= 2),
        sqn=_optional(np.sqrt(n) * mean / std if std > 0 else 0.0, n >= 2 and std > 0),
        expectancy_ci95_low=_optional(mean - half_width, n >= 2),
        expectancy_ci95_high=_optional(mean + half_width, n >= 2),
        win_rate=_optional(wins.size / n if n else 0.0, n > 0),
        profit_factor=_optional(wins.sum() / gross_loss if gross_loss > 0 else 0.0, gross_loss > 0),
        avg_win_r=_optional(wins.mean() if wins.size else 0.0, wins.size > 0),
        avg_loss_r=_optional(losses.mean() if losses.size else 0.0, losses.size > 0),
        max_drawdown_r=max_drawdown(values),
        longest_losing_streak=longest_streak(values < 0),
    )


def exit_order(trades: Trades) -> npt.NDArray[np.intp]:
    """Trades sorted by exit bar; ties keep signal order (with overlap, exits interleave)."""
    return np.argsort(trades.exit_idx, kind="stable")


def exposure(trades: Trades) -> float:
    """Fraction of bars, entry to exit bar inclusive, with at least one position open."""
    if trades.n_bars == 0:
        return 0.0
    size = trades.n_bars + 1
    delta = np.bincount(trades.entry_idx, minlength=size) - np.bincount(
        trades.exit_idx + 1, minlength=size
    )
    return float(np.mean(np.cumsum(delta[: trades.n_bars]) > 0))


def equity_curve(trades: Trades) -> tuple[F64, F64]:
    """Per bar: cumulative R realised by the close of the bar (trades count at their exit bar),
    and the drawdown from the running peak (peak starting at 0), as values <= 0."""
    realised = np.bincount(trades.exit_idx, weights=trades.r, minlength=trades.n_bars)
    equity = np.cumsum(realised[: trades.n_bars], dtype=np.float64)
    peak = np.maximum(np.maximum.accumulate(equity), 0.0)
    return equity, equity - peak


def compute_metrics(
    trades: Trades, horizon_names: Mapping[int, str] | None = None
) -> BacktestMetrics:
    """Overall statistics, exposure, exit reasons and the per-horizon and per-direction splits.

    horizon_names maps Trades.horizon_code to the names used as keys (default: the code as text).
    """
    order = exit_order(trades)
    r, codes, sides = trades.r[order], trades.horizon_code[order], trades.side[order]
    names = horizon_names or {}
    by_horizon = {
        names.get(int(code), str(int(code))): trade_stats(r[codes == code])
        for code in np.unique(codes)
    }
    by_direction = {
        label: trade_stats(r[sides == value])
        for label, value in (("long", 1), ("short", -1))
        if np.any(sides == value)
    }
    counts = np.bincount(trades.reason.astype(np.int64), minlength=len(ExitReason))
    return BacktestMetrics(
        overall=trade_stats(r),
        n_bars=trades.n_bars,
        exposure=exposure(trades),
        exit_reasons={reason.label: int(counts[reason]) for reason in ExitReason},
        gap_exits=int(np.count_nonzero(trades.gap)),
        by_horizon=by_horizon,
        by_direction=by_direction,
    )
