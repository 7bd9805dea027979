"""The model-level parts, below HTTP: perf_analyzer sweeps on signal_ensemble with Triton's own
batch counters around them, the perf input data, the in-process FusedEnsemble ceiling, a second
Triton without dynamic batching, and the backtest's batched Triton path against in-process rows.
"""

from __future__ import annotations

import asyncio
import csv
import json
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.http as triton_http

from bench.runners import FusedEnsemble
from bench.serving.common import (
    ENSEMBLE,
    F32,
    PA_CONCURRENCY,
    PERF_ANALYZER,
    REPOSITORY,
    VERSION_DIR,
    Json,
    log,
)
from orchestrator.demo.generator import generate_bars
from orchestrator.devstack.process import free_ports
from orchestrator.devstack.triton import TritonServer


def _triton_counts(http_url: str, model: str) -> tuple[int, int]:
    client = triton_http.InferenceServerClient(http_url)
    try:
        stats = client.get_inference_statistics(model)["model_stats"]
    finally:
        client.close()
    inference = sum(int(s.get("inference_count", 0)) for s in stats)
    execution = sum(int(s.get("execution_count", 0)) for s in stats)
    return inference, execution


def write_perf_data(path: Path, seq: F32, tab: F32, ctx: F32) -> None:
    """perf_analyzer input: real feature rows (batch-1 each), the same the ceiling runs on."""
    data = [
        {"SEQ": seq[i].ravel().tolist(), "TAB": tab[i].tolist(), "CTX": ctx[i].tolist()}
        for i in range(len(seq))
    ]
    path.write_text(json.dumps({"data": data}))


def perf_sweep(
    label: str,
    grpc_port: int,
    http_port: int,
    data: Path,
    interval_ms: int,
    out_dir: Path,
    concurrencies: tuple[int, ...] = PA_CONCURRENCY,
) -> list[Json]:
    """One perf_analyzer run per concurrency (powers of two), with Triton's own counters around
    each: inference_count / execution_count is the batch size dynamic batching really formed."""
    rows = []
    http_url = f"127.0.0.1:{http_port}"
    for c in concurrencies:
        csv_path = out_dir / f"{label}-c{c}.csv"
        before = _triton_counts(http_url, ENSEMBLE)
        command = [
            str(PERF_ANALYZER),
            "-m",
            ENSEMBLE,
            "-i",
            "grpc",
            "-u",
            f"127.0.0.1:{grpc_port}",
            "--concurrency-range",
            f"{c}:{c}",
            "--measurement-interval",
            str(interval_ms),
            "--stability-percentage",
            "50",
            "--max-trials",
            "6",
            "--input-data",
            str(data),
            "-f",
            str(csv_path),
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)
        if done.returncode != 0 and "stable" in done.stdout + done.stderr:
            # A busy machine may not settle within 6 windows: once more with longer windows.
            command[command.index("--measurement-interval") + 1] = str(2 * interval_ms)
            command[command.index("--max-trials") + 1] = "10"
            done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)
        after = _triton_counts(http_url, ENSEMBLE)
        inferences, executions = after[0] - before[0], after[1] - before[1]
        row: Json = {
            "concurrency": c,
            "avg_batch_size": inferences / executions if executions else None,
            "exit_code": done.returncode,
        }
        if done.returncode == 0 and csv_path.exists():
            with csv_path.open() as handle:
                record = next(csv.DictReader(handle))
            row |= {
                "infer_per_s": float(record["Inferences/Second"]),
                "p50_ms": int(record["p50 latency"]) / 1e3,
                "p99_ms": int(record["p99 latency"]) / 1e3,
            }
        else:
            row["error"] = (done.stderr or done.stdout)[-400:]
        rows.append(row)
        batch = row["avg_batch_size"]
        log(
            f"perf_analyzer {label:11s} c={c:2d}  {row.get('infer_per_s', 0.0):8.1f} infer/s  "
            f"p50 {row.get('p50_ms', float('nan')):7.2f} ms  p99 "
            f"{row.get('p99_ms', float('nan')):7.2f} ms  avg batch "
            + ("-" if batch is None else f"{batch:.2f}")
            + (f"  ERROR {row['error'][-160:]}" if "error" in row else "")
        )
    return rows


