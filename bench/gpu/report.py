"""Tables and a plot from bench/gpu results: the H200 runs next to the same script in CPU mode
on this machine and the committed cpu profile (bench/results/serving.json, `make bench-serving`).

Usage: .venv/bin/python bench/gpu/report.py [--gpu RUN.json ...] [--cpu RUN.json]
Prints markdown tables; writes docs/img/gpu_vs_cpu_throughput.png.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

ROOT = Path(__file__).resolve().parent.parent.parent
RESULTS = ROOT / "bench" / "gpu" / "results"
COMPOSING = (
    "range_gru",
    "range_transformer",
    "tpsl_xgb_long",
    "tpsl_xgb_short",
    "signal_metamodel",
)


def rows(run: dict, model: str) -> dict[int, dict]:
    return {r["concurrency"]: r for r in run.get("sweeps", {}).get(model, {}).get("rows", [])}


def batch_text(row: dict) -> str:
    b = row.get("avg_batch_size")
    if isinstance(b, dict):  # the ensemble: its five steps' batches, shown as min-max
        values = [v for v in b.values() if v is not None]
        lo, hi = min(values), max(values)
        return f"{lo:.1f}" if abs(hi - lo) < 0.05 else f"{lo:.1f}-{hi:.1f}"
    return "-" if b is None else f"{b:.1f}"


def cell(row: dict | None) -> str:
    if not row or "infer_per_s" not in row:
        return "-"
    return (
        f"{row['infer_per_s']:,.0f} ({row['p50_ms']:.1f} / {row['p99_ms']:.1f}; {batch_text(row)})"
    )


def table(title: str, model: str, gpu_runs: list[dict], cpu_run: dict | None) -> None:
    print(f"\n{title}\n")
    heads = [f"H200 run {i + 1}" for i in range(len(gpu_runs))] + (
        ["2-core CPU"] if cpu_run else []
    )
    print("| c | " + " | ".join(heads) + " |")
    print("|---|" + "---|" * len(heads))
    levels = sorted({c for run in gpu_runs for c in rows(run, model)})
    for c in levels:
        cells = [cell(rows(run, model).get(c)) for run in gpu_runs]
        if cpu_run:
            cells.append(cell(rows(cpu_run, model).get(c)))
        print(f"| {c} | " + " | ".join(cells) + " |")


def series(run: dict, model: str) -> tuple[list[int], list[float], list[float]]:
    r = rows(run, model)
    cs = [c for c in sorted(r) if "infer_per_s" in r[c]]
    return cs, [r[c]["infer_per_s"] for c in cs], [r[c]["p99_ms"] for c in cs]


def plot(gpu_runs: list[dict], cpu_run: dict | None, serving: dict | None, path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    styles = [
        ("signal_ensemble", "H200: 5-step Triton ensemble (5 stubs)", "tab:blue"),
        ("signal_ensemble_fused", "H200: fused (1 stub, 2 inst.)", "tab:red"),
    ]
    for model, label, color in styles:
        for i, run in enumerate(gpu_runs):
            cs, tput, p99 = series(run, model)
            kw = {"color": color, "marker": "o", "label": label if i == 0 else None}
            kw["alpha"] = 1.0 if i == 0 else 0.45
            axes[0].plot(cs, tput, "-", **kw)
            axes[1].plot(cs, p99, "-", **kw)
        if cpu_run:
            cs, tput, p99 = series(cpu_run, model)
            kw = {
                "color": color,
                "marker": "s",
                "label": label.replace("H200", "2-core CPU, same code"),
            }
            axes[0].plot(cs, tput, "--", **kw)
            axes[1].plot(cs, p99, "--", **kw)
    if serving:
        perf = [r for r in serving["perf"] if "infer_per_s" in r]
        cs = [r["concurrency"] for r in perf]
        kw = {
            "color": "tab:green",
            "marker": "^",
            "label": "cpu profile (ORT+XGBoost fused), 2 cores",
        }
        axes[0].plot(cs, [r["infer_per_s"] for r in perf], ":", **kw)
        axes[1].plot(cs, [r["p99_ms"] for r in perf], ":", **kw)
    for ax, name in zip(axes, ("inferences/s", "p99 latency (ms)"), strict=True):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("perf_analyzer concurrency (gRPC)")
        ax.set_ylabel(name)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(
        "signal_ensemble: gpu profile on an H200 (wheel tritonserver, Python backend, torch CUDA)"
        " vs CPU"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--gpu", nargs="*", type=Path, default=sorted(RESULTS.glob("h200-run*.json"))
    )
    parser.add_argument("--cpu", type=Path, default=RESULTS / "cpu-local.json")
    parser.add_argument("--serving", type=Path, default=ROOT / "bench" / "results" / "serving.json")
    parser.add_argument(
        "--png", type=Path, default=ROOT / "docs" / "img" / "gpu_vs_cpu_throughput.png"
    )
    args = parser.parse_args()
    gpu_runs = [json.loads(p.read_text()) for p in args.gpu]
    cpu_run = json.loads(args.cpu.read_text()) if args.cpu.exists() else None
    serving = json.loads(args.serving.read_text()) if args.serving.exists() else None
    print("cells: inferences/s (p50 / p99 ms; average batch formed)")
    table("signal_ensemble (Triton ensemble, 5 steps)", "signal_ensemble", gpu_runs, cpu_run)
    table("signal_ensemble_fused", "signal_ensemble_fused", gpu_runs, cpu_run)
    for model in ("range_gru", "range_transformer", "tpsl_xgb_long", "signal_metamodel"):
        table(model, model, gpu_runs, cpu_run)
    print("\nin-process fused runner (rows/s; median ms per call):")
    for name, run in [
        *((f"H200 run {i + 1}", r) for i, r in enumerate(gpu_runs)),
        ("2-core CPU", cpu_run),
    ]:
        if not run:
            continue
        for device, c in run.get("ceiling", {}).items():
            cells = ", ".join(
                f"b{k[5:]} {v['rows_per_s']:,.0f} ({v['median_ms']:.2f})"
                for k, v in c.items()
                if k.startswith("batch")
            )
            print(f"- {name} {device}: {cells}")
    plot(gpu_runs, cpu_run, serving, args.png)
    print(f"\nplot: {args.png.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
