"""Named signal filters. A signal passes when its expected R net of costs reaches the strategy's
minimum edge (orchestrator/signals/costs.py) and the predicted range in the trade's direction
reaches enough of the take-profit distance. A threshold on a probability alone says nothing
about whether a trade pays for its costs, so the edge is the primary filter; `min_confidence`
stays as an optional extra floor (0 by default)."""

from __future__ import annotations

import msgspec


class Strategy(msgspec.Struct, frozen=True):
    name: str
    min_expected_r: float  # expected R net of costs a trade must reach (see signals/costs.py)
    min_range_tp_ratio: float  # predicted move toward TP / TP distance, at the label horizon
    min_confidence: float = 0.0  # an optional floor on P(win); 0 leaves it to the edge
    use_metamodel: bool = True  # P(win) = the served confidence, else the side's classifier
    description: str = ""


STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy(
            "aggressive_filter",
            0.0,
            0.6,
            description="every trade with a non-negative expected R net of costs",
        ),
        Strategy(
            "balanced",
            0.05,
            0.8,
            description="default: expected R >= 0.05 net of costs, range reaching 80 % of TP",
        ),
        Strategy(
            "conservative",
            0.15,
            1.0,
            description="few trades: expected R >= 0.15 net of costs, range must reach TP",
        ),
        Strategy(
            "baseline",
            0.0,
            0.0,
            use_metamodel=False,
            description="the side's own calibrated P(win), any non-negative expected R",
        ),
    )
}
DEFAULT_STRATEGY = "balanced"
