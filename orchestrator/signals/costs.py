"""Trading costs per asset class, and the expected R of a trade net of them.

A signal is worth taking only when it pays for its costs: with the calibrated probability p that
the take-profit is hit first, a trade that risks 1R to make TP/SL R has

    expected_r = p x (TP/SL) - (1 - p) - costs in R,

a lower bound that counts every outcome but the take-profit as a full stop (the time stop and the
"neither level" outcome usually lose less). Costs are a round trip's fees and slippage as a
fraction of price, turned into R by the stop distance: cost_r = round_trip x close / (SL x ATR).

The defaults are typical retail round trips; set TRADING_COSTS to override per class, e.g.
`TRADING_COSTS="crypto=0.0005:0.0002,forex=0.00003:0.00002"` (fee per side : slippage per fill).
"""

from __future__ import annotations

import msgspec
import numpy as np
import numpy.typing as npt

from orchestrator.errors import SettingsError
from orchestrator.settings import env_text

F64 = npt.NDArray[np.float64]


class TradingCosts(msgspec.Struct, frozen=True):
    """Fractions of price: fee per side, slippage per fill (0.0002 = 2 bps)."""

    fee_rate: float
    slippage: float

    @property
    def round_trip(self) -> float:
        return 2 * (self.fee_rate + self.slippage)


DEFAULT_COSTS: dict[str, TradingCosts] = {
    "crypto": TradingCosts(0.0004, 0.0001),  # taker fee 4 bps, 1 bp slippage
    "forex": TradingCosts(0.00003, 0.00002),  # ~1 pip round trip on a major
    "metal": TradingCosts(0.0001, 0.00005),
    "equity": TradingCosts(0.0002, 0.0001),
    "index": TradingCosts(0.00005, 0.00005),  # index futures: a tick a side
    "commodity": TradingCosts(0.0001, 0.0001),
}


class CostSettingsError(SettingsError):
    """TRADING_COSTS could not be read; the message says which entry and how to write it."""


def parse_costs(raw: str) -> dict[str, TradingCosts]:
    """DEFAULT_COSTS with the classes named in `raw` ("class=fee:slippage,...") replaced."""
    costs = dict(DEFAULT_COSTS)
    for entry in filter(None, (part.strip() for part in raw.split(","))):
        name, _, values = entry.partition("=")
        fee, _, slippage = values.partition(":")
        try:
            parsed = TradingCosts(float(fee), float(slippage))
        except ValueError:
            raise CostSettingsError(
                f"TRADING_COSTS entry {entry!r} must read class=fee:slippage as fractions of "
                "price, e.g. crypto=0.0004:0.0001"
            ) from None
        if name not in DEFAULT_COSTS or min(parsed.fee_rate, parsed.slippage) < 0:
            raise CostSettingsError(
                f"TRADING_COSTS entry {entry!r}: the class must be one of "
                f"{', '.join(DEFAULT_COSTS)} and both costs >= 0"
            )
        costs[name] = parsed
    return costs


def costs_for(asset_class: str) -> TradingCosts:
    """The costs of an asset class, TRADING_COSTS applied (an unknown class: the dearest)."""
    costs = parse_costs(env_text("TRADING_COSTS"))
    return costs.get(asset_class, max(costs.values(), key=lambda c: c.round_trip))


def cost_in_r(round_trip: float, close: npt.ArrayLike, atr: npt.ArrayLike, sl_atr: float) -> F64:
    """The round trip's cost in R: a fraction of price over the stop distance."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out: F64 = (
            round_trip * np.asarray(close, np.float64) / (sl_atr * np.asarray(atr, np.float64))
        )
    return out


def expected_r(p_win: npt.ArrayLike, tp_atr: float, sl_atr: float, cost_r: npt.ArrayLike) -> F64:
    """p x TP/SL - (1 - p) - costs: every non-win counted as a full stop."""
    p = np.asarray(p_win, np.float64)
    out: F64 = p * (tp_atr / sl_atr) - (1 - p) - np.asarray(cost_r, np.float64)
    return out
