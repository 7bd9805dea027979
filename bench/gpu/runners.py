"""The gpu profile's five artifacts run by PyTorch on a chosen device (cuda or cpu), in-process or
as Triton Python-backend models (this file is copied as `model.py` into every generated model).

Why PyTorch: the wheel's tritonserver (nvidia-pytriton) carries only the Python backend, and a
lent GPU machine has no registry: onnxruntime-gpu (~300 MB) and xgboost's CUDA wheel (~300 MB)
do not fit the 64 MiB a device call carries. So, inside the stub (and in-process):

- range models: the exported TorchScript artifacts (`*_torchscript/1/model.pt`) on the device.
  The GRU's trace baked `device="cpu"` into its zero h0; `load_range` retargets that constant.
- TP/SL classifiers: `xgboost.json` evaluated as padded node arrays, one gather per tree level
  for every tree and row at once (the way FIL walks trees), exact to float32 rounding.
- metamodel: the ONNX graph's four initializers (mean, std, weight, bias) as the same logistic
  regression (`export.networks.MetaModel`), direction from the two win probabilities.

`bench/gpu/driver.py` converts xgboost.json and the metamodel's ONNX into `trees.json` and
`meta.json` when it builds the repository, so this file needs only torch and numpy.
Imports nothing from the project: it runs in the Triton stub's environment.
"""

from __future__ import annotations

import json
import os

import numpy as np
import torch

try:  # inside Triton's stub; absent in-process
    import triton_python_backend_utils as pb_utils
except ImportError:  # pragma: no cover
    pb_utils = None

INPUTS = ("SEQ", "TAB", "CTX")
OUTPUTS = ("GRU_RANGE", "TF_RANGE", "P_LONG", "P_SHORT", "CONFIDENCE", "DIRECTION")
WIDTHS = (8, 8, 2, 2, 1, 1)


# --- range models (TorchScript) -------------------------------------------------------------
class _EagerGRU(torch.nn.Module):
    """export.networks.GRURange rebuilt from a traced module's weights (fallback only)."""

    def __init__(self, traced: torch.nn.Module) -> None:
        super().__init__()
        state = {k: v for k, v in traced.state_dict().items()}
        hidden = state["gru.weight_hh_l0"].shape[1]
        n_features = state["gru.weight_ih_l0"].shape[1]
        n_outputs = state["head.2.weight"].shape[0]
        self.gru = torch.nn.GRU(n_features, hidden, num_layers=1, batch_first=True)
        self.head = torch.nn.Sequential(
            torch.nn.Linear(hidden, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, n_outputs)
        )
        self.load_state_dict(state)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        _, last = self.gru(seq)
        return torch.nn.functional.softplus(self.head(last[-1]))


def _retarget_device_constants(module: torch.jit.ScriptModule, device: torch.device) -> int:
    """Rewrite every `prim::Constant` of Device type that says "cpu" in every method graph.
    Tracing records `device=seq.device` as a constant; on a GPU that constant puts h0 on the
    CPU and the GRU call fails. Returns how many constants were changed."""
    changed = 0
    for _, sub in module.named_modules():
        cpp = sub._c
        for name in cpp._method_names():
            graph = cpp._get_method(name).graph
            for node in graph.findAllNodes("prim::Constant"):
                out = node.output()
                if (
                    str(out.type()) == "Device"
                    and node.hasAttribute("value")
                    and node.s("value") == "cpu"
                    and device.type != "cpu"
                ):
                    node.s_("value", str(device))
                    changed += 1
    return changed


def load_range(path: str, device: torch.device, probe_shape: tuple[int, int]) -> tuple:
    """(callable, how) for a TorchScript range model on `device`; `how` says what ran."""
    module = torch.jit.load(path, map_location=device).eval()
    changed = _retarget_device_constants(module, device)
    probe = torch.zeros((2, *probe_shape), dtype=torch.float32, device=device)
    try:
        with torch.inference_mode():
            module(probe)
        return module, f"torchscript ({changed} device constant(s) retargeted)"
    except Exception as error:
        eager = _EagerGRU(module).to(device).eval()
        with torch.inference_mode():
            eager(probe)
        return eager, f"eager GRU from the TorchScript weights ({type(error).__name__})"


