"""How the cpu profile's fused `signal_ensemble` is configured, measured: dynamic-batching queue
delay x instance count, perf_analyzer at concurrency 1/16/64 on each variant.

Every variant is the committed model (same artifacts, same runner) with only those two settings
changed, served alone by a fresh tritonserver. Thread counts are not swept here: one ONNX
Runtime and one XGBoost thread per instance won by far in-process (2+2 threads on 2 cores
oversubscribe; see docs/benchmarks.md).
Usage: make bench-triton-tuning   (writes bench/results/triton_tuning.{json,png})
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import matplotlib
import numpy as np

from bench.serving.common import RESULTS, Json, log
from bench.serving.report import machine
from bench.serving.triton import serve_variant, write_perf_data
from orchestrator.fileio import atomic_file

matplotlib.use("Agg")
import matplotlib.pyplot as plt

DELAYS_US = (0, 500, 2000, 8000)
INSTANCES = (1, 2)
CONCURRENCY = (1, 16, 64)


def measure(delay_us: int, instances: int, data: Path, interval_ms: int, out: Path) -> list[Json]:
    label = f"d{delay_us}-i{instances}"
    return serve_variant(
        label, data, interval_ms, out, CONCURRENCY, delay_us=delay_us, instances=instances
    )


def plot(results: list[Json], path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for run in results:
        label = f"delay {run['delay_us']} µs, {run['instances']} inst."
        rows = [r for r in run["perf"] if "infer_per_s" in r]
        xs = [r["concurrency"] for r in rows]
        style = "o-" if run["instances"] == 1 else "s--"
        axes[0].plot(xs, [r["infer_per_s"] for r in rows], style, label=label)
        axes[1].plot(xs, [r["p99_ms"] for r in rows], style, label=label)
    for ax, name in zip(axes, ("inferences/s", "p99 latency (ms)"), strict=True):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("perf_analyzer concurrency")
        ax.set_ylabel(name)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("fused signal_ensemble (cpu profile): queue delay x instances")
    fig.tight_layout()
    with atomic_file(path) as handle:
        fig.savefig(handle, format="png", dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--interval-ms", type=int, default=2000)
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "perf" / "tuning"
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = 16
    data = Path(tempfile.mkdtemp(prefix="bench-triton-tuning-")) / "input.json"
    write_perf_data(
        data,
        rng.normal(size=(rows, 64, 28)).astype(np.float32),
        rng.normal(size=(rows, 56)).astype(np.float32),
        rng.normal(size=(rows, 5)).astype(np.float32),
    )
    results = []
    for instances in INSTANCES:
        for delay_us in DELAYS_US:
            log(f"variant: queue delay {delay_us} µs, {instances} instance(s)")
            perf = measure(delay_us, instances, data, args.interval_ms, out)
            results.append({"delay_us": delay_us, "instances": instances, "perf": perf})
    record = {"machine": machine(), "command": "make bench-triton-tuning", "variants": results}
    with atomic_file(RESULTS / "triton_tuning.json", text=True) as handle:
        handle.write(json.dumps(record, indent=1))
    plot(results, RESULTS / "triton_tuning.png")
    print("\nvariant                 c=1 infer/s (p99 ms)   c=16             c=64")
    for run in results:
        cells = [
            f"{r.get('infer_per_s', 0):7.0f} ({r.get('p99_ms', float('nan')):5.1f})"
            for r in run["perf"]
        ]
        print(f"delay {run['delay_us']:5d} µs, {run['instances']} inst.  " + "  ".join(cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
