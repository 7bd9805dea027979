"""Ingestion benchmark: 215,699 generated 5m bars (the seed's BTCUSD size) from a CSV file into
the local database, through the same read -> validate -> upsert path as the CLI.

Usage: make bench-ingest   (or .venv/bin/python bench/ingest_bench.py [--bars N] [--runs N])
Prints per-phase timings and rows/s; appends a JSON line to bench/results/ingest.jsonl.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from orchestrator.demo.generator import generate_market
from orchestrator.ingest.pipeline import IngestOptions, prepare
from orchestrator.ingest.readers import read_bar_file
from orchestrator.ingest.validate import validate_bars
from orchestrator.ingest.writer import write_bars
from orchestrator.marketdata.db import Database
from orchestrator.marketdata.store import SymbolInfo
from orchestrator.marketdata.timeframes import Timeframe
from orchestrator.settings import DatabaseSettings

SYMBOL = "BENCHUSD"
RESULTS = Path(__file__).parent / "results" / "ingest.jsonl"


async def _run(path: Path, runs: int) -> list[dict[str, float]]:
    db = await Database.connect(DatabaseSettings.from_env())
    info = {SYMBOL: SymbolInfo(SYMBOL, "crypto", 0.01, Timeframe.M5, "benchmark data")}
    out = []
    try:
        for run in range(runs):
            async with db.transaction() as conn, conn.cursor() as cur:
                await cur.execute("DELETE FROM bars WHERE symbol = %s", (SYMBOL,))
            for mode in ("insert", "re-upsert"):
                t0 = time.perf_counter()
                frame = read_bar_file(path)
                t1 = time.perf_counter()
                prepared, _ = prepare(
                    frame, IngestOptions(symbol=SYMBOL, timeframe=Timeframe.M5), "bench"
                )
                accepted, rejected = validate_bars(prepared)
                t2 = time.perf_counter()
                written = await write_bars(db, accepted, info, show_progress=False)
                t3 = time.perf_counter()
                assert written == len(frame)
                assert rejected.empty
                row = {
                    "run": run,
                    "mode": mode,
                    "rows": written,
                    "read_s": t1 - t0,
                    "validate_s": t2 - t1,
                    "write_s": t3 - t2,
                    "total_s": t3 - t0,
                    "write_rows_per_s": written / (t3 - t2),
                    "total_rows_per_s": written / (t3 - t0),
                }
                out.append(row)
                print(
                    f"run {run} {mode:9s}: read {row['read_s']:.2f}s"
                    f"  validate {row['validate_s']:.2f}s"
                    f"  write {row['write_s']:.2f}s"
                    f"  -> write {row['write_rows_per_s']:,.0f} rows/s,"
                    f" file-to-table {row['total_rows_per_s']:,.0f} rows/s"
                )
        async with db.transaction() as conn, conn.cursor() as cur:
            await cur.execute("DELETE FROM bars WHERE symbol = %s", (SYMBOL,))
            await cur.execute("DELETE FROM symbol_calendars WHERE symbol = %s", (SYMBOL,))
            await cur.execute("DELETE FROM symbols WHERE symbol = %s", (SYMBOL,))
    finally:
        await db.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bars", type=int, default=215_699)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bars.csv"
        frame = generate_market(["BTCUSD"], bars=args.bars)
        frame.drop(columns=["symbol", "timeframe"]).assign(
            ts=frame["ts"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        ).to_csv(path, index=False)
        print(f"{args.bars:,} bars, CSV {path.stat().st_size / 1e6:.1f} MB")
        rows = asyncio.run(_run(path, args.runs))
    best = max(r["total_rows_per_s"] for r in rows if r["mode"] == "insert")
    best_write = max(r["write_rows_per_s"] for r in rows if r["mode"] == "insert")
    print(
        f"best: write {best_write:,.0f} rows/s, file-to-table {best:,.0f} rows/s (target >= 50,000)"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as handle:
        handle.write(
            json.dumps(
                {
                    "at": datetime.now(UTC).isoformat(timespec="seconds"),
                    "machine": platform.node(),
                    "cpus": __import__("os").cpu_count(),
                    "bars": args.bars,
                    "runs": rows,
                }
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
