"""The served models: names, tensors and the ensemble that answers a signal in one request."""

from __future__ import annotations

from export.repository import ModelDef, Tensor
from orchestrator.inference.models import (
    BASE_TIMEFRAME,
    ENSEMBLE,
    GRU,
    META,
    TRANSFORMER,
    XGB_LONG,
    XGB_SHORT,
    served_name,
)

__all__ = ["ENSEMBLE", "GRU", "META", "TRANSFORMER", "XGB_LONG", "XGB_SHORT", "model_defs"]


def model_defs(
    window: int,
    n_features: int,
    n_ranges: int,
    n_context: int,
    timeframe: str = BASE_TIMEFRAME,
) -> list[ModelDef]:
    """Every model of one timeframe's set, named with served_name (the ensemble's steps too)."""
    gru, tfm = served_name(GRU, timeframe), served_name(TRANSFORMER, timeframe)
    xgb_long, xgb_short = served_name(XGB_LONG, timeframe), served_name(XGB_SHORT, timeframe)
    meta, ensemble = served_name(META, timeframe), served_name(ENSEMBLE, timeframe)
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
    {{ model_name: "{gru}" model_version: -1
      input_map {{ key: "SEQ" value: "SEQ" }}
      output_map {{ key: "RANGE" value: "GRU_RANGE" }} }},
    {{ model_name: "{tfm}" model_version: -1
      input_map {{ key: "SEQ" value: "SEQ" }}
      output_map {{ key: "RANGE" value: "TF_RANGE" }} }},
    {{ model_name: "{xgb_long}" model_version: -1
      input_map {{ key: "input__0" value: "TAB" }}
      output_map {{ key: "output__0" value: "P_LONG" }} }},
    {{ model_name: "{xgb_short}" model_version: -1
      input_map {{ key: "input__0" value: "TAB" }}
      output_map {{ key: "output__0" value: "P_SHORT" }} }},
    {{ model_name: "{meta}" model_version: -1
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
        ModelDef(gru, "onnx", (seq,), (rng,)),
        ModelDef(tfm, "onnx", (seq,), (rng,)),
        ModelDef(xgb_long, "xgboost", (tab,), (proba,), max_batch_size=4096),
        ModelDef(xgb_short, "xgboost", (tab,), (proba,), max_batch_size=4096),
        ModelDef(meta, "onnx", meta_inputs, meta_outputs, max_batch_size=4096),
        ModelDef(
            f"{gru}_torchscript",
            "torchscript",
            (Tensor("INPUT__0", seq.dims),),
            (Tensor("OUTPUT__0", rng.dims),),
            profiles=("gpu",),
        ),
        ModelDef(
            f"{tfm}_torchscript",
            "torchscript",
            (Tensor("INPUT__0", seq.dims),),
            (Tensor("OUTPUT__0", rng.dims),),
            profiles=("gpu",),
        ),
        ModelDef(
            ensemble,
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
