"""What the scale benchmarks write: their results, and log-log plots of seconds against symbols."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parents[1] / "results"


def loglog(
    lines: Sequence[tuple[str, str, Sequence[float], Sequence[float]]],
    title: str,
    xlabel: str,
    path: Path,
) -> None:
    """Lines of (label, matplotlib style, sizes, seconds) on log-log axes, saved to `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for label, style, n, seconds in lines:
        ax.plot(n, seconds, style, label=label)
    ax.set(xscale="log", yscale="log", xlabel=xlabel, ylabel="seconds")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def save(results: Any, stem: str, draw: Callable[[Any, Path], None]) -> None:
    """bench/results/<stem>.json and the plot `draw` makes of it, <stem>.png."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    draw(results, RESULTS / f"{stem}.png")
    print(f"-> {RESULTS / stem}.json, {stem}.png")
