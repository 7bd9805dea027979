"""`ml-engine ...`: the engine's one command, installed by `pip install` / `uv sync`.

It offers every `python -m orchestrator` command (ingest, backtest, serve, db, ...) plus `train`,
which runs the training package's `python -m export train`. Training (torch, XGBoost) is imported
only when `train` runs, so serving commands never load it.
"""

from __future__ import annotations

import argparse
import contextlib
import io

from orchestrator import cli
from orchestrator.settings import Settings

PROG = "ml-engine"
EXAMPLES = """\
quick start:
  ml-engine db up && ml-engine redis up            # MariaDB (+ schema) and Redis
  ml-engine demo                                   # synthetic bars (or: ml-engine ingest FILE)
  ml-engine train --symbols BTCUSD --epochs 5      # models into model_repository/
  ml-engine triton up && ml-engine serve           # Triton, then the API

`ml-engine COMMAND --help` explains a command, with examples."""
TRAIN_SUMMARY = "train the models on the store's bars and export them for Triton"
TRAIN_DESCRIPTION = """\
Train the GRU, Transformer, XGBoost and metamodel on the bars in the store (every
symbol, or --symbols) at one timeframe, and export them into the Triton model
repository (cpu and gpu profiles) as a new version."""
TRAIN_EXAMPLES = """\
examples:
  ml-engine train
  ml-engine train --symbols BTCUSD,EURUSD --timeframe 15m --epochs 5
  ml-engine train --timeframe 1h --repository /srv/model_repository --tensorrt"""
_EXPORT_TRAIN = ["train"]  # `python -m export train`: the sub-command this one runs


def _add_train(sub: cli.SubParsers) -> None:
    """The options are training's own (`python -m export train`): they are forwarded as given,
    and --help shows them, rather than being declared a second time here."""
    train = sub.add_parser(
        "train",
        help=TRAIN_SUMMARY,
        description=TRAIN_DESCRIPTION,
        usage=f"{PROG} train [options]",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        add_help=False,
    )
    train.set_defaults(forwards_arguments=True)


def train_help() -> str:
    """What `ml-engine train --help` prints: the options section of training's own help."""
    from export.__main__ import main as export_main

    text = io.StringIO()
    with contextlib.redirect_stdout(text), contextlib.suppress(SystemExit):
        export_main([*_EXPORT_TRAIN, "--help"])
    export_help = text.getvalue()
    options = export_help[export_help.find("options:") :].rstrip()
    return f"usage: {PROG} train [options]\n\n{TRAIN_DESCRIPTION}\n\n{options}\n\n{TRAIN_EXAMPLES}"


def cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    forwarded: list[str] = args.forwarded
    if {"-h", "--help"} & set(forwarded):
        print(train_help())
        return 0
    from export.__main__ import main as export_main

    return export_main([*_EXPORT_TRAIN, *forwarded])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="The trading ML engine: market data, training, Triton serving, backtests.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cli.add_commands(sub, PROG)
    _add_train(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    return cli.run(build_parser(), {**cli.COMMANDS, "train": cmd_train}, argv)
