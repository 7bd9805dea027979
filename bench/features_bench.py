"""Feature cost for one new bar: all history vs the bounded tail (inputs_for_latest) vs carried
indicator state (IncrementalFeatures: update() + inputs()), and the cost of IncrementalFeatures'
seed(), its fallback after a restart, a gap or a corrected bar; then seeding a cold start's
batch of states one by one against together (features/seed_batch.py), in the same run.

Usage: make bench-features   (or .venv/bin/python bench/features_bench.py [--bars N] [--repeats N]
[--stream N] [--batch N])
Writes bench/results/features.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from export.train import TrainConfig, spec_from_stats
from orchestrator.demo.generator import generate_bars
from orchestrator.features.dataset import fit_normalisation
from orchestrator.features.incremental import IncrementalFeatures
from orchestrator.features.indicators import compute_features
from orchestrator.features.online import inputs_for_latest, required_bars, seed_bars
from orchestrator.features.seed_batch import seed_states

RESULTS = Path(__file__).parent / "results" / "features.json"


def _percentile_us(seconds: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(seconds), q) * 1e6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bars", type=int, default=215_699)
    parser.add_argument("--repeats", type=int, default=20, help="bars timed on the online tail")
    parser.add_argument("--stream", type=int, default=5_000, help="bars timed incrementally")
    parser.add_argument("--seeds", type=int, default=30, help="seed() calls timed")
    parser.add_argument("--batch", type=int, default=512, help="states seeded per batch compared")
    args = parser.parse_args()
    arriving_n = max(args.repeats, args.stream)
    bars = generate_bars("BTCUSD", bars=args.bars + arriving_n)
    history, arriving = bars.iloc[: args.bars], bars.iloc[args.bars :]
    mean, std = fit_normalisation(compute_features(history))
    spec = spec_from_stats(mean, std, TrainConfig())

    full = []
    for _ in range(3):
        started = time.perf_counter()
        compute_features(history)
        full.append(time.perf_counter() - started)

    need = required_bars(spec)
    tail = []
    for i in range(args.repeats):
        started = time.perf_counter()  # the tail as it stands when bar i arrives
        latest = inputs_for_latest(bars.iloc[args.bars + i + 1 - need : args.bars + i + 1], spec)
        tail.append(time.perf_counter() - started)
    reference = inputs_for_latest(bars.iloc[: args.bars + args.repeats], spec)
    assert np.allclose(latest.seq, reference.seq, atol=1e-5)

    seeds = []
    for _ in range(args.seeds):
        started = time.perf_counter()
        incremental = IncrementalFeatures.seed(history, spec)
        seeds.append(time.perf_counter() - started)
    stream = arriving.iloc[: args.stream]
    rows = zip(
        stream.index,
        *(
            stream[k].to_numpy(np.float64).tolist()
            for k in ("open", "high", "low", "close", "volume")
        ),
        strict=True,
    )
    updates, inputs = [], []
    for ts, o, h, low, c, v in rows:
        started = time.perf_counter()
        incremental.update(ts, o, h, low, c, v)
        between = time.perf_counter()
        latest = incremental.inputs()
        inputs.append(time.perf_counter() - between)
        updates.append(between - started)
    per_bar = [u + i for u, i in zip(updates, inputs, strict=True)]
    reference = inputs_for_latest(bars.iloc[: args.bars + args.stream], spec)
    for name in ("seq", "tab", "ctx"):
        np.testing.assert_allclose(
            getattr(latest, name), getattr(reference, name), rtol=1e-6, atol=1e-9
        )

    # A cold start's batch: `batch` different seed frames (the history cut at different bars),
    # seeded one by one and together, alternating, three times each.
    span = seed_bars(spec)
    frames = [
        history.iloc[len(history) - span - 37 * i : len(history) - 37 * i]
        for i in range(args.batch)
    ]
    alone_ms, together_ms = [], []
    for _ in range(3):
        started = time.perf_counter()
        singles = [IncrementalFeatures.seed(frame, spec) for frame in frames]
        alone_ms.append((time.perf_counter() - started) * 1e3 / args.batch)
        started = time.perf_counter()
        batch = seed_states(frames, spec)
        together_ms.append((time.perf_counter() - started) * 1e3 / args.batch)
    for single, batched in zip(singles, batch, strict=True):
        assert isinstance(batched, IncrementalFeatures)
        assert np.array_equal(single.inputs().seq, batched.inputs().seq)

    full_ms = statistics.median(full) * 1e3
    tail_ms = statistics.median(tail) * 1e3
    bar_us = statistics.median(per_bar) * 1e6
    seed_ms = statistics.median(seeds) * 1e3
    tail_bars = required_bars(spec)
    print(f"{'one new bar':34s} {'median':>12s} {'p99 / max':>12s}")
    print(f"{f'all history ({args.bars:,} bars)':34s} {full_ms:9.1f} ms {max(full) * 1e3:9.1f} ms")
    print(f"{f'online tail ({tail_bars} bars)':34s} {tail_ms:9.2f} ms {max(tail) * 1e3:9.2f} ms")
    print(
        f"{'incremental update()':34s} {statistics.median(updates) * 1e6:9.1f} us "
        f"{_percentile_us(updates, 99):9.1f} us"
    )
    print(
        f"{'incremental inputs()':34s} {statistics.median(inputs) * 1e6:9.1f} us "
        f"{_percentile_us(inputs, 99):9.1f} us"
    )
    print(
        f"{'incremental update() + inputs()':34s} {bar_us:9.1f} us "
        f"{_percentile_us(per_bar, 99):9.1f} us"
    )
    print(f"{'incremental seed()':34s} {seed_ms:9.2f} ms {max(seeds) * 1e3:9.2f} ms")
    ratios = [a / t for a, t in zip(alone_ms, together_ms, strict=True)]
    print(
        f"seeding {args.batch} states: one by one {statistics.median(alone_ms):.2f} ms a state "
        f"[{min(alone_ms):.2f}-{max(alone_ms):.2f}], together {statistics.median(together_ms):.3f}"
        f" ms [{min(together_ms):.3f}-{max(together_ms):.3f}]: {statistics.median(ratios):.1f}x "
        f"[{min(ratios):.1f}-{max(ratios):.1f}]"
    )
    print(
        f"speed-up per bar: tail {statistics.median(full) / statistics.median(tail):.0f}x over "
        f"all history; incremental {statistics.median(tail) / statistics.median(per_bar):.0f}x "
        "over the tail"
    )

    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus",
        "python": platform.python_version(),
        "bars": args.bars,
        "tail_bars": tail_bars,
        "all_history_ms": {"median": full_ms, "max": max(full) * 1e3, "runs": len(full)},
        "online_tail_ms": {"median": tail_ms, "max": max(tail) * 1e3, "bars": len(tail)},
        "incremental": {
            "bars": len(per_bar),
            "update_us": {
                "median": statistics.median(updates) * 1e6,
                "p99": _percentile_us(updates, 99),
            },
            "inputs_us": {
                "median": statistics.median(inputs) * 1e6,
                "p99": _percentile_us(inputs, 99),
            },
            "per_bar_us": {"median": bar_us, "p99": _percentile_us(per_bar, 99)},
            "seed_ms": {"median": seed_ms, "max": max(seeds) * 1e3, "runs": len(seeds)},
            "speedup_vs_tail": statistics.median(tail) / statistics.median(per_bar),
        },
        "seeding": {
            "states": args.batch,
            "one_by_one_ms_per_state": alone_ms,
            "together_ms_per_state": together_ms,
            "ratio": ratios,
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    temporary = RESULTS.with_suffix(".tmp")
    temporary.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(temporary, RESULTS)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
