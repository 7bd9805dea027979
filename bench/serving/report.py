"""What a run writes: machine info, the engine/baseline and Triton/ceiling ratios, the summary
text, the two plots (throughput vs latency, bar-close sweep) and atomic JSON writing, so an
interrupted run never leaves a half-written record.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
from pathlib import Path
from typing import Any

import matplotlib

from bench.serving.common import CONCURRENCY, SWEEP_CONCURRENCY, Json

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def machine() -> Json:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = ""
    with contextlib.suppress(OSError):
        memory = Path("/proc/meminfo").read_text().splitlines()[0].split(":", 1)[1].strip()
    return {
        "platform": platform.platform(),
        "cpu": model,
        "cpus": os.cpu_count(),
        "memory": memory,
        "python": platform.python_version(),
        "load_average_at_start": os.getloadavg(),
    }


def ratios(results: Json) -> Json:
    """engine/baseline and Triton/ceiling, from whatever parts ran."""
    out: Json = {}
    warm = results.get("warm")
    if warm:
        for c in CONCURRENCY:
            e, b = warm["engine"].get(str(c), {}), warm["baseline"].get(str(c), {})
            if e.get("requests") and b.get("requests"):
                out[f"warm_c{c}_throughput_engine_over_baseline"] = (
                    e["throughput_per_s"] / b["throughput_per_s"]
                )
                out[f"warm_c{c}_p50_baseline_over_engine"] = b["p50_ms"] / e["p50_ms"]
                out[f"warm_c{c}_p99_baseline_over_engine"] = b["p99_ms"] / e["p99_ms"]
    cold = results.get("cold")
    if cold:
        out["cold_median_baseline_over_engine"] = (
            cold["baseline"]["median_ms"] / cold["engine"]["median_ms"]
        )
        out["cold_p90_baseline_over_engine"] = cold["baseline"]["p90_ms"] / cold["engine"]["p90_ms"]
    for n, sweep in (results.get("sweep") or {}).items():
        out[f"sweep_n{n}_baseline_over_engine"] = (
            sweep["baseline"]["median_s"] / sweep["engine"]["median_s"]
        )
    perf, ceil = results.get("perf"), results.get("ceiling")
    if perf and ceil:
        rate = {r["concurrency"]: r.get("infer_per_s", 0.0) for r in perf}
        out["triton_c1_over_ceiling_batch1"] = rate[1] / ceil["batch1_best"]
        out["triton_c32plus_over_ceiling_batch64"] = max(rate[32], rate[64]) / ceil["batch64_best"]
    off = results.get("batching_off")
    if perf and off:
        on_rate = {r["concurrency"]: r.get("infer_per_s", 0.0) for r in perf}
        off_rate = {r["concurrency"]: r.get("infer_per_s", 0.0) for r in off}
        for c in (32, 64):
            if off_rate[c]:
                out[f"batching_on_over_off_c{c}"] = on_rate[c] / off_rate[c]
    single = results.get("batching_one_instance")
    if single:
        on_rate = {r["concurrency"]: r.get("infer_per_s", 0.0) for r in single["on"]}
        off_rate = {r["concurrency"]: r.get("infer_per_s", 0.0) for r in single["off"]}
        for c in (32, 64):
            if off_rate.get(c):
                out[f"batching_on_over_off_one_instance_c{c}"] = on_rate[c] / off_rate[c]
    barrier = results.get("barrier")
    if barrier:
        for point in ("1", "16"):
            default, custom = barrier["default"][point], barrier["custom"][point]
            out[f"barrier_c{point}_p50_custom_over_default"] = custom["p50_ms"] / default["p50_ms"]
            out[f"barrier_c{point}_throughput_default_over_custom"] = (
                default["throughput_per_s"] / custom["throughput_per_s"]
            )
    backtest = results.get("backtest")
    if backtest:
        out["backtest_triton_over_in_process"] = backtest["triton_over_in_process_threads1"]
    return out


def _save(fig: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def plot_throughput_latency(results: Json, path: Path) -> None:
    series: list[tuple[str, str, list[tuple[int, float, float, float]]]] = []
    for name, style in (("engine", "o-"), ("baseline", "s-")):
        points = (results.get("warm") or {}).get(name, {})
        series.append(
            (
                f"{name} (HTTP, warm)",
                style,
                [
                    (c, p["throughput_per_s"], p["p50_ms"], p["p99_ms"])
                    for c in CONCURRENCY
                    if (p := points.get(str(c))) and p.get("requests")
                ],
            )
        )
    for key, label, style in (
        ("perf", "raw Triton (gRPC, dynamic batching)", "^--"),
        ("batching_off", "raw Triton (no dynamic batching)", "v:"),
    ):
        rows = results.get(key) or []
        series.append(
            (
                label,
                style,
                [
                    (r["concurrency"], r["infer_per_s"], r["p50_ms"], r["p99_ms"])
                    for r in rows
                    if "infer_per_s" in r
                ],
            )
        )
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, index, title in ((axes[0], 2, "p50"), (axes[1], 3, "p99")):
        for label, style, points in series:
            if not points:
                continue
            ax.plot([p[1] for p in points], [p[index] for p in points], style, label=label)
            for p in points:
                ax.annotate(f"c={p[0]}", (p[1], p[index]), fontsize=6, alpha=0.7)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("throughput (requests or inferences / s)")
        ax.set_ylabel(f"{title} latency (ms)")
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle("/api/predict: engine vs seed-style baseline vs raw Triton signal_ensemble")
    fig.tight_layout()
    _save(fig, path)


def plot_sweep(results: Json, path: Path) -> None:
    sweep = results.get("sweep") or {}
    cold = results.get("cold") or {}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, style in (("engine", "o-"), ("baseline", "s-")):
        ns = sorted(int(n) for n in sweep)
        points = [(1, cold[name]["median_ms"] / 1e3)] if name in cold else []
        lows, highs = [0.0] * len(points), [0.0] * len(points)
        for n in ns:
            r = sweep[str(n)][name]
            points.append((n, r["median_s"]))
            lows.append(r["median_s"] - r["min_s"])
            highs.append(r["max_s"] - r["median_s"])
        if points:
            ax.errorbar(
                [p[0] for p in points],
                [p[1] for p in points],
                yerr=[lows, highs],
                fmt=style,
                capsize=3,
                label=name,
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("symbols with a new bar (N; N=1 is the cold test)")
    ax.set_ylabel("COMMIT to the last fresh answer (s)")
    ax.set_title(f"bar close: median and min-max, {SWEEP_CONCURRENCY} client tasks")
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no cold/sweep results in this run", ha="center", transform=ax.transAxes)
    fig.tight_layout()
    _save(fig, path)


def summary(results: Json) -> str:
    lines = ["", "== serving benchmark summary =="]
    warm = results.get("warm")
    if warm:
        lines.append(
            f"{'warm':8s} {'engine req/s p50/p99 ms':>32s} {'baseline req/s p50/p99 ms':>32s}"
        )
        for c in CONCURRENCY:
            cells = []
            for name in ("engine", "baseline"):
                p = warm[name].get(str(c), {})
                cells.append(
                    f"{p.get('throughput_per_s', 0):9.1f} {p.get('p50_ms', float('nan')):8.2f}"
                    f" {p.get('p99_ms', float('nan')):9.2f}"
                )
            lines.append(f"  c={c:<4d} {cells[0]:>32s} {cells[1]:>32s}")
    cold = results.get("cold")
    if cold:
        for name in ("engine", "baseline"):
            lines.append(
                f"cold {name:8s} median {cold[name]['median_ms']:8.1f} ms  p90 "
                f"{cold[name]['p90_ms']:8.1f} ms  stale answers {cold[name]['stale_answers']}"
            )
    for n, sweep in (results.get("sweep") or {}).items():
        for name in ("engine", "baseline"):
            r = sweep[name]
            lines.append(
                f"sweep N={n:<5s} {name:8s} median {r['median_s']:7.2f} s "
                f"(min {r['min_s']:.2f}, max {r['max_s']:.2f})  retries {r['retries']}"
            )
    for name, points in (results.get("barrier") or {}).items():
        for c, p in points.items():
            lines.append(
                f"signals {name:8s} c={c:<3s} {p['throughput_per_s']:9.1f} req/s  p50 "
                f"{p['p50_ms']:7.2f} ms  p99 {p['p99_ms']:7.2f} ms"
            )
    ceil = results.get("ceiling")
    if ceil:
        lines.append(
            f"in-process ceiling: batch 1 {ceil['batch1_best']:.0f}/s, batch 64 "
            f"{ceil['batch64_best']:.0f}/s"
        )
    backtest = results.get("backtest")
    if backtest:
        lines.append(
            f"backtest rows/s: Triton {backtest['triton_rows_per_s']:.0f}, in-process (1 thread) "
            f"{backtest['in_process_threads1_rows_per_s']:.0f}"
        )
    lines.append("ratios:")
    lines.extend(f"  {k:48s} {v:8.2f}" for k, v in results.get("ratios", {}).items())
    return "\n".join(lines)


def write_json(record: Json, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str))
    os.replace(tmp, path)
