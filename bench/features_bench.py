"""Feature cost for one new bar: the serving path (a bounded tail) vs recomputing all history.

Usage: make bench-features   (or .venv/bin/python bench/features_bench.py [--bars N] [--repeats N])
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from export.train import TrainConfig, spec_from_stats
from orchestrator.demo.generator import generate_bars
from orchestrator.features.dataset import fit_normalisation
from orchestrator.features.indicators import compute_features
from orchestrator.features.online import OnlineFeatures, inputs_for_latest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bars", type=int, default=215_699)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    bars = generate_bars("BTCUSD", bars=args.bars + args.repeats)
    history, arriving = bars.iloc[: args.bars], bars.iloc[args.bars :]
    mean, std = fit_normalisation(compute_features(history))
    spec = spec_from_stats(mean, std, TrainConfig())
    full = []
    for _ in range(3):
        started = time.perf_counter()
        compute_features(history)
        full.append(time.perf_counter() - started)
    online = OnlineFeatures(spec, history)
    incremental = []
    for i in range(len(arriving)):
        started = time.perf_counter()
        latest = online.append(arriving.iloc[i : i + 1])
        incremental.append(time.perf_counter() - started)
    reference = inputs_for_latest(bars, spec)
    assert np.allclose(latest.seq, reference.seq, atol=1e-5)
    full_ms = statistics.median(full) * 1e3
    print(f"all history ({args.bars:,} bars): {full_ms:8.1f} ms per recompute")
    print(
        f"one new bar (online tail):   {statistics.median(incremental) * 1e3:8.1f} ms median, "
        f"{max(incremental) * 1e3:.1f} ms max over {len(incremental)} bars"
    )
    print(f"speed-up: {statistics.median(full) / statistics.median(incremental):.0f}x")


if __name__ == "__main__":
    main()
