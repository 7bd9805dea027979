"""The gpu profile's models through the wheel's tritonserver on a GPU (or, with --device cpu, the
same code on this machine's CPU), perf_analyzer at concurrency 1..64, Triton's own batch counts.

Run by bench/gpu/run_on_device.sh, which unpacks the carried Triton bundle and numpy<2 first.
Steps, in priority order (a deadline, --budget-s, skips the later ones):

1. build a model repository from model_repository/gpu (5m set): the gpu `signal_ensemble`
   config unchanged (Triton's ensemble scheduler, five steps), its five composing models with
   their gpu configs (names, tensors, max batch, 2 ms dynamic batching, KIND_GPU) but
   `backend: "python"` running bench/gpu/runners.py on the device, and `signal_ensemble_fused`
   (the cpu profile's fused layout: one stub, five models, no queue delay, two instances);
2. start tritonserver, check the answers (Triton ensemble = fused = in-process = CPU references);
3. perf_analyzer (gRPC) on signal_ensemble, then signal_ensemble_fused, c = 1..64; the average
   batch size of every model from /v2/models/<m>/stats deltas around each point;
4. the in-process ceiling: the fused runner called directly at batch 1..1024;
5. perf_analyzer on each composing model alone at a few concurrencies.

Results: <out>/results.json (rewritten after every step), tritonserver.log; a table at the end.
Needs only the Python standard library, numpy and torch (onnx and onnxruntime when present, for
the artifact conversion and the ONNX references); no tritonclient.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))
import runners  # noqa: E402

ENSEMBLE = "signal_ensemble"
FUSED = "signal_ensemble_fused"
COMPOSING = (
    "range_gru",
    "range_transformer",
    "tpsl_xgb_long",
    "tpsl_xgb_short",
    "signal_metamodel",
)
_T0 = time.monotonic()


def log(message: str) -> None:
    print(f"[{time.monotonic() - _T0:6.1f}s] {message}", flush=True)


# --- repository ------------------------------------------------------------------------------
def _edit(text: str, pattern: str, replacement: str, count: int = 1) -> str:
    new, n = re.subn(pattern, replacement, text)
    if n != count:
        raise RuntimeError(f"expected {count} match(es) of {pattern!r}, found {n}")
    return new


def _params(**values: str) -> str:
    return "".join(
        f'parameters {{ key: "{k}" value: {{ string_value: "{v}" }} }}\n' for k, v in values.items()
    )


def _python_config(text: str, runner: str, device: str, kind: str) -> str:
    text = re.sub(r'(?m)^platform: ".*"\n', 'backend: "python"\n', text)
    text = re.sub(r'(?m)^backend: "fil"\n', 'backend: "python"\n', text)
    text = re.sub(r"(?m)^default_model_filename: .*\n", "", text)
    if 'backend: "python"' not in text:
        raise RuntimeError("config has neither platform nor backend line")
    text = _edit(text, r"kind: KIND_GPU", f"kind: {kind}", count=text.count("kind: KIND_GPU"))
    return text + _params(runner=runner, device=device, torch_threads="1")


def meta_weights(onnx_path: Path) -> dict:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path))
    init = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return {
        "mean": init["mean"].tolist(),
        "std": init["std"].tolist(),
        "weight": init["linear.weight"].tolist(),
        "bias": init["linear.bias"].tolist(),
    }


def latest_version(model_dir: Path) -> Path:
    """The newest numbered version directory (orchestrator/devstack/triton.py has the same rule;
    this script runs where only the standard library, numpy and torch are installed)."""
    return max((p for p in model_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


def build_repository(source: Path, target: Path, device: str, kind: str) -> None:
    """kind: KIND_GPU (as committed) or KIND_CPU (cpu mode, or a stub that picks cuda itself)."""
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    model_py = HERE / "runners.py"
    meta = meta_weights(latest_version(source / "signal_metamodel") / "model.onnx")
    trees = {
        side: runners.xgboost_to_arrays(
            str(latest_version(source / f"tpsl_xgb_{side}") / "xgboost.json")
        )
        for side in ("long", "short")
    }
    for name in COMPOSING:
        runner = {"range_gru": "range", "range_transformer": "range"}.get(name)
        runner = runner or ("trees" if name.startswith("tpsl") else "meta")
        config = _python_config((source / name / "config.pbtxt").read_text(), runner, device, kind)
        version = target / name / "1"
        version.mkdir(parents=True)
        (target / name / "config.pbtxt").write_text(config)
        shutil.copy(model_py, version / "model.py")
        if runner == "range":
            scripted = latest_version(source / f"{name}_torchscript") / "model.pt"
            shutil.copy(scripted, version / "model.pt")
        elif runner == "trees":
            (version / "trees.json").write_text(json.dumps(trees[name.rsplit("_", 1)[1]]))
        else:
            (version / "meta.json").write_text(json.dumps(meta))
    shutil.copytree(source / ENSEMBLE, target / ENSEMBLE)  # the committed ensemble, unchanged
    # The fused variant: the ensemble's tensors, the cpu profile's fused settings.
    ensemble_config = (source / ENSEMBLE / "config.pbtxt").read_text()
    tensors = ensemble_config[
        ensemble_config.index("input [") : ensemble_config.index("ensemble_scheduling")
    ]
    fused = (
        f'name: "{FUSED}"\nbackend: "python"\nmax_batch_size: 256\n{tensors}'
        "dynamic_batching { max_queue_delay_microseconds: 0 }\n"
        f"instance_group [ {{ count: 2, kind: {kind} }} ]\n"
        + _params(runner="fused", device=device, torch_threads="1")
    )
    version = target / FUSED / "1"
    version.mkdir(parents=True)
    (target / FUSED / "config.pbtxt").write_text(fused)
    shutil.copy(model_py, version / "model.py")
    for name in ("range_gru", "range_transformer"):
        shutil.copy(source / f"{name}_torchscript" / "1" / "model.pt", version / f"{name}.pt")
    for side, arrays in trees.items():
        (version / f"tpsl_xgb_{side}.trees.json").write_text(json.dumps(arrays))
    (version / "meta.json").write_text(json.dumps(meta))


# --- the stub's environment --------------------------------------------------------------------
def make_stub_env(work: Path, numpy_wheel: Path) -> Path:
    """A venv whose own site-packages holds numpy<2 and then, through a .pth file, every package
    of this interpreter's environment (torch...). The stub embeds Python and takes its prefix from
    the first python3 on PATH (as PyTriton does), so numpy 1.26 shadows the environment's numpy 2
    (with numpy 2 the stub answered 'output tensor shape does not match size of output')."""
    import site
    import venv
    import zipfile

    env = work / "stub-env"
    if not (env / "bin" / "python3").exists():
        venv.EnvBuilder(with_pip=False, symlinks=True).create(env)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    target = env / "lib" / version / "site-packages"
    if not (target / "numpy").is_dir():
        with zipfile.ZipFile(numpy_wheel) as wheel:
            wheel.extractall(target)
    parents = [p for p in site.getsitepackages() if Path(p).is_dir() and Path(p) != target]
    lines = "".join(f"import site; site.addsitedir({p!r})\n" for p in parents)
    (target / "zz_parent_env.pth").write_text(lines)
    return env


# --- server ----------------------------------------------------------------------------------
def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def libpython_dir(bundle: Path) -> str:
    import sysconfig

    libdir, soname = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("INSTSONAME")
    if libdir and soname and (Path(libdir) / soname).exists():
        return libdir
    for candidate in ("/usr/lib/x86_64-linux-gnu", "/usr/local/lib"):
        if (
            Path(candidate) / f"libpython{sys.version_info.major}.{sys.version_info.minor}.so.1.0"
        ).exists():
            return candidate
    return str(bundle / "pylib")  # the carried copy (stripped)


class Server:
    def __init__(self, bundle: Path, repository: Path, stub_env: Path, log_path: Path):
        self.bundle, self.repository, self.log_path = bundle, repository, log_path
        self.http, self.grpc, self.metrics = free_ports(3)
        site = bundle / "site"
        self.server_dir = site / "pytriton" / "tritonserver"
        env = dict(os.environ)
        self.libpython = libpython_dir(bundle)
        env["LD_LIBRARY_PATH"] = ":".join(
            p
            for p in (
                str(site / "nvidia_pytriton.libs"),
                self.libpython,
                env.get("LD_LIBRARY_PATH", ""),
            )
            if p
        )
        env["PATH"] = f"{stub_env / 'bin'}:{env.get('PATH', '')}"  # the stub finds python3 here
        env.pop("VIRTUAL_ENV", None)
        env.pop("PYTHONPATH", None)
        self.env = env
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        command = [
            str(self.server_dir / "bin" / "tritonserver"),
            f"--model-repository={self.repository}",
            f"--backend-directory={self.server_dir / 'backends'}",
            f"--http-port={self.http}",
            f"--grpc-port={self.grpc}",
            f"--metrics-port={self.metrics}",
            "--allow-gpu-metrics=false",
            "--exit-on-error=false",
            "--log-verbose=0",
        ]
        with open(self.log_path, "ab") as handle:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                command,
                env=self.env,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http}{path}"

    def get(self, path: str, body: dict | None = None, timeout: float = 10.0):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.url(path), data=data, method="POST" if data else "GET"
        )
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as error:
            raise RuntimeError(f"{path}: HTTP {error.code}: {error.read()[:500]!r}") from error
        return json.loads(raw) if raw else {}

    def wait(self, models: list[str], timeout_s: float) -> dict[str, str]:
        """{model: 'READY' or its state and reason} once none is loading, or the time is up."""
        deadline = time.monotonic() + timeout_s
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                return {m: f"server exited ({self.process.returncode})" for m in models}
            try:
                states = {
                    e["name"]: "READY"
                    if e.get("state") == "READY"
                    else f"{e.get('state')}: {e.get('reason', '')}"
                    for e in self.get("/v2/repository/index", {})
                }
            except (urllib.error.URLError, OSError, ValueError, RuntimeError):
                states = {}
            pending = [m for m in models if states.get(m, "").startswith(("LOADING", "UNLOADING"))]
            unseen = [m for m in models if m not in states or states[m].startswith("None")]
            failed = [m for m in models if states.get(m, "").startswith("UNAVAILABLE")]
            # an ensemble whose steps failed never gets a state: settled once the rest has
            if states and not pending and (not unseen or failed):
                return {m: states.get(m, "not seen") for m in models}
            time.sleep(0.5)
        return {m: states.get(m, "not seen") for m in models}

    def stats(self, model: str) -> dict:
        data = self.get(f"/v2/models/{model}/stats")["model_stats"]
        total: dict = {"inference_count": 0, "execution_count": 0}
        for s in data:
            total["inference_count"] += int(s.get("inference_count", 0))
            total["execution_count"] += int(s.get("execution_count", 0))
            for key, value in s.get("inference_stats", {}).items():
                total[f"{key}_ns"] = total.get(f"{key}_ns", 0) + int(value.get("ns", 0))
                total[f"{key}_count"] = total.get(f"{key}_count", 0) + int(value.get("count", 0))
        return total

    def infer(self, model: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        body = {
            "inputs": [
                {"name": k, "shape": list(v.shape), "datatype": "FP32", "data": v.ravel().tolist()}
                for k, v in inputs.items()
            ]
        }
        reply = self.get(f"/v2/models/{model}/infer", body, timeout=60)
        return {
            o["name"]: np.asarray(o["data"], dtype=np.float32).reshape(o["shape"])
            for o in reply["outputs"]
        }

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


# --- GPU sampler -----------------------------------------------------------------------------
class Sampler:
    """GPU utilisation and memory every 100 ms through NVML (nvidia-ml-py), when present."""

    def __init__(self, enabled: bool = True) -> None:
        self.samples: list[tuple[float, int, int]] = []
        self.ok = False
        if not enabled:
            return
        try:
            import pynvml

            pynvml.nvmlInit()
            self.nvml, self.handle, self.ok = pynvml, pynvml.nvmlDeviceGetHandleByIndex(0), True
        except Exception:
            return
        self.stop_flag = False
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        while not self.stop_flag:
            u = self.nvml.nvmlDeviceGetUtilizationRates(self.handle)
            m = self.nvml.nvmlDeviceGetMemoryInfo(self.handle)
            self.samples.append((time.time(), int(u.gpu), int(m.used // 2**20)))
            time.sleep(0.1)

    def window(self, t0: float, t1: float) -> dict | None:
        inside = [s for s in self.samples if t0 <= s[0] <= t1]
        if not inside:
            return None
        return {
            "gpu_util_mean_pct": round(sum(s[1] for s in inside) / len(inside), 1),
            "gpu_mem_used_max_mib": max(s[2] for s in inside),
        }


# --- perf_analyzer ---------------------------------------------------------------------------
def perf_data(path: Path, config_inputs: list[tuple[str, list[int]]], rows: int = 16) -> None:
    """perf_analyzer's JSON input: `rows` batch-1 requests of normal(0, 1) values (as
    bench/triton_tuning.py), probabilities in [0, 1] for P_* inputs."""
    rng = np.random.default_rng(0)
    data = []
    for _ in range(rows):
        row = {}
        for name, dims in config_inputs:
            a = rng.normal(size=dims).astype(np.float32)
            if name.startswith("P_"):
                p = rng.random(dtype=np.float32)
                a = np.array([1 - p, p], dtype=np.float32)
            row[name] = a.ravel().tolist()
        data.append(row)
    path.write_text(json.dumps({"data": data}))


def model_inputs(repository: Path, model: str) -> list[tuple[str, list[int]]]:
    text = (repository / model / "config.pbtxt").read_text()
    block = text[text.index("input [") : text.index("output [")]
    return [
        (m.group(1), [int(d) for d in m.group(2).split(",")])
        for m in re.finditer(r'name: "(\w+)", data_type: TYPE_FP32, dims: \[ ([\d, ]+) \]', block)
    ]


def perf_point(
    pa: Path,
    pa_env: dict,
    server: Server,
    model: str,
    c: int,
    data: Path,
    interval_ms: int,
    csv_path: Path,
    watch: list[str],
    sampler: Sampler,
) -> dict:
    before = {m: server.stats(m) for m in watch}
    command = [
        str(pa),
        "-m",
        model,
        "-i",
        "grpc",
        "-u",
        f"127.0.0.1:{server.grpc}",
        "--concurrency-range",
        f"{c}:{c}",
        "--measurement-interval",
        str(interval_ms),
        "--stability-percentage",
        "50",
        "--max-trials",
        "5",
        "--input-data",
        str(data),
        "-f",
        str(csv_path),
    ]
    t0 = time.time()
    done = subprocess.run(command, capture_output=True, text=True, env=pa_env, timeout=120)
    if done.returncode != 0 and "stable" in done.stdout + done.stderr:
        command[command.index("--stability-percentage") + 1] = "1000"  # report what was seen
        done = subprocess.run(command, capture_output=True, text=True, env=pa_env, timeout=120)
    t1 = time.time()
    after = {m: server.stats(m) for m in watch}
    row: dict = {"concurrency": c, "exit_code": done.returncode, "wall_s": round(t1 - t0, 2)}
    if done.returncode == 0 and csv_path.exists():
        with csv_path.open() as handle:
            record = next(csv.DictReader(handle))
        row |= {
            "infer_per_s": float(record["Inferences/Second"]),
            "p50_ms": int(record["p50 latency"]) / 1e3,
            "p90_ms": int(record["p90 latency"]) / 1e3,
            "p99_ms": int(record["p99 latency"]) / 1e3,
            "server_queue_us": int(record["Server Queue"]),
            "server_compute_infer_us": int(record["Server Compute Infer"]),
        }
    else:
        row["error"] = (done.stderr + done.stdout)[-600:]
    per_model = {}
    for m in watch:
        a, b = after[m], before[m]
        inferences = a["inference_count"] - b["inference_count"]
        executions = a["execution_count"] - b["execution_count"]
        entry = {
            "avg_batch_size": round(inferences / executions, 2) if executions else None,
            "executions": executions,
        }
        requests = a.get("success_count", 0) - b.get("success_count", 0)
        if requests:
            for key in ("queue", "compute_input", "compute_infer", "compute_output"):
                ns = a.get(f"{key}_ns", 0) - b.get(f"{key}_ns", 0)
                entry[f"{key}_us_per_request"] = round(ns / requests / 1e3, 1)
        per_model[m] = entry
    row["models"] = per_model
    row["avg_batch_size"] = per_model[watch[0]]["avg_batch_size"]
    if sampler.ok:
        row["gpu"] = sampler.window(t0, t1)
    batch = row["avg_batch_size"]
    log(
        f"{model:22s} c={c:2d} {row.get('infer_per_s', 0):9.1f} infer/s  "
        f"p50 {row.get('p50_ms', float('nan')):7.2f}  p99 {row.get('p99_ms', float('nan')):7.2f} ms"
        f"  avg batch {batch}"
        + ("" if "error" not in row else f"  ERROR {row['error'][-200:]}")
        + (f"  gpu {row['gpu']}" if row.get("gpu") else "")
    )
    return row


# --- in-process ceiling ----------------------------------------------------------------------
def ceiling(version_dir: Path, device: str, batches: tuple[int, ...], seconds: float) -> dict:
    runner = runners.Runner("fused", str(version_dir), device)
    rng = np.random.default_rng(1)
    results = {"device": device, "how": runner.how}
    for batch in batches:
        x = [
            rng.normal(size=(batch, 64, 28)).astype(np.float32),
            rng.normal(size=(batch, 56)).astype(np.float32),
            rng.normal(size=(batch, 5)).astype(np.float32),
        ]
        for _ in range(3):
            runner.run(x)
        times = []
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            t = time.perf_counter()
            runner.run(x)  # ends with a device->host copy: synchronous
            times.append(time.perf_counter() - t)
        times_a = np.array(times)
        results[f"batch{batch}"] = {
            "calls": len(times),
            "rows_per_s": round(float(batch * len(times) / times_a.sum()), 1),
            "median_ms": round(float(np.median(times_a)) * 1e3, 3),
            "p99_ms": round(float(np.percentile(times_a, 99)) * 1e3, 3),
        }
        log(f"in-process fused on {device} batch {batch:4d}: {results[f'batch{batch}']}")
    return results


def in_process(version: Path, device: str, args: argparse.Namespace) -> dict:
    torch.set_num_threads(1)  # as in the stubs
    if device == "cuda":
        return {
            "cuda": ceiling(version, "cuda", (1, 16, 64, 256, 1024), args.ceiling_s),
            # the same code on this host's CPU, one thread
            "cpu_1_thread": ceiling(version, "cpu", (1, 64), args.ceiling_s),
        }
    return {"cpu_1_thread": ceiling(version, "cpu", (1, 16, 64, 256), args.ceiling_s)}


# --- checks ----------------------------------------------------------------------------------
def references(source: Path, x: list[np.ndarray]) -> dict[str, np.ndarray]:
    """The ONNX artifacts on ONNX Runtime (CPU) where it is installed, else torch on the CPU."""
    out: dict[str, np.ndarray] = {}
    try:
        import onnxruntime as ort

        for name, key in (("range_gru", "GRU_RANGE"), ("range_transformer", "TF_RANGE")):
            s = ort.InferenceSession(
                str(source / name / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
            )
            out[key] = s.run(None, {"SEQ": x[0]})[0]
        out["_source"] = "onnxruntime-cpu on the ONNX artifacts (range models)"  # type: ignore[assignment]
    except Exception as error:
        out["_source"] = f"no onnxruntime ({type(error).__name__})"  # type: ignore[assignment]
    try:
        import xgboost as xgb

        for side, key in (("long", "P_LONG"), ("short", "P_SHORT")):
            booster = xgb.Booster()
            booster.load_model(str(source / f"tpsl_xgb_{side}" / "1" / "xgboost.json"))
            p = booster.inplace_predict(x[1]).astype(np.float32).reshape(-1)
            out[key] = np.stack([1.0 - p, p], axis=1)
        out["_source"] += "; xgboost on xgboost.json"  # type: ignore[operator]
    except Exception:
        pass
    return out


def check(server: Server, repository: Path, source: Path, device: str) -> dict:
    rng = np.random.default_rng(7)
    n = 8
    x = [
        rng.normal(size=(n, 64, 28)).astype(np.float32),
        rng.normal(size=(n, 56)).astype(np.float32),
        rng.normal(size=(n, 5)).astype(np.float32),
    ]
    feed = dict(zip(runners.INPUTS, x, strict=True))
    ensemble = server.infer(ENSEMBLE, feed)
    fused = server.infer(FUSED, feed)
    local = dict(
        zip(
            runners.OUTPUTS,
            runners.Runner("fused", str(repository / FUSED / "1"), device).run(x),
            strict=True,
        )
    )
    cpu = dict(
        zip(
            runners.OUTPUTS,
            runners.Runner("fused", str(repository / FUSED / "1"), "cpu").run(x),
            strict=True,
        )
    )
    ref = references(source, x)

    def diff(a: dict, b: dict) -> dict:
        return {k: float(np.abs(a[k] - b[k]).max()) for k in runners.OUTPUTS if k in a and k in b}

    result = {
        "rows": n,
        "ensemble_vs_fused": diff(ensemble, fused),
        "triton_fused_vs_in_process_same_device": diff(fused, local),
        f"{device}_vs_torch_cpu": diff(local, cpu),
        "torch_cpu_vs_reference": diff(
            cpu, {k: v for k, v in ref.items() if not k.startswith("_")}
        ),
        "reference": ref.get("_source"),
        "all_finite": bool(all(np.isfinite(v).all() for v in ensemble.values())),
    }
    log(f"check: {json.dumps(result)}")
    return result


# --- main ------------------------------------------------------------------------------------
def portable(text: str) -> str:
    """`text` with the checkout's own path left out: results name files relative to it, never
    the machine's directories."""
    return text.replace(f"{ROOT}/", "")


