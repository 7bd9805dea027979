"""The installed `ml-engine` command: every sub-command explains itself with examples, and
`train` reaches the training package only when it runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.console import build_parser
from orchestrator.settings import PROJECT_ROOT

ML_ENGINE = Path(sys.executable).parent / "ml-engine"  # installed beside this interpreter


def _ml_engine(*args: str) -> subprocess.CompletedProcess[str]:
    """The console script as installed, running this checkout's code."""
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    return subprocess.run(
        [str(ML_ENGINE), *args],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_help_lists_every_command_and_a_quick_start() -> None:
    result = _ml_engine("--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: ml-engine")
    for command in ("ingest", "backtest", "train", "serve", "db", "worker", "triton", "demo"):
        assert f"    {command} " in result.stdout, command
    assert "quick start:\n  ml-engine db up && ml-engine redis up" in result.stdout


@pytest.mark.parametrize(
    ("command", "says"),
    [
        ("ingest", "ml-engine ingest bars.csv --symbol BTCUSD"),
        ("backtest", "ml-engine backtest --symbol BTCUSD --start"),
        ("serve", "ml-engine serve --host 0.0.0.0 --port 8000"),
    ],
)
def test_sub_command_help_describes_it_with_an_example(command: str, says: str) -> None:
    result = _ml_engine(command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: ml-engine {command}")
    assert "example" in result.stdout
    assert says in result.stdout


def test_train_help_shows_the_training_options() -> None:
    result = _ml_engine("train", "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: ml-engine train [options]")
    assert "--symbols SYMBOLS" in result.stdout  # python -m export train's own options
    assert "--epochs EPOCHS" in result.stdout
    assert "ml-engine train --symbols BTCUSD,EURUSD --timeframe 15m" in result.stdout


def test_unknown_options_are_refused_except_by_train() -> None:
    result = _ml_engine("serve", "--epochs", "3")
    assert result.returncode == 2
    assert "unrecognized arguments: --epochs 3" in result.stderr
    args, forwarded = build_parser().parse_known_args(["train", "--epochs", "3"])
    assert (args.command, args.forwards_arguments, forwarded) == ("train", True, ["--epochs", "3"])


def test_serving_commands_do_not_load_training() -> None:
    """Building every command's parser and reading --help imports no training code."""
    probe = (
        "import sys, contextlib, io\n"
        "from orchestrator.console import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main(['serve', '--help'])\n"
        "print(sorted(m for m in sys.modules if m == 'export' or m.startswith('export.')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert result.stdout.strip() == "[]"