def ceiling(seq: F32, tab: F32, ctx: F32, seconds: float) -> Json:
    """FusedEnsemble.run in this process, no server: best of three windows per setting."""
    results: Json = {}
    for threads in (1, 2):
        ensemble = FusedEnsemble(str(VERSION_DIR), threads, threads)
        for batch in (1, 64):
            s, t, c = seq[:batch], tab[:batch], ctx[:batch]
            for _ in range(5):
                ensemble.run(s, t, c)
            best = 0.0
            for _ in range(3):
                calls, started = 0, time.perf_counter()
                while (elapsed := time.perf_counter() - started) < seconds / 3:
                    ensemble.run(s, t, c)
                    calls += 1
                best = max(best, calls * batch / elapsed)
            results[f"batch{batch}_threads{threads}"] = best
            log(f"ceiling batch {batch:2d} threads {threads}: {best:9.1f} inferences/s")
    for batch in (1, 64):
        results[f"batch{batch}_best"] = max(results[f"batch{batch}_threads{t}"] for t in (1, 2))
    return results


def ensemble_variant(
    target: Path,
    *,
    batching: bool = True,
    instances: int | None = None,
    delay_us: int | None = None,
) -> None:
    """A repository like the cpu one (other models symlinked) whose signal_ensemble differs
    from the committed one only in the given settings."""
    for entry in REPOSITORY.iterdir():
        if entry.name == ENSEMBLE:
            shutil.copytree(entry, target / entry.name)
        else:
            (target / entry.name).symlink_to(entry)
    config = target / ENSEMBLE / "config.pbtxt"
    text = config.read_text()
    edits = [
        (not batching, r"(?m)^dynamic_batching .*\n", ""),
        (
            instances is not None,
            r"count: \d+, kind: KIND_CPU",
            f"count: {instances}, kind: KIND_CPU",
        ),
        (
            delay_us is not None,
            r"max_queue_delay_microseconds: \d+",
            f"max_queue_delay_microseconds: {delay_us}",
        ),
    ]
    for wanted, pattern, replacement in edits:
        if wanted:
            text, count = re.subn(pattern, replacement, text)
            if count != 1:
                raise RuntimeError(f"{config}: expected one match of {pattern!r}")
    config.write_text(text)


def serve_variant(
    label: str,
    data: Path,
    interval_ms: int,
    out_dir: Path,
    concurrencies: tuple[int, ...] = PA_CONCURRENCY,
    **settings: Any,
) -> list[Json]:
    """perf_analyzer against a tritonserver serving only that signal_ensemble variant."""
    with tempfile.TemporaryDirectory(prefix="bench-serving-repo-") as tmp:
        ensemble_variant(Path(tmp), **settings)
        http_port, grpc_port, metrics_port = free_ports(3)
        server = TritonServer(
            Path(tmp),
            http_port,
            grpc_port,
            metrics_port,
            name=f"triton-bench-{label}",
            load_models=[ENSEMBLE],
        )
        log(f"starting a tritonserver for {label} ({settings})")
        server.start()
        try:
            return perf_sweep(
                label, grpc_port, http_port, data, interval_ms, out_dir, concurrencies
            )
        finally:
            server.stop()


def batching_off(data: Path, interval_ms: int, out_dir: Path) -> list[Json]:
    return serve_variant("batching-off", data, interval_ms, out_dir, batching=False)


ONE_INSTANCE_CONCURRENCY = (1, 16, 32, 64)


