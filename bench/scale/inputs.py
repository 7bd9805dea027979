"""A sweep's Triton requests with their inputs inside the gRPC message vs through shared memory,
side by side against one tritonserver (`python -m bench.scale.inputs`, `make bench-inputs`).

One round sends a 10,000-symbol sweep's requests (40 chunks of 256 rows of the cpu profile's 5m
ensemble, all in flight) once each way, in alternating order; per way it records the wall time,
this client's CPU seconds (its event loop and gRPC's threads) and Triton's. Whole-sweep runs of
`make bench-scale` move by a third from hour to hour on this shared machine; here both ways run
within seconds of each other, so the ratio holds.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import numpy as np
import tritonclient.grpc.aio as grpc_aio

from bench.scale.run import RESULTS_DIR
from bench.serving.common import REPOSITORY, Json, log
from bench.serving.report import machine, write_json
from bench.serving.services import cpu_seconds
from orchestrator.devstack import process
from orchestrator.devstack.process import free_ports
from orchestrator.devstack.triton import TritonServer
from orchestrator.inference.client import SignalModels
from orchestrator.inference.input_regions import InputRegions
from orchestrator.inference.models import ENSEMBLE

ROWS = 256  # the engine's chunk (max_batch)
CHUNKS = 40  # 10,000 symbols
TIMEOUT_S = 60.0


def _chunks(window: int, features: int, tabular: int, context: int) -> list[tuple[np.ndarray, ...]]:
    rng = np.random.default_rng(7)
    shapes = ((ROWS, window, features), (ROWS, tabular), (ROWS, context))
    return [
        tuple(rng.standard_normal(shape).astype(np.float32) for shape in shapes)
        for _ in range(CHUNKS)
    ]


async def _sweep(
    models: SignalModels, chunks: list[tuple[np.ndarray, ...]], triton: list[int]
) -> Json:
    cpu, served = time.process_time(), cpu_seconds(triton)
    started = time.perf_counter()
    await asyncio.gather(*(models.infer_arrays(*chunk) for chunk in chunks))
    return {
        "wall_s": time.perf_counter() - started,
        "client_cpu_s": time.process_time() - cpu,
        "triton_cpu_s": cpu_seconds(triton) - served,
    }


async def run(rounds: int) -> Json:
    http_port, grpc_port, metrics_port = free_ports(3)
    triton = TritonServer(
        REPOSITORY, http_port, grpc_port, metrics_port, name="triton-bench-inputs"
    )
    await asyncio.to_thread(triton.start)
    client = grpc_aio.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    regions = InputRegions(client)
    try:
        roots = [pid for pid in (process.read_pid(triton.pid_path),) if pid]
        by_message = SignalModels(client, TIMEOUT_S, ENSEMBLE)
        by_region = SignalModels(client, TIMEOUT_S, ENSEMBLE, input_regions=regions)
        spec = await by_message.spec()
        tabular = 2 * len(spec.feature_names)
        chunks = _chunks(spec.window, len(spec.feature_names), tabular, len(spec.context_features))
        ways = {"message": by_message, "shared_memory": by_region}
        for models in ways.values():  # warm-up: sessions, regions registered
            await _sweep(models, chunks[:4], roots)
        runs: dict[str, list[Json]] = {name: [] for name in ways}
        for r in range(rounds):
            order = list(ways) if r % 2 == 0 else list(reversed(ways))
            for name in order:
                runs[name].append(await _sweep(ways[name], chunks, roots))
            log(
                f"round {r + 1}/{rounds}: "
                + ", ".join(
                    f"{name} {runs[name][-1]['wall_s']:.2f} s wall, client "
                    f"{runs[name][-1]['client_cpu_s']:.2f} s, Triton "
                    f"{runs[name][-1]['triton_cpu_s']:.2f} s CPU"
                    for name in ways
                )
            )
        summary = {
            name: {
                field: float(np.median([run[field] for run in items]))
                for field in ("wall_s", "client_cpu_s", "triton_cpu_s")
            }
            for name, items in runs.items()
        }
        return {"rows_per_chunk": ROWS, "chunks": CHUNKS, "runs": runs, "median": summary}
    finally:
        await regions.close(TIMEOUT_S)
        await client.close()
        await asyncio.to_thread(triton.stop)


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale.inputs", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    results = asyncio.run(run(args.rounds))
    results["machine"] = machine()
    results["command"] = "python -m bench.scale.inputs " + " ".join(sys.argv[1:])
    path = RESULTS_DIR / "inputs_shared_memory.json"
    write_json(results, path)
    message, shared = results["median"]["message"], results["median"]["shared_memory"]
    for field in ("wall_s", "client_cpu_s", "triton_cpu_s"):
        log(
            f"{field}: message {message[field]:.3f}, shared memory {shared[field]:.3f} "
            f"(x{message[field] / shared[field]:.2f})"
        )
    log(f"-> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
