"""Both profiles' configs parse into Triton's ModelConfig and agree with the artifacts."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
import xgboost as xgb
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from export.catalog import ENSEMBLE
from export.repository import CPU_RUNNERS, KEEP_VERSIONS, next_version
from orchestrator.devstack.triton import RUNNERS_DIR
from tests.models.conftest import TrainedRepository

_DTYPE = {onnx.TensorProto.FLOAT: model_config_pb2.TYPE_FP32}


def _parse(path: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


@pytest.mark.parametrize("profile", ["cpu", "gpu"])
def test_every_config_parses_and_matches_its_artifacts(
    trained: TrainedRepository, profile: str
) -> None:
    repository = trained.root / profile
    configs = {p.parent.name: _parse(p) for p in repository.glob("*/config.pbtxt")}
    assert ENSEMBLE in configs
    for name, config in configs.items():
        assert config.name == name
        version = repository / name / str(trained.version)
        assert version.is_dir()
        if config.platform == "ensemble":
            steps = [s.model_name for s in config.ensemble_scheduling.step]
            assert all(step in configs for step in steps)
            continue
        assert config.max_batch_size > 0
        assert config.dynamic_batching is not None
        kind = config.instance_group[0].kind
        assert kind == (
            model_config_pb2.ModelInstanceGroup.KIND_GPU
            if profile == "gpu"
            else model_config_pb2.ModelInstanceGroup.KIND_CPU
        )
        if (version / "model.onnx").exists():
            graph = onnx.load(str(version / "model.onnx")).graph
            for declared, actual in ((config.input, graph.input), (config.output, graph.output)):
                assert [t.name for t in declared] == [t.name for t in actual]
                for t, a in zip(declared, actual, strict=True):
                    shape = [d.dim_value or d.dim_param for d in a.type.tensor_type.shape.dim]
                    assert isinstance(shape[0], str)  # a variable batch dimension
                    assert list(t.dims) == shape[1:]
                    assert t.data_type == _DTYPE[a.type.tensor_type.elem_type]
        if (version / "xgboost.json").exists():
            booster = xgb.Booster()
            booster.load_model(str(version / "xgboost.json"))
            assert list(config.input[0].dims) == [booster.num_features()]
            assert config.input[0].name == "input__0"
            assert config.output[0].name == "output__0"
        if profile == "gpu" and config.backend == "fil":
            params = {k: v.string_value for k, v in config.parameters.items()}
            assert params["model_type"] == "xgboost_json"
            assert params["is_classifier"] == "true"
            assert "threshold" in params
            assert "output_class" not in params
            assert "storage_type" not in params
        if profile == "gpu":
            assert (
                config.platform in ("onnxruntime_onnx", "pytorch_libtorch")
                or config.backend == "fil"
            )
            assert len(config.model_warmup) == 1
        else:
            # A Python-based backend installed once; the version holds only artifacts.
            kind = (
                "ensemble"  # the fused one: every member's artifact in one version
                if (version / "range_gru.onnx").exists()
                else "xgboost"
                if (version / "xgboost.json").exists()
                else "onnx"
            )
            assert config.backend == CPU_RUNNERS[kind]
            assert (RUNNERS_DIR / config.backend / "model.py").is_file()
            assert not list(version.glob("*.py"))


def test_cpu_and_gpu_agree_on_names_tensors_and_batching(trained: TrainedRepository) -> None:
    cpu = {p.parent.name: _parse(p) for p in trained.cpu.glob("*/config.pbtxt")}
    gpu = {p.parent.name: _parse(p) for p in trained.gpu.glob("*/config.pbtxt")}
    assert set(cpu) <= set(gpu)
    for name, config in cpu.items():
        other = gpu[name]
        assert [(t.name, list(t.dims)) for t in config.input] == [
            (t.name, list(t.dims)) for t in other.input
        ]
        assert [(t.name, list(t.dims)) for t in config.output] == [
            (t.name, list(t.dims)) for t in other.output
        ]
        assert config.max_batch_size == other.max_batch_size


def test_versions_are_kept_per_policy(trained: TrainedRepository, tmp_path: Path) -> None:
    from export.exporter import export_profiles

    for _ in range(KEEP_VERSIONS + 1):
        export_profiles(trained.models, tmp_path)
    versions = sorted(int(p.name) for p in (tmp_path / "cpu" / "range_gru").iterdir() if p.is_dir())
    assert versions == list(range(2, KEEP_VERSIONS + 2))
    assert next_version(tmp_path / "cpu", ["range_gru"]) == KEEP_VERSIONS + 2
    assert not list((tmp_path / "cpu").glob(".staging-*"))
