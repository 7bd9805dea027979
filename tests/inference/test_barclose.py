"""Bar-close serving against the real MariaDB and Triton: a bar closing on many symbols is scored
in one batched Triton request, requests arriving meanwhile wait for it, and the answers equal the
batch feature pipeline over the same bars (corrections included)."""

from __future__ import annotations

import asyncio

import numpy as np
import pandas as pd
import pytest
import tritonclient.grpc as grpcclient
from litestar import Litestar
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from orchestrator.api.app import create_app
from orchestrator.api.resources import Resources
from orchestrator.devstack.triton import TritonServer
from orchestrator.features.online import inputs_for_latest
from orchestrator.inference import barclose
from orchestrator.inference.barclose import BarCloseEngine
from orchestrator.inference.models import ENSEMBLE
from orchestrator.inference.shared import PredictionStore, SharedPredictions, token_name
from orchestrator.marketdata.db import Database
from orchestrator.marketdata.timeframes import Timeframe
from orchestrator.settings import ApiSettings, DatabaseSettings
from tests.api.conftest import api_settings
from tests.conftest import TrainedRepository, until
from tests.inference.markets import scaled_market, write_5m

SYMBOLS = [f"BC{k:02d}USD" for k in range(12)]
M5, M15 = Timeframe.M5, Timeframe.M15


def _ensemble_counts(server: TritonServer) -> tuple[int, int]:
    """(requests answered, rows inferred) by the 5m ensemble so far."""
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    stats = client.get_inference_statistics(ENSEMBLE, as_json=True)["model_stats"]
    requests = sum(int(s["inference_stats"]["success"].get("count", 0)) for s in stats)
    rows = sum(int(s.get("inference_count", 0)) for s in stats)
    return requests, rows


def _next_bar(bars: pd.DataFrame, move: float) -> pd.DataFrame:
    last = float(bars["close"].iloc[-1])
    close = round(last * (1 + move), 2)
    bar = {
        "open": last,
        "high": max(last, close) * 1.001,
        "low": min(last, close) * 0.999,
        "close": close,
        "volume": 7.0,
    }
    ts = bars.index[-1] + pd.Timedelta(minutes=5)
    return pd.DataFrame([bar], index=pd.DatetimeIndex([ts], name="ts"))


def _raised(bars: pd.DataFrame, position: int, factor: float) -> pd.DataFrame:
    """A copy whose bar at `position` closed (and peaked) `factor` higher: a corrected bar."""
    corrected = bars.copy()
    row = corrected.index[position]
    corrected.loc[row, ["high", "close"]] = corrected.loc[row, ["high", "close"]] * factor
    return corrected


@pytest.fixture
async def market(loaded: TrainedRepository, clean_db: Database) -> dict[str, pd.DataFrame]:
    """Twelve symbols with the training history at different price scales."""
    return await scaled_market(clean_db, loaded.data[0].bars, SYMBOLS)


@pytest.fixture
async def app(
    market: dict[str, pd.DataFrame],
    db_settings: DatabaseSettings,
    model_server: TritonServer,
    redis_flushed: str,
) -> Litestar:
    settings = api_settings(
        db_settings, model_server, redis_flushed, api=ApiSettings(bar_poll_interval_s=0.05)
    )
    return create_app(settings)


def _engine(app: Litestar) -> Resources:
    resources: Resources = app.state.resources
    return resources


async def _every_symbol_predicted(engine: BarCloseEngine) -> None:
    """Until the first poll's sweeps have predicted every symbol on 5m and 15m and ended (a
    sweep's listeners and counters run after its predictions are kept)."""
    await until(
        lambda: all(engine.latest.get((s, tf)) for s in SYMBOLS for tf in (M5, M15)),
        what="every symbol predicted on 5m and 15m",
        timeout_s=120,
    )
    await until(lambda: engine.idle, what="the seeding sweeps ended")


