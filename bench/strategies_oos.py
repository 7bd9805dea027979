"""Out-of-sample expectancy per strategy on the real sets' held-back days.

The committed real models were trained on `trading_real_live`, i.e. without each series' last
REPLAY_HOLD_BACK_DAYS days; `trading_real` holds those days too. Backtesting exactly those days
over the served real models is out of sample by construction. Costs: each symbol's asset-class
defaults (orchestrator/signals/costs.py), charged in the simulation and counted by the edge.

Run with the real models served (`make strategies-oos` starts Triton with them):
    .venv/bin/python -m bench.strategies_oos [--days 30] [--out bench/results/strategies_oos.md]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from orchestrator.signals.costs import costs_for
from orchestrator.signals.strategies import STRATEGIES

# symbol, timeframe, asset class, last stored bar of `make real-data` (docs/real-data.md)
SERIES = (
    ("BTCUSD", "1h", "crypto", datetime(2019, 10, 17, 10, tzinfo=UTC)),
    ("EURUSD", "1h", "forex", datetime(2017, 12, 29, 22, tzinfo=UTC)),
)


def run_one(
    series: tuple[str, str, str],
    start: datetime,
    end: datetime,
    strategy: str,
    min_expected_r: float | None = None,
) -> dict[str, object]:
    """One backtest through the CLI; `min_expected_r` overrides the strategy's edge."""
    symbol, timeframe, asset_class = series
    costs = costs_for(asset_class)
    moments = [m.strftime("%Y-%m-%dT%H:%M:%SZ") for m in (start, end)]
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "orchestrator", "backtest", "--symbol", symbol]
        command += ["--timeframe", timeframe, "--start", moments[0], "--end", moments[1]]
        command += ["--strategy", strategy, "--fee-rate", str(costs.fee_rate)]
        command += ["--slippage", str(costs.slippage), "--out", out, "--quiet", "--no-cache"]
        if min_expected_r is not None:
            command += ["--min-expected-r", str(min_expected_r)]
        subprocess.run(command, check=True, env=dict(os.environ))
        result = json.loads((Path(out) / "result.json").read_text())
    overall = result["metrics"]["overall"]
    label = strategy if min_expected_r is None else f"{strategy}, edge filter off"
    return {
        "symbol": symbol,
        "strategy": label,
        "signals": result["signals"],
        "bars": result["bars"],
        "trades": overall["n_trades"],
        "total_r": overall["total_r"],
        "expectancy": overall["expectancy_r"],
        "low": overall["expectancy_ci95_low"],
        "high": overall["expectancy_ci95_high"],
    }


def _f(value: object) -> str:
    return "—" if value is None else f"{float(value):+.3f}"  # type: ignore[arg-type]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--out", default="bench/results/strategies_oos.md")
    args = parser.parse_args()
    rows = []
    for symbol, timeframe, asset_class, last in SERIES:
        end = last + timedelta(hours=1)
        start = end - timedelta(days=args.days)
        series = (symbol, timeframe, asset_class)
        for strategy in STRATEGIES:
            rows.append(run_one(series, start, end, strategy))
            print(rows[-1], flush=True)
        # What the edge kept the strategies from: every signal of the range filter, traded.
        rows.append(run_one(series, start, end, "aggressive_filter", -1.0))
    lines = [
        f"Out of sample: the last {args.days} days of each series (not in the training data), "
        "asset-class costs charged.",
        "",
        "| symbol | strategy | bars | signals | trades | total R | expectancy R [95 % CI] |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['symbol']} | {row['strategy']} | {row['bars']} | {row['signals']} | "
            f"{row['trades']} | {_f(row['total_r'])} | {_f(row['expectancy'])} "
            f"[{_f(row['low'])}, {_f(row['high'])}] |"
        )
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
