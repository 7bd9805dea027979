"""Background processes tracked by pid files, so `make stop` stops exactly what `make` started."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path


def find_binary(name: str) -> str | None:
    """`name` on PATH, or in the sbin/bin folders Debian's server packages install into."""
    return shutil.which(name) or next(
        (str(p) for d in ("/usr/sbin", "/usr/bin") if (p := Path(d) / name).exists()), None
    )


def install_debian_packages(*packages: str) -> None:
    """Debian's packages with their system services left stopped (the project runs its own)."""
    script = Path(__file__).resolve().parents[2] / "scripts" / "install-debian-packages.sh"
    subprocess.run(["bash", str(script), *packages], check=True)


def wait_until(
    ready: Callable[[], bool], alive: Callable[[], bool], timeout_s: float, poll_s: float = 0.25
) -> bool:
    """Polls `ready` until it holds (True), the process is no longer `alive` or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ready():
            return True
        if not alive():
            return ready()
        time.sleep(poll_s)
    return False


def read_pid(pid_path: Path) -> int | None:
    try:
        return int(pid_path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def is_alive(pid: int, expected_name: str) -> bool:
    """True when `pid` runs and its command line mentions `expected_name` (guards pid reuse)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state != "Z" and expected_name in cmdline


def running_pid(pid_path: Path, expected_name: str) -> int | None:
    pid = read_pid(pid_path)
    return pid if pid is not None and is_alive(pid, expected_name) else None


def spawn(
    command: Sequence[str],
    *,
    env: Mapping[str, str],
    log_path: Path,
    pid_path: Path,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Starts `command` detached from our session, appending its output to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            list(command),
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=cwd,
        )
    tmp = pid_path.with_suffix(".tmp")
    tmp.write_text(f"{proc.pid}\n")
    tmp.replace(pid_path)
    return proc


KILL_WAIT_S = 10.0  # after SIGKILL: a process stuck in the kernel is left after this long


def stop(pid_path: Path, expected_name: str, timeout_s: float = 30.0) -> bool:
    """SIGTERM, then SIGKILL after `timeout_s`; returns False when nothing of ours was running."""
    pid = running_pid(pid_path, expected_name)
    if pid is None:
        pid_path.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    if not _exited_within(pid, timeout_s):
        os.kill(pid, signal.SIGKILL)
        _exited_within(pid, KILL_WAIT_S)
    pid_path.unlink(missing_ok=True)
    return True


def _exited_within(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while _not_exited(pid):
        if time.monotonic() >= deadline:
            return False
        _reap(pid)
        time.sleep(0.05)
    return True


def _not_exited(pid: int) -> bool:
    """Whether `pid` (known to be ours) has not finished exiting. Not is_alive: an exiting
    process's command line reads empty before it has closed its files and its port, and a
    server started again in that window may find them still held."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def log_tail(log_path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log yet)"


def free_ports(count: int) -> tuple[int, ...]:
    """Ports nobody listens on right now, so parallel runs and leftovers never collide."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return tuple(s.getsockname()[1] for s in sockets)
    finally:
        for s in sockets:
            s.close()
