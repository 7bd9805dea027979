"""Backtest simulation speed given the predictions: simulate + metrics + equity curve over a
synthetic random-walk series with random signals (~5% of bars) and ATR-scaled TP/SL.

Usage: .venv/bin/python -m bench.backtest_sim_bench [--bars N] [--repeats N] [--signal-rate P]
Prints bars/s per mode and writes bench/results/backtest_sim.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

from orchestrator.backtest.engine import BacktestConfig, simulate
from orchestrator.backtest.metrics import compute_metrics, equity_curve

RESULTS = Path(__file__).parent / "results" / "backtest_sim.json"
HORIZONS = {0: ("scalping", 6), 1: ("intraday", 48)}  # 5m bars
ATR_BARS = 14

Array = npt.NDArray[Any]


def synthetic_market(
    bars: int, signal_rate: float, seed: int = 0
) -> tuple[dict[str, Array], dict[str, Array]]:
    """Random-walk OHLC (small gaps between bars) and random signals with ATR distances."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.002, bars)))
    open_ = np.concatenate(([100.0], close[:-1])) * np.exp(rng.normal(0.0, 0.0003, bars))
    wick = np.abs(rng.normal(0.0, 0.0015, (2, bars))) * close
    high = np.maximum(open_, close) + wick[0]
    low = np.minimum(open_, close) - wick[1]
    true_range = high - low
    running = np.cumsum(true_range)
    atr = np.full(bars, np.nan)
    atr[ATR_BARS - 1 :] = (
        running[ATR_BARS - 1 :] - np.concatenate(([0.0], running[:-ATR_BARS]))
    ) / ATR_BARS
    side = np.where(rng.random(bars) < signal_rate, rng.choice([-1, 1], bars), 0).astype(np.int8)
    code = rng.integers(0, len(HORIZONS), bars)
    horizon = np.array([HORIZONS[c][1] for c in sorted(HORIZONS)])[code]
    prices: dict[str, Array] = {"open": open_, "high": high, "low": low, "close": close}
    signals: dict[str, Array] = {
        "side": side,
        "tp_dist": 1.5 * atr,
        "sl_dist": 1.0 * atr,
        "horizon": horizon,
        "horizon_code": code,
    }
    return prices, signals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bars", type=int, default=2_000_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--signal-rate", type=float, default=0.05)
    args = parser.parse_args()
    prices, signals = synthetic_market(args.bars, args.signal_rate)
    names = {code: name for code, (name, _) in HORIZONS.items()}
    config = BacktestConfig(fee_rate=0.0002, slippage=0.0001)

    def once(allow_overlap: bool) -> tuple[float, int, float]:
        started = time.perf_counter()
        trades = simulate(
            prices["open"],
            prices["high"],
            prices["low"],
            prices["close"],
            side=signals["side"],
            tp_dist=signals["tp_dist"],
            sl_dist=signals["sl_dist"],
            horizon=signals["horizon"],
            horizon_code=signals["horizon_code"],
            config=msgspec.structs.replace(config, allow_overlap=allow_overlap),
        )
        metrics = compute_metrics(trades, names)
        equity_curve(trades)
        return time.perf_counter() - started, len(trades), metrics.overall.total_r

    started = time.perf_counter()
    once(False)  # compile, or load numba's on-disk cache
    warm_s = time.perf_counter() - started
    print(f"{args.bars:,} bars, {int(np.count_nonzero(signals['side'])):,} signals")
    print(f"first call (JIT compile or cache load): {warm_s:.2f} s")
    modes = []
    for allow_overlap in (False, True):
        runs = [once(allow_overlap) for _ in range(args.repeats)]
        seconds = [run[0] for run in runs]
        median = statistics.median(seconds)
        label = "allow_overlap" if allow_overlap else "one_position"
        print(
            f"{label:14s} {runs[0][1]:8,} trades  median {median * 1e3:7.1f} ms  "
            f"min {min(seconds) * 1e3:7.1f} ms  -> {args.bars / median / 1e6:6.1f} M bars/s"
        )
        modes.append(
            {
                "mode": label,
                "trades": runs[0][1],
                "total_r": round(runs[0][2], 3),
                "median_s": median,
                "min_s": min(seconds),
                "bars_per_s": args.bars / median,
            }
        )
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus",
        "python": platform.python_version(),
        "bars": args.bars,
        "signals": int(np.count_nonzero(signals["side"])),
        "repeats": args.repeats,
        "timed": "simulate + compute_metrics + equity_curve",
        "first_call_s": warm_s,
        "modes": modes,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    temporary = RESULTS.with_suffix(".tmp")
    temporary.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(temporary, RESULTS)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
