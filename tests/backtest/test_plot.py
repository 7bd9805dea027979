"""The equity chart is written whole, under the requested name only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from orchestrator.backtest.plot import save_equity_plot


def test_save_equity_plot(tmp_path: Path) -> None:
    times = pd.date_range("2024-01-01", periods=50, freq="5min")
    equity = np.cumsum(np.where(np.arange(50) % 7 == 0, 2.0, -0.25))
    drawdown = equity - np.maximum.accumulate(np.maximum(equity, 0.0))
    path = save_equity_plot(tmp_path / "out" / "equity.png", times, equity, drawdown, "test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["equity.png"]
