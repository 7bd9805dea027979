"""Triton Python-backend model: an XGBoost classifier (xgboost.json) with FIL's tensor contract
(input__0 [n_features] -> output__0 [2] class probabilities), one predict per dynamic batch."""

import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils
import xgboost as xgb


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.input = config["input"][0]["name"]
        self.output = config["output"][0]["name"]
        path = os.path.join(args["model_repository"], args["model_version"], "xgboost.json")
        self.booster = xgb.Booster()
        self.booster.load_model(path)
        self.booster.set_param({"nthread": 1})

    def execute(self, requests):
        responses = [None] * len(requests)
        good, arrays = [], []
        for index, request in enumerate(requests):
            x = pb_utils.get_input_tensor_by_name(request, self.input).as_numpy()
            if not np.isfinite(x).all():
                responses[index] = pb_utils.InferenceResponse(
                    error=pb_utils.TritonError(
                        f"input {self.input} contains NaN or infinity; send finite values",
                        pb_utils.TritonError.INVALID_ARG,
                    )
                )
                continue
            good.append(index)
            arrays.append(x)
        if good:
            batch = np.concatenate(arrays, axis=0)
            positive = self.booster.inplace_predict(batch).astype(np.float32).reshape(-1)
            proba = np.stack([1.0 - positive, positive], axis=1).astype(np.float32)
            start = 0
            for index, x in zip(good, arrays, strict=True):
                stop = start + x.shape[0]
                responses[index] = pb_utils.InferenceResponse(
                    output_tensors=[pb_utils.Tensor(self.output, proba[start:stop])]
                )
                start = stop
        return responses