def environment_info(device: str) -> dict:
    info: dict = {
        "python": sys.version.split()[0],
        "executable": portable(sys.executable),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "machine": platform.platform(),
        "cuda_available": torch.cuda.is_available(),
    }
    with contextlib.suppress(OSError):
        cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
        names = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
        info["cpu_model"] = names[0] if names else platform.processor()
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda_runtime"] = torch.version.cuda
        info["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
        info["cudnn_tf32"] = torch.backends.cudnn.allow_tf32
    if shutil.which("nvidia-smi"):
        q = (
            "name,driver_version,memory.total,clocks.sm,clocks.max.sm,clocks.mem,power.draw,"
            "temperature.gpu,utilization.gpu"
        )
        done = subprocess.run(
            ["nvidia-smi", f"--query-gpu={q}", "--format=csv"],
            capture_output=True,
            text=True,
            check=False,
        )
        info["nvidia_smi"] = done.stdout.strip()
    try:
        import onnxruntime as ort

        info["onnxruntime"] = ort.__version__
        info["onnxruntime_providers"] = ort.get_available_providers()
    except Exception as error:
        info["onnxruntime"] = f"unavailable: {type(error).__name__}"
    return info


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--bundle", type=Path, required=True, help="unpacked Triton bundle")
    parser.add_argument("--numpy-wheel", type=Path, required=True, help="numpy<2 for the stub")
    parser.add_argument("--source", type=Path, default=ROOT / "model_repository" / "gpu")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=Path("/tmp/gpu-bench"))
    parser.add_argument("--budget-s", type=float, default=300.0, help="skip steps past this")
    parser.add_argument("--interval-ms", type=int, default=1000)
    parser.add_argument("--concurrency", default="1,2,4,8,16,32,64")
    parser.add_argument("--per-model-concurrency", default="1,4,16,64")
    parser.add_argument("--ceiling-s", type=float, default=1.0, help="seconds per batch size")
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + args.budget_s
    concurrency = [int(c) for c in args.concurrency.split(",")]
    per_model_c = [int(c) for c in args.per_model_concurrency.split(",")]
    results: dict = {
        "command": portable(" ".join(sys.argv)),
        "started_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "device": args.device,
        "environment": environment_info(args.device),
    }

    def save() -> None:
        (out / "results.json").write_text(json.dumps(results, indent=1))

    log(json.dumps(results["environment"]))
    save()
    if args.device == "cuda" and not torch.cuda.is_available():
        log("error: --device cuda but torch sees no GPU")
        return 2
    sampler = Sampler(enabled=args.device == "cuda")

    stub_env = make_stub_env(args.work, args.numpy_wheel)
    repository = args.work / "repo"
    kinds = ["KIND_GPU", "KIND_CPU"] if args.device == "cuda" else ["KIND_CPU"]
    server = None
    for kind in kinds:
        build_repository(args.source, repository, args.device, kind)
        server = Server(args.bundle, repository, stub_env, out / "tritonserver.log")
        log(f"tritonserver: instance kind {kind}, libpython from {server.libpython}")
        t = time.monotonic()
        server.start()
        states = server.wait([*COMPOSING, ENSEMBLE, FUSED], timeout_s=180)
        results["server"] = {
            "instance_kind": kind,
            "states": states,
            "load_s": round(time.monotonic() - t, 1),
        }
        log(f"models after {time.monotonic() - t:.1f} s: {states}")
        if all(v == "READY" for v in states.values()):
            break
        server.stop()
        server = None
    save()
    if server is None:
        log("error: the models did not load; see tritonserver.log")
        return 3
    pa_dir = args.bundle / "pa"
    pa_env = dict(os.environ)
    pa_env["LD_LIBRARY_PATH"] = ":".join(
        p for p in (str(pa_dir), os.environ.get("LD_LIBRARY_PATH", "")) if p
    )
    missing = subprocess.run(
        ["ldd", str(pa_dir / "perf_analyzer")], capture_output=True, text=True, env=pa_env
    )
    if "not found" in missing.stdout:
        pa_env["LD_LIBRARY_PATH"] += f":{args.bundle / 'pa-fallback'}"
        results["perf_analyzer_fallback_libs"] = missing.stdout
    try:
        results["check"] = check(server, repository, args.source, args.device)
        save()
        data_dir = args.work / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        sweeps: dict = {}
        results["sweeps"] = sweeps
        plan = [(ENSEMBLE, concurrency, [*COMPOSING]), (FUSED, concurrency, [FUSED])]
        plan += [
            (m, per_model_c, [m])
            for m in ("range_gru", "range_transformer", "tpsl_xgb_long", "signal_metamodel")
        ]
        for index, (model, levels, watch) in enumerate(plan):
            ceiling_due = index == 2 and time.monotonic() + 8 * args.ceiling_s + 10 < deadline
            if ceiling_due:  # the in-process ceiling: after the two sweeps, before per model
                results["ceiling"] = in_process(repository / FUSED / "1", args.device, args)
                save()
            estimate = len(levels) * (4 * args.interval_ms / 1e3 + 1.5)
            if time.monotonic() + estimate > deadline:
                log(
                    f"skip {model}: {deadline - time.monotonic():.0f} s left, "
                    f"needs ~{estimate:.0f} s"
                )
                sweeps[model] = {"skipped": "time budget"}
                continue
            data = data_dir / f"{model}.json"
            perf_data(data, model_inputs(repository, model))
            watch_all = [model, *watch] if model == ENSEMBLE else watch
            rows = [
                perf_point(
                    args.bundle / "pa" / "perf_analyzer",
                    pa_env,
                    server,
                    model,
                    c,
                    data,
                    args.interval_ms,
                    data_dir / f"{model}-c{c}.csv",
                    watch_all,
                    sampler,
                )
                for c in levels
            ]
            for row in rows:  # the ensemble is scheduled per request: report the models' batches
                if model == ENSEMBLE:
                    row["avg_batch_size"] = {
                        m: row["models"][m]["avg_batch_size"] for m in COMPOSING
                    }
            sweeps[model] = {"rows": rows, "watched": watch_all}
            save()
    finally:
        server.stop()
        if args.device == "cuda" and shutil.which("nvidia-smi"):
            done = subprocess.run(
                [
                    "nvidia-smi",
                    "--query-gpu=clocks.sm,clocks.mem,power.draw,temperature.gpu",
                    "--format=csv",
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            results["nvidia_smi_after"] = done.stdout.strip()
        results["finished_utc"] = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
        results["elapsed_s"] = round(time.monotonic() - _T0, 1)
        save()
    print_table(results)
    return 0


def print_table(results: dict) -> None:
    print(
        f"\n== {results['device']}: "
        f"{results['environment'].get('gpu', results['environment'].get('cpu_model'))}"
    )
    for model, sweep in results.get("sweeps", {}).items():
        for row in sweep.get("rows", []):
            batch = row["avg_batch_size"]
            if isinstance(batch, dict):
                batch = "/".join("-" if v is None else f"{v:.1f}" for v in batch.values())
            print(
                f"{model:22s} c={row['concurrency']:2d} {row.get('infer_per_s', 0):9.1f}/s "
                f"p50 {row.get('p50_ms', float('nan')):7.2f} "
                f"p99 {row.get('p99_ms', float('nan')):7.2f} ms batch {batch}"
            )
    for device, c in results.get("ceiling", {}).items():
        cells = "  ".join(
            f"{k}={v['rows_per_s']:.0f}/s" for k, v in c.items() if k.startswith("batch")
        )
        print(f"in-process fused {device}: {cells}")
    print(f"check: {json.dumps(results.get('check', {}))}")
    print(f"elapsed {results.get('elapsed_s')} s")


if __name__ == "__main__":
    raise SystemExit(main())
