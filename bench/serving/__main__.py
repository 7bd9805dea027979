"""The serving engine against a naive seed-style baseline (bench/baseline_app.py), side by side.

One run starts its own tritonserver (cpu profile), the engine (`python -m orchestrator serve`) and
the baseline on free ports, seeds benchmark symbols BSV0000.. with generated 5m bars, and measures:

- warm:     closed-loop GET /api/predict/{symbol} at concurrency 1/16/64 (req/s, p50, p99);
- cold:     one new bar committed with SQL, then GET until the answer is for that bar;
- sweep:    a new bar for N symbols in one transaction, then every symbol until all are fresh;
- barrier:  warm /api/signals with the models' own levels against the caller's (tp, sl, horizon);
- perf:     perf_analyzer on signal_ensemble (gRPC) against FusedEnsemble in-process (ceiling);
- batching: the same perf_analyzer sweep on a second Triton without dynamic batching;
- backtest: the backtest's batched Triton path against FusedEnsemble in-process, rows/s.

The engine is measured only through HTTP and SQL, so its internals may change under the harness.
While one service is measured the other one is paused (SIGSTOP), and every timed step waits until
our processes are idle, so background work of one never bills the other.

Usage: make bench-serving   (or .venv/bin/python -m bench.serving [--symbols N]
       [--seconds S] [--repeats R] [--only warm,cold,sweep,barrier,perf,batching,backtest])
Writes bench/results/serving.json, serving_throughput_latency.png and serving_sweep.png (a run
with --only writes bench/results/serving_partial.json instead).

This module is the command line (`python -m bench.serving`): it parses the options, runs
bench/serving/run.py and writes the record. The parts live beside it: services.py (our server
processes), market.py (symbols and bars), client.py (HTTP client, wrk), phases.py (warm, cold,
sweep), triton.py (perf_analyzer, ceiling, batching, backtest) and report.py (ratios, summary,
plots).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from bench.serving.common import (
    CONCURRENCY,
    N_MAX,
    PA_CONCURRENCY,
    PARTS,
    RESULTS,
    SWEEP_CONCURRENCY,
    log,
)
from bench.serving.report import (
    machine,
    plot_sweep,
    plot_throughput_latency,
    ratios,
    summary,
    write_json,
)
from bench.serving.run import run


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.serving", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--symbols", type=int, default=N_MAX, help=f"1..{N_MAX}")
    parser.add_argument("--seconds", type=float, default=8.0, help="per warm point")
    parser.add_argument("--repeats", type=int, default=3, help="per sweep size and service")
    parser.add_argument("--cold-trials", type=int, default=20)
    parser.add_argument("--perf-interval-ms", type=int, default=2000)
    parser.add_argument("--only", default=",".join(PARTS), help=f"comma-separated of {PARTS}")
    args = parser.parse_args()
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown or not parts:
        parser.error(f"--only: unknown part(s) {unknown}; choose from {', '.join(PARTS)}")
    if not 1 <= args.symbols <= N_MAX:
        parser.error(f"--symbols must be within 1..{N_MAX}")
    if args.repeats < 1 or args.cold_trials < 1:
        parser.error("--repeats and --cold-trials must be at least 1")

    started = datetime.now(UTC)
    info = machine()
    log(f"serving benchmark: parts {', '.join(parts)}; {args.symbols} symbols; {info['cpus']} cpus")
    try:
        results = asyncio.run(run(args, parts))
    except asyncio.CancelledError:
        log("stopped; servers stopped and benchmark symbols removed, nothing written")
        return 143
    results["ratios"] = ratios(results)
    info["load_average_at_end"] = os.getloadavg()
    record = {
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, "-m", "bench.serving", *sys.argv[1:]]),
        "machine": info,
        "options": {
            "symbols": args.symbols,
            "seconds": args.seconds,
            "repeats": args.repeats,
            "cold_trials": args.cold_trials,
            "perf_interval_ms": args.perf_interval_ms,
            "parts": parts,
            "concurrency": CONCURRENCY,
            "perf_analyzer_concurrency": PA_CONCURRENCY,
            "sweep_concurrency": SWEEP_CONCURRENCY,
        },
        **results,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    if set(parts) != set(PARTS):  # a partial run never replaces the full record and plots
        write_json(record, RESULTS / "serving_partial.json")
        print(summary(results))
        print(f"results in {RESULTS / 'serving_partial.json'}")
        return 0
    write_json(record, RESULTS / "serving.json")
    plot_throughput_latency(results, RESULTS / "serving_throughput_latency.png")
    plot_sweep(results, RESULTS / "serving_sweep.png")
    print(summary(results), flush=True)
    print(
        f"results in {RESULTS / 'serving.json'}, serving_throughput_latency.png, serving_sweep.png"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
