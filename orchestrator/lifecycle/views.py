"""What `GET /api/models` and `ml-engine models list` show: per model set, its versions with the
card's numbers beside the live ones, and the latest moves."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from orchestrator.errors import ErrorBody
from orchestrator.jobs.runs import Run, RunStore
from orchestrator.lifecycle.registry import ModelRegistry, ModelVersion, StatusEvent
from orchestrator.lifecycle.retraining import RetrainResult
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


class RetrainView(msgspec.Struct):
    """A retrain run: its progress while it runs, then the version it made and the verdict."""

    run_id: str
    model_set: str
    trigger: str  # manual, schedule, drift
    reason: str
    status: str  # queued, running, done, failed, cancelled
    phase: str
    progress: float
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    status_url: str
    outcome: RetrainResult | None  # when done
    error: ErrorBody | None  # when failed


class ModelSetView(msgspec.Struct):
    model_set: str
    timeframe: str
    symbols: list[str]
    champion: int | None
    challenger: int | None
    versions: list[VersionView]  # newest first
    events: list[StatusEvent]  # newest first
    last_retrain: RetrainView | None = None


def retrain_view(run: Run) -> RetrainView:
    request = run.parameters.retrain
    if request is None:
        raise ValueError(f"run {run.id} is a {run.kind}, not a retrain")
    outcome = msgspec.json.decode(run.result, type=RetrainResult) if run.result else None
    return RetrainView(
        run_id=run.id,
        model_set=request.model_set,
        trigger=request.trigger,
        reason=request.reason,
        status=run.status,
        phase=run.phase,
        progress=run.progress,
        attempts=run.attempts,
        created_at=run.created_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
        status_url=f"/api/models/retrains/{run.id}",
        outcome=outcome,
        error=run.error,
    )


def _latest(retrains: list[Run]) -> dict[str, RetrainView]:
    """The newest retrain of each set (`retrains` newest first)."""
    latest: dict[str, RetrainView] = {}
    for run in retrains:
        view = retrain_view(run)
        latest.setdefault(view.model_set, view)
    return latest


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
    retrain: RetrainView | None,
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
        last_retrain=retrain,
    )


def _live(quality: list[VersionQuality]) -> dict[tuple[str, str], VersionQuality]:
    return {(q.timeframe, q.model_version): q for q in quality}


async def model_sets(
    registry: ModelRegistry, runs: RunStore, quality: list[VersionQuality], events: int = 10
) -> ModelsResponse:
    """Every registered set, with each version's live quality where the tracker has some."""
    by_set: dict[str, list[ModelVersion]] = {}
    for version in await registry.versions():
        by_set.setdefault(version.model_set, []).append(version)
    latest = _latest(await runs.retrains())
    return ModelsResponse(
        [
            _set_view(
                versions, _live(quality), await registry.events(name, events), latest.get(name)
            )
            for name, versions in by_set.items()
        ]
    )


async def model_set(
    registry: ModelRegistry,
    runs: RunStore,
    quality: list[VersionQuality],
    name: str,
    events: int = 10,
) -> ModelSetView:
    """One set (ModelVersionNotFoundError for an unknown one)."""
    versions = await registry.versions_of(name)
    latest = _latest(await runs.retrains(name, limit=1))
    return _set_view(
        versions, _live(quality), await registry.events(name, events), latest.get(name)
    )


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
        if entry.last_retrain is not None:
            r = entry.last_retrain
            outcome = f": v{r.outcome.version} {r.outcome.verdict}" if r.outcome else ""
            lines.append(
                f"  last retrain {r.run_id} ({r.trigger}) {r.status} {r.phase} "
                f"{r.progress:.0%}{outcome}"
            )
    return "\n".join(lines) if lines else "no model versions registered"
