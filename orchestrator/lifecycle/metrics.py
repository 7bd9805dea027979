"""Prometheus gauges of the model lifecycle, read from the registry when /metrics is scraped
(two queries), so they are as fresh as the scrape and every replica reports the same."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import Gauge

from orchestrator.jobs.runs import RunStore
from orchestrator.lifecycle.registry import ModelRegistry

CHAMPION_VERSION = Gauge(
    "ml_engine_champion_version",
    "The version serving each model set (the registry's champion)",
    ["model_set"],
    multiprocess_mode="livemax",
)
CHALLENGER_VERSION = Gauge(
    "ml_engine_challenger_version",
    "The version each model set is judging against its champion (0: none)",
    ["model_set"],
    multiprocess_mode="livemax",
)
CHALLENGER_SKILL = Gauge(
    "ml_engine_challenger_skill",
    "The challenger's squared-error skill over the champion, 1 - MSE(challenger)/MSE(champion), "
    "on the rows the promotion test compared them on (its shadow rows once it has them)",
    ["model_set"],
    multiprocess_mode="livemax",
)
HOURS_SINCE_RETRAIN = Gauge(
    "ml_engine_hours_since_retrain",
    "Hours since the model set's last retrain finished (any outcome)",
    ["model_set"],
    multiprocess_mode="livemax",
)
RETRAIN_FAILED = Gauge(
    "ml_engine_last_retrain_failed",
    "1 when the model set's last finished retrain failed (its error is in GET /api/models)",
    ["model_set"],
    multiprocess_mode="livemax",
)


async def refresh_gauges(registry: ModelRegistry, runs: RunStore) -> None:
    now = datetime.now(UTC)
    sets: set[str] = set()
    judging: set[str] = set()
    for version in await registry.versions():
        sets.add(version.model_set)
        if version.status == "champion":
            CHAMPION_VERSION.labels(version.model_set).set(version.version)
        elif version.status == "challenger":
            CHALLENGER_VERSION.labels(version.model_set).set(version.version)
            judging.add(version.model_set)
            decision = version.decision or {}
            test = decision.get("shadow") or decision.get("offline") or {}
            skill = test.get("versus_champion", {}).get("mse_skill")
            if isinstance(skill, int | float):
                CHALLENGER_SKILL.labels(version.model_set).set(skill)
    for model_set in sets - judging:
        CHALLENGER_VERSION.labels(model_set).set(0)
    seen: set[str] = set()
    for run in await runs.retrains(limit=200):
        request = run.parameters.retrain
        if request is None or not run.finished or request.model_set in seen:
            continue
        seen.add(request.model_set)
        finished = run.finished_at or run.updated_at
        HOURS_SINCE_RETRAIN.labels(request.model_set).set((now - finished).total_seconds() / 3600)
        RETRAIN_FAILED.labels(request.model_set).set(1 if run.status == "failed" else 0)
