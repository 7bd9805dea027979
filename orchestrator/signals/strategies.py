"""Named signal filters. A signal passes when the metamodel's confidence and the predicted range in
the trade's direction clear the strategy's thresholds."""

from __future__ import annotations

import msgspec


class Strategy(msgspec.Struct, frozen=True):
    name: str
    min_confidence: float  # metamodel P(win) (or the classifier's, without the metamodel)
    min_range_tp_ratio: float  # predicted move toward TP / TP distance, at the label horizon
    use_metamodel: bool = True
    description: str = ""


STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy("aggressive_filter", 0.35, 0.6, description="many trades; weak filters"),
        Strategy("balanced", 0.45, 0.8, description="default: moderate confidence and range"),
        Strategy(
            "conservative",
            0.55,
            1.0,
            description="few trades: high confidence, predicted range must reach TP",
        ),
        Strategy(
            "baseline",
            0.5,
            0.0,
            use_metamodel=False,
            description="no metamodel: the TP/SL classifier's own probability",
        ),
    )
}
DEFAULT_STRATEGY = "balanced"
