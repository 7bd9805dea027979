"""Starts the real `tritonserver` shipped in the nvidia-pytriton wheel, CPU only, no Docker.

Recipe (see docs/architecture.md): LD_LIBRARY_PATH holds the wheel's bundled libraries and the
directory of libpython3.12, the Python-backend stub for 3.12 sits in backends/python, and the
model environment's bin/ leads PATH so the stub imports that environment's numpy<2 packages.
The backend directory is the wheel's with the project's Python-based backends (the cpu profile's
runners, model_repository/backends/) linked in beside python/.
"""

from __future__ import annotations

import os
import subprocess
import sysconfig
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.devstack import process
from orchestrator.errors import ServiceUnavailableError
from orchestrator.settings import PROJECT_ROOT, RUN_DIR

DEFAULT_ENV_DIR = PROJECT_ROOT / ".venv-triton"
RUNNERS_DIR = PROJECT_ROOT / "model_repository" / "backends"


class TritonStartError(ServiceUnavailableError):
    """tritonserver could not be started or did not become ready (exit 3)."""


def _site_packages(env_dir: Path) -> Path:
    matches = sorted((env_dir / "lib").glob("python3.*/site-packages"))
    if not matches:
        raise TritonStartError(
            f"Triton model environment not found at {env_dir}: run `make triton-env`"
        )
    return matches[-1]


def latest_version(model_dir: Path) -> Path:
    """The newest numbered version directory of a model (what `latest { num_versions: 1 }`
    serves); FileNotFoundError naming the fix when there is none."""
    versions = [p for p in model_dir.glob("*") if p.is_dir() and p.name.isdigit()]
    if not versions:
        raise FileNotFoundError(f"{model_dir} holds no model version; train one with `make models`")
    return max(versions, key=lambda p: int(p.name))


def link_backends(target: Path, *sources: Path) -> Path:
    """`target` holds a symlink to every backend directory under `sources` (a later source wins
    a name); links that point elsewhere are replaced atomically, stale ones removed."""
    wanted = {
        entry.name: entry for source in sources for entry in source.iterdir() if entry.is_dir()
    }
    target.mkdir(parents=True, exist_ok=True)
    for stale in target.iterdir():
        if stale.name not in wanted and stale.is_symlink():
            stale.unlink()
    for name, entry in wanted.items():
        link = target / name
        if link.is_symlink() and link.readlink() == entry:
            continue
        staged = target / f".{name}.link"
        staged.unlink(missing_ok=True)
        staged.symlink_to(entry, target_is_directory=True)
        os.replace(staged, link)
    return target


def repository_models(repository: Path) -> list[str]:
    """Model directories (those with a config.pbtxt) in a Triton model repository."""
    if not repository.is_dir():
        return []
    return sorted(p.parent.name for p in repository.glob("*/config.pbtxt"))


@dataclass
class TritonServer:
    model_repository: Path
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    env_dir: Path = DEFAULT_ENV_DIR
    run_dir: Path = RUN_DIR
    name: str = "triton"
    load_models: list[str] | None = None  # None: every model in the repository
    runners_dir: Path = RUNNERS_DIR
    extra_args: list[str] = field(default_factory=list)

    @property
    def pid_path(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def log_path(self) -> Path:
        return self.run_dir / f"{self.name}.log"

    @property
    def ready_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/v2/health/ready"

    def command(self) -> list[str]:
        server = _site_packages(self.env_dir) / "pytriton" / "tritonserver"
        binary = server / "bin" / "tritonserver"
        if not binary.exists():
            raise TritonStartError(f"{binary} is missing: run `make triton-env`")
        models = self.load_models
        if models is None:
            models = repository_models(self.model_repository)
        return [
            str(binary),
            f"--model-repository={self.model_repository}",
            "--model-control-mode=explicit",
            *(f"--load-model={m}" for m in models),
            f"--backend-directory={self.backend_directory(server / 'backends')}",
            f"--http-port={self.http_port}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-port={self.metrics_port}",
            "--exit-on-error=false",
            "--log-verbose=0",
            *self.extra_args,
        ]

    def backend_directory(self, shipped: Path) -> Path:
        """The wheel's backends plus the project's runners, linked under the run directory."""
        return link_backends(self.run_dir / f"{self.name}-backends", shipped, self.runners_dir)

    def environment(self) -> dict[str, str]:
        site = _site_packages(self.env_dir)
        libpython_dir = sysconfig.get_config_var("LIBDIR") or ""
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p
            for p in (
                str(site / "nvidia_pytriton.libs"),
                libpython_dir,
                env.get("LD_LIBRARY_PATH", ""),
            )
            if p
        )
        env["PATH"] = os.pathsep.join((str(self.env_dir / "bin"), env.get("PATH", "")))
        env.pop("PYTHONPATH", None)
        env.pop("VIRTUAL_ENV", None)
        return env

    def is_running(self) -> bool:
        return process.running_pid(self.pid_path, "tritonserver") is not None

    def is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.ready_url, timeout=1.0) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def start(self, timeout_s: float = 180.0) -> None:
        if self.is_running():
            self.wait_ready(timeout_s)
            return
        if self.is_ready():
            raise TritonStartError(
                f"port {self.http_port} already serves a Triton that `make` did not start; "
                "stop it or choose other ports (TRITON_HTTP_PORT/TRITON_GRPC_PORT/"
                "TRITON_METRICS_PORT)"
            )
        busy = [
            port
            for port in (self.http_port, self.grpc_port, self.metrics_port)
            if process.port_in_use(port)
        ]
        if busy:
            raise TritonStartError(
                f"port(s) {', '.join(map(str, busy))} already in use by another process; stop it "
                "or choose other ports (TRITON_HTTP_PORT/TRITON_GRPC_PORT/TRITON_METRICS_PORT)"
            )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        child = process.spawn(
            self.command(),
            env=self.environment(),
            log_path=self.log_path,
            pid_path=self.pid_path,
            cwd=self.run_dir,
        )
        try:
            self.wait_ready(timeout_s, child)
        except TritonStartError:
            self.stop()  # never leave a half-started server behind
            raise

    def wait_ready(self, timeout_s: float, child: subprocess.Popen[bytes] | None = None) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.is_ready():
                return
            exited = child.poll() is not None if child is not None else not self.is_running()
            if exited:
                time.sleep(0.5)  # let the log reach the disk
                code = f" (exit status {child.returncode})" if child is not None else ""
                raise TritonStartError(
                    f"tritonserver exited during start-up{code}; last lines of {self.log_path}:\n"
                    + process.log_tail(self.log_path)
                )
            time.sleep(0.25)
        raise TritonStartError(
            f"tritonserver not ready at {self.ready_url} after {timeout_s:g} s; "
            f"see {self.log_path}:\n" + process.log_tail(self.log_path)
        )

    def stop(self) -> bool:
        return process.stop(self.pid_path, "tritonserver")
