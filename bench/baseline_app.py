"""A seed-style /api/predict, written the naive way, as the yardstick for `make bench-serving`.

Per request it reads the newest required_bars() 5m bars with plain SQL, recomputes every feature
with the batch pipeline (`inputs_for_latest`) and runs the five models in-process through
`FusedEnsemble` (the same code Triton's cpu-profile `signal_ensemble` stub runs). No cache, no
Triton, no precomputation: what the engine's serving path is measured against.

Usage: .venv/bin/python -m bench.baseline_app --port 8090   (MYSQL_* environment as the engine)
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncmy
import msgspec
import numpy as np
import pandas as pd
import uvicorn
from litestar import Litestar, get
from litestar.datastructures import State
from litestar.exceptions import HTTPException, NotFoundException
from litestar.params import FromPath, FromQuery

from bench.runners import FusedEnsemble
from orchestrator.devstack.triton import latest_version
from orchestrator.features.online import NotEnoughHistoryError, inputs_for_latest, required_bars
from orchestrator.features.spec import FeatureSpec, check_compatible
from orchestrator.settings import PROJECT_ROOT, DatabaseSettings

VERSION_DIR = latest_version(PROJECT_ROOT / "model_repository" / "cpu" / "signal_ensemble")
TIMEFRAME = "5m"
# No ORDER BY ... LIMIT trickery beyond the obvious: newest first, reversed in Python.
SELECT_LATEST = (
    "SELECT ts, open, high, low, close, volume FROM bars"
    " WHERE symbol = %s AND timeframe = %s ORDER BY ts DESC LIMIT %s"
)


class RangeATR(msgspec.Struct):
    up: float
    down: float


class HorizonRange(msgspec.Struct):
    horizon: str
    bars: int
    high: float
    low: float
    up_atr: float
    down_atr: float
    gru: RangeATR
    transformer: RangeATR


class Prediction(msgspec.Struct):
    symbol: str
    timeframe: str
    bar_time: datetime
    close: float
    atr: float
    horizons: list[HorizonRange]
    direction: str
    confidence: float
    p_long: float
    p_short: float
    model_version: str
    feature_fingerprint: str


@dataclass
class Baseline:
    """Everything loaded once at start-up: the pool, the spec and the models."""

    pool: Any
    spec: FeatureSpec
    ensemble: FusedEnsemble
    version: str

    def predict(self, symbol: str, rows: list[tuple[Any, ...]]) -> Prediction:
        """Runs in a worker thread: DataFrame from the rows, batch features, the five models."""
        frame = pd.DataFrame(rows[::-1], columns=["ts", "open", "high", "low", "close", "volume"])
        frame["ts"] = pd.to_datetime(frame["ts"]).dt.tz_localize("UTC")
        bars = frame.set_index("ts").astype(np.float64)
        inputs = inputs_for_latest(bars, self.spec)
        out = self.ensemble.run(inputs.seq, inputs.tab, inputs.ctx)
        gru, tfm = out["GRU_RANGE"][0], out["TF_RANGE"][0]
        horizons = []
        for k, (name, count) in enumerate(
            zip(self.spec.horizons, self.spec.horizon_bars, strict=True)
        ):
            g = RangeATR(float(gru[2 * k]), float(gru[2 * k + 1]))
            t = RangeATR(float(tfm[2 * k]), float(tfm[2 * k + 1]))
            up, down = (g.up + t.up) / 2, (g.down + t.down) / 2
            horizons.append(
                HorizonRange(
                    name,
                    count,
                    inputs.close + up * inputs.atr,
                    inputs.close - down * inputs.atr,
                    up,
                    down,
                    g,
                    t,
                )
            )
        return Prediction(
            symbol,
            TIMEFRAME,
            inputs.bar_time.to_pydatetime(),
            inputs.close,
            inputs.atr,
            horizons,
            "long" if out["DIRECTION"][0, 0] > 0 else "short",
            float(out["CONFIDENCE"][0, 0]),
            float(out["P_LONG"][0, 1]),
            float(out["P_SHORT"][0, 1]),
            self.version,
            self.spec.fingerprint,
        )


@get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@get("/api/predict/{symbol:str}")
async def predict(
    state: State, symbol: FromPath[str], timeframe: FromQuery[str] = TIMEFRAME
) -> Prediction:
    """Every request pays the whole pipeline: SQL, features, models."""
    if timeframe != TIMEFRAME:
        raise HTTPException(status_code=400, detail="the baseline serves timeframe=5m only")
    baseline: Baseline = state.baseline
    symbol = symbol.strip().upper()
    async with baseline.pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(SELECT_LATEST, (symbol, TIMEFRAME, required_bars(baseline.spec)))
        rows = list(await cur.fetchall())
    if not rows:
        raise NotFoundException(detail=f"unknown symbol {symbol!r}")
    try:
        return await asyncio.to_thread(baseline.predict, symbol, rows)
    except NotEnoughHistoryError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from exc


def create_app(version_dir: Path, onnx_threads: int, xgb_threads: int) -> Litestar:
    settings = DatabaseSettings.from_env()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        spec = FeatureSpec.load(version_dir / "feature_spec.json")
        check_compatible(spec, "baseline signal_ensemble")  # refuse artifacts of another pipeline
        ensemble = FusedEnsemble(str(version_dir), onnx_threads, xgb_threads)
        # autocommit: every SELECT sees the newest committed bars (no stale snapshot per conn).
        pool = await asyncmy.create_pool(
            host=settings.host,
            port=settings.port,
            user=settings.user,
            password=settings.password,
            database=settings.database,
            minsize=1,
            maxsize=settings.pool_max_size,
            connect_timeout=settings.connect_timeout_s,
            init_command="SET time_zone = '+00:00'",
            autocommit=True,
        )
        app.state.baseline = Baseline(pool, spec, ensemble, version_dir.name)
        try:
            yield
        finally:
            pool.close()
            await pool.wait_closed()

    return Litestar(
        route_handlers=[health, predict],
        lifespan=[lifespan],
        openapi_config=None,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--version-dir", type=Path, default=VERSION_DIR)
    parser.add_argument("--onnx-threads", type=int, default=1, help="as Triton's config.pbtxt")
    parser.add_argument("--xgb-threads", type=int, default=1)
    args = parser.parse_args()
    app = create_app(args.version_dir, args.onnx_threads, args.xgb_threads)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