# --- TP/SL classifiers (xgboost.json as node arrays) ------------------------------------------
def xgboost_to_arrays(path: str) -> dict:
    """xgboost.json (binary:logistic, numerical splits) -> padded per-tree node arrays."""
    with open(path) as handle:
        learner = json.load(handle)["learner"]
    objective = learner["objective"]["name"]
    if objective != "binary:logistic":
        raise ValueError(f"{path}: objective {objective} not supported here")
    base_score = float(str(learner["learner_model_param"]["base_score"]).strip("[]"))
    trees = learner["gradient_booster"]["model"]["trees"]
    n = max(len(t["left_children"]) for t in trees)

    def depth(t: dict) -> int:
        left, right = t["left_children"], t["right_children"]
        stack, best = [(0, 0)], 0
        while stack:
            i, d = stack.pop()
            if left[i] == -1:
                best = max(best, d)
            else:
                stack += [(left[i], d + 1), (right[i], d + 1)]
        return best

    def pad(values: list, fill: float | int) -> list:
        return list(values) + [fill] * (n - len(values))

    for t in trees:
        if any(int(s) != 0 for s in t.get("split_type", [])):
            raise ValueError(f"{path}: categorical splits not supported here")
    return {
        "base_margin": float(np.log(base_score / (1.0 - base_score))),
        "depth": max(depth(t) for t in trees),
        "feature": [pad(t["split_indices"], 0) for t in trees],
        "threshold": [pad(t["split_conditions"], 0.0) for t in trees],
        "left": [pad([max(c, 0) for c in t["left_children"]], 0) for t in trees],
        "right": [pad([max(c, 0) for c in t["right_children"]], 0) for t in trees],
        "default_left": [pad([bool(v) for v in t["default_left"]], False) for t in trees],
        "leaf": [pad([c == -1 for c in t["left_children"]], True) for t in trees],
        # xgboost stores a leaf's value in split_conditions
        "value": [pad(t["split_conditions"], 0.0) for t in trees],
    }


class Trees:
    """P(class 0), P(class 1) of a binary:logistic booster for a (B, F) float32 batch."""

    def __init__(self, arrays: dict, device: torch.device) -> None:
        def tensor(key: str, dtype: torch.dtype) -> torch.Tensor:
            return torch.tensor(arrays[key], dtype=dtype, device=device).reshape(-1)

        self.n_trees = len(arrays["feature"])
        self.n_nodes = len(arrays["feature"][0])
        self.depth = int(arrays["depth"])
        self.base_margin = float(arrays["base_margin"])
        self.feature = tensor("feature", torch.int64)
        self.threshold = tensor("threshold", torch.float32)
        self.left = tensor("left", torch.int64)
        self.right = tensor("right", torch.int64)
        self.default_left = tensor("default_left", torch.bool)
        self.leaf = tensor("leaf", torch.bool)
        self.value = tensor("value", torch.float32)
        self.offsets = torch.arange(self.n_trees, device=device, dtype=torch.int64) * self.n_nodes

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        node = self.offsets.expand(x.shape[0], -1)  # flat index of each tree's root, (B, T)
        for _ in range(self.depth):
            v = x.gather(1, self.feature[node])
            go_left = torch.where(torch.isnan(v), self.default_left[node], v < self.threshold[node])
            child = torch.where(go_left, self.left[node], self.right[node]) + self.offsets
            node = torch.where(self.leaf[node], node, child)
        p = torch.sigmoid(self.value[node].sum(dim=1) + self.base_margin)
        return torch.stack((1.0 - p, p), dim=1)


# --- metamodel (the ONNX graph's logistic regression) ------------------------------------------
class Meta:
    def __init__(self, weights: dict, device: torch.device) -> None:
        def tensor(key: str) -> torch.Tensor:
            return torch.tensor(weights[key], dtype=torch.float32, device=device)

        self.mean, self.std = tensor("mean"), tensor("std")
        self.weight, self.bias = tensor("weight").reshape(1, -1), tensor("bias").reshape(1)

    def __call__(self, gru, tf, p_long, p_short, ctx):
        long_win, short_win = p_long[:, 1:2], p_short[:, 1:2]
        one = torch.ones_like(long_win)
        direction = torch.where(long_win >= short_win, one, -one)
        x = torch.cat([gru, tf, long_win, short_win, ctx, direction], dim=1)
        z = (x - self.mean) / self.std
        return torch.sigmoid(z @ self.weight.T + self.bias), direction


