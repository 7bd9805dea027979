"""Triton model repository layout for both profiles, written atomically.

`cpu` (the pytriton wheel's server: Python backend only) and `gpu` (NGC container: native
onnxruntime_onnx / pytorch_libtorch / fil backends) share model names, tensor names, shapes and
batching, and are built from the same artifacts. A new version is assembled in a staging
directory on the same filesystem and renamed into place, so Triton never sees half a version.

The cpu profile's code is not in the versions: its three runners are Triton Python-based
backends installed once (model_repository/backends/<runner>/model.py, in Triton's backend
directory), and a config names its runner with `backend: "<runner>"`. A version holds only
artifacts.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from orchestrator.fileio import atomic_file
from orchestrator.inference.models import FEATURE_SPEC_PARAMETER, config_parameter

PROFILES = ("cpu", "gpu")
KEEP_VERSIONS = 3
QUEUE_DELAY_US = 2000
# The fused cpu ensemble (one stub, five models), tuned with `make bench-triton-tuning`
# (docs/benchmarks.md): no queue delay (batches form while an instance is busy; any delay only
# adds latency at low concurrency) and two instances, so one executes while Triton turns the
# other's responses around. The bar-close sweep sends whole 256-row batches anyway.
FUSED_QUEUE_DELAY_US = 0
FUSED_INSTANCES = 2
# The Python-based backend (model_repository/backends/) that runs each kind on the cpu profile.
CPU_RUNNERS = {"onnx": "onnx_runner", "xgboost": "xgboost_runner", "ensemble": "fused_ensemble"}


@dataclass(frozen=True)
class Tensor:
    name: str
    dims: tuple[int, ...]
    dtype: str = "TYPE_FP32"

    def pbtxt(self) -> str:
        dims = ", ".join(str(d) for d in self.dims)
        return f'  {{ name: "{self.name}", data_type: {self.dtype}, dims: [ {dims} ] }}'


@dataclass(frozen=True)
class ModelDef:
    name: str
    kind: str  # "onnx", "xgboost", "torchscript", "ensemble"
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    max_batch_size: int = 256
    profiles: tuple[str, ...] = PROFILES
    ensemble_steps: str = ""


def _tensors(label: str, tensors: tuple[Tensor, ...]) -> str:
    return f"{label} [\n" + ",\n".join(t.pbtxt() for t in tensors) + "\n]"


_param = config_parameter


def _warmup(model: ModelDef) -> str:
    inputs = "\n".join(
        f'    inputs {{ key: "{t.name}" value: {{ data_type: {t.dtype} '
        f"dims: [ {', '.join(str(d) for d in t.dims)} ] zero_data: true }} }}"
        for t in model.inputs
    )
    return f'model_warmup [ {{\n    name: "zeros"\n    batch_size: 1\n{inputs}\n}} ]'


def render_config(
    model: ModelDef,
    profile: str,
    *,
    fingerprint: str,
    timeframe: str,
    tensorrt: bool = False,
    feature_spec: str | None = None,
) -> str:
    """config.pbtxt text for one model in one profile, stamped with the feature fingerprint."""
    lines = [
        f'name: "{model.name}"',
        _param("feature_fingerprint", fingerprint),
        _param("feature_timeframe", timeframe),
    ]
    if feature_spec is not None:
        # The spec (normalisation statistics included) travels with the served model, so the
        # orchestrator reads it through Triton's API wherever the repository lives.
        lines.append(_param(FEATURE_SPEC_PARAMETER, feature_spec))
    gpu = profile == "gpu"
    if model.kind == "ensemble" and not gpu:
        return "\n".join([*lines, *_fused_ensemble_config(model)]) + "\n"
    if model.kind == "ensemble":
        lines += [
            'platform: "ensemble"',
            f"max_batch_size: {model.max_batch_size}",
            _tensors("input", model.inputs),
            _tensors("output", model.outputs),
            model.ensemble_steps,
        ]
        return "\n".join(lines) + "\n"
    if not gpu:
        lines.append(f'backend: "{CPU_RUNNERS[model.kind]}"')
    elif model.kind == "onnx":
        lines += ['platform: "onnxruntime_onnx"', 'default_model_filename: "model.onnx"']
    elif model.kind == "torchscript":
        lines += ['platform: "pytorch_libtorch"', 'default_model_filename: "model.pt"']
    elif model.kind == "xgboost":
        lines.append('backend: "fil"')
    lines += [
        f"max_batch_size: {model.max_batch_size}",
        _tensors("input", model.inputs),
        _tensors("output", model.outputs),
    ]
    lines.append(f"dynamic_batching {{ max_queue_delay_microseconds: {QUEUE_DELAY_US} }}")
    kind = "KIND_GPU" if gpu else "KIND_CPU"
    lines.append(f"instance_group [ {{ count: 1, kind: {kind} }} ]")
    lines.append("version_policy { latest { num_versions: 1 } }")
    if model.kind == "xgboost":
        if gpu:
            # FIL >= 25.09 names: is_classifier (was output_class), threshold required,
            # layout (was algo); storage_type is gone.
            lines += [
                _param("model_type", "xgboost_json"),
                _param("is_classifier", "true"),
                _param("predict_proba", "true"),
                _param("threshold", "0.5"),
                _param("layout", "depth_first"),
            ]
    elif not gpu:
        lines += [_param("artifact", "model.onnx"), _param("intra_op_threads", "1")]
    if gpu:
        lines.append(_warmup(model))
        if tensorrt and model.kind == "onnx":
            lines.append(
                "optimization { execution_accelerators { gpu_execution_accelerator: [ {"
                ' name: "tensorrt" parameters { key: "precision_mode" value: "FP16" } } ] } }'
            )
    return "\n".join(lines) + "\n"


def _fused_ensemble_config(model: ModelDef) -> list[str]:
    """cpu profile: the ensemble as one Python-backend model over the whole dynamic batch (same
    name and tensors as the gpu profile's native ensemble)."""
    return [
        f'backend: "{CPU_RUNNERS["ensemble"]}"',
        f"max_batch_size: {model.max_batch_size}",
        _tensors("input", model.inputs),
        _tensors("output", model.outputs),
        f"dynamic_batching {{ max_queue_delay_microseconds: {FUSED_QUEUE_DELAY_US} }}",
        f"instance_group [ {{ count: {FUSED_INSTANCES}, kind: KIND_CPU }} ]",
        "version_policy { latest { num_versions: 1 } }",
        _param("onnx_threads", "1"),
        _param("xgb_threads", "1"),
    ]


def next_version(repository: Path, names: list[str]) -> int:
    """One version number for the whole export, above every existing one."""
    existing = [
        int(p.name)
        for name in names
        for p in (repository / name).glob("*")
        if p.is_dir() and p.name.isdigit()
    ]
    return max(existing, default=0) + 1


def publish_version(
    repository: Path,
    model: ModelDef,
    profile: str,
    version: int,
    files: dict[str, Path],
    *,
    fingerprint: str,
    timeframe: str,
    tensorrt: bool = False,
    keep: int = KEEP_VERSIONS,
    feature_spec: str | None = None,
) -> Path:
    """Stages `files` as `version`, then renames it in."""
    model_dir = repository / model.name
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=repository, prefix=f".staging-{model.name}-"))
    try:
        for target, source in files.items():
            shutil.copy2(source, staging / target)
        final = model_dir / str(version)
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    config = render_config(
        model,
        profile,
        fingerprint=fingerprint,
        timeframe=timeframe,
        tensorrt=tensorrt,
        feature_spec=feature_spec,
    )
    with atomic_file(model_dir / "config.pbtxt", text=True) as handle:
        handle.write(config)
    versions = sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())
    for old in versions[:-keep]:
        shutil.rmtree(model_dir / str(old))
    return final
