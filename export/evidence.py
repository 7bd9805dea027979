"""A retrained set's own out-of-sample rows, kept for the promotion test.

The promotion test (export/promotion.py) compares a challenger with the champion on rows
neither was trained on. The challenger's side of each row is what its nested walk-forward
served for it (export/evaluation.nested_served: every fold's head fitted on the folds before);
the champion's side is computed later, by the worker, through the champion Triton serves now.
This file carries the challenger's side from the training process to the worker: one row per
scored test row of folds >= 1, keyed by symbol and bar time.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import numpy.typing as npt

from export.baselines import INTERVAL_LEVEL
from export.evaluation import NestedServed, OutOfFold
from export.promotion import Evidence
from orchestrator.features.head import RANGE_BASELINES

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]


@dataclasses.dataclass(frozen=True, eq=False)
class ChallengerRows:
    symbols: list[str]  # `symbol` indexes this list
    label_bars: list[int]  # (H,) the longest label of each horizon, in bars
    interval_level: float
    symbol: I64  # (n,)
    ts: I64  # (n,) bar open times, ns since the epoch (UTC)
    y: F64  # (n, 2H) realised ranges, ATR units
    served: F64  # (n, 2H) what the challenger's nested walk-forward served
    inside: Bool  # (n, 2H) the realised range inside the served interval
    baselines: dict[str, F64]  # name -> (n, 2H)
    p_long: F64  # (n,) served probabilities and their outcomes
    p_short: F64
    long_won: F64
    short_won: F64

    def __len__(self) -> int:
        return len(self.ts)

    def save(self, path: Path) -> None:
        arrays = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ("symbols", "baselines")
        }
        arrays["symbols"] = np.array(self.symbols)
        arrays.update({f"baseline_{name}": v for name, v in self.baselines.items()})
        np.savez_compressed(path, **arrays)

    @classmethod
    def load(cls, path: Path) -> ChallengerRows:
        with np.load(path) as a:
            return cls(
                symbols=[str(s) for s in a["symbols"]],
                label_bars=[int(b) for b in a["label_bars"]],
                interval_level=float(a["interval_level"]),
                symbol=a["symbol"],
                ts=a["ts"],
                y=a["y"],
                served=a["served"],
                inside=a["inside"],
                baselines={
                    k.removeprefix("baseline_"): a[k] for k in a.files if k.startswith("baseline_")
                },
                p_long=a["p_long"],
                p_short=a["p_short"],
                long_won=a["long_won"],
                short_won=a["short_won"],
            )

    def take(self, rows: Bool | I64) -> ChallengerRows:
        """The same rows' subset (a mask or indices)."""
        return dataclasses.replace(
            self,
            symbol=self.symbol[rows],
            ts=self.ts[rows],
            y=self.y[rows],
            served=self.served[rows],
            inside=self.inside[rows],
            baselines={k: v[rows] for k, v in self.baselines.items()},
            p_long=self.p_long[rows],
            p_short=self.p_short[rows],
            long_won=self.long_won[rows],
            short_won=self.short_won[rows],
        )

    def since(self, ts_ns: int) -> ChallengerRows:
        """Rows of bars opening after `ts_ns` (those the champion was not trained on)."""
        return self.take(self.ts > ts_ns)

    def against(self, champion: F64) -> Evidence:
        """The promotion test's evidence, the champion's served ranges given per row."""
        probability_rows = np.isfinite(self.p_long) & np.isfinite(self.p_short)
        return Evidence(
            y=self.y,
            ts=self.ts,
            label_bars=self.label_bars,
            champion=champion,
            challenger=self.served,
            baselines=self.baselines,
            inside=self.inside,
            interval_level=self.interval_level,
            p_win=np.concatenate([self.p_long[probability_rows], self.p_short[probability_rows]]),
            won=np.concatenate([self.long_won[probability_rows], self.short_won[probability_rows]]),
        )


def challenger_rows(
    oof: OutOfFold, served: NestedServed, symbols: list[str], label_bars: list[int]
) -> ChallengerRows:
    """The rows the nested walk-forward served (folds >= 1, every range column finite)."""
    rows = np.flatnonzero(np.isfinite(served.ranges).all(axis=1))
    y = oof.ranges[rows]
    return ChallengerRows(
        symbols=symbols,
        label_bars=label_bars,
        interval_level=INTERVAL_LEVEL,
        symbol=oof.symbol[rows],
        ts=oof.ts[rows],
        y=y,
        served=served.ranges[rows],
        inside=(y >= served.lower[rows]) & (y <= served.upper[rows]),
        baselines={name: getattr(oof, name)[rows] for name in RANGE_BASELINES},
        p_long=served.p_long[rows],
        p_short=served.p_short[rows],
        long_won=oof.long_won[rows],
        short_won=oof.short_won[rows],
    )
