"""OHLCV resampling from a base timeframe to a coarser one on UTC boundaries.

Buckets are left-closed and labelled by their open time, anchored at the Unix epoch, so 4h bars
open at 00/04/08/... UTC and daily bars at midnight UTC; weekly buckets open on Monday 00:00 UTC
and monthly ones on the 1st 00:00 UTC. Empty buckets (weekends) are dropped.
"""

from __future__ import annotations

import pandas as pd

from orchestrator.marketdata.timeframes import Timeframe

_AGGREGATION = {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}


def resample_bars(
    bars: pd.DataFrame,
    timeframe: Timeframe,
    *,
    complete_only: bool = False,
    base: Timeframe | None = None,
) -> pd.DataFrame:
    """`complete_only` drops the newest bucket when it has not closed yet (needs `base`)."""
    if bars.empty:
        return bars.copy()
    out = (
        bars[list(_AGGREGATION)]
        .resample(timeframe.pandas_freq, label="left", closed="left", origin="epoch")
        .agg(_AGGREGATION)
        .dropna(subset=["open"])
    )
    out.index.name = "ts"
    if complete_only:
        if base is None:
            raise ValueError("complete_only needs the base timeframe")
        data_end = base.next_open(bars.index[-1])
        if timeframe.next_open(out.index[-1]) > data_end:
            out = out.iloc[:-1]
    return out
