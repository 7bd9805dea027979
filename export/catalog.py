"""The served models: names, tensors and the ensemble that answers a signal in one request."""

from __future__ import annotations

from export.repository import ModelDef, Tensor
from orchestrator.inference.models import ENSEMBLE, GRU, META, TRANSFORMER, XGB_LONG, XGB_SHORT

__all__ = ["ENSEMBLE", "GRU", "META", "TRANSFORMER", "XGB_LONG", "XGB_SHORT", "model_defs"]


def model_defs(window: int, n_features: int, n_ranges: int, n_context: int) -> list[ModelDef]:
    seq = Tensor("SEQ", (window, n_features))
    tab = Tensor("input__0", (2 * n_features,))
    ctx = Tensor("CTX", (n_context,))
    rng = Tensor("RANGE", (n_ranges,))
    proba = Tensor("output__0", (2,))
    meta_inputs = (
        Tensor("GRU_RANGE", (n_ranges,)),
        Tensor("TF_RANGE", (n_ranges,)),
        Tensor("P_LONG", (2,)),
        Tensor("P_SHORT", (2,)),
        ctx,
    )
    meta_outputs = (Tensor("CONFIDENCE", (1,)), Tensor("DIRECTION", (1,)))
    steps = f"""ensemble_scheduling {{
  step [
    {{ model_name: "{GRU}" model_version: -1
      input_map {{ key: "SEQ" value: "SEQ" }}
      output_map {{ key: "RANGE" value: "GRU_RANGE" }} }},
    {{ model_name: "{TRANSFORMER}" model_version: -1
      input_map {{ key: "SEQ" value: "SEQ" }}
      output_map {{ key: "RANGE" value: "TF_RANGE" }} }},
    {{ model_name: "{XGB_LONG}" model_version: -1
      input_map {{ key: "input__0" value: "TAB" }}
      output_map {{ key: "output__0" value: "P_LONG" }} }},
    {{ model_name: "{XGB_SHORT}" model_version: -1
      input_map {{ key: "input__0" value: "TAB" }}
      output_map {{ key: "output__0" value: "P_SHORT" }} }},
    {{ model_name: "{META}" model_version: -1
      input_map {{ key: "GRU_RANGE" value: "GRU_RANGE" }}
      input_map {{ key: "TF_RANGE" value: "TF_RANGE" }}
      input_map {{ key: "P_LONG" value: "P_LONG" }}
      input_map {{ key: "P_SHORT" value: "P_SHORT" }}
      input_map {{ key: "CTX" value: "CTX" }}
      output_map {{ key: "CONFIDENCE" value: "CONFIDENCE" }}
      output_map {{ key: "DIRECTION" value: "DIRECTION" }} }}
  ]
}}"""
    return [
        ModelDef(GRU, "onnx", (seq,), (rng,)),
        ModelDef(TRANSFORMER, "onnx", (seq,), (rng,)),
        ModelDef(XGB_LONG, "xgboost", (tab,), (proba,), max_batch_size=4096),
        ModelDef(XGB_SHORT, "xgboost", (tab,), (proba,), max_batch_size=4096),
        ModelDef(META, "onnx", meta_inputs, meta_outputs, max_batch_size=4096),
        ModelDef(
            f"{GRU}_torchscript",
            "torchscript",
            (Tensor("INPUT__0", seq.dims),),
            (Tensor("OUTPUT__0", rng.dims),),
            profiles=("gpu",),
        ),
        ModelDef(
            f"{TRANSFORMER}_torchscript",
            "torchscript",
            (Tensor("INPUT__0", seq.dims),),
            (Tensor("OUTPUT__0", rng.dims),),
            profiles=("gpu",),
        ),
        ModelDef(
            ENSEMBLE,
            "ensemble",
            (seq, Tensor("TAB", tab.dims), ctx),
            (
                Tensor("GRU_RANGE", rng.dims),
                Tensor("TF_RANGE", rng.dims),
                Tensor("P_LONG", (2,)),
                Tensor("P_SHORT", (2,)),
                *meta_outputs,
            ),
            ensemble_steps=steps,
        ),
    ]
