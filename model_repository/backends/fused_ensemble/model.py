"""The cpu profile's `signal_ensemble`: all five models of one set in one Python-backend stub.

Triton's ensemble scheduler would cross five Python stubs per request (five IPC hops and copies);
here one stub runs the two range models, both TP/SL classifiers and the metamodel over the whole
dynamic batch. The same `FusedEnsemble` class runs in-process (the benchmarks' ceiling and the
seed-style baseline import this file), so Triton and the ceiling execute identical code.

Artifacts sit in the version directory under fixed names (ARTIFACTS). Thread counts come from
config.pbtxt parameters; on a small CPU one thread per library is fastest (see docs/benchmarks.md).
"""

import json
import os

import numpy as np
import onnxruntime as ort
import xgboost as xgb

try:  # inside Triton's stub; absent when the class is used in-process
    import triton_python_backend_utils as pb_utils
except ImportError:  # pragma: no cover - exercised by the in-process users
    pb_utils = None

ARTIFACTS = {
    "gru": "range_gru.onnx",
    "transformer": "range_transformer.onnx",
    "xgb_long": "tpsl_xgb_long.json",
    "xgb_short": "tpsl_xgb_short.json",
    "meta": "signal_metamodel.onnx",
}
INPUTS = ("SEQ", "TAB", "CTX")
OUTPUTS = ("GRU_RANGE", "TF_RANGE", "P_LONG", "P_SHORT", "CONFIDENCE", "DIRECTION")


class FusedEnsemble:
    """Five artifacts, one call: (SEQ, TAB, CTX) batches -> the ensemble's six outputs."""

    def __init__(self, version_dir, onnx_threads=1, xgb_threads=1):
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(onnx_threads)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL

        def session(name):
            path = os.path.join(version_dir, ARTIFACTS[name])
            return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

        self.gru = session("gru")
        self.transformer = session("transformer")
        self.meta = session("meta")
        self.boosters = []
        for name in ("xgb_long", "xgb_short"):
            booster = xgb.Booster()
            booster.load_model(os.path.join(version_dir, ARTIFACTS[name]))
            booster.set_param({"nthread": int(xgb_threads)})
            self.boosters.append(booster)

    def _proba(self, booster, tab):
        positive = booster.inplace_predict(tab).astype(np.float32).reshape(-1)
        return np.stack([1.0 - positive, positive], axis=1)

    def run(self, seq, tab, ctx):
        """Float32 arrays with a leading batch axis -> {output name: (N, ...) float32}."""
        gru = self.gru.run(None, {"SEQ": seq})[0]
        transformer = self.transformer.run(None, {"SEQ": seq})[0]
        p_long = self._proba(self.boosters[0], tab)
        p_short = self._proba(self.boosters[1], tab)
        feed = {
            "GRU_RANGE": gru,
            "TF_RANGE": transformer,
            "P_LONG": p_long,
            "P_SHORT": p_short,
            "CTX": ctx,
        }
        confidence, direction = self.meta.run(["CONFIDENCE", "DIRECTION"], feed)
        arrays = (gru, transformer, p_long, p_short, confidence, direction)
        return {
            name: np.ascontiguousarray(a, dtype=np.float32)
            for name, a in zip(OUTPUTS, arrays, strict=True)
        }


def _param(config, key, default):
    return config.get("parameters", {}).get(key, {}).get("string_value", default)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        self.ensemble = FusedEnsemble(
            version_dir,
            onnx_threads=_param(config, "onnx_threads", "1"),
            xgb_threads=_param(config, "xgb_threads", "1"),
        )

    def execute(self, requests):
        """One model call over every request of the dynamic batch, split back per request; a
        request with NaN/inf gets its own INVALID_ARG error and the others are still answered.
        Finiteness is checked once on the whole batch (per request only when that fails)."""
        batches = [
            [pb_utils.get_input_tensor_by_name(request, n).as_numpy() for n in INPUTS]
            for request in requests
        ]
        responses = [None] * len(requests)
        good = list(range(len(requests)))
        merged = _merge(batches)
        if not all(np.isfinite(t).all() for t in merged):
            good = []
            for index, tensors in enumerate(batches):
                bad = [n for n, t in zip(INPUTS, tensors, strict=True) if not np.isfinite(t).all()]
                if bad:
                    responses[index] = pb_utils.InferenceResponse(
                        error=pb_utils.TritonError(
                            f"input {', '.join(bad)} contains NaN or infinity; send finite values",
                            pb_utils.TritonError.INVALID_ARG,
                        )
                    )
                else:
                    good.append(index)
            if not good:
                return responses
            merged = _merge([batches[i] for i in good])
        outputs = self.ensemble.run(*merged)
        start = 0
        for index in good:
            stop = start + batches[index][0].shape[0]
            responses[index] = pb_utils.InferenceResponse(
                output_tensors=[
                    pb_utils.Tensor(name, outputs[name][start:stop]) for name in OUTPUTS
                ]
            )
            start = stop
        return responses


def _merge(batches):
    """(SEQ, TAB, CTX) of several requests as one batch along axis 0."""
    if len(batches) == 1:
        return batches[0]
    return [np.concatenate([b[k] for b in batches]) for k in range(len(INPUTS))]
