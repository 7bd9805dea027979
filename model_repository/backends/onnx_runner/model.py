"""Triton Python-backend model: runs model.onnx with onnxruntime, one call per dynamic batch.

Inputs and outputs come from config.pbtxt; requests are concatenated along the batch axis, run
once, and split back into one response per request. A request carrying NaN/inf gets an
INVALID_ARG error of its own; the other requests in the batch are still answered.
"""

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.inputs = [i["name"] for i in config["input"]]
        self.outputs = [o["name"] for o in config["output"]]
        params = config.get("parameters", {})
        artifact = params.get("artifact", {}).get("string_value", "model.onnx")
        path = os.path.join(args["model_repository"], args["model_version"], artifact)
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(
            params.get("intra_op_threads", {}).get("string_value", "1")
        )
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.onnx_inputs = [i.name for i in self.session.get_inputs()]
        self.onnx_outputs = [o.name for o in self.session.get_outputs()]

    def execute(self, requests):
        responses = [None] * len(requests)
        good, arrays = [], []
        for index, request in enumerate(requests):
            tensors = [
                pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in self.inputs
            ]
            bad = [
                name
                for name, t in zip(self.inputs, tensors, strict=True)
                if not np.isfinite(t).all()
            ]
            if bad:
                responses[index] = pb_utils.InferenceResponse(
                    error=pb_utils.TritonError(
                        f"input {', '.join(bad)} contains NaN or infinity; send finite values",
                        pb_utils.TritonError.INVALID_ARG,
                    )
                )
                continue
            good.append(index)
            arrays.append(tensors)
        if good:
            feed = {
                onnx_name: np.concatenate([a[k] for a in arrays], axis=0)
                for k, onnx_name in enumerate(self.onnx_inputs)
            }
            results = self.session.run(self.onnx_outputs, feed)
            start = 0
            for index, tensors in zip(good, arrays, strict=True):
                stop = start + tensors[0].shape[0]
                responses[index] = pb_utils.InferenceResponse(
                    output_tensors=[
                        pb_utils.Tensor(name, np.ascontiguousarray(result[start:stop]))
                        for name, result in zip(self.outputs, results, strict=True)
                    ]
                )
                start = stop
        return responses
