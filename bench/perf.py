"""perf_analyzer over every served model (HTTP and gRPC, a concurrency sweep), plus the average
dynamic batch size Triton actually formed, from its statistics API.

Usage: make perf   (starts a Triton on the cpu profile on ports 18300-18302 unless --url given)
Writes bench/results/perf/<model>-<protocol>.csv (perf_analyzer's CSV), summary.json and
throughput.png.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import tritonclient.http as httpclient

from orchestrator.devstack.triton import TritonServer, repository_models
from orchestrator.inference.models import FEATURE_MODELS
from orchestrator.settings import PROJECT_ROOT

OUT = Path(__file__).parent / "results" / "perf"
PERF_ANALYZER = PROJECT_ROOT / ".venv" / "bin" / "perf_analyzer"
PORTS = (18300, 18301, 18302)


def _counts(client: httpclient.InferenceServerClient, model: str) -> tuple[int, int]:
    stats = client.get_inference_statistics(model)["model_stats"]
    inference = sum(int(s.get("inference_count", 0)) for s in stats)
    execution = sum(int(s.get("execution_count", 0)) for s in stats)
    return inference, execution


def run(
    model: str, protocol: str, http_port: int, grpc_port: int, concurrency: str, interval_ms: int
) -> dict[str, object]:
    url = f"127.0.0.1:{grpc_port if protocol == 'grpc' else http_port}"
    csv_path = OUT / f"{model}-{protocol}.csv"
    client = httpclient.InferenceServerClient(f"127.0.0.1:{http_port}")
    before = _counts(client, model)
    command = [
        str(PERF_ANALYZER),
        "-m",
        model,
        "-i",
        protocol,
        "-u",
        url,
        "--concurrency-range",
        concurrency,
        "--measurement-interval",
        str(interval_ms),
        "--stability-percentage",
        "50",
        "--max-trials",
        "6",
        "--input-data",
        "zero",
        "-f",
        str(csv_path),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=900)
    after = _counts(client, model)
    inferences, executions = after[0] - before[0], after[1] - before[1]
    rows = []
    if csv_path.exists():
        with csv_path.open() as handle:
            rows = [
                {
                    "concurrency": int(r["Concurrency"]),
                    "infer_per_s": float(r["Inferences/Second"]),
                    "p50_us": int(r.get("p50 latency", 0) or 0),
                    "p99_us": int(r.get("p99 latency", 0) or 0),
                }
                for r in csv.DictReader(handle)
            ]
    rows.sort(key=lambda r: r["concurrency"])
    summary = {
        "model": model,
        "protocol": protocol,
        "rows": rows,
        "avg_batch_size": inferences / executions if executions else None,
        "inferences": inferences,
        "executions": executions,
        "exit_code": result.returncode,
    }
    if result.returncode != 0:
        summary["error"] = (result.stderr or result.stdout)[-500:]
    return summary


def plot(summaries: list[dict[str, object]], path: Path) -> None:
    figure, axis = plt.subplots(figsize=(9, 5))
    axis.set_prop_cycle(color=plt.get_cmap("tab20").colors)
    for s in summaries:
        rows = s["rows"]
        assert isinstance(rows, list)
        if rows:
            axis.plot(
                [r["concurrency"] for r in rows],
                [r["infer_per_s"] for r in rows],
                marker="o",
                linestyle="-" if s["protocol"] == "grpc" else "--",
                label=f"{s['model']} ({s['protocol']})",
            )
    axis.set_xlabel("concurrent requests")
    axis.set_ylabel("inferences / s")
    axis.set_title("Triton (cpu profile) throughput vs concurrency")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repository", default=str(PROJECT_ROOT / "model_repository" / "cpu"))
    parser.add_argument("--concurrency", default="1:16:5", help="perf_analyzer start:end:step")
    parser.add_argument("--interval-ms", type=int, default=2000)
    parser.add_argument("--models", help="comma-separated (default: the 5m model set)")
    args = parser.parse_args()
    repository = Path(args.repository)
    # Default: the 5m set (the other timeframes' sets are the same graphs with other weights).
    present = repository_models(repository)
    models = args.models.split(",") if args.models else [m for m in FEATURE_MODELS if m in present]
    if not models:
        print(f"error: no models in {repository}; run `make models`", file=sys.stderr)
        return 2
    OUT.mkdir(parents=True, exist_ok=True)
    server = TritonServer(repository, *PORTS, name="triton-perf")
    server.start()
    summaries = []
    try:
        for model in models:
            for protocol in ("grpc", "http"):
                summary = run(
                    model, protocol, PORTS[0], PORTS[1], args.concurrency, args.interval_ms
                )
                summaries.append(summary)
                best = max((r["infer_per_s"] for r in summary["rows"]), default=0.0)  # type: ignore[union-attr]
                batch = summary["avg_batch_size"]
                print(
                    f"{model:28s} {protocol:4s} best {best:8.0f} infer/s   avg batch "
                    f"{batch if batch is None else f'{batch:.2f}'}"
                    + (f"   ERROR {summary.get('error', '')[:120]}" if summary["exit_code"] else "")
                )
    finally:
        server.stop()
    (OUT / "summary.json").write_text(json.dumps(summaries, indent=2))
    plot(summaries, OUT / "throughput.png")
    print(f"CSV per model/protocol, summary.json and throughput.png in {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
