"""The Express gateway, built with tsc against the generated types, and the live engine it calls
(`python -m orchestrator serve` as a process, the suite's MariaDB and tritonserver)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from orchestrator.devstack.triton import TritonServer
from orchestrator.settings import DatabaseSettings
from tests.conftest import PROJECT_ROOT, cli_env, free_ports

GATEWAY_DIR = Path(__file__).parent
API_KEY = "contract-test-key"


def _wait_http(
    url: str, process: subprocess.Popen[bytes], log: Path, timeout_s: float = 60
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited early:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout_s} s:\n{log.read_text()[-3000:]}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


@pytest.fixture(scope="session")
def gateway_build() -> Path:
    """`tsc` over the gateway and types/ml-engine.d.ts: a type drift breaks this build too."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("node/npm not found: install Node.js >= 20 (`make gateway-deps` says how)")
    if not (GATEWAY_DIR / "node_modules").is_dir():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=GATEWAY_DIR, check=True)
    built = subprocess.run(
        [npm, "run", "--silent", "build"], cwd=GATEWAY_DIR, capture_output=True, text=True
    )
    assert built.returncode == 0, f"tsc failed:\n{built.stdout}\n{built.stderr}"
    return GATEWAY_DIR / "dist" / "tests" / "gateway" / "src" / "main.js"


@dataclass(frozen=True)
class Stack:
    engine_url: str
    gateway_url: str


@dataclass
class EngineProcess:
    url: str
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        _stop(self.process)


def start_engine(
    db: DatabaseSettings, triton: TritonServer, redis_url: str, log_dir: Path
) -> Iterator[EngineProcess]:
    (port,) = free_ports(1)
    env = cli_env(
        db,
        API_PORT=str(port),
        API_HOST="127.0.0.1",
        TRITON_HOST="127.0.0.1",
        TRITON_HTTP_PORT=str(triton.http_port),
        TRITON_GRPC_PORT=str(triton.grpc_port),
        TRITON_METRICS_PORT=str(triton.metrics_port),
        INTERNAL_API_KEY=API_KEY,
        WS_POLL_INTERVAL_S="0.2",
        REDIS_URL=redis_url,
    )
    log = log_dir / "engine.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "serve"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_http(f"{url}/health", process, log)
        yield EngineProcess(url, process)
    finally:
        _stop(process)


def start_gateway(main_js: Path, engine_url: str, log_dir: Path) -> Iterator[str]:
    (port,) = free_ports(1)
    env = dict(os.environ, PORT=str(port), ML_SERVICE_URL=engine_url, INTERNAL_API_KEY=API_KEY)
    log = log_dir / "gateway.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["node", str(main_js)], cwd=GATEWAY_DIR, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_http(f"{url}/healthz", process, log)
        yield url
    finally:
        _stop(process)