async def test_a_bar_closing_on_many_symbols_is_scored_in_one_triton_request(
    app: Litestar,
    market: dict[str, pd.DataFrame],
    clean_db: Database,
    model_server: TritonServer,
    loaded: TrainedRepository,
) -> None:
    async with AsyncTestClient(app) as client:
        engine = _engine(app).engine
        first = {s: f.index[-1] for s, f in market.items()}
        # The first poll seeds every symbol on every served timeframe (5m and 15m here).
        await _every_symbol_predicted(engine)
        assert {s: engine.latest[(s, M5)].bar_time for s in SYMBOLS} == first
        seeds, requests_before = engine.stats.seeds, _ensemble_counts(model_server)

        new = {s: _next_bar(f, 0.001 * (k + 1)) for k, (s, f) in enumerate(market.items())}
        await write_5m(clean_db, new)  # one transaction: the bar closes on every symbol at once
        moved = new[SYMBOLS[0]].index[0]
        await until(
            lambda: all(engine.latest[(s, M5)].bar_time == moved for s in SYMBOLS),
            what="the new bar predicted on every symbol",
        )

        requests, rows = np.subtract(_ensemble_counts(model_server), requests_before)
        assert (requests, rows) == (1, len(SYMBOLS))  # one request carrying every symbol
        assert engine.stats.seeds == seeds  # features advanced incrementally, not recomputed
        assert engine.stats.bars_stepped >= len(SYMBOLS)

        for symbol in (SYMBOLS[0], SYMBOLS[-1]):
            history = pd.concat([market[symbol], new[symbol]])
            expected = inputs_for_latest(history, loaded.models.spec)
            body = (await client.get(f"/api/predict/{symbol}")).json()
            assert body["bar_time"].startswith(moved.strftime("%Y-%m-%dT%H:%M:%S"))
            assert body["close"] == pytest.approx(expected.close)
            assert body["atr"] == pytest.approx(expected.atr, rel=1e-6)
            served = engine.feature_inputs((symbol, M5))
            assert served is not None
            np.testing.assert_allclose(served.seq, expected.seq, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(served.tab, expected.tab, rtol=1e-5, atol=1e-5)
        # Those answers came from the sweep's predictions: no Triton call of their own.
        assert _ensemble_counts(model_server)[0] - requests_before[0] == 1


async def test_sweeps_overlap_and_never_score_a_key_twice(
    app: Litestar,
    market: dict[str, pd.DataFrame],
    clean_db: Database,
    model_server: TritonServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Sweeps of three keys: the next starts while the one before waits for Triton, and every
    key is still scored once per bar."""
    monkeypatch.setattr(barclose, "MAX_KEYS_PER_SWEEP", 3)
    before = _ensemble_counts(model_server)
    async with AsyncTestClient(app):
        engine = _engine(app).engine
        await _every_symbol_predicted(engine)
        served_5m = [key for key in engine.latest if key[1] == M5]  # BTCUSD of `loaded` too
        assert np.subtract(_ensemble_counts(model_server), before)[1] == len(served_5m)
        seeded = engine.stats.sweeps
        before = _ensemble_counts(model_server)

        new = {s: _next_bar(f, 0.001) for s, f in market.items()}
        await write_5m(clean_db, new)
        moved = new[SYMBOLS[0]].index[0]
        await until(
            lambda: all(engine.latest[(s, M5)].bar_time == moved for s in SYMBOLS),
            what="the new bar predicted on every symbol",
        )
        await until(lambda: engine.idle, what="the bar's sweeps ended")
        requests, rows = np.subtract(_ensemble_counts(model_server), before)
        assert (requests, rows) == (len(SYMBOLS) // 3, len(SYMBOLS))
        assert engine.stats.sweeps - seeded == len(SYMBOLS) // 3
        assert engine.stats.sweeps_overlapped >= 1
        assert engine.stats.errors == 0


async def test_a_watched_series_is_swept_ahead_of_the_rest_of_its_bar(
    app: Litestar, market: dict[str, pd.DataFrame], clean_db: Database, model_server: TritonServer
) -> None:
    """A WebSocket feed's series goes in a sweep of its own, before the bar's other symbols, so
    its message does not wait for their features and inference."""
    async with AsyncTestClient(app):
        engine = _engine(app).engine
        await _every_symbol_predicted(engine)
        watched = SYMBOLS[5]
        subscriber = app.state.stream.subscribe((watched, "5m", "balanced"))
        assert engine.is_watched((watched, M5))
        assert not engine.is_watched((SYMBOLS[4], M5))
        sweeps: list[list[str]] = []
        engine.on_predictions(lambda produced: sweeps.append([p.symbol for p in produced]))
        before = _ensemble_counts(model_server)

        new = {s: _next_bar(f, 0.001) for s, f in market.items()}
        await write_5m(clean_db, new)
        moved = new[watched].index[0]
        await until(
            lambda: all(engine.latest[(s, M5)].bar_time == moved for s in SYMBOLS),
            what="the new bar predicted on every symbol",
        )
        # A sweep's listeners run after its predictions are kept: wait for the second's too.
        await until(lambda: len(sweeps) >= 2, what="both sweeps' listeners")
        assert sweeps[0] == [watched]
        assert sorted(sweeps[1]) == sorted(set(SYMBOLS) - {watched})
        requests, rows = np.subtract(_ensemble_counts(model_server), before)
        assert (requests, rows) == (2, len(SYMBOLS))
        message = b""
        while b'"prediction"' not in message or moved.strftime("%H:%M").encode() not in message:
            message = await asyncio.wait_for(subscriber.queue.get(), 30) or b""
        app.state.stream.unsubscribe(subscriber)
        assert not engine.is_watched((watched, M5))


async def test_requests_for_a_new_bar_wait_for_its_one_computation(
    app: Litestar, market: dict[str, pd.DataFrame], clean_db: Database, model_server: TritonServer
) -> None:
    async with AsyncTestClient(app) as client:
        engine = _engine(app).engine
        await _every_symbol_predicted(engine)
        before = _ensemble_counts(model_server)
        symbol = SYMBOLS[3]
        bar = _next_bar(market[symbol], -0.002)
        await write_5m(clean_db, {symbol: bar})
        # Asked right after the commit, before the poller's next look: every answer is fresh.
        responses = await asyncio.gather(*(client.get(f"/api/predict/{symbol}") for _ in range(10)))
        stamp = bar.index[0].strftime("%Y-%m-%dT%H:%M:%S")
        assert all(r.status_code == 200 for r in responses)
        assert all(r.json()["bar_time"].startswith(stamp) for r in responses)
        assert len({r.content for r in responses}) == 1
        # The poller sees the bar too and must not score it again: two more polls started means
        # one whole poll ran after the write.
        polls = engine.stats.polls
        await until(lambda: engine.stats.polls >= polls + 2, what="two more polls")
        await until(lambda: engine.idle, what="what those polls scheduled to be swept")
        assert np.subtract(_ensemble_counts(model_server), before).tolist() == [1, 1]
        stats = (await client.get("/api/stats")).json()
        assert stats["bar_close"]["freshness_queries"] >= 1
        assert stats["cache_hits"] + stats["cache_coalesced"] + stats["cache_misses"] >= 10


async def test_a_corrected_bar_is_recomputed_from_the_store(
    app: Litestar,
    market: dict[str, pd.DataFrame],
    clean_db: Database,
    loaded: TrainedRepository,
) -> None:
    async with AsyncTestClient(app) as client:
        engine = _engine(app).engine
        symbol = SYMBOLS[5]
        await until(lambda: engine.latest.get((symbol, M5)) is not None, what="a first prediction")
        corrected = _raised(market[symbol], -1, 1.003)
        new = _next_bar(corrected, 0.001)
        # The last bar is rewritten and a new one lands: the state no longer continues the store.
        await write_5m(clean_db, {symbol: pd.concat([corrected.iloc[-1:], new])})
        body = (await client.get(f"/api/predict/{symbol}")).json()
        expected = inputs_for_latest(pd.concat([corrected, new]), loaded.models.spec)
        assert body["bar_time"].startswith(new.index[0].strftime("%Y-%m-%dT%H:%M:%S"))
        assert engine.stats.corrections >= 1
        # The poller, seeing the revision after the request computed the bar, drops the symbol's
        # predictions and recomputes them: wait for that, then compare what it holds.
        key, newest = (symbol, M5), new.index[0].to_pydatetime()
        await until(
            lambda: key in engine.latest and engine.latest[key].bar_time == newest,
            what="the recomputed prediction",
        )
        served = engine.feature_inputs(key)
        assert served is not None
        np.testing.assert_allclose(served.seq, expected.seq, rtol=1e-5, atol=1e-5)
        assert body["atr"] == pytest.approx(expected.atr, rel=1e-6)


async def test_an_old_bar_corrected_without_a_new_one_is_recomputed(
    app: Litestar,
    market: dict[str, pd.DataFrame],
    clean_db: Database,
    loaded: TrainedRepository,
) -> None:
    async with AsyncTestClient(app) as client:
        engine = _engine(app).engine
        symbol = SYMBOLS[7]
        await until(lambda: engine.latest.get((symbol, M5)) is not None, what="a first prediction")
        before = engine.latest[(symbol, M5)]
        inputs_before = engine.feature_inputs((symbol, M5))
        assert inputs_before is not None
        corrected = _raised(market[symbol], -20, 1.01)
        await write_5m(clean_db, {symbol: corrected.iloc[[-20]]})  # a revision, no new bar
        expected = inputs_for_latest(corrected, loaded.models.spec)
        await until(
            lambda: engine.latest.get((symbol, M5), before) is not before,
            what="the revised prediction",
            timeout_s=30,
        )
        served = engine.latest[(symbol, M5)]
        assert served.bar_time == before.bar_time
        inputs = engine.feature_inputs((symbol, M5))
        assert inputs is not None
        np.testing.assert_allclose(inputs.seq, expected.seq, rtol=1e-5, atol=1e-5)
        assert np.abs(inputs.seq - inputs_before.seq).max() > 1e-3
        body = (await client.get(f"/api/predict/{symbol}")).json()
        assert body["atr"] == pytest.approx(expected.atr, rel=1e-6)


async def test_a_series_watched_on_another_replica_is_left_to_it_and_taken_back_if_it_is_silent(
    app: Litestar, market: dict[str, pd.DataFrame], clean_db: Database, redis_flushed: str
) -> None:
    """A background sweep leaves a series whose WebSocket client is on another replica to that
    replica (which sweeps it first); when that replica says nothing, this one computes it after
    REMOTE_RECHECK_S."""
    async with AsyncTestClient(app):
        resources = _engine(app)
        engine = resources.engine
        await _every_symbol_predicted(engine)
        watched = SYMBOLS[7]
        namespace = resources.shared.store.namespace.removesuffix(":predictions")
        other = SharedPredictions(
            Redis.from_url(redis_flushed), namespace=namespace, replica_id="other"
        )
        await other.announce(frozenset({(watched, "5m")}))
        sweeps: list[set[tuple[str, str]]] = []
        engine.on_predictions(lambda made: sweeps.append({(p.symbol, p.timeframe) for p in made}))

        new = {s: _next_bar(f, 0.001) for s, f in market.items()}
        await write_5m(clean_db, new)
        moved = new[watched].index[0]
        await until(
            lambda: engine.latest[(watched, M5)].bar_time == moved,
            what="the watched series computed here after the other replica stayed silent",
        )
        others = {(s, "5m") for s in SYMBOLS if s != watched}
        bar_sweep = next(i for i, made in enumerate(sweeps) if others <= made)
        assert (watched, "5m") not in set().union(*sweeps[: bar_sweep + 1])
        assert any((watched, "5m") in made for made in sweeps[bar_sweep + 1 :])
        assert resources.shared.left_to_watchers == 1
        assert all(engine.latest[(s, M5)].bar_time == moved for s in SYMBOLS)
        await other.store._redis.aclose()


async def test_a_bar_claimed_by_a_replica_that_died_is_computed_once_its_claim_expires(
    app: Litestar, market: dict[str, pd.DataFrame], clean_db: Database, redis_flushed: str
) -> None:
    async with AsyncTestClient(app) as client:
        resources = _engine(app)
        other_replica = PredictionStore(
            Redis.from_url(redis_flushed), namespace=resources.shared.store.namespace
        )
        engine = resources.engine
        symbol = SYMBOLS[3]
        await until(lambda: engine.latest.get((symbol, M5)) is not None, what="a first prediction")
        bar = _next_bar(market[symbol], 0.002)
        bar_time = bar.index[0].to_pydatetime()
        version = engine.latest[(symbol, M5)].version
        # Another replica claims the coming bar and dies before computing it.
        token = ((symbol, M5), bar_time, version, 0)
        assert await other_replica.claim_many([token_name(token)], 1.5) == [True]
        await write_5m(clean_db, {symbol: bar})
        started = asyncio.get_running_loop().time()
        response = await client.get(f"/api/predict/{symbol}")
        waited_s = asyncio.get_running_loop().time() - started
        assert response.status_code == 200
        assert response.json()["bar_time"] == bar.index[0].strftime("%Y-%m-%dT%H:%M:%SZ")
        assert waited_s >= 1.0  # it waited for the dead replica, then claimed and computed
        assert resources.shared.claims_lost >= 1