def batching_one_instance(data: Path, interval_ms: int, out_dir: Path) -> Json:
    """Batching on vs off with a single instance: the batcher's own effect, without the second
    instance that also lets the unbatched variant use both cores."""
    return {
        state: serve_variant(
            f"one-instance-{state}",
            data,
            interval_ms,
            out_dir,
            ONE_INSTANCE_CONCURRENCY,
            instances=1,
            batching=state == "on",
        )
        for state in ("on", "off")
    }


@dataclass
class Tensors:
    """Real feature rows of one long generated series, built by the backtest's FeatureBlock."""

    block: Any
    models: Any
    client: Any

    def first(self, n: int) -> tuple[F32, F32, F32]:
        inputs = self.block.inputs(0, n)
        return inputs.seq, inputs.tab, inputs.ctx


async def feature_rows(grpc_port: int, rows: int) -> Tensors:
    """Imported here: the backtest path is the part of the engine most likely to move."""
    import tritonclient.grpc.aio as grpc_aio

    from orchestrator.backtest.predictions import FeatureBlock, warmup_bars
    from orchestrator.inference.client import SignalModels

    client = grpc_aio.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    models = SignalModels(client, 120.0)
    spec = await models.spec()
    first = warmup_bars(spec)
    bars = generate_bars("BTCUSD", bars=rows + first, seed=77)
    block = await asyncio.to_thread(FeatureBlock, bars, spec, first)
    return Tensors(block, models, client)


def _in_process_rows(tensors: Tensors, threads: int, batch: int) -> tuple[float, F32]:
    ensemble = FusedEnsemble(str(VERSION_DIR), threads, threads)
    n = len(tensors.block)
    confidence = np.empty(n, np.float32)
    ensemble.run(*tensors.first(batch))
    started = time.perf_counter()
    for start in range(0, n, batch):
        stop = min(start + batch, n)
        inputs = tensors.block.inputs(start, stop)
        confidence[start:stop] = ensemble.run(inputs.seq, inputs.tab, inputs.ctx)["CONFIDENCE"][
            :, 0
        ]
    return n / (time.perf_counter() - started), confidence


async def backtest_phase(tensors: Tensors) -> Json:
    """The backtest's batched Triton path (`_infer_all`: batches of 256, several in flight)
    against FusedEnsemble.run on the same tensors in batches of 256, same sequence-window cost."""
    from orchestrator.backtest.predictions import DEFAULT_IN_FLIGHT, MAX_BATCH, _infer_all

    n = len(tensors.block)
    await tensors.models.infer([tensors.block.inputs(0, MAX_BATCH)])  # warm the connection
    started = time.perf_counter()
    outputs, versions = await _infer_all(
        tensors.models,
        tensors.block,
        batch_size=MAX_BATCH,
        in_flight=DEFAULT_IN_FLIGHT,
        progress=None,
    )
    triton_rows_s = n / (time.perf_counter() - started)
    log(f"backtest Triton path: {n} rows, {triton_rows_s:9.1f} rows/s")
    results: Json = {
        "rows": n,
        "batch_size": MAX_BATCH,
        "in_flight": DEFAULT_IN_FLIGHT,
        "model_versions": sorted(versions),
        "triton_rows_per_s": triton_rows_s,
    }
    for threads in (1, 2):
        rate, confidence = await asyncio.to_thread(_in_process_rows, tensors, threads, MAX_BATCH)
        results[f"in_process_threads{threads}_rows_per_s"] = rate
        results[f"max_abs_confidence_diff_threads{threads}"] = float(
            np.abs(confidence - outputs["confidence"]).max()
        )
        log(f"backtest in-process {threads} thread(s): {rate:9.1f} rows/s")
    best = max(results[f"in_process_threads{t}_rows_per_s"] for t in (1, 2))
    results["triton_over_in_process_threads1"] = (
        triton_rows_s / results["in_process_threads1_rows_per_s"]
    )
    results["triton_over_in_process_best"] = triton_rows_s / best
    return results
