"""Trained models -> ONNX / TorchScript / xgboost.json -> both repository profiles."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import msgspec
import torch

from export.card import plot_file, render_card
from export.catalog import ENSEMBLE, GRU, META, TRANSFORMER, XGB_LONG, XGB_SHORT, model_defs
from export.repository import PROFILES, next_version, publish_version
from export.train import TrainedModels
from orchestrator.inference.models import BASE_TIMEFRAME, served_name

ONNX_OPSET = 17
VERSION_DOCUMENTS = ("feature_spec.json", "model_card.json")  # in every version of every model


_SCALAR_LIST = re.compile(r"\[\s+([^\[\]{}]*?)\s+\]")


def card_json(card: dict[str, object]) -> str:
    """The card, indented, with every list of plain values on one line (the barrier cells and
    the quantile tables made one value per line most of the file)."""
    text = json.dumps(card, indent=2, default=str)
    return _SCALAR_LIST.sub(lambda m: "[" + re.sub(r",\s*\n\s*", ", ", m.group(1)) + "]", text)


def export_onnx_range(model: torch.nn.Module, path: Path, window: int, n_features: int) -> None:
    """Legacy exporter (dynamo=False): the dynamo path mis-exports nn.GRU (linear_before_reset)."""
    model.eval()
    torch.backends.mha.set_fastpath_enabled(False)  # the MHA fast path does not export
    example = torch.zeros(2, window, n_features)
    torch.onnx.export(
        model,
        (example,),
        str(path),
        input_names=["SEQ"],
        output_names=["RANGE"],
        dynamic_axes={"SEQ": {0: "batch"}, "RANGE": {0: "batch"}},
        opset_version=ONNX_OPSET,
        dynamo=False,
    )


def export_torchscript(model: torch.nn.Module, path: Path, window: int, n_features: int) -> None:
    model.eval()
    torch.backends.mha.set_fastpath_enabled(False)
    with torch.no_grad():
        example = torch.zeros(3, window, n_features)
        traced = torch.jit.trace(model, example, check_trace=False)  # type: ignore[no-untyped-call]
    traced.save(str(path))


def export_onnx_meta(meta: torch.nn.Module, path: Path, n_range: int, n_context: int) -> None:
    meta.eval()
    names = ["GRU_RANGE", "TF_RANGE", "P_LONG", "P_SHORT", "CTX"]
    example = (
        torch.zeros(2, n_range),
        torch.zeros(2, n_range),
        torch.full((2, 2), 0.5),
        torch.full((2, 2), 0.5),
        torch.zeros(2, n_context),
    )
    axes = {n: {0: "batch"} for n in [*names, "CONFIDENCE", "DIRECTION"]}
    torch.onnx.export(
        meta,
        example,
        str(path),
        input_names=names,
        output_names=["CONFIDENCE", "DIRECTION"],
        dynamic_axes=axes,
        opset_version=ONNX_OPSET,
        dynamo=False,
    )


def write_artifacts(
    models: TrainedModels, out: Path, *, torchscript: bool = True
) -> dict[str, dict[str, Path]]:
    """Artifacts per model name, plus the spec and card that travel with every version.
    TorchScript is only served by the gpu profile, so a cpu-only export skips the tracing."""
    spec = models.spec
    n_range = spec.n_ranges
    tf = spec.timeframe
    files: dict[str, dict[str, Path]] = {}
    nets = ((served_name(GRU, tf), models.gru), (served_name(TRANSFORMER, tf), models.transformer))
    for name, net in nets:
        export_onnx_range(net, out / f"{name}.onnx", spec.window, spec.n_features)
        files[name] = {"model.onnx": out / f"{name}.onnx"}
        if torchscript:
            export_torchscript(net, out / f"{name}.pt", spec.window, spec.n_features)
            files[f"{name}_torchscript"] = {"model.pt": out / f"{name}.pt"}
    boosters = (
        (served_name(XGB_LONG, tf), models.xgb_long),
        (served_name(XGB_SHORT, tf), models.xgb_short),
    )
    for name, booster in boosters:
        booster.save_model(str(out / f"{name}.json"))
        files[name] = {"xgboost.json": out / f"{name}.json"}
    meta = served_name(META, tf)
    export_onnx_meta(models.meta, out / f"{meta}.onnx", n_range, len(spec.context_features))
    files[meta] = {"model.onnx": out / f"{meta}.onnx"}
    # The cpu profile's fused ensemble carries its members' artifacts under fixed names (see
    # export/backends/fused_ensemble.py); the gpu profile's native ensemble only references them.
    files[served_name(ENSEMBLE, tf)] = {
        f"{GRU}.onnx": files[served_name(GRU, tf)]["model.onnx"],
        f"{TRANSFORMER}.onnx": files[served_name(TRANSFORMER, tf)]["model.onnx"],
        f"{XGB_LONG}.json": files[served_name(XGB_LONG, tf)]["xgboost.json"],
        f"{XGB_SHORT}.json": files[served_name(XGB_SHORT, tf)]["xgboost.json"],
        f"{META}.onnx": files[meta]["model.onnx"],
    }
    (out / "feature_spec.json").write_bytes(spec.dumps())
    (out / "model_card.json").write_text(card_json(models.card))
    for entry in files.values():
        for document in VERSION_DOCUMENTS:
            entry[document] = out / document
    return files


def export_profiles(
    models: TrainedModels,
    repository_root: Path,
    *,
    tensorrt: bool = False,
    profiles: tuple[str, ...] = PROFILES,
) -> dict[str, int]:
    """Writes a new version of every model into `<root>/<profile>` (cpu and gpu by default)."""
    spec = models.spec
    defs = model_defs(
        spec.window,
        spec.n_features,
        spec.n_ranges,
        len(spec.context_features),
        spec.timeframe,
    )
    versions = {}
    spec_json = msgspec.json.encode(spec).decode()
    with tempfile.TemporaryDirectory() as tmp:
        files = write_artifacts(models, Path(tmp), torchscript="gpu" in profiles)
        for profile in profiles:
            repository = repository_root / profile
            repository.mkdir(parents=True, exist_ok=True)
            chosen = [d for d in defs if profile in d.profiles]
            version = next_version(repository, [d.name for d in chosen])
            # Dependencies first, the ensemble last: a loader never sees it ahead of its steps.
            for model in chosen:
                model_files = files[model.name]
                if model.kind == "ensemble" and profile == "gpu":
                    model_files = {k: model_files[k] for k in VERSION_DOCUMENTS}
                publish_version(
                    repository,
                    model,
                    profile,
                    version,
                    model_files,
                    fingerprint=spec.fingerprint,
                    feature_spec=spec_json if model.kind == "ensemble" else None,
                    timeframe=spec.timeframe,
                    tensorrt=tensorrt,
                )
            versions[profile] = version
            name = card_name(spec.timeframe)
            (repository / name).write_text(render_card(models.card, version, name))
            for plot, png in models.plots.items():
                (repository / plot_file(name, plot)).write_bytes(png)
    return versions


def card_name(timeframe: str) -> str:
    """MODEL_CARD.md for the 5m set, MODEL_CARD_<tf>.md for the others."""
    return "MODEL_CARD.md" if timeframe == BASE_TIMEFRAME else f"MODEL_CARD_{timeframe}.md"
