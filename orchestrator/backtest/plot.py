"""Equity and drawdown chart of a backtest, in R."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy.typing as npt
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from orchestrator.fileio import atomic_file


def save_equity_plot(
    path: str | os.PathLike[str],
    times: Sequence[Any] | npt.ArrayLike,
    equity_r: npt.ArrayLike,
    drawdown_r: npt.ArrayLike,
    title: str,
) -> Path:
    """Write a two-panel PNG (or any format matplotlib knows from the suffix): cumulative R on
    top, drawdown in R shaded below.

    A bare Figure on the Agg canvas, not pyplot, so API worker threads share no global state.
    The file is written to a temporary name in the same directory and renamed, so a reader never
    sees a half-written chart.
    """
    target = Path(path)
    figure = Figure(figsize=(11, 6), layout="constrained")
    FigureCanvasAgg(figure)
    top, bottom = figure.subplots(
        2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]}, squeeze=True
    )
    top.plot(times, equity_r, color="tab:blue", linewidth=1.0)
    top.axhline(0.0, color="grey", linewidth=0.6)
    top.set_ylabel("cumulative R")
    top.set_title(title)
    top.grid(alpha=0.3)
    bottom.fill_between(times, drawdown_r, 0.0, color="tab:red", alpha=0.35, linewidth=0)
    bottom.plot(times, drawdown_r, color="tab:red", linewidth=0.6)
    bottom.set_ylabel("drawdown R")
    bottom.grid(alpha=0.3)

    # 0644: mkstemp's 0600 would hide the chart from other readers.
    with atomic_file(target, mode=0o644) as stream:
        figure.savefig(stream, format=target.suffix.lstrip(".") or "png", dpi=110)
    return target
