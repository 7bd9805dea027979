"""The live half of the promotion test: a challenger in shadow, judged on bars it never saw.

Triton holds the challenger beside the champion (orchestrator/lifecycle/service.py); nothing
serves it. A cron job on the workers (RETRAIN_JUDGE_CRON) scores both by version number on
every bar that arrived after the challenger's training data, through the backtest's scoring
path (the same features, spec and Triton models a live request uses, so the numbers equal what
the bar-close sweep would have computed), and lets the store's later bars settle them: a bar is
a shadow outcome once its longest horizon has passed. With at least
RETRAIN_MIN_SHADOW_OUTCOMES of them the test's live half decides (export/promotion.py): the
challenger is promoted (Triton and the registry switched together), rejected with the numbers
(and unloaded), or keeps waiting with its numbers so far in the registry.

Why not score the challenger inside the bar-close sweep: the sweep is the engine's hot path,
sized for 10,000 symbols at bar close, and its feature states are normalised with the served
spec; a shadow there would double the sweep and the states for a result that the store's bars
reproduce exactly, later, off the hot path.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pandas as pd
import tritonclient.grpc.aio as grpc_aio

from export.promotion import PROMOTE, REJECT, Evidence, PromotionDecision, TestResult, decide_live
from export.train import TrainConfig, prepare_symbol
from orchestrator.backtest.predictions import BarPredictions, history_bars_wanted, predict_bars
from orchestrator.features.head import baseline_predictions, interval_ratios
from orchestrator.inference.client import SignalModels
from orchestrator.lifecycle.registry import ModelRegistry, ModelVersion
from orchestrator.lifecycle.service import Lifecycle
from orchestrator.lifecycle.switch import Loaded, pin_profiles
from orchestrator.marketdata.db import Database
from orchestrator.marketdata.store import BarStore
from orchestrator.marketdata.timeframes import parse_timeframe

log = logging.getLogger("export.shadow")
ACTOR = "promotion test"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _rows(frames: list[dict[str, Any]], label_bars: list[int], level: float) -> Evidence | None:
    if not frames:
        return None
    parts = {key: np.concatenate([f[key] for f in frames]) for key in frames[0] if key != "base"}
    order = np.argsort(parts["ts"], kind="stable")
    names = frames[0]["base"].keys()
    baselines = {n: np.concatenate([f["base"][n] for f in frames])[order] for n in names}
    probability = np.isfinite(parts["p_long"][order]) & np.isfinite(parts["p_short"][order])
    return Evidence(
        y=parts["y"][order],
        ts=parts["ts"][order],
        label_bars=label_bars,
        champion=parts["champion"][order],
        challenger=parts["challenger"][order],
        baselines=baselines,
        inside=parts["inside"][order],
        interval_level=level,
        p_win=np.concatenate(
            [parts["p_long"][order][probability], parts["p_short"][order][probability]]
        ),
        won=np.concatenate(
            [parts["long_won"][order][probability], parts["short_won"][order][probability]]
        ),
    )


async def shadow_evidence(
    challenger: ModelVersion,
    champion: ModelVersion,
    *,
    db: Database,
    triton: grpc_aio.InferenceServerClient,
    timeout_s: float,
) -> Evidence | None:
    """Both versions' served ranges on the settled bars after the challenger's training data,
    with the realised ranges and trade outcomes (None: no such bar yet)."""
    model_set = challenger.model_set
    new = SignalModels(triton, timeout_s, model_set, version=str(challenger.version))
    old = SignalModels(triton, timeout_s, model_set, version=str(champion.version))
    spec = await new.spec()  # the pinned version's own
    if spec.head is None:
        return None
    tf = parse_timeframe(challenger.timeframe)
    config = TrainConfig(timeframe=tf, show_progress=False)
    ratios = interval_ratios(spec.head, None)
    since = challenger.trained_through or challenger.created_at
    store = BarStore(db)
    frames: list[dict[str, Any]] = []
    label_bars: list[int] = []
    for symbol in challenger.symbols:
        try:
            bars = await store.bars_between(symbol, tf, _EPOCH, datetime.now(UTC) + timedelta(1))
        except Exception as exc:  # a symbol gone from the store: judge on the others
            log.warning("shadow: %s skipped: %s", symbol, exc)
            continue
        times = pd.DatetimeIndex(bars.index).asi8
        first = int(np.searchsorted(times, int(since.timestamp() * 1e9), side="right"))
        if first >= len(bars):
            continue
        start = max(0, first - history_bars_wanted(spec))
        window = bars.iloc[start:]
        data = await asyncio.to_thread(prepare_symbol, symbol, window, config)
        scored: list[BarPredictions] = [
            await predict_bars(m, window, symbol=symbol, first=first - start, cache_dir=None)
            for m in (new, old)
        ]
        # The challenger's training read labels up to its longest horizon past its last row:
        # bars that near are not unseen yet (the purge of training).
        skip = data.label_span
        at = slice(first - start + skip, None)
        y = data.ranges[at].astype(np.float64)
        long_won, short_won = data.long_label[at], data.short_label[at]
        ok = np.isfinite(y).all(axis=1)
        scored = [p.tail(skip) for p in scored]
        for p in scored:
            ok &= p.valid & np.isfinite(p.served_range).all(axis=1)
        if not ok.any():
            continue
        served = scored[0].served_range[ok]
        settled = y[ok]
        frames.append(
            {
                "ts": scored[0].times[ok],
                "y": settled,
                "challenger": served,
                "champion": scored[1].served_range[ok],
                "inside": (settled >= served * ratios[:, 0]) & (settled <= served * ratios[:, 1]),
                "p_long": np.where(np.isfinite(long_won[ok]), scored[0].p_long[ok], np.nan),
                "p_short": np.where(np.isfinite(short_won[ok]), scored[0].p_short[ok], np.nan),
                "long_won": long_won[ok],
                "short_won": short_won[ok],
                "base": baseline_predictions(spec.head, data.har[at][ok], data.season[at][ok]),
            }
        )
        label_bars = [
            max(a, b)
            for a, b in zip(label_bars or data.horizon_bars, data.horizon_bars, strict=True)
        ]
    return _rows(frames, label_bars, spec.head.interval_level)


async def judge_challenger(
    model_set: str,
    *,
    db: Database,
    triton: grpc_aio.InferenceServerClient,
    timeout_s: float,
    repository: Path,
    min_shadow_outcomes: int,
    peers: tuple[str, ...] = (),
) -> PromotionDecision | None:
    """One look at the set's challenger (None: it has none, or no offline result to start
    from); promotes, rejects or records the numbers so far."""
    registry = ModelRegistry(db)
    versions = await registry.versions_of(model_set)
    challenger = next((v for v in versions if v.status == "challenger"), None)
    champion = next((v for v in versions if v.status == "champion"), None)
    if challenger is None or champion is None or not challenger.decision:
        return None
    offline = challenger.decision.get("offline")
    if offline is None:
        return None
    first = msgspec.convert(offline, TestResult)
    shadow = await shadow_evidence(challenger, champion, db=db, triton=triton, timeout_s=timeout_s)
    decision = decide_live(first, shadow, min_shadow_outcomes)
    numbers = msgspec.to_builtins(decision)
    lifecycle = Lifecycle(registry, triton, repository, timeout_s, peers)
    if decision.verdict == PROMOTE:
        await lifecycle.promote(
            model_set, challenger.version, ACTOR, decision.reason, decision=numbers
        )
    elif decision.verdict == REJECT:
        await registry.move(
            model_set, challenger.version, "rejected", ACTOR, decision.reason, decision=numbers
        )
        loaded = Loaded(champion.version)
        await lifecycle.serve(model_set, loaded)  # the champion alone again
        await asyncio.to_thread(pin_profiles, repository, model_set, loaded)
    else:
        await registry.record_decision(model_set, challenger.version, numbers, decision.reason)
    log.info("%s v%d: %s (%s)", model_set, challenger.version, decision.verdict, decision.reason)
    return decision
