"""Tiny models trained once per session on generated bars, exported to a temporary repository
and served by a real tritonserver (cpu profile) on their own ports."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from export.exporter import export_profiles
from export.train import SymbolData, TrainConfig, TrainedModels, prepare_symbol, train_all
from orchestrator.demo.generator import generate_bars
from orchestrator.devstack.triton import TritonServer
from tests.conftest import free_ports

TINY = TrainConfig(epochs=1, folds=2, stride=6, xgb_rounds=40, show_progress=False)


@dataclass
class TrainedRepository:
    root: Path
    models: TrainedModels
    data: list[SymbolData]
    version: int

    @property
    def cpu(self) -> Path:
        return self.root / "cpu"

    @property
    def gpu(self) -> Path:
        return self.root / "gpu"


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainedRepository:
    data = [
        prepare_symbol(s, generate_bars(s, days=40, seed=11), TINY) for s in ("BTCUSD", "EURUSD")
    ]
    models = train_all(data, TINY)
    root = tmp_path_factory.mktemp("model_repository")
    versions = export_profiles(models, root)
    return TrainedRepository(root, models, data, versions["cpu"])


@pytest.fixture(scope="session")
def model_server(
    trained: TrainedRepository, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TritonServer]:
    http, grpc, metrics = free_ports(3)
    server = TritonServer(
        model_repository=trained.cpu,
        http_port=http,
        grpc_port=grpc,
        metrics_port=metrics,
        run_dir=tmp_path_factory.mktemp("triton-models"),
        name="triton-models",
    )
    server.start()
    yield server
    server.stop()
