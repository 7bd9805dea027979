"""The market replay continues each symbol seamlessly from its last stored bar."""

from __future__ import annotations

import numpy as np
import pandas as pd

from orchestrator.demo.generator import MARKETS, generate_market
from orchestrator.demo.replay import Replay
from orchestrator.ingest.writer import write_bars
from orchestrator.marketdata.db import Database
from orchestrator.marketdata.store import BarStore, SymbolInfo
from orchestrator.marketdata.timeframes import Timeframe
from orchestrator.settings import DatabaseSettings
from tests.conftest import cli_env, run_cli

SYMBOLS = ["BTCUSD", "EURUSD"]


async def _seed(db: Database) -> pd.DataFrame:
    # EURUSD's history ends on a Friday evening: its replay must resume after the weekend.
    frame = generate_market(SYMBOLS, days=3, end="2025-06-27 22:00")
    info = {s: SymbolInfo(s, MARKETS[s].asset_class, MARKETS[s].tick_size) for s in SYMBOLS}
    await write_bars(db, frame, info, show_progress=False)
    return frame


async def test_replay_appends_one_bar_per_symbol_per_step(clean_db: Database) -> None:
    seeded = await _seed(clean_db)
    replay = Replay(clean_db, SYMBOLS)
    for _ in range(4):
        await replay.step()
    store = BarStore(clean_db)
    for symbol in SYMBOLS:
        before = seeded[seeded["symbol"] == symbol]
        after = await store.latest_bars(symbol, Timeframe.M5, 10_000)
        new = after[after.index > before["ts"].max()]
        assert len(after) == len(before) + 4
        assert len(new) == 4
        assert new["open"].iloc[0] == before["close"].iloc[-1]  # no jump at the seam
        assert (new["low"] <= new[["open", "close"]].min(axis=1)).all()
        assert (new["high"] >= new[["open", "close"]].max(axis=1)).all()
        ticks = new[["open", "high", "low", "close"]].to_numpy() / MARKETS[symbol].tick_size
        assert np.allclose(ticks, np.round(ticks), atol=1e-6)
    eur = await store.latest_bars("EURUSD", Timeframe.M5, 4)
    assert (eur.index.dayofweek == 6).all()  # Sunday: the 24/5 market reopens after the weekend
    btc = await store.latest_bars("BTCUSD", Timeframe.M5, 5)
    assert (np.diff(btc.index.asi8) == 300 * 10**9).all()  # 24/7: back to back
    assert replay.appended == 8


async def test_replay_cli_runs_a_fixed_number_of_steps(
    clean_db: Database, db_settings: DatabaseSettings
) -> None:
    await _seed(clean_db)
    env = cli_env(db_settings)
    done = run_cli("replay", "--symbols", "BTCUSD", "--interval-s", "0.01", "--steps", "2", env=env)
    assert done.returncode == 0, done.stderr
    assert "replay bar 2: BTCUSD" in done.stdout
    missing = run_cli("replay", "--symbols", "DOGEUSD", "--steps", "1", env=env)
    assert missing.returncode == 2
    assert "no demo market for DOGEUSD" in missing.stderr
