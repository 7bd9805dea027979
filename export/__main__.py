"""`python -m export train ...`: train on the bars in the store and export both profiles.

Failures end as every command's do (orchestrator/errors.py): one line, exit 2 for bad input or
too little history, 3 when the database cannot be reached."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

from export.config import TrainConfig
from export.lifeline import die_with_parent
from orchestrator.errors import EXIT_OK, EngineError, NotEnoughDataError, report
from orchestrator.marketdata.db import Database
from orchestrator.marketdata.store import BarStore
from orchestrator.marketdata.timeframes import parse_timeframe
from orchestrator.realdata.catalogue import describe_sources
from orchestrator.realdata.command import DEFAULT_DATABASE as REAL_DATABASE
from orchestrator.settings import PROJECT_ROOT, Settings


async def load_bars(
    symbols: list[str] | None, timeframe: str, since: datetime | None = None
) -> dict[str, pd.DataFrame]:
    settings = Settings.from_env()
    db = await Database.connect(settings.db)
    try:
        store = BarStore(db)
        chosen = symbols or [s.symbol for s in await store.list_symbols()]
        tf = parse_timeframe(timeframe)
        frames = {}
        everything = (
            since or datetime(1970, 1, 1, tzinfo=UTC),
            datetime.now(UTC) + timedelta(days=1),
        )
        for symbol in chosen:
            # Stored at `tf`, or resampled from the symbol's base timeframe (5m -> 15m, 1h, ...).
            frames[symbol] = await store.bars_between(symbol, tf, *everything)
        return {s: f for s, f in frames.items() if len(f)}
    finally:
        await db.close()


def _source(symbols: list[str], database: str) -> str:
    """The model card's data line: the real series' packages, or the database it read."""
    if database.startswith(REAL_DATABASE):
        described = describe_sources(symbols)
        if described:
            return f"{described} (database {database})"
    return f"bars of database {database}"


def _utc_date(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date; give YYYY-MM-DD or an RFC 3339 time"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m export",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train on the store's bars and export cpu + gpu profiles")
    train.add_argument("--symbols", help="comma-separated (default: every symbol in the store)")
    train.add_argument(
        "--timeframe",
        default="5m",
        help="bar timeframe the models learn and serve (default: 5m; coarser ones are "
        "resampled from the stored bars)",
    )
    train.add_argument(
        "--repository",
        default=str(PROJECT_ROOT / "model_repository"),
        help="Triton model repository written to, a new version in its cpu/ and gpu/ "
        "(default: ./model_repository)",
    )
    train.add_argument(
        "--epochs",
        type=int,
        default=TrainConfig.epochs,
        help=f"passes over the training windows per fold (default: {TrainConfig.epochs})",
    )
    train.add_argument(
        "--folds",
        type=int,
        default=TrainConfig.folds,
        help="walk-forward folds; the served head is judged out of fold, so at least 2 "
        f"(default: {TrainConfig.folds})",
    )
    train.add_argument(
        "--stride",
        type=int,
        default=TrainConfig.stride,
        help="train on every N-th window; adjacent ones are near-duplicates "
        f"(default: {TrainConfig.stride})",
    )
    train.add_argument(
        "--seed",
        type=int,
        default=TrainConfig.seed,
        help=f"random seed, for repeatable runs (default: {TrainConfig.seed})",
    )
    train.add_argument("--tensorrt", action="store_true", help="gpu profile: TensorRT accelerator")
    train.add_argument(
        "--source",
        help="where the bars came from, for the model card (default: the database's name)",
    )
    train.add_argument(
        "--since",
        type=_utc_date,
        help="train on bars from this date or time on (RFC 3339 or YYYY-MM-DD, UTC; default: "
        "all history). Retraining uses it for a rolling window",
    )
    train.add_argument(
        "--evidence",
        type=Path,
        help="also write the rows the nested walk-forward served (.npz), which the promotion "
        "test compares with the champion",
    )
    train.add_argument(
        "--oof",
        type=Path,
        help="also write every fold's out-of-fold rows here (.npz) to study the head offline",
    )
    cards = sub.add_parser(
        "cards",
        help="write every set's model card again from its newest version's model_card.json "
        "(after the card's layout changed; no training)",
    )
    cards.add_argument(
        "--repository",
        default=str(PROJECT_ROOT / "model_repository"),
        help="repository whose cpu/ and gpu/ cards are rewritten (default: ./model_repository)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    die_with_parent()  # when a worker started it (export/retrain.py)
    args = build_parser().parse_args(argv)
    try:
        return rewrite_cards(Path(args.repository)) if args.command == "cards" else train(args)
    except EngineError as exc:
        return report(exc)


def rewrite_cards(repository: Path) -> int:
    """Re-renders MODEL_CARD*.md beside each profile from the newest version of each set's
    range_gru model (whose model_card.json holds the whole card)."""
    # Imported here, not at the top: they load torch (seconds), which `--help` has no use for.
    from export.card import render_card
    from export.exporter import card_name

    written = 0
    for profile in ("cpu", "gpu"):
        for model in sorted((repository / profile).glob("range_gru*/")):
            if model.name.endswith("_torchscript"):
                continue
            versions = sorted(int(p.name) for p in model.iterdir() if p.name.isdigit())
            if not versions:
                continue
            card = json.loads((model / str(versions[-1]) / "model_card.json").read_text())
            name = card_name(card["timeframe"])
            (repository / profile / name).write_text(render_card(card, versions[-1], name))
            written += 1
    print(f"rewrote {written} model cards under {repository}")
    return 0


def train(args: argparse.Namespace) -> int:
    from export.exporter import card_name, export_profiles
    from export.train import prepare_symbol, train_all

    symbols = [s.strip().upper() for s in args.symbols.split(",")] if args.symbols else None
    frames = asyncio.run(load_bars(symbols, args.timeframe, args.since))
    if not frames:
        raise NotEnoughDataError("no bars in the store; run `make demo-data` or ingest some")
    cfg = TrainConfig(
        timeframe=parse_timeframe(args.timeframe),
        epochs=args.epochs,
        folds=args.folds,
        stride=args.stride,
        seed=args.seed,
        data_source=args.source or _source(list(frames), Settings.from_env().db.database),
    )
    started = time.perf_counter()
    data = [prepare_symbol(symbol, bars, cfg) for symbol, bars in frames.items()]
    print(f"training on {', '.join(f'{s} ({len(b)} bars)' for s, b in frames.items())}")
    try:
        models = train_all(data, cfg)
    except ValueError as exc:  # export/train.py says "too little history" with ValueError
        raise NotEnoughDataError(str(exc)) from exc
    if (
        args.oof and models.oof is not None
    ):  # first: the rows are worth keeping even if export fails
        models.oof.save(args.oof)
    if args.evidence and models.evidence is not None:
        models.evidence.save(args.evidence)
    versions = export_profiles(models, Path(args.repository), tensorrt=args.tensorrt)
    card = Path(args.repository) / "cpu" / card_name(cfg.timeframe.value)
    print(
        f"exported version {versions['cpu']} to {args.repository}/cpu and {args.repository}/gpu "
        f"in {time.perf_counter() - started:.0f} s; card: {card}"
    )
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
