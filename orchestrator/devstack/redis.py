"""Redis for `make run` and the tests: the configured `REDIS_URL` when it answers, otherwise a
private redis-server whose data, log and pid live under .run/redis (Debian's package, installed
when missing, as for MariaDB)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from orchestrator.devstack import process
from orchestrator.errors import ServiceUnavailableError
from orchestrator.settings import RUN_DIR

_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


class RedisSetupError(ServiceUnavailableError):
    """No Redis could be reached or started (exit 3)."""


def ping(url: str, timeout_s: float = 1.0) -> str | None:
    """None when Redis at `url` answers PING, else the reason it did not."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    try:
        client.ping()
    except redis.RedisError as exc:
        return str(exc) or type(exc).__name__
    finally:
        client.close()
    return None


@dataclass
class PrivateRedis:
    port: int
    base: Path = RUN_DIR / "redis"

    @property
    def pid_path(self) -> Path:
        return self.base / "redis-server.pid"

    @property
    def log_path(self) -> Path:
        return self.base / "redis.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def is_running(self) -> bool:
        return process.running_pid(self.pid_path, "redis-server") is not None

    def ensure_installed(self) -> None:
        if process.find_binary("redis-server"):
            return
        allowed = os.environ.get("ALLOW_APT_INSTALL", "1") != "0"
        if os.geteuid() != 0 or not shutil.which("apt-get") or not allowed:
            raise RedisSetupError(
                "redis-server is not installed and cannot be installed here: run "
                "`sudo apt-get install redis-server`, or set REDIS_URL to a running Redis"
            )
        print("installing Debian's redis-server (once per machine)...", flush=True)
        process.install_debian_packages("redis-server")

    def start(self, timeout_s: float = 20.0) -> None:
        if self.is_running():
            return
        self.ensure_installed()
        if process.port_in_use(self.port):
            raise RedisSetupError(
                f"port {self.port} is taken by another process that does not answer as Redis; "
                "stop it or set REDIS_URL to another port"
            )
        self.base.mkdir(parents=True, exist_ok=True)
        command = [
            process.find_binary("redis-server") or "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.base),
            # Jobs and results are durable in MySQL; Redis keeps an append-only file so queued
            # jobs also survive a Redis restart.
            "--appendonly",
            "yes",
            "--save",
            "",
            "--daemonize",
            "no",
            "--logfile",
            "",
        ]
        child = process.spawn(
            command, env=dict(os.environ), log_path=self.log_path, pid_path=self.pid_path
        )

        # Our own child: its exit status, not /proc (redis-server renames its process, and
        # /proc/<pid>/cmdline reads empty meanwhile).
        def answers() -> bool:
            return ping(self.url, timeout_s=0.5) is None

        if process.wait_until(answers, lambda: child.poll() is None, timeout_s, poll_s=0.1):
            return
        raise RedisSetupError(
            f"the private redis-server did not start; last lines of {self.log_path}:\n"
            + process.log_tail(self.log_path)
        )

    def stop(self) -> bool:
        return process.stop(self.pid_path, "redis-server", timeout_s=20)


def private_for(url: str) -> PrivateRedis:
    return PrivateRedis(port=urlsplit(url).port or 6379)


def ensure_redis(url: str) -> str:
    """Makes `url` answer; returns a line saying which server is used."""
    reason = ping(url)
    if reason is None:
        return f"using the Redis at {url}"
    if (urlsplit(url).hostname or "") not in _LOCAL_HOSTS:
        raise RedisSetupError(f"Redis at {url} is unavailable: {reason}")
    private = private_for(url)
    private.start()
    return f"started the private Redis at {private.url} (data in {private.base})"
