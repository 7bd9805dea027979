"""The promotion test end to end on a market whose regime changes, against the real MariaDB,
Triton and the export pipeline: a retrain that learned the new regime is promoted, a placebo
trained on the same bars with its targets shuffled in time is rejected, both in GET /api/models.

The champion is trained while prices walk without drift. Then the market trends -- runs of
RUN_BARS with a drift of TREND sigma a bar, up or down -- and the real
retrain job (`python -m export train` in a child, as a worker runs it) trains on the trending
bars, is judged offline on its nested folds, then live on bars that arrived after it.

Why daily bars: the test pools each row's losses over the horizons, so the longest horizon's
squared error weighs most, and its HAC variance counts every label overlapping the next up to
twice that horizon. At 1h (a 120-bar position horizon, 240 lags) a month of new bars holds
about three independent outcomes, and whether a good challenger passed depended on the path of
those weeks (one run of eight promoted; docs/lifecycle.md has the table). At 1d the horizons
are 1, 2, 5 and 20 bars, and AFTER_DAYS of six symbols give the test enough independent outcomes:
with other seeds, every retrain that passed offline was promoted live with p far below 0.05
(docs/lifecycle.md has the runs). Training is seeded, so this seed's verdicts repeat.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import msgspec
import numpy as np
import pandas as pd
import pytest
import tritonclient.grpc.aio as grpc_aio
from litestar.testing import AsyncTestClient

from export.exporter import export_profiles
from export.promotion import PROMOTE, REJECT
from export.retrain import judge, retrain
from export.shadow import judge_challenger
from export.train import SymbolData, TrainConfig, prepare_symbol, train_all
from orchestrator.api.app import create_app
from orchestrator.devstack.triton import TritonServer
from orchestrator.inference.client import SignalModels
from orchestrator.inference.models import ENSEMBLE, served_name
from orchestrator.ingest.writer import write_bars
from orchestrator.lifecycle.exported import sync_registry
from orchestrator.lifecycle.retraining import RetrainRequest, RetrainSettings
from orchestrator.marketdata.db import Database
from orchestrator.marketdata.store import BarStore, SymbolInfo
from orchestrator.marketdata.timeframes import Timeframe
from orchestrator.settings import DatabaseSettings
from tests.api.conftest import api_settings
from tests.conftest import cli_env, serve_triton
from tests.lifecycle.conftest import empty_registry

# Two trainings (the champion in-process, the retrain in a child) and a placebo: about 3 min
# alone on two cores, over 10 when another training shares them.
pytestmark = pytest.mark.timeout(1_800)

SYMBOLS = tuple(f"REG{letter}USD" for letter in "ABCDEF")
TIMEFRAME = Timeframe.D1  # a market open every day: horizons of 1, 2, 5 and 20 bars
WALK_DAYS, TREND_DAYS, AFTER_DAYS = 1_000, 1_500, 500
END = pd.Timestamp("2026-06-01", tz="UTC")  # a fixed calendar: the same features every run
SIGMA = 0.02  # per bar
TREND = 0.5  # drift per bar in sigmas, in runs of RUN_BARS
RUN_BARS = 40
TIMEOUT_S = 60.0
MODEL_SET = served_name(ENSEMBLE, TIMEFRAME.value)
CHAMPION_CONFIG = TrainConfig(
    timeframe=TIMEFRAME, epochs=2, folds=3, stride=1, xgb_rounds=40, show_progress=False
)


def _market(seed: int, end: pd.Timestamp) -> pd.DataFrame:
    """WALK_DAYS without drift, then TREND_DAYS + AFTER_DAYS of trending runs, ending at `end`."""
    rng = np.random.default_rng(seed)
    walk, trend = WALK_DAYS, TREND_DAYS + AFTER_DAYS
    n = walk + trend
    runs = np.repeat(rng.choice([-1.0, 1.0], size=trend // RUN_BARS + 1), RUN_BARS)[:trend]
    drift = np.concatenate([np.zeros(walk), runs * TREND * SIGMA])
    returns = drift + SIGMA * rng.standard_normal(n)
    steps = rng.standard_normal((n, 8)) / np.sqrt(8) * SIGMA
    steps += (returns - steps.sum(axis=1))[:, None] / 8
    log_open = np.log(100.0) + np.cumsum(np.concatenate([[0.0], returns[:-1]]))
    path = log_open[:, None] + np.cumsum(steps, axis=1)
    open_, close = np.exp(log_open), np.exp(path[:, -1])
    high = np.maximum(np.exp(path.max(axis=1)), np.maximum(open_, close))
    low = np.minimum(np.exp(path.min(axis=1)), np.minimum(open_, close))
    index = pd.date_range(end=end - pd.Timedelta(days=1), periods=n, freq="1D", tz="UTC")
    return pd.DataFrame(
        {
            "open": open_.round(4),
            "high": high.round(4),
            "low": low.round(4),
            "close": close.round(4),
            "volume": (100 * rng.lognormal(0.0, 0.35, n)).round(2),
        },
        index=pd.DatetimeIndex(index, name="ts"),
    )


@pytest.fixture(scope="module")
def market() -> dict[str, pd.DataFrame]:
    return {s: _market(k, END) for k, s in enumerate(SYMBOLS)}


def _prepared(market: dict[str, pd.DataFrame], part: slice) -> list[SymbolData]:
    return [prepare_symbol(s, bars.iloc[part], CHAMPION_CONFIG) for s, bars in market.items()]


@pytest.fixture(scope="module")
def served(
    market: dict[str, pd.DataFrame], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TritonServer]:
    """A Triton over a repository whose only version, the champion, knows the driftless walk."""
    root = tmp_path_factory.mktemp("regime-repository")
    export_profiles(train_all(_prepared(market, slice(0, WALK_DAYS)), CHAMPION_CONFIG), root)
    yield from serve_triton(root / "cpu", tmp_path_factory, "triton-regime")


async def _store(db: Database, market: dict[str, pd.DataFrame], part: slice) -> None:
    info = {s: SymbolInfo(s, "crypto", 0.0001, TIMEFRAME) for s in SYMBOLS}
    frame = pd.concat(
        bars.iloc[part].reset_index().assign(symbol=s, timeframe=TIMEFRAME.value)
        for s, bars in market.items()
    )
    await write_bars(db, frame, info, show_progress=False)


def _shuffled(data: list[SymbolData], seed: int) -> list[SymbolData]:
    """The same bars and features with every target moved to another time: nothing to learn."""
    rng = np.random.default_rng(seed)
    placebo = []
    for item in data:
        order = rng.permutation(len(item.ranges))
        placebo.append(
            dataclasses.replace(
                item,
                ranges=item.ranges[order],
                long_label=item.long_label[order],
                short_label=item.short_label[order],
            )
        )
    return placebo


async def test_a_challenger_that_learned_the_new_regime_is_promoted_and_a_placebo_rejected(
    clean_db: Database,
    db_settings: DatabaseSettings,
    served: TritonServer,
    market: dict[str, pd.DataFrame],
    redis_flushed: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    db = clean_db
    repository = served.model_repository
    registry = await empty_registry(db)
    stored = WALK_DAYS + TREND_DAYS
    trend_start = market[SYMBOLS[0]].index[WALK_DAYS]
    await _store(db, market, slice(0, stored))
    await sync_registry(registry, repository, "test")
    (champion,) = await registry.versions_of(MODEL_SET)
    assert champion.status == "champion"

    # The retrain job runs as a worker runs it: `python -m export train` on the newest bars (the
    # trending ones), installed beside the champion and judged on the rows it never saw.
    for key, value in cli_env(db_settings).items():
        monkeypatch.setenv(key, value)
    triton = grpc_aio.InferenceServerClient(f"127.0.0.1:{served.grpc_port}")
    try:
        # A placebo first: the same trending bars with their targets shuffled in time, judged
        # by the same test against the champion, is rejected.
        placebo_data = _shuffled(_prepared(market, slice(WALK_DAYS, stored)), seed=3)
        placebo = train_all(placebo_data, CHAMPION_CONFIG)
        assert placebo.evidence is not None
        export_profiles(placebo, repository.parent, profiles=("cpu",))
        await sync_registry(registry, repository, "test")
        placebo_version = max(v.version for v in await registry.versions_of(MODEL_SET))
        verdict, reason, compared = await judge(
            placebo.evidence, champion, SignalModels(triton, TIMEOUT_S, MODEL_SET), BarStore(db)
        )
        assert verdict is not None, reason
        assert verdict.verdict == REJECT, reason
        assert compared > 100
        await registry.move(
            MODEL_SET,
            placebo_version,
            "rejected",
            "test",
            reason,
            decision=msgspec.to_builtins(verdict),
        )

        request = RetrainRequest(
            model_set=MODEL_SET,
            trigger="manual",
            reason="the market started trending",
            actor="test",
            epochs=3,
            folds=3,
            # The newest bars: from the first trending one (the window counts back from now).
            window_days=int((pd.Timestamp.now(tz="UTC") - trend_start).total_seconds() // 86400),
        )
        result = await retrain(
            request,
            run_id="regime",
            db=db,
            triton=triton,
            triton_timeout_s=TIMEOUT_S,
            repository=repository,
            settings=RetrainSettings(),
            progress=lambda phase, done: None,
        )
        assert result.verdict == "wait", result.reason  # passed offline; live outcomes next
        challenger = {v.version: v for v in await registry.versions_of(MODEL_SET)}[result.version]
        assert challenger.status == "challenger"
        assert challenger.decision is not None
        offline = challenger.decision["offline"]
        assert offline["versus_champion"]["p_mse"] < 0.05
        assert offline["versus_baseline"]["p_mse"] < 0.05

        # New bars arrive; once enough have settled, the live half decides.
        await _store(db, market, slice(stored, None))
        decision = await judge_challenger(
            MODEL_SET,
            db=db,
            triton=triton,
            timeout_s=TIMEOUT_S,
            repository=repository,
            min_shadow_outcomes=200,
        )
        assert decision is not None
        assert decision.verdict == PROMOTE, decision.reason
        assert decision.shadow is not None
        assert decision.shadow_outcomes >= 200
        assert await SignalModels(triton, TIMEOUT_S, MODEL_SET).served_version() == str(
            result.version
        )

    finally:
        await triton.close()

    settings = api_settings(db_settings, served, redis_flushed)
    settings = msgspec.structs.replace(
        settings,
        triton=msgspec.structs.replace(settings.triton, model_repository=str(repository)),
    )
    async with AsyncTestClient(create_app(settings)) as client:
        sets = (await client.get("/api/models")).json()["sets"]
    ours = next(s for s in sets if s["model_set"] == MODEL_SET)
    assert ours["champion"] == result.version
    by_version = {v["version"]: v for v in ours["versions"]}
    assert by_version[result.version]["decision"]["verdict"] == PROMOTE
    assert by_version[champion.version]["status"] == "retired"
    assert by_version[placebo_version]["status"] == "rejected"
    assert by_version[placebo_version]["decision"]["verdict"] == REJECT
