"""What `GET /api/models` and `ml-engine models list` show: per model set, its versions with the
card's numbers beside the live ones, and the latest moves."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from orchestrator.lifecycle.registry import ModelRegistry, ModelVersion, StatusEvent
from orchestrator.quality.totals import VersionQuality


class VersionView(msgspec.Struct):
    version: int
    status: str  # candidate, challenger, champion, retired, rejected
    status_reason: str
    status_changed_at: datetime
    created_at: datetime
    trained_through: datetime | None
    feature_fingerprint: str
    card: dict[str, Any]  # the card's numbers: served skill per horizon, coverage, ECE
    decision: dict[str, Any] | None  # the promotion test's numbers, when one ran
    live: VersionQuality | None  # served vs realised since it was loaded (None: no outcomes yet)


class ModelSetView(msgspec.Struct):
    model_set: str
    timeframe: str
    symbols: list[str]
    champion: int | None
    challenger: int | None
    versions: list[VersionView]  # newest first
    events: list[StatusEvent]  # newest first


class ModelsResponse(msgspec.Struct):
    sets: list[ModelSetView]


def _view(version: ModelVersion, live: dict[tuple[str, str], VersionQuality]) -> VersionView:
    return VersionView(
        version=version.version,
        status=version.status,
        status_reason=version.status_reason,
        status_changed_at=version.status_changed_at,
        created_at=version.created_at,
        trained_through=version.trained_through,
        feature_fingerprint=version.feature_fingerprint,
        card=version.metrics,
        decision=version.decision,
        live=live.get((version.timeframe, str(version.version))),
    )


def _set_view(
    versions: list[ModelVersion],
    live: dict[tuple[str, str], VersionQuality],
    events: list[StatusEvent],
) -> ModelSetView:
    by_status = {v.status: v.version for v in versions if v.status in ("champion", "challenger")}
    return ModelSetView(
        model_set=versions[0].model_set,
        timeframe=versions[0].timeframe,
        symbols=versions[0].symbols,
        champion=by_status.get("champion"),
        challenger=by_status.get("challenger"),
        versions=[_view(v, live) for v in versions],
        events=events,
    )


def _live(quality: list[VersionQuality]) -> dict[tuple[str, str], VersionQuality]:
    return {(q.timeframe, q.model_version): q for q in quality}


async def model_sets(
    registry: ModelRegistry, quality: list[VersionQuality], events: int = 10
) -> ModelsResponse:
    """Every registered set, with each version's live quality where the tracker has some."""
    by_set: dict[str, list[ModelVersion]] = {}
    for version in await registry.versions():
        by_set.setdefault(version.model_set, []).append(version)
    return ModelsResponse(
        [
            _set_view(versions, _live(quality), await registry.events(name, events))
            for name, versions in by_set.items()
        ]
    )


async def model_set(
    registry: ModelRegistry, quality: list[VersionQuality], name: str, events: int = 10
) -> ModelSetView:
    """One set (ModelVersionNotFoundError for an unknown one)."""
    versions = await registry.versions_of(name)
    return _set_view(versions, _live(quality), await registry.events(name, events))


def render(response: ModelsResponse) -> str:
    """A terminal table: one line per version, the champion and challenger marked."""
    lines = []
    for entry in response.sets:
        lines.append(f"{entry.model_set} ({entry.timeframe}, {', '.join(entry.symbols)})")
        for v in entry.versions:
            skill = v.card.get("served_skill", {})
            skills = " ".join(
                f"{h}={s:+.3f}" if isinstance(s, int | float) else f"{h}=n/a"
                for h, s in skill.items()
            )
            through = v.trained_through.date().isoformat() if v.trained_through else "?"
            lines.append(
                f"  v{v.version:<4} {v.status:<10} trained through {through}  skill {skills}"
                f"  ({v.status_reason})"
            )
    return "\n".join(lines) if lines else "no model versions registered"
