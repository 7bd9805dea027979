"""Retraining as jobs: what a retrain run is asked, what it answers, and its settings.

A retrain is a durable run (the `backtest_runs` table, kind `retrain`, carried by SAQ like a
backtest) so it shows progress, survives a dead worker (retried, nothing half-installed) and can
be cancelled. Three things start one: the schedule (a SAQ cron job on the workers), a drift
warning of live quality, and `POST /api/models/{set}/retrain`. At most one retrain of a set is
queued or running at a time. The worker's side is export/retrain.py (the training stack).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec
from croniter import croniter

from orchestrator.errors import SettingsError
from orchestrator.settings import env_int, env_list, env_text

Trigger = Literal["manual", "schedule", "drift"]


class RetrainRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    model_set: str  # the ensemble a timeframe is served by: signal_ensemble, signal_ensemble_1h
    trigger: Trigger
    reason: str
    actor: str
    # Training options (None: the settings'); epochs and folds as `python -m export train`.
    epochs: int | None = None
    folds: int | None = None
    window_days: int | None = None


class RetrainResult(msgspec.Struct, frozen=True, kw_only=True):
    """What a finished retrain did: the version it installed and the promotion test's verdict."""

    model_set: str
    version: int
    champion: int  # the version that served while the challenger was judged
    verdict: str  # "wait" (a challenger, in shadow until enough live outcomes) or "reject"
    reason: str
    trained_from: datetime | None
    trained_through: datetime | None
    offline_rows: int  # rows since the champion's training the test compared on
    seconds: float


class RetrainSettings(msgspec.Struct, frozen=True):
    # When the workers retrain every set with a champion (cron, UTC; "" switches it off).
    # Daily by default: a day of new bars is a few hundred 5m rows per symbol.
    cron: str = "0 2 * * *"
    # Train on the newest this many days of bars (0: all history).
    window_days: int = 0
    epochs: int = 8  # the export's defaults (python -m export train)
    folds: int = 5
    # A drift warning of live quality retrains its set at most this often.
    drift_cooldown_h: int = 24
    # The sets the schedule retrains (empty: every set with a champion).
    sets: tuple[str, ...] = ()
    # When the workers score each challenger in shadow on the bars since its training and
    # apply the promotion test's live half ("" : never, challengers then wait for an admin).
    judge_cron: str = "*/15 * * * *"
    # Settled shadow bars a challenger needs before the live half may promote it.
    min_shadow_outcomes: int = 200
    # Rejected and retired versions whose files a retrain keeps (the newest; the champion, the
    # challenger and the rollback target are always kept).
    keep_versions: int = 5

    @classmethod
    def from_env(cls) -> RetrainSettings:
        d = cls()
        return cls(
            cron=_cron("RETRAIN_CRON", d.cron),
            judge_cron=_cron("RETRAIN_JUDGE_CRON", d.judge_cron),
            min_shadow_outcomes=env_int(
                "RETRAIN_MIN_SHADOW_OUTCOMES", d.min_shadow_outcomes, positive=True
            ),
            window_days=env_int("RETRAIN_WINDOW_DAYS", d.window_days),
            epochs=env_int("RETRAIN_EPOCHS", d.epochs, positive=True),
            folds=env_int("RETRAIN_FOLDS", d.folds, positive=True),
            drift_cooldown_h=env_int("RETRAIN_DRIFT_COOLDOWN_H", d.drift_cooldown_h),
            keep_versions=env_int("RETRAIN_KEEP_VERSIONS", d.keep_versions),
            sets=env_list("RETRAIN_SETS", d.sets),
        )


def _cron(name: str, default: str) -> str:
    cron = env_text(name, default).strip()
    if cron and not croniter.is_valid(cron):
        raise SettingsError(
            f"environment variable {name}={cron!r} is not a cron expression; give five fields "
            f"such as {default!r}, or an empty value to switch it off"
        )
    return cron