# --- one object per served model ---------------------------------------------------------------
class Runner:
    """kind: range | trees | meta | fused. `run` takes and returns float32 numpy arrays with a
    leading batch axis (one host->device copy per input, one device->host copy per call)."""

    def __init__(self, kind: str, version_dir: str, device: str, seq_shape=(64, 28)) -> None:
        self.kind = kind
        self.device = torch.device(device)
        self.how: dict[str, str] = {}

        def path(name: str) -> str:
            return os.path.join(version_dir, name)

        def load_json(name: str) -> dict:
            with open(path(name)) as handle:
                return json.load(handle)

        if kind in ("range", "fused"):
            names = ["model.pt"] if kind == "range" else ["range_gru.pt", "range_transformer.pt"]
            self.ranges = []
            for name in names:
                module, how = load_range(path(name), self.device, tuple(seq_shape))
                self.ranges.append(module)
                self.how[name] = how
        if kind == "trees":
            self.trees = [Trees(load_json("trees.json"), self.device)]
        if kind == "fused":
            self.trees = [
                Trees(load_json(f"tpsl_xgb_{side}.trees.json"), self.device)
                for side in ("long", "short")
            ]
        if kind in ("meta", "fused"):
            self.meta = Meta(load_json("meta.json"), self.device)

    def _to(self, a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a).to(self.device, non_blocking=False)

    @torch.inference_mode()
    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        x = [self._to(a) for a in inputs]
        if self.kind == "range":
            outs = [self.ranges[0](x[0])]
        elif self.kind == "trees":
            outs = [self.trees[0](x[0])]
        elif self.kind == "meta":
            outs = list(self.meta(*x))
        else:
            seq, tab, ctx = x
            gru, tf = self.ranges[0](seq), self.ranges[1](seq)
            p_long, p_short = self.trees[0](tab), self.trees[1](tab)
            confidence, direction = self.meta(gru, tf, p_long, p_short, ctx)
            outs = [gru, tf, p_long, p_short, confidence, direction]
        host = torch.cat([o.float() for o in outs], dim=1).cpu().numpy()  # one copy back
        result, start = [], 0
        for o in outs:
            result.append(host[:, start : start + o.shape[1]].copy())  # numpy-owned
            start += o.shape[1]
        return result


# --- Triton Python backend -------------------------------------------------------------------
def _param(config: dict, key: str, default: str) -> str:
    return config.get("parameters", {}).get(key, {}).get("string_value", default)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        torch.set_num_threads(int(_param(config, "torch_threads", "1")))
        if args.get("model_instance_kind") == "GPU":
            device = f"cuda:{args['model_instance_device_id']}"
        else:
            device = _param(config, "device", "cpu")
        self.inputs = [i["name"] for i in config["input"]]
        self.outputs = [o["name"] for o in config["output"]]
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        seq = (
            tuple(config["input"][0]["dims"])[-2:]
            if _param(config, "runner", "")
            in (
                "range",
                "fused",
            )
            else (64, 28)
        )
        self.runner = Runner(_param(config, "runner", "range"), version_dir, device, seq)
        print(
            f"bench/gpu runner {args['model_name']}: {device}, numpy {np.__version__}, "
            f"torch {torch.__version__}, {self.runner.how}",
            flush=True,
        )

    def execute(self, requests):
        batches = [
            [pb_utils.get_input_tensor_by_name(r, n).as_numpy() for n in self.inputs]
            for r in requests
        ]
        merged = (
            batches[0]
            if len(batches) == 1
            else [np.concatenate([b[k] for b in batches]) for k in range(len(self.inputs))]
        )
        outputs = self.runner.run(merged)
        responses, start = [], 0
        for tensors in batches:
            stop = start + tensors[0].shape[0]
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[
                        pb_utils.Tensor(name, np.ascontiguousarray(out[start:stop]))
                        for name, out in zip(self.outputs, outputs, strict=True)
                    ]
                )
            )
            start = stop
        return responses
