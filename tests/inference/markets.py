"""Markets the bar-close tests write: several symbols with the training history at different
price scales, stored as 5m bars through the ingest writer."""

from __future__ import annotations

import pandas as pd

from orchestrator.ingest.writer import write_bars
from orchestrator.marketdata.db import Database
from orchestrator.marketdata.store import SymbolInfo
from orchestrator.marketdata.timeframes import Timeframe


async def write_5m(db: Database, frames: dict[str, pd.DataFrame]) -> None:
    """Every frame's bars as 5m bars of its symbol, in one write."""
    rows = pd.concat(
        [f.reset_index().assign(symbol=s, timeframe="5m") for s, f in frames.items()],
        ignore_index=True,
    )
    info = {s: SymbolInfo(s, "crypto", 0.01, Timeframe.M5) for s in frames}
    await write_bars(db, rows, info, show_progress=False)


async def scaled_market(
    db: Database, base: pd.DataFrame, symbols: list[str] | tuple[str, ...]
) -> dict[str, pd.DataFrame]:
    """`base`'s bars for each symbol, prices scaled by 1 + k/10 (same volumes), written."""
    frames = {s: base * (1 + k / 10) for k, s in enumerate(symbols)}
    for frame in frames.values():
        frame["volume"] = base["volume"]
    await write_5m(db, frames)
    return frames
