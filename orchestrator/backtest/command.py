"""`python -m orchestrator backtest`: backtest the served models (or walk-forward retrained ones)
over a stored history, print a summary and write result.json + equity.png.

Imports stay light at module level (the CLI builds every subcommand's parser on start-up); the
backtest machinery loads inside run(). Failures end as every command's do (orchestrator/errors.py):
one line naming what to fix, exit 2 for bad input and 3 when a service cannot answer.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.dates import describe_moment
from orchestrator.errors import EXIT_OK
from orchestrator.settings import Settings
from orchestrator.signals.strategies import DEFAULT_STRATEGY, STRATEGIES

if TYPE_CHECKING:
    from export.config import TrainConfig
    from export.walkforward import WalkForwardConfig
    from orchestrator.backtest.report import BacktestResult
    from orchestrator.backtest.request import BacktestRequest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--symbol", required=True, help="e.g. BTCUSD")
    parser.add_argument("--start", required=True, help=f"first bar: {describe_moment(end=False)}")
    parser.add_argument(
        "--end", required=True, help=f"end (exclusive): {describe_moment(end=True)}"
    )
    parser.add_argument(
        "--strategy", default=DEFAULT_STRATEGY, help=f"one of {', '.join(STRATEGIES)}"
    )
    parser.add_argument("--timeframe", default="5m", help="5m, 15m or 1h: the model set used")
    signal = parser.add_argument_group("signal and simulation parameters")
    signal.add_argument(
        "--min-expected-r",
        type=float,
        help="override the minimum expected R net of costs (-1: every signal trades)",
    )
    signal.add_argument("--min-confidence", type=float, help="add a floor on P(win), 0 to 1")
    signal.add_argument("--min-range-tp-ratio", type=float, help="override the range filter")
    signal.add_argument(
        "--no-metamodel",
        action="store_true",
        help="filter on the TP/SL classifier's probability instead of the metamodel's",
    )
    signal.add_argument(
        "--horizon", help="time-stop horizon (scalping/intraday/swing/position); default: label"
    )
    signal.add_argument(
        "--tp",
        type=float,
        help="your take-profit in ATR multiples (signals then decided by the barrier model)",
    )
    signal.add_argument("--sl", type=float, help="your stop in ATR multiples (with --tp)")
    signal.add_argument("--fee-rate", type=float, default=0.0, help="per side, 0.0002 = 2 bps")
    signal.add_argument("--slippage", type=float, default=0.0, help="per fill, fraction of price")
    signal.add_argument(
        "--allow-overlap", action="store_true", help="trade every signal, even while one is open"
    )
    walk = parser.add_argument_group("walk-forward (retrain before each window; out-of-sample)")
    walk.add_argument("--walk-forward", type=int, metavar="K", help="number of test windows")
    walk.add_argument("--train-bars", type=int, help="history per window (default: all before)")
    walk.add_argument("--train-epochs", type=int, default=8)
    walk.add_argument("--train-folds", type=int, default=3)
    walk.add_argument("--train-stride", type=int, default=3)
    walk.add_argument("--xgb-rounds", type=int, default=400)
    walk.add_argument("--train-threads", type=int, default=2)
    walk.add_argument("--label-horizon", default="intraday", help="the classifiers' horizon")
    walk.add_argument("--tp-atr", type=float, default=1.5)
    walk.add_argument("--sl-atr", type=float, default=1.0)
    walk.add_argument("--seed", type=int, default=7)
    output = parser.add_argument_group("output")
    output.add_argument("--out", help="directory for result.json and equity.png")
    output.add_argument(
        "--no-cache", action="store_true", help="recompute predictions even when cached"
    )
    output.add_argument("--quiet", action="store_true", help="no progress bar")


def build_request(args: argparse.Namespace) -> BacktestRequest:
    from orchestrator.backtest.request import BacktestRequest
    from orchestrator.dates import parse_moment

    return BacktestRequest(
        symbol=args.symbol,
        start=parse_moment("start", args.start, end=False),
        end=parse_moment("end", args.end, end=True),
        timeframe=args.timeframe,
        strategy=args.strategy,
        min_expected_r=args.min_expected_r,
        min_confidence=args.min_confidence,
        min_range_tp_ratio=args.min_range_tp_ratio,
        use_metamodel=False if args.no_metamodel else None,
        horizon=args.horizon,
        tp_atr=args.tp,
        sl_atr=args.sl,
        fee_rate=args.fee_rate,
        slippage=args.slippage,
        allow_overlap=args.allow_overlap,
    )


def train_config(args: argparse.Namespace) -> TrainConfig:
    from export.config import TrainConfig
    from orchestrator.backtest.request import BacktestRequestError
    from orchestrator.features.horizons import Horizon
    from orchestrator.marketdata.timeframes import parse_timeframe

    try:
        label = Horizon(args.label_horizon)
    except ValueError:
        choices = ", ".join(h.value for h in Horizon)
        raise BacktestRequestError("label_horizon", f"--label-horizon: one of {choices}") from None
    return TrainConfig(
        timeframe=parse_timeframe(args.timeframe),
        folds=args.train_folds,
        epochs=args.train_epochs,
        stride=args.train_stride,
        seed=args.seed,
        tp_atr=args.tp_atr,
        sl_atr=args.sl_atr,
        label_horizon=label,
        xgb_rounds=args.xgb_rounds,
        threads=args.train_threads,
        show_progress=False,
    )


class PhaseBar:
    """One tqdm bar, restarted for every phase; the phase is its description."""

    def __init__(self, enabled: bool) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=1000, disable=not enabled, leave=False, bar_format="{desc} {bar}")
        self.phase = ""

    def __call__(self, phase: str, fraction: float) -> None:
        if phase != self.phase:
            self.phase = phase
            self.bar.reset(total=1000)
            self.bar.set_description(f"{phase:>16s}", refresh=False)
        self.bar.n = int(max(0.0, min(1.0, fraction)) * 1000)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


async def execute(
    args: argparse.Namespace,
    settings: Settings,
    request: BacktestRequest,
    progress: PhaseBar,
    walk_forward: WalkForwardConfig | None,
) -> BacktestResult:
    import tritonclient.grpc.aio as grpc_aio

    from export.walkforward import run_walk_forward
    from orchestrator.backtest.predictions import PREDICTION_CACHE_DIR
    from orchestrator.backtest.runner import run_backtest
    from orchestrator.inference.calls import close_client
    from orchestrator.inference.client import SignalModels
    from orchestrator.inference.models import ENSEMBLE, served_name
    from orchestrator.marketdata.db import Database
    from orchestrator.marketdata.timeframes import parse_timeframe

    db = await Database.connect(settings.db)
    try:
        if walk_forward is not None:
            return await run_walk_forward(request, db=db, config=walk_forward, progress=progress)
        client = grpc_aio.InferenceServerClient(settings.triton.grpc_url)
        try:
            ensemble = served_name(ENSEMBLE, parse_timeframe(request.timeframe).value)
            models = SignalModels(client, settings.triton.request_timeout_s, ensemble)
            return await run_backtest(
                request,
                db=db,
                models=models,
                cache_dir=None if args.no_cache else PREDICTION_CACHE_DIR,
                progress=progress,
            )
        finally:
            await close_client(client, settings.triton.request_timeout_s)
    finally:
        await db.close()


def write_outputs(result: BacktestResult, out: Path) -> list[Path]:
    """result.json (written to a temporary name, then renamed) and equity.png."""
    import msgspec

    from orchestrator.backtest.plot import save_equity_plot
    from orchestrator.fileio import atomic_write_bytes

    target = out / "result.json"
    document = msgspec.json.format(msgspec.json.encode(result), indent=2) + b"\n"
    atomic_write_bytes(target, document, mode=0o644)
    request = result.request
    title = (
        f"{request.symbol} {result.timeframe} {result.first_bar:%Y-%m-%d} to "
        f"{result.last_bar:%Y-%m-%d}, {result.strategy.name}: "
        f"{result.metrics.overall.n_trades} trades, {result.metrics.overall.total_r:+.1f} R"
    )
    plot = save_equity_plot(
        out / "equity.png",
        result.equity.times,
        result.equity.equity_r,
        result.equity.drawdown_r,
        title,
    )
    return [target, plot]


def _num(value: float | None, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def summary(result: BacktestResult) -> str:
    """A short table of the numbers that matter first."""
    stats = result.metrics.overall
    request = result.request
    half_width = (
        None
        if stats.expectancy_ci95_high is None or stats.expectancy_r is None
        else stats.expectancy_ci95_high - stats.expectancy_r
    )
    interval = (
        f"{_num(stats.expectancy_r)} ± {_num(half_width)}"
        f" (95% CI {_num(stats.expectancy_ci95_low)} .. {_num(stats.expectancy_ci95_high)})"
    )
    mode = (
        f"walk-forward, {len(result.walk_forward.windows)} windows"
        if result.walk_forward is not None
        else "served models"
    )
    rows = [
        ("trades", f"{stats.n_trades:,}"),
        ("total R", _num(stats.total_r, "+.2f")),
        ("expectancy R", interval),
        ("SQN", _num(stats.sqn, ".2f")),
        ("win rate", "n/a" if stats.win_rate is None else f"{stats.win_rate:.1%}"),
        ("profit factor", _num(stats.profit_factor, ".2f")),
        ("max drawdown R", _num(stats.max_drawdown_r, ".2f")),
    ]
    timings = result.timings
    lines = [
        f"{request.symbol} {result.timeframe} {result.first_bar:%Y-%m-%d %H:%M} -> "
        f"{result.last_bar:%Y-%m-%d %H:%M} UTC, strategy {result.strategy.name}, horizon "
        f"{result.horizon} ({result.horizon_bars} bars), models {result.model_version} ({mode})",
        f"bars {result.bars:,} (scored {result.predicted_bars:,}), signals {result.signals:,}"
        + (", predictions from cache" if result.cached else ""),
        *(f"  {name:<15s} {value}" for name, value in rows),
        f"timings: loading {timings.loading_s:.1f} s, features {timings.features_s:.1f} s, "
        f"inference {timings.inference_s:.1f} s, simulation {timings.simulation_s:.1f} s"
        + (f", training {timings.training_s:.1f} s" if timings.training_s else "")
        + f" (total {timings.total_s:.1f} s)",
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Runs the backtest; expected failures propagate to the CLI's one exit-code lookup."""
    progress = PhaseBar(enabled=not args.quiet and sys.stderr.isatty())
    try:
        request = build_request(args)
        # Bad training options are rejected here, before anything is touched.
        walk_forward = None
        if args.walk_forward is not None:
            from export.walkforward import WalkForwardConfig  # torch: only when training

            walk_forward = WalkForwardConfig(
                windows=args.walk_forward, train=train_config(args), train_bars=args.train_bars
            )
        result = asyncio.run(execute(args, settings, request, progress, walk_forward))
    finally:
        progress.close()
    print(summary(result))
    if args.out:
        for path in write_outputs(result, Path(args.out)):
            print(f"wrote {path}")
    return EXIT_OK
