"""`model-report`: the live quality a running API has measured, as tables for a terminal.

Any replica answers for all of them: the totals it reports are the ones every replica counts in
Redis, unless Redis did not answer (each entry says which).
"""

from __future__ import annotations

import httpx
import msgspec

from orchestrator.quality.totals import Source, VersionQuality

_SOURCES: dict[Source, str] = {
    "redis": "shared by every replica (Redis)",
    "memory": "this replica's memory only: Redis did not answer",
}


class _Stats(msgspec.Struct):
    quality: list[VersionQuality] = msgspec.field(default_factory=list)


def _f(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def fetch_quality(url: str, api_key: str, timeout_s: float = 10.0) -> list[VersionQuality]:
    """GET /api/stats of the API at `url`; raises httpx.HTTPError when it does not answer."""
    headers = {"X-API-Key": api_key} if api_key else {}
    response = httpx.get(f"{url.rstrip('/')}/api/stats", headers=headers, timeout=timeout_s)
    response.raise_for_status()
    return msgspec.json.decode(response.content, type=_Stats).quality


def render(report: list[VersionQuality]) -> str:
    if not report:
        return (
            "no horizon has elapsed yet for a served prediction: live quality appears once the "
            "first horizon of a prediction this API served has passed"
        )
    lines = []
    for entry in report:
        level = _f(entry.interval_level, 2)
        lines += [
            f"{entry.timeframe} model version {entry.model_version} (interval level {level}; "
            f"{_SOURCES[entry.source]})",
            f"  {'horizon':<10} {'resolved':>8} {'cov.high':>8} {'cov.low':>8} {'recent':>7}"
            f" {'MSE':>9} {'MSE HAR':>9} {'skill':>7}",
        ]
        for h in entry.horizons:
            lines.append(
                f"  {h.horizon:<10} {h.resolved:>8} {_f(h.coverage_high):>8} "
                f"{_f(h.coverage_low):>8} {_f(h.recent_coverage):>7} {_f(h.mse_served, 4):>9} "
                f"{_f(h.mse_baseline, 4):>9} {_f(h.skill):>7}"
            )
        lines.append(
            f"  trades resolved {entry.trades}: win rate {_f(entry.win_rate)}, mean confidence "
            f"{_f(entry.mean_confidence)}, ECE {_f(entry.confidence_ece)}"
        )
        for side in entry.sides:
            if side.trades:
                lines.append(
                    f"  {side.side} trades {side.trades}: won {_f(side.win_rate)}, served "
                    f"P({side.side} wins) {_f(side.mean_p)} on average"
                )
        lines += [f"  WARNING {w}" for w in entry.warnings]
    return "\n".join(lines)
